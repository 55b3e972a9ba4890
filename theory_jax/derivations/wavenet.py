"""The ``wavenet`` derivation (``python -m theory_jax wavenet``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/wavenet.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE``
as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, float64_params, full_precision, new_figure
from theory_jax.wavenet import (
    WaveNet,
    block_weights,
    causal_conv1d,
    centred_padding,
    clock_features,
    dequantize,
    gated_activation,
    input_gradient,
    mu_law_compand,
    mu_law_decode,
    mu_law_encode,
    mu_law_expand,
    quantize,
    receptive_field,
)

TITLE = "WaveNet: mu-law, dilated causal convolutions, gated residual blocks"
LECTURES = "autoregressive audio; WaveNet; dilated causal convolutions; mu-law companding"


# 6. The derivation ---------------------------------------------------------------------------------------------------
def _sympy_inverse():
    x, mu = sp.symbols("x mu", positive=True)
    y = sp.log(1 + mu * x) / sp.log(1 + mu)
    return ((1 + mu) ** y - 1) / mu, x


def _section_mu_law(d: Derivation, rng: np.random.Generator, mu: float):
    """mu-law companding: its inverse (SymPy and numerically) and its derivative, fine near silence."""
    d.say("WaveNet models a waveform autoregressively, $p(x) = \\prod_t p(x_t \\mid x_{<t}, h)$, each factor a "
          "256-way softmax over mu-law levels: $f(x) = \\mathrm{sign}(x)\\,\\ln(1 + \\mu|x|) / \\ln(1 + \\mu)$, "
          "$\\mu = 255$, then 256 equally spaced levels of $[-1, 1]$.")
    expanded, x_sym = _sympy_inverse()
    d.symbolic("$f^{-1}(f(x)) = x$ for $x > 0$ with $f^{-1}(y) = ((1+\\mu)^{y} - 1)/\\mu$ (odd symmetry gives $x<0$)",
               expanded, x_sym)
    x = jnp.asarray(np.concatenate([rng.uniform(-1, 1, 1000), [-1.0, 0.0, 1.0, 1e-9, -1e-9]]))
    d.numeric("`mu_law_expand(mu_law_compand(x)) = x` before quantisation (1005 points of $[-1, 1]$, the ends and 0)",
              mu_law_expand(mu_law_compand(x, mu), mu), x)
    grad = jax.vmap(jax.grad(lambda v: mu_law_compand(v, mu)))(x[:1000])
    d.gradient("$f'(x) = \\mu / ((1 + \\mu|x|) \\ln(1 + \\mu))$: fine steps near 0 ($f'(0) \\approx 46$), coarse at "
               "$|x| = 1$ ($\\approx 0.18$)", grad, mu / ((1 + mu * jnp.abs(x[:1000])) * math.log1p(mu)))
    return x


def _section_quantisation(d: Derivation, rng: np.random.Generator, x, mu: float, levels: int) -> None:
    """The quantisation error: half a level in the mu-law domain, proportional to loudness in the waveform domain."""
    y = mu_law_compand(x, mu)
    y_hat = dequantize(quantize(y, levels), levels)
    d.inequality("Quantisation error in the mu-law domain: $|y - \\hat y| \\le 1/(L - 1)$, half a level step",
                 jnp.abs(y - y_hat), 1.0 / (levels - 1), slack=1e-15)
    slope = math.log1p(mu) / mu * jnp.exp((jnp.abs(y) + 1.0 / (levels - 1)) * math.log1p(mu))
    error = jnp.abs(x - mu_law_decode(mu_law_encode(x, levels), levels))
    d.inequality("...and in the waveform domain by the mean value theorem: $|x - f^{-1}(\\hat y)| \\le "
                 "\\max_{|u - y| \\le 1/(L-1)} |(f^{-1})'(u)| / (L - 1)$ (small near silence, large when loud)",
                 error, slope / (levels - 1), slack=1e-15)
    order = np.argsort(np.asarray(x))
    fig, axes = new_figure(columns=2)
    axes[0].plot(x[order], y[order], label="$f(x)$, $\\mu = 255$")
    axes[0].plot([-1, 1], [-1, 1], "k--", lw=1, label="identity")
    axes[0].set(xlabel="waveform $x$", ylabel="companded $y = f(x)$", title="mu-law companding")
    axes[0].legend()
    axes[1].plot(jnp.abs(x), error, ".", ms=2, label="$|x - f^{-1}(\\hat y)|$")
    axes[1].plot(jnp.abs(x)[order], (slope / (levels - 1))[order], "-", color="C1", label="bound")
    axes[1].set(xlabel="$|x|$", ylabel="waveform error", title="quantisation error, 256 levels")
    axes[1].legend()
    d.figure(fig, "Companding spends the 256 levels on quiet samples: the waveform-domain error grows with "
                  "loudness, always under its mean-value-theorem bound.")
    u = jnp.asarray(rng.uniform(-1, 1, 200_000))
    step = 2.0 / (levels - 1)
    d.monte_carlo("The quantisation noise of a uniform mu-law value has mean square $\\Delta^2/12$, "
                  "$\\Delta = 2/(L-1)$ (half-width bins at the two ends give the same)",
                  (u - dequantize(quantize(u, levels), levels)) ** 2, step**2 / 12)
    q = jnp.arange(levels)
    d.numeric("`mu_law_encode(mu_law_decode(q)) = q` for every class q: the levels are fixed points",
              mu_law_encode(mu_law_decode(q, levels), levels), q, atol=0.5, rtol=0.0)


def _section_causal_conv(d: Derivation, rng: np.random.Generator) -> None:
    """A dilated causal convolution equals its brute-force sum over past samples."""
    d.say("A causal convolution pads $(K-1)d$ zeros on the left only: $y_t = b + \\sum_k W_k x_{t-(K-1-k)d}$.")
    xs = rng.standard_normal((2, 3, 20))
    w, b = rng.standard_normal((4, 3, 2)), rng.standard_normal(4)
    brute = np.zeros((2, 4, 20))
    for t in range(20):
        for k in range(2):
            src = t - (1 - k) * 4
            if src >= 0:
                brute[:, :, t] += np.einsum("oc,bc->bo", w[:, :, k], xs[:, :, src])
    d.numeric("`causal_conv1d` (dilation 4, K = 2) equals the brute-force sum", causal_conv1d(xs, w, b, 4),
              brute + b[None, :, None])


def _section_receptive_field(d: Derivation, rng: np.random.Generator) -> None:
    """The receptive field and causality of a stack of gated residual blocks, measured by autodiff."""
    d.say("Receptive field: each causal layer of kernel $K$ and dilation $d$ adds $(K-1)d$ past samples, so a stack "
          "with dilations $1, 2, \\dots, 2^k$ repeated $r$ times sees $1 + (K-1)\\,r\\,(2^{k+1}-1)$ samples. Measured "
          "on gated residual blocks (tanh, sigmoid, residual and skip paths, a global condition $h$) by autodiff: "
          "the inputs with a nonzero gradient of output $t$.")
    measured, closed = [], []
    for kernel, k, r in ((2, 3, 2), (2, 4, 1), (3, 2, 2)):
        dilations = tuple(2**i for i in range(k + 1)) * r
        blocks = [block_weights(rng, 3, 2, 4, kernel) for _ in dilations]
        size = receptive_field(kernel, dilations)
        t_out, length = size + 5, size + 12
        xs, h = jnp.asarray(rng.standard_normal((1, 3, length))), jnp.asarray(rng.standard_normal((1, 2)))
        g = input_gradient(xs, h, blocks, dilations, t_out)
        seen = np.flatnonzero(np.asarray(g) > 0)
        measured.append(int(seen[-1] - seen[0] + 1))
        closed.append(1 + (kernel - 1) * r * (2 ** (k + 1) - 1))
        if (kernel, k, r) == (2, 3, 2):
            future, last_block = g[t_out + 1:], (blocks, dilations, xs, h, t_out, g)
    d.numeric("Measured receptive field = $1 + (K-1)r(2^{k+1}-1)$ for (K, k, r) = (2, 3, 2), (2, 4, 1), (3, 2, 2): "
              f"{measured}", measured, closed, atol=0.5, rtol=0.0)
    d.numeric("`receptive_field(K, dilations)` = the closed form", [receptive_field(K, [2**i for i in range(k + 1)] * r)
              for K, k, r in ((2, 3, 2), (2, 4, 1), (3, 2, 2))], closed, atol=0.5, rtol=0.0)
    d.numeric("Causality: $\\partial\\,\\mathrm{out}_t / \\partial x_{\\tau} = 0$ exactly for every $\\tau > t$",
              future, jnp.zeros_like(future), atol=1e-300, rtol=0.0)
    blocks, dilations, xs, h, t_out, causal = last_block
    centred = input_gradient(xs, h, blocks, dilations, t_out,
                             padding=centred_padding)
    d.inequality("Negative control: a centred ('same') padding leaks the future: max gradient on $\\tau > t$ > 0.01",
                 0.01, jnp.max(centred[t_out + 1:]))
    fig, ax = new_figure()
    taus = np.arange(len(causal))
    ax.axvspan(t_out - receptive_field(2, dilations) + 0.5, t_out + 0.5, color="C2", alpha=0.15,
               label=f"receptive field ({receptive_field(2, dilations)} samples)")
    ax.plot(taus, causal, "o-", ms=3, label="causal padding")
    ax.plot(taus, centred, "s-", ms=3, alpha=0.7, label="centred padding")
    ax.axvline(t_out, color="k", ls="--", lw=1, label="output position $t$")
    ax.set(yscale="log", xlabel="input position $\\tau$", ylabel="$\\sum_c |\\partial out_t / \\partial x_{c,\\tau}|$")
    ax.set_ylim(top=1e6)
    ax.legend(fontsize=8, loc="upper left")
    d.figure(fig, "Which inputs output $t$ sees (K = 2, dilations 1, 2, 4, 8 twice): with causal padding the gradient "
                  "is nonzero exactly on the receptive field ending at $t$; centred padding also reads the future.")


def _section_clock(d: Derivation, rng: np.random.Generator) -> None:
    """Local conditioning on a clock: a random crop that carries its start is scored as in the whole clip."""
    d.say("Local conditioning on a clock (eq. 3 with a time series $y_t$ instead of a global $h$): the input at "
          "position $t$ of the clip gets $W_c\\,c(t)$ added, $c(t)$ the sines and cosines of $t$ in seconds with "
          "periods 2 s, 1 s, 0.5 s, ... Training scores random crops of a clip, so a crop must carry its start $s$: "
          "then every crop position whose receptive field lies inside the crop is scored exactly as in the whole clip.")
    seconds = np.arange(8000) / 8000
    code = clock_features(jnp.arange(8000)[None], 8000, 6)[0]
    phase = jnp.arctan2(code[0], code[6])
    d.numeric("`clock_features`: pair $k$ is $(\\sin, \\cos)(\\pi\\,2^k t)$, $t$ in seconds (8 kHz, 6 pairs)", code,
              np.concatenate([np.sin(np.pi * 2.0 ** np.arange(6)[:, None] * seconds),
                              np.cos(np.pi * 2.0 ** np.arange(6)[:, None] * seconds)]))
    d.inequality("...its 2 s pair's phase $\\pi t$ rises strictly over a 1 s clip: no two positions share a code",
                 0.0, jnp.min(jnp.diff(phase)))
    net = WaveNet(levels=16, channels=4, skip=6, num_classes=3, dilations=(1, 2, 4, 1, 2), clock=3, sample_rate=100)
    size, s0 = receptive_field(2, net.dilations), 17
    q, yl = jnp.asarray(rng.integers(0, 16, (2, 60))), jnp.asarray([0, 2])
    params, apply = float64_params(net, rng, q, yl), jax.jit(net.apply)
    whole = apply(params, q, yl)
    crop = apply(params, q[:, s0:], yl, jnp.full(2, s0))
    d.numeric(f"A crop from $s = {s0}$ with its start: its logits at positions $\\ge R - 1$ ($R = {size}$) equal the "
              "whole clip's at $s + t$", crop[:, size - 1:], whole[:, s0 + size - 1:])
    d.inequality("Negative control: the same crop told it starts at 0 is scored differently (max |difference| > 0.01)",
                 0.01, jnp.max(jnp.abs(apply(params, q[:, s0:], yl)[:, size - 1:] - whole[:, s0 + size - 1:])))


def _section_gated_unit_and_softmax(d: Derivation, rng: np.random.Generator, levels: int) -> None:
    """The gated unit's derivatives, and the 256-way softmax output: its NLL unit and its inverse-CDF sampler."""
    a, g2 = jnp.asarray(rng.standard_normal(50)), jnp.asarray(rng.standard_normal(50))
    da, dg = jax.vmap(jax.grad(gated_activation, argnums=(0, 1)))(a, g2)
    d.gradient("Gated unit: $\\partial z/\\partial a = (1 - \\tanh^2 a)\\,\\sigma(g)$",
               da, (1 - jnp.tanh(a) ** 2) * jax.nn.sigmoid(g2))
    d.gradient("...and $\\partial z/\\partial g = \\tanh(a)\\,\\sigma(g)(1 - \\sigma(g))$",
               dg, jnp.tanh(a) * jax.nn.sigmoid(g2) * (1 - jax.nn.sigmoid(g2)))
    logits = jnp.zeros((3, levels))
    nll = -jnp.mean(jax.nn.log_softmax(logits)[:, 5])
    d.numeric("The NLL unit: a uniform softmax over 256 levels costs $\\ln 256$ nats = 8 bits per sample",
              [nll, nll / math.log(2)], [math.log(levels), 8.0])
    logits = jnp.asarray(3.0 * rng.standard_normal(levels))
    probs = jax.nn.softmax(logits)
    draws = jnp.clip(jnp.searchsorted(jnp.cumsum(probs), jnp.asarray(rng.uniform(size=100_000))), 0, levels - 1)
    d.monte_carlo("Sampling by the inverse CDF at uniforms (the sampler's rule): the mean NLL of the draws is the "
                  "entropy $H(p) = -\\sum_q p_q \\ln p_q$", -jnp.log(probs[draws]), -jnp.sum(probs * jnp.log(probs)))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("wavenet", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(7)
    mu, levels = 255.0, 256

    x = _section_mu_law(d, rng, mu)
    _section_quantisation(d, rng, x, mu, levels)
    _section_causal_conv(d, rng)
    _section_receptive_field(d, rng)
    _section_clock(d, rng)
    _section_gated_unit_and_softmax(d, rng, levels)
    return d
