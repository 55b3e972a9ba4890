"""Domain-adversarial networks: the gradient reversal layer and the DANN saddle point.

Lectures: domain-adversarial networks (Ganin & Lempitsky 2015, "Unsupervised domain adaptation by
backpropagation"; Ganin et al. 2016, "Domain-adversarial training of neural networks", eq. 9-10 and 13-14,
sec. 3.2; Ben-David et al. 2010 for the H-divergence bound).

A feature extractor G_f, a label classifier G_y on labelled source data and a domain classifier G_d telling source
features from target features. DANN seeks the saddle point

    (theta_f, theta_y) = argmin E(theta_f, theta_y, theta_d),   theta_d = argmax E(theta_f, theta_y, theta_d),
    E = L_y(theta_f, theta_y) - lambda L_d(theta_f, theta_d)                                       (eq. 9-10)

The gradient reversal layer R_lambda makes it one minimisation: R(x) = x forward, dR/dx = -lambda I backward
(eq. 13-14). Minimising L_y + L_d(G_d(R(G_f(x)))) then moves G_d down L_d's gradient and G_f down
grad L_y - lambda grad L_d: the extractor learns features on which the best domain classifier fails. That best
classifier's cross-entropy is log 4 - 2 JS(source features || target features) (as for a GAN's discriminator), so
maximising it makes the two feature distributions indistinguishable. lambda follows 2 / (1 + exp(-gamma p)) - 1
over training progress p in [0, 1] (Ganin et al. 2016, sec. 5.2.2, gamma = 10).
Twin: ``practice_torch/domain_adversarial`` (same names, same arguments); cases: ``shared_specs/domain_adversarial.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory_jax.vae import downsample, downsampling_convs, flatten_image


# 1. The pure functions (twins in practice_torch.domain_adversarial) ---------------------------------------------
@partial(jax.custom_vjp, nondiff_argnums=(1,))
def gradient_reversal(x, lam):
    """R_lambda(x) = x forward; the cotangent comes back multiplied by -lambda (eq. 13-14). x: (...) -> (...)."""
    return x


def _reversal_fwd(x, lam):
    return x, None


def _reversal_bwd(lam, _, g):
    return (-lam * g,)


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


def domain_loss(source_logits, target_logits):
    """The domain classifier's binary cross-entropy, domain label 0 for source and 1 for target (eq. 10's L_d),
    averaged over both batches. source_logits: (B,), target_logits: (B',) -> ()."""
    return 0.5 * (jnp.mean(jax.nn.softplus(source_logits)) + jnp.mean(jax.nn.softplus(-target_logits)))


def label_loss(class_logits, labels):
    """Cross-entropy of the label classifier on source examples. class_logits: (B, K), labels: (B,) int -> ()."""
    log_probs = jax.nn.log_softmax(class_logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def lambda_schedule(progress, gamma=10.0):
    """lambda_p = 2 / (1 + exp(-gamma p)) - 1, rising from 0 to ~1 over training (Ganin et al. 2016, sec. 5.2.2).
    progress: (...) in [0, 1] -> (...)."""
    return 2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0


def dann_objective(x_source, labels, x_target, w_f, w_y, w_d, lam):
    """L_y + L_d with the reversal between linear features and the domain classifier: one loss whose gradient is
    the saddle point's update direction. x_source: (B, D), labels: (B,), x_target: (B', D), w_f: (F, D), w_y: (K, F),
    w_d: (1, F), lam: python float -> ()."""
    fs, ft = jnp.tanh(x_source @ w_f.T), jnp.tanh(x_target @ w_f.T)
    ds = (gradient_reversal(fs, lam) @ w_d.T)[:, 0]
    dt = (gradient_reversal(ft, lam) @ w_d.T)[:, 0]
    return label_loss(fs @ w_y.T, labels) + domain_loss(ds, dt)


# 2. DANN's network (twin: practice_torch/domain_adversarial/networks.py) -----------------------------------------
class DANN(nn.Module):
    """G_f, G_y and G_d with the reversal between G_f and G_d (fig. 1), the twin of ``practice_torch``'s ``DANN``: the
    conv encoders' trunk (``downsampling_convs``) as G_f, flattened in NCHW order, and ReLU MLPs as G_y and G_d, whose
    Dense layers sit at the torch ``Sequential``'s indices (``classifier_0``, ``classifier_2``, ...).
    x: (B, H, W, C) with H and W divisible by 2^len(channels)."""

    shape: Sequence[int]  # one example, (C, H, W) as the torch twin takes it
    num_classes: int
    channels: Sequence[int] = (32, 64)
    hidden: Sequence[int] = (128,)
    domain_hidden: Sequence[int] = (128,)
    groups: int = 8
    lam: float = 1.0

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.classifier = _mlp([*self.hidden, self.num_classes])
        self.discriminator = _mlp([*self.domain_hidden, 1])

    def features(self, x):
        """G_f(x): (B, H, W, C) -> (B, F), F in the torch twin's NCHW flattening order."""
        return flatten_image(downsample(self.convs, self.norms, x))

    def __call__(self, x):
        """G_y(G_f(x)): class logits (B, K)."""
        return _run(self.classifier, self.features(x))

    def heads(self, x):
        """(class logits (B, K), domain logits G_d(R_lambda(G_f(x))) (B,))."""
        f = self.features(x)
        return _run(self.classifier, f), _run(self.discriminator, gradient_reversal(f, self.lam))[:, 0]


def _mlp(widths):
    """Dense layers with ReLU between, at the indices of a torch ``Sequential`` (Linear, ReLU, Linear, ...)."""
    layers = []
    for i, width in enumerate(widths):
        layers += [nn.Dense(width)] + ([nn.relu] if i < len(widths) - 1 else [])
    return layers


def _run(layers, h):
    for layer in layers:
        h = layer(h)
    return h
