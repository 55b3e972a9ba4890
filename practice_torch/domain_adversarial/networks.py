"""DANN's three players (Ganin & Lempitsky 2015; Ganin et al. 2016, fig. 1 and Algorithm 1).

``DANN`` holds a conv feature extractor G_f (the conv encoders' trunk, ``practice_torch.vae.networks``), a label
classifier G_y and a domain classifier G_d behind the gradient reversal layer R_lambda. One loss,
``dann_loss`` = L_y + L_d (eq. 9-10 through the reversal, eq. 13-14), trains all three with one optimizer step:
G_d descends L_d, G_f descends L_y and ascends lambda L_d. lambda is an argument of the step: the adapter computes
it from the step number (``lambda_schedule`` over p = step / ramp_steps, sec. 5.2.2), so the network holds weights
only. lambda = 0 is the source-only baseline on the same network: the domain classifier still learns to tell the
domains apart (its accuracy is then the separability of source-only features) but sends nothing back into G_f.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from practice_torch.domain_adversarial.functions import domain_loss, gradient_reversal, label_loss
from practice_torch.vae.networks import downsample, downsampling_convs


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of widths ``sizes`` (in, hidden..., out) with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class DANN(nn.Module):
    """G_f, G_y and G_d with the reversal R_lambda between G_f and G_d (fig. 1), for images (C, H, W) with H and W
    divisible by 2^len(channels). The flax twin ``theory_jax.domain_adversarial.DANN`` has the same names.

    shape: one example (C, H, W); num_classes: K; channels: G_f's strided conv widths; hidden: G_y's hidden widths;
    domain_hidden: G_d's; lam: the reversal's lambda where ``domain_logits`` and ``heads`` are given none (the flax
    twin's field; training hands each step its scheduled lambda).
    """

    def __init__(self, shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
                 hidden: Sequence[int] = (128,), domain_hidden: Sequence[int] = (128,), groups: int = 8,
                 lam: float = 1.0):
        super().__init__()
        self.lam = lam
        scale = 2 ** len(channels)
        if len(shape) != 3 or shape[1] % scale or shape[2] % scale:
            raise ValueError(f"DANN's extractor halves the image {len(channels)} times: it needs (C, H, W) images "
                             f"with H and W divisible by {scale}, got {tuple(shape)} (use fewer model.channels)")
        self.shape, self.num_classes = tuple(shape), num_classes
        self.convs, self.norms = downsampling_convs(shape[0], channels, groups)  # G_f
        features = channels[-1] * (shape[1] // scale) * (shape[2] // scale)
        self.classifier = mlp([features, *hidden, num_classes])  # G_y
        self.discriminator = mlp([features, *domain_hidden, 1])  # G_d

    def features(self, x):
        """G_f(x): x (B, C, H, W) -> (B, F), the flattened conv features (NCHW order) both classifiers read."""
        return downsample(self.convs, self.norms, x).flatten(1)

    def forward(self, x):
        """G_y(G_f(x)): class logits, x (B, C, H, W) -> (B, K)."""
        return self.classifier(self.features(x))

    def domain_logits(self, features, lam: float | None = None):
        """G_d(R_lambda(f)): the logit that a feature came from the target domain, f (B, F) -> (B,)."""
        return self.discriminator(gradient_reversal(features, self.lam if lam is None else lam))[:, 0]

    def heads(self, x, lam: float | None = None):
        """(G_y(G_f(x)), G_d(R_lambda(G_f(x)))): class logits (B, K) and domain logits (B,) of x (B, C, H, W); the
        gradient that reaches G_f from the second is reversed and scaled by lambda."""
        f = self.features(x)
        return self.classifier(f), self.domain_logits(f, lam)


def dann_loss(net: DANN, x_source, y_source, x_target, lam: float, y_target=None):
    """L_y(G_y(G_f(x_s)), y_s) + L_d(G_d(R(G_f(x_s))), G_d(R(G_f(x_t)))) (eq. 9-10 with the reversal R_lambda, eq.
    13-14). x_source: (B, C, H, W), y_source: (B,), x_target: (B', C, H, W), lam: the reversal's lambda ->
    (loss, terms): label loss, domain loss, the domain classifier's accuracy on the batch, lambda.
    y_target (B',): the train-on-target bound, L_y on the target's own labels in place of the source's (with lam = 0
    the domain classifier still learns, and nothing reaches the features from it)."""
    f_source, f_target = net.features(x_source), net.features(x_target)
    if y_target is None:
        l_y = label_loss(net.classifier(f_source), y_source)
    else:
        l_y = label_loss(net.classifier(f_target), y_target)
    d_source, d_target = net.domain_logits(f_source, lam), net.domain_logits(f_target, lam)
    l_d = domain_loss(d_source, d_target)
    domain_accuracy = 0.5 * ((d_source < 0).float().mean() + (d_target > 0).float().mean())
    terms = {"label_loss": l_y.detach(), "domain_loss": l_d.detach(), "domain_accuracy": domain_accuracy.detach(),
             "lambda": torch.full((), float(lam), device=l_y.device)}  # made there: a host scalar costs a sync
    return l_y + l_d, terms
