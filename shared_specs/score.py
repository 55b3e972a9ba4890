"""Spec cases for ``score``: epsilon <-> score, the noise schedule of NCSN, DSM loss, Langevin and denoising steps.

Each function runs in ``theory_jax.score`` and ``practice_torch.score`` on the same NumPy inputs (noise included),
in float64, with gradients. Third witnesses, written independently in NumPy: the conditional score of
q(x_t | x_0) = N(sqrt(abar) x_0, (1 - abar) I) evaluated at x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps (for
``eps_to_score``), ``np.geomspace`` (for the sigmas), the DSM target written as -(x~ - x) / sigma^2 from an explicit
x and x~ (for the loss), and the update rules as printed in Song & Ermon 2019 (eq. 4, Algorithm 1).
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, gaussian, uniform

B = 5


def _col(c, x):
    return np.reshape(c, np.shape(c) + (1,) * (x.ndim - np.ndim(c)))


# Independent references (NumPy) -----------------------------------------------------------------------------------
def ref_eps_to_score(eps, alpha_bar_t):
    """grad_{x_t} log N(x_t; sqrt(abar) x_0, (1 - abar) I) = -(x_t - sqrt(abar) x_0) / (1 - abar), at any x_0 (here 0.3)
    and the x_t that eps produces from it."""
    a = _col(alpha_bar_t, eps)
    x0 = 0.3 * np.ones_like(eps)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
    return -(x_t - np.sqrt(a) * x0) / (1 - a)


def ref_score_to_eps(score, alpha_bar_t):
    """Solve ``eps_to_score`` for eps: eps = -score (1 - abar) / sqrt(1 - abar)."""
    a = _col(alpha_bar_t, score)
    return -score * (1 - a) / np.sqrt(1 - a)


def ref_dsm_loss(score, z, sigma):
    """sigma^2-weighted 1/2 ||s + (x~ - x) / sigma^2||^2 with an explicit x (here 1.7) and x~ = x + sigma z."""
    s = _col(sigma, z)
    x = 1.7 * np.ones_like(z)
    x_tilde = x + s * z
    return np.mean(0.5 * sigma**2 * np.sum(((score + (x_tilde - x) / s**2) ** 2).reshape(len(z), -1), axis=1))


def ref_langevin_step(x, score, step_size, z):
    """Song & Ermon 2019, eq. 4: x~_t = x~_{t-1} + (eps/2) grad log p(x~_{t-1}) + sqrt(eps) z_t."""
    eps = _col(step_size, x)
    return x + eps / 2 * score + np.sqrt(eps) * z


# Input makers ---------------------------------------------------------------------------------------------------
def _eps_alpha(rng):
    return {"eps": gaussian(rng, B, 3, 4, 4), "alpha_bar_t": uniform(rng, B, low=0.01, high=0.99)}


def _score_alpha(rng):
    return {"score": gaussian(rng, B, 6, scale=3.0), "alpha_bar_t": uniform(rng, B, low=0.01, high=0.99)}


def _dsm(rng):
    return {"score": gaussian(rng, B, 2, 3, 3, scale=2.0), "z": gaussian(rng, B, 2, 3, 3),
            "sigma": np.exp(uniform(rng, B, low=np.log(0.01), high=np.log(20.0)))}


def _langevin(rng):
    return {"x": gaussian(rng, B, 4), "score": gaussian(rng, B, 4, scale=2.0),
            "step_size": uniform(rng, B, low=1e-3, high=0.5), "z": gaussian(rng, B, 4)}


def _sigma_range(rng):
    return {"sigma_max": np.asarray(uniform(rng, 1, low=5.0, high=50.0)[0]),
            "sigma_min": np.asarray(uniform(rng, 1, low=0.005, high=0.1)[0])}


CASES = (
    FunctionCase("score/eps_to_score", "eps_to_score", _eps_alpha, grad_wrt=("eps", "alpha_bar_t"),
                 reference=ref_eps_to_score),
    FunctionCase("score/score_to_eps", "score_to_eps", _score_alpha, grad_wrt=("score", "alpha_bar_t"),
                 reference=ref_score_to_eps),
    FunctionCase("score/alpha_bar_to_sigma", "alpha_bar_to_sigma",
                 lambda r: {"alpha_bar": uniform(r, B, 7, low=1e-3, high=0.999)},
                 grad_wrt=("alpha_bar",), reference=lambda alpha_bar: np.sqrt(1 / alpha_bar - 1)),
    FunctionCase("score/geometric_sigmas", "geometric_sigmas", _sigma_range, grad_wrt=("sigma_max", "sigma_min"),
                 static={"num_levels": 12},
                 reference=lambda sigma_max, sigma_min, num_levels: np.geomspace(sigma_max, sigma_min, num_levels)),
    FunctionCase("score/annealed_step_sizes", "annealed_step_sizes",
                 lambda r: {"sigmas": np.geomspace(20.0, 0.01, 10) * uniform(r, 10, low=0.9, high=1.1),
                            "eps": np.asarray(2e-5)},
                 grad_wrt=("sigmas", "eps"),
                 reference=lambda sigmas, eps: np.array([eps * (s / sigmas[-1]) ** 2 for s in sigmas])),
    FunctionCase("score/perturb", "perturb",
                 lambda r: {"x": gaussian(r, B, 3, 2), "sigma": uniform(r, B, low=0.01, high=5.0),
                            "z": gaussian(r, B, 3, 2)},
                 grad_wrt=("x", "sigma", "z"), reference=lambda x, sigma, z: x + sigma[:, None, None] * z),
    FunctionCase("score/dsm_loss", "dsm_loss", _dsm, grad_wrt=("score", "z", "sigma"), reference=ref_dsm_loss),
    FunctionCase("score/dsm_loss_vectors", "dsm_loss",
                 lambda r: {"score": gaussian(r, 64, 2), "z": gaussian(r, 64, 2),
                            "sigma": np.geomspace(5.0, 0.01, 8)[r.integers(0, 8, 64)]},
                 grad_wrt=("score", "sigma"), reference=ref_dsm_loss),
    FunctionCase("score/langevin_step", "langevin_step", _langevin, grad_wrt=("x", "score", "step_size", "z"),
                 reference=ref_langevin_step),
    FunctionCase("score/langevin_step_scalar", "langevin_step",
                 lambda r: {"x": gaussian(r, B, 1, 4, 4), "score": gaussian(r, B, 1, 4, 4), "step_size": np.asarray(3e-4),
                            "z": gaussian(r, B, 1, 4, 4)},
                 grad_wrt=("x", "score", "step_size"), reference=ref_langevin_step),
    FunctionCase("score/denoise", "denoise",
                 lambda r: {"x": gaussian(r, B, 2), "score": gaussian(r, B, 2), "sigma": uniform(r, B, low=0.01, high=3.0)},
                 grad_wrt=("x", "score", "sigma"),
                 reference=lambda x, score, sigma: x + (sigma**2)[:, None] * score),
)
