"""The ``coupling_flows`` derivation (``python -m theory_jax coupling_flows``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/coupling_flows.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import ndtr
from scipy import integrate, special

from theory_jax.coupling_flows import (
    LOG_2PI,
    actnorm_forward,
    actnorm_inverse,
    bits_per_dim_from_log_prob,
    channel_mask,
    checkerboard_mask,
    conditioner,
    coupling_transform,
    coupling_transform_inverse,
    invconv_forward,
    invconv_inverse,
    invconv_lu_weight,
    logit_inverse,
    logit_transform,
    squeeze,
    standard_normal_log_prob,
    unsqueeze,
)
from theory_jax.derivation import Derivation, full_precision, new_figure, optimised_jit
from theory_jax.evaluation import dequantize

TITLE = "coupling flows: NICE, RealNVP, Glow; dequantisation and the logit transform"
LECTURES = "normalizing flows; NICE; RealNVP; Glow; dequantisation"


# 7. The derivation ------------------------------------------------------------------------------------------------
def _conv_net(params, x, mask):
    """A two-layer conditioner (3x3 conv, tanh, 3x3 conv) of b * x, standing in for any network."""
    (w1, b1), (w2, b2) = params
    return conditioner(jnp.tanh(conditioner(mask * x, w1, b1)), w2, b2)


def _net_params(rng, c_in, c_out, hidden=6):
    return [(jnp.asarray(rng.standard_normal((hidden, c_in, 3, 3)) * 0.4), jnp.asarray(rng.standard_normal(hidden) * 0.1)),
            (jnp.asarray(rng.standard_normal((c_out, hidden, 3, 3)) * 0.4), jnp.asarray(rng.standard_normal(c_out) * 0.3))]


def _autodiff_log_det(fn, x):
    """log |det d fn / dx| of a map of one example (any shape -> the same number of entries), by jax.jacfwd."""
    jac = jax.jacfwd(lambda v: fn(v.reshape(x.shape)).reshape(-1))(x.reshape(-1))
    return jnp.linalg.slogdet(jac)[1], jac


@partial(jax.jit, static_argnames="kind")
def _coupling_study(params, mask, x, kind):
    """Per image of x (N, C, H, W), for the coupling with the two-layer conditioner: eq. 3's log-det, the autodiff
    log-det and Jacobian, and inverse(forward(x))."""
    def forward(v):
        y, log_det = coupling_transform(v[None], mask, _conv_net(params, v[None], mask), kind)
        return y[0], log_det[0]

    def one(v):
        y, closed = forward(v)
        auto, jac = _autodiff_log_det(lambda w: forward(w)[0], v)
        back = coupling_transform_inverse(y[None], mask, _conv_net(params, y[None], mask), kind)[0][0]
        return closed, auto, jac, back

    return jax.vmap(one)(x)


def _section_coupling_layers(d: Derivation, rng) -> None:
    """Coupling layers: a triangular Jacobian whatever the conditioner, eq. 3's log-det, eq. 4's inverse."""
    s_fn, t_fn = sp.Function("s"), sp.Function("t")
    x1, x2 = sp.symbols("x1 x2", real=True)
    y = sp.Matrix([x1, x2 * sp.exp(s_fn(x1)) + t_fn(x1)])
    d.symbolic("Eq. 2 in two dimensions: $y_1 = x_1$, $y_2 = x_2 e^{s(x_1)} + t(x_1)$ has $\\det J = e^{s(x_1)}$ "
               "for arbitrary functions $s$, $t$ (SymPy)", y.jacobian([x1, x2]).det(), sp.exp(s_fn(x1)))
    d.symbolic("...and for NICE ($s = 0$) $\\det J = 1$: additive coupling preserves volume",
               sp.Matrix([x1, x2 + t_fn(x1)]).jacobian([x1, x2]).det(), 1)
    images = {"checkerboard": (1, 4, 4), "channel": (4, 2, 2)}
    shown = {}  # the first image's reordered Jacobian, for the figure
    for mask_name, shape in images.items():
        x = jnp.asarray(rng.standard_normal((5, *shape)))
        for parity in (0, 1):
            mask = (checkerboard_mask if mask_name == "checkerboard" else channel_mask)(x, parity)
            for kind in ("additive", "affine"):
                params = _net_params(rng, shape[0], shape[0] * (2 if kind == "affine" else 1))
                closed, auto, jacs, round_trip = _coupling_study(params, mask, x, kind)
                keep = np.broadcast_to(np.asarray(mask[0]), shape).reshape(-1) > 0
                order = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
                j = np.asarray(jacs)[:, order][:, :, order]
                n = keep.sum()
                structure = np.concatenate([np.abs(j[:, :n] - np.eye(len(order))[:n]).ravel(),
                                            np.abs(j[:, n:, n:] * (1 - np.eye(len(order) - n))).ravel()])
                if parity == 0:
                    shown[kind, mask_name] = (j[0], n)
                    d.numeric(f"{kind} coupling, {mask_name} mask on {shape}: eq. 3's log-det equals $\\log|\\det J|$ "
                              f"of jax.jacfwd (5 images, two-layer conv conditioner)", closed, auto)
                    d.inequality("...its Jacobian with the kept coordinates first is $[[I, 0], [*, \\mathrm{diag}]]$: "
                                 "the kept rows are exactly those of $I$, the changed block exactly diagonal",
                                 structure, 0.0)
                d.numeric(f"...eq. 4 inverts it: inverse(forward(x)) = x ({kind}, {mask_name}, parity {parity})",
                          round_trip, x)
                if kind == "additive" and parity == 0:
                    d.inequality("...and NICE's log-det is exactly 0", jnp.abs(closed), 0.0)
    fig, axes = new_figure(columns=2)
    for ax, kind in zip(axes, ("additive", "affine")):
        jac, n = shown[kind, "checkerboard"]
        image = ax.imshow(jac, cmap="RdBu_r", vmin=-2, vmax=2)
        ax.axhline(n - 0.5, color="k", lw=0.8)
        ax.axvline(n - 0.5, color="k", lw=0.8)
        ax.set(title=f"{kind} coupling", xlabel="input $x$ (kept first)", ylabel="output $y$ (kept first)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="$\\partial y_i / \\partial x_j$")
    d.figure(fig, "The Jacobian of a checkerboard coupling layer, kept coordinates first: identity on the kept "
                  "block, zero above, a dense block below and a diagonal for the changed ones (ones for NICE, "
                  "$e^{s}$ for RealNVP), so the log-det is the sum of $s$.")
    s = np.linspace(-3, 3, 7)

    def log_det_of(h):  # b = (0, 1): only the second coordinate changes, with h_s = h
        h_all = jnp.stack([0.0, h, 0.0, 0.0])[None]
        return coupling_transform(jnp.ones((1, 2)), jnp.array([[1.0, 0.0]]), h_all, "affine")[1][0]

    d.gradient("$\\partial \\log|\\det| / \\partial h_s = (1 - b)(1 - \\tanh^2 h_s)$ (jax.grad of eq. 3 vs closed form)",
               jax.jit(jax.vmap(jax.grad(log_det_of)))(jnp.asarray(s)), 1 - np.tanh(s) ** 2)


def _section_glow_layers(d: Derivation, rng) -> None:
    """Glow's layers: actnorm, the invertible 1x1 convolution and its LU form, and squeeze."""
    x = jnp.asarray(rng.standard_normal((4, 3, 3, 3)))
    log_scale, bias = jnp.asarray(rng.standard_normal(3) * 0.5), jnp.asarray(rng.standard_normal(3))
    auto = jax.jit(jax.vmap(lambda v: _autodiff_log_det(lambda w: actnorm_forward(w[None], log_scale, bias)[0][0],
                                                        v)[0]))(x)
    d.numeric("Eq. 6: actnorm's log-det $H W \\sum_c \\log s_c$ equals the autodiff $\\log|\\det J|$ (3x3x3 images)",
              actnorm_forward(x, log_scale, bias)[1], auto)
    d.numeric("...and actnorm_inverse inverts it", actnorm_inverse(actnorm_forward(x, log_scale, bias)[0], log_scale,
                                                                     bias)[0], x)
    perm = jnp.asarray(np.eye(3)[rng.permutation(3)])
    lower, upper = jnp.asarray(rng.standard_normal((3, 3))), jnp.asarray(rng.standard_normal((3, 3)))
    log_diag, sign = jnp.asarray(rng.standard_normal(3) * 0.3), jnp.asarray([1.0, -1.0, 1.0])
    weight, lu_log_det = invconv_lu_weight(perm, lower, upper, log_diag, sign)
    auto = jax.jit(jax.vmap(lambda v: _autodiff_log_det(lambda w: invconv_forward(w[None], weight)[0][0], v)[0]))(x)
    d.numeric("Eq. 7: the 1x1 convolution's log-det $H W \\log|\\det W|$ equals the autodiff $\\log|\\det J|$ "
              "of the whole 27-dimensional map", invconv_forward(x, weight)[1], auto)
    d.numeric("Eq. 8: with $W = P(L + I)(U + \\mathrm{diag}(\\pm e^{l}))$, $\\log|\\det W| = \\sum l$ "
              "(NumPy's slogdet of the assembled W)", lu_log_det, np.linalg.slogdet(np.asarray(weight))[1])
    d.numeric("...and invconv_inverse inverts it", invconv_inverse(invconv_forward(x, weight)[0], weight)[0], x)
    x = jnp.asarray(rng.standard_normal((2, 2, 4, 6)))
    jac = np.asarray(jax.jit(lambda v: _autodiff_log_det(lambda w: squeeze(w[None])[0], v)[1])(x[0]))
    d.inequality("Eq. 5: squeeze's Jacobian is a permutation matrix (entries 0 or 1, one 1 per row and column), so "
                 "its log-det is 0", np.concatenate([np.abs(jac * (1 - jac)).ravel(), np.abs(jac.sum(0) - 1),
                                                      np.abs(jac.sum(1) - 1)]), 0.0)
    expected = np.zeros((2, 8, 2, 3))
    for c, i, j, di, dj in np.ndindex(2, 2, 3, 2, 2):
        expected[:, c * 4 + 2 * di + dj, i, j] = np.asarray(x)[:, c, 2 * i + di, 2 * j + dj]
    d.inequality("...it moves $x[c, 2i + d_i, 2j + d_j]$ to channel $4c + 2d_i + d_j$ at $(i, j)$ (loops in NumPy), "
                 "and unsqueeze undoes it, exactly",
                 np.abs(np.concatenate([np.ravel(squeeze(x) - expected), np.ravel(unsqueeze(squeeze(x)) - x)])), 0.0)


def _tiny_multiscale(rng):
    """A two-scale flow on 1x4x4 images: [actnorm, checkerboard affine x2] -> squeeze -> [actnorm, 1x1 conv, channel
    affine] -> factor out 2 channels -> [checkerboard affine] on the other 2x2x2; every layer with its log-det."""
    nets = [_net_params(rng, 1, 2), _net_params(rng, 1, 2), _net_params(rng, 4, 8), _net_params(rng, 2, 4)]
    an1 = (jnp.asarray(rng.standard_normal(1) * 0.3), jnp.asarray(rng.standard_normal(1) * 0.3))
    an2 = (jnp.asarray(rng.standard_normal(4) * 0.3), jnp.asarray(rng.standard_normal(4) * 0.3))
    weight = jnp.asarray(np.linalg.qr(rng.standard_normal((4, 4)))[0] @ np.diag(np.exp(rng.standard_normal(4) * 0.3)))

    def flow(x):
        """x: (1, 1, 4, 4) -> (z of 16 entries, [log-det of each layer])."""
        logs = []
        x, ld = actnorm_forward(x, *an1)
        logs.append(ld)
        for i in (0, 1):
            mask = checkerboard_mask(x, i)
            x, ld = coupling_transform(x, mask, _conv_net(nets[i], x, mask))
            logs.append(ld)
        x = squeeze(x)
        for fn in (lambda v: actnorm_forward(v, *an2), lambda v: invconv_forward(v, weight),
                   lambda v: coupling_transform(v, channel_mask(v), _conv_net(nets[2], v, channel_mask(v)))):
            x, ld = fn(x)
            logs.append(ld)
        z1, x = x[:, :2], x[:, 2:]
        mask = checkerboard_mask(x)
        x, ld = coupling_transform(x, mask, _conv_net(nets[3], x, mask))
        logs.append(ld)
        return jnp.concatenate([z1.reshape(1, -1), x.reshape(1, -1)], axis=1), logs

    return flow


def _section_multiscale_log_det(d: Derivation, rng) -> None:
    """A two-scale flow's log-det is the sum of its layers' (eq. 9)."""
    flow = _tiny_multiscale(rng)
    xs = jnp.asarray(rng.standard_normal((4, 1, 1, 4, 4)))
    summed, auto = jax.jit(lambda xs: (jax.vmap(lambda x: sum(flow(x)[1])[0])(xs), jax.vmap(
        lambda x: _autodiff_log_det(lambda v: flow(v[None])[0][0], x[0])[0])(xs)))(xs)
    d.numeric("Eq. 9: a two-scale flow on 1x4x4 (actnorm, 2 checkerboard couplings, squeeze, actnorm, 1x1 conv, "
              "channel coupling, factor-out, checkerboard coupling): the sum of the layers' log-dets equals "
              "$\\log|\\det|$ of jax.jacfwd of the whole map $x \\mapsto (z_1, z_2)$", summed, auto)


def _section_flow_density(d: Derivation, rng) -> None:
    """A 2-D RealNVP (4 affine couplings, alternating halves, tanh-MLP conditioners, a rotation between) integrates to 1."""
    layers = [(jnp.asarray(rng.standard_normal((8, 2)) * 0.6), jnp.asarray(rng.standard_normal(8) * 0.3),
               jnp.asarray(rng.standard_normal((4, 8)) * 0.3), jnp.asarray(rng.standard_normal(4) * 0.3))
              for _ in range(4)]
    rot = jnp.asarray(np.linalg.qr(rng.standard_normal((2, 2)))[0])

    def log_prob(x):
        total = jnp.zeros(x.shape[0])
        for i, (w1, b1, w2, b2) in enumerate(layers):
            mask = jnp.array([[1.0, 0.0]]) if i % 2 == 0 else jnp.array([[0.0, 1.0]])
            h = jnp.tanh(conditioner(mask * x, w1, b1)) @ w2.T + b2
            x, ld = coupling_transform(x, mask, h)
            total = total + ld
            x, ld = invconv_forward(x, rot)
            total = total + ld
        return standard_normal_log_prob(x) + total

    axis = np.linspace(-14, 14, 1401)
    grid = jnp.asarray(np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2))
    dens = np.asarray(jnp.exp(optimised_jit(log_prob)(grid))).reshape(len(axis), len(axis))  # 2 million points
    mass = integrate.simpson(integrate.simpson(dens, x=axis, axis=1), x=axis)
    d.numeric("Eq. 12 is a density: a 2-D RealNVP (4 affine couplings with MLP conditioners, rotations between) "
              "integrates to 1 (Simpson's rule on $[-14, 14]^2$)", mass, 1.0, rtol=1e-7)
    inner = np.abs(axis) <= 4.0
    fig, ax = new_figure()
    image = ax.imshow(dens[np.ix_(inner, inner)].T, origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
    fig.colorbar(image, ax=ax, label="$p(x)$")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    d.figure(fig, "The density of the 2-D RealNVP, $\\log N(z; 0, I) + \\log|\\det dz/dx|$, on the central "
                  "$[-4, 4]^2$ of the grid it integrates to 1 on: the couplings bend the Gaussian base into a skewed shape.")


def _section_logit_transform(d: Derivation, rng) -> None:
    """The logit transform: its log-det (eq. 11), its inverse, and the finite range it maps [0, 1] onto."""
    a, v = sp.symbols("alpha x", positive=True)
    p = a + (1 - 2 * a) * v
    d.symbolic("Eq. 11: $\\frac{d}{dx}\\,\\mathrm{logit}(\\alpha + (1 - 2\\alpha) x) = (1 - 2\\alpha) / (p (1 - p))$ "
               "(SymPy)", sp.diff(sp.log(p / (1 - p)), v), (1 - 2 * a) / (p * (1 - p)))
    x = jnp.asarray(rng.uniform(size=(3, 1, 3, 3)))
    auto = jax.jit(jax.vmap(lambda w: _autodiff_log_det(lambda v: logit_transform(v[None], 0.05)[0][0], w)[0]))(x)
    d.numeric("`logit_transform`'s log-det (alpha = 0.05, RealNVP) equals the autodiff $\\log|\\det J|$",
              logit_transform(x, 0.05)[1], auto)
    y, ld = logit_transform(x, 0.05)
    back, ld_back = logit_inverse(y, 0.05)
    d.numeric("...logit_inverse inverts it, with the opposite log-det", jnp.stack([back.reshape(3, -1).sum(1), ld_back]),
              jnp.stack([x.reshape(3, -1).sum(1), -ld]))
    ends = logit_transform(jnp.array([[0.0, 1.0]]), 0.05)[0][0]
    d.numeric("...and maps [0, 1] onto $[\\mathrm{logit}\\,0.05, \\mathrm{logit}\\,0.95] = [-2.944, 2.944]$: "
              "the pixels 0 and 255 stay finite", ends, np.array([-math.log(19), math.log(19)]))


def _section_dequantisation_bound(d: Derivation, rng) -> None:
    """Uniform dequantisation bounds the discrete model's log-likelihood (eq. 14); the gap is a KL."""
    levels = 8  # a density on the level scale [0, 8): a Beta(2.5, 1.7) stretched over it
    a_, b_ = 2.5, 1.7

    def log_p(v):
        return (a_ - 1) * np.log(v / levels) + (b_ - 1) * np.log1p(-v / levels) - special.betaln(a_, b_) - np.log(levels)

    k = np.arange(levels)
    big_p = special.betainc(a_, b_, (k + 1) / levels) - special.betainc(a_, b_, k / levels)
    d.numeric("The discrete model $P(k) = \\int_0^1 p(k + u)\\,du$ of a density on $[0, 8)$ sums to 1 over the 8 levels "
              "(Beta CDF differences)", big_p.sum(), 1.0)
    quad = np.array([integrate.quad(lambda u, k=k: log_p(k + u), 0, 1, epsabs=1e-13, epsrel=1e-12)[0] for k in k])
    d.inequality("Eq. 14: $\\mathbb E_u \\log p(k + u) \\le \\log P(k)$ at every level $k$ (quadrature vs Beta CDF)",
                 quad, np.log(big_p))
    kl = np.array([integrate.quad(lambda u, k=k: -(log_p(k + u) - np.log(big_p[k])), 0, 1,
                                  epsabs=1e-13, epsrel=1e-12)[0] for k in k])
    d.numeric("...the gap $\\log P(k) - \\mathbb E_u \\log p(k + u)$ is $KL(U[0, 1) \\,\\|\\, p(k + \\cdot)/P(k))$",
              np.log(big_p) - quad, kl, rtol=1e-9, atol=1e-11)
    u = rng.uniform(size=(20_000, levels))
    d.monte_carlo("...and the training estimate: the mean of $\\log p(k + u)$ over 20 000 draws $u \\sim U[0, 1)$ "
                  "is unbiased for $\\mathbb E_u \\log p(k + u)$", log_p(k + u), quad)
    flat = np.log(big_p[np.floor(k + u[:5]).astype(int)])
    d.numeric("For a density constant on each bin ($p = P(k)$ on $[k, k+1)$) the bound is an equality", flat.mean(0),
              np.log(big_p))
    v = np.linspace(0.002, levels - 0.002, 800)
    fig, axes = new_figure(columns=2)
    axes[0].plot(v, np.exp(log_p(v)), "k", label="density $p(v)$")
    axes[0].stairs(big_p, np.arange(levels + 1), color="C0", lw=1.5, label="$P(k)$ on $[k, k+1)$")
    axes[0].set(xlabel="level scale $v$", ylabel="density / probability")
    axes[0].legend(fontsize=8)
    axes[1].bar(k, np.log(big_p) - quad, color="C1")
    axes[1].set(yscale="log", xlabel="level $k$", ylabel="$\\log P(k) - E_u \\log p(k + u)$ (nats)")
    d.figure(fig, "Left: a density on the level scale and the discrete model $P(k)$ it defines by integrating each bin. "
                  "Right: the dequantisation gap at each level, positive everywhere (eq. 14), largest where $p$ varies "
                  "most within a bin.")


def _section_bits_per_dim(d: Derivation, rng) -> None:
    """A logit flow on 256 levels: its bin probabilities, sub-normalisation, bits/dim (eq. 15) and their bound."""
    # the logit model on 256 levels, one dimension: z = (logit(alpha + (1 - 2 alpha) y) - m) / s, y = (k + u) / 256
    alpha, m, s, d256 = 0.05, -1.0, 1.3, 256
    levels_k = np.arange(d256)

    def z_of(y):
        return (np.log((alpha + (1 - 2 * alpha) * y) / (1 - alpha - (1 - 2 * alpha) * y)) - m) / s

    def log_p_unit(y):
        """log density on [0, 1] in NumPy: log N(z(y)) + log |dz/dy|, dz/dy = (1 - 2 alpha) / (p (1 - p) s)."""
        p = alpha + (1 - 2 * alpha) * y
        return -0.5 * (z_of(y) ** 2 + LOG_2PI) + np.log((1 - 2 * alpha) / (p * (1 - p) * s))

    big_p = np.asarray(ndtr(z_of((levels_k + 1) / d256)) - ndtr(z_of(levels_k / d256)))
    bins = np.array([integrate.quad(lambda y: np.exp(log_p_unit(y)), k / d256, (k + 1) / d256,
                                    epsabs=1e-14, epsrel=1e-11)[0] for k in levels_k])
    d.numeric("Eq. 12 through the logit: integrating the flow's density on [0, 1] over each bin $[k, k+1)/256$ gives "
              "$\\Phi(z(k+1)) - \\Phi(z(k))$ (all 256 levels, quadrature)", bins, big_p, rtol=1e-9)
    d.inequality("The logit's alpha = 0.05 leaves mass outside [0, 1]: $\\sum_k P(k) = \\Phi(z(1)) - \\Phi(z(0)) < 1$, so "
                 f"the model is sub-normalised ({big_p.sum():.4f}) and its bits/dim stay an upper bound",
                 big_p.sum(), 1.0)
    u = rng.uniform(size=(5, d256))
    y = dequantize(jnp.asarray(levels_k, dtype=jnp.float64), jnp.asarray(u), d256)
    t, log_det = logit_transform(y.reshape(-1, 1), alpha)
    log_p_jax = standard_normal_log_prob((t - m) / s) + log_det - math.log(s)
    d.numeric("Eq. 15: `bits_per_dim_from_log_prob` of the flow's $\\log p_{[0,1]}(y)$ (logit log-det + base, in JAX) "
              "equals $-\\log_2$ of the density on the level scale $[0, 256)$, whose Jacobian is 1/256 per dimension "
              "(NumPy)", bits_per_dim_from_log_prob(log_p_jax, 1, d256),
              -(log_p_unit(np.asarray(y).reshape(-1)) - math.log(d256)) / math.log(2))
    expected_bits = np.array([integrate.quad(lambda v: -(log_p_unit(v) - math.log(d256)) / math.log(2), k / d256,
                                             (k + 1) / d256, epsabs=1e-13, epsrel=1e-11)[0] * d256 for k in levels_k])
    d.inequality("...and its average over the dequantisation noise (quadrature) bounds $-\\log_2 P(k)$ from above at "
                 f"every level: the training loss is an upper bound (mean gap {np.mean(expected_bits + np.log2(big_p)):.2e} "
                 "bits)", -np.log2(big_p), expected_bits)
    uniform_bits = bits_per_dim_from_log_prob(jnp.zeros(3), 784)
    d.numeric("The uniform density on $[0, 1]^{784}$ costs exactly 8 bits/dim on 256 levels", uniform_bits,
              np.full(3, 8.0))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("coupling_flows", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    d.say("Coupling layers (eqs. 1-4): the kept coordinates $b x$ pass unchanged and parameterise an elementwise "
          "map of the others, so the Jacobian is triangular whatever the conditioner network is.")
    _section_coupling_layers(d, rng)
    d.say("Glow's layers (eqs. 5-8): actnorm, the invertible 1x1 convolution with its LU form, and squeeze.")
    _section_glow_layers(d, rng)
    d.say("Composition (eq. 9) and the density (eq. 12).")
    _section_multiscale_log_det(d, rng)
    _section_flow_density(d, rng)
    d.say("Images: the logit transform (eqs. 10-11), uniform dequantisation and its bound (eqs. 13-14), bits/dim "
          "(eq. 15).")
    _section_logit_transform(d, rng)
    _section_dequantisation_bound(d, rng)
    _section_bits_per_dim(d, rng)
    return d
