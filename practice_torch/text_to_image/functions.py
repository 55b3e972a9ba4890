"""Cross-attention, classifier-free guidance and CLIP's contrastive loss (Rombach et al. 2022, eq. 3; Ho & Salimans
2022, eq. 6; Radford et al. 2021). Twins of ``theory_jax/text_to_image.py``, same names and arguments."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from practice_torch.nets.attention import attention_weights


def cross_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d)) v with -inf logits at the padded tokens (mask False): their weights are exactly 0;
    every caption keeps at least one token. q: (B, T, d), k: (B, S, d), v: (B, S, e), mask: (B, S) bool -> (B, T, e)."""
    return attention_weights(q, k, mask[:, None, :]) @ v


def guided_eps(eps_cond, eps_uncond, w):
    """(1 + w) eps(x, c) - w eps(x, empty caption); w = 0 is the conditional model. (B, ...), (B, ...), () -> (B, ...)."""
    return (1 + w) * eps_cond - w * eps_uncond


def info_nce(image_emb, text_emb, log_scale):
    """CLIP's symmetric loss: logits s_ij = exp(log_scale) cos(image_i, text_j), positives on the diagonal; the mean
    of the image->text and text->image cross-entropies. (N, D), (N, D), () -> ()."""
    logits = torch.exp(log_scale) * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def contrastive_loss(scores):
    """One-directional InfoNCE of a critic's scores f(x_i, y_j): -mean_i log softmax_j(f(x_i, y_j))_i. (N, N) -> ()."""
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))
