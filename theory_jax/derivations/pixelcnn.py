"""The ``pixelcnn`` derivation (``python -m theory_jax pixelcnn``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/pixelcnn.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE``
as a notebook.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.pixelcnn import (
    bernoulli_log_likelihood,
    bits_per_dim,
    categorical_log_likelihood,
    causal_mask,
    dependency,
    gated_pixelcnn,
    gated_region,
    gated_shapes,
    masked_conv2d,
    plain_pixelcnn,
    plain_shapes,
    sample_pixel,
)

TITLE = "PixelCNN: masked convolutions, causality and the chain-rule likelihood"
LECTURES = "autoregressive image models; PixelCNN; gated PixelCNN"


# Helpers of the derivation -----------------------------------------------------------------------------------------
def _weights(rng, shapes):
    return {name: jnp.asarray(rng.normal(0, 1 / math.sqrt(max(np.prod(s[1:]), 1)), s) if len(s) > 1
                              else rng.normal(0, 0.1, s)) for name, s in shapes.items()}


def _section_masks(d: Derivation) -> None:
    """Mask A and mask B: the taps before the centre in raster order, B also the centre."""
    d.say("A PixelCNN orders the pixels in raster order and masks its convolutions so that output $i$ only sees "
          "inputs $j < i$. Mask A (first layer) excludes the centre tap, mask B (later layers) includes it.")
    a, b = np.asarray(causal_mask(5, "A")), np.asarray(causal_mask(5, "B"))
    d.numeric("The 5 x 5 masks keep the taps before the centre in raster order: A has $(k^2 - 1)/2 = 12$ ones, B one "
              "more, and they differ only at the centre", [a.sum(), b.sum(), np.abs(b - a).sum(), (b - a)[2, 2]],
              [12, 13, 1, 1])
    fig, axes = new_figure(columns=2, width=3.0, height=3.0)
    for ax, mask, name in ((axes[0], a, "mask A (first layer)"), (axes[1], b, "mask B (later layers)")):
        ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.6)
        ax.plot([2], [2], "r+", ms=14, mew=2)
        ax.set(title=name, xticks=range(5), yticks=range(5), xlabel="kernel column", ylabel="kernel row")
    d.figure(fig, "Kept taps (grey) of the 5 x 5 masks: every row above the centre (red cross) and the taps left of "
                  "it; only mask B keeps the centre itself.")


def _section_causality(d: Derivation, rng: np.random.Generator, size: int, layers: int, channels: int, kernel: int,
                       cats: int):
    """Causality by autodiff: d out_i / d x_j = 0 for j >= i through plain and gated stacks; type B alone leaks x_i."""
    p_plain = _weights(rng, plain_shapes(layers, channels, kernel, cats))
    p_gated = _weights(rng, gated_shapes(layers, channels, kernel, cats))
    jac = jax.jit(dependency, static_argnums=(0, 2))  # one compiled Jacobian per network
    j_plain = jac(lambda p, x: plain_pixelcnn(p, x, layers), p_plain, size)
    j_gated = jac(lambda p, x: gated_pixelcnn(p, x, layers), p_gated, size)
    future_or_self = np.triu(np.ones((size * size, size * size), bool))  # j >= i
    future = np.triu(np.ones((size * size, size * size), bool), 1)  # j > i
    d.say(f"Causality, by autodiff: the Jacobian of all {size * size} x {cats} logits of a {size} x {size} image "
          f"w.r.t. its {size * size} pixels, through {layers} layers of {channels} channels (random weights).")
    d.numeric("Plain PixelCNN (A then B layers): $\\partial\\,\\mathrm{out}_i / \\partial x_j = 0$ exactly for every "
              "$j \\ge i$ (the masks multiply the kernel: no leak)", np.max(np.asarray(j_plain)[future_or_self]), 0.0,
              rtol=0, atol=1e-300)
    d.numeric("Gated PixelCNN (vertical + horizontal stacks): the same, exactly zero for every $j \\ge i$",
              np.max(np.asarray(j_gated)[future_or_self]), 0.0, rtol=0, atol=1e-300)
    p_b = _weights(np.random.default_rng(3), plain_shapes(layers, channels, kernel, cats))
    j_b = jac(lambda p, x: _all_b_stack(p, x, layers), p_b, size)
    d.numeric("A stack of type-B layers only: zero for every $j > i$ ...", np.max(np.asarray(j_b)[future]), 0.0,
              rtol=0, atol=1e-300)
    diag = np.diag(np.asarray(j_b))
    d.inequality("... but output $i$ sees its own pixel $x_i$ (every diagonal entry > 0): B alone is not a valid "
                 "autoregressive model, hence mask A first", np.full(size * size, 1e-12), diag)
    fig, axes = new_figure(columns=2, width=3.4, height=3.4)
    for ax, jacobian, name in ((axes[0], j_gated, "gated PixelCNN (A, then B)"), (axes[1], j_b, "type B only")):
        shade = np.where(future_or_self[..., None], [1.0, 0.8, 0.8], [1.0, 1.0, 1.0])  # pink: j >= i, forbidden
        ax.imshow(np.where((np.asarray(jacobian) > 0)[..., None], [0.35, 0.35, 0.35], shade))
        ax.set(title=name, xlabel="input pixel $j$ (raster order)", ylabel="output $i$")
    d.figure(fig, "Which inputs each output depends on (grey: $\\partial\\,\\mathrm{out}_i / \\partial x_j \\ne 0$): with "
                  "mask A first nothing reaches the forbidden $j \\ge i$ (pink); with type B only the diagonal is hit.")
    return j_plain, j_gated


def _section_receptive_field(d: Derivation, j_plain, j_gated, size: int, layers: int) -> None:
    """Receptive fields at one pixel: the gated stack covers the causal region, the plain stack has a blind spot."""
    row, col = 5, 3
    i = row * size + col
    reach_plain = np.asarray(j_plain)[i].reshape(size, size) > 0
    reach_gated = np.asarray(j_gated)[i].reshape(size, size) > 0
    region = gated_region(size, layers, row, col)
    d.numeric(f"The gated PixelCNN's receptive field at pixel ({row}, {col}) is exactly the full causal region: rows "
              f"{row - layers}..{row - 1} at columns {col - layers}..{col + layers} (clipped to the image) and the "
              f"{layers} pixels left of it in its row (mismatched pixels)", np.sum(reach_gated != region), 0)
    blind = region & ~reach_plain
    d.inequality(f"The plain PixelCNN has a blind spot: {int(blind.sum())} pixels of that region (above and to the "
                 "right) never reach its output, with no pixel outside it reached either",
                 [1, np.sum(reach_plain & ~region)], [blind.sum(), 0])
    fig, axes = new_figure(columns=2, width=3.0, height=3.2)
    for ax, reach, name in ((axes[0], reach_plain, "plain PixelCNN"), (axes[1], reach_gated, "gated PixelCNN")):
        ax.imshow(reach, cmap="Greys", vmin=0, vmax=1.6)
        ax.plot([col], [row], "b*", ms=12, label="pixel $i$")
        rows, cols = np.nonzero(region & ~reach)
        ax.plot(cols, rows, "rx", ms=9, mew=2, label="blind spot")
        ax.set(title=name, xticks=range(size), yticks=range(size), xlabel="column", ylabel="row")
    axes[0].legend(fontsize=7, loc="lower right")
    d.figure(fig, f"Receptive field (grey) of pixel ({row}, {col}) after {layers} layers: the plain stack misses "
                  "the pixels above and to the right (red crosses), the gated stack's two stacks reach the whole region.")


def _section_chain_rule(d: Derivation):
    """The chain rule on a 3 x 3 binary image: a normalised model whose softmax outputs are its own conditionals."""
    d.say("The chain rule: $\\log p(x) = \\sum_i \\log p(x_i\\mid x_{<i})$. A causal network on a 3 x 3 binary image "
          "defines a distribution over all $2^9 = 512$ images, which we can enumerate.")
    gated = jax.jit(gated_pixelcnn, static_argnums=2)
    small = jnp.asarray(list(itertools.product((0, 1), repeat=9)), dtype=jnp.float64).reshape(512, 1, 3, 3)
    p_small = _weights(np.random.default_rng(2), gated_shapes(3, 4, 3, 2))
    logits = gated(p_small, small, 3)  # (512, 2, 3, 3)
    images = small[:, 0].astype(jnp.int32)
    logp = categorical_log_likelihood(logits, images)
    d.numeric("$\\sum_x \\exp \\sum_i \\log p(x_i\\mid x_{<i}) = 1$ over the 512 images (a normalised model, "
              "whatever the weights)", jnp.sum(jnp.exp(logp)), 1.0)
    joint = np.exp(np.asarray(logp)).reshape((2,) * 9)
    cond_net, cond_joint = [], []
    flat = np.asarray(images).reshape(512, 9)
    probs = np.asarray(jax.nn.softmax(logits, axis=1)).reshape(512, 2, 9)
    for pixel in range(9):
        marg = joint.sum(axis=tuple(range(pixel + 1, 9)))  # p(x_<=i)
        prev = marg.sum(axis=-1)  # p(x_<i)
        for n in range(0, 512, 37):
            key = tuple(flat[n, : pixel + 1])
            cond_joint.append(marg[key] / prev[key[:-1]])
            cond_net.append(probs[n, flat[n, pixel], pixel])
    d.numeric("Each softmax output is the conditional of the joint it defines: $p(x_i\\mid x_{<i}) = "
              "\\sum_{x_{>i}} p(x) / \\sum_{x_{\\ge i}} p(x)$ (every pixel, 14 images)", cond_net, cond_joint)
    bern = bernoulli_log_likelihood(logits[:, 1] - logits[:, 0], images)
    d.numeric("Bernoulli with logit $l_1 - l_0$ is the 2-way softmax: the same $\\log p(x)$ for all 512 images",
              bern, logp)
    g = jax.grad(lambda lg: jnp.sum(categorical_log_likelihood(lg, images[:8])))(logits[:8])
    d.gradient("$\\partial \\log p(x) / \\partial l_{i,k} = \\mathbf 1[x_i = k] - \\mathrm{softmax}(l_i)_k$ "
               "(jax.grad vs the closed form)", g,
               jax.nn.one_hot(images[:8], 2, axis=1) - jax.nn.softmax(logits[:8], axis=1))
    return logits, probs


def _section_bits_and_sampling(d: Derivation, rng: np.random.Generator, logits, probs) -> None:
    """Nats to bits per dimension, and one inverse-CDF sampling step drawing from the softmax."""
    d.numeric("nats <-> bits/dim: a uniform 256-way model costs exactly 8 bits/dim on a 28 x 28 image "
              "($784 \\ln 256$ nats)", bits_per_dim(-categorical_log_likelihood(jnp.zeros((1, 256, 28, 28)),
                                                                               jnp.zeros((1, 28, 28), int)), 784), 8.0)
    u = jnp.asarray(rng.uniform(size=20000))
    draws = sample_pixel(jnp.broadcast_to(logits[5, :, 1, 1], (20000, 2)), u)
    d.monte_carlo("sample_pixel with uniform $u$ draws from the softmax: the frequency of category 1 matches "
                  "$p(x_4 = 1\\mid x_{<4})$", np.asarray(draws == 1, float), float(probs[5, 1, 4]))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("pixelcnn", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    size, layers, channels, kernel, cats = 7, 4, 3, 3, 2

    _section_masks(d)
    j_plain, j_gated = _section_causality(d, rng, size, layers, channels, kernel, cats)
    _section_receptive_field(d, j_plain, j_gated, size, layers)
    logits, probs = _section_chain_rule(d)
    _section_bits_and_sampling(d, rng, logits, probs)
    return d


def _all_b_stack(params, x, layers):
    """The plain PixelCNN with every mask type B (no type A) and tanh (no dead units): the control of the causality
    claim."""
    h = x
    for layer in range(layers):
        w = params[f"convs.{layer}.weight"]
        h = jnp.tanh(masked_conv2d(h, w, params[f"convs.{layer}.bias"], causal_mask(w.shape[-1], "B")))
    return masked_conv2d(h, params["out.weight"], params["out.bias"], jnp.ones((1, 1)))
