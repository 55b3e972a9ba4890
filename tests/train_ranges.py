"""The values each numeric ``train.*`` key must refuse, for the tests of both trainers (test_cli, test_jax_train)."""

from __future__ import annotations

OUT_OF_RANGE = {"positive": "0", "at least 0": "-1", "in [0, 1)": "1", "in [0, 1]": "1.5"}
IN_RANGE = {"positive": "1", "at least 0": "0", "in [0, 1)": "0", "in [0, 1]": "1"}


def numeric_train_keys() -> dict[str, type]:
    """TrainConfig's numeric keys and their element type (a bool is no number here)."""
    import dataclasses
    import typing

    from practice_torch.engine.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    kinds = {k: typing.get_args(h)[0] if typing.get_origin(h) is tuple else h for k, h in hints.items()}
    return {f.name: kinds[f.name] for f in dataclasses.fields(TrainConfig) if kinds[f.name] in (int, float)}


def bad_values(key: str, kind: type) -> list[tuple[str, str]]:
    """(value, what the one-line error says) of ``key``: each non-finite value and one just out of its range."""
    from practice_torch.engine.config import TRAIN_RANGES

    rule = TRAIN_RANGES[key]
    pair = (lambda v: f"0.5,{v}") if key == "betas" else (lambda v: v)
    not_finite = "expected a finite number" if kind is float else "expected int"
    out_of_range = "train.betas must be two numbers in [0, 1)" if key == "betas" else f"train.{key} must be {rule}, got"
    return [(pair(v), not_finite) for v in ("nan", "inf", "-inf")] + [(pair(OUT_OF_RANGE[rule]), out_of_range)]
