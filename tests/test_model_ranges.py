"""Every numeric ``model.*`` key of every model has a range (its adapter's ``RANGES``, in the words of
``engine.config.RULES``), and every config made from overrides holds to it (``engine.config.check_model``): a new
run and a resumed one in either trainer (``practice_torch train``, ``practice_jax train``), and ``sample``/``eval``.
A value out of range, and a float that is not finite, is one line on stderr and exit status 2, before any data is
loaded or anything is written; a value at the edge of its range, and none where a key is optional, passes.
No training: each refusal takes milliseconds."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from train_ranges import IN_RANGE, OUTSIDE, model_keys, model_settings

from practice_torch.engine.config import RULES, ConfigError, check_model, numeric_keys, parse_value, type_hints
from practice_torch.models import MODELS, get_model, new_run_config, open_run, resumed_config

ROOT = Path(__file__).parents[1]


def refused_in_one_line(code: int, err: str, says: str) -> None:
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and says in err, err


def run_folder(model: str, folder: Path) -> Path:
    """A run folder of ``model`` holding only its quick preset's config.json: enough for ``--resume``, ``sample`` and
    ``eval`` to read its config and refuse an override before they build or load anything."""
    from practice_torch.engine.runs import write_config

    run = folder / model
    run.mkdir(parents=True)
    write_config(run, new_run_config(model, None, None))
    return run


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# (a) a range for every numeric key, every range on a key, every preset in range -------------------------------------
def test_the_test_values_lie_outside_and_inside_each_rule():
    """Control for the refusals below: each value the tests call out of range is refused by its rule, each edge
    admitted, for every rule of the vocabulary."""
    assert set(OUTSIDE) == set(IN_RANGE) == set(RULES)
    for rule, test in RULES.items():
        assert test(float(IN_RANGE[rule])) and not any(test(float(v)) for v in OUTSIDE[rule]), rule


@pytest.mark.parametrize("model", MODELS)
def test_every_numeric_model_key_has_a_range_and_every_preset_is_in_it(model):
    module = get_model(model)
    assert set(module.RANGES) == set(numeric_keys(module.Config)), "a numeric key without a range, or a range on none"
    assert set(module.RANGES.values()) <= set(RULES)
    for rows in module.PRESETS.values():
        for row in rows.values():
            check_model(module, row.model)  # every preset of every data set is admitted
    check_model(module, module.Config())


def test_the_documented_model_settings_are_in_range():
    """Every ``model.KEY=VALUE`` of a numeric key that the README, docs/ and the benchmarks give is in range for some
    model with that key (the numbers a reader copies are admitted)."""
    found = {(key, value.rstrip(".")): path.relative_to(ROOT).as_posix()
             for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "benchmarks").glob("*.py")]
             for key, value in re.findall(r"model\.(\w+)=(-?[0-9][0-9.e+-]*(?:,[0-9.e+-]+)*)", path.read_text())}
    refused = []
    for (key, value), where in found.items():
        having = [get_model(model) for model in MODELS if key in model_keys(model)]
        if having and not any(admits(module, key, value) for module in having):
            refused.append(f"model.{key}={value} ({where})")
    assert len(found) > 30 and not refused


def admits(module, key: str, value: str) -> bool:
    try:
        parsed = parse_value(value, type_hints(module.Config)[key], key)
        check_model(module, dataclasses.replace(module.Config(), **{key: parsed}))
    except ConfigError:
        return False
    return True


# (b) the refusals, key by key: new runs --------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_a_new_run_refuses_each_key_out_of_range_in_one_line_and_admits_its_edge(model):
    """``new_run_config`` (both trainers' new runs): for every numeric key, values just outside its range on each side
    (in a tuple, beside a number in range) and a float's NaN and infinities are refused, each in one line; its edge,
    and none where the key is optional, pass. ``check_model`` also refuses a non-finite number that no parser read."""
    module = get_model(model)
    for key, (kind, _, _) in model_keys(model).items():
        refused, admitted = model_settings(model, key)
        assert refused, key
        for setting, says in refused:
            with pytest.raises(ConfigError, match=re.escape(says)) as caught:
                new_run_config(model, None, None, [setting])
            assert "\n" not in str(caught.value)
        for setting in admitted:
            new_run_config(model, None, None, [setting])
        if kind is float:
            value = getattr(module.Config(), key)
            nan = (math.nan,) if isinstance(value, tuple) else math.nan
            with pytest.raises(ConfigError, match=rf"^model\.{key} must be {re.escape(module.RANGES[key])}.*, got"):
                check_model(module, dataclasses.replace(module.Config(), **{key: nan}))


def test_the_issue_s_beta_of_minus_one_is_refused_as_the_readme_promises():
    with pytest.raises(ConfigError, match=r"^model\.beta must be at least 0, got -1\.0$"):
        new_run_config("vae", None, None, ["model.beta=-1"])


# (c) through the command lines: practice_torch train, practice_jax train, new and resumed -------------------------
@pytest.mark.parametrize("model", MODELS)
def test_practice_torch_train_refuses_each_range_of_each_model_and_writes_nothing(model, tmp_path, capsys):
    """One key of each range a model uses (the first in its ``RANGES``), through ``python -m practice_torch train``."""
    from practice_torch.cli import main

    out = tmp_path / "never"
    first = {}
    for key, rule in get_model(model).RANGES.items():
        first.setdefault(rule, key)
    for key in first.values():
        setting, says = model_settings(model, key)[0][0]
        code = main(["train", model, "--set", setting, "--out", str(out)])
        refused_in_one_line(code, capsys.readouterr().err, says)
    assert not out.exists()


def test_practice_jax_train_refuses_every_key_out_of_range_before_data_or_jax_work(tmp_path, capsys, monkeypatch):
    """Every numeric key of every model the JAX trainer trains (``twins.TRAINERS``), out of its range: exit 2, one
    line, nothing written, and neither the training split loaded nor a JAX run set up."""
    from practice_jax import cli, loop
    from practice_jax import runs as jax_runs
    from practice_jax.twins import TRAINERS
    from practice_torch.engine import runs

    def never(*args, **kwargs):
        raise AssertionError("reached past the config check")

    monkeypatch.setattr(loop, "train", never)
    monkeypatch.setattr(jax_runs, "engine_start", never)
    monkeypatch.setattr(runs, "load_split", never)
    out = tmp_path / "never"
    for model in TRAINERS:
        for key in model_keys(model):
            setting, says = model_settings(model, key)[0][0]
            code = cli.main([model, "--set", setting, "--out", str(out)])
            refused_in_one_line(code, capsys.readouterr().err, says)
    assert not out.exists()


def test_a_resumed_run_refuses_each_key_out_of_range_and_changes_nothing(tmp_path, capsys):
    """``resumed_config`` (both trainers' --resume) for every numeric key of every model, and --resume through both
    command lines: refused in one line, the run's folder as it was."""
    from practice_jax import cli
    from practice_torch.cli import main

    for model in MODELS:
        run = run_folder(model, tmp_path)
        for key in model_keys(model):
            setting, says = model_settings(model, key)[0][0]
            with pytest.raises(ConfigError, match=re.escape(says)):
                resumed_config(run, model, [setting])
    run = tmp_path / "vae"
    before = {p: p.read_bytes() for p in run.rglob("*")}
    refused_in_one_line(main(["train", "vae", "--resume", str(run), "--set", "model.beta=-1"]), capsys.readouterr().err,
                        "model.beta must be at least 0, got -1.0")
    refused_in_one_line(cli.main(["vae", "--resume", str(run), "--set", "model.tc_betas=0.5,1"]),
                        capsys.readouterr().err, "model.tc_betas must be in [0, 1) (each number), got (0.5, 1.0)")
    assert {p: p.read_bytes() for p in run.rglob("*")} == before


# (d) sample and eval --set ---------------------------------------------------------------------------------------
class Built(Exception):
    """What ``open_run`` reaches once the overrides pass: building the network (``runs.build_net``)."""


def test_sample_and_eval_refuse_each_key_they_take_out_of_range(tmp_path, capsys, monkeypatch):
    """Every numeric key a model's sample and eval take (its ``USE``) out of its range: ``open_run`` refuses it in
    one line, before it builds the network or reads a checkpoint (in range, it goes on to build the network);
    ``sample`` and ``eval`` exit 2 with that line and write nothing."""
    from practice_torch.cli import main
    from practice_torch.engine import runs

    def build_net(*args, **kwargs):
        raise Built

    used = 0
    for model in MODELS:
        module = get_model(model)
        run = run_folder(model, tmp_path)
        keys = [key for key in model_keys(model) if key in module.USE]
        for key in keys:
            for setting, says in model_settings(model, key)[0]:
                with pytest.raises(ConfigError, match=re.escape(says)):
                    open_run(run, torch.device("cpu"), [setting])
            with monkeypatch.context() as patch:
                patch.setattr(runs, "build_net", build_net)
                for setting in model_settings(model, key)[1]:
                    with pytest.raises(Built):
                        open_run(run, torch.device("cpu"), [setting])
        if keys:
            used += 1
            setting, says = model_settings(model, keys[0])[0][0]
            before = files_in(run)
            for command in ("sample", "eval"):
                code = main([command, str(run), "--device", "cpu", "--set", setting])
                refused_in_one_line(code, capsys.readouterr().err, says)
            assert files_in(run) == before
    assert used >= 20
