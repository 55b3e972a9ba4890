"""Noise-prediction networks eps_theta(x_t, t[, y]) for vectors (ddpm, score, latent_diffusion, and flow_matching's
velocity field v(t, x)); images use ``practice_torch.nets.UNet``.

Both follow one conditioning convention: with ``num_classes = K > 0`` the class embedding has K + 1 rows and y = K
(or y=None) is the "no label" null token of label dropout and classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.nets.unet import frequency_buffer, timestep_embedding

__all__ = ["MLPDenoiser"]


class ResidualMLPBlock(nn.Module):
    """h + W2 silu(W1 silu(LN(h)) + E emb): a pre-norm residual block with the embedding added in the middle."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1, self.emb, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, h, emb):
        return h + self.fc2(F.silu(self.fc1(F.silu(self.norm(h))) + self.emb(emb)))


class MLPDenoiser(nn.Module):
    """eps_theta(x_t, t[, y]) for D-dimensional data: input projection, ``depth`` residual MLP blocks conditioned on
    the sinusoidal time embedding (+ the class embedding), output projection (zero-initialised, so the untrained
    net predicts eps = 0). x: (B, D), t: (B,) real, y: (B,) long or None -> (B, D)."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, num_classes: int = 0):
        super().__init__()
        if dim < 1 or hidden < 2 or depth < 1:
            raise ValueError(f"MLPDenoiser needs dim >= 1, hidden >= 2, depth >= 1; got {dim}, {hidden}, {depth}")
        self.dim, self.hidden, self.num_classes = dim, hidden, num_classes
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        frequency_buffer(self, hidden)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # float64 in a float64 net
        emb = self.time(timestep_embedding(t, self.hidden, self.inp.weight.dtype, self.frequencies))
        if self.label is not None:
            if y is None:
                y = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label(y.long())
        emb = F.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm(h)))
