"""The WGAN's objective, weight clipping and gradient penalty (Arjovsky et al. 2017, eq. 3 and Algorithm 1;
Gulrajani et al. 2017, eq. 3 and Algorithm 1).

Twins of the functions in ``theory_jax/wgan.py``, same names and arguments.
"""

from __future__ import annotations

import torch


def w1_sorted(x, y):
    """W1 between two empirical 1-D distributions of equal size: the mean |x_(i) - y_(i)| of the sorted samples.
    x, y: (N,) -> ()."""
    return torch.mean(torch.abs(torch.sort(x).values - torch.sort(y).values))


def critic_objective(f_real, f_fake):
    """The dual's objective on a batch, E_p[f] - E_q[f] (eq. 3). f_real: (B,), f_fake: (B',) -> ()."""
    return torch.mean(f_real) - torch.mean(f_fake)


def interpolates(real, fake, alpha):
    """x^ = alpha x_real + (1 - alpha) x_fake with one alpha per example (GP Algorithm 1, line 6).
    real, fake: (B, ...), alpha: (B,) -> (B, ...)."""
    a = alpha.reshape(alpha.shape + (1,) * (real.dim() - 1))
    return a * real + (1 - a) * fake


def gradient_penalty(grads):
    """mean_b (||g_b||_2 - 1)^2, each norm over all of example b's dimensions (Gulrajani et al. 2017, GP eq. 3,
    without lambda). grads: (B, ...) the critic's input-gradients g_b = grad_x D(x_hat_b) at the interpolates -> ()."""
    norms = torch.sqrt(torch.sum(grads.reshape(grads.shape[0], -1) ** 2, dim=-1))
    return torch.mean((norms - 1) ** 2)


def lipschitz_penalty(grads):
    """mean_b max(0, ||g_b||_2 - 1)^2, each norm over all of example b's dimensions: the one-sided penalty
    (Gulrajani et al. 2017, app.; WGAN-LP, Petzka et al. 2018, eq. 8, without lambda). grads: (B, ...) -> ()."""
    norms = torch.sqrt(torch.sum(grads.reshape(grads.shape[0], -1) ** 2, dim=-1))
    return torch.mean(torch.clamp(norms - 1, min=0) ** 2)


def input_gradients(critic, x):
    """grad_x f(x) per example, kept in the graph (create_graph) so a penalty on it can be backpropagated to the
    critic's weights: the double backward of WGAN-GP (under ``torch.no_grad`` the gradients are computed all the
    same, detached). critic maps (B, ...) -> (B,); x: (B, ...) -> (B, ...)."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():  # also under no_grad (evaluation): the penalty needs its input gradients
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=keep_graph)
    return grads


def mlp_critic(x, w1, b1, w2, b2):
    """f(x) = w2 . tanh(W1 x + b1) + b2 (W1: (H, D), w2: (1, H)), for the penalty's specs. x: (B, D) -> (B,)."""
    return (torch.tanh(x @ w1.T + b1) @ w2.T)[:, 0] + b2[0]


def critic_gradient_penalty(real, fake, alpha, w1, b1, w2, b2):
    """The gradient penalty of ``mlp_critic`` at the interpolates. real, fake: (B, D), alpha: (B,) -> ()."""
    x_hat = interpolates(real, fake, alpha)
    return gradient_penalty(input_gradients(lambda x: mlp_critic(x, w1, b1, w2, b2), x_hat))


def clip_weights(w, c):
    """Weight clipping to [-c, c] after each critic step (WGAN Algorithm 1, line 7). w: (...), c: () -> (...)."""
    return torch.clamp(w, -c, c)
