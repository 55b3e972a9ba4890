"""Generative adversarial networks: the optimal discriminator, the minimax value as a Jensen-Shannon divergence,
and why the generator is trained on the non-saturating loss.

Lectures: GAN; GANs as classifier-guided models (Goodfellow et al. 2014, "Generative adversarial nets",
eq. 1, Proposition 1, Theorem 1 and sec. 3's remark on log D; Arjovsky & Bottou 2017, "Towards principled methods
for training GANs", sec. 2.2).

The game, with D = sigmoid(logit) the probability that x is real, x ~ p the data and x ~ q the generator's law:

    V(D, G) = E_p[log D(x)] + E_q[log(1 - D(x))]                                       (eq. 1)

For fixed G the maximiser is pointwise, D*(x) = p(x) / (p(x) + q(x)) (Proposition 1), whose logit is the
log density ratio log p(x) - log q(x): the discriminator is a classifier, and a trained one tells the generator
where the data are denser than its samples. At D*, V(D*, G) = 2 JS(p || q) - log 4 (Theorem 1), minimal exactly
when q = p. The generator's "saturating" loss E_q[log(1 - D)] has the gradient -D(x) d logit: it vanishes where
D confidently rejects the fakes (D -> 0), at the start of training; the non-saturating loss -E_q[log D] has
-(1 - D(x)) d logit instead, the same fixed points and a gradient of order one there.

All losses take the discriminator's logits (B,), so that log D = -softplus(-logit) and log(1 - D) =
-softplus(logit) stay finite for any logit. Twin: ``practice_torch/gan``; ``Adversarial`` is the flax twin of
its players, which ``python -m practice_jax train gan`` trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen.dtypes import promote_dtype
from scipy.stats import norm

from theory_jax.f_divergence import ConvCritic, ConvGenerator, MLPCritic, MLPGenerator, TorchBatchNorm


# 1. The losses, on the discriminator's logits ------------------------------------------------------------------
def discriminator_loss(real_logits, fake_logits):
    """-V(D, G) estimated on a batch: -mean log D(x_real) - mean log(1 - D(x_fake)) (Goodfellow et al. 2014, eq. 1,
    negated to be minimised), D = sigmoid(logit); binary cross-entropy with labels 1 for real and 0 for fake.
    real_logits: (B,) the discriminator's logits on real samples; fake_logits: (B',) on generated ones -> ()."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss_saturating(fake_logits):
    """The minimax generator loss, mean log(1 - D(G(z))) (eq. 1; to be minimised). fake_logits: (B,) -> ()."""
    return -jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss_nonsaturating(fake_logits):
    """The non-saturating generator loss, -mean log D(G(z)) with D = sigmoid(logit) (Goodfellow et al. 2014, sec. 3):
    its gradient -(1 - D) dlogit does not vanish where D(G(z)) is near 0. fake_logits: (B,) the discriminator's
    logits on generated samples -> ()."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def optimal_logit(log_p, log_q):
    """The logit of D*(x) = p(x) / (p(x) + q(x)) (Proposition 1): the log density ratio. log_p, log_q: (...) ->
    (...)."""
    return log_p - log_q


# 2. Expectations in closed form or by quadrature, in float64 ----------------------------------------------------
def value_discrete(d, p, q):
    """V(D, G) for distributions on K points: sum_k p_k log d_k + q_k log(1 - d_k). d, p, q: (..., K) -> (...)."""
    return jnp.sum(p * jnp.log(d) + q * jnp.log1p(-d), axis=-1)


def js_discrete(p, q):
    """JS(p || q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2, in nats. p, q: (..., K) -> (...)."""
    m = (p + q) / 2
    return 0.5 * jnp.sum(p * jnp.log(p / m), -1) + 0.5 * jnp.sum(q * jnp.log(q / m), -1)


def gauss_log_pdf(x, mean, std):
    """log N(x; mean, std^2). (...) -> (...)."""
    return -0.5 * ((x - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)


# Spectral normalisation (Miyato et al. 2018) ------------------------------------------------------------------
def normalize(x, eps: float = 1e-12):
    """x / max(||x||, eps): a vector (n,) scaled to unit length."""
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def power_iteration(w, u, v, n_iter: int = 1, eps: float = 1e-12):
    """(u, v) after n_iter steps of u = W v / ||W v||, v = W^T u / ||W^T u|| (Miyato et al. 2018, Algorithm 1,
    started from v). w: (out, in); n_iter = 0 returns (u, v) as they are."""
    for _ in range(n_iter):
        u = normalize(w @ v, eps)
        v = normalize(w.T @ u, eps)
    return u, v


def spectral_normalize(w, u, v, n_iter: int = 1, eps: float = 1e-12):
    """(w / sigma, u, v), sigma = u^T W v with (u, v) from ``power_iteration`` held constant for the gradient.
    w: (out, ...) read as (out, rest); u: (out,), v: (rest,)."""
    matrix = w.reshape(w.shape[0], -1)
    u, v = jax.lax.stop_gradient(power_iteration(matrix, u, v, n_iter, eps))
    sigma = u @ (matrix @ v)
    return w / sigma, u, v


def spectral_vectors(module: nn.Module, matrix):
    """The power iteration's (u (out,), v (rest,)) of a layer whose weight reads as ``matrix`` (out, rest), kept in
    its ``batch_stats`` (as flax's ``nn.SpectralNorm`` keeps its u); their values cross from torch's
    ``SpectralNorm`` buffers. -> (the u variable, the v variable)."""
    out, rest = matrix.shape
    u = module.variable("batch_stats", "u", lambda: jnp.full((out,), out**-0.5, matrix.dtype))
    v = module.variable("batch_stats", "v", lambda: jnp.full((rest,), rest**-0.5, matrix.dtype))
    return u, v


def spectral_step(module: nn.Module, weight):
    """W / sigma(W) for a torch-layout weight (out, ...): one power iteration when the layer's ``batch_stats`` may
    move (training: torch's ``SpectralNorm`` in ``train()`` mode, which steps at every forward pass) and the vectors
    stored; none otherwise (``eval()``)."""
    matrix = weight.reshape(weight.shape[0], -1)
    u, v = spectral_vectors(module, matrix)
    train = module.is_mutable_collection("batch_stats") and not module.is_initializing()
    normalised, u_next, v_next = spectral_normalize(weight, u.value, v.value, 1 if train else 0)
    if train:
        u.value, v.value = u_next, v_next
    return normalised


class SpectralDense(nn.Module):
    """``nn.Dense`` reading its kernel as W / sigma(W) (``spectral_step`` on torch's (out, in) layout): the twin of
    a torch ``Linear`` under ``SpectralNorm``. x (..., in) -> (..., features)."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return x @ spectral_step(self, kernel.T).T + bias


class SpectralConv(nn.Module):
    """``nn.Conv`` (HWIO kernel, explicit padding) reading its kernel as W / sigma(W) (``spectral_step`` on torch's
    (out, in, kh, kw) layout, the power iteration's v over in * kh * kw in torch's order): the twin of a torch
    ``Conv2d`` under ``SpectralNorm``. x (B, H, W, in) -> (B, H', W', features)."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        normalised = jnp.transpose(spectral_step(self, jnp.transpose(kernel, (3, 2, 0, 1))), (2, 3, 1, 0))
        return jax.lax.conv_general_dilated(x, normalised, tuple(self.strides), tuple(self.padding),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias


# Minibatch standard deviation (Karras et al. 2018) and the unrolled discriminator (Metz et al. 2017) -------------
def minibatch_std(h, eps: float = 1e-8):
    """h with one feature appended, the same for every example: the standard deviation of each feature over the
    minibatch, sqrt(Var_batch + eps), averaged over the features (Karras et al. 2018, sec. 3). A batch of collapsed
    samples shows a value near 0 that the discriminator's next layer can read. h: (B, F) a batch of the
    discriminator's features; eps: a float added to each variance -> (B, F + 1)."""
    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0) + eps))
    return jnp.concatenate([h, jnp.broadcast_to(std, (h.shape[0], 1))], axis=1)


# Maxout units (Goodfellow et al. 2013), PacGAN's toy discriminator's -----------------------------------------------
def maxout(h, pieces: int):
    """Maxout units (Goodfellow et al. 2013, eq. 1): unit i is the largest of its ``pieces`` linear pieces,
    h_i = max_j z_(i pieces + j), the pieces of a unit consecutive (as Blocks' ``Maxout``, which PacGAN's code uses).
    h: (B, units * pieces) a linear layer's output -> (B, units)."""
    return jnp.max(jnp.reshape(h, (*h.shape[:-1], -1, pieces)), axis=-1)


# Progressive growing (Karras et al. 2018, sec. 2 and 4) ------------------------------------------------------------
def pixel_norm(x, axis: int = -1, eps: float = 1e-8):
    """Each example's feature vector at each pixel scaled to unit root mean square over the channels (Karras et al.
    2018, sec. 4.2, eq. 2): x / sqrt(mean_c x^2 + eps). x: (B, H, W, C) (``axis`` -1: channels last) or (B, F)."""
    return x * jax.lax.rsqrt(jnp.mean(x**2, axis=axis, keepdims=True) + eps)


def fade_in(alpha, old, new):
    """The blend while a resolution fades in (Karras et al. 2018, Figure 2): (1 - alpha) old + alpha new."""
    return (1 - alpha) * old + alpha * new


def growth(step: int, phase_steps: int, stages: int) -> tuple[int, float]:
    """(stage, alpha) at ``step``: the lowest resolution alone for ``phase_steps`` steps, then for each doubling a
    fade-in (alpha rising linearly from 0 to 1) and as long at that resolution alone; after the last phase, the
    last stage at alpha 1."""
    phase = min(step // phase_steps, 2 * stages - 2)
    stage = (phase + 1) // 2
    alpha = (step - phase * phase_steps) / phase_steps if phase % 2 else 1.0
    return stage, min(alpha, 1.0)


def upsample(x):
    """Nearest-neighbour doubling of an image's side, channels last. (B, H, W, C) -> (B, 2H, 2W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x):
    """2 x 2 average pooling, channels last. (B, H, W, C) -> (B, H/2, W/2, C)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class EqualizedLinear(nn.Module):
    """y = x (c W) + b, W ~ N(0, 1) stored (in, out), c = sqrt(gain / fan_in) at run time (Karras et al. 2018,
    sec. 4.1, the equalised learning rate). x: (..., in) -> (..., out)."""

    features: int
    gain: float = 2.0

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel, bias = promote_dtype(x, kernel, bias)  # float64 weights or inputs compute in float64, as Dense
        return x @ (kernel * math.sqrt(self.gain / x.shape[-1])) + bias


class EqualizedConv2d(nn.Module):
    """A k x k convolution, stride 1, 'same' padding, channels last, with the equalised learning rate: the HWIO
    kernel ~ N(0, 1) scaled by sqrt(gain / (in k^2)). x: (B, H, W, in) -> (B, H, W, features)."""

    features: int
    kernel: int
    gain: float = 2.0

    @nn.compact
    def __call__(self, x):
        k, fan_in = self.kernel, x.shape[-1] * self.kernel**2
        w = self.param("kernel", nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, w, bias = promote_dtype(x, w, bias)
        y = jax.lax.conv_general_dilated(x, w * math.sqrt(self.gain / fan_in), (1, 1), [(k // 2, k // 2)] * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


class ProgressiveGenerator(nn.Module):
    """z (B, d) -> images (B, s, s, C) at ``stage`` (channels last), as torch's: the base block (pixel-normed z, an
    equalised linear layer to a (base, base, channels) map, a 3x3 conv), each later block a doubling and two 3x3
    convs, leaky ReLU 0.2 and pixel norm after each, a 1x1 ``to_rgb`` per resolution, the fade-in at alpha < 1 in
    pixels (after the sigmoid), as the reals are faded."""

    latent_dim: int
    image_shape: Sequence[int]
    channels: int = 32
    stages: int = 3
    unit_interval: bool = True

    def setup(self):
        c, side = self.image_shape[0], self.image_shape[1]
        self.base = side // 2 ** (self.stages - 1)
        self.project = EqualizedLinear(self.channels * self.base**2)
        self.convs = [EqualizedConv2d(self.channels, 3) for _ in range(1 + 2 * (self.stages - 1))]
        self.to_rgb = [EqualizedConv2d(c, 1, gain=1.0) for _ in range(self.stages)]

    def block(self, h, s: int):
        convs = self.convs[:1] if s == 0 else self.convs[2 * s - 1:2 * s + 1]
        if s > 0:
            h = upsample(h)
        for conv in convs:
            h = pixel_norm(nn.leaky_relu(conv(h), 0.2))
        return h

    def __call__(self, z, stage: int, alpha: float = 1.0):
        h = nn.leaky_relu(self.project(pixel_norm(z)), 0.2)  # torch's (C, base, base) order, then channels last
        h = pixel_norm(h.reshape(-1, self.channels, self.base, self.base).transpose(0, 2, 3, 1))
        h = self.block(h, 0)
        previous = h
        for s in range(1, stage + 1):
            previous, h = h, self.block(h, s)
        out = self.picture(self.to_rgb[stage](h))
        if stage > 0 and alpha < 1:  # in pixels: the discriminator sees fakes faded as the reals are
            out = fade_in(alpha, upsample(self.picture(self.to_rgb[stage - 1](previous))), out)
        return out

    def picture(self, rgb):
        """A ``to_rgb`` output as pixels: the sigmoid's [0, 1] when ``unit_interval``, else as it is."""
        return jax.nn.sigmoid(rgb) if self.unit_interval else rgb

    def init_all(self, z):
        """Every resolution's variables (for ``init``): each stage, fading in."""
        return [self(z, s, 0.5) for s in range(self.stages)]


class ProgressiveDiscriminator(nn.Module):
    """x (B, s, s, C) at ``stage`` -> logits (B,), as torch's: a 1x1 ``from_rgb`` per resolution, each block above the
    base two 3x3 convs and a 2x2 average pool, the base block a conv, the minibatch standard deviation of its
    flattened (torch-ordered) features and two equalised linear layers; the fade-in at alpha < 1."""

    image_shape: Sequence[int]
    channels: int = 32
    stages: int = 3

    def setup(self):
        self.from_rgb = [EqualizedConv2d(self.channels, 1) for _ in range(self.stages)]
        self.convs = [EqualizedConv2d(self.channels, 3) for _ in range(1 + 2 * (self.stages - 1))]
        self.dense = EqualizedLinear(self.channels)
        self.out = EqualizedLinear(1, gain=1.0)

    def block(self, h, s: int):
        convs = self.convs[:1] if s == 0 else self.convs[2 * s - 1:2 * s + 1]
        for conv in convs:
            h = nn.leaky_relu(conv(h), 0.2)
        return downsample(h) if s > 0 else h

    def __call__(self, x, stage: int, alpha: float = 1.0):
        h = self.block(nn.leaky_relu(self.from_rgb[stage](x), 0.2), stage)
        if stage > 0 and alpha < 1:
            h = fade_in(alpha, nn.leaky_relu(self.from_rgb[stage - 1](downsample(x)), 0.2), h)
        for s in range(stage - 1, -1, -1):
            h = self.block(h, s)
        flat = h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)  # torch's (C, H, W) order
        return self.out(nn.leaky_relu(self.dense(minibatch_std(flat)), 0.2))[..., 0]

    def init_all(self, x):
        """Every resolution's variables (for ``init``): each stage, fading in, on the image pooled to its side."""
        sides = [x]
        for _ in range(self.stages - 1):
            sides.append(downsample(sides[-1]))
        return [self(sides[self.stages - 1 - s], s, 0.5) for s in range(self.stages)]


def pack(x, m: int, axis: int = 1):
    """Packing (PacGAN, Lin et al. 2018, sec. 3): each row the m consecutive examples x[i m], ..., x[i m + m - 1]
    concatenated along ``axis`` of x (a vector's features; an image's channels, -1 here where images are channels
    last), so that the discriminator judges a draw of P^m against Q^m. x: (B, *example), B a multiple of m ->
    (B / m, *example with the axis m times as long)."""
    if x.shape[0] % m:
        raise ValueError(f"packing {m} examples at a time needs a multiple of {m} of them, got {x.shape[0]}")
    a = axis % x.ndim
    groups = jnp.moveaxis(jnp.reshape(x, (x.shape[0] // m, m, *x.shape[1:])), 1, a)
    return jnp.reshape(groups, (*groups.shape[:a], m * x.shape[a], *groups.shape[a + 2:]))


def unroll(loss, params, steps: int, lr: float):
    """theta_{k+1} = theta_k - lr grad loss(theta_k), ``steps`` times from the pytree ``params`` (eq. 4); jax.grad of
    a loss at the result differentiates through every step (eq. 6)."""
    for _ in range(steps):
        grads = jax.grad(loss)(params)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return params


def _safe_sqrt(v):
    """sqrt(v) for v >= 0, with the gradient 0 rather than 0 * inf = nan where v = 0 (a moment still zero)."""
    positive = v > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


def adam_unroll(loss, params, m, v, t: int, steps: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0):
    """``steps`` AdamW steps (Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019, Algorithm 2) from the pytree
    ``params`` and its moments m, v (pytrees of its shape) after t steps taken: eq. 4 with the discriminator's own
    optimizer as the update, as Metz et al.'s code unrolls it. Step k:

        g = grad loss(theta),  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
        theta <- theta (1 - lr wd) - lr (m / (1 - b1^(t+k))) / (sqrt(v / (1 - b2^(t+k))) + eps)"""
    b1, b2 = betas
    for k in range(1, steps + 1):
        grads = jax.grad(loss)(params)
        m = jax.tree.map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
        c1, c2 = 1 - b1 ** (t + k), 1 - b2 ** (t + k)
        params = jax.tree.map(lambda p, a, s: p * (1 - lr * weight_decay) - lr * (a / c1) / (_safe_sqrt(s / c2) + eps),
                              params, m, v)
    return params


def unrolled_generator_loss(fake, real, w, b, steps: int = 1, lr: float = 0.1):
    """The non-saturating generator loss against the logistic discriminator x w + b after ``steps`` unrolled steps
    of ``discriminator_loss`` on (real, fake). fake: (B, D), real: (B', D), w: (D,), b: () -> ()."""
    def d_loss(p):
        return discriminator_loss(real @ p["w"] + p["b"], fake @ p["w"] + p["b"])

    p = unroll(d_loss, {"w": w, "b": b}, steps, lr)
    return generator_loss_nonsaturating(fake @ p["w"] + p["b"])


def adam_unrolled_generator_loss(fake, real, w, b, m_w, v_w, m_b, v_b, t: int = 3, steps: int = 1,
                                 lr: float = 0.1, betas=(0.5, 0.999)):
    """``unrolled_generator_loss`` with the look-ahead taking Adam's steps (``adam_unroll``) from the moments
    (m_w, v_w) of w and (m_b, v_b) of b after t steps. fake: (B, D), real: (B', D), w, m_w, v_w: (D,),
    b, m_b, v_b: () -> ()."""
    def d_loss(p):
        return discriminator_loss(real @ p["w"] + p["b"], fake @ p["w"] + p["b"])

    p = adam_unroll(d_loss, {"w": w, "b": b}, {"w": m_w, "b": m_b}, {"w": v_w, "b": v_b}, t, steps, lr, betas)
    return generator_loss_nonsaturating(fake @ p["w"] + p["b"])


def normal_rule(half_width: float = 40.0, n: int = 160_001) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[f(Z)], Z ~ N(0, 1), by the trapezoid rule on [-half_width, half_width]: for a smooth
    integrand that decays like the Gaussian, its error falls exponentially with the node density (Trefethen &
    Weideman 2014), and a spacing of 5e-4 resolves the sharp logistic steps below. -> (n,), (n,)."""
    z = np.linspace(-half_width, half_width, n)
    return z, norm.pdf(z) * (z[1] - z[0])


def expect_normal(f, mean, std, rule):
    """E[f(x)] for x ~ N(mean, std^2) by a quadrature ``rule`` (nodes and weights: ``normal_rule``).
    f maps (n,) -> (n,). -> ()."""
    z, w = rule
    return jnp.sum(w * f(mean + std * z))


def gaussian_value_at_optimum(mu_p, s_p, mu_q, s_q, rule):
    """V(D*, G) between p = N(mu_p, s_p^2) and q = N(mu_q, s_q^2), with D*'s logit from the two densities. -> ()."""
    def logit(x):
        return optimal_logit(gauss_log_pdf(x, mu_p, s_p), gauss_log_pdf(x, mu_q, s_q))
    return (expect_normal(lambda x: -jax.nn.softplus(-logit(x)), mu_p, s_p, rule)
            + expect_normal(lambda x: -jax.nn.softplus(logit(x)), mu_q, s_q, rule))


def generator_gradients(mu, rule):
    """d/dmu of both generator losses for p = N(0, 1), q = N(mu, 1), x = mu + z, with D held at the D* of q = N(mu,
    1) (logit l(x) = -mu x + mu^2/2). Returns (saturating, non-saturating): ((), ())."""
    def logit(x):
        return -mu * x + mu**2 / 2  # held fixed: the current mu, not the differentiated m

    def saturating(m):
        return expect_normal(lambda x: -jax.nn.softplus(logit(x)), m, 1.0, rule)

    def nonsaturating(m):
        return expect_normal(lambda x: jax.nn.softplus(-logit(x)), m, 1.0, rule)
    return jax.grad(saturating)(mu), jax.grad(nonsaturating)(mu)


# PacGAN's toy players (Lin et al. 2018; fjxmlzn/PacGAN's grid task): its batch normalisation's epsilon and the
# weight of a batch in its running statistics (flax's momentum is the old statistics' weight), its weights' initial std
PACGAN_NORM_EPS, PACGAN_NORM_MOMENTUM, PACGAN_INIT_STD = 1e-4, 0.95, 0.02


class PacGANGenerator(nn.Module):
    """z (B, d) -> x (B, *shape), PacGAN's toy generator: for each width of ``hidden`` a Dense layer without bias,
    batch normalisation (``TorchBatchNorm``: eps 1e-4, a batch's weight 0.05 in the running statistics) and a ReLU,
    then a Dense output with bias (a sigmoid for [0, 1] images, ``unit_interval``; images channels last, from torch's
    (C, H, W) order); kernels from N(0, 0.02^2), biases zero. ``train``: batch statistics or the running ones. The
    twin of ``practice_torch.gan.networks.PacGANGenerator``, its names and its arguments (``latent_dim`` unused: the
    first Dense reads z's width)."""

    latent_dim: int
    shape: Sequence[int]
    hidden: Sequence[int]
    unit_interval: bool = False

    @nn.compact
    def __call__(self, z, *, train: bool = True):
        h = z
        init = nn.initializers.normal(PACGAN_INIT_STD)
        for i, width in enumerate(self.hidden):
            h = nn.Dense(width, use_bias=False, kernel_init=init, name=f"layers_{i}")(h)
            h = nn.relu(TorchBatchNorm(not train, PACGAN_NORM_MOMENTUM, PACGAN_NORM_EPS, name=f"norms_{i}")(h))
        x = jnp.reshape(nn.Dense(math.prod(self.shape), kernel_init=init, name="out")(h), (-1, *self.shape))
        if len(self.shape) == 3:
            x = jnp.transpose(x, (0, 2, 3, 1))  # torch's (C, H, W) view, to channels last
        return jax.nn.sigmoid(x) if self.unit_interval else x


class MaxoutDiscriminator(MLPCritic):
    """x (B, *shape) (images channels last) -> logit (B,), PacGAN's (and ALI's) toy discriminator: for each width of
    ``hidden`` a Dense layer to ``pieces`` times as many outputs and ``maxout`` over each unit's pieces, then a Dense
    logit; ``before_out`` and ``dense`` as ``MLPCritic``'s. The twin of
    ``practice_torch.gan.networks.MaxoutDiscriminator`` (its N(0, 0.02^2) weights cross by the converter)."""

    pieces: int = 5

    def setup(self):
        self.layers = [self.dense(w * self.pieces) for w in self.hidden]
        self.out = self.dense(1)

    def activation(self, h):
        """What follows each hidden layer: the maximum over each unit's ``pieces``, (B, w * pieces) -> (B, w)."""
        return maxout(h, self.pieces)


# 3. The players (the twin of ``practice_torch.gan.networks.Adversarial``) -------------------------------------------
class Adversarial(nn.Module):
    """A generator G(z[, y]) and a discriminator D(x[, y]) = sigmoid(logit(x[, y])): the f-GAN's networks
    (``theory_jax.f_divergence``), MLPs for vectors, the DCGAN's convolutions for images (channels last). With
    ``num_classes``, the one-hot label appended to z and a projection term <embed(y), phi(x)> (phi: the
    discriminator's last features) added to the logit (Miyato & Koyama 2018, eq. 3). ``minibatch_std``: the
    discriminator's ``out`` also reads the batch's feature spread (``minibatch_std`` of phi(x)), so a batch is judged
    as a whole. ``spectral_norm``: every Dense and Conv of the discriminator is ``SpectralDense`` / ``SpectralConv``
    (its vectors in ``batch_stats``, stepped by a logit applied with that collection mutable). ``pack`` = m > 1: the
    discriminator judges m consecutive examples at once (``pack``, along the features or the channels), a batch's
    last B mod m sitting out, as torch's does. ``architecture``: ``mlp``, ``conv`` or ``pacgan`` (``PacGANGenerator``
    and ``MaxoutDiscriminator``: ``discriminator_hidden`` units of ``pieces`` pieces). Names as torch's, so the
    converter carries the weights either way."""

    shape: Sequence[int]
    architecture: str = "mlp"
    hidden: Sequence[int] = (128, 128)
    channels: Sequence[int] = (64, 128)
    fc: int = 1024
    num_classes: int = 0
    unit_interval: bool = False
    minibatch_std: bool = False
    spectral_norm: bool = False
    pack: int = 1
    discriminator_hidden: Sequence[int] = (200, 200, 200)
    pieces: int = 5

    def setup(self):
        before_out = minibatch_std if self.minibatch_std else None
        dense, conv = (SpectralDense, SpectralConv) if self.spectral_norm else (nn.Dense, nn.Conv)
        if self.architecture == "mlp":
            self.generator = MLPGenerator(self.shape, self.hidden, self.unit_interval)
            self.discriminator = MLPCritic(self.shape, self.hidden, before_out, dense)
            width = self.hidden[-1]
        elif self.architecture == "pacgan":
            self.generator = PacGANGenerator(0, self.shape, self.hidden, self.unit_interval)
            self.discriminator = MaxoutDiscriminator(self.shape, self.discriminator_hidden, before_out, dense,
                                                     pieces=self.pieces)
            width = self.discriminator_hidden[-1]
        else:
            self.generator = ConvGenerator(0, self.shape, self.channels, self.fc, self.unit_interval)
            self.discriminator = ConvCritic(self.shape, self.channels, self.fc, before_out=before_out, dense=dense,
                                            conv=conv)
            width = self.fc
        if self.num_classes:
            self.embed = nn.Embed(self.num_classes, width)

    def __call__(self, z, y=None, *, train: bool = True):
        """G(z, y): z (B, d), y (B,) labels (conditional nets) -> (B, *example); ``train``: the generator's batch
        normalisation by the batch (updating ``batch_stats``) or by its running statistics."""
        if self.num_classes:
            z = jnp.concatenate([z, jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)], axis=1)
        return self.generator(z, train=train)

    def logit(self, x, y=None):
        """The discriminator's logit (B,) of x (B, *example), y (B,) labels (conditional nets); packed, (B // m,)."""
        if self.pack > 1:
            x = pack(x[:x.shape[0] - x.shape[0] % self.pack], self.pack, axis=1 if x.ndim == 2 else -1)
        if not self.num_classes:
            return self.discriminator(x)
        logit, h = self.discriminator.logit_and_features(x)
        return logit + jnp.sum(self.embed(y) * h, axis=-1)

    def init_all(self, z, x, y=None):
        """Every variable (both players; for ``init``)."""
        return self(z, y), self.logit(x, y)


def product_law(p, m: int):
    """The law of m independent draws from p (K,), over the K^m outcomes in row-major order: (K^m,)."""
    law = p
    for _ in range(m - 1):
        law = jnp.reshape(law[:, None] * p[None, :], (-1,))
    return law


def total_variation(p, q):
    """TV(p, q) = 1/2 sum_k |p_k - q_k|. p, q: (..., K) -> (...)."""
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
