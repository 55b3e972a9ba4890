"""The score-model functions in PyTorch: the twins of ``theory_jax/score.py`` (same names, same arguments).

``python -m theory_jax score`` proves what they compute: a noise prediction is a score (-eps / sqrt(1 - abar)),
denoising score matching trains the score (Vincent 2011), and Langevin steps with these step sizes sample the
target (Song & Ermon 2019, eqs. 2-6 and Algorithm 1; Song & Ermon 2020 for the final denoising step).
Per-example coefficients are (B,) tensors broadcast over the trailing dims; all noise is an argument.
"""

from __future__ import annotations

import torch

from practice_torch.broadcasting import per_example


def eps_to_score(eps, alpha_bar_t):
    """s(x_t) = -eps / sqrt(1 - abar_t): a noise prediction read as a score. eps: (B, ...), alpha_bar_t: (B,)."""
    return -eps / torch.sqrt(1 - per_example(alpha_bar_t, eps))


def score_to_eps(score, alpha_bar_t):
    """eps = -sqrt(1 - abar_t) s(x_t), the inverse of ``eps_to_score``. score: (B, ...), alpha_bar_t: (B,)."""
    return -torch.sqrt(1 - per_example(alpha_bar_t, score)) * score


def alpha_bar_to_sigma(alpha_bar):
    """sigma = sqrt((1 - abar) / abar): x_t / sqrt(abar) = x_0 + sigma eps, the VP chain as NCSN noise. (...)."""
    return torch.sqrt((1 - alpha_bar) / alpha_bar)


def geometric_sigmas(sigma_max, sigma_min, num_levels: int):
    """sigma_i = sigma_max (sigma_min / sigma_max)^((i-1)/(L-1)), i = 1..L: sigma_1 > ... > sigma_L with a constant
    ratio (Song & Ermon 2019, sec. 4.2). sigma_max, sigma_min: () -> (L,)."""
    if num_levels < 2:
        raise ValueError(f"a geometric noise schedule needs at least 2 levels, got {num_levels}")
    sigma_max = torch.as_tensor(sigma_max)
    frac = torch.arange(num_levels, dtype=sigma_max.dtype, device=sigma_max.device) / (num_levels - 1)
    return sigma_max * (sigma_min / sigma_max) ** frac


def annealed_step_sizes(sigmas, eps):
    """alpha_i = eps sigma_i^2 / sigma_L^2 (Algorithm 1): the same signal-to-noise ratio at every level. (L,) -> (L,)."""
    return eps * sigmas**2 / sigmas[-1] ** 2


def perturb(x, sigma, z):
    """x~ = x + sigma z, a draw of q_sigma(x~ | x) = N(x, sigma^2 I). x, z: (B, ...), sigma: (B,)."""
    return x + per_example(sigma, x) * z


def dsm_loss(score, z, sigma):
    """Denoising score matching at x~ = x + sigma z, weighted by lambda(sigma) = sigma^2 (Song & Ermon 2019,
    eqs. 2 and 5-6): mean_b 1/2 lambda(sigma_b) ||s(x~_b) - grad log q(x~_b | x_b)||^2, the target
    grad log q(x~ | x) = -(x~ - x) / sigma^2 = -z / sigma. score, z: (B, ...), sigma: (B,) -> ()."""
    sigma = per_example(sigma, z)
    target = -z / sigma
    terms = 0.5 * sigma**2 * (score - target) ** 2
    return torch.mean(torch.sum(terms.reshape(terms.shape[0], -1), dim=1))


def langevin_step(x, score, step_size, z):
    """x' = x + alpha/2 s(x) + sqrt(alpha) z (Song & Ermon 2019, eq. 4). x, score, z: (B, ...); step_size: () or (B,)."""
    alpha = per_example(step_size, x)
    return x + 0.5 * alpha * score + torch.sqrt(alpha) * z


def denoise(x, score, sigma):
    """Tweedie's formula E[x | x~] = x~ + sigma^2 grad log q_sigma(x~): the final denoising step of annealed Langevin
    (Song & Ermon 2020; Jolicoeur-Martineau et al. 2021). x, score: (B, ...), sigma: (B,) or ()."""
    return x + per_example(sigma, x) ** 2 * score
