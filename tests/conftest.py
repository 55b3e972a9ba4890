"""Shared fixtures: both backends at full precision (set once by ``shared_specs.runner.backends``)."""

import pytest

from shared_specs.runner import backends


@pytest.fixture(scope="session")
def both():
    """(TorchBackend, JaxBackend): importing them forces float64 support and highest matmul precision."""
    return backends()
