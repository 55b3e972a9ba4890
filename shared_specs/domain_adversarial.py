"""Spec cases for ``domain_adversarial``: the gradient reversal layer, the domain and label losses, the lambda
schedule and the whole DANN objective, in float64.

Each function runs in ``theory_jax.domain_adversarial`` and ``practice_torch.domain_adversarial`` on the same NumPy
inputs. The reversal's case compares gradients (the layer is nothing else); the objective's gradients in the
extractor's weights carry the reversed domain gradient. Third witnesses: ``scipy.special.log_expit`` and
``log_softmax``, and for the reversal and the objective the gradient written out by hand. A float32 module case
compares the trained network, ``DANN`` (conv extractor, label classifier, domain classifier behind the reversal),
with its flax twin under the weight converter: both heads (class and domain logits) and the gradient of every
weight, the extractor's carrying the reversed domain gradient.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, D, FEAT, K, LAM = 6, 3, 5, 4, 0.6
NETWORK = {"shape": (1, 8, 8), "num_classes": K, "channels": (4, 8), "hidden": (16,), "domain_hidden": (8, 8),
           "groups": 2, "lam": LAM}  # a tiny DANN: 8x8 images, 8 x 2 x 2 = 32 features, two hidden layers in G_d


def _dann_inputs(rng):
    return {"x_source": gaussian(rng, B, D), "labels": rng.integers(0, K, size=B).astype(np.int64),
            "x_target": gaussian(rng, B + 2, D) + 0.8, "w_f": gaussian(rng, FEAT, D, scale=0.7),
            "w_y": gaussian(rng, K, FEAT), "w_d": gaussian(rng, 1, FEAT)}


def ref_label_loss(class_logits, labels):
    return -np.mean(special.log_softmax(class_logits, axis=-1)[np.arange(len(labels)), labels])


def ref_dann_objective(x_source, labels, x_target, w_f, w_y, w_d, lam):
    fs, ft = np.tanh(x_source @ w_f.T), np.tanh(x_target @ w_f.T)
    domain = 0.5 * (-np.mean(special.log_expit(-(fs @ w_d[0]))) - np.mean(special.log_expit(ft @ w_d[0])))
    return ref_label_loss(fs @ w_y.T, labels) + domain


CASES = (
    FunctionCase("domain_adversarial/gradient_reversal", "gradient_reversal", lambda r: {"x": gaussian(r, B, FEAT)},
                 grad_wrt=("x",), static={"lam": LAM}, reference=lambda x, lam: x),
    FunctionCase("domain_adversarial/domain_loss", "domain_loss",
                 lambda r: {"source_logits": gaussian(r, B, scale=10.0), "target_logits": gaussian(r, B + 2, scale=10.0)},
                 grad_wrt=("source_logits", "target_logits"),
                 reference=lambda source_logits, target_logits: 0.5 * (-np.mean(special.log_expit(-source_logits))
                                                                       - np.mean(special.log_expit(target_logits)))),
    FunctionCase("domain_adversarial/label_loss", "label_loss",
                 lambda r: {"class_logits": gaussian(r, B, K, scale=3.0),
                            "labels": r.integers(0, K, size=B).astype(np.int64)},
                 grad_wrt=("class_logits",), reference=ref_label_loss),
    FunctionCase("domain_adversarial/lambda_schedule", "lambda_schedule",
                 lambda r: {"progress": r.uniform(size=7)}, grad_wrt=("progress",),
                 reference=lambda progress: 2 * special.expit(10 * progress) - 1),
    FunctionCase("domain_adversarial/dann_objective", "dann_objective", _dann_inputs,
                 grad_wrt=("x_source", "x_target", "w_f", "w_y", "w_d"), static={"lam": LAM},
                 reference=ref_dann_objective),
    ModuleCase("domain_adversarial/dann", "DANN", NETWORK,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, method="heads", grad_wrt=("x",),
               image_inputs=("x",)),
)
