"""What a JAX twin check reports (``shared_specs/twin_check.py`` drives them; each topic's
``shared_specs/twins/<topic>.py`` computes them): a ``Row`` per recomputed metric, held to the float64 likelihood
tolerance ``LEVEL``, and ``CheckError`` for a run that cannot be checked (exit 2, one line)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from project.compare import Tolerance

LEVEL = "loglik"  # the policy level of a log-likelihood in float64


@dataclass(frozen=True)
class Row:
    """One recomputed metric."""

    metric: str
    units: str
    torch_value: float
    jax_value: float
    tol: Tolerance

    @property
    def difference(self) -> float:
        return abs(self.torch_value - self.jax_value)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.difference)) and self.difference <= self.tol.atol + self.tol.rtol * abs(
            self.torch_value)


class CheckError(Exception):
    """Bad input: exit 2 with this one-line message."""
