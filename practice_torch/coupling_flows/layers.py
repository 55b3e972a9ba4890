"""The flow's layers as modules, and the multi-scale architecture of RealNVP/Glow (Dinh et al. 2017, section 3.6;
Kingma & Dhariwal 2018, figure 2), built on the pure functions of ``functions.py``.

Every layer maps x -> (y, log |det dy/dx|) with ``forward`` and back with ``inverse``; the model's log-likelihood
is log N(z; 0, I) + the sum of the layers' log-dets (eq. 12).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from practice_torch.coupling_flows.functions import (
    actnorm_forward,
    actnorm_inverse,
    channel_mask,
    checkerboard_mask,
    coupling_transform,
    coupling_transform_inverse,
    invconv_forward,
    invconv_inverse,
    invconv_lu_weight,
    squeeze,
    unsqueeze,
)


class ActNorm(nn.Module):
    """Glow's actnorm: y = x exp(log_scale) + bias per channel, initialised from the first training batch so that
    y has zero mean and unit variance per channel (data-dependent initialisation; the flag is a buffer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _initialize(self, x):
        dims = [d for d in range(x.dim()) if d != 1]
        mean, std = x.mean(dim=dims), x.std(dim=dims).clamp_min(1e-6)
        self.log_scale.copy_(-torch.log(std))
        self.bias.copy_(-mean / std)
        self.initialized.fill_(1)

    def forward(self, x):
        if self.training and not self.initialized:
            self._initialize(x)
        return actnorm_forward(x, self.log_scale, self.bias)

    def inverse(self, y):
        return actnorm_inverse(y, self.log_scale, self.bias)


class InvConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution, LU-parameterised: W = P (L + I) (U + diag(sign exp(log_diag))), started
    at a random rotation (P, sign fixed buffers)."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        p, low, up = torch.linalg.lu(q)
        diag = torch.diagonal(up)
        self.register_buffer("permutation", p)
        self.register_buffer("sign", torch.sign(diag))
        self.lower = nn.Parameter(torch.tril(low, -1))
        self.upper = nn.Parameter(torch.triu(up, 1))
        self.log_diag = nn.Parameter(torch.log(diag.abs()))

    def weight(self):
        return invconv_lu_weight(self.permutation, self.lower, self.upper, self.log_diag, self.sign)[0]

    def forward(self, x):
        return invconv_forward(x, self.weight())

    def inverse(self, y):
        return invconv_inverse(y, self.weight())


class ResBlock(nn.Module):
    """h + mix(relu(conv(relu(h)))): a 3x3 then a 1x1 convolution of ``hidden`` channels, added to the input."""

    def __init__(self, hidden: int):
        super().__init__()
        self.conv = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.mix = nn.Conv2d(hidden, hidden, 1)

    def forward(self, h):
        return h + self.mix(torch.relu(self.conv(torch.relu(h))))


class ConvNet(nn.Module):
    """The conditioner NN(b * x) of an image coupling: Glow's net (3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv) with
    ``blocks`` residual blocks before the last convolution. Input: b * x and the mask b as an extra channel; the
    last convolution starts at zero, so each coupling starts as the identity. x: (B, C, H, W), mask broadcastable
    to x -> (B, out, H, W). Twin: ``theory_jax.coupling_flows.ConvNet`` (same names, NHWC)."""

    def __init__(self, channels: int, out: int, hidden: int, blocks: int = 0):
        super().__init__()
        self.first = nn.Conv2d(channels + 1, hidden, 3, padding=1)
        self.middle = nn.Conv2d(hidden, hidden, 1)
        self.blocks = nn.ModuleList(ResBlock(hidden) for _ in range(blocks))
        self.last = nn.Conv2d(hidden, out, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, x, mask):
        mark = mask[:, :1].expand(x.shape[0], 1, *x.shape[2:])  # the checkerboard itself (a constant for channel masks)
        h = self.middle(torch.relu(self.first(torch.cat([x * mask, mark], dim=1))))
        for block in self.blocks:
            h = block(h)
        return self.last(torch.relu(h))


class MLPNet(nn.Module):
    """The conditioner of a vector coupling: an MLP of b * x (B, D) -> (B, out), last layer zero."""

    def __init__(self, dim: int, out: int, hidden: int, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(dim if i == 0 else hidden, hidden), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.last = nn.Linear(hidden, out)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, x, mask):
        return self.last(self.body(x * mask))


class Coupling(nn.Module):
    """One coupling layer: y = b x + (1 - b)(x exp(s) + t) (affine) or (1 - b)(x + t) (additive), (s, t) from
    the conditioner of b * x (``functions.coupling_transform``). ``mask``: 'checkerboard' or 'channel'."""

    def __init__(self, shape: Sequence[int], mask: str, parity: int, kind: str, hidden: int, blocks: int = 0):
        super().__init__()
        if kind not in ("affine", "additive"):
            raise ValueError(f"model.coupling must be 'affine' or 'additive', got {kind!r}")
        self.kind, channels = kind, shape[0]
        out = channels * (2 if kind == "affine" else 1)
        like = torch.zeros(1, *shape)
        self.register_buffer("mask", checkerboard_mask(like, parity) if mask == "checkerboard"
                             else channel_mask(like, parity), persistent=False)
        self.net = (ConvNet(channels, out, hidden, blocks) if len(shape) == 3 else MLPNet(channels, out, hidden, blocks))

    def forward(self, x):
        return coupling_transform(x, self.mask, self.net(x, self.mask), self.kind)

    def inverse(self, y):
        return coupling_transform_inverse(y, self.mask, self.net(y, self.mask), self.kind)


class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): a permutation of the coordinates, log-det 0."""

    def forward(self, x):
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, y):
        return unsqueeze(y), y.new_zeros(y.shape[0])


def _chain_forward(layers, x):
    total = x.new_zeros(x.shape[0])
    for layer in layers:
        x, log_det = layer(x)
        total = total + log_det
    return x, total


def _chain_inverse(layers, y):
    total = y.new_zeros(y.shape[0])
    for layer in reversed(layers):
        y, log_det = layer.inverse(y)
        total = total + log_det
    return y, total


class MultiScaleFlow(nn.Module):
    """RealNVP's multi-scale flow with Glow's steps, for images (C, H, W):

        per scale:  checkerboard couplings (alternating parity, each after an actnorm)
                    -> squeeze -> steps of [actnorm, 1x1 conv, channel coupling (alternating halves)]
                    -> factor out half the channels as latents of this scale (RealNVP eq. 13-14)
        last scale: checkerboard couplings only; everything that is left is latent.

    ``forward(x) -> ([z per scale], log_det (B,))``; ``inverse([z]) -> x``. log p(x) = sum_s log N(z_s) + log_det."""

    def __init__(self, shape: Sequence[int], scales: int = 3, checker_steps: int = 3, channel_steps: int = 3,
                 hidden: int = 64, blocks: int = 0, kind: str = "affine", glow: bool = True):
        super().__init__()
        c, h, w = shape
        if scales < 1 or checker_steps < 1:
            raise ValueError(f"model.scales and model.checker_steps must be positive, got {scales}, {checker_steps}")
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"{scales} scales halve {h}x{w} images {scales - 1} times: it must divide evenly")
        self.shape, self.stages, self.latent_shapes = tuple(shape), nn.ModuleList(), []
        gen = torch.Generator().manual_seed(0)
        for scale in range(scales):
            layers: list[nn.Module] = []
            for i in range(checker_steps + (1 if scale == scales - 1 else 0)):
                if glow:
                    layers.append(ActNorm(c))
                layers.append(Coupling((c, h, w), "checkerboard", i % 2, kind, hidden, blocks))
            if scale < scales - 1:
                layers.append(Squeeze())
                c, h, w = 4 * c, h // 2, w // 2
                for i in range(channel_steps):
                    if glow:
                        layers += [ActNorm(c), InvConv1x1(c, gen)]
                    layers.append(Coupling((c, h, w), "channel", i % 2, kind, hidden, blocks))
                self.latent_shapes.append((c // 2, h, w))
                c = c - c // 2
            else:
                self.latent_shapes.append((c, h, w))
            self.stages.append(nn.ModuleList(layers))

    def forward(self, x):
        zs, total = [], x.new_zeros(x.shape[0])
        for stage, shape in zip(self.stages, self.latent_shapes):
            x, log_det = _chain_forward(stage, x)
            total = total + log_det
            if x.shape[1] > shape[0]:  # factor out: the first channels are latents of this scale
                zs.append(x[:, :shape[0]])
                x = x[:, shape[0]:]
        zs.append(x)
        return zs, total

    def inverse(self, zs):
        x = zs[-1]
        for stage, z in zip(reversed(self.stages), reversed(zs[:-1] + [None])):
            if z is not None:
                x = torch.cat([z, x], dim=1)
            x, _ = _chain_inverse(stage, x)
        return x


class VectorFlow(nn.Module):
    """RealNVP for vectors (D,): ``layers`` steps of [actnorm, 1x1 conv (a D x D LU mixing), affine coupling with
    alternating halves and an MLP conditioner]. forward(x) -> ([z], log_det); inverse([z]) -> x."""

    def __init__(self, dim: int, layers: int = 8, hidden: int = 128, depth: int = 2, kind: str = "affine",
                 glow: bool = True):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling flow splits the coordinates in two: it needs D >= 2, got {dim}")
        gen = torch.Generator().manual_seed(0)
        steps: list[nn.Module] = []
        for i in range(layers):
            if glow:
                steps += [ActNorm(dim), InvConv1x1(dim, gen)]
            steps.append(Coupling((dim,), "channel", i % 2, kind, hidden, depth))
        self.shape, self.layers, self.latent_shapes = (dim,), nn.ModuleList(steps), [(dim,)]

    def forward(self, x):
        z, log_det = _chain_forward(self.layers, x)
        return [z], log_det

    def inverse(self, zs):
        return _chain_inverse(self.layers, zs[0])[0]

