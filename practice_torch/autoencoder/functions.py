"""The autoencoder's math in PyTorch: twins of ``theory_jax/autoencoder.py`` (same names and arguments).

Noise is an argument: ``corrupt`` takes its ``eps``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


# 1. The reconstruction objective -------------------------------------------------------------------
def reconstruction_mse(x, x_hat):
    """Mean squared error per example, averaged over every non-batch axis. x, x_hat: (B, ...) -> (B,)."""
    return ((x - x_hat) ** 2).reshape(x.shape[0], -1).mean(-1)


def reconstruction_bce(x, logits):
    """Binary cross-entropy with logits per example, averaged over every non-batch axis:
    mean of softplus(l) - x l = -log Bernoulli(x; sigmoid(l)). x: (B, ...) the targets in [0, 1]; logits: (B, ...)
    the decoder's logits l -> (B,)."""
    return (F.softplus(logits) - x * logits).reshape(x.shape[0], -1).mean(-1)


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
    mean = x.mean(0)
    _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k]


def pca_reconstruct(x, mean, components):
    """Orthogonal projection onto the principal subspace: mean + (x - mean) V^T V.
    x: (B, D), mean: (D,), components: (k, D) orthonormal rows -> (B, D)."""
    return mean + (x - mean) @ components.T @ components


def principal_angles(a, b):
    """The principal angles between the column spaces of a and b (each (D, k), rank k), in radians, largest
    first (``scipy.linalg.subspace_angles``' order): the cosines are the singular values of Q_a^T Q_b, the sines
    those of Q_b - Q_a Q_a^T Q_b; arctan2 of the two keeps small angles exact. -> (k,)."""
    qa, qb = torch.linalg.qr(a)[0], torch.linalg.qr(b)[0]
    cosines = torch.linalg.svdvals(qa.T @ qb)
    sines = torch.linalg.svdvals(qb - qa @ (qa.T @ qb)).flip(0)
    return torch.atan2(sines, cosines.clamp(0.0, 1.0)).flip(0)


# 3. Denoising: the optimum is the posterior mean --------------------------------------------------
def optimal_denoiser(x_noisy, mean, cov, noise_std):
    """E[x | x~] for x ~ N(mean, cov), x~ = x + noise_std eps: mean + cov (cov + s^2 I)^-1 (x~ - mean).
    x_noisy: (B, D), mean: (D,), cov: (D, D) symmetric positive definite -> (B, D)."""
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    gain = torch.linalg.solve(cov + noise_std**2 * eye, cov)  # (S + s^2 I)^-1 S
    return mean + (x_noisy - mean) @ gain
