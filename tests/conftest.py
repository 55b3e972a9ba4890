"""Shared fixtures: both backends at full precision (set once by ``shared_specs.runner.backends``); one intra-op
thread for test files of small networks (``pytestmark = pytest.mark.usefixtures("one_thread")``).

``make test`` runs the suite on one pytest-xdist worker per core (``--dist loadgroup``, scheduled here by
``work_unit``). Each test file runs whole on one worker, so its module fixtures are built once, except the files of
independent cases (``SPREAD``: every derivation, spec case and twin-training case), whose tests go to whichever
worker is free. Each worker owns one core: torch, XLA's Eigen kernels, XLA's compiler and the subprocesses the tests
start get one thread each, set here before torch or JAX is imported (two workers of two threads each on two cores
would spin against each other).

XLA compiles for speed of compiling here: the tests compile thousands of small programs on arrays of a few hundred
values, where optimising costs more than it saves. Without LLVM's optimisations (``--xla_backend_optimization_level=0``:
a quarter of the spec cases' time, an eighth of the derivations') and with XLA's older elemental emitters in place of
its MLIR fusion emitters (``--xla_cpu_use_fusion_emitters=false``: a compile takes half as long on a 2-core AVX2 EPYC,
a third off the derivations and the spec cases). The few derivation programs that run far longer than they compile
(a thousand Langevin steps, a density on two million points) ask for XLA's default level themselves
(``theory_jax.derivation.optimised_jit``). Every claim and case holds at its policy tolerance either way;
``make check``, ``make derivations`` and ``make docs`` run XLA's default, and ``make portability`` other kernels.

JAX also lowers every program in an MLIR context of its own, and creating one (its dialects registered and loaded)
costs about 5 ms: the derivations compile some 5000 programs, nine in ten of them single operations run eagerly. The
tests lower every program in one context (``one_mlir_context``). On a 2-core AVX2 EPYC that took the derivations from
363 to 266 s of ``make test``'s time and the spec cases from 200 to 177 s; six derivations in one process peak at 1.6
GB instead of 2.8. The compiled programs are the same (``tests/test_portability.py``), and so is every claim's
discrepancy, to the bit."""

import gc
import os
from importlib.metadata import PackageNotFoundError, version

gc.disable()  # until the tests are collected (``pytest_collection_finish``)


def xla_flags(jaxlib: str, worker: bool) -> list[str]:
    """The suite's XLA_FLAGS for XLA of ``jaxlib``'s version (see the module docstring); ``worker``: the process is
    one of pytest-xdist's. XLA aborts the process on a flag it does not know, so a flag goes only to the versions
    that have it: jaxlib 0.11 has no ``--xla_cpu_use_fusion_emitters`` (an H200 machine's jaxlib 0.11.2 ended
    ``pytest -m gpu`` at its first test, the log cut off at "Unknown flag in XLA_FLAGS")."""
    flags = ["--xla_backend_optimization_level=0"]
    if tuple(int(p) for p in jaxlib.split(".")[:2] if p.isdigit()) < (0, 11):
        flags.append("--xla_cpu_use_fusion_emitters=false")
    if worker:
        # One thread compiles too: XLA splits each program's LLVM module into parts to compile them in parallel, which
        # on one thread is only overhead (a third off the spec cases, a fifth off the derivations on a 2-core AVX2
        # EPYC).
        flags += ["--xla_cpu_multi_thread_eigen=false", "--xla_cpu_parallel_codegen_split_count=1"]
    return flags


def _jaxlib_version() -> str:
    try:
        return version("jaxlib")
    except PackageNotFoundError:  # no jaxlib: JAX's tests fail on their import, not on a flag
        return "0"


if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses of the tests
os.environ.setdefault("XLA_FLAGS", " ".join(xla_flags(_jaxlib_version(), bool(os.environ.get("PYTEST_XDIST_WORKER")))))
# A completed run's loss.png is about half a second of matplotlib drawing axes, more than a few-step run trains: 209
# of the suite's runs drew one, 67 s of its 897 s of CPU at 5b6ef9b. The suite's runs draw none, the CLI's
# subprocesses included (``practice_torch.engine.runs.LOSS_PLOT_ENV``), except in the tests that ask (``loss_plot``).
os.environ.setdefault("GENERATIVE_TWINS_LOSS_PLOT", "0")

import functools  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from shared_specs.runner import backends  # noqa: E402


def one_mlir_context() -> None:
    """Every JAX lowering in this process in one MLIR context, created once (see the module docstring): JAX looks
    ``mlir.make_ir_context`` up at each lowering, so it is replaced by its cached self. Where a JAX version has no
    such function the suite runs as it is, one context a lowering."""
    from jax._src.interpreters import mlir

    if callable(getattr(mlir, "make_ir_context", None)):
        mlir.make_ir_context = functools.cache(mlir.make_ir_context)


one_mlir_context()


def no_compilation_cache() -> None:
    """JAX computes a program's key for its persistent cache (the program serialised and hashed with its options)
    before every compile, a cache folder or not; the suite compiles some 10 000 programs and keeps none, except
    where ``kept_programs`` says so."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)


no_compilation_cache()

SPREAD = {"test_derivations.py", "test_specs.py", "test_twin_training.py"}  # independent cases, spread one by one


def work_unit(nodeid: str) -> str:
    """What one worker runs whole: the test's file (its module fixtures built once), or the test alone in ``SPREAD``."""
    file = nodeid.split("::", 1)[0]
    return nodeid if file.rsplit("/", 1)[-1] in SPREAD else file


def pytest_collection_finish(session) -> None:
    """Collecting imports every test file and what it imports (torch, JAX, the project) and rewrites their asserts:
    millions of objects, few of them garbage, which the cyclic collector would scan over and over (half the
    collection's time on a 2-core AVX2 EPYC: 13 s of CPU a worker with it, 7 s without). It runs with the collector
    off, and the objects it made are frozen (``gc.freeze``: never scanned again) before the collector comes back on
    for the tests.

    The tests then fill JAX's and torch's caches (traced, lowered and compiled programs), which live to the end and
    which every full collection scans again: at Python's thresholds (700, 10, 10) a worker ran 65 of them, 0.37 s
    each, 28 s of its 355. A collection of the youngest generation every 10 000 allocations instead of 700 leaves
    the rest of the schedule as it is and makes each generation's turn come 14 times less often: 6 or 7 full
    collections, 9 to 11 s of collecting a worker in all (the whole suite, two workers, on a 2-core AVX2 EPYC), the
    memory at its peak within 3% (one process running a third of the suite)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()


def pytest_sessionstart(session) -> None:
    """pytest-xdist's controller collects nothing (its workers do): the collector comes back on here."""
    if session.config.getoption("numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        gc.enable()


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` as ``work_unit`` groups: pytest-xdist's own loadgroup marks a test's group by rewriting
    its ``_nodeid``, which pytest 9 no longer reads (its node ids are ``_id``), so every test went to whichever
    worker was free and a file's module fixtures were built on both workers, and again after every test of
    another file between two of its own. xdist's loadscope scheduler with this split instead: the units go out the
    largest first, the spread cases last, where they fill the gaps."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


@pytest.fixture(scope="module")
def kept_programs(tmp_path_factory):
    """A test file that builds the same programs again and again by new closures (an exercise's reference and each of
    its named mistakes): XLA's programs that took 15 ms or more to compile are kept in a folder of this worker's
    (JAX's persistent cache, keyed by the program), and read back instead of compiled again: test_exercises took
    37 s of CPU without, 25 s with (on a 2-core AVX2 EPYC). Elsewhere, where a program is compiled once, it only
    costs: every compile keyed, every kept program serialised and written."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    settings = {"jax_enable_compilation_cache": True, "jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla")),
                "jax_persistent_cache_min_compile_time_secs": 0.015, "jax_persistent_cache_min_entry_size_bytes": 0}
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture()
def loss_plot(monkeypatch):
    """Runs finished in this test draw their RUN/loss.png, as everywhere outside the suite."""
    monkeypatch.setenv("GENERATIVE_TWINS_LOSS_PLOT", "1")


@pytest.fixture(scope="session")
def both():
    """(TorchBackend, JaxBackend): importing them forces float64 support and highest matmul precision."""
    return backends()


@pytest.fixture()
def one_thread():
    """Small networks: one intra-op thread is faster than two (and immune to a busy machine); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The reference model of the fine-tuning tests (policy_gradient, ppo, trpo, reward_model, dpo): trained once per worker.
TINY_LM = ["--set", "model.dim=32", "--set", "model.layers=1", "--set", "model.heads=2", "--set",
           "model.context=24", "--set", "train.samples=1", "--set", "model.sample_length=8", "--set",
           "model.bpe_merges=0", "--set", "train.log_every=5", "--set", "train.val_batch=8"]


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    """A tiny character Transformer (1 layer, width 32, context 24) trained for 10 steps on shakespeare."""
    from practice_torch.cli import main

    run = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "language_model", "--steps", "10", "--out", str(run), *TINY_LM]) == 0
    return run
