"""The vector-quantised VAE: nearest-codebook quantisation, the straight-through estimator, the codebook and
commitment losses, the EMA codebook, codebook usage and dead-code restarts.

Lectures: discrete latents; VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning", eq. 1-3
and appendix A.1 for the EMA codebook); the straight-through estimator (Bengio et al. 2013); k-means (Lloyd 1982)
as the limit of the EMA update; codebook collapse, perplexity and dead-code restarts (Dhariwal et al. 2020,
Jukebox).
Twin: ``practice_torch/vq_vae/`` (same names); cases: ``shared_specs/vq_vae.py``.

Vectors are rows: an encoder output ``z_e: (B, h, w, D)`` (NHWC here, NCHW in torch) is quantised as
``(B h w, D)`` rows. ``stop_gradient`` is ``jax.lax.stop_gradient`` (torch: ``.detach()``). Randomness is an
argument: ``restart_dead_codes`` takes the rows that replace the dead codes as ``choice``. The flax networks have
the same class and attribute names as ``practice_torch/vq_vae/networks.py``, so ``shared_specs.interop`` carries
the weights across.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.nets.conv import ConvTranspose, GroupNorm
from theory_jax.vae import GROUPNORM_EPS, conv_transpose_padding, downsample, downsampling_convs

stop_gradient = jax.lax.stop_gradient


# 1. Nearest-codebook assignment (van den Oord et al. 2017, eq. 1-2) ------------------------------
def squared_distances(z, codebook):
    """||z_n - e_k||^2 for every row and code, expanded as ||z||^2 - 2 z.e + ||e||^2.
    z: (N, D), codebook: (K, D) -> (N, K)."""
    return jnp.sum(z**2, axis=-1, keepdims=True) - 2.0 * z @ codebook.T + jnp.sum(codebook**2, axis=-1)


def nearest_code(z, codebook):
    """k_n = argmin_k ||z_n - e_k||^2 (eq. 1; ties go to the lowest index). z: (N, D), codebook: (K, D) -> (N,) int."""
    return jnp.argmin(squared_distances(z, codebook), axis=-1)


def quantise(z, codebook):
    """z_q = e_{k(z)} (eq. 2) and the indices. z: (N, D), codebook: (K, D) -> (z_q (N, D), indices (N,))."""
    indices = nearest_code(z, codebook)
    return codebook[indices], indices


# 2. The straight-through estimator -------------------------------------------------------------------
def straight_through(z, z_q):
    """z + sg(z_q - z): equals z_q forward, and its backward is the identity on z (the decoder's gradient is
    copied to the encoder output), with no gradient to the codebook. z, z_q: (N, D) -> (N, D)."""
    return z + stop_gradient(z_q - z)


# 3. The codebook and commitment losses (eq. 3) --------------------------------------------------------
def codebook_loss(z, z_q):
    """||sg(z) - z_q||^2 per row: moves the codebook towards the encoder outputs, not the encoder.
    z, z_q: (N, D) -> (N,)."""
    return jnp.sum((stop_gradient(z) - z_q) ** 2, axis=-1)


def commitment_loss(z, z_q):
    """||z - sg(z_q)||^2 per row (weighted by beta in the loss): moves the encoder towards its codes, not the
    codebook. z, z_q: (N, D) -> (N,)."""
    return jnp.sum((z - stop_gradient(z_q)) ** 2, axis=-1)


def vector_quantise(z, codebook):
    """The quantisation layer of eq. 3 in one call: (straight_through(z, z_q), codebook_loss(z, z_q),
    commitment_loss(z, z_q)) with z_q = quantise(z, codebook). Its gradients are the VQ-VAE's: the decoder's
    gradient reaches z unchanged, the codebook loss moves only the codebook, the commitment loss only z.
    z: (N, D), codebook: (K, D) -> ((N, D), (N,), (N,))."""
    z_q, _ = quantise(z, codebook)
    return straight_through(z, z_q), codebook_loss(z, z_q), commitment_loss(z, z_q)


# 4. The EMA codebook (van den Oord et al. 2017, appendix A.1) ---------------------------------------
def assignment_stats(z, indices, num_codes: int):
    """The batch's counts n_k and sums sum_{n: k_n = k} z_n. z: (N, D), indices: (N,) -> ((K,), (K, D))."""
    one_hot = jax.nn.one_hot(indices, num_codes, dtype=z.dtype)  # (N, K)
    return jnp.sum(one_hot, axis=0), one_hot.T @ z


def ema_update(cluster_size, embed_sum, z, indices, decay):
    """N_k <- decay N_k + (1 - decay) n_k and m_k <- decay m_k + (1 - decay) sum_{k_n = k} z_n.
    cluster_size: (K,), embed_sum: (K, D), z: (N, D), indices: (N,) -> ((K,), (K, D))."""
    counts, sums = assignment_stats(z, indices, cluster_size.shape[0])
    return decay * cluster_size + (1.0 - decay) * counts, decay * embed_sum + (1.0 - decay) * sums


def ema_codebook(cluster_size, embed_sum, eps):
    """e_k = m_k / N~_k with Laplace-smoothed counts N~_k = (N_k + eps) / (n + K eps) n, n = sum_k N_k, so a code
    that has lost its vectors does not divide by zero. With decay 0 and eps 0 this is one k-means step: each used
    code moves to the mean of the vectors assigned to it. cluster_size: (K,), embed_sum: (K, D) -> (K, D)."""
    n = jnp.sum(cluster_size)
    smoothed = (cluster_size + eps) / (n + cluster_size.shape[0] * eps) * n
    return embed_sum / smoothed[:, None]


# 5. Codebook usage -----------------------------------------------------------------------------------
def code_usage(indices, num_codes: int):
    """How often each code was chosen. indices: (N,) or any shape -> (K,) integer counts (exact; the same int64 as
    the torch twin's under 64-bit JAX)."""
    return jnp.bincount(indices.reshape(-1), length=num_codes)


def perplexity(counts):
    """exp(H(p)) of the usage distribution p = counts / sum, with 0 log 0 = 0: the effective number of codes
    (K when all are used equally, 1 when one is). counts: (K,) -> ()."""
    p = counts / jnp.sum(counts)
    return jnp.exp(-jnp.sum(jax.scipy.special.xlogy(p, p)))


# 6. Dead-code restarts --------------------------------------------------------------------------------
def restart_dead_codes(codebook, cluster_size, embed_sum, z, usage, threshold, choice):
    """Codes used fewer than ``threshold`` times (``usage``, e.g. over the last epoch) restart at encoder outputs
    ``z[choice]`` (Dhariwal et al. 2020, Jukebox), their EMA state reset to one vector each: N_k = 1, m_k = e_k.
    codebook: (K, D), cluster_size: (K,), embed_sum: (K, D), z: (N, D), usage: (K,), choice: (K,) row indices
    of z drawn by the caller -> (codebook, cluster_size, embed_sum)."""
    dead = (usage < threshold)[:, None]
    fresh = z[choice]
    new_codebook = jnp.where(dead, fresh, codebook)
    new_cluster = jnp.where(dead[:, 0], jnp.ones_like(cluster_size), cluster_size)
    new_sum = jnp.where(dead, fresh, embed_sum)
    return new_codebook, new_cluster, new_sum


# 7. The networks: a grid of code vectors ---------------------------------------------------------------
class GridEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, explicit padding 1), GroupNorm, SiLU, then a 1x1 conv ``head`` to the code
    dimension (no norm, no activation): one code vector per cell of a grid 2^L times smaller than the image.
    x: (B, H, W, C), H and W divisible by 2^len(channels) -> z_e (B, H / 2^L, W / 2^L, code_dim)."""

    image_shape: Sequence[int]
    code_dim: int
    channels: Sequence[int] = (32, 64)
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.head = nn.Conv(self.code_dim, (1, 1), padding="VALID")

    def __call__(self, x):
        return self.head(downsample(self.convs, self.norms, x))


class GridDecoder(nn.Module):
    """The mirror of ``GridEncoder``: a 1x1 conv ``project`` code_dim -> channels[-1] and SiLU, then ConvTranspose
    3x3 (stride 2, padding 1, output padding 1: torch's convention, ``conv_transpose_padding``) doubling the size,
    GroupNorm and SiLU after each but the last, whose output is the raw output (C channels, no activation).
    z_q: (B, h, w, code_dim) -> (B, 2^L h, 2^L w, C)."""

    image_shape: Sequence[int]
    code_dim: int
    channels: Sequence[int] = (32, 64)
    groups: int = 8

    def setup(self):
        outs = [*reversed(self.channels[:-1]), self.image_shape[0]]
        pad = conv_transpose_padding(3, 1, 1)
        self.project = nn.Conv(self.channels[-1], (1, 1), padding="VALID")
        self.deconvs = [ConvTranspose(o, (3, 3), strides=(2, 2), padding=(pad, pad)) for o in outs]
        self.norms = [GroupNorm(num_groups=min(self.groups, o), epsilon=GROUPNORM_EPS) for o in outs[:-1]]

    def __call__(self, z_q):
        h = nn.silu(self.project(z_q))
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h)
            if i < len(self.norms):
                h = nn.silu(self.norms[i](h))
        return h
