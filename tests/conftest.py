"""Shared fixtures: both backends at full precision (set once by ``shared_specs.runner.backends``); one intra-op
thread for test files of small networks (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""

import pytest
import torch

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
