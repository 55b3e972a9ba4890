"""Neural style transfer by optimisation (Gatys et al. 2016, sec. 2): the pixels of an image are the parameters.

Gatys et al. take VGG-19's activations; no pretrained weights can be downloaded here, so the feature network is the
project's own fashion_mnist classifier (``practice_torch.evaluation.features``: three blocks of 3x3 conv,
BatchNorm, ReLU and 2x2 max-pool, trained on the data set and cached). Its ReLU outputs are the layers: ``relu1``
(16 channels, 28 x 28), ``relu2`` (32, 14 x 14), ``relu3`` (64, 7 x 7). The image x, started at the content image
(Gatys et al. start from noise; starting at the content image is their fig. 6's alternative and converges in fewer
steps), minimises

    L(x) = content_weight * L_content(F_l(x), F_l(p)) + style_weight * sum_{l in style layers} L_style(F_l(x), F_l(s))

(their eq. 7, with ``content_loss`` for eq. 1 and ``style_loss``, this project's Gram normalisation, for eq. 4-5),
by Adam or L-BFGS on the pixels, clipped to [0, 1] after each step.

    net = feature_network("fashion_mnist")
    result = style_transfer(net, content, style, TransferConfig())   # content, style: (1, 1, 28, 28) in [0, 1]
    result.image, result.history                                     # (1, 1, 28, 28); losses at each logged step

``python -m practice_torch.style_transfer --content-index 0 --style galaxies:0 --out DIR`` runs it on the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from practice_torch.style_transfer.functions import content_loss, style_loss

LAYERS = ("relu1", "relu2", "relu3")
OPTIMIZERS = ("adam", "lbfgs")


@dataclass(frozen=True)
class TransferConfig:
    """The objective (eq. 7) and its optimiser. Layers by name (``LAYERS``)."""

    content_layer: str = "relu3"
    style_layers: tuple[str, ...] = LAYERS
    content_weight: float = 1.0
    style_weight: float = 1e4  # the Grams are normalised by C H W, so the style loss is small: beta / alpha ~ 1e4
    steps: int = 300
    optimizer: Literal["adam", "lbfgs"] = "adam"
    lr: float = 0.02  # Adam's step on pixels in [0, 1]; L-BFGS takes lr = 1 with a strong Wolfe line search
    log_every: int = 25


@dataclass
class TransferResult:
    """The stylised image (1, C, H, W) in [0, 1] and the losses logged as it was optimised."""

    image: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)


def check_config(config: TransferConfig, net: nn.Module) -> None:
    """One-line ValueError for a layer the net does not have, a negative weight or a bad optimiser."""
    names = layer_names(net)
    for layer in (config.content_layer, *config.style_layers):
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}; the feature network has {', '.join(names)}")
    if config.content_weight < 0 or config.style_weight < 0 or config.steps < 1 or config.lr <= 0:
        raise ValueError("the weights must be >= 0, the steps >= 1 and the learning rate > 0")
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")


# 1. The feature maps ------------------------------------------------------------------------------------------
def layer_names(net: nn.Module) -> tuple[str, ...]:
    """relu1, relu2, ...: one per ReLU of the feature network's conv blocks."""
    return tuple(f"relu{i + 1}" for i in range(sum(isinstance(m, nn.ReLU) for m in net.blocks)))


def activations(net: nn.Module, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The feature network's ReLU outputs F_l(x) (B, C_l, H_l, W_l) of the named layers; x: (B, C, H, W) in [0, 1]
    (centred as the network was trained: x - 0.5). Stops after the deepest layer asked for."""
    wanted, found, relu = set(layers), {}, 0
    h = x - 0.5
    for module in net.blocks:
        h = module(h)
        if isinstance(module, nn.ReLU):
            relu += 1
            if f"relu{relu}" in wanted:
                found[f"relu{relu}"] = h
                if len(found) == len(wanted):
                    break
    return found


# 2. The objective (eq. 7) -------------------------------------------------------------------------------------
def transfer_losses(net: nn.Module, x, content_targets: dict, style_targets: dict, config: TransferConfig
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, content, style) of image x (1, C, H, W): L_content at ``content_layer`` against ``content_targets``
    (the content image's activations), the sum of L_style over ``style_layers`` against ``style_targets``."""
    feats = activations(net, x, (config.content_layer, *config.style_layers))
    content = content_loss(feats[config.content_layer], content_targets[config.content_layer])
    style = sum(style_loss(feats[layer], style_targets[layer]) for layer in config.style_layers)
    return config.content_weight * content + config.style_weight * style, content, style


def style_transfer(net: nn.Module, content: torch.Tensor, style: torch.Tensor,
                   config: TransferConfig = TransferConfig()) -> TransferResult:
    """Optimise the pixels of x, started at ``content`` (1, C, H, W), to minimise eq. 7 against ``content`` and
    ``style`` (1, C, H, W), both in [0, 1]; the net's weights stay fixed (eval mode, no gradient)."""
    check_config(config, net)
    net.eval().requires_grad_(False)
    layers = (config.content_layer, *config.style_layers)
    with torch.no_grad():
        content_targets, style_targets = activations(net, content, layers), activations(net, style, layers)
    x = content.detach().clone().requires_grad_(True)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam([x], lr=config.lr)
    else:
        optimizer = torch.optim.LBFGS([x], lr=config.lr, max_iter=1, line_search_fn="strong_wolfe")
    history = []

    def closure():
        optimizer.zero_grad()
        total, _, _ = transfer_losses(net, x, content_targets, style_targets, config)
        total.backward()
        return total

    for step in range(config.steps + 1):
        if step % config.log_every == 0 or step == config.steps:
            with torch.no_grad():
                total, c, s = transfer_losses(net, x, content_targets, style_targets, config)
            history.append({"step": step, "loss": float(total), "content_loss": float(c), "style_loss": float(s)})
        if step == config.steps:
            break
        optimizer.step(closure)
        with torch.no_grad():
            x.clamp_(0.0, 1.0)  # the pixels stay images
    return TransferResult(x.detach(), history)
