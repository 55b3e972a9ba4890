"""The ``text_to_image`` derivation (``python -m theory_jax text_to_image``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/text_to_image.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.text_to_image import (
    TextEncoder,
    contrastive_loss,
    cross_attention,
    guided_eps,
    info_nce,
)

TITLE = "text guidance: cross-attention to a caption, guidance by an implicit text classifier, CLIP's InfoNCE bound"
LECTURES = "text guidance; stable diffusion"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _section_cross_attention(d: Derivation, rng: np.random.Generator) -> None:
    """Cross-attention is a kernel-weighted average of the real tokens' values, blind to the padding."""
    q, k, v = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    mask = np.array([[True] * 5, [True, True, False, False, False]])
    out = np.asarray(cross_attention(q, k, v, mask))
    kernel = np.exp(np.einsum("btd,bsd->bts", q, k) / 2.0) * mask[:, None, :]  # K(q, k) = exp(q . k / sqrt(4))
    d.numeric("`cross_attention` is the Nadaraya-Watson average $\\sum_j K(q, k_j) v_j / \\sum_j K(q, k_j)$ with "
              "$K(q, k) = e^{q \\cdot k / \\sqrt d}$ over the real tokens (captions of 5 and 2 tokens)",
              out, np.einsum("bts,bse->bte", kernel, v) / kernel.sum(-1, keepdims=True))
    k2, v2 = k.copy(), v.copy()
    k2[1, 2:], v2[1, 2:] = 100 * rng.standard_normal((3, 4)), 100 * rng.standard_normal((3, 3))
    d.numeric("...so the padded tokens' keys and values change nothing, however large", cross_attention(q, k2, v2, mask),
              out)
    grad_k, grad_v = jax.grad(lambda k_, v_: jnp.sum(cross_attention(q, k_, v_, mask) ** 2), argnums=(0, 1))(k, v)
    d.gradient("...and no gradient reaches them: $\\partial L / \\partial k_j = \\partial L / \\partial v_j = 0$ for "
               "the 3 padded tokens (`jax.grad`)", np.concatenate([np.ravel(grad_k[1, 2:]), np.ravel(grad_v[1, 2:])]),
               np.zeros(21))


def _section_guidance(d: Derivation, rng: np.random.Generator) -> None:
    """Guidance on a caption: the guided score adds w times the implicit classifier's gradient (Bayes' rule)."""
    x, m0, m1 = sp.symbols("x m_0 m_1", real=True)
    lik0, lik1 = sp.exp(-(x - m0) ** 2 / 2), sp.exp(-(x - m1) ** 2 / 2)  # two captions, equally likely
    evidence = (lik0 + lik1) / 2
    d.symbolic("Bayes' rule makes a classifier of the conditional and unconditional models: for two captions with "
               "$p(x|c) = \\mathcal N(m_c, 1)$, $\\nabla_x \\log p(c{=}0|x) = \\nabla_x \\log p(x|c{=}0) - "
               "\\nabla_x \\log p(x)$", sp.diff(sp.log(lik0 / 2 / evidence), x),
               sp.diff(sp.log(lik0), x) - sp.diff(sp.log(evidence), x))

    # three captions as a 2-D Gaussian mixture, noised to x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
    means, abar, w = jnp.array([[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0]]), 0.6, 3.0
    var = abar * 0.3 + 1 - abar  # x_0 | c ~ N(m_c, 0.3 I)

    def log_lik(x_t, c):
        return -jnp.sum((x_t - jnp.sqrt(abar) * means[c]) ** 2) / (2 * var) - jnp.log(2 * jnp.pi * var)

    def log_evidence(x_t):
        return jax.nn.logsumexp(jnp.stack([log_lik(x_t, c) for c in range(3)])) - jnp.log(3.0)

    points, caption = jnp.asarray(rng.standard_normal((50, 2)) * 1.5), 1
    score_c = jax.vmap(jax.grad(lambda x_t: log_lik(x_t, caption)))(points)
    score_u = jax.vmap(jax.grad(log_evidence))(points)
    classifier = jax.vmap(jax.grad(lambda x_t: log_lik(x_t, caption) - log_evidence(x_t)))(points)
    scale = -jnp.sqrt(1 - abar)  # eps = -sqrt(1 - abar) score
    d.numeric("`guided_eps` on the exact noise predictors of 3 captions ($w = 3$, $\\bar\\alpha = 0.6$, 50 points) is "
              "$-\\sqrt{1-\\bar\\alpha}\\,(\\nabla \\log p_t(x|c) + w \\nabla \\log p_t(c|x))$: the conditional score "
              "plus $w$ times the implicit classifier's gradient (`jax.grad` of its log posterior)",
              guided_eps(scale * score_c, scale * score_u, w), scale * (score_c + w * classifier))


def _section_training(d: Derivation, rng: np.random.Generator) -> None:
    """What the trained model relies on: a causal text encoder is blind to padding, and caption dropout makes the
    same network the unconditional model that guidance needs."""
    ids = np.array([[1, 7, 3, 9, 4, 0, 0, 0], [1, 5, 0, 0, 0, 0, 0, 0]])
    other = np.where(ids == 0, rng.integers(2, 12, ids.shape), ids)  # something else in every padded place
    encoder = TextEncoder(12, dim=16, heads=2, layers=2, max_len=8)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), jax.jit(encoder.init)(jax.random.key(0), ids)["params"])
    apply = jax.jit(encoder.apply)
    states, states_other = (np.asarray(apply({"params": params}, jnp.asarray(i))) for i in (ids, other))
    real = ids != 0
    d.numeric("A causal text encoder (`TextEncoder`: token embedding, 2 causal transformer blocks) gives a caption's "
              "real tokens the same states whatever is in the padded places after them (captions of 5 and 2 "
              "tokens of 8): what the U-Net reads does not depend on how long the batch's longest caption is",
              states_other[real], states[real])

    # three captions as a 2-D Gaussian mixture, noised at abar = 0.5; a dropped caption is drawn but not shown
    means, abar, spread = np.array([[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0]]), 0.5, 0.3
    var = abar * spread + 1 - abar

    def log_lik(x_t, c):  # log p_t(x_t | c), a Gaussian of variance var per coordinate
        return -jnp.sum((x_t - math.sqrt(abar) * means[c]) ** 2, -1) / (2 * var) - jnp.log(2 * jnp.pi * var)

    def eps_cond(x_t, c):  # E[eps | x_t, c] = -sqrt(1 - abar) grad log p_t(x_t | c)
        return math.sqrt(1 - abar) * (x_t - math.sqrt(abar) * means[c]) / var

    def eps_empty(x_t):  # sum_c p(c | x_t) E[eps | x_t, c]
        weights = jax.nn.softmax(jnp.stack([log_lik(x_t, c) for c in range(3)], -1), -1)
        return sum(weights[..., c:c + 1] * eps_cond(x_t, c) for c in range(3))

    def log_marginal(x_t):
        return jax.nn.logsumexp(jnp.stack([log_lik(x_t, c) for c in range(3)])) - math.log(3)

    points = jnp.asarray(rng.standard_normal((40, 2)) * 1.5)
    eps_empty = jax.jit(eps_empty)
    d.numeric("With the empty caption the best noise prediction is the caption posterior's average of the "
              "conditional ones, $\\sum_c p(c|x_t)\\,\\epsilon^*(x_t, c) = -\\sqrt{1-\\bar\\alpha}\\,\\nabla \\log "
              "p_t(x_t)$: the unconditional model (3 captions, $\\bar\\alpha = 0.5$, 40 points, `jax.grad`)",
              eps_empty(points), -math.sqrt(1 - abar) * jax.jit(jax.vmap(jax.grad(log_marginal)))(points))
    n = 400_000
    c = rng.integers(0, 3, n)
    x0 = means[c] + math.sqrt(spread) * rng.standard_normal((n, 2))
    eps = rng.standard_normal((n, 2))
    x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
    residual = eps - np.asarray(eps_empty(jnp.asarray(x_t)))
    tests = np.stack([np.ones(n), x_t[:, 0], x_t[:, 1], np.tanh(x_t[:, 0] * x_t[:, 1])], 1)  # functions h(x_t)
    d.monte_carlo("...and caption dropout trains it: on examples whose caption was dropped (drawn, not shown), the "
                  "residual $\\epsilon - \\sum_c p(c|x_t)\\epsilon^*(x_t, c)$ is orthogonal to functions of $x_t$ "
                  "($1$, $x_{t,1}$, $x_{t,2}$, $\\tanh(x_{t,1} x_{t,2})$), the condition that makes it the minimiser "
                  "of the dropped examples' squared error (400 000 draws)",
                  (residual[:, :, None] * tests[:, None, :]).reshape(n, -1), np.zeros(8))


def _critic(x, y, rho):
    """The optimal critic log p(y | x) / p(y) for x, y standard normal in D dims with corr(x_i, y_i) = rho.
    x: (N, D), y: (M, D) -> (N, M)."""
    dim = x.shape[-1]
    cond = -jnp.sum((y[None] - rho * x[:, None]) ** 2, -1) / (2 * (1 - rho**2))
    return cond + jnp.sum(y**2, -1)[None] / 2 - dim / 2 * jnp.log(1 - rho**2)


def _correlated(rng: np.random.Generator, n: int, dim: int, rho: float):
    x = rng.standard_normal((n, dim))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))


def _section_info_nce(d: Derivation, rng: np.random.Generator) -> None:
    """CLIP's loss is two cross-entropies; with the optimal critic, log N - InfoNCE bounds the mutual information."""
    image, text = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    a = image / np.linalg.norm(image, axis=1, keepdims=True)
    b = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = math.exp(2.0) * a @ b.T
    rows = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    cols = logits - np.log(np.exp(logits).sum(0, keepdims=True))
    d.numeric("`info_nce` is the mean of the image->caption and caption->image cross-entropies of the scaled cosine "
              "logits, the diagonal being the positives (6 pairs, scale $e^2$)", info_nce(image, text, 2.0),
              -(np.trace(rows) + np.trace(cols)) / 12)

    dim, rho = 2, 0.8
    mi = -dim / 2 * math.log(1 - rho**2)  # I(x; y) of the correlated Gaussians, nats
    x, y = _correlated(rng, 200_000, dim, rho)
    shuffled = y[rng.permutation(len(y))]
    ratio = jnp.exp(jax.vmap(lambda xi, yi: _critic(xi[None], yi[None], rho)[0, 0])(x, shuffled))
    d.monte_carlo("The optimal critic $f(x, y) = \\log p(y|x)/p(y)$ is normalised under the product of the marginals, "
                  "$E_{p(x)p(y)}[e^{f(x, y)}] = 1$: the property InfoNCE's bound rests on (2-D Gaussians, "
                  "$\\rho = 0.8$, 200 000 shuffled pairs)", ratio, 1.0)
    d.numeric("With independent images and captions ($\\rho = 0$) the optimal critic is 0, every logit ties and "
              "the loss is exactly $\\log N$ (N = 64)", contrastive_loss(_critic(*_correlated(rng, 64, dim, 0.0), 0.0)),
              math.log(64))

    sizes, bounds, errors = (2, 4, 8, 16, 32, 64, 128, 256), [], []
    batch_losses = jax.jit(jax.vmap(lambda x_, y_: contrastive_loss(_critic(x_, y_, rho))))
    for n in sizes:  # 8192 / N batches of N pairs each
        x, y = _correlated(rng, 8192, dim, rho)
        per_batch = math.log(n) - np.asarray(batch_losses(x.reshape(-1, n, dim), y.reshape(-1, n, dim)))
        bounds.append(per_batch.mean())
        errors.append(per_batch.std(ddof=1) / math.sqrt(len(per_batch)))
    bounds, errors = np.array(bounds), np.array(errors)
    d.inequality(f"InfoNCE bounds the mutual information: $E[\\log N - L_N] \\le I(x; y) = {mi:.4f}$ nats for every "
                 "batch size N from 2 to 256: the mean over 8192/N batches, less 4 standard errors, is below $I$ (the "
                 "optimal critic, 2-D Gaussians, $\\rho = 0.8$)", bounds - 4 * errors, np.full(len(sizes), mi))
    d.inequality("...and the bound tightens with N: at N = 256 it is within 0.05 nats of $I$",
                 np.array([mi - bounds[-1]]), np.array([0.05]))
    fig, ax = new_figure()
    ax.errorbar(sizes, bounds, yerr=2 * errors, fmt="o-", label="$\\log N - L_N$ (optimal critic), 2 SE")
    ax.set_xscale("log", base=2)
    ax.axhline(mi, color="k", lw=1, label=f"$I(x; y) = {mi:.3f}$ nats")
    ax.plot(sizes, np.log(sizes), "--", color="0.6", label="$\\log N$")
    ax.set(xlabel="batch size $N$", ylabel="nats", ylim=(0, 1.6 * mi))
    ax.legend()
    d.figure(fig, "The contrastive bound rises with the batch size toward the mutual information it can never exceed, "
             "held below $\\log N$ for small batches: why CLIP trains with large ones.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("text_to_image", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    _section_cross_attention(d, rng)
    _section_guidance(d, rng)
    _section_training(d, rng)
    _section_info_nce(d, rng)
    return d
