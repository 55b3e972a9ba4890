"""The learned vector field of a CNF and the flow around it (FFJORD, Grathwohl et al. 2019).

``ODEField`` is an MLP f(t, x) whose layers see the time either FFJORD's way (ConcatSquashLinear: the layer's output
gated and shifted by t) or concatenated to the input. ``CNF`` wraps it with the solver settings used for the
training loss, its log-likelihood (``practice_torch.cnf.log_likelihood``) and its sampler (the ODE from t = 0 noise
to t = 1 data).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from practice_torch.cnf.functions import CountingField, log_likelihood, transport

ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "silu": nn.SiLU}
TIME_INPUTS = ("concatsquash", "concat")


class ConcatSquashLinear(nn.Module):
    """y = (W x + b) * sigmoid(W_g t + b_g) + W_b t: a linear layer gated and shifted by the time (FFJORD's code)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(1, d_out)
        self.shift = nn.Linear(1, d_out, bias=False)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """t: (), x: (B, d_in) -> (B, d_out)."""
        tt = t.reshape(1, 1).to(x)
        return self.linear(x) * torch.sigmoid(self.gate(tt)) + self.shift(tt)


class ConcatLinear(nn.Module):
    """y = W [x, t] + b: the time as one more input feature."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in + 1, d_out)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """t: (), x: (B, d_in) -> (B, d_out)."""
        return self.linear(torch.cat([x, t.reshape(1, 1).to(x).expand(x.shape[0], 1)], dim=1))


class ODEField(nn.Module):
    """f(t, x): (B, D) -> (B, D), an MLP of time-aware layers with a smooth activation between them (a smooth field:
    the ODE has unique solutions and the divergence exists)."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64, 64, 64), time_input: str = "concatsquash",
                 activation: str = "tanh") -> None:
        super().__init__()
        layer = {"concatsquash": ConcatSquashLinear, "concat": ConcatLinear}[time_input]
        widths = (dim, *hidden, dim)
        self.layers = nn.ModuleList(layer(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class CNF(nn.Module):
    """A continuous normalizing flow on vectors x (D,): the field (``forward(t, x)``) plus the solver settings of the
    training loss (``train_solver``: method, atol, rtol, steps; ``adjoint``)."""

    def __init__(self, field: ODEField, dim: int, train_solver: dict, adjoint: bool = False) -> None:
        super().__init__()
        self.field = field
        self.dim = dim
        self.train_solver = dict(train_solver)
        self.adjoint = adjoint

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """dx/dt = f(t, x). t: (), x: (B, D) -> (B, D)."""
        return self.field(t, x)

    def log_prob(self, x: Tensor, *, trace: str = "exact", probe: Tensor | None = None,
                 generator: torch.Generator | None = None, **solver) -> tuple[Tensor, int]:
        """(log p_1(x) (B,), number of field evaluations) by the instantaneous change of variables; the training
        solver unless ``solver`` overrides it (method, atol, rtol, steps)."""
        counted = CountingField(self.field)
        options = self.train_solver | solver
        ll = log_likelihood(counted, x, trace=trace, probe=probe, generator=generator,
                            adjoint=self.adjoint and torch.is_grad_enabled(), **options)
        return ll, counted.nfe

    def transport(self, z: Tensor, times: Tensor | None = None, **solver) -> tuple[Tensor, int]:
        """(x at each of ``times`` (T, B, D), default [0, 1]; number of field evaluations): noise z (B, D) pushed
        along dx/dt = f(t, x)."""
        counted = CountingField(self.field)
        return transport(counted, z, times=times, **(self.train_solver | solver)), counted.nfe
