"""Spec cases for ``text_to_image``: cross-attention with a padding mask, classifier-free guidance, CLIP's symmetric
InfoNCE and the one-directional contrastive loss, in float64.

Each function runs in ``theory_jax.text_to_image`` and ``practice_torch.text_to_image`` on the same NumPy inputs,
gradients included. Third witnesses: an explicit kernel-weighted average over the real tokens, and cross-entropies
written with ``scipy.special.log_softmax``. The U-Net's cross-attention block is the module case
``nets/unet_cross_attention/padded`` (``shared_specs/nets.py``); here are the residual block that carries it (self-
then cross-attention after the convolutions, as every attention level of a U-Net with ``context_dim`` has it) and
the causal text encoder, each with padded captions, at full precision under the weight converter.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, ModuleCase, gaussian

B, T, S, D, N = 3, 4, 5, 6, 7


def _attention_inputs(rng):
    """Captions of 5, 3 and 1 real tokens out of 5; the padded tokens' keys and values as random as the others."""
    return {"q": gaussian(rng, B, T, D), "k": gaussian(rng, B, S, D), "v": gaussian(rng, B, S, 2),
            "mask": np.arange(S)[None, :] < np.array([5, 3, 1])[:, None]}


def _ref_attention(q, k, v, mask):
    kernel = np.exp(np.einsum("btd,bsd->bts", q, k) / np.sqrt(q.shape[-1])) * mask[:, None, :]
    return np.einsum("bts,bse->bte", kernel, v) / kernel.sum(-1, keepdims=True)


def _ref_info_nce(image_emb, text_emb, log_scale):
    a = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    b = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    logits = np.exp(log_scale) * a @ b.T
    return -(np.trace(special.log_softmax(logits, 1)) + np.trace(special.log_softmax(logits, 0))) / (2 * len(a))


def _conditioned_block_inputs(rng):
    """x (B, 16, 4, 4), the time embedding (B, 32), token states (B, 5, 12) of captions with 5, 3 and 1 real tokens
    (the padded states as random as the real ones)."""
    return {"x": gaussian(rng, B, 16, 4, 4, dtype="float32"), "emb": gaussian(rng, B, 32, dtype="float32"),
            "context": gaussian(rng, B, 5, 12, dtype="float32"),
            "mask": np.arange(5)[None, :] < np.array([5, 3, 1])[:, None]}


def _token_ids(rng):
    """Three captions of 8, 4 and 1 tokens (the last: the empty caption, the start token alone) padded to 8."""
    ids = rng.integers(2, 12, size=(B, 8)).astype(np.int64)
    ids[:, 0] = 1
    ids[np.arange(8)[None, :] >= np.array([8, 4, 1])[:, None]] = 0
    return {"ids": ids}


CASES = (
    ModuleCase("nets/unet_res_block/cross-attention", "ResBlock",
               {"in_channels": 16, "out_channels": 16, "emb_dim": 32, "groups": 4, "attention": True, "heads": 2,
                "context_dim": 12}, _conditioned_block_inputs, grad_wrt=("x", "emb", "context"),
               image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("text_to_image/text_encoder", "TextEncoder", {"vocab": 12, "dim": 16, "heads": 2, "layers": 1,
                                                             "max_len": 8}, _token_ids),
    FunctionCase("text_to_image/cross_attention", "cross_attention", _attention_inputs, grad_wrt=("q", "k", "v"),
                 reference=_ref_attention),
    FunctionCase("text_to_image/guided_eps", "guided_eps",
                 lambda r: {"eps_cond": gaussian(r, B, 2, 4, 4), "eps_uncond": gaussian(r, B, 2, 4, 4),
                            "w": np.float64(2.5)}, grad_wrt=("eps_cond", "eps_uncond", "w"),
                 reference=lambda eps_cond, eps_uncond, w: eps_cond + w * (eps_cond - eps_uncond)),
    FunctionCase("text_to_image/info_nce", "info_nce",
                 lambda r: {"image_emb": gaussian(r, N, D), "text_emb": gaussian(r, N, D), "log_scale": np.float64(2.0)},
                 grad_wrt=("image_emb", "text_emb", "log_scale"), reference=_ref_info_nce),
    FunctionCase("text_to_image/contrastive_loss", "contrastive_loss", lambda r: {"scores": gaussian(r, N, N, scale=3.0)},
                 grad_wrt=("scores",), reference=lambda scores: -np.mean(np.diag(special.log_softmax(scores, 1)))),
)
