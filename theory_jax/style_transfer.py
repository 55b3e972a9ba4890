"""Style transfer and domain translation: the Gram-matrix style loss, the content loss, and CycleGAN's
cycle-consistency and identity losses.

Lectures: style transfer; domain translation (Gatys, Ecker & Bethge 2016, "Image style transfer using
convolutional neural networks", eq. 1-7; Zhu et al. 2017, "Unpaired image-to-image translation using
cycle-consistent adversarial networks" (CycleGAN), eq. 2-3 and sec. 5.2's identity loss; Taigman et al. 2017).

Style is the correlation of feature channels, ignoring where in the image they fire. For features F: (C, H, W) of
one layer, flattened to (C, N) with N = H W, this project's Gram matrix and losses are

    G(F) = F F^T / (C N)                        (normalised by the layer's size, so layers of any size weigh alike)
    L_style(F, S) = mean_ij (G(F)_ij - G(S)_ij)^2    L_content(F, P) = mean (F - P)^2

Gatys et al.'s E_l = 1/(4 C^2 N^2) sum (F F^T - S S^T)^2 (eq. 4) is the same loss times C^2 / 4: the optimum is the
same, the weight between style and content is not. CycleGAN translates between two domains X and Y with
G: X -> Y and F: Y -> X, and asks that a round trip returns the input:

    L_cyc = E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1         L_id = E_y ||G(y) - y||_1 + E_x ||F(x) - x||_1

Twin: ``practice_torch/style_transfer`` (same names, same arguments); cases: ``shared_specs/style_transfer.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from scipy import stats

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.subgradients import absolute
from theory_jax.vae import GROUPNORM_EPS, conv_transpose_padding

PAD_1 = ((1, 1), (1, 1))  # torch's padding=1, explicit (flax's 'SAME' pads strided convs asymmetrically)

TITLE = "style transfer and domain translation: Gram-matrix style loss, cycle-consistency and identity losses"
LECTURES = "style transfer; domain translation"


# 1. The pure functions (twins in practice_torch.style_transfer) -------------------------------------------------
def gram_matrix(features):
    """G = F F^T / (C H W) per example, F the features flattened to (C, H W). features: (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    flat = jnp.reshape(features, (b, c, h * w))
    return flat @ jnp.swapaxes(flat, 1, 2) / (c * h * w)


def style_loss(features, style_features):
    """mean over examples and channel pairs of (G(F) - G(S))^2 (Gatys et al. eq. 4 up to C^2/4).
    features, style_features: (B, C, H, W) -> ()."""
    return jnp.mean((gram_matrix(features) - gram_matrix(style_features)) ** 2)


def content_loss(features, content_features):
    """mean (F - P)^2 over all values (Gatys et al. eq. 1 up to a factor 2/size). (B, C, H, W) x 2 -> ()."""
    return jnp.mean((features - content_features) ** 2)


def cycle_loss(x, x_cycled, y, y_cycled):
    """L_cyc = mean |F(G(x)) - x| + mean |G(F(y)) - y| (CycleGAN eq. 2, L1 averaged over values).
    x, x_cycled: (B, ...), y, y_cycled: (B', ...) -> ()."""
    return jnp.mean(absolute(x_cycled - x)) + jnp.mean(absolute(y_cycled - y))


def identity_loss(x, f_of_x, y, g_of_y):
    """L_id = mean |G(y) - y| + mean |F(x) - x|: a translator fed its own target domain should change nothing
    (CycleGAN sec. 5.2). x, f_of_x: (B, ...), y, g_of_y: (B', ...) -> ()."""
    return jnp.mean(absolute(g_of_y - y)) + jnp.mean(absolute(f_of_x - x))


def _abs_normal_mean(mu, sigma):
    """E|X| for X ~ N(mu, sigma^2) (the folded normal's mean)."""
    return sigma * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * sigma**2)) + mu * (1 - 2 * stats.norm.cdf(-mu / sigma))


# 2. CycleGAN's translator (twin: practice_torch.style_transfer.networks) -----------------------------------------
class ResidualBlock(nn.Module):
    """x + norm(conv(relu(norm(conv(x))))): CycleGAN's R_k block, 3x3 convs (explicit padding 1), instance norm.
    x: (B, H, W, C) -> same."""

    channels: int

    def setup(self):
        self.conv1 = nn.Conv(self.channels, (3, 3), padding=PAD_1, use_bias=False)
        self.norm1 = instance_norm(self.channels)
        self.conv2 = nn.Conv(self.channels, (3, 3), padding=PAD_1, use_bias=False)
        self.norm2 = instance_norm(self.channels)

    def __call__(self, x):
        h = nn.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class Translator(nn.Module):
    """CycleGAN's ResNet generator (Zhu et al. appendix 7.2), shrunk: 3x3 conv to ``width``, 4x4 stride-2 conv to
    2 width, ``blocks`` residual blocks, 4x4 stride-2 transposed conv back to ``width`` (torch's padding 1:
    ``conv_transpose_padding``), 3x3 conv to C; instance norm and ReLU after each inner conv (which has no bias,
    as the norm removes it); a sigmoid for [0, 1]
    images. Compact, so that the residual blocks can carry torch's names ``blocks_i`` beside the field ``blocks``.
    x: (B, H, W, C), H and W even -> (B, H, W, C)."""

    shape: Sequence[int]
    width: int = 32
    blocks: int = 2
    unit_interval: bool = True

    @nn.compact
    def __call__(self, x):
        c, w = self.shape[0], self.width
        pad = conv_transpose_padding(4, 1, 0)
        h = nn.relu(instance_norm(w, "norm0")(nn.Conv(w, (3, 3), padding=PAD_1, use_bias=False, name="stem")(x)))
        h = nn.Conv(2 * w, (4, 4), strides=(2, 2), padding=PAD_1, use_bias=False, name="down")(h)
        h = nn.relu(instance_norm(2 * w, "norm1")(h))
        for i in range(self.blocks):
            h = ResidualBlock(2 * w, name=f"blocks_{i}")(h)
        h = nn.ConvTranspose(w, (4, 4), strides=(2, 2), padding=(pad, pad), transpose_kernel=True, use_bias=False,
                             name="up")(h)
        h = nn.relu(instance_norm(w, "norm2")(h))
        y = nn.Conv(c, (3, 3), padding=PAD_1, name="out")(h)
        return nn.sigmoid(y) if self.unit_interval else y


def instance_norm(channels: int, name: str | None = None) -> nn.GroupNorm:
    """Instance normalisation as GroupNorm with one group per channel; torch's epsilon and two-pass variance."""
    return nn.GroupNorm(num_groups=channels, epsilon=GROUPNORM_EPS, use_fast_variance=False, name=name)


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
