"""Wasserstein GANs: the Kantorovich-Rubinstein dual, weight clipping and the gradient penalty.

Lectures: Wasserstein GAN; gradient penalty (Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", eq. 2-3 and
Algorithm 1; Gulrajani et al. 2017, "Improved training of Wasserstein GANs", Proposition 1, eq. 3 and
Algorithm 1; Villani 2008 for the duality).

The earth mover's distance and its dual (Kantorovich-Rubinstein):

    W1(p, q) = inf_{gamma in Pi(p, q)} E_gamma |x - y| = sup_{||f||_L <= 1} E_p[f(x)] - E_q[f(x)]      (eq. 2-3)

In one dimension both sides are explicit: W1 = int |F_p(t) - F_q(t)| dt = int_0^1 |F_p^-1(u) - F_q^-1(u)| du,
the mean distance between sorted samples for two samples of equal size, and the dual is attained by
f*(x) = int_{-inf}^x sign(F_q(t) - F_p(t)) dt. The WGAN critic approximates f* inside a family whose Lipschitz
constant is bounded either by clipping every weight to [-c, c] (Arjovsky et al.) or by the gradient penalty

    lambda E_{x^ } (||grad_x f(x^)||_2 - 1)^2,   x^ = alpha x_real + (1 - alpha) x_fake, alpha ~ U[0, 1]   (GP eq. 3)

with one alpha per example and the norm over all of an example's dimensions (Gulrajani et al., Algorithm 1).
Twin: ``practice_torch/wgan`` (same names, same arguments); cases: ``shared_specs/wgan.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.subgradients import absolute, clamp


# 1. The pure functions (twins in practice_torch.wgan) ----------------------------------------------------------
def w1_sorted(x, y):
    """W1 between two empirical 1-D distributions of equal size: the mean |x_(i) - y_(i)| of the sorted samples
    (the monotone coupling is optimal in 1-D). x, y: (N,) -> ()."""
    return jnp.mean(absolute(jnp.sort(x) - jnp.sort(y)))


def critic_objective(f_real, f_fake):
    """The dual's objective on a batch, E_p[f] - E_q[f] (eq. 3); the critic maximises it, the generator minimises
    it. f_real: (B,), f_fake: (B',) -> ()."""
    return jnp.mean(f_real) - jnp.mean(f_fake)


def interpolates(real, fake, alpha):
    """x^ = alpha x_real + (1 - alpha) x_fake with one alpha per example (GP Algorithm 1, line 6).
    real, fake: (B, ...), alpha: (B,) -> (B, ...)."""
    a = jnp.reshape(alpha, alpha.shape + (1,) * (real.ndim - 1))
    return a * real + (1 - a) * fake


def gradient_penalty(grads):
    """mean_b (||g_b||_2 - 1)^2, each norm over all of example b's dimensions (Gulrajani et al. 2017, GP eq. 3,
    without lambda). grads: (B, ...) the critic's input-gradients g_b = grad_x D(x_hat_b) at the interpolates -> ()."""
    norms = jnp.sqrt(jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1))
    return jnp.mean((norms - 1) ** 2)


def lipschitz_penalty(grads):
    """mean_b max(0, ||g_b||_2 - 1)^2, each norm over all of example b's dimensions: the one-sided penalty
    (Gulrajani et al. 2017, app.; WGAN-LP, Petzka et al. 2018, eq. 8, without lambda), zero for every 1-Lipschitz
    critic. grads: (B, ...) -> ()."""
    norms = jnp.sqrt(jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1))
    return jnp.mean(clamp(norms - 1, 0.0) ** 2)


def mlp_critic(x, w1, b1, w2, b2):
    """A one-hidden-layer critic f(x) = w2 . tanh(W1 x + b1) + b2, weights in the PyTorch layout (W1: (H, D),
    w2: (1, H)), for the penalty's specs. x: (B, D) -> (B,)."""
    return (jnp.tanh(x @ w1.T + b1) @ w2.T)[:, 0] + b2[0]


def critic_gradient_penalty(real, fake, alpha, w1, b1, w2, b2):
    """The gradient penalty of ``mlp_critic`` at the interpolates: the input gradient per example, then
    ``gradient_penalty``. Its parameter gradient is a double backward. real, fake: (B, D), alpha: (B,) -> ()."""
    x_hat = interpolates(real, fake, alpha)
    grads = jax.grad(lambda x: jnp.sum(mlp_critic(x, w1, b1, w2, b2)))(x_hat)  # each f(x_b) depends on x_b alone
    return gradient_penalty(grads)


def clip_weights(w, c):
    """Weight clipping to [-c, c] after each critic step (WGAN Algorithm 1, line 7). w: (...), c: () -> (...)."""
    return clamp(w, -c, c)


# 2. One-dimensional closed forms ---------------------------------------------------------------------------------
def optimal_critic_1d(t, grid, cdf_p, cdf_q):
    """f*(t) = int_{grid_0}^t sign(F_q - F_p): the dual's maximiser in 1-D, as a piecewise-linear function on a
    grid with the CDFs constant between grid points. t: (M,), grid: (G,), cdf_p, cdf_q: (G,) -> (M,)."""
    slope = jnp.sign(cdf_q - cdf_p)[:-1]
    knots = jnp.concatenate([jnp.zeros(1), jnp.cumsum(slope * jnp.diff(grid))])
    return jnp.interp(t, grid, knots)
