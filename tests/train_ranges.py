"""The values each numeric ``train.*`` and ``model.*`` key must refuse and admit, for the tests of both trainers
(test_cli, test_jax_train, test_model_ranges): a value just outside each range of ``engine.config.RULES`` on each of
its sides, and one at its edge inside."""

from __future__ import annotations

import functools

OUTSIDE = {"positive": ("0", "-1"), "at least 0": ("-1",), "at least -1": ("-2",), "at least 2": ("1",),
           "1 or 2": ("0", "3"), "in [0, 1)": ("1", "-0.5"), "in [0, 1]": ("1.5", "-0.5"), "in (0, 1)": ("1", "0"),
           "in (0, 1]": ("0", "1.5"), "in (0, 0.5)": ("0.5", "0")}
OUT_OF_RANGE = {rule: values[0] for rule, values in OUTSIDE.items()}
IN_RANGE = {"positive": "1", "at least 0": "0", "at least -1": "-1", "at least 2": "2", "1 or 2": "2",
            "in [0, 1)": "0", "in [0, 1]": "1", "in (0, 1)": "0.5", "in (0, 1]": "1", "in (0, 0.5)": "0.25"}


def numeric_train_keys() -> dict[str, type]:
    """TrainConfig's numeric keys and their element type (a bool is no number here)."""
    from practice_torch.engine.config import TrainConfig, numeric_keys

    return numeric_keys(TrainConfig)


def bad_values(key: str, kind: type) -> list[tuple[str, str]]:
    """(value, what the one-line error says) of ``key``: each non-finite value and one just out of its range."""
    from practice_torch.engine.config import TRAIN_RANGES

    rule = TRAIN_RANGES[key]
    pair = (lambda v: f"0.5,{v}") if key == "betas" else (lambda v: v)
    not_finite = "expected a finite number" if kind is float else "expected int"
    out_of_range = "train.betas must be two numbers in [0, 1)" if key == "betas" else f"train.{key} must be {rule}, got"
    return [(pair(v), not_finite) for v in ("nan", "inf", "-inf")] + [(pair(OUT_OF_RANGE[rule]), out_of_range)]


@functools.cache
def model_keys(model: str) -> dict[str, tuple[type, bool, bool]]:
    """The numeric keys of a model's ``Config``: (int or float, whether a tuple of them, whether optional)."""
    import typing

    from practice_torch.engine.config import numeric_keys, type_hints
    from practice_torch.models import get_model

    config = get_model(model).Config
    hints = type_hints(config)
    return {key: (kind, tuple in {typing.get_origin(h) for h in (hints[key], *typing.get_args(hints[key]))},
                  type(None) in typing.get_args(hints[key]))
            for key, kind in numeric_keys(config).items()}


def model_settings(model: str, key: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The refused and the admitted ``model.KEY=VALUE`` settings of a numeric key of ``model``: ([(setting, what the
    one-line error says)], [setting]). Out of its range on each side (in a tuple, beside a number in range), and for a
    float NaN and the infinities; in range at its edge, and none where the key is optional."""
    from practice_torch.models import get_model

    kind, is_tuple, optional = model_keys(model)[key]
    rule = get_model(model).RANGES[key]
    inside = IN_RANGE[rule]
    as_set = (lambda v: f"model.{key}={inside},{v}") if is_tuple else (lambda v: f"model.{key}={v}")
    says = f"model.{key} must be {rule}{' (each number)' if is_tuple else ''}, got "
    refused = [(as_set(v), says) for v in OUTSIDE[rule] if kind is float or "." not in v]
    if kind is float:
        refused += [(as_set(v), "expected a finite number") for v in ("nan", "inf", "-inf")]
    return refused, [as_set(inside), *([f"model.{key}=none"] if optional else [])]
