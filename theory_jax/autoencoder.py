"""Autoencoders: the reconstruction objective, linear autoencoders and PCA, denoising autoencoders.

Lectures: autoencoders; undercomplete codes; linear autoencoders span the principal subspace (Baldi & Hornik
1989); denoising autoencoders (Vincent et al. 2008) and their optimum E[x | x~] (Vincent 2011 for the link to
the score); anomaly detection by reconstruction error.
Twin: ``practice_torch/autoencoder/`` (same names); cases: ``shared_specs/autoencoder.py``.

Flax (linen) modules with the same class and attribute names as ``practice_torch/autoencoder/networks.py``; the
decoders are the VAE's (``theory_jax/vae.py``), fed a deterministic code instead of a sample. Images are NHWC
here (NCHW in torch). Randomness is an argument: the corruption noise ``eps`` is an input.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.vae import ConvDecoder, MLPDecoder, downsample, downsampling_convs, flatten_image


# 1. The reconstruction objective -------------------------------------------------------------------
def reconstruction_mse(x, x_hat):
    """Mean squared error per example, averaged over every non-batch axis. x, x_hat: (B, ...) -> (B,)."""
    return jnp.mean(((x - x_hat) ** 2).reshape(x.shape[0], -1), axis=-1)


def reconstruction_bce(x, logits):
    """Binary cross-entropy with logits per example, averaged over every non-batch axis:
    mean of softplus(l) - x l = -log Bernoulli(x; sigmoid(l)). x: (B, ...) the targets in [0, 1]; logits: (B, ...)
    the decoder's logits l -> (B,)."""
    return jnp.mean((jax.nn.softplus(logits) - x * logits).reshape(x.shape[0], -1), axis=-1)


def corrupt(x, eps, noise_std):
    """The denoising corruption x~ = x + noise_std * eps, eps ~ N(0, I) passed in (Vincent et al. 2008). (B, ...)."""
    return x + noise_std * eps


# 2. Linear autoencoders and PCA --------------------------------------------------------------------
def linear_autoencoder(x, encoder_weight, decoder_weight, mean):
    """x_hat = mean + W_d W_e (x - mean): code z = W_e (x - mean) of size k.
    x: (B, D), encoder_weight: (k, D), decoder_weight: (D, k), mean: (D,) -> (B, D)."""
    return mean + (x - mean) @ encoder_weight.T @ decoder_weight.T


def pca_components(x, k: int):
    """PCA of the rows of x by SVD of the centred data: (mean (D,), the top-k right singular vectors (k, D))."""
    mean = jnp.mean(x, axis=0)
    _, _, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k]


def pca_reconstruct(x, mean, components):
    """Orthogonal projection onto the principal subspace: mean + (x - mean) V^T V.
    x: (B, D), mean: (D,), components: (k, D) orthonormal rows -> (B, D)."""
    return mean + (x - mean) @ components.T @ components


def principal_angles(a, b):
    """The principal angles between the column spaces of a and b (each (D, k), rank k), in radians, largest
    first (``scipy.linalg.subspace_angles``' order): the cosines are the singular values of Q_a^T Q_b, the sines
    those of Q_b - Q_a Q_a^T Q_b; arctan2 of the two keeps small angles exact. -> (k,)."""
    qa, qb = jnp.linalg.qr(a)[0], jnp.linalg.qr(b)[0]
    cosines = jnp.linalg.svd(qa.T @ qb, compute_uv=False)  # descending: smallest angle first
    sines = jnp.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False)[::-1]  # ascending, the same order
    return jnp.arctan2(sines, jnp.clip(cosines, 0.0, 1.0))[::-1]


# 3. Denoising: the optimum is the posterior mean --------------------------------------------------
def optimal_denoiser(x_noisy, mean, cov, noise_std):
    """E[x | x~] for x ~ N(mean, cov), x~ = x + noise_std eps: mean + cov (cov + s^2 I)^-1 (x~ - mean).
    x_noisy: (B, D), mean: (D,), cov: (D, D) symmetric positive definite -> (B, D)."""
    gain = jnp.linalg.solve(cov + noise_std**2 * jnp.eye(cov.shape[0], dtype=cov.dtype), cov)  # (S + s^2 I)^-1 S
    return mean + (x_noisy - mean) @ gain


# 4. The networks ------------------------------------------------------------------------------------
class MLPEncoder(nn.Module):
    """x (B, H, W, C) or (B, D) -> code (B, k): SiLU MLP, then a linear head."""

    image_shape: Sequence[int]
    code_dim: int
    hidden: Sequence[int] = (256,)

    def setup(self):
        self.layers = [nn.Dense(h) for h in self.hidden]
        self.code = nn.Dense(self.code_dim)

    def __call__(self, x):
        h = flatten_image(x)
        for layer in self.layers:
            h = nn.silu(layer(h))
        return self.code(h)


class ConvEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, explicit padding 1), GroupNorm, SiLU, then a linear head.
    x: (B, H, W, C), H and W divisible by 2^len(channels) -> code (B, k)."""

    image_shape: Sequence[int]
    code_dim: int
    channels: Sequence[int] = (32, 64)
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.code = nn.Dense(self.code_dim)

    def __call__(self, x):
        return self.code(flatten_image(downsample(self.convs, self.norms, x)))


OBJECTIVES = ("mse", "bce")


def check_objective(objective: str, bounded: bool) -> None:
    """ValueError, one line, unless ``objective`` is 'mse' or 'bce', and 'bce' only for [0, 1] outputs."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be 'mse' or 'bce', got {objective!r}")
    if objective == "bce" and not bounded:
        raise ValueError("objective 'bce' needs [0, 1] outputs (bounded=True)")


class Autoencoder(nn.Module):
    """Encoder to a k-dimensional code, the VAE's decoder back. ``bounded``: outputs through a sigmoid ([0, 1]
    images). The module holds the architecture only; the training settings are the loss's arguments (static, not
    traced): ``objective`` 'mse' (on the output) or 'bce' (on the logits, needs ``bounded``), and ``noise_std`` > 0
    for a denoising autoencoder, trained to reconstruct x from x + noise_std eps."""

    image_shape: Sequence[int]
    code_dim: int = 16
    architecture: str = "conv"
    hidden: Sequence[int] = (256,)
    channels: Sequence[int] = (32, 64)
    groups: int = 8
    bounded: bool = True

    def setup(self):
        if self.architecture == "mlp":
            self.encoder = MLPEncoder(self.image_shape, self.code_dim, self.hidden)
            self.decoder = MLPDecoder(self.image_shape, self.code_dim, self.hidden)
        elif self.architecture == "conv":
            self.encoder = ConvEncoder(self.image_shape, self.code_dim, self.channels, self.groups)
            self.decoder = ConvDecoder(self.image_shape, self.code_dim, self.channels, groups=self.groups)
        else:
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {self.architecture!r}")

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        return self.decoder(code)

    def output(self, raw):
        return jax.nn.sigmoid(raw) if self.bounded else raw

    def reconstruct(self, x):
        """The reconstruction of x (no corruption). (B, H, W, C) -> (B, H, W, C)."""
        return self.output(self.decode(self.encode(x)))

    def per_example_loss(self, x, eps, objective: str = "mse", noise_std: float = 0.0):
        """Reconstruction loss of x from x~ = corrupt(x, eps, noise_std) (x itself when noise_std = 0): ``objective``
        'mse' of the output or 'bce' of the logits (``bounded`` only). -> (B,)."""
        check_objective(objective, self.bounded)
        raw = self.decode(self.encode(corrupt(x, eps, noise_std)))
        if objective == "bce":
            return reconstruction_bce(x, raw)
        return reconstruction_mse(x, self.output(raw))

    def loss(self, x, eps, objective: str = "mse", noise_std: float = 0.0):
        return jnp.mean(self.per_example_loss(x, eps, objective, noise_std))

    def __call__(self, x):
        return self.reconstruct(x)
