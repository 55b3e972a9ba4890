"""Spec cases for ``guidance``: the guidance combinations and the noise-aware classifier's objective, in float64.

Each function runs in ``theory_jax.guidance`` and ``practice_torch.guidance`` on the same NumPy inputs, with
gradients w.r.t. every real input (the scales and noise levels included). Third witnesses: the formulas of Ho &
Salimans 2022 (eq. 6) and Dhariwal & Nichol 2021 (Algorithm 2) written out in NumPy with explicit broadcasting, and
SciPy's log_softmax for the classifier's log-probability and cross-entropy.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from shared_specs.case import FunctionCase, gaussian, uniform

B, K = 4, 10
IMAGE = (1, 6, 6)


def _column(c, like):
    """() stays (); (B,) becomes (B, 1, ..., 1) against ``like``."""
    c = np.asarray(c)
    return c.reshape(c.shape + (1,) * (like.ndim - 1)) if c.ndim == 1 else c


def ref_cfg_eps(eps_cond, eps_uncond, w):
    """(1 + w) eps_c - w eps_u, written as eps_c + w (eps_c - eps_u) (the 'extrapolation' form)."""
    return eps_cond + _column(w, eps_cond) * (eps_cond - eps_uncond)


def ref_classifier_guided_eps(eps, grad_log_p_y, alpha_bar_t, w):
    """-sqrt(1 - abar) (score + w grad log p(y|x)) with score = -eps / sqrt(1 - abar): the tilted score, rescaled."""
    sigma = np.sqrt(1 - _column(alpha_bar_t, eps))
    return -sigma * (-eps / sigma + _column(w, eps) * grad_log_p_y)


def ref_implicit_classifier_grad(eps_cond, eps_uncond, alpha_bar_t):
    """score(x|y) - score(x), each score = -eps / sqrt(1 - abar)."""
    sigma = np.sqrt(1 - _column(alpha_bar_t, eps_cond))
    return -eps_cond / sigma + eps_uncond / sigma


def ref_class_log_prob(logits, y):
    return log_softmax(logits, axis=-1)[np.arange(len(y)), y]


def ref_noisy_classifier_loss(logits, y):
    return -np.mean(ref_class_log_prob(logits, y))


def _pair(shape):
    return lambda r: {"eps_cond": gaussian(r, *shape), "eps_uncond": gaussian(r, *shape)}


def _labels(r, n=B):
    return r.integers(0, K, size=n).astype(np.int64)


CASES = (
    FunctionCase("guidance/null_labels", "null_labels",
                 lambda r: {"y": r.integers(0, K, size=8).astype(np.int64), "drop": r.uniform(size=8) < 0.5},
                 static={"num_classes": K}, reference=lambda y, drop, num_classes: np.where(drop, num_classes, y)),
    FunctionCase("guidance/cfg_eps/images-scalar-w", "cfg_eps",
                 lambda r: {**_pair((B, *IMAGE))(r), "w": np.asarray(uniform(r, 1, high=4)[0])},
                 grad_wrt=("eps_cond", "eps_uncond", "w"), reference=ref_cfg_eps),
    FunctionCase("guidance/cfg_eps/images-per-example-w", "cfg_eps",
                 lambda r: {**_pair((B, *IMAGE))(r), "w": uniform(r, B, low=-1, high=4)},
                 grad_wrt=("eps_cond", "eps_uncond", "w"), reference=ref_cfg_eps),
    FunctionCase("guidance/cfg_eps/points-float32", "cfg_eps",
                 lambda r: {"eps_cond": gaussian(r, 16, 2, dtype="float32"),
                            "eps_uncond": gaussian(r, 16, 2, dtype="float32"),
                            "w": uniform(r, 16, high=8, dtype="float32")},
                 dtype="float32", grad_wrt=("eps_cond", "eps_uncond", "w"), reference=ref_cfg_eps),
    FunctionCase("guidance/classifier_guided_eps/images-per-example-alpha", "classifier_guided_eps",
                 lambda r: {"eps": gaussian(r, B, *IMAGE), "grad_log_p_y": gaussian(r, B, *IMAGE, scale=3.0),
                            "alpha_bar_t": uniform(r, B, low=1e-4, high=0.9999),
                            "w": np.asarray(uniform(r, 1, high=10)[0])},
                 grad_wrt=("eps", "grad_log_p_y", "alpha_bar_t", "w"), reference=ref_classifier_guided_eps),
    FunctionCase("guidance/classifier_guided_eps/points-scalar-alpha-per-example-w", "classifier_guided_eps",
                 lambda r: {"eps": gaussian(r, 16, 2), "grad_log_p_y": gaussian(r, 16, 2),
                            "alpha_bar_t": np.asarray(0.37), "w": uniform(r, 16, high=5)},
                 grad_wrt=("eps", "grad_log_p_y", "alpha_bar_t", "w"), reference=ref_classifier_guided_eps),
    FunctionCase("guidance/implicit_classifier_grad", "implicit_classifier_grad",
                 lambda r: {**_pair((B, *IMAGE))(r), "alpha_bar_t": uniform(r, B, low=1e-3, high=0.999)},
                 grad_wrt=("eps_cond", "eps_uncond", "alpha_bar_t"), reference=ref_implicit_classifier_grad),
    FunctionCase("guidance/class_log_prob", "class_log_prob",
                 lambda r: {"logits": gaussian(r, B, K, scale=5.0), "y": _labels(r)},
                 grad_wrt=("logits",), reference=ref_class_log_prob),
    FunctionCase("guidance/noisy_classifier_loss", "noisy_classifier_loss",
                 lambda r: {"logits": gaussian(r, 32, K, scale=3.0), "y": _labels(r, 32)},
                 grad_wrt=("logits",), reference=ref_noisy_classifier_loss),
    FunctionCase("guidance/noisy_classifier_loss/float32-extreme-logits", "noisy_classifier_loss",
                 lambda r: {"logits": gaussian(r, 32, K, scale=80.0, dtype="float32"), "y": _labels(r, 32)},
                 dtype="float32", grad_wrt=("logits",), reference=ref_noisy_classifier_loss),
)
