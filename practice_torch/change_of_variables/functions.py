"""Change of variables in PyTorch: twins of ``theory_jax/change_of_variables.py`` (same names and arguments).

Box-Muller and its inverse, inverse-CDF samplers (the uniforms are passed in), log-det helpers, the elementwise
monotone flow (a mixture-of-logistics CDF followed by the inverse Gaussian CDF, Meng et al. 2020, "Gaussianization
Flows"), LU mixing layers and the composed flow. ``python -m theory_jax change_of_variables`` proves eq. 1 (density
of a transformed variable), eq. 2 (log-det of a composition), eqs. 3-7 (the maps and their log-dets).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)
BRACKET = 50.0  # the inverse searches within [min mu - 50 s, max mu + 50 s]
BISECTIONS = 64


# 1. Box-Muller (eq. 3) -------------------------------------------------------------------------------
def _check_pairs(a: torch.Tensor, name: str) -> None:
    if a.ndim == 0 or a.shape[-1] != 2:
        raise ValueError(f"{name} must have a last axis of size 2, got shape {tuple(a.shape)}")


def box_muller(u):
    """Box-Muller (Box & Muller 1958; eq. 3): z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), two independent N(0, 1)
    draws from two uniforms. u: (..., 2) the pairs (u1, u2), u1 in (0, 1], u2 in [0, 1) -> z: (..., 2)."""
    _check_pairs(u, "u")
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0]))
    angle = 2.0 * math.pi * u[..., 1]
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def box_muller_inverse(z):
    """u1 = exp(-|z|^2 / 2), u2 = atan2(z2, z1) / (2 pi) mod 1. z: (..., 2) -> u: (..., 2)."""
    _check_pairs(z, "z")
    u1 = torch.exp(-0.5 * torch.sum(z**2, dim=-1))
    u2 = torch.remainder(torch.atan2(z[..., 1], z[..., 0]) / (2.0 * math.pi), 1.0)
    return torch.stack([u1, u2], dim=-1)


def box_muller_log_det(u):
    """log |det dz/du| = log(2 pi) - log u1 of the Box-Muller map z(u) (claim 1: |det dz/du| = 2 pi / u1).
    u: (..., 2) the pairs (u1, u2), u1 in (0, 1] -> (...)."""
    return LOG_2PI - torch.log(u[..., 0])


def standard_normal_log_prob(z):
    """log N(z; 0, I), summed over the last axis. z: (..., d) -> (...)."""
    return -0.5 * torch.sum(z**2 + LOG_2PI, dim=-1)


def draw_uniform(shape, generator: torch.Generator | None = None, dtype=torch.float32):
    """U(0, 1) noise for the samplers, in (0, 1): torch.rand's exact 0 is moved to the smallest normal number.
    For ``box_muller`` pass u1 = 1 - u so that u1 is in (0, 1]."""
    return torch.rand(shape, generator=generator, dtype=dtype).clamp_min(torch.finfo(dtype).tiny)


def log_abs_det_jacobian(fn, x):
    """log |det d fn(x_n) / d x_n| per row by autograd (the brute-force witness of every closed form here).
    fn: (d,) -> (d,); x: (N, d) -> (N,)."""
    jac = torch.func.vmap(torch.func.jacrev(fn))(x)
    return torch.linalg.slogdet(jac)[1]


# 2. Inverse-CDF samplers (eq. 4): x = F^{-1}(u), u ~ U(0, 1) passed in ---------------------------------
def exponential_icdf(u, rate):
    """F^{-1}(u) = -log(1 - u) / rate. u: (...) -> (...)."""
    return -torch.log1p(-u) / rate


def logistic_icdf(u, loc, scale):
    """F^{-1}(u) = loc + scale log(u / (1 - u)). u: (...) -> (...)."""
    return loc + scale * (torch.log(u) - torch.log1p(-u))


def gaussian_icdf(u, mean, std):
    """F^{-1}(u) = mean + std Phi^{-1}(u) (ndtri, accurate in both tails). u: (...) -> (...)."""
    return mean + std * torch.special.ndtri(u)


# 3. The elementwise monotone flow: mixture-of-logistics CDF, then Phi^{-1} (eqs. 5-6) -------------------
def normal_icdf(p):
    """Phi^{-1}(p); its backward is the exact 1 / phi(Phi^{-1}(p)) (the twin's custom JVP). (...) -> (...)."""
    return torch.special.ndtri(p)


def _mixture_logs(x, log_pi, means, log_scales, with_pdf: bool = True):
    """log F(x), log(1 - F(x)) and (if asked) log f(x) per coordinate, given log pi (d, K); see the twin.
    x: (..., d) -> each (..., d)."""
    t = (x[..., None] - means) * torch.exp(-log_scales)
    below, above = F.softplus(-t), F.softplus(t)
    logs = (torch.logsumexp(log_pi - below, dim=-1), torch.logsumexp(log_pi - above, dim=-1))
    return logs + (torch.logsumexp(log_pi - below - above - log_scales, dim=-1),) if with_pdf else logs


def logistic_mixture_log_cdf(x, logits, means, log_scales):
    """log F(x) and log(1 - F(x)), F = sum_k pi_k sigmoid((x - mu_k) / s_k), pi = softmax(logits), per coordinate.

    x: (..., d); logits, means, log_scales: (d, K) -> two (..., d). 1 - F is summed directly (no cancellation).
    """
    return _mixture_logs(x, torch.log_softmax(logits, dim=-1), means, log_scales, with_pdf=False)


def logistic_mixture_log_pdf(x, logits, means, log_scales):
    """log f(x) = log sum_k pi_k sigmoid(t_k) sigmoid(-t_k) / s_k, t_k = (x - mu_k) / s_k. (..., d) -> (..., d)."""
    return _mixture_logs(x, torch.log_softmax(logits, dim=-1), means, log_scales)[2]


def _gaussianize_terms(x, log_pi, means, log_scales):
    """z = Phi^{-1}(F(x)) (eq. 5) and log dz/dx = log f(x) - log phi(z) (eq. 6), each (..., d); Phi^{-1} on the
    smaller tail min(F, 1 - F), reflected, clamped at the dtype's smallest normal number."""
    log_f, log_1mf, log_pdf = _mixture_logs(x, log_pi, means, log_scales)
    tail = normal_icdf(torch.exp(torch.minimum(log_f, log_1mf)).clamp_min(torch.finfo(x.dtype).tiny))
    z = torch.where(log_f < log_1mf, tail, -tail)
    return z, log_pdf + 0.5 * (z**2 + LOG_2PI)


def gaussianize(x, logits, means, log_scales):
    """The elementwise flow layer x -> z and log |det dz/dx| = sum_i log dz_i/dx_i (eq. 6).

    x: (..., d); logits, means, log_scales: (d, K) -> z (..., d), log_det (...).
    """
    z, log_dz = _gaussianize_terms(x, torch.log_softmax(logits, dim=-1), means, log_scales)
    return z, torch.sum(log_dz, dim=-1)


@torch.no_grad()
def _bisect(z, log_pi, means, log_scales):
    """The x with z(x) = z to within rounding: BISECTIONS halvings of [min mu - 50 s, max mu + 50 s], comparing
    F(x) with Phi(z) on the tail of z."""
    spread = BRACKET * torch.exp(log_scales)
    lo = torch.amin(means - spread, dim=-1).expand(z.shape)
    hi = torch.amax(means + spread, dim=-1).expand(z.shape)
    log_tail = torch.special.log_ndtr(-torch.abs(z))  # log Phi(z) below the median, log(1 - Phi(z)) above it
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        log_f, log_1mf = _mixture_logs(mid, log_pi, means, log_scales, with_pdf=False)
        above = torch.where(z < 0, log_f > log_tail, log_1mf < log_tail)  # z(mid) > z
        lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
    return 0.5 * (lo + hi)


def _gaussianize_inverse(z, log_pi, means, log_scales):
    x0 = _bisect(*(a.detach() for a in (z, log_pi, means, log_scales)))
    z0, log_dz = _gaussianize_terms(x0, log_pi, means, log_scales)
    return x0 - (z0 - z) * torch.exp(-log_dz)


def gaussianize_inverse(z, logits, means, log_scales):
    """x with gaussianize(x) = z: bisection inside [min mu - 50 s, max mu + 50 s] (no graph), then one Newton step
    x - (z(x) - z) / z'(x) that carries the implicit-function-theorem gradients. (..., d) -> (..., d)."""
    return _gaussianize_inverse(z, torch.log_softmax(logits, dim=-1), means, log_scales)


# 4. LU mixing layers (eq. 7) ------------------------------------------------------------------------
def _lu_factors(lower, upper, log_diag):
    """L = I + strict lower part of ``lower``, U = strict upper part of ``upper`` + diag(exp(log_diag)); batched
    over leading axes."""
    eye = torch.eye(log_diag.shape[-1], dtype=lower.dtype, device=lower.device)
    return torch.tril(lower, -1) + eye, torch.triu(upper, 1) + torch.exp(log_diag)[..., None] * eye


def _affine(x, weight, shift):
    """W x + shift per row as sum_j W_ij x_j (an explicit sum: d is small). x: (..., d), W: (d, d) -> (..., d)."""
    return torch.sum(x[..., None, :] * weight, dim=-1) + shift


def lu_weight(lower, upper, log_diag):
    """W = L U, L unit lower-triangular, U upper-triangular with diagonal exp(log_diag). (..., d, d)."""
    low, up = _lu_factors(lower, upper, log_diag)
    return low @ up


def lu_linear(x, lower, upper, log_diag, shift):
    """y = W x + shift, log |det W| = sum(log_diag). x: (..., d) -> y (..., d), log_det (...)."""
    return _affine(x, lu_weight(lower, upper, log_diag), shift), torch.sum(log_diag).expand(x.shape[:-1])


def _solve_lu(y, low, up, shift):
    d = y.shape[-1]
    rhs = (y - shift).reshape(-1, d).T
    x = torch.linalg.solve_triangular(low, rhs, upper=False, unitriangular=True)
    return torch.linalg.solve_triangular(up, x, upper=True).T.reshape(y.shape)


def lu_linear_inverse(y, lower, upper, log_diag, shift):
    """x = U^{-1} L^{-1} (y - shift) by two triangular solves. y: (..., d) -> (..., d)."""
    return _solve_lu(y, *_lu_factors(lower, upper, log_diag), shift)


# 5. The composed flow (eq. 2) --------------------------------------------------------------------------
def flow_forward(x, logits, means, log_scales, lower, upper, log_diag, shift):
    """x (..., d) -> z (..., d), log |det dz/dx| (...): E_0, then (M_i, E_{i+1}) for each mixing layer.
    logits, means, log_scales: (L, d, K); lower, upper: (L - 1, d, d); log_diag, shift: (L - 1, d). Every layer's
    weights and LU matrix are computed at once (few small ops per step), before the layers run."""
    log_pi, weights = torch.log_softmax(logits, dim=-1), lu_weight(lower, upper, log_diag)
    z, log_dz = _gaussianize_terms(x, log_pi[0], means[0], log_scales[0])
    log_det = torch.sum(log_dz, dim=-1)
    for i in range(lower.shape[0]):
        z = _affine(z, weights[i], shift[i])
        z, log_dz = _gaussianize_terms(z, log_pi[i + 1], means[i + 1], log_scales[i + 1])
        log_det = log_det + torch.sum(log_diag[i]) + torch.sum(log_dz, dim=-1)
    return z, log_det


def flow_inverse(z, logits, means, log_scales, lower, upper, log_diag, shift):
    """The layers of ``flow_forward`` inverted in reverse order. z: (..., d) -> x (..., d)."""
    log_pi, (low, up) = torch.log_softmax(logits, dim=-1), _lu_factors(lower, upper, log_diag)
    x = z
    for i in reversed(range(lower.shape[0])):
        x = _gaussianize_inverse(x, log_pi[i + 1], means[i + 1], log_scales[i + 1])
        x = _solve_lu(x, low[i], up[i], shift[i])
    return _gaussianize_inverse(x, log_pi[0], means[0], log_scales[0])


def flow_log_prob(x, logits, means, log_scales, lower, upper, log_diag, shift):
    """log p(x) = log N(z; 0, I) + log |det dz/dx| (eq. 1). x: (..., d) -> (...)."""
    z, log_det = flow_forward(x, logits, means, log_scales, lower, upper, log_diag, shift)
    return standard_normal_log_prob(z) + log_det
