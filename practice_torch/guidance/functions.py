"""The noise-aware classifier's objective: twins of ``theory_jax/guidance.py`` (same names and arguments).

Label dropout and the two guidance combinations are the diffusion core's (``practice_torch.diffusion.conditioning``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["class_log_prob", "noisy_classifier_loss"]


# The classifier's objective (Dhariwal & Nichol 2021, sec. 4.1) ------------------------------------------------------
def class_log_prob(logits: Tensor, y: Tensor) -> Tensor:
    """log p(y | x) = log softmax(logits)_y: the term whose x-gradient classifier guidance follows.
    logits: (B, K); y: (B,) integer labels -> (B,)."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, y.long()[:, None])[:, 0]


def noisy_classifier_loss(logits: Tensor, y: Tensor) -> Tensor:
    """-mean log p_phi(y | x_t): cross-entropy of the classifier's logits (B, K) at noised inputs, labels y (B,) -> ()."""
    return -torch.mean(class_log_prob(logits, y))
