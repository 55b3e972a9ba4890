"""Shared fixtures: both backends at full precision (set once by ``shared_specs.runner.backends``); one intra-op
thread for test files of small networks (``pytestmark = pytest.mark.usefixtures("one_thread")``).

``make test`` runs the suite on two pytest-xdist workers (``-n 2``, files kept whole by ``--dist loadfile`` so a
module's fixtures are built once). Each worker then owns one core: torch, XLA and the subprocesses the tests start
get one thread each, set here before torch or JAX is imported (two workers of two threads each on two cores would
spin against each other)."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses of the tests
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import pytest  # noqa: E402
import torch  # noqa: E402

from shared_specs.runner import backends


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
