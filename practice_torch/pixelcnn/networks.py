"""The PixelCNN networks: the plain stack of masked convolutions and the gated PixelCNN with vertical and horizontal
stacks and optional class conditioning. Parameter names are those of ``theory_jax.pixelcnn.plain_pixelcnn`` and
``gated_pixelcnn`` (their ``params`` dicts are these ``state_dict``s).

Input: (B, 1, H, W) floats (the pixel categories scaled to [-1, 1] by the model, ``training.PixelCNNModel``);
output: (B, K, H, W) logits, K = ``out_channels`` (1 for a Bernoulli pixel, else the number of categories).
"""

from __future__ import annotations

import torch
from torch import nn

from practice_torch.pixelcnn.functions import causal_mask, gated_activation, masked_conv2d, stack_mask


class MaskedConv2d(nn.Conv2d):
    """A conv whose kernel is multiplied by a fixed 0/1 mask (a buffer) at every call: (W . M) * x + b."""

    def __init__(self, c_in: int, c_out: int, mask: torch.Tensor):
        super().__init__(c_in, c_out, tuple(mask.shape), padding=(mask.shape[0] // 2, mask.shape[1] // 2))
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_conv2d(x, self.weight, self.bias, self.mask)


class PlainPixelCNN(nn.Module):
    """Eq. 1's PixelCNN: a type-A masked conv (``first_kernel``, default k), ``layers - 1`` type-B k x k ones, ReLU
    between, a 1 x 1 head. It has the blind spot (pixels above-right are never seen; ``theory_jax.pixelcnn`` claim)."""

    def __init__(self, channels: int, layers: int, kernel: int, out_channels: int, num_classes: int = 0,
                 first_kernel: int | None = None):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv2d(1 if i == 0 else channels, channels,
                         causal_mask(first_kernel or kernel, "A") if i == 0 else causal_mask(kernel, "B"))
            for i in range(layers))
        self.condition = nn.Embedding(num_classes, channels) if num_classes else None
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 1, H, W), y: (B,) labels or None -> (B, K, H, W)."""
        h = x
        for conv in self.convs:
            h = conv(h)
            if self.condition is not None and y is not None:
                h = h + self.condition(y)[:, :, None, None]
            h = torch.relu(h)
        return self.out(h)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer (van den Oord et al. 2016b, fig. 2): v' = gate(V * v + c_v(y)),
    h' = h + R gate(H * h + Vh (V * v) + c_h(y)) (no residual on the first layer), gate = eq. 2."""

    def __init__(self, c_in: int, channels: int, kernel: int, mask_type: str, num_classes: int = 0):
        super().__init__()
        self.vertical = MaskedConv2d(c_in, 2 * channels, stack_mask(kernel, "vertical", mask_type))
        self.horizontal = MaskedConv2d(c_in, 2 * channels, stack_mask(kernel, "horizontal", mask_type))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.residual = nn.Conv2d(channels, channels, 1)
        self.condition = nn.Embedding(num_classes, 4 * channels) if num_classes else None
        self.first = mask_type == "A"

    def forward(self, v, h, y=None):
        """v, h: (B, C_in, H, W) -> (B, C, H, W) each."""
        v_pre = self.vertical(v)
        h_pre = self.horizontal(h) + self.v_to_h(v_pre)
        if self.condition is not None and y is not None:
            c_v, c_h = self.condition(y)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + c_v, h_pre + c_h
        h_new = self.residual(gated_activation(h_pre))
        return gated_activation(v_pre), (h_new if self.first else h + h_new)


class GatedPixelCNN(nn.Module):
    """The gated PixelCNN: ``layers`` gated layers (type A first, of kernel ``first_kernel``: cheap, one input
    channel) and a 1 x 1 head on ReLU(h); no blind spot."""

    def __init__(self, channels: int, layers: int, kernel: int, out_channels: int, num_classes: int = 0,
                 first_kernel: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(
            GatedLayer(1, channels, first_kernel or kernel, "A", num_classes) if i == 0
            else GatedLayer(channels, channels, kernel, "B", num_classes) for i in range(layers))
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 1, H, W), y: (B,) labels or None -> (B, K, H, W)."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.out(torch.relu(h))
