"""The results table's data, ``docs/results.json``: one row per trained run, read off the run, never typed.

    python -m practice_torch results RUN [RUN ...] --load "idle"   # add the runs' rows (a row per model,
                                                                   # data set, preset and device is replaced)

A row holds what a reader needs to trust a figure: the model, data set and preset (and every setting the run
changed from that preset), the headline held-out figure with its units (the first of the adapter's
``HEADLINE`` keys that the run's ``eval_test.json`` has), every other metric of that file, the steps and the
training wall time (``metrics.jsonl``), and where it ran (``environment.json``: CPU or GPU, cores, processes, the
commit) with the load the user states. ``python -m shared_specs docs`` (``make docs``) renders the README's
results table and each topic page's from it. A run on a control task (``--dataset cartpole``) gives a row of
``kind`` 'control' with the environment steps it trained and the first at which its recent episodes averaged the
task's solved return, which the README shows in its own table.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from practice_torch.engine import RunError
from project.environment import cores_text

RESULTS_FILE = Path(__file__).resolve().parent.parent / "docs" / "results.json"
EVAL_FILE = "eval_test.json"


def _flat(cfg) -> dict[str, Any]:
    """``{"model.beta": 1.0, "train.steps": 4000, ...}`` of a RunConfig."""
    return {f"{section}.{k}": v for section, obj in cfg.sections().items() for k, v in dataclasses.asdict(obj).items()}


# Settings that say where or how fast a run went, not what it trained.
NOT_SETTINGS = ("train.device", "train.threads", "data.data_dir", "data.download",
                "model.autoencoder_root")  # (the last: where a prerequisite run was trained)


def preset_and_changes(module, cfg) -> tuple[str, list[str]]:
    """The preset nearest to the run's configuration and the ``section.key=value`` settings it changed."""
    run = _flat(cfg)
    best: tuple[int, str, list[str]] | None = None
    from practice_torch.engine.config import PRESETS

    for name in PRESETS:
        try:
            ref = _flat(module.default_config(name, cfg.data.name))
        except Exception:  # a preset with no row for this data set
            continue
        changes = [f"{k}={run[k]}" for k in run if k not in NOT_SETTINGS and run[k] != ref.get(k)]
        if best is None or len(changes) < best[0]:
            best = (len(changes), name, changes)
    return ("custom", []) if best is None else (best[1], best[2])


def headline(module, metrics: dict[str, Any]) -> tuple[str, str, str]:
    """(key, label, units) of the first ``HEADLINE`` entry whose key the evaluation reported."""
    for key, label, units in getattr(module, "HEADLINE", ()):
        if isinstance(metrics.get(key), (int, float)):
            return key, label, units
    raise RunError(f"{EVAL_FILE} reports none of {module.__name__}.HEADLINE's metrics; "
                   f"it has {', '.join(metrics) or 'nothing'}")


def training_seconds(records: list[dict]) -> float:
    """The training time of a run from its metrics.jsonl: each session's clock (``time_s``) starts again at zero
    when a run is resumed, so the sessions' last readings are summed."""
    total, last = 0.0, 0.0
    for record in records:
        if record["time_s"] < last:  # a new session
            total += last
        last = record["time_s"]
    return total + last


def machine(env: dict[str, Any]) -> str:
    """'AMD EPYC (AVX512), 2 cores' or 'NVIDIA H100 80GB HBM3 x 2'. The vector extension torch's kernels ran with is
    named because one model name covers CPUs whose speeds differ several times (AVX2 against AVX-512 EPYCs)."""
    if env.get("gpu"):
        n = env.get("processes", 1)
        return env["gpu"] + (f" x {n}" if n > 1 else "")
    capability = (env.get("torch") or {}).get("cpu_capability")
    return f"{env.get('cpu', 'unknown CPU')}{f' ({capability})' if capability else ''}, {cores_text(env)}"


def result_row(run_dir: Path, load: str) -> dict[str, Any]:
    """The results row of the trained and evaluated run in ``run_dir``; RunError (one line) when it is not both."""
    from practice_torch.engine.metrics import read_metrics
    from practice_torch.engine.runs import ENVIRONMENT_FILE
    from practice_torch.models import get_model, run_config, run_model_name

    cfg = run_config(run_dir)
    module = get_model(run_model_name(run_dir))
    eval_path, env_path = run_dir / EVAL_FILE, run_dir / ENVIRONMENT_FILE
    if not eval_path.is_file():
        raise RunError(f"{run_dir} has no {EVAL_FILE}: run `python -m practice_torch eval {run_dir}` first")
    if not env_path.is_file():
        raise RunError(f"{run_dir} has no {ENVIRONMENT_FILE} (trained before runs recorded it): train it again")
    metrics, env = json.loads(eval_path.read_text()), json.loads(env_path.read_text())
    records = read_metrics(run_dir)
    if not records or records[-1]["step"] < cfg.train.steps:
        raise RunError(f"{run_dir} has not finished training ({records[-1]['step'] if records else 0} of "
                       f"{cfg.train.steps} steps): resume it, then evaluate it")
    preset, changes = preset_and_changes(module, cfg)
    key, label, units = headline(module, metrics)
    return {"model": cfg.model_name, "dataset": cfg.data.name, **control_fields(cfg, records),
            "preset": preset, "changes": changes,
            "metric": key, "label": label, "value": metrics[key], "units": units,
            "steps": records[-1]["step"], "train_seconds": round(training_seconds(records), 1),
            "resumed": env.get("from_step", 0) > 0, "machine": machine(env), "device": env.get("device", "cpu"),
            **({"backend": env["backend"]} if env.get("backend", "pytorch") != "pytorch" else {}),
            "load": load, "commit": env.get("commit"), "date": datetime.date.today().isoformat(),
            "run": run_dir.name, "metrics": metrics}


def control_fields(cfg, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A control task's row's own fields: ``kind`` 'control', the environment steps trained and the first logged
    at which the recent episodes' mean return (``episode_return``) reached the task's solved threshold (None: never);
    nothing for a data set."""
    from practice_torch.data import get_info
    from practice_torch.data.control import SOLVED

    environment = get_info(cfg.data.name).environment
    if environment is None:
        return {}
    threshold = SOLVED.get(environment)
    solved = next((r["env_steps"] for r in records if threshold is not None and "episode_return" in r
                   and r["episode_return"] >= threshold), None)
    return {"kind": "control", "environment": environment, "env_steps": records[-1]["env_steps"],
            "steps_to_solved": solved}


def preset_timing(rows: list[dict[str, Any]], model: str, dataset: str, preset: str = "quick",
                  given: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The row of ``rows`` for ``model``'s ``preset`` on ``dataset`` as it comes (no setting changed but the model
    keys in ``given``: the runs it builds on, which it needs), an idle machine's first, then the newest; None when
    no such run was measured."""
    from practice_torch.engine.config import RETIRED

    def as_it_comes(row):
        keys = [change.partition("=")[0] for change in row["changes"]]
        return all(k in RETIRED or k.partition(".")[2] in given for k in keys)

    found = [r for r in rows if (r["model"], r["dataset"], r["preset"]) == (model, dataset, preset) and as_it_comes(r)]
    return max(found, key=lambda r: (r["load"].startswith("idle"), r.get("date", "")), default=None)


def row_key(row: dict[str, Any]) -> tuple:
    return row["model"], row["dataset"], row["preset"], tuple(row["changes"]), row["device"], row.get("backend", "")


def add_rows(rows: list[dict[str, Any]], path: Path = RESULTS_FILE) -> list[dict[str, Any]]:
    """``path``'s rows with ``rows`` added (a row with the same model, data set, preset, changes and device is
    replaced), in the catalogue's order; written atomically."""
    from practice_torch.engine.checkpoint import atomic_write
    from project.catalogue import TOPICS

    old = json.loads(path.read_text()) if path.is_file() else []
    merged = {row_key(r): r for r in old} | {row_key(r): r for r in rows}
    order = {t.name: i for i, t in enumerate(TOPICS)}
    table = sorted(merged.values(), key=lambda r: (order.get(r["model"], len(order)), r["dataset"], r["preset"],
                                                   r["device"], r["changes"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(table, indent=1) + "\n"))
    return table
