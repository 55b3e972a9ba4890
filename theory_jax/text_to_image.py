"""Text guidance: cross-attention from an image to the tokens of its caption, classifier-free guidance with text as
an implicit classifier, and CLIP's contrastive loss as a bound on mutual information.

Lectures: text guidance and the concepts of stable diffusion (Rombach et al. 2022, "High-resolution image
synthesis with latent diffusion models", eq. 3; Ho & Salimans 2022, "Classifier-free diffusion guidance", eq. 6;
Radford et al. 2021, "Learning transferable visual models from natural language supervision", fig. 3; van den Oord
et al. 2018, "Representation learning with contrastive predictive coding", eq. 4 and appendix; Poole et al. 2019,
"On variational bounds of mutual information", eq. 12).

A position of the image's feature map asks (query q), the caption's tokens answer (keys k_j, values v_j):

    out(q) = sum_j K(q, k_j) v_j / sum_j K(q, k_j),   K(q, k) = exp(q . k / sqrt(d)),  padded tokens excluded

a kernel-weighted (Nadaraya-Watson) average of the token values. Guidance on a caption c samples
p_w(x | c) ~ p(x | c) p(c | x)^w, whose score by Bayes' rule is

    grad log p(x | c) + w grad log p(c | x) = (1 + w) grad log p(x | c) - w grad log p(x)

and with eps = -sqrt(1 - abar) score that is (1 + w) eps(x, c) - w eps(x, empty caption). The text encoder can be
trained first by CLIP's symmetric InfoNCE over a batch of N pairs, whose expectation is bounded by
I(image; caption) >= log N - L. Twin: ``practice_torch/text_to_image`` (same names, same arguments); cases:
``shared_specs/text_to_image.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.nets.attention import attention_weights
from theory_jax.nets.transformer import Transformer


# 1. The pure functions (twins in practice_torch.text_to_image) ---------------------------------------------------
def cross_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d)) v with -inf logits at the padded tokens (mask False), so their weights are exactly 0;
    every caption keeps at least one token. q: (B, T, d), k: (B, S, d), v: (B, S, e), mask: (B, S) bool -> (B, T, e)."""
    return attention_weights(q, k, mask[:, None, :]) @ v


def guided_eps(eps_cond, eps_uncond, w):
    """Classifier-free guidance, (1 + w) eps(x, c) - w eps(x, empty caption) (Ho & Salimans eq. 6); w = 0 is the
    conditional model. eps_cond, eps_uncond: (B, ...), w: () -> (B, ...)."""
    return (1 + w) * eps_cond - w * eps_uncond


def info_nce(image_emb, text_emb, log_scale):
    """CLIP's symmetric contrastive loss: the pairs (i, i) of a batch are the positives; logits
    s_ij = exp(log_scale) cos(image_i, text_j); the mean of the image->text and text->image cross-entropies.
    image_emb, text_emb: (N, D), log_scale: () -> ()."""
    a = image_emb / jnp.linalg.norm(image_emb, axis=-1, keepdims=True)
    b = text_emb / jnp.linalg.norm(text_emb, axis=-1, keepdims=True)
    logits = jnp.exp(log_scale) * a @ b.T
    rows = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))
    columns = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=0)))
    return (rows + columns) / 2


def contrastive_loss(scores):
    """The one-directional InfoNCE of a critic's scores f(x_i, y_j) (van den Oord et al. eq. 4):
    -mean_i log softmax_j(f(x_i, y_j))_i. scores: (N, N) -> ()."""
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(scores, axis=1)))


class TextEncoder(nn.Module):
    """CLIP's text tower in miniature: token ids (B, S) -> token states (B, S, dim) by a token ``embedding`` and the
    causal trunk (``theory_jax.nets.Transformer``, learned positions, pre-norm); the state of token i reads tokens
    0..i only, so padding after a caption never reaches its real tokens. Twin of
    ``practice_torch.text_to_image.TextEncoder`` (same fields and attribute names)."""

    vocab: int
    dim: int = 64
    heads: int = 4
    layers: int = 2
    max_len: int = 48

    def setup(self):
        self.embedding = nn.Embed(self.vocab, self.dim)
        self.trunk = Transformer(dim=self.dim, heads=self.heads, layers=self.layers, max_len=self.max_len, causal=True)

    def __call__(self, ids):
        return self.trunk(self.embedding(ids))
