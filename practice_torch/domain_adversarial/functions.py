"""DANN's gradient reversal layer and losses (Ganin et al. 2016, eq. 9-10, 13-14 and sec. 5.2.2).

Twins of the functions in ``theory_jax/domain_adversarial.py``, same names and arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Reversal(torch.autograd.Function):
    """Identity forward; the incoming gradient times -lambda backward (eq. 13-14)."""

    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def gradient_reversal(x, lam):
    """R_lambda(x) = x forward; the gradient comes back multiplied by -lambda. x: (...), lam: float -> (...)."""
    return _Reversal.apply(x, float(lam))


class GradientReversal(nn.Module):
    """The reversal as a layer between feature extractor and domain classifier; ``lam`` may change every step
    (``lambda_schedule``)."""

    def __init__(self, lam: float = 1.0):
        super().__init__()
        self.lam = lam

    def forward(self, x):
        return gradient_reversal(x, self.lam)


def domain_loss(source_logits, target_logits):
    """The domain classifier's binary cross-entropy, label 0 for source and 1 for target, averaged over both
    batches. source_logits: (B,), target_logits: (B',) -> ()."""
    zero = torch.zeros((), dtype=source_logits.dtype, device=source_logits.device)
    return 0.5 * (torch.mean(torch.logaddexp(source_logits, zero)) + torch.mean(torch.logaddexp(-target_logits, zero)))


def label_loss(class_logits, labels):
    """Cross-entropy of the label classifier on source examples. class_logits: (B, K), labels: (B,) int -> ()."""
    return F.cross_entropy(class_logits, labels.long())


def lambda_schedule(progress, gamma=10.0):
    """lambda_p = 2 / (1 + exp(-gamma p)) - 1 (sec. 5.2.2). progress: (...) in [0, 1] -> (...)."""
    return 2.0 / (1.0 + torch.exp(-gamma * progress)) - 1.0


def dann_objective(x_source, labels, x_target, w_f, w_y, w_d, lam):
    """L_y + L_d with the reversal between tanh features and the domain classifier. x_source: (B, D), labels: (B,),
    x_target: (B', D), w_f: (F, D), w_y: (K, F), w_d: (1, F), lam: float -> ()."""
    fs, ft = torch.tanh(x_source @ w_f.T), torch.tanh(x_target @ w_f.T)
    ds = (gradient_reversal(fs, lam) @ w_d.T)[:, 0]
    dt = (gradient_reversal(ft, lam) @ w_d.T)[:, 0]
    return label_loss(fs @ w_y.T, labels) + domain_loss(ds, dt)
