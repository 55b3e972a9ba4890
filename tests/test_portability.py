"""``python -m shared_specs portability``: the settings start XLA and torch with the kernels they ask for, and the
comparison reports every failure, every report missing and every claim or case near its tolerance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared_specs import portability
from shared_specs.portability import BY_NAME, SETTINGS, compare, environment_for

PROBE = ("import jax, jax.numpy as jnp, torch, json, os; jnp.sin(jnp.ones(3)).block_until_ready(); "
         "print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), "
         "'threads': torch.get_num_threads(), 'xla': os.environ.get('XLA_FLAGS', '')}))")


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_each_setting_starts_xla_and_torch_with_its_kernels(setting):
    """XLA aborts on a flag it does not know, so a run of one operation proves the flags parse."""
    proc = subprocess.run([sys.executable, "-c", PROBE], env=environment_for(setting), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["xla"] == setting.env.get("XLA_FLAGS", "")
    if setting.env.get("ATEN_CPU_CAPABILITY") == "default":
        assert seen["capability"] == "DEFAULT"
    if "OMP_NUM_THREADS" in setting.env:
        assert seen["threads"] == int(setting.env["OMP_NUM_THREADS"])


def test_a_setting_replaces_the_callers_kernel_variables():
    env = environment_for(BY_NAME["default"], {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "HOME": "/h"})
    assert "XLA_FLAGS" not in env and env["HOME"] == "/h"
    assert environment_for(BY_NAME["sse4"], {"XLA_FLAGS": "x"})["XLA_FLAGS"].startswith("--xla_cpu_max_isa=SSE4_2")


def _lowered(x):
    """A fresh program of a few operations (its own jaxpr, so no lowering cache answers), lowered for ``x``."""
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda y: jnp.sum(jnp.exp(y) * jnp.log1p(y**2), axis=0)).lower(x)


def test_the_suites_one_mlir_context_lowers_as_a_context_of_its_own(monkeypatch):
    """``conftest.one_mlir_context``: the suite's lowerings share one context, and a program lowered there has the
    same text, and computes the same bits, as in a context of its own (JAX's own way, the negative control)."""
    import numpy as np
    from jax._src.interpreters import mlir

    x = np.linspace(0.1, 2.0, 12).reshape(4, 3)
    shared = _lowered(x)
    assert shared.compiler_ir().context is _lowered(x).compiler_ir().context, "each lowering made a context"
    monkeypatch.setattr(mlir, "make_ir_context", mlir.make_ir_context.__wrapped__)
    own = _lowered(x)
    assert own.compiler_ir().context is not shared.compiler_ir().context
    assert own.as_text() == shared.as_text()
    assert np.asarray(own.compile()(x)).tobytes() == np.asarray(shared.compile()(x)).tobytes()


def _derivations(*claims):
    return {"topics": {"elbo": {"crashed": False, "claims": [
        {"number": i + 1, "passed": passed, "ratio": ratio, "statement": f"claim {i + 1}", "detail": "d"}
        for i, (passed, ratio) in enumerate(claims)]}}}


def _specs(*cases):
    return {"topics": {"vae": [{"case": f"vae/{i}", "passed": passed, "ratio": ratio, "error": None,
                                "checks": {"output": {"ratio": ratio}}} for i, (passed, ratio) in enumerate(cases)]}}


def test_compare_reports_failures_missing_reports_and_claims_near_their_tolerance():
    reports = {"default": {"derivations": _derivations((True, 1e-6), (True, 0.02)), "specs": _specs((True, 0.01))},
               "sse4": {"derivations": _derivations((False, 3e3), (True, 0.5)), "specs": None}}
    result = compare(reports)
    assert [(f["setting"], f["item"]) for f in result["failures"]] == [("sse4", "elbo #1")]
    assert result["missing"] == [{"setting": "sse4", "job": "specs"}]
    assert [f["item"] for f in result["fragile"]] == ["elbo #1", "elbo #2"]  # worst first
    assert result["fragile"][1]["ratios"] == {"default": 0.02, "sse4": 0.5}


def test_compare_is_quiet_when_every_setting_passes_with_room():
    ok = {"derivations": _derivations((True, 1e-6)), "specs": _specs((True, 0.05))}
    assert compare({"default": ok, "one-thread": ok}) == {"failures": [], "fragile": [], "missing": []}


def test_a_crashed_derivation_counts_as_a_failure():
    crashed = {"topics": {"vae": {"crashed": True, "claims": []}}}
    assert compare({"default": {"derivations": crashed}})["failures"][0]["item"] == "vae (crashed)"


def test_the_command_runs_every_job_writes_a_summary_and_fails_on_a_failure(monkeypatch, tmp_path, capsys):
    ran = []

    def fake_run(setting, job, topics, folder):
        ran.append((setting.name, job, tuple(topics)))
        good = _derivations((True, 1e-6)) if job == "derivations" else _specs((True, 1e-3))
        bad = _derivations((False, 2.0)) if job == "derivations" else good
        return (bad if setting.name == "sse4" else good), 1.0, folder / "log"

    monkeypatch.setattr(portability, "run_job", fake_run)
    assert portability.main(["default", "sse4"], ["elbo"], tmp_path, jobs=2) == 1
    assert sorted(ran) == [(s, j, ("elbo",)) for s in ("default", "sse4") for j in ("derivations", "specs")]
    summary = json.loads((tmp_path / "portability.json").read_text())
    assert summary["failures"][0]["setting"] == "sse4" and set(summary["settings"]) == {"default", "sse4"}
    assert "FAIL     sse4 derivations elbo #1" in capsys.readouterr().out
    assert portability.main(["no-such-setting"], [], tmp_path, jobs=1) == 2
