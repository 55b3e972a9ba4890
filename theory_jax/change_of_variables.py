"""Change of variables: the Box-Muller transform, inverse-CDF sampling, Jacobians and an elementwise flow.

Lectures: Box-Muller transform; Jacobians (course "Advanced Generative Modeling", module 1; Box &
Muller 1958; Devroye 1986, ch. 2 for inverse-CDF sampling; Meng et al. 2020, "Gaussianization
Flows", for the mixture-of-logistics CDF followed by the inverse Gaussian CDF).

If x = T(u) with T invertible and differentiable, then

    p_X(x) = p_U(T^{-1}(x)) |det d T^{-1}(x) / dx|                               (eq. 1)
    log |det J_{g o f}(u)| = log |det J_g(f(u))| + log |det J_f(u)|               (eq. 2)

Box-Muller: z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2) (eq. 3) has |det dz/du| = 2 pi / u1, so with
u uniform on the unit square eq. 1 gives p(z) = u1 / (2 pi) = exp(-|z|^2 / 2) / (2 pi) = N(z; 0, I).
Inverse CDF: x = F^{-1}(u) with u ~ U(0, 1) has p(x) = |du/dx| = F'(x) = f(x) (eq. 4).
The elementwise flow z_i = Phi^{-1}(F_i(x_i)), F_i a mixture of logistic CDFs (eq. 5), has the
diagonal Jacobian dz_i/dx_i = f_i(x_i) / phi(z_i) (eq. 6); LU mixing layers W = L U (eq. 7) add
log|det W| = sum log diag U, and by eq. 2 the composed flow's log-det is the sum of its layers'.
Twin: ``practice_torch/change_of_variables/`` (same names, same arguments);
cases: ``shared_specs/change_of_variables.py``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import log_ndtr, ndtri

LOG_2PI = math.log(2 * math.pi)
BRACKET = 50.0  # the inverse searches within [min mu - 50 s, max mu + 50 s]: |z| up to about 9.7
BISECTIONS = 64


# 1. Box-Muller -------------------------------------------------------------------------------------
def box_muller(u):
    """Box-Muller (Box & Muller 1958; eq. 3): z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), two independent N(0, 1)
    draws from two uniforms. u: (..., 2) the pairs (u1, u2), u1 in (0, 1], u2 in [0, 1) -> z: (..., 2)."""
    radius = jnp.sqrt(-2.0 * jnp.log(u[..., 0]))
    angle = 2.0 * jnp.pi * u[..., 1]
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def box_muller_inverse(z):
    """u1 = exp(-|z|^2 / 2), u2 = atan2(z2, z1) / (2 pi) mod 1. z: (..., 2) -> u: (..., 2)."""
    u1 = jnp.exp(-0.5 * jnp.sum(z**2, axis=-1))
    u2 = jnp.mod(jnp.arctan2(z[..., 1], z[..., 0]) / (2.0 * jnp.pi), 1.0)
    return jnp.stack([u1, u2], axis=-1)


def box_muller_log_det(u):
    """log |det dz/du| = log(2 pi) - log u1 of the Box-Muller map z(u) (claim 1: |det dz/du| = 2 pi / u1).
    u: (..., 2) the pairs (u1, u2), u1 in (0, 1] -> (...)."""
    return LOG_2PI - jnp.log(u[..., 0])


def standard_normal_log_prob(z):
    """log N(z; 0, I), summed over the last axis. z: (..., d) -> (...)."""
    return -0.5 * jnp.sum(z**2 + LOG_2PI, axis=-1)


# 2. Inverse-CDF samplers (eq. 4): the noise u ~ U(0, 1) is passed in ---------------------------------
def exponential_icdf(u, rate):
    """F^{-1}(u) = -log(1 - u) / rate for F(x) = 1 - exp(-rate x). u: (...) -> (...)."""
    return -jnp.log1p(-u) / rate


def logistic_icdf(u, loc, scale):
    """F^{-1}(u) = loc + scale log(u / (1 - u)) for F(x) = sigmoid((x - loc) / scale). u: (...) -> (...)."""
    return loc + scale * (jnp.log(u) - jnp.log1p(-u))


def gaussian_icdf(u, mean, std):
    """F^{-1}(u) = mean + std Phi^{-1}(u), Phi^{-1} = ndtri (accurate in both tails). u: (...) -> (...)."""
    return mean + std * ndtri(u)


# 3. The elementwise monotone flow: mixture-of-logistics CDF, then Phi^{-1} (eqs. 5-6) -----------------
@jax.custom_jvp
def normal_icdf(p):
    """Phi^{-1}(p) = ndtri(p), differentiated by the exact d/dp = 1 / phi(Phi^{-1}(p)) (torch's ndtri backward)
    rather than through ndtri's rational approximations (cheaper to compile, and the twins agree). (...) -> (...)."""
    return ndtri(p)


@normal_icdf.defjvp
def _normal_icdf_jvp(primals, tangents):
    z = ndtri(primals[0])
    return z, tangents[0] * jnp.exp(0.5 * (z**2 + LOG_2PI))


def _logsumexp(a):
    """log sum_k exp(a_k) over the last axis of finite a, shifted by the (constant) max: a smaller graph than
    jax.scipy's general logsumexp, which the flow calls in every layer and every bisection step."""
    top = jax.lax.stop_gradient(jnp.max(a, axis=-1, keepdims=True))
    return jnp.log(jnp.sum(jnp.exp(a - top), axis=-1)) + top[..., 0]


def _mixture_logs(x, log_pi, means, log_scales, with_pdf: bool = True):
    """log F(x), log(1 - F(x)) and (if asked) log f(x) per coordinate, for F = sum_k pi_k sigmoid(t_k),
    t_k = (x - mu_k) / s_k, given log pi (d, K): log sigmoid(t) = -softplus(-t), log f_k = log sigmoid(t) +
    log sigmoid(-t) - log s_k. 1 - F is summed directly (no cancellation). x: (..., d) -> each (..., d)."""
    t = (x[..., None] - means) * jnp.exp(-log_scales)
    below, above = jax.nn.softplus(-t), jax.nn.softplus(t)
    logs = (_logsumexp(log_pi - below), _logsumexp(log_pi - above))
    return logs + (_logsumexp(log_pi - below - above - log_scales),) if with_pdf else logs


def logistic_mixture_log_cdf(x, logits, means, log_scales):
    """log F(x) and log(1 - F(x)), pi = softmax(logits), per coordinate (eq. 5).
    x: (..., d); logits, means, log_scales: (d, K) -> two (..., d)."""
    return _mixture_logs(x, jax.nn.log_softmax(logits, axis=-1), means, log_scales, with_pdf=False)


def logistic_mixture_log_pdf(x, logits, means, log_scales):
    """log f(x) = log sum_k pi_k sigmoid(t_k) sigmoid(-t_k) / s_k, per coordinate. (..., d) -> (..., d)."""
    return _mixture_logs(x, jax.nn.log_softmax(logits, axis=-1), means, log_scales)[2]


@jax.jit
def _gaussianize_terms(x, log_pi, means, log_scales):
    """z = Phi^{-1}(F(x)) (eq. 5) and log dz/dx = log f(x) - log phi(z) (eq. 6), each (..., d).

    Phi^{-1} is taken on the smaller tail min(F, 1 - F) <= 1/2 and reflected, so z is accurate (and finite,
    clamped at the dtype's smallest normal) far into both tails.
    """
    log_f, log_1mf, log_pdf = _mixture_logs(x, log_pi, means, log_scales)
    tail = normal_icdf(jnp.maximum(jnp.exp(jnp.minimum(log_f, log_1mf)), jnp.finfo(x.dtype).tiny))
    z = jnp.where(log_f < log_1mf, tail, -tail)
    return z, log_pdf + 0.5 * (z**2 + LOG_2PI)


def gaussianize(x, logits, means, log_scales):
    """The elementwise flow layer x -> z (eqs. 5-6) and its log |det dz/dx| = sum_i log dz_i/dx_i.

    x: (..., d); logits, means, log_scales: (d, K) -> z (..., d), log_det (...).
    """
    z, log_dz = _gaussianize_terms(x, jax.nn.log_softmax(logits, axis=-1), means, log_scales)
    return z, jnp.sum(log_dz, axis=-1)


@jax.jit
def _bisect(z, log_pi, means, log_scales):
    """The x with z(x) = z to within rounding, by BISECTIONS halvings of [min mu - 50 s, max mu + 50 s], comparing
    F(x) with Phi(z) on the tail of z (no gradients; jit-compiled once per shape, reused by every layer)."""
    spread = BRACKET * jnp.exp(log_scales)
    lo = jnp.broadcast_to(jnp.min(means - spread, axis=-1), z.shape)
    hi = jnp.broadcast_to(jnp.max(means + spread, axis=-1), z.shape)
    log_tail = log_ndtr(-jnp.abs(z))  # log Phi(z) below the median, log(1 - Phi(z)) above it

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        log_f, log_1mf = _mixture_logs(mid, log_pi, means, log_scales, with_pdf=False)
        above = jnp.where(z < 0, log_f > log_tail, log_1mf < log_tail)  # z(mid) > z
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, BISECTIONS, halve, (lo, hi))
    return 0.5 * (lo + hi)


def _gaussianize_inverse(z, log_pi, means, log_scales):
    x0 = _bisect(*(jax.lax.stop_gradient(a) for a in (z, log_pi, means, log_scales)))
    z0, log_dz = _gaussianize_terms(x0, log_pi, means, log_scales)
    return x0 - (z0 - z) * jnp.exp(-log_dz)


def gaussianize_inverse(z, logits, means, log_scales):
    """x with gaussianize(x) = z: bisection on the increasing map inside [min mu - 50 s, max mu + 50 s], then one
    Newton step x - (z(x) - z) / z'(x) from the (constant) bisection point, through which gradients flow as
    the implicit function theorem says: dx/dz = 1 / z'(x), dx/dtheta = -(dz/dtheta) / z'(x). (..., d) -> (..., d)."""
    return _gaussianize_inverse(z, jax.nn.log_softmax(logits, axis=-1), means, log_scales)


# 4. LU mixing layers (eq. 7) -----------------------------------------------------------------------
def _lu_factors(lower, upper, log_diag):
    """L = I + strict lower part of ``lower``, U = strict upper part of ``upper`` + diag(exp(log_diag)); batched
    over leading axes: (..., d, d), (..., d, d), (..., d) -> two (..., d, d)."""
    eye = jnp.eye(log_diag.shape[-1], dtype=lower.dtype)
    return jnp.tril(lower, -1) + eye, jnp.triu(upper, 1) + jnp.exp(log_diag)[..., None] * eye


def _affine(x, weight, shift):
    """W x + shift per row as sum_j W_ij x_j (an explicit sum: d is small). x: (..., d), W: (d, d) -> (..., d)."""
    return jnp.sum(x[..., None, :] * weight, axis=-1) + shift


def lu_weight(lower, upper, log_diag):
    """W = L U (eq. 7), L unit lower-triangular, U upper-triangular with diagonal exp(log_diag). (..., d, d)."""
    low, up = _lu_factors(lower, upper, log_diag)
    return low @ up


def lu_linear(x, lower, upper, log_diag, shift):
    """y = W x + shift, log |det W| = sum(log_diag). x: (..., d) -> y (..., d), log_det (...)."""
    return _affine(x, lu_weight(lower, upper, log_diag), shift), jnp.broadcast_to(jnp.sum(log_diag), x.shape[:-1])


def _solve_lu(y, low, up, shift):
    d = y.shape[-1]
    rhs = (y - shift).reshape(-1, d).T
    x = solve_triangular(up, solve_triangular(low, rhs, lower=True, unit_diagonal=True), lower=False)
    return x.T.reshape(y.shape)


def lu_linear_inverse(y, lower, upper, log_diag, shift):
    """x = U^{-1} L^{-1} (y - shift) by two triangular solves. y: (..., d) -> (..., d)."""
    return _solve_lu(y, *_lu_factors(lower, upper, log_diag), shift)


# 5. The composed flow: E_{L-1} o M_{L-2} o ... o M_0 o E_0, log-dets summed (eq. 2) ------------------
def flow_forward(x, logits, means, log_scales, lower, upper, log_diag, shift):
    """x (..., d) -> z (..., d), log |det dz/dx| (...). Elementwise layers: logits, means, log_scales (L, d, K);
    mixing layers between them: lower, upper (L - 1, d, d), log_diag, shift (L - 1, d). Every layer's weights and
    LU matrix are computed at once, before the layers run."""
    log_pi, weights = jax.nn.log_softmax(logits, axis=-1), lu_weight(lower, upper, log_diag)
    z, log_dz = _gaussianize_terms(x, log_pi[0], means[0], log_scales[0])
    log_det = jnp.sum(log_dz, axis=-1)
    for i in range(lower.shape[0]):
        z = _affine(z, weights[i], shift[i])
        z, log_dz = _gaussianize_terms(z, log_pi[i + 1], means[i + 1], log_scales[i + 1])
        log_det = log_det + jnp.sum(log_diag[i]) + jnp.sum(log_dz, axis=-1)
    return z, log_det


def flow_inverse(z, logits, means, log_scales, lower, upper, log_diag, shift):
    """The layers of ``flow_forward`` inverted in reverse order. z: (..., d) -> x (..., d)."""
    log_pi, (low, up) = jax.nn.log_softmax(logits, axis=-1), _lu_factors(lower, upper, log_diag)
    x = z
    for i in reversed(range(lower.shape[0])):
        x = _gaussianize_inverse(x, log_pi[i + 1], means[i + 1], log_scales[i + 1])
        x = _solve_lu(x, low[i], up[i], shift[i])
    return _gaussianize_inverse(x, log_pi[0], means[0], log_scales[0])


def flow_log_prob(x, logits, means, log_scales, lower, upper, log_diag, shift):
    """log p(x) = log N(z; 0, I) + log |det dz/dx| (eq. 1 with the base N(0, I)). x: (..., d) -> (...)."""
    z, log_det = flow_forward(x, logits, means, log_scales, lower, upper, log_diag, shift)
    return standard_normal_log_prob(z) + log_det


def _linspace_init(lo: float, hi: float):
    return lambda key, shape, dtype: jnp.broadcast_to(jnp.linspace(lo, hi, shape[-1], dtype=dtype), shape)


def _constant_init(value: float):
    return lambda key, shape, dtype: jnp.full(shape, value, dtype)


class GaussianizationFlow(nn.Module):
    """``layers`` elementwise flows with ``components`` logistics each, LU mixing between them (d > 1 makes the
    density more than a product of marginals), base N(0, I). Same parameter names as the torch twin."""

    dim: int
    components: int = 8
    layers: int = 3

    def setup(self):
        n, d, k, f32 = self.layers, self.dim, self.components, jnp.float32
        spacing = 5.0 / max(k - 1, 1)
        self.logits = self.param("logits", nn.initializers.zeros, (n, d, k), f32)
        self.means = self.param("means", _linspace_init(-2.5, 2.5), (n, d, k), f32)
        self.log_scales = self.param("log_scales", _constant_init(math.log(spacing)), (n, d, k), f32)
        self.lower = self.param("lower", nn.initializers.zeros, (n - 1, d, d), f32)
        self.upper = self.param("upper", nn.initializers.zeros, (n - 1, d, d), f32)
        self.log_diag = self.param("log_diag", nn.initializers.zeros, (n - 1, d), f32)
        self.shift = self.param("shift", nn.initializers.zeros, (n - 1, d), f32)

    def _params(self):
        return (self.logits, self.means, self.log_scales, self.lower, self.upper, self.log_diag, self.shift)

    def __call__(self, x):
        """x: (B, d) -> z (B, d), log |det dz/dx| (B,)."""
        return flow_forward(x, *self._params())

    def inverse(self, z):
        return flow_inverse(z, *self._params())

    def log_prob(self, x):
        return flow_log_prob(x, *self._params())

    def loss(self, x):
        """Mean negative log-likelihood in nats per example (maximum likelihood)."""
        return -jnp.mean(self.log_prob(x))
