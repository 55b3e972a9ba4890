"""Spec cases for ``wgan``: the dual's objective, the exact 1-D W1, weight clipping and the gradient penalty, in
float64.

Each function runs in ``theory_jax.wgan`` and ``practice_torch.wgan`` on the same NumPy inputs, gradients included
(for ``critic_gradient_penalty`` a double backward: the gradient of a penalty on input gradients), and on the kinks
(sorted pairs exactly equal, weights exactly on the clip bounds), where both take torch's subgradient. Third witnesses:
SciPy's ``wasserstein_distance``, and NumPy finite differences for the critic's input gradients.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from shared_specs.case import FunctionCase, gaussian

B, D, H = 5, 3, 6


def _critic_weights(rng):
    return {"w1": gaussian(rng, H, D, scale=0.8), "b1": gaussian(rng, H, scale=0.3),
            "w2": gaussian(rng, 1, H, scale=0.8), "b2": gaussian(rng, 1)}


def ref_mlp_critic(x, w1, b1, w2, b2):
    return np.tanh(x @ w1.T + b1) @ w2[0] + b2[0]


def ref_critic_gradient_penalty(real, fake, alpha, w1, b1, w2, b2):
    """Central finite differences of the critic at the interpolates, then the penalty."""
    x_hat = alpha[:, None] * real + (1 - alpha[:, None]) * fake
    h = np.finfo(np.float64).eps ** (1 / 3)
    grads = np.stack([(ref_mlp_critic(x_hat + h * e, w1, b1, w2, b2) - ref_mlp_critic(x_hat - h * e, w1, b1, w2, b2))
                      / (2 * h) for e in np.eye(x_hat.shape[1])], axis=1)
    return np.mean((np.linalg.norm(grads, axis=1) - 1) ** 2)


def _samples_with_ties(rng):
    x = gaussian(rng, 40)
    y = x.copy()
    y[:8] += 0.5 * gaussian(rng, 8)
    return {"x": x, "y": y}


def _weights_on_the_bounds(rng):
    c = 0.03
    w = gaussian(rng, 4, 7, scale=0.05)
    w[0, :3], w[1, :3] = c, -c
    return {"w": w, "c": np.asarray(c)}


CASES = (
    FunctionCase("wgan/w1_sorted", "w1_sorted", lambda r: {"x": gaussian(r, 40), "y": 0.5 + 2 * gaussian(r, 40)},
                 grad_wrt=("x", "y"), reference=lambda x, y: stats.wasserstein_distance(x, y)),
    # y a copy of x with 8 values moved: most sorted pairs are exactly equal, where |x|'s slope is a convention
    FunctionCase("wgan/w1_sorted/ties", "w1_sorted", _samples_with_ties, grad_wrt=("x", "y"),
                 reference=lambda x, y: stats.wasserstein_distance(x, y)),
    FunctionCase("wgan/critic_objective", "critic_objective",
                 lambda r: {"f_real": gaussian(r, B), "f_fake": gaussian(r, B + 3)}, grad_wrt=("f_real", "f_fake"),
                 reference=lambda f_real, f_fake: f_real.mean() - f_fake.mean()),
    FunctionCase("wgan/interpolates", "interpolates",
                 lambda r: {"real": gaussian(r, B, 2, 4, 4), "fake": gaussian(r, B, 2, 4, 4),
                            "alpha": r.uniform(size=B)},
                 grad_wrt=("real", "fake", "alpha"),
                 reference=lambda real, fake, alpha: np.einsum("b,bchw->bchw", alpha, real - fake) + fake),
    FunctionCase("wgan/gradient_penalty", "gradient_penalty", lambda r: {"grads": gaussian(r, B, 2, 4, 4, scale=0.3)},
                 grad_wrt=("grads",),
                 reference=lambda grads: np.mean((np.linalg.norm(grads.reshape(B, -1), axis=1) - 1) ** 2)),
    # norms on both sides of 1 (from about 0.3 to 2): a one-sided penalty differs here
    FunctionCase("wgan/gradient_penalty/both_sides", "gradient_penalty",
                 lambda r: {"grads": gaussian(r, B, 2, 4, 4) * r.uniform(0.05, 0.35, size=(B, 1, 1, 1))},
                 grad_wrt=("grads",),
                 reference=lambda grads: np.mean((np.linalg.norm(grads.reshape(B, -1), axis=1) - 1) ** 2)),
    FunctionCase("wgan/lipschitz_penalty", "lipschitz_penalty",
                 lambda r: {"grads": gaussian(r, B, 2, 4, 4, scale=0.18)},  # norms about 1: both sides of the hinge
                 grad_wrt=("grads",),
                 reference=lambda grads: np.mean(np.maximum(np.linalg.norm(grads.reshape(B, -1), axis=1) - 1, 0) ** 2)),
    FunctionCase("wgan/mlp_critic", "mlp_critic", lambda r: {"x": gaussian(r, B, D), **_critic_weights(r)},
                 grad_wrt=("x", "w1", "b1", "w2", "b2"), reference=ref_mlp_critic),
    FunctionCase("wgan/critic_gradient_penalty", "critic_gradient_penalty",
                 lambda r: {"real": gaussian(r, B, D), "fake": gaussian(r, B, D), "alpha": r.uniform(size=B),
                            **_critic_weights(r)},
                 grad_wrt=("real", "fake", "alpha", "w1", "b1", "w2"),  # b2 shifts f, not its gradient
                 reference=ref_critic_gradient_penalty, level="network"),  # finite differences: ~1e-10
    FunctionCase("wgan/clip_weights", "clip_weights", lambda r: {"w": gaussian(r, 4, 7, scale=0.05),
                                                                 "c": np.asarray(0.03)},
                 grad_wrt=("w",), reference=lambda w, c: np.clip(w, -c, c)),
    # weights exactly on -c and c: torch.clamp's slope there is 1 (the bounds are inside), jnp.clip's 1/2
    FunctionCase("wgan/clip_weights/on_the_bounds", "clip_weights", _weights_on_the_bounds, grad_wrt=("w",),
                 reference=lambda w, c: np.clip(w, -c, c)),
)
