"""The autoencoders' networks in PyTorch: MLP and convolutional encoders to a k-dimensional code, the VAE's
decoders back (``practice_torch/vae/networks.py``), and ``Autoencoder`` with its plain or denoising loss. Class and
attribute names match the flax twin (``theory_jax/autoencoder.py``) so ``shared_specs.interop`` maps the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.autoencoder.functions import corrupt, reconstruction_bce, reconstruction_mse
from practice_torch.vae.networks import ConvDecoder, MLPDecoder, check_divisible, downsample, downsampling_convs


# 4. The networks ------------------------------------------------------------------------------------
class MLPEncoder(nn.Module):
    """x (B, C, H, W) or (B, D) -> code (B, k): SiLU MLP, then a linear head."""

    def __init__(self, image_shape: Sequence[int], code_dim: int, hidden: Sequence[int] = (256,)):
        super().__init__()
        widths = [math.prod(image_shape), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.code = nn.Linear(widths[-1], code_dim)

    def forward(self, x):
        h = torch.flatten(x, 1)
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.code(h)


class ConvEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, padding 1), GroupNorm, SiLU, then a linear head.
    x: (B, C, H, W), H and W divisible by 2^len(channels) -> code (B, k)."""

    def __init__(self, image_shape: Sequence[int], code_dim: int, channels: Sequence[int] = (32, 64), groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        check_divisible(image_shape, len(channels))
        self.convs, self.norms = downsampling_convs(c, channels, groups)
        scale = 2 ** len(channels)
        self.code = nn.Linear(channels[-1] * (hgt // scale) * (wid // scale), code_dim)

    def forward(self, x):
        return self.code(torch.flatten(downsample(self.convs, self.norms, x), 1))


OBJECTIVES = ("mse", "bce")


def check_objective(objective: str, bounded: bool) -> None:
    """ValueError, one line, unless ``objective`` is 'mse' or 'bce', and 'bce' only for [0, 1] outputs."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be 'mse' or 'bce', got {objective!r}")
    if objective == "bce" and not bounded:
        raise ValueError("objective 'bce' needs [0, 1] outputs (bounded=True)")


def bounded_outputs(data, objective: str, model: str) -> bool:
    """Whether a reconstruction of ``data``'s examples goes through a sigmoid: True for 8-bit images in [0, 1],
    False for real values (the galaxies, log-mels). A one-line ValueError, naming ``model`` ('the autoencoder',
    'the VQ-VAE'), unless the examples are (C, H, W), or for ``objective`` 'bce' on real values. data: a data set's
    description (``practice_torch.data.DatasetInfo``)."""
    if len(data.shape) != 3:
        hint = " (use --set data.view=mel)" if data.modality == "audio" else ""
        raise ValueError(f"{model} models (C, H, W) images or spectrograms; {data.name} examples have shape "
                         f"{data.shape}{hint}")
    if objective == "bce" and not data.unit_images:
        raise ValueError(f"model.objective=bce needs [0, 1] images; {data.name} needs model.objective=mse")
    return data.unit_images


class Autoencoder(nn.Module):
    """Encoder to a k-dimensional code, the VAE's decoder back. ``bounded``: outputs through a sigmoid ([0, 1]
    images). The network holds the architecture only; the training settings are the loss's arguments:
    ``objective`` 'mse' (on the output) or 'bce' (on the logits, needs ``bounded``), and ``noise_std`` > 0 for a
    denoising autoencoder, trained to reconstruct x from x + noise_std eps."""

    def __init__(self, image_shape: Sequence[int], code_dim: int = 16, architecture: str = "conv",
                 hidden: Sequence[int] = (256,), channels: Sequence[int] = (32, 64), groups: int = 8,
                 bounded: bool = True):
        super().__init__()
        self.image_shape, self.code_dim, self.bounded = tuple(image_shape), code_dim, bounded
        if architecture == "mlp":
            self.encoder = MLPEncoder(image_shape, code_dim, hidden)
            self.decoder = MLPDecoder(image_shape, code_dim, hidden)
        elif architecture == "conv":
            self.encoder = ConvEncoder(image_shape, code_dim, channels, groups)
            self.decoder = ConvDecoder(image_shape, code_dim, channels, groups=groups)
        else:
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        return self.decoder(code)

    def output(self, raw):
        return torch.sigmoid(raw) if self.bounded else raw

    def reconstruct(self, x):
        """The reconstruction of x (no corruption). (B, C, H, W) -> (B, C, H, W)."""
        return self.output(self.decode(self.encode(x)))

    def per_example_loss(self, x, eps, objective: str = "mse", noise_std: float = 0.0):
        """Reconstruction loss of x from x~ = corrupt(x, eps, noise_std) (x itself when noise_std = 0): ``objective``
        'mse' of the output or 'bce' of the logits (``bounded`` only). -> (B,)."""
        check_objective(objective, self.bounded)
        raw = self.decode(self.encode(corrupt(x, eps, noise_std)))
        if objective == "bce":
            return reconstruction_bce(x, raw)
        return reconstruction_mse(x, self.output(raw))

    def loss(self, x, eps, objective: str = "mse", noise_std: float = 0.0):
        return self.per_example_loss(x, eps, objective, noise_std).mean()

    def forward(self, x):
        return self.reconstruct(x)
