"""f-divergences, their Fenchel conjugates and the variational bound behind the f-GAN.

Lectures: f-divergences; variational divergence minimisation; generative modelling via VDM (f-GAN);
Jensen's inequality (Nguyen, Wainwright & Jordan 2010; Nowozin, Cseke & Tomioka 2016, "f-GAN",
Tables 1 and 2, eq. 4-6).

For a convex f with f(1) = 0, D_f(P || Q) = E_Q[f(p/q)] >= f(E_Q[p/q]) = f(1) = 0 (Jensen). With the
conjugate f*(t) = sup_u (u t - f(u)), f(u) >= u t - f*(t) for every t (Fenchel-Young), so for any critic T

    D_f(P || Q) >= sup_T E_P[T(x)] - E_Q[f*(T(x))]          (Nowozin et al., eq. 4)

with equality at T*(x) = f'(p(x)/q(x)). The f-GAN's critic outputs an unconstrained V(x) and
T = g_f(V) maps it into dom f* (Table 2's output activations).

Six divergences, Nowozin et al.'s generators (the "js" generator gives D_f = 2 JS, their Table 1):
kl, reverse_kl, js, tv, pearson, hellinger. Twin: ``practice_torch/f_divergence`` (same names,
same arguments); cases: ``shared_specs/f_divergence.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.scipy.special import xlogy
from jax.scipy.stats import norm

from theory_jax.elbo import gaussian_kl
from theory_jax.nets.conv import ConvTranspose
from theory_jax.subgradients import absolute, leaky_relu
from theory_jax.vae import GROUPNORM_EPS

DIVERGENCES = ("kl", "reverse_kl", "js", "tv", "pearson", "hellinger")
LOG2 = math.log(2.0)


def check_divergence(divergence: str) -> None:
    """A one-line ValueError naming the choices for an unknown divergence."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose from {', '.join(DIVERGENCES)}")


# 1. Generators f, their derivatives, conjugates f* and output activations g_f -----------------------
_GENERATORS = {  # Table 1: f(u), u = p/q >= 0
    "kl": lambda u: xlogy(u, u),
    "reverse_kl": lambda u: -jnp.log(u),
    "js": lambda u: xlogy(u, u) - xlogy(u + 1, (u + 1) / 2),
    "tv": lambda u: 0.5 * absolute(u - 1),
    "pearson": lambda u: (u - 1) ** 2,
    "hellinger": lambda u: (jnp.sqrt(u) - 1) ** 2,
}
_DERIVATIVES = {  # f'(u): the optimal critic T* = f'(p/q)
    "kl": lambda u: jnp.log(u) + 1,
    "reverse_kl": lambda u: -1 / u,
    "js": lambda u: LOG2 + jnp.log(u) - jnp.log1p(u),
    "tv": lambda u: 0.5 * jnp.sign(u - 1),
    "pearson": lambda u: 2 * (u - 1),
    "hellinger": lambda u: 1 - 1 / jnp.sqrt(u),
}
_CONJUGATES = {  # Table 2: f*(t), its domain as (test, a point inside it)
    "kl": (lambda t: jnp.exp(t - 1), None),
    "reverse_kl": (lambda t: -1 - jnp.log(-t), (lambda t: t < 0, -1.0)),
    "js": (lambda t: -jnp.log(2 - jnp.exp(t)), (lambda t: t < LOG2, 0.0)),
    "tv": (lambda t: t, (lambda t: jnp.abs(t) <= 0.5, 0.0)),
    "pearson": (lambda t: 0.25 * t**2 + t, None),
    "hellinger": (lambda t: t / (1 - t), (lambda t: t < 1, 0.0)),
}
_ACTIVATIONS = {  # Table 2: g_f maps R into dom f*; and f*(g_f(v)) in a form that does not overflow
    "kl": (lambda v: v, lambda v: jnp.exp(v - 1)),
    "reverse_kl": (lambda v: -jnp.exp(-v), lambda v: v - 1),
    "js": (lambda v: LOG2 - jax.nn.softplus(-v), lambda v: jax.nn.softplus(v) - LOG2),
    "tv": (lambda v: 0.5 * jnp.tanh(v), lambda v: 0.5 * jnp.tanh(v)),
    "pearson": (lambda v: v, lambda v: 0.25 * v**2 + v),
    "hellinger": (lambda v: 1 - jnp.exp(-v), lambda v: jnp.expm1(v)),
}


def f_generator(u, divergence: str):
    """f(u) of Table 1, u = p/q >= 0; convex with f(1) = 0. (...) -> (...)."""
    check_divergence(divergence)
    return _GENERATORS[divergence](u)


def f_derivative(u, divergence: str):
    """f'(u), the optimal critic T*(x) = f'(p(x)/q(x)) (tv: the subgradient sign(u - 1)/2). (...) -> (...)."""
    check_divergence(divergence)
    return _DERIVATIVES[divergence](u)


def f_conjugate(t, divergence: str):
    """f*(t) = sup_u (u t - f(u)) of Table 2; +inf outside dom f* (no NaN, no NaN gradient). (...) -> (...)."""
    check_divergence(divergence)
    closed, domain = _CONJUGATES[divergence]
    if domain is None:
        return closed(t)
    inside, safe = domain[0](t), domain[1]
    return jnp.where(inside, closed(jnp.where(inside, t, safe)), jnp.inf)


def output_activation(v, divergence: str):
    """T = g_f(v), Table 2: the critic's unconstrained output v mapped into dom f*. (...) -> (...)."""
    check_divergence(divergence)
    return _ACTIVATIONS[divergence][0](v)


def conjugate_at_activation(v, divergence: str):
    """f*(g_f(v)) in closed form (js: softplus(v) - log 2; hellinger: e^v - 1; ...). (...) -> (...)."""
    check_divergence(divergence)
    return _ACTIVATIONS[divergence][1](v)


def variational_objective(v_p, v_q, divergence: str):
    """F = E_P[g_f(V)] - E_Q[f*(g_f(V))], the f-GAN's lower bound on D_f(P || Q) (Nowozin et al. 2016, eq. 6), with
    g_f = ``output_activation`` and f*(g_f(.)) = ``conjugate_at_activation`` (Table 2). v_p: (N,) the critic's raw
    outputs V on samples of P; v_q: (M,) on samples of Q; divergence: the f-divergence's name ('kl', 'reverse_kl',
    'js', 'tv', 'pearson', 'hellinger') -> ()."""
    return jnp.mean(output_activation(v_p, divergence)) - jnp.mean(conjugate_at_activation(v_q, divergence))


def f_divergence_discrete(p, q, divergence: str):
    """D_f(P || Q) = sum_k q_k f(p_k / q_k) for probability vectors (..., K), q > 0 -> (...)."""
    return jnp.sum(q * f_generator(p / q, divergence), axis=-1)


def variational_bound_discrete(p, q, t, divergence: str):
    """sum_k p_k t_k - q_k f*(t_k): the bound of eq. 4 at the critic t (..., K), by exact sums -> (...)."""
    return jnp.sum(p * t - q * f_conjugate(t, divergence), axis=-1)


# 2. Closed forms between univariate Gaussians P = N(m_p, s_p^2), Q = N(m_q, s_q^2) ---------------------
def gaussian_f_divergence(m_p, s_p, m_q, s_q, divergence: str):
    """D_f(P || Q) in closed form: kl, reverse_kl, hellinger, pearson (needs 2 s_q^2 > s_p^2), tv (needs s_p != s_q)."""
    if divergence in ("kl", "reverse_kl"):
        a, b = ((m_p, s_p), (m_q, s_q)) if divergence == "kl" else ((m_q, s_q), (m_p, s_p))
        return gaussian_kl(a[0][None], 2 * jnp.log(a[1])[None], b[0][None], 2 * jnp.log(b[1])[None])
    if divergence == "hellinger":  # 2 - 2 BC, BC the Bhattacharyya coefficient
        var = s_p**2 + s_q**2
        return 2 - 2 * jnp.sqrt(2 * s_p * s_q / var) * jnp.exp(-((m_p - m_q) ** 2) / (4 * var))
    if divergence == "pearson":  # int p^2 / q - 1
        w = 2 * s_q**2 - s_p**2
        return s_q**2 / (s_p * jnp.sqrt(w)) * jnp.exp((m_p - m_q) ** 2 / w) - 1
    if divergence == "tv":  # P(A) - Q(A) on A = {p > q}, bounded by the two roots of log p = log q
        a = 1 / s_q**2 - 1 / s_p**2
        b = 2 * (m_p / s_p**2 - m_q / s_q**2)
        c = m_q**2 / s_q**2 - m_p**2 / s_p**2 + 2 * jnp.log(s_q / s_p)
        disc = jnp.sqrt(b**2 - 4 * a * c)
        lo, hi = jnp.sort(jnp.stack([(-b - disc) / (2 * a), (-b + disc) / (2 * a)]))
        mass = (norm.cdf(hi, m_p, s_p) - norm.cdf(lo, m_p, s_p)) - (norm.cdf(hi, m_q, s_q) - norm.cdf(lo, m_q, s_q))
        return jnp.abs(mass)  # s_p < s_q: A is the interval; otherwise its complement (same |mass|)
    raise ValueError(f"no closed form for {divergence!r} between Gaussians")


# 3. The networks (twins of ``practice_torch.f_divergence.networks``: the MLPs and the DCGAN's) ---------------
# torch's BatchNorm: normalise by (var + eps) with eps 1e-5, running averages with momentum 0.1 (new = 0.9 old +
# 0.1 batch); flax writes the same update with momentum 0.9. A peer's ``BatchNorm2d(c, 0.8)`` meant momentum and set
# eps (the second positional argument): read at call time, so a spec's negative control can set it here.
BATCHNORM_EPS = 1e-5
BATCHNORM_MOMENTUM = 0.9


class TorchBatchNorm(nn.Module):
    """torch's ``BatchNorm1d``/``BatchNorm2d`` over the last (feature/channel) axis, flax's names (params ``scale``,
    ``bias``; ``batch_stats`` ``mean``, ``var``). ``use_running_average=False`` normalises by the batch's mean and
    biased variance, as torch's forward does, and moves the running statistics as torch does, the variance by the
    batch's *unbiased* one (n / (n - 1) times; flax's own ``nn.BatchNorm`` takes the biased one): so a generator
    trained in JAX keeps the statistics a PyTorch run would. Otherwise it normalises by the running statistics."""

    use_running_average: bool
    momentum: float = BATCHNORM_MOMENTUM  # flax's convention: new = momentum old + (1 - momentum) batch
    epsilon: float = BATCHNORM_EPS

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), x.dtype))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), x.dtype))
        scale = self.param("scale", nn.initializers.ones, (features,), x.dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), x.dtype)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x - mean), axes)  # biased: what the batch is normalised by
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1 - m) * mean
                running_var.value = m * running_var.value + (1 - m) * var * (n / (n - 1))  # torch's unbiased
        return (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias


def batch_norm(name: str, train: bool) -> TorchBatchNorm:
    """torch's ``BatchNorm1d``/``BatchNorm2d`` over the last (feature/channel) axis: ``train`` normalises by the
    batch's biased variance, as torch's forward does (and updates the running statistics as torch does), otherwise
    by the running statistics."""
    return TorchBatchNorm(use_running_average=not train, momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPS, name=name)


class MLPGenerator(nn.Module):
    """z (B, d) -> x (B, *shape): LeakyReLU(0.2) MLP, ``hidden`` widths, a sigmoid output for [0, 1] images
    (``unit_interval``); images come out channels last (B, H, W, C), from torch's (C, H, W) order. The twin of
    ``practice_torch.f_divergence.networks.MLPGenerator``; ``train`` is unused (no normalisation), there for the
    conv generator's signature."""

    shape: Sequence[int]
    hidden: Sequence[int]
    unit_interval: bool = False

    def setup(self):
        self.layers = [nn.Dense(w) for w in self.hidden]
        self.out = nn.Dense(math.prod(self.shape))

    def __call__(self, z, *, train: bool = True):
        h = z
        for layer in self.layers:
            h = leaky_relu(layer(h), 0.2)
        x = jnp.reshape(self.out(h), (-1, *self.shape))
        if len(self.shape) == 3:
            x = jnp.transpose(x, (0, 2, 3, 1))  # torch's (C, H, W) view, to channels last
        return jax.nn.sigmoid(x) if self.unit_interval else x


class MLPCritic(nn.Module):
    """x (B, *shape) (images channels last) -> V (B,): LeakyReLU(0.2) MLP on the flattened example (images in
    torch's (C, H, W) order), unconstrained output. The twin of ``practice_torch.f_divergence.networks.MLPCritic``.
    ``before_out``: a function of the last features (B, F) -> (B, F') that ``out`` reads instead (the GAN's
    ``minibatch_std``; torch's ``Adversarial`` widens ``out`` the same way). ``dense``: the layer class
    (``nn.Dense``, or the GAN's ``SpectralDense``)."""

    shape: Sequence[int]
    hidden: Sequence[int]
    before_out: Callable | None = None
    dense: Callable = nn.Dense

    def setup(self):
        self.layers = [self.dense(w) for w in self.hidden]
        self.out = self.dense(1)

    def features(self, x):
        """The last hidden layer, (B, hidden[-1])."""
        h = jnp.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x  # torch flattens (C, H, W)
        h = jnp.reshape(h, (h.shape[0], -1))
        for layer in self.layers:
            h = self.activation(layer(h))
        return h

    def activation(self, h):
        """What follows each hidden layer: LeakyReLU(0.2)."""
        return leaky_relu(h, 0.2)

    def __call__(self, x):
        return self.logit_and_features(x)[0]

    def logit_and_features(self, x):
        """(V (B,), the last hidden layer (B, hidden[-1]) that ``out`` reads): what a projection discriminator reads
        (``theory_jax.gan``)."""
        h = self.features(x)
        return self.out(self.before_out(h) if self.before_out else h)[:, 0], h


class ConvGenerator(nn.Module):
    """z (B, d) -> x (B, H, W, C): Linear (no bias), BatchNorm, ReLU to ``fc`` features; Linear (no bias) to the
    NCHW-ordered (channels[-1], H/4, W/4) map, BatchNorm, ReLU; ConvTranspose 4x4 stride 2 (torch's padding 1:
    flax's k - 1 - p = 2 on each side) twice, the first without bias, BatchNorm and ReLU between; a sigmoid
    (``unit_interval``). ``train``: batch statistics (torch's ``module.train()``) or the running ones
    (``module.eval()``, how a trained generator samples); the running statistics cross by the converter.

    The running statistics move as torch's do (``TorchBatchNorm``: the variance by the batch's unbiased one), so the
    twin trains them too (``python -m practice_jax train gan``)."""

    latent_dim: int
    shape: Sequence[int]
    channels: Sequence[int] = (64, 128)
    fc: int = 1024
    unit_interval: bool = True

    @nn.compact
    def __call__(self, z, *, train: bool):
        c, hgt, wid = self.shape
        small, big = self.channels
        pad = ((2, 2), (2, 2))  # theory_jax.vae.conv_transpose_padding(4, 1, 0)
        h = nn.relu(batch_norm("norm_fc", train)(nn.Dense(self.fc, use_bias=False, name="fc")(z)))
        h = nn.Dense(big * (hgt // 4) * (wid // 4), use_bias=False, name="project")(h)
        h = jnp.transpose(jnp.reshape(h, (-1, big, hgt // 4, wid // 4)), (0, 2, 3, 1))  # torch's view, to NHWC
        h = nn.relu(batch_norm("norm0", train)(h))
        h = ConvTranspose(small, (4, 4), strides=(2, 2), padding=pad, use_bias=False, name="up1")(h)
        h = nn.relu(batch_norm("norm1", train)(h))
        x = ConvTranspose(c, (4, 4), strides=(2, 2), padding=pad, name="up2")(h)
        return nn.sigmoid(x) if self.unit_interval else x


class ConvCritic(nn.Module):
    """x (B, H, W, C) -> V (B,): Conv 4x4 stride 2 (torch's padding 1, explicit) twice, a layer normalisation over
    (C, H, W) after the second (GroupNorm with one group), Linear to ``fc`` on the NCHW-flattened map, LayerNorm,
    Linear to 1; LeakyReLU(0.2) between. torch's epsilon 1e-5 in both norms. ``norm=False``: no normalisation (the
    WGAN's critic). The GAN's, the WGAN's and the f-GAN's discriminator; its weights cross by the converter.
    ``before_out``: as ``MLPCritic``'s, on the ``fc`` features; ``dense``, ``conv``: the layer classes (``nn.Dense``
    and ``nn.Conv``, or the GAN's ``SpectralDense`` and ``SpectralConv``)."""

    shape: Sequence[int]
    channels: Sequence[int] = (64, 128)
    fc: int = 1024
    norm: bool = True
    before_out: Callable | None = None
    dense: Callable = nn.Dense
    conv: Callable = nn.Conv

    @nn.compact
    def logit_and_features(self, x):
        """(V (B,), the ``fc`` features (B, fc) that ``out`` reads): what a projection discriminator reads
        (``theory_jax.gan``)."""
        small, big = self.channels
        pad = ((1, 1), (1, 1))
        h = leaky_relu(self.conv(small, (4, 4), strides=(2, 2), padding=pad, name="down1")(x), 0.2)
        h = self.conv(big, (4, 4), strides=(2, 2), padding=pad, name="down2")(h)
        if self.norm:
            h = nn.GroupNorm(num_groups=1, epsilon=GROUPNORM_EPS, use_fast_variance=False, name="norm2")(h)
        h = leaky_relu(h, 0.2)
        h = jnp.reshape(jnp.transpose(h, (0, 3, 1, 2)), (h.shape[0], -1))  # torch's NCHW flattening
        h = self.dense(self.fc, name="fc")(h)
        if self.norm:
            h = nn.LayerNorm(epsilon=GROUPNORM_EPS, use_fast_variance=False, name="norm_fc")(h)
        h = leaky_relu(h, 0.2)
        return self.dense(1, name="out")(self.before_out(h) if self.before_out else h)[:, 0], h

    def __call__(self, x):
        return self.logit_and_features(x)[0]
