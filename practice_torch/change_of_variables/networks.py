"""``GaussianizationFlow``: the elementwise monotone flow stacked with LU mixing layers as a module (its parameters
are the arguments of ``functions.flow_forward``), so a 2-D density is more than a product of marginals.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from practice_torch.change_of_variables.functions import flow_forward, flow_inverse, flow_log_prob


class GaussianizationFlow(nn.Module):
    """``layers`` elementwise flows of ``components`` logistics each with LU mixing between them; base N(0, I).
    At initialisation every layer is the same smooth map (means evenly on [-2.5, 2.5]) and the mixing is I."""

    def __init__(self, dim: int, components: int = 8, layers: int = 3):
        super().__init__()
        if dim < 1 or components < 1 or layers < 1:
            raise ValueError(f"dim, components and layers must be positive, got {dim}, {components}, {layers}")
        n, d, k = layers, dim, components
        self.dim = dim
        self.logits = nn.Parameter(torch.zeros(n, d, k))
        self.means = nn.Parameter(torch.linspace(-2.5, 2.5, k).expand(n, d, k).clone())
        self.log_scales = nn.Parameter(torch.full((n, d, k), math.log(5.0 / max(k - 1, 1))))
        self.lower = nn.Parameter(torch.zeros(n - 1, d, d))
        self.upper = nn.Parameter(torch.zeros(n - 1, d, d))
        self.log_diag = nn.Parameter(torch.zeros(n - 1, d))
        self.shift = nn.Parameter(torch.zeros(n - 1, d))

    def flow_params(self):
        return (self.logits, self.means, self.log_scales, self.lower, self.upper, self.log_diag, self.shift)

    def forward(self, x):
        """x: (B, d) -> z (B, d), log |det dz/dx| (B,)."""
        return flow_forward(x, *self.flow_params())

    def inverse(self, z):
        return flow_inverse(z, *self.flow_params())

    def log_prob(self, x):
        return flow_log_prob(x, *self.flow_params())

    def loss(self, x):
        """Mean negative log-likelihood in nats per example (maximum likelihood)."""
        return -torch.mean(self.log_prob(x))
