"""The ``style_transfer`` derivation (``python -m theory_jax style_transfer``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/style_transfer.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.style_transfer import (
    content_loss,
    cycle_loss,
    gram_matrix,
    identity_loss,
    style_loss,
)

TITLE = "style transfer and domain translation: Gram-matrix style loss, cycle-consistency and identity losses"
LECTURES = "style transfer; domain translation"


def _abs_normal_mean(mu, sigma):
    """E|X| for X ~ N(mu, sigma^2) (the folded normal's mean)."""
    return sigma * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * sigma**2)) + mu * (1 - 2 * stats.norm.cdf(-mu / sigma))


# 3. The derivation -----------------------------------------------------------------------------------------------
def _section_gram_matrix(d: Derivation, rng: np.random.Generator, feats):
    """The Gram matrix: channel correlations, blind to where features fire, symmetric and positive semi-definite."""
    b, c, h, w = feats.shape
    g = gram_matrix(feats)
    d.numeric("`gram_matrix` is $\\frac{1}{CN}\\sum_k F_{ik} F_{jk}$ (NumPy's einsum as the witness)", g,
              np.einsum("bik,bjk->bij", feats.reshape(b, c, -1), feats.reshape(b, c, -1)) / (c * h * w))
    perm = rng.permutation(h * w)
    shuffled = feats.reshape(b, c, -1)[:, :, perm].reshape(b, c, h, w)
    d.numeric("Style ignores arrangement: permuting the $N$ positions (the same way in every channel) leaves $G$ "
              "unchanged...", gram_matrix(shuffled), g)
    d.inequality("...while the content loss sees the change", np.array(0.5), content_loss(shuffled, feats))
    fig, ax = new_figure()
    ax.plot(feats.ravel(), shuffled.ravel(), ".", ms=4, alpha=0.6, label="features $F$ (content)")
    ax.plot(np.ravel(g), np.ravel(gram_matrix(shuffled)), "o", color="C3", ms=5, label="Gram entries $G$ (style)")
    ax.axline((0, 0), slope=1, color="k", lw=0.8, ls="--", label="unchanged")
    ax.set(xlabel="value in the original feature map", ylabel="value after shuffling positions")
    ax.legend(fontsize=8)
    d.figure(fig, "Shuffling the positions of a feature map scatters its values (the content loss sees it) but leaves "
                  "every Gram entry on the diagonal: the style loss cannot tell the two apart.")
    d.numeric("$G$ is symmetric", g, np.swapaxes(g, 1, 2))
    d.inequality("...and positive semi-definite: its eigenvalues are $\\ge 0$ (up to rounding)",
                 -np.linalg.eigvalsh(np.asarray(g)), np.zeros((b, c)), slack=1e-14)
    return shuffled


def _section_style_loss(d: Derivation, feats, style, shuffled) -> None:
    """The style loss: Gatys et al.'s normalisation, its gradient, and its stationary points."""
    b, c, h, w = feats.shape
    g = gram_matrix(feats)
    unnormalised = np.einsum("bik,bjk->bij", feats.reshape(b, c, -1), feats.reshape(b, c, -1))
    style_unnormalised = np.einsum("bik,bjk->bij", style.reshape(b, c, -1), style.reshape(b, c, -1))
    gatys = np.sum((unnormalised - style_unnormalised) ** 2, axis=(1, 2)) / (4 * c**2 * (h * w) ** 2)
    d.numeric("Gatys et al.'s $E_l = \\frac{1}{4C^2N^2}\\sum (FF^\\top - SS^\\top)^2$ (eq. 4) is `style_loss` "
              "times $C^2/4$ (per example; the normalisation must be stated: it sets the style weight)",
              np.mean(gatys), style_loss(feats, style) * c**2 / 4)
    target = gram_matrix(style)
    analytic = 4 / (c**2 * b * c * h * w) * jnp.reshape((g - target) @ feats.reshape(b, c, -1), (b, c, h, w))
    d.gradient("The style gradient (Gatys et al. eq. 6, in this normalisation): "
               "$\\partial L/\\partial F = \\frac{4}{B C^2 \\cdot CN} (G - A) F$ against `jax.grad`",
               jax.grad(style_loss)(jnp.asarray(feats), jnp.asarray(style)), analytic, atol=1e-15)  # entries ~1e-3
    d.numeric("...so the style loss is stationary wherever the Grams match, whatever the arrangement: "
              "$\\nabla L_{\\mathrm{style}}(F_{\\mathrm{shuffled}}; F) = 0$",
              jax.grad(style_loss)(jnp.asarray(shuffled), jnp.asarray(feats)), np.zeros_like(feats), atol=1e-15)


def _section_gram_covariance(d: Derivation, rng: np.random.Generator) -> None:
    """For i.i.d. Gaussian features the expected Gram is the channel covariance over C."""
    sigma = np.array([[1.0, 0.6, 0.0], [0.6, 1.5, -0.4], [0.0, -0.4, 0.8]])
    chol = np.linalg.cholesky(sigma)
    n_img, size = 4000, 4
    noise = np.einsum("ij,bjk->bik", chol, rng.standard_normal((n_img, 3, size * size))).reshape(n_img, 3, size, size)
    grams = np.asarray(gram_matrix(noise)).reshape(n_img, -1)
    d.monte_carlo("For features i.i.d. $\\mathcal N(0, \\Sigma)$ at each position, $\\mathbb E[G] = \\Sigma / C$: the "
                  "Gram is a (scaled) channel covariance; 4000 random feature maps, all 9 entries",
                  grams, (sigma / 3).reshape(-1))


def _section_cycle_consistency(d: Derivation, rng: np.random.Generator) -> None:
    """CycleGAN's cycle and identity losses on linear translators: what cycle consistency does and does not pin down."""
    d.say("Domain translation (CycleGAN). Take $X = \\mathbb R^3$ with $x \\sim \\mathcal N(m, I)$, and linear "
          "translators $G(x) = Ax + a$, $F(y) = By + b$.")
    a_mat = rng.standard_normal((3, 3)) + 2 * np.eye(3)
    a_vec = rng.standard_normal(3)
    x = rng.standard_normal((64, 3)) + 0.5
    y = x @ a_mat.T + a_vec

    def g_map(v):
        return v @ a_mat.T + a_vec

    def f_inverse(v):
        return (v - a_vec) @ np.linalg.inv(a_mat).T

    d.numeric("With $F = G^{-1}$ the cycle loss is 0", cycle_loss(x, f_inverse(g_map(x)), y, g_map(f_inverse(y))),
              0.0, atol=1e-13)
    perm3 = np.array([2, 0, 1])
    d.numeric("...but so it is for a translator that merely permutes coordinates and its inverse: cycle consistency "
              "alone does not say which bijection is right (the adversarial losses must)",
              cycle_loss(x, x[:, perm3][:, np.argsort(perm3)], y, y[:, perm3][:, np.argsort(perm3)]), 0.0)
    d.inequality("The identity loss tells them apart from the identity on a domain: the permutation, fed its own "
                 "target domain, changes it", np.array(0.3), identity_loss(x, x[:, perm3], y, y[:, perm3]))
    m, shift, scale = np.array([0.5, -0.2, 1.0]), np.array([0.3, -0.1, 0.2]), 1.1
    n = 200_000
    xs = m + rng.standard_normal((n, 3))
    # F(G(x)) = scale * x + shift for a mismatched pair: per coordinate, |(scale - 1) x + shift| is folded normal
    exact = np.mean(_abs_normal_mean((scale - 1) * m + shift, abs(scale - 1)))
    d.monte_carlo("For a mismatched pair with $F(G(x)) = 1.1\\,x + s$, the cycle term $\\mathbb E|F(G(x)) - x|$ on "
                  "200 000 draws against the folded normal's mean per coordinate",
                  np.mean(np.abs(scale * xs + shift - xs), axis=1), exact)
    terms, mean, spread = np.abs(scale * xs + shift - xs), (scale - 1) * m + shift, abs(scale - 1)
    line = np.linspace(0.0, 0.7, 300)
    fig, ax = new_figure()
    for i in range(3):
        ax.hist(terms[:, i], bins=70, range=(0, 0.7), density=True, histtype="step", color=f"C{i}",
                label=f"$|F(G(x))_{i + 1} - x_{i + 1}|$")
        folded = (stats.norm.pdf(line, mean[i], spread) + stats.norm.pdf(line, -mean[i], spread))
        ax.plot(line, folded, color=f"C{i}", ls="--", lw=1)
    ax.set(xlabel="cycle error of one coordinate", ylabel="density")
    ax.legend(fontsize=8, title="dashed: folded normal", title_fontsize=8)
    d.figure(fig, "The cycle error of each coordinate, $|0.1\\,x_i + s_i|$, is folded-normal distributed (histograms "
                  "of 200 000 draws against the densities): its mean is the cycle loss the claim computes.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("style_transfer", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    b, c, h, w = 2, 4, 5, 6
    feats, style = rng.standard_normal((b, c, h, w)), rng.standard_normal((b, c, h, w)) * 1.5 + 0.3

    d.say("Style as channel correlations: $G = F F^\\top / (C N)$ with $F$ a layer's features as a $C \\times N$ "
          "matrix, $N = HW$ positions.")
    shuffled = _section_gram_matrix(d, rng, feats)
    _section_style_loss(d, feats, style, shuffled)
    _section_gram_covariance(d, rng)
    _section_cycle_consistency(d, rng)
    return d
