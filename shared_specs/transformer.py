"""Spec cases for ``transformer``: attention and its mask, multi-head attention, position embeddings, norms, the MLP;
then the shared trunk (``practice_torch.nets`` vs ``theory_jax.nets``) under the weight converter.

Functions run in ``theory_jax.transformer`` and ``practice_torch.transformer`` on the same NumPy inputs in float64,
with gradients wherever differentiable. Third witnesses, each written differently from the twins:
* attention: NumPy with the mask as a boolean select after a max-subtracted exponential (not -inf logits);
* multi-head attention: one einsum over all heads at once (not a loop over heads), RoPE as complex products;
* sinusoids and RoPE: ``np.sin``/``np.cos`` of p 10000^(-2i/d) and complex multiplication x e^{i p theta};
* norms: ``np.var`` (biased); GELU: SciPy's normal CDF.
Module cases (ids ``nets/transformer_*``, float32, gradients w.r.t. every weight and the input) pin down
the fused qkv layout [q | k | v], the head split, SDPA's causal mask against the written-out one, RoPE's
interleaved pairs, exact GELU, LayerNorm/RMSNorm epsilon (small activations make 1e-5 vs 1e-6 visible),
pre- against post-norm, and the learned/sinusoidal positions of the whole trunk.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, H, T, D = 2, 3, 6, 8


# Independent references ------------------------------------------------------------------------------------------
def ref_causal_mask(queries, keys):
    return np.tril(np.ones((queries, keys), dtype=bool), keys - queries)


def ref_attention_weights(q, k, mask=None, causal=False):
    logits = np.einsum("...td,...sd->...ts", q, k) / np.sqrt(q.shape[-1])
    allowed = np.ones(logits.shape, dtype=bool)
    if causal:
        allowed &= ref_causal_mask(q.shape[-2], k.shape[-2])
    if mask is not None:
        allowed &= mask
    e = np.where(allowed, np.exp(logits - np.max(np.where(allowed, logits, -1e300), axis=-1, keepdims=True)), 0.0)
    return e / e.sum(-1, keepdims=True)


def ref_scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    return ref_attention_weights(q, k, mask, causal) @ v


def ref_rope(x, positions):
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * positions[:, None] * 10000.0 ** (-np.arange(0, x.shape[-1], 2)
                                                                                            / x.shape[-1]))
    return np.stack([z.real, z.imag], axis=-1).reshape(x.shape)


def ref_sinusoidal_embedding(positions, dim):
    angles = positions[:, None] * 10000.0 ** (-np.arange(0, dim, 2) / dim)
    out = np.empty((len(positions), dim))
    out[:, 0::2], out[:, 1::2] = np.sin(angles), np.cos(angles)
    return out


def ref_multi_head_attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads, causal=True, rotary=False):
    b, t, dim = x.shape
    q, k, v = (z.reshape(b, t, heads, dim // heads).transpose(0, 2, 1, 3)
               for z in np.split(x @ qkv_weight.T + qkv_bias, 3, axis=-1))
    if rotary:
        q, k = ref_rope(q, np.arange(t, dtype=float)), ref_rope(k, np.arange(t, dtype=float))
    heads_out = ref_scaled_dot_product_attention(q, k, v, causal=causal)  # (B, H, T, d): all heads in one call
    return heads_out.transpose(0, 2, 1, 3).reshape(b, t, dim) @ out_weight.T + out_bias


def ref_layer_norm(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(np.var(x, axis=-1, keepdims=True) + eps) * weight + bias


def ref_rms_norm(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def ref_gelu(x):
    return x * stats.norm.cdf(x)


def ref_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias):
    h = x @ fc_weight.T + fc_bias
    return 0.5 * h * special.erfc(-h / np.sqrt(2)) @ proj_weight.T + proj_bias


# Input makers ----------------------------------------------------------------------------------------------------
def _qkv(queries=T, keys=T, with_mask=False, values=True):
    def make(r):
        inputs = {"q": gaussian(r, B, H, queries, D), "k": gaussian(r, B, H, keys, D)}
        if values:
            inputs["v"] = gaussian(r, B, H, keys, D)
        if with_mask:  # a random padding mask that keeps key 0 for every query (no empty row)
            mask = r.uniform(size=(B, 1, queries, keys)) < 0.7
            mask[..., 0] = True
            inputs["mask"] = np.broadcast_to(mask, (B, H, queries, keys)).copy()
        return inputs
    return make


def _attention_params(r, dim=12):
    return {"x": gaussian(r, B, T, dim), "qkv_weight": gaussian(r, 3 * dim, dim, scale=dim**-0.5),
            "qkv_bias": gaussian(r, 3 * dim, scale=0.1), "out_weight": gaussian(r, dim, dim, scale=dim**-0.5),
            "out_bias": gaussian(r, dim, scale=0.1)}


def _norm_inputs(r, bias=True):
    inputs = {"x": gaussian(r, 4, 5, 16, scale=0.05) + 0.3, "weight": 1 + gaussian(r, 16, scale=0.1)}
    return {**inputs, "bias": gaussian(r, 16, scale=0.1)} if bias else inputs


ATTENTION = ("q", "k", "v")
FUNCTION_CASES = (
    FunctionCase("transformer/causal_mask", "causal_mask", lambda r: {}, static={"queries": 4, "keys": 9},
                 reference=ref_causal_mask),
    FunctionCase("transformer/attention_weights/causal", "attention_weights", _qkv(values=False), static={"causal": True},
                 grad_wrt=("q", "k"), reference=ref_attention_weights),
    FunctionCase("transformer/attention_weights/cache-and-padding-mask", "attention_weights",
                 _qkv(queries=3, keys=T + 3, with_mask=True, values=False), static={"causal": True}, grad_wrt=("q", "k"),
                 reference=ref_attention_weights),
    FunctionCase("transformer/scaled_dot_product_attention/causal", "scaled_dot_product_attention", _qkv(),
                 static={"causal": True}, grad_wrt=ATTENTION, reference=ref_scaled_dot_product_attention),
    FunctionCase("transformer/scaled_dot_product_attention/bidirectional", "scaled_dot_product_attention",
                 _qkv(keys=T + 2), grad_wrt=ATTENTION, reference=ref_scaled_dot_product_attention),
    FunctionCase("transformer/split_heads", "split_heads", lambda r: {"x": gaussian(r, B, T, 12)},
                 static={"heads": 3}, grad_wrt=("x",),
                 reference=lambda x, heads: x.reshape(B, T, heads, -1).transpose(0, 2, 1, 3)),
    FunctionCase("transformer/multi_head_attention/causal", "multi_head_attention", _attention_params,
                 static={"heads": 3}, grad_wrt=("x", "qkv_weight", "qkv_bias", "out_weight", "out_bias"),
                 reference=ref_multi_head_attention),
    FunctionCase("transformer/multi_head_attention/rotary-bidirectional", "multi_head_attention", _attention_params,
                 static={"heads": 2, "causal": False, "rotary": True}, grad_wrt=("x", "qkv_weight"),
                 reference=ref_multi_head_attention),
    FunctionCase("transformer/sinusoidal_embedding", "sinusoidal_embedding",
                 lambda r: {"positions": np.concatenate([np.arange(8.0), uniform(r, 4, high=500.0)])},
                 static={"dim": 16}, grad_wrt=("positions",), reference=ref_sinusoidal_embedding),
    FunctionCase("transformer/learned_embedding", "learned_embedding",
                 lambda r: {"table": gaussian(r, 10, D), "positions": np.array([0, 3, 3, 9, 1], dtype=np.int64)},
                 grad_wrt=("table",), reference=lambda table, positions: table[positions]),
    FunctionCase("transformer/rope", "rope",
                 lambda r: {"x": gaussian(r, B, H, T, D), "positions": np.sort(uniform(r, T, high=300.0))},
                 grad_wrt=("x", "positions"), reference=ref_rope),
    FunctionCase("transformer/layer_norm", "layer_norm", _norm_inputs, grad_wrt=("x", "weight", "bias"),
                 reference=ref_layer_norm),
    FunctionCase("transformer/rms_norm", "rms_norm", lambda r: _norm_inputs(r, bias=False), grad_wrt=("x", "weight"),
                 reference=ref_rms_norm),
    FunctionCase("transformer/gelu", "gelu", lambda r: {"x": gaussian(r, 50, scale=3.0)}, grad_wrt=("x",),
                 reference=ref_gelu),
    FunctionCase("transformer/mlp", "mlp",
                 lambda r: {"x": gaussian(r, B, T, D), "fc_weight": gaussian(r, 4 * D, D, scale=D**-0.5),
                            "fc_bias": gaussian(r, 4 * D, scale=0.1),
                            "proj_weight": gaussian(r, D, 4 * D, scale=(4 * D)**-0.5), "proj_bias": gaussian(r, D)},
                 grad_wrt=("x", "fc_weight", "fc_bias", "proj_weight", "proj_bias"), reference=ref_mlp),
)


# The shared trunk under the converter ----------------------------------------------------------------------------
def _tokens(dim=16, length=7, scale=1.0):
    return lambda r: {"x": gaussian(r, B, length, dim, dtype="float32", scale=scale)}


def _trunk_input(dim=16, length=7):
    return lambda r: {"h": gaussian(r, B, length, dim, dtype="float32")}


# one width, head count and length throughout, so the blocks inside the trunk reuse the compiled ops of the block
# cases (most of a module case's time is compiling JAX's ops for new shapes)
ATTN = {"dim": 16, "heads": 2}
BLOCK = {**ATTN, "mlp_ratio": 2}
TRUNK = {**BLOCK, "layers": 2, "max_len": 12}
MODULE_CASES = (
    ModuleCase("nets/transformer_attention", "MultiHeadAttention", ATTN, _tokens(), grad_wrt=("x",)),
    ModuleCase("nets/transformer_attention/rope-no-bias", "MultiHeadAttention", {**ATTN, "rope": True, "bias": False},
               _tokens(), grad_wrt=("x",)),
    ModuleCase("nets/transformer_attention/bidirectional", "MultiHeadAttention", {**ATTN, "causal": False},
               _tokens(), grad_wrt=("x",)),
    ModuleCase("nets/transformer_mlp", "MLP", {"dim": 16, "mlp_ratio": 2}, _tokens(), grad_wrt=("x",)),
    # small activations (std 0.05) make the norm epsilon visible: flax's 1e-6 instead of 1e-5 is caught
    ModuleCase("nets/transformer_block/pre-layer-norm", "Block", BLOCK, _tokens(scale=0.05), grad_wrt=("x",)),
    ModuleCase("nets/transformer_block/post-rms-norm-rope", "Block",
               {**BLOCK, "norm": "post", "norm_kind": "rms", "rope": True}, _tokens(scale=0.05), grad_wrt=("x",)),
    ModuleCase("nets/transformer_forward/learned", "Transformer", TRUNK, _trunk_input(), grad_wrt=("h",)),
    ModuleCase("nets/transformer_forward/sinusoidal-post-norm", "Transformer",
               {**TRUNK, "position": "sinusoidal", "norm": "post"}, _trunk_input(), grad_wrt=("h",)),
    ModuleCase("nets/transformer_forward/rope-rms-no-bias", "Transformer",
               {**TRUNK, "position": "rope", "norm_kind": "rms", "bias": False}, _trunk_input(), grad_wrt=("h",)),
)

CASES = FUNCTION_CASES + MODULE_CASES
