"""``python -m practice_torch.style_transfer``: Gatys et al.'s style transfer of one fashion_mnist image.

    python -m practice_torch.style_transfer --content-index 0 --style galaxies:3 --out runs/style_galaxy

The content is image ``--content-index`` of fashion_mnist's ``--split``; the style is ``DATASET:INDEX`` of an image
set of the registry (a GalSim galaxy, ``galaxies:N``, or another fashion image, ``fashion_mnist:N``) from the same
split, resized to the content's size. Writes ``OUT/style_transfer.png`` (content | style | result, 4x enlarged) and
``OUT/losses.json`` (the losses as optimised, the settings), and prints the losses: how far the style loss drops and
where the content loss ends, beside the content loss the style image itself has (the scale of "lost content").
Bad input (an index out of range, an unknown data set) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from practice_torch.data import DatasetMissing, get_dataset, get_info
from practice_torch.engine import RunError
from practice_torch.style_transfer.transfer import LAYERS, OPTIMIZERS, TransferConfig, activations, style_transfer

CONTENT = "fashion_mnist"  # the feature network's data set, and the content's
ENLARGE = 4


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TransferConfig()
    parser = argparse.ArgumentParser(prog="python -m practice_torch.style_transfer", description=__doc__.split("\n")[0])
    parser.add_argument("--content-index", type=int, default=0, help="which fashion_mnist image is the content")
    parser.add_argument("--style", default="galaxies:0", help="DATASET:INDEX of the style image (default galaxies:0)")
    parser.add_argument("--split", default="test", help="the split both images come from (default test)")
    parser.add_argument("--out", required=True, help="folder for style_transfer.png and losses.json")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--lr", type=float, default=None, help="default: 0.02 for adam, 1 for lbfgs")
    parser.add_argument("--style-weight", type=float, default=defaults.style_weight)
    parser.add_argument("--content-weight", type=float, default=defaults.content_weight)
    parser.add_argument("--content-layer", choices=LAYERS, default=defaults.content_layer)
    return parser.parse_args(argv)


def image_of(dataset: str, split: str, index: int, what: str) -> torch.Tensor:
    """Image ``index`` of a split of an image data set, (1, C, H, W); RunError (one line) for a bad name or index."""
    try:
        info = get_info(dataset)
    except KeyError as exc:
        raise RunError(f"{what}: {exc.args[0]}") from None
    if info.modality != "image" or len(info.shape) != 3:
        raise RunError(f"{what}: {dataset} is {info.modality} data, not images")
    try:
        data = get_dataset(dataset, split)
    except KeyError as exc:
        raise RunError(f"{what}: {exc.args[0]}") from None
    if not 0 <= index < len(data):
        raise RunError(f"{what}: index {index} is out of range; the {split} split of {dataset} has {len(data)} "
                       f"images (0..{len(data) - 1})")
    return data[index][0][None].float()


def style_image(spec: str, split: str, like: torch.Tensor) -> torch.Tensor:
    """The style image of ``DATASET:INDEX``, in [0, 1] (clipped) and resized (antialiased) to ``like``'s size."""
    name, sep, index = spec.rpartition(":")
    if not sep or not index.lstrip("-").isdigit():
        raise RunError(f"--style {spec!r}: expected DATASET:INDEX, e.g. galaxies:0 or fashion_mnist:17")
    style = image_of(name, split, int(index), f"--style {spec}")
    if style.shape[1] != like.shape[1]:
        raise RunError(f"--style {spec}: {style.shape[1]} channels, the content has {like.shape[1]}")
    if style.shape[2:] != like.shape[2:]:
        style = F.interpolate(style, size=like.shape[2:], mode="bilinear", antialias=True, align_corners=False)
    return style.clamp(0.0, 1.0)


def run(args: argparse.Namespace) -> dict:
    from torchvision.utils import save_image

    from practice_torch.evaluation.features import feature_network

    content = image_of(CONTENT, args.split, args.content_index, "--content-index")
    style = style_image(args.style, args.split, content)
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == "adam" else 1.0)
    config = TransferConfig(content_layer=args.content_layer, content_weight=args.content_weight,
                            style_weight=args.style_weight, steps=args.steps, optimizer=args.optimizer, lr=lr)
    net = feature_network(CONTENT)
    try:
        result = style_transfer(net, content, style, config)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    with torch.no_grad():  # the content loss the style image itself has: the scale against which content is kept
        targets = activations(net, content, (config.content_layer,))[config.content_layer]
        baseline = float(torch.mean((activations(net, style, (config.content_layer,))[config.content_layer]
                                     - targets) ** 2))
    first, last = result.history[0], result.history[-1]
    summary = {"content": f"{CONTENT}:{args.content_index}", "style": args.style, "split": args.split,
               "style_loss_start": first["style_loss"], "style_loss_end": last["style_loss"],
               "style_loss_drop": first["style_loss"] / max(last["style_loss"], 1e-30),
               "content_loss_end": last["content_loss"], "content_loss_of_style_image": baseline,
               "config": {k: getattr(config, k) for k in config.__dataclass_fields__}, "history": result.history}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = F.interpolate(torch.cat([content, style, result.image]), scale_factor=ENLARGE, mode="nearest")
    save_image(grid, str(out / "style_transfer.png"), nrow=3, padding=2, pad_value=1.0)
    (out / "losses.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (RunError, DatasetMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"style loss {summary['style_loss_start']:.4g} -> {summary['style_loss_end']:.4g} "
          f"({summary['style_loss_drop']:.1f}x lower); content loss 0 -> {summary['content_loss_end']:.4g} "
          f"(the style image's own: {summary['content_loss_of_style_image']:.4g})")
    print(f"wrote {Path(args.out) / 'style_transfer.png'} and {Path(args.out) / 'losses.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
