"""The ``transformer`` derivation (``python -m theory_jax transformer``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/transformer.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.nets.attention import (
    attention_weights,
    causal_mask,
    position_frequencies,
    rope,
    sinusoidal_embedding,
)
from theory_jax.transformer import (
    block_diagonal_attention,
    last_layer_gradient_norms,
    layer_norm,
    learned_embedding,
    merge_heads,
    multi_head_attention,
    rms_norm,
    scaled_dot_product_attention,
    split_heads,
)

TITLE = "attention and the transformer"
LECTURES = "attention; transformer architecture; skip connections and normalisation; position embeddings"


# 5. The derivation ----------------------------------------------------------------------------------------------
def _rotation_2d(angle):
    return sp.Matrix([[sp.cos(angle), -sp.sin(angle)], [sp.sin(angle), sp.cos(angle)]])


def _sympy_rope():
    """(R(m theta) q) . (R(n theta) k) and q . R((n - m) theta) k for symbolic 2-vectors."""
    m, n, theta = sp.symbols("m n theta", real=True)
    q, k = sp.Matrix(sp.symbols("q0 q1", real=True)), sp.Matrix(sp.symbols("k0 k1", real=True))
    lhs = ((_rotation_2d(m * theta) @ q).T @ (_rotation_2d(n * theta) @ k))[0]
    return lhs, (q.T @ _rotation_2d((n - m) * theta) @ k)[0]


def _sympy_softmax_shift():
    """softmax(l + c)_1 and softmax(l)_1 for three symbolic logits."""
    logits, c = sp.symbols("l0:3", real=True), sp.Symbol("c", real=True)
    return (sp.exp(logits[0] + c) / sum(sp.exp(x + c) for x in logits), sp.exp(logits[0]) / sum(sp.exp(x) for x in logits))


def _projections(rng, dim, scale=1.0):
    """Random attention weights in the torch layout: qkv (3D, D), out (D, D) and their biases."""
    return (scale * rng.standard_normal((3 * dim, dim)) / math.sqrt(dim), 0.1 * rng.standard_normal(3 * dim),
            rng.standard_normal((dim, dim)) / math.sqrt(dim), 0.1 * rng.standard_normal(dim))


def _deep_stacks(draws, layers, dim, rng):
    """``draws`` independent sets of weights of ``layers`` bias-free blocks, N(0, 1/fan_in): (draws, layers, ...)."""
    def draw(*shape):
        return jnp.asarray(rng.standard_normal((draws, layers, *shape)) / math.sqrt(shape[-1]))
    return {"qkv": draw(3 * dim, dim), "out": draw(dim, dim), "fc": draw(4 * dim, dim), "proj": draw(dim, 4 * dim)}


def _section_causal_attention(d: Derivation, rng: np.random.Generator) -> None:
    """The causal mask: rows of weights sum to 1, masked weights are exactly 0, outputs ignore the future."""
    # 1. Scaled dot-product attention and the causal mask.
    q, k, v = (jnp.asarray(rng.standard_normal((3, 7, 8))) for _ in range(3))
    weights = attention_weights(q, k, causal=True)
    allowed = np.asarray(causal_mask(7, 7))
    d.numeric("Every row of the causal attention weights sums to one (3 x 7 rows, d = 8)", weights.sum(-1),
              np.ones((3, 7)))
    d.numeric("Masked weights ($j > i$) are exactly 0: $e^{-\\infty} = 0$, not a small number",
              np.asarray(weights)[:, ~allowed], 0.0, rtol=0.0, atol=1e-300)
    shifted, plain = _sympy_softmax_shift()
    d.symbolic("Softmax is invariant to a shift of all logits of a row, $\\mathrm{softmax}(l + c) = "
               "\\mathrm{softmax}(l)$: so subtracting the row max (or adding a mask) changes nothing else",
               shifted, plain)
    w_qkv, b_qkv, w_out, b_out = (jnp.asarray(a) for a in _projections(rng, 8))
    x = jnp.asarray(rng.standard_normal((1, 6, 8)))
    jac = np.asarray(jax.jit(jax.jacfwd(lambda z: multi_head_attention(z, w_qkv, b_qkv, w_out, b_out, 2)))(x))[0, :, :, 0]
    blocks = np.abs(jac).max(axis=(1, 3))  # (6, 6): max |d out_i / d x_j|
    future = np.triu(np.ones((6, 6), bool), 1)
    d.numeric("Causality: $\\partial\\,\\mathrm{out}_i / \\partial x_j = 0$ exactly for every $j > i$ "
              "(the full Jacobian of causal multi-head self-attention, T = 6, D = 8, 2 heads)",
              blocks[future], 0.0, rtol=0.0, atol=1e-300)
    d.inequality("...while every $j \\le i$ does influence $\\mathrm{out}_i$ (min over the blocks of "
                 f"max |Jacobian| = {blocks[~future].min():.3f} > 0.01)", 0.01, blocks[~future].min())
    fig, (ax_w, ax_j) = new_figure(columns=2)
    image = ax_w.imshow(np.asarray(weights)[0], cmap="viridis")
    fig.colorbar(image, ax=ax_w)
    ax_w.set(xlabel="key position $j$", ylabel="query position $i$", title="causal attention weights")
    ax_j.imshow(blocks, cmap="viridis")
    ax_j.set(xlabel="input position $j$", ylabel="output position $i$",
             title="max $|\\partial\\,\\mathrm{out}_i / \\partial x_j|$")
    d.figure(fig, "Above the diagonal both the weights and the Jacobian of multi-head attention are exactly 0: "
                  "position $i$ reads only positions $j \\le i$.")
    x_long = jnp.asarray(rng.standard_normal((2, 9, 8)))
    q9, k9, v9 = (x_long @ w_qkv.T + b_qkv)[..., :8], (x_long @ w_qkv.T + b_qkv)[..., 8:16], x_long
    d.numeric("Key-value cache: the last 4 queries against all 9 cached keys with `causal_mask`(4, 9) give the "
              "last 4 rows of full causal attention", scaled_dot_product_attention(q9[:, 5:], k9, v9, causal=True),
              scaled_dot_product_attention(q9, k9, v9, causal=True)[:, 5:])


def _section_scaling(d: Derivation, rng: np.random.Generator) -> None:
    """Why 1/sqrt(d): the scaled scores have unit variance, and without the scaling the softmax saturates."""
    # 2. Why 1/sqrt(d).
    qs, ks = rng.standard_normal((2, 20000, 64))
    dots = np.sum(qs * ks, axis=-1)
    d.monte_carlo("For $q, k \\sim \\mathcal N(0, I_d)$, $\\mathrm{Var}(q\\cdot k) = d$, so $q\\cdot k/\\sqrt d$ has unit "
                  "variance whatever $d$ (d = 64, 20 000 pairs)", (dots / 8.0) ** 2, 1.0)
    keys = jnp.asarray(rng.standard_normal((200, 64, 64)))
    query = jnp.asarray(rng.standard_normal((200, 1, 64)))
    scaled = float(attention_weights(query, keys).max(-1).mean())
    unscaled = float(attention_weights(query * 8.0, keys).max(-1).mean())
    d.inequality(f"Without the scaling the softmax saturates: over 64 random keys the mean largest weight is "
                 f"{unscaled:.2f} unscaled against {scaled:.2f} scaled (gradients through a one-hot softmax vanish)",
                 scaled + 0.3, unscaled)


def _section_multi_head(d: Derivation, rng: np.random.Generator) -> None:
    """Multi-head attention as a loop over heads, fused, summed per head, and as one block-diagonal attention."""
    # 3. Multi-head attention.
    d.say("Multi-head attention runs $H$ attentions of width $d = D/H$ on slices of one projection, concatenates "
          "them and mixes them with $W_O$: $\\mathrm{Concat}(\\mathrm{head}_1, ..., \\mathrm{head}_H)W_O^\\top$.")
    w_qkv, b_qkv, w_out, b_out = (jnp.asarray(a) for a in _projections(rng, 16))
    x = jnp.asarray(rng.standard_normal((2, 7, 16)))
    looped = multi_head_attention(x, w_qkv, b_qkv, w_out, b_out, 4)
    q, k, v = (split_heads(z, 4) for z in jnp.split(x @ w_qkv.T + b_qkv, 3, axis=-1))
    d.numeric("The fused form (one batched attention over the (B, H, T, d) `split_heads` tensors, `merge_heads`, "
              "one projection) equals the loop over heads (D = 16, 4 heads)",
              merge_heads(scaled_dot_product_attention(q, k, v, causal=True)) @ w_out.T + b_out, looped)
    per_head = sum(scaled_dot_product_attention(q[:, h], k[:, h], v[:, h], causal=True) @ w_out[:, 4 * h:4 * h + 4].T
                   for h in range(4)) + b_out
    d.numeric("Concat then project = the sum over heads of each head projected by its own column block of $W_O$",
              per_head, looped)
    d.numeric("Multi-head attention is ONE causal attention over the $HT$ (head, position) tokens with a "
              "block-diagonal mask (a token sees only its own head's tokens)",
              block_diagonal_attention(x, w_qkv, b_qkv, w_out, b_out, 4), looped)
    perm = rng.permutation(7)
    bidirectional = multi_head_attention(x, w_qkv, b_qkv, w_out, b_out, 4, causal=False)
    d.numeric("Without positions and mask, attention is permutation-equivariant: $f(Px) = Pf(x)$; it sees a set, "
              "so order must come from a position embedding",
              multi_head_attention(x[:, perm], w_qkv, b_qkv, w_out, b_out, 4, causal=False), bidirectional[:, perm])


def _section_sinusoids(d: Derivation, rng: np.random.Generator) -> None:
    """Sinusoidal positions: a shift is a rotation and the dot products depend on m - n; learned positions."""
    # 4. Position embeddings.
    pos = jnp.arange(60.0)
    pe, freqs, shift = np.asarray(sinusoidal_embedding(pos, 16)), position_frequencies(16), 7
    rot = np.zeros((16, 16))
    for i, w in enumerate(freqs):
        rot[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(shift * w), np.sin(shift * w)],
                                                 [-np.sin(shift * w), np.cos(shift * w)]]
    d.numeric("Sinusoids: $PE(p + k) = R_k\\,PE(p)$ with $R_k$ a block-diagonal rotation that does not depend on p "
              "(k = 7, p = 0..52, D = 16): a relative offset is a linear map (Vaswani et al. sec. 3.5)",
              pe[:-shift] @ rot.T, pe[shift:])
    gram = pe @ pe.T
    d.numeric("$PE(m)\\cdot PE(n) = \\sum_i \\cos((m - n)\\theta_i)$: a function of $m - n$ only",
              gram, np.cos((np.arange(60)[:, None] - np.arange(60)[None, :])[..., None] * freqs).sum(-1))
    fig, (ax_g, ax_pe) = new_figure(columns=2)
    image = ax_g.imshow(gram, cmap="viridis")
    fig.colorbar(image, ax=ax_g)
    ax_g.set(xlabel="position $n$", ylabel="position $m$", title="$PE(m) \\cdot PE(n)$")
    ax_pe.imshow(pe.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax_pe.set(xlabel="position $p$", ylabel="feature", title="$PE(p)$, D = 16")
    d.figure(fig, "The dot products of sinusoidal embeddings (left; the embeddings right) are constant along every "
                  "diagonal: a function of $m - n$ only.")
    table, ids = jnp.asarray(rng.standard_normal((12, 5))), jnp.asarray([3, 0, 3, 7])
    cot = jnp.asarray(rng.standard_normal((4, 5)))
    d.gradient("Learned positions: $\\partial/\\partial P$ of $\\langle P[p], c\\rangle$ is $\\mathrm{onehot}(p)^\\top c$: "
               "rows of unseen positions get no gradient (why positions beyond training length stay random)",
               jax.grad(lambda t: jnp.sum(learned_embedding(t, ids) * cot))(table), np.eye(12)[np.asarray(ids)].T @ cot)


def _section_rope(d: Derivation, rng: np.random.Generator) -> None:
    """RoPE: scores depend on relative position only, symbolically and numerically, via complex rotations."""
    lhs, rhs = _sympy_rope()
    d.symbolic("RoPE rotates each pair of q and k by $p\\theta_i$; in 2-D, $(R(m\\theta)q)^\\top(R(n\\theta)k) = "
               "q^\\top R((n - m)\\theta)k$: the score depends on $m - n$ only (Su et al. eq. 16)", lhs, rhs)
    qv, kv = jnp.asarray(rng.standard_normal((2, 1, 64)))
    m, n = rng.integers(0, 500, 40), rng.integers(0, 500, 40)

    def score(a, b):
        return jnp.sum(rope(qv, jnp.asarray([float(a)])) * rope(kv, jnp.asarray([float(b)])))

    d.numeric("...and numerically in d = 64: $\\langle \\mathrm{rope}(q, m), \\mathrm{rope}(k, n)\\rangle = "
              "\\langle \\mathrm{rope}(q, m - n), k\\rangle$ for 40 random pairs $m, n < 500$",
              [score(a, b) for a, b in zip(m, n)], [score(a - b, 0) for a, b in zip(m, n)], rtol=1e-10, atol=1e-10)
    xs, ps = jnp.asarray(rng.standard_normal((5, 32))), jnp.asarray(rng.uniform(0, 300, 5))
    complex_form = (np.asarray(xs[:, 0::2]) + 1j * np.asarray(xs[:, 1::2])) * np.exp(
        1j * np.asarray(ps)[:, None] * position_frequencies(32))
    rotated = np.asarray(rope(xs, ps))
    d.numeric("RoPE is multiplication by $e^{ip\\theta_i}$ of the complex numbers $x_{2i} + i\\,x_{2i+1}$: a rotation, "
              "so it keeps the norm (real and imaginary parts compared)", np.stack([rotated[:, 0::2], rotated[:, 1::2]]),
              np.stack([complex_form.real, complex_form.imag]))
    q7, k7 = jnp.asarray(rng.standard_normal((2, 1, 7, 16)))
    at = attention_weights(rope(q7, jnp.arange(7.0)), rope(k7, jnp.arange(7.0)), causal=True)
    d.numeric("So RoPE attention weights are invariant to shifting every position by 1000",
              attention_weights(rope(q7, jnp.arange(7.0) + 1000), rope(k7, jnp.arange(7.0) + 1000), causal=True), at,
              rtol=1e-10, atol=1e-11)


def _section_normalisation(d: Derivation, rng: np.random.Generator) -> None:
    """Layer norm's shift and scale invariances, and RMS norm's scale invariance without centring."""
    # 5. Normalisation.
    z, ones, zeros = jnp.asarray(rng.standard_normal((6, 32)) * 3 + 1), jnp.ones(32), jnp.zeros(32)
    normed = layer_norm(z, ones, zeros, eps=0.0)
    d.numeric("Layer norm (eps = 0) gives every token mean 0 and mean square 1", jnp.stack(
        [normed.mean(-1), (normed**2).mean(-1)]), np.stack([np.zeros(6), np.ones(6)]), atol=1e-12)
    d.numeric("...and is invariant to $x \\to ax + c$ (a = 2.5, c = -4)", layer_norm(2.5 * z - 4, ones, zeros, 0.0),
              normed)
    tangent = jax.jvp(lambda y: layer_norm(y, ones, zeros, 0.0), (z,), (jnp.ones_like(z),))[1]
    radial = jax.jvp(lambda y: layer_norm(y, ones, zeros, 0.0), (z,), (z,))[1]
    d.gradient("Its Jacobian annihilates the shift direction $\\mathbf 1$ and the scale direction $x$ (jax.jvp)",
               jnp.stack([tangent, radial]), np.zeros((2, 6, 32)), atol=1e-12)
    rms = rms_norm(z, ones, eps=0.0)
    d.numeric("RMS norm keeps the scale invariance ($x \\to 2.5x$)...", rms_norm(2.5 * z, ones, 0.0), rms)
    d.inequality("...but not the shift invariance: $x + 4$ changes its output (no centring)", 0.1,
                 float(jnp.abs(rms_norm(z + 4, ones, 0.0) - rms).max()))


def _section_pre_post_norm(d: Derivation, rng: np.random.Generator) -> None:
    """Pre-norm against post-norm: the last block's gradient through depth at initialisation."""
    # 6. Pre-norm against post-norm residual blocks at initialisation (Xiong et al. 2020).
    d.say("Pre-norm $x + f(N(x))$ keeps an identity path from every block to the output; post-norm $N(x + f(x))$ "
          "normalises the sum. At initialisation (blocks of D = 16, 2 heads, N(0, 1/fan-in) weights, a random linear "
          "loss; RMS over 8 draws of weights, inputs and loss), the gradient of the LAST block's weights behaves as "
          "Xiong et al.'s theorem 1 says: O(1) for post-norm, O(1/sqrt(L)) for pre-norm.")
    depths, draws = (2, 8, 32), 8
    stacks = _deep_stacks(draws, 32, 16, rng)
    x, cot = (jnp.asarray(rng.standard_normal((draws, 2, 6, 16))) for _ in range(2))
    norms = last_layer_gradient_norms(stacks, x, cot, depths, 2)
    pre, post = norms["pre"], norms["post"]
    d.inequality(f"Pre-norm: the last block's gradient norm falls with depth, {pre[0]:.0f} > {pre[1]:.0f} > "
                 f"{pre[2]:.0f} for L = 2, 8, 32", pre[1:], pre[:-1])
    scaled_pre = pre * np.sqrt(depths)
    d.inequality(f"...like $1/\\sqrt L$: $\\sqrt L\\,\\|g\\|$ = {', '.join(f'{s:.0f}' for s in scaled_pre)} stays within "
                 "a factor 1.5", scaled_pre.max() / scaled_pre.min(), 1.5)
    d.inequality(f"Post-norm: it stays flat, {post[0]:.0f}, {post[1]:.0f}, {post[2]:.0f} (within a factor 1.5)",
                 post.max() / post.min(), 1.5)
    d.inequality(f"...so at L = 32 the last block of post-norm gets {post[2] / pre[2]:.1f} x the gradient of pre-norm's "
                 "(more than 3 x): why post-norm needs learning-rate warm-up and pre-norm trains without", 3 * pre[2],
                 post[2])
    fig, ax = new_figure()
    ax.loglog(depths, pre, "o-", label="pre-norm $x + f(N(x))$")
    ax.loglog(depths, post, "s-", label="post-norm $N(x + f(x))$")
    ax.loglog(depths, pre[0] * np.sqrt(depths[0] / np.asarray(depths)), "k--", lw=1, label="$\\propto 1/\\sqrt{L}$")
    ax.minorticks_off()
    ax.set_xticks(depths, [str(depth) for depth in depths])
    ax.set(xlabel="number of blocks $L$", ylabel="RMS $\\|\\nabla_{W_L}\\|$ of the last block")
    ax.legend()
    d.figure(fig, "At initialisation the last block's gradient shrinks like $1/\\sqrt{L}$ with pre-norm and stays flat "
                  "with post-norm.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("transformer", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    d.say("Attention reads a set of values $v_j$ with weights from query-key similarities: "
          "$\\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}(QK^\\top/\\sqrt d + M)V$ (Vaswani et al. eq. 1), "
          "with $M_{ij} = -\\infty$ where query $i$ may not see key $j$ (causal: $j > i$).")

    _section_causal_attention(d, rng)
    _section_scaling(d, rng)
    _section_multi_head(d, rng)
    _section_sinusoids(d, rng)
    _section_rope(d, rng)
    _section_normalisation(d, rng)
    _section_pre_post_norm(d, rng)
    return d
