"""GAN inversion by optimisation and by latent regression (Zhu et al. 2016, eq. 1-2). Twins of
``theory_jax/gan_inversion.py``, same names and arguments."""

from __future__ import annotations

import torch


def mlp_generator(z, w1, b1, w2, b2):
    """G(z) = W2 tanh(W1 z + b1) + b2 (W1: (H, K), W2: (D, H)). z: (B, K) -> (B, D)."""
    return torch.tanh(z @ w1.T + b1) @ w2.T + b2


def inversion_loss(z, x, w1, b1, w2, b2, prior_weight):
    """L(z) = mean_b ||G(z_b) - x_b||^2 / D + lambda mean_b ||z_b||^2 (Zhu et al. eq. 1).
    z: (B, K), x: (B, D), prior_weight: () -> ()."""
    residual = mlp_generator(z, w1, b1, w2, b2) - x
    return torch.mean(torch.sum(residual**2, -1)) / x.shape[-1] + prior_weight * torch.mean(torch.sum(z**2, -1))


def inversion_step(z, x, w1, b1, w2, b2, prior_weight, lr):
    """One gradient-descent step, z - lr B dL/dz (each code moves by its own gradient). Differentiable in its
    inputs when autograd is on (the step's gradient is kept in the graph). z: (B, K), x: (B, D) -> (B, K)."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        z_in = z if z.requires_grad else z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(inversion_loss(z_in, x, w1, b1, w2, b2, prior_weight), z_in,
                                      create_graph=keep_graph)
    return z - lr * z.shape[0] * grad


def latent_regression_loss(z, z_recovered):
    """The encoder's objective mean_b ||E(G(z_b)) - z_b||^2, given z and E(G(z)). (B, K) x 2 -> ()."""
    return torch.mean(torch.sum((z_recovered - z) ** 2, -1))
