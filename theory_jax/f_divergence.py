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
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from flax import linen as nn
from jax.scipy.special import xlogy
from jax.scipy.stats import norm

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.elbo import gaussian_kl
from theory_jax.subgradients import absolute, leaky_relu
from theory_jax.vae import GROUPNORM_EPS

TITLE = "f-divergences and the variational bound of the f-GAN"
LECTURES = "f-divergences; variational divergence minimisation; f-GAN; Jensen's inequality"
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
            h = leaky_relu(layer(h), 0.2)
        return h

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
        h = nn.ConvTranspose(small, (4, 4), strides=(2, 2), padding=pad, transpose_kernel=True, use_bias=False,
                             name="up1")(h)
        h = nn.relu(batch_norm("norm1", train)(h))
        x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding=pad, transpose_kernel=True, name="up2")(h)
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


# 4. The derivation -------------------------------------------------------------------------------------
def _sympy_table():
    """SymPy generators, Table 2's conjugates, a parametrisation t(r) of dom f* (r > 0) and f''(u)."""
    u, r = sp.symbols("u r", positive=True)
    t = sp.symbols("t", real=True)
    table = {
        "kl": (u * sp.log(u), sp.exp(t - 1), r - 1, 1 / u),
        "reverse_kl": (-sp.log(u), -1 - sp.log(-t), -r, 1 / u**2),
        "js": (u * sp.log(u) - (u + 1) * sp.log((u + 1) / 2), -sp.log(2 - sp.exp(t)), sp.log(2 / (1 + r)),
               1 / (u * (u + 1))),
        "tv": (sp.Abs(u - 1) / 2, t, None, None),
        "pearson": ((u - 1) ** 2, t**2 / 4 + t, r - 2, sp.Integer(2)),
        "hellinger": ((sp.sqrt(u) - 1) ** 2, t / (1 - t), 1 - r, 1 / (2 * u ** sp.Rational(3, 2))),
    }
    return u, r, t, table


def _conjugate_by_stationarity(f, conj, t_of_r, u, t):
    """Solve f'(u) = t for u on dom f* (t = t(r), r > 0), substitute into u t - f(u): (derived, table's)."""
    (u_star,) = sp.solve(sp.Eq(sp.diff(f, u), t_of_r), u)
    return sp.simplify(u_star * t_of_r - f.subs(u, u_star)), conj.subs(t, t_of_r)


_T_RANGES = {"kl": (-2, 2), "reverse_kl": (-3, -0.3), "js": (-2, 0.6), "tv": (-0.5, 0.5), "pearson": (-2, 3),
             "hellinger": (-2, 0.6)}  # t values whose maximiser u*(t) lies inside the u grid [0, 12]


@partial(jax.jit, static_argnames="divergence")
def _grid_sup(t, u_grid, divergence):
    """max_u (u t - f(u)) over the grid, for each t (T,) -> (T,)."""
    return jnp.max(t[:, None] * u_grid[None] - f_generator(u_grid, divergence)[None], axis=1)


@partial(jax.jit, static_argnames="divergence")
def _curvatures(t, divergence):
    """(f*)''(t) and (f*)'''(t) by jax.grad, elementwise. t: (N,) -> two (N,)."""
    second = jax.grad(jax.grad(lambda s: f_conjugate(s, divergence)))
    return jax.vmap(second)(t), jax.vmap(jax.grad(second))(t)


def _section_generators(d: Derivation, rng: np.random.Generator, u, table, names) -> None:
    """Table 1's generators: f(1) = 0 and convex, symbolically and numerically."""
    d.say("$D_f(P\\|Q) = \\mathbb E_Q[f(p/q)]$ for convex $f$ with $f(1) = 0$; Nowozin et al.'s Table 1 "
          "generators, Table 2 conjugates $f^*(t) = \\sup_{u \\ge 0} ut - f(u)$ and output activations $g_f$.")
    for k in DIVERGENCES:  # generators: normalised and convex
        f, _, _, f2 = table[k]
        d.symbolic(f"{names[k]}: $f(u) = {sp.latex(f)}$ has $f(1) = 0$", f.subs(u, 1), 0)
        if f2 is None:
            a = sp.symbols("a", positive=True)
            d.symbolic("total variation: $f = |u-1|/2$ is affine on each side of 1, $f(1 \\pm a) = a/2$: the "
                       "maximum of two affine functions, hence convex",
                       (f.subs(u, 1 + a) - a / 2) ** 2 + (f.subs(u, 1 - a) - a / 2) ** 2, 0)
        else:
            d.symbolic(f"{names[k]}: $f''(u) = {sp.latex(f2)} > 0$ for $u > 0$, so $f$ is convex",
                       sp.diff(f, u, 2), f2)
    a_, b_, lam = rng.uniform(0, 5, 1000), rng.uniform(0, 5, 1000), rng.uniform(0, 1, 1000)
    mix = lam * a_ + (1 - lam) * b_
    d.inequality("Convexity, numerically: $f(\\lambda a + (1-\\lambda) b) \\le \\lambda f(a) + (1-\\lambda) f(b)$ "
                 "for all six generators at 1000 random $(a, b, \\lambda)$",
                 jnp.stack([f_generator(mix, k) for k in DIVERGENCES]),
                 jnp.stack([lam * f_generator(a_, k) + (1 - lam) * f_generator(b_, k) for k in DIVERGENCES]), 1e-12)
    fig, ax = new_figure()
    grid = jnp.linspace(0.01, 4.0, 400)
    for k in DIVERGENCES:
        ax.plot(grid, f_generator(grid, k), label=names[k])
    ax.plot([1.0], [0.0], "ko", ms=4)
    ax.set(xlabel="$u = p/q$", ylabel="$f(u)$", ylim=(-0.6, 2.5))
    ax.legend(fontsize="x-small", ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    d.figure(fig, "The six generators: convex, and all zero at $u = 1$, where $p = q$.")


def _section_conjugates(d: Derivation, rng: np.random.Generator, u, t, table, names):
    """Table 2's conjugates by stationarity and by a grid maximum, and Legendre duality."""
    d.say("Conjugates: solve the stationarity condition $f'(u) = t$ for $u^*(t)$, substitute into $ut - f(u)$, "
          "simplify. $t$ is parametrised by $r > 0$ so that SymPy knows it lies in $\\mathrm{dom} f^*$.")
    u_grid = jnp.linspace(0.0, 12.0, 240_001)  # step 5e-5, u = 1 on it
    sups = {}
    for k in DIVERGENCES:
        f, conj, t_of_r, _ = table[k]
        if t_of_r is None:  # tv: u t - |u-1|/2 is piecewise linear with slopes t + 1/2 (u < 1), t - 1/2 (u > 1)
            d.symbolic("total variation: for $|t| \\le 1/2$ the objective $ut - |u-1|/2$ rises up to $u = 1$ "
                       "and falls after it, so $f^*(t) = 1\\cdot t - f(1) = t$ (Table 2, on $[-1/2, 1/2]$)",
                       t * 1 - f.subs(u, 1), conj)
        else:
            derived, closed = _conjugate_by_stationarity(f, conj, t_of_r, u, t)
            d.symbolic(f"{names[k]}: $f^*(t) = {sp.latex(conj)}$ (dom: $t = {sp.latex(t_of_r)}$, $r > 0$)",
                       derived, closed)
        ts = jnp.linspace(*_T_RANGES[k], 25)
        sups[k] = ts, _grid_sup(ts, u_grid, k)
        d.numeric(f"{names[k]}: the maximum of $ut - f(u)$ over a grid of 240 001 $u \\in [0, 12]$ equals "
                  f"`f_conjugate` at 25 $t \\in [{_T_RANGES[k][0]}, {_T_RANGES[k][1]}]$",
                  sups[k][1], f_conjugate(ts, k), rtol=0.0, atol=1e-7)
    fig, ax = new_figure()
    for i, (k, (ts, sup)) in enumerate(sups.items()):
        fine = jnp.linspace(*_T_RANGES[k], 200)
        ax.plot(fine, f_conjugate(fine, k), color=f"C{i}", label=names[k])
        ax.plot(ts, sup, "o", color=f"C{i}", ms=2.5)
    ax.set(xlabel="$t$", ylabel="$f^*(t)$")
    ax.legend(fontsize="x-small", ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    d.figure(fig, "Table 2's conjugates (lines) run through the grid maxima of $ut - f(u)$ (dots) for all six.")
    us = jnp.asarray(rng.uniform(0.1, 5.0, 50))
    dual = {k: jax.vmap(jax.grad(lambda s, k=k: f_conjugate(s, k)))(f_derivative(us, k)) for k in DIVERGENCES if k != "tv"}
    d.gradient("Legendre duality: $(f^*)'(f'(u)) = u$ (jax.grad of `f_conjugate`) at 50 random $u$, for all but "
               "total variation, whose $f$ has no invertible derivative", jnp.stack(list(dual.values())),
               jnp.stack([us] * len(dual)))
    return u_grid


def _section_domains(d: Derivation, u_grid) -> None:
    """The domain of f*: Pearson's sup over u >= 0, and the output activations g_f that land inside dom f*."""
    low = jnp.linspace(-5.0, -2.5, 11)
    d.numeric("Mind the domain: for Pearson, $u^* = 1 + t/2 < 0$ when $t < -2$; over $u \\ge 0$ the sup is at "
              "$u = 0$, $-f(0) = -1$ (grid maximum at $t \\in [-5, -2.5]$) ...", _grid_sup(low, u_grid, "pearson"),
              -jnp.ones(11))
    d.inequality("... below Table 2's $t^2/4 + t$ (the conjugate of $(u-1)^2$ over all of $\\mathbb R$): the "
                 "bound built with Table 2's $f^*$ stays a lower bound, only looser there",
                 -jnp.ones(11), f_conjugate(low, "pearson"))
    v = jnp.linspace(-8.0, 8.0, 161)
    d.numeric("`conjugate_at_activation(v)` is $f^*(g_f(v))$ for all six (its stable closed forms, e.g. JS: "
              "$\\mathrm{softplus}(v) - \\log 2$, Hellinger: $e^v - 1$), $v \\in [-8, 8]$",
              jnp.stack([conjugate_at_activation(v, k) for k in DIVERGENCES]),
              jnp.stack([f_conjugate(output_activation(v, k), k) for k in DIVERGENCES]))
    d.inequality("...and $g_f$ maps $v \\in [-8, 8]$ into $\\mathrm{dom} f^*$: $-e^{-v} < 0$ (reverse KL), "
                 "$\\log 2 - \\mathrm{softplus}(-v) < \\log 2$ (JS), $1 - e^{-v} < 1$ (Hellinger), "
                 "$|\\tanh(v)/2| < 1/2$ (TV)",
                 jnp.stack([output_activation(v, "reverse_kl"), output_activation(v, "js"),
                            output_activation(v, "hellinger"), jnp.abs(output_activation(v, "tv"))]),
                 jnp.asarray([0.0, LOG2, 1.0, 0.5])[:, None] - 1e-12)


def _section_jensen(d: Derivation, rng: np.random.Generator, names):
    """D_f >= 0 by Jensen on random discrete distributions, with equality at P = Q."""
    # Jensen: D_f >= 0 on random discrete distributions.
    p = jnp.asarray(rng.dirichlet(np.ones(10), 200))
    q = jnp.asarray(rng.dirichlet(np.ones(10), 200))
    d.say("$D_f \\ge 0$ by Jensen: $D_f(P\\|Q) = \\mathbb E_Q[f(p/q)] \\ge f(\\mathbb E_Q[p/q]) = f(1) = 0$. "
          "200 random pairs of distributions on 10 points (Dirichlet(1)).")
    d.numeric("$\\mathbb E_Q[p/q] = \\sum_k q_k p_k/q_k = \\sum_k p_k = 1$", jnp.sum(q * (p / q), -1), jnp.ones(200))
    with np.errstate(divide="ignore"):
        direct = {"kl": np.sum(p * np.log(p / q), -1), "reverse_kl": np.sum(q * np.log(q / p), -1),
                  "js": np.sum(p * np.log(2 * p / (p + q)) + q * np.log(2 * q / (p + q)), -1),
                  "tv": 0.5 * np.sum(np.abs(p - q), -1), "pearson": np.sum((p - q) ** 2 / q, -1),
                  "hellinger": np.sum((np.sqrt(p) - np.sqrt(q)) ** 2, -1)}
    formulas = {"kl": "\\sum p \\log p/q", "reverse_kl": "\\sum q \\log q/p",
                "js": "\\sum p \\log\\frac{2p}{p+q} + q \\log\\frac{2q}{p+q}", "tv": "\\frac12\\sum|p-q|",
                "pearson": "\\sum (p-q)^2/q", "hellinger": "\\sum(\\sqrt p - \\sqrt q)^2"}
    for k in DIVERGENCES:
        value = f_divergence_discrete(p, q, k)
        d.numeric(f"{names[k]}: $\\sum_k q_k f(p_k/q_k) = {formulas[k]}$", value, direct[k])
        gap = value - f_generator(jnp.sum(q * (p / q), -1), k)
        d.inequality(f"{names[k]}: the Jensen gap $\\mathbb E_Q f(p/q) - f(\\mathbb E_Q\\, p/q) = D_f \\ge 0$ "
                     f"(smallest of 200: {float(gap.min()):.3g})", -gap, 0.0)
    d.numeric("...with equality when $P = Q$: $D_f(P\\|P) = 0$ for all six", jnp.stack(
        [f_divergence_discrete(p, p, k) for k in DIVERGENCES]), jnp.zeros((len(DIVERGENCES), 200)))
    return p, q


def _section_discrete_bound(d: Derivation, rng: np.random.Generator, names, p, q) -> None:
    """The variational bound on discrete distributions: tight at T* = f'(p/q), strictly lower elsewhere."""
    # The variational bound on discrete distributions: exact sums.
    d.say("Fenchel-Young, $f(u) \\ge ut - f^*(t)$, gives $D_f \\ge \\sum_k p_k T_k - q_k f^*(T_k)$ for every critic "
          "$T$; at $T^* = f'(p/q)$ it is an equality. 200 pairs as above, exact sums.")
    for k in DIVERGENCES:
        t_star = f_derivative(p / q, k)
        exact = f_divergence_discrete(p, q, k)
        d.numeric(f"{names[k]}: the bound at $T^* = f'(p/q)$ equals $D_f$", variational_bound_discrete(p, q, t_star, k),
                  exact)
        grad = jax.grad(lambda tt, k=k: jnp.sum(variational_bound_discrete(p, q, tt, k)))(t_star)
        sign = jnp.asarray(rng.choice([-1.0, 1.0], t_star.shape))
        rho = jnp.asarray(rng.uniform(0.02, 0.1, t_star.shape))
        if k == "tv":  # T* = sign(p - q)/2 sits on the boundary of dom f* = [-1/2, 1/2]: a KKT point
            d.numeric("total variation: the gradient $p - q$ points out of $[-1/2, 1/2]$ at each $T^*_k$: "
                      "$\\nabla_T \\cdot T^* = |p - q|/2$ (a maximum on the boundary, not a stationary point)",
                      grad * t_star, jnp.abs(p - q) / 2)
            lower = variational_bound_discrete(p, q, t_star * (1 - 2 * rho), k)  # moved inward by rho_k
            drop = 0.5 * jnp.sum(rho * jnp.abs(p - q), -1)
            how = "linear drop $\\sum_k |p_k - q_k| \\rho_k$ of $T^*(1 - 2\\rho)$, $\\rho_k \\in [0.02, 0.1]$"
        else:
            d.gradient(f"{names[k]}: $\\nabla_T$ bound $= p - q\\,(f^*)'(T^*) = 0$ at $T^*$ (jax.grad)", grad,
                       jnp.zeros_like(grad))
            c2, c3 = (c.reshape(p.shape) for c in _curvatures(t_star.ravel(), k))
            delta = sign * rho * jnp.minimum(1.0, c2 / jnp.abs(c3))  # where (f*)'' changes by < 10%
            lower = variational_bound_discrete(p, q, t_star + delta, k)
            drop = 0.25 * jnp.sum(q * c2 * delta**2, -1)
            how = ("second-order drop $\\frac12\\sum_k q_k (f^*)''\\delta_k^2$; $\\delta_k = \\pm\\rho_k "
                   "\\min(1, (f^*)''/|(f^*)'''|)$, $\\rho_k \\in [0.02, 0.1]$")
        d.inequality(f"{names[k]}: a perturbed critic gives a strictly lower bound, by at least half the {how}",
                     lower, exact - drop)


def _perturbed_bounds(x, dens_p, dens_q, divergence, eps):
    """The quadrature bound int p T - q f*(T) at the critics T = T* + e cos x, for each e of ``eps`` -> (E,)."""
    t_grid = f_derivative(dens_p / dens_q, divergence)

    def bound(e):
        critic = t_grid + e * jnp.cos(x)
        return jnp.trapezoid(dens_p * critic - dens_q * f_conjugate(critic, divergence), x)
    return jax.vmap(bound)(eps)


def _section_gaussian_bound(d: Derivation, rng: np.random.Generator, names) -> None:
    """The variational bound between two Gaussians, by closed forms, quadrature and Monte Carlo."""
    # The variational bound between Gaussians: quadrature and Monte Carlo.
    m_p, s_p, m_q, s_q = jnp.asarray(0.4), jnp.asarray(0.8), jnp.asarray(-0.3), jnp.asarray(1.1)
    x = jnp.linspace(-16.0, 16.0, 64_001)
    dens_p, dens_q = norm.pdf(x, m_p, s_p), norm.pdf(x, m_q, s_q)
    n = 200_000
    xp, xq = m_p + s_p * jnp.asarray(rng.standard_normal(n)), m_q + s_q * jnp.asarray(rng.standard_normal(n))
    d.say("Gaussians: $P = \\mathcal N(0.4, 0.8^2)$, $Q = \\mathcal N(-0.3, 1.1^2)$. Quadrature: the trapezoid rule "
          "on 64 001 points of $[-16, 16]$; Monte Carlo: 200 000 draws of each.")

    def t_star_at(z, k):
        return f_derivative(norm.pdf(z, m_p, s_p) / norm.pdf(z, m_q, s_q), k)

    for k in DIVERGENCES:
        quad = jnp.trapezoid(dens_q * f_generator(dens_p / dens_q, k), x)
        if k == "js":
            samples = jnp.log(2 * norm.pdf(xp, m_p, s_p) / (norm.pdf(xp, m_p, s_p) + norm.pdf(xp, m_q, s_q))) + jnp.log(
                2 * norm.pdf(xq, m_q, s_q) / (norm.pdf(xq, m_p, s_p) + norm.pdf(xq, m_q, s_q)))
            d.monte_carlo("Jensen-Shannon (no closed form): the quadrature of $\\int q f(p/q)$ against Monte Carlo "
                          "$\\mathbb E_P \\log\\frac{2p}{p+q} + \\mathbb E_Q \\log\\frac{2q}{p+q}$", samples, quad)
        else:
            closed = gaussian_f_divergence(m_p, s_p, m_q, s_q, k)
            kink = k == "tv"  # |p - q| has kinks where the densities cross: the trapezoid rule is O(h^2) there
            d.numeric(f"{names[k]}: the closed form between Gaussians equals the quadrature of $\\int q f(p/q)$"
                      + (" (kinks: atol 1e-7)" if kink else ""), quad, closed, **({"rtol": 0, "atol": 1e-7} if kink else {}))
        t_grid = f_derivative(dens_p / dens_q, k)
        d.numeric(f"{names[k]}: the bound at $T^*$, $\\int p T^* - q f^*(T^*)$ by quadrature, equals $D_f$",
                  jnp.trapezoid(dens_p * t_grid - dens_q * f_conjugate(t_grid, k), x), quad, rtol=1e-9, atol=1e-10)
        d.monte_carlo(f"{names[k]}: ... and by Monte Carlo, $T^*(x_P) - f^*(T^*(x_Q))$ over independent pairs",
                      t_star_at(xp, k) - f_conjugate(t_star_at(xq, k), k), quad)
        if k == "tv":
            shrunk = jnp.trapezoid(dens_p * 0.9 * t_grid - dens_q * f_conjugate(0.9 * t_grid, k), x)
            d.inequality("total variation: the shrunk critic $0.9\\,T^*$ gives $0.9\\,D_{TV}$, strictly lower",
                         shrunk, 0.91 * quad)
        else:
            bumps = [jnp.trapezoid(dens_p * (t_grid + e * jnp.cos(x)) - dens_q * f_conjugate(t_grid + e * jnp.cos(x), k), x)
                     for e in (-0.05, 0.05)]
            curv = _curvatures(t_grid, k)[0]
            drop = 0.25 * 0.05**2 * jnp.trapezoid(dens_q * curv * jnp.cos(x) ** 2, x)
            d.inequality(f"{names[k]}: the critics $T^* \\pm 0.05 \\cos x$ give strictly lower bounds (by at least "
                         "half the second-order drop)", jnp.stack(bumps), quad - drop)
    fig, ax = new_figure()
    eps = jnp.linspace(-0.3, 0.3, 21)
    for k in DIVERGENCES:
        if k != "tv":
            bounds = _perturbed_bounds(x[::8], dens_p[::8], dens_q[::8], k, eps)
            ax.plot(eps, bounds / bounds[10], label=names[k])
    ax.set(xlabel="critic $T^* + \\epsilon \\cos x$: $\\epsilon$", ylabel="bound / $D_f$")
    ax.legend(fontsize="small")
    d.figure(fig, "Between the two Gaussians the variational bound, as a fraction of $D_f$, peaks at 1 exactly at the "
                  "optimal critic $T^* = f'(p/q)$ and falls off on both sides.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("f_divergence", TITLE, LECTURES, echo=echo)
    u, r, t, table = _sympy_table()
    rng = np.random.default_rng(0)
    names = {"kl": "KL", "reverse_kl": "reverse KL", "js": "Jensen-Shannon (2 JS)", "tv": "total variation",
             "pearson": "Pearson chi^2", "hellinger": "squared Hellinger"}

    _section_generators(d, rng, u, table, names)
    u_grid = _section_conjugates(d, rng, u, t, table, names)
    _section_domains(d, u_grid)
    p, q = _section_jensen(d, rng, names)
    _section_discrete_bound(d, rng, names, p, q)
    _section_gaussian_bound(d, rng, names)
    return d
