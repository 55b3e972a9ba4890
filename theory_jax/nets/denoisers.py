"""The noise-prediction network of vectors in flax: the twin of ``practice_torch/nets/denoisers.py`` (same class
names, fields and attribute names, so ``shared_specs.interop`` maps every weight one-to-one: torch ``time.0`` <->
flax ``time_0``, ``blocks.2.fc1`` <-> ``blocks_2/fc1``). It serves ddpm, score and latent_diffusion's eps_theta and
flow_matching's velocity field on 2-D data. Conventions pinned down: LayerNorm epsilon 1e-5 (torch's) with two-pass
variance, exact SiLU, the timestep embedding in blocks [sin | cos], and the class embedding's null row K (y = None or
y = K: no label, for label dropout and classifier-free guidance).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from theory_jax.nets.unet import GROUPNORM_EPS, timestep_embedding


def layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=GROUPNORM_EPS, use_fast_variance=False)


class ResidualMLPBlock(nn.Module):
    """h + W2 silu(W1 silu(LN(h)) + E emb): a pre-norm residual block with the embedding added in the middle.
    h, emb: (B, hidden) -> (B, hidden)."""

    hidden: int

    def setup(self):
        self.norm = layer_norm()
        self.fc1, self.emb, self.fc2 = nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(self.hidden)

    def __call__(self, h, emb):
        return h + self.fc2(nn.silu(self.fc1(nn.silu(self.norm(h))) + self.emb(emb)))


class MLPDenoiser(nn.Module):
    """eps_theta(x_t, t[, y]) for D-dimensional data: input projection, ``depth`` residual MLP blocks conditioned on
    the sinusoidal time embedding (+ the class embedding), output projection. x: (B, D), t: (B,) real, y: (B,) int or
    None -> (B, D)."""

    dim: int
    hidden: int = 256
    depth: int = 3
    num_classes: int = 0

    def setup(self):
        self.time_0, self.time_2 = nn.Dense(self.hidden), nn.Dense(self.hidden)  # torch's Sequential(Linear, SiLU, Linear)
        self.label = nn.Embed(self.num_classes + 1, self.hidden) if self.num_classes else None
        self.inp = nn.Dense(self.hidden)
        self.blocks = [ResidualMLPBlock(self.hidden) for _ in range(self.depth)]
        self.norm = layer_norm()
        self.out = nn.Dense(self.dim)

    def __call__(self, x, t, y=None):
        emb = self.time_2(nn.silu(self.time_0(timestep_embedding(jnp.asarray(t).astype(x.dtype), self.hidden))))
        if self.label is not None:
            y = jnp.full((x.shape[0],), self.num_classes, dtype=jnp.int32) if y is None else y
            emb = emb + self.label(y)
        emb = nn.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.silu(self.norm(h)))
