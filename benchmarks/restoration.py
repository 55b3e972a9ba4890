"""``python -m benchmarks restoration --run RUN``: inpainting and super-resolution with a trained DDPM, no retraining,
against the plain baselines, on held-out test images.

For each task (``--restore-tasks``, default the centre square and 4x super-resolution), one row per method on the
same ``--restore-images`` test images: the baselines (inpainting: each image's known-pixel mean filled in;
super-resolution: nearest and bicubic upsampling of the block means), then the DDPM's restoration by replacement
alone (RePaint with r = 1; ILVR for super-resolution) and with RePaint's resampling (r = ``--restore-resample``),
over ``--restore-steps`` respaced steps. Columns: PSNR in dB (per image, then averaged; over the unknown pixels for
inpainting, the whole image for super-resolution), SSIM over the whole image (torchmetrics, Gaussian window 11,
sigma 1.5), both with the data's peak-to-peak range R (1 for 8-bit images in [0, 1]; the test split's max - min
otherwise, as for the galaxies), FID of the completed images against 1000 other test images (the project's feature
network, where the data set has one: the galaxies have no class labels to train it on; a "test images" row gives the
floor at the same number of images), and seconds per image (on the GPU when there is one). A figure of the known part,
both restorations and the truth of the first 8 images per task (four rows each, in that order, drawn 3x, each row
labelled with what it shows and each task named above its rows) goes to ``restoration.png`` beside the JSON.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

TASKS = "inpaint:center,super_resolution:4"


def parse_tasks(text: str) -> list[tuple[str, str]]:
    """'inpaint:center,super_resolution:4' -> [(task, setting), ...] (SystemExit, one line, on a bad entry)."""
    tasks = []
    for entry in filter(None, text.split(",")):
        task, _, setting = entry.partition(":")
        if task not in ("inpaint", "super_resolution") or not setting:
            raise SystemExit(f"error: --restore-tasks entries are inpaint:MASK or super_resolution:FACTOR, got {entry!r}")
        tasks.append((task, setting))
    return tasks


def psnr(restored: torch.Tensor, truth: torch.Tensor, region: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean over images of 10 log10(R^2 / MSE), R the data's peak-to-peak range, the MSE over ``region`` (1 where it
    counts)."""
    region = region.expand_as(truth)
    mse = ((restored - truth) ** 2 * region).flatten(1).sum(1) / region.flatten(1).sum(1)
    return float((10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))).mean())


def ssim(restored: torch.Tensor, truth: torch.Tensor, data_range: float = 1.0) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(restored.double(), truth.double(), data_range=data_range))


def value_range(images: torch.Tensor, unit: bool) -> tuple[float, float]:
    """(low, high) of the data: (0, 1) for 8-bit images in [0, 1], else the min and max of ``images`` (N, C, H, W)."""
    return (0.0, 1.0) if unit else (float(images.min()), float(images.max()))


def baselines(task: str, setting: str, truth: torch.Tensor, known: torch.Tensor, low: float = 0.0,
              high: float = 1.0) -> dict[str, torch.Tensor]:
    """The plain restorations in [low, high]: inpainting's mean fill; super-resolution's nearest and bicubic
    upsampling."""
    if task == "inpaint":
        mean = (truth * known).flatten(1).sum(1) / known.expand_as(truth).flatten(1).sum(1)
        return {"mean fill": known * truth + (1 - known) * mean[:, None, None, None]}
    factor = int(setting)
    small = F.avg_pool2d(truth, factor)
    return {"nearest": F.interpolate(small, scale_factor=factor, mode="nearest"),
            "bicubic": F.interpolate(small, scale_factor=factor, mode="bicubic", align_corners=False).clamp(low, high)}


def figure_rows(task: str, setting: str, known: torch.Tensor, restorations: dict[str, torch.Tensor],
                truth: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """A task's rows of the figure, (label, images (k, C, H, W)) in order: its input (inpainting's known pixels,
    super-resolution's block means), each restoration by its method's name, the truth."""
    given = "input: known pixels" if task == "inpaint" else f"input: {setting}x block means"
    return [(given, known), *restorations.items(), ("truth", truth)]


def restoration_figure(groups: list[tuple[str, list[tuple[str, torch.Tensor]]]], low: float, high: float):
    """The matplotlib figure of ``groups`` (a task's name and its ``figure_rows``): one row of images per entry, its
    label on the left, the task's name above its first row; [low, high] drawn black to white, each pixel 3 x 3
    (``practice_torch.plots.labelled_rows``)."""
    from practice_torch.plots import labelled_rows

    rows = [(label, (images - low) / (high - low)) for _, group in groups for label, images in group]
    titles = {sum(len(group) for _, group in groups[:i]): name for i, (name, _) in enumerate(groups)}
    return labelled_rows(rows, titles)


def restoration(args) -> list[dict]:
    """Rows (task, method, n, PSNR, SSIM, FID, seconds per image) for one trained ddpm run on images."""
    import matplotlib.pyplot as plt

    from benchmarks.ddim import find_run
    from practice_torch.data import get_info, stacked
    from practice_torch.diffusion.restoration import check_restoration, inpainting_mask, restore_images
    from practice_torch.engine.runs import load_split
    from practice_torch.evaluation import fid_from_features
    from practice_torch.evaluation.features import embed, feature_network
    from practice_torch.models import open_run

    run = find_run(getattr(args, "run", None))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module, cfg, net = open_run(run, device)
    if cfg.model_name != "ddpm" or len(getattr(net, "shape", ())) != 3 or cfg.model.mel:
        raise SystemExit(f"error: {run} is not a ddpm run on images")
    n, steps = args.restore_images, args.restore_steps
    test = load_split(cfg.data, "test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    truth = torch.stack([test[int(i)][0] for i in order[:n]])
    labels = torch.tensor([int(test[int(i)][1]) for i in order[:n]]) if net.num_classes else None
    info = get_info(cfg.data.name)
    low, high = value_range(stacked(test)[0], info.unit_images)
    scored = info.num_classes > 0  # a feature network is a classifier of the data set's labels
    features = feature_network(cfg.data.name, getattr(args, "data_dir", None)) if scored else None
    real_feats = embed(features, torch.stack([test[int(i)][0] for i in order[n:n + 1000]]))[0] if scored else None
    rows, pictures = [], []

    def add(task: str, setting: str, method: str, images: torch.Tensor, region: torch.Tensor | None, seconds: float):
        """One row; ``region`` None: other images than the truth (the FID floor), so no PSNR or SSIM."""
        rows.append({"task": f"{task} {setting}".strip(), "method": method, "n": n,
                     "psnr": psnr(images, truth, region, high - low) if region is not None else math.nan,
                     "ssim": ssim(images, truth, high - low) if region is not None else math.nan,
                     "fid": fid_from_features(real_feats, embed(features, images)[0]) if scored else math.nan,
                     "data_range": high - low, "s_per_image": seconds / n})
        print(f"  {task} {setting:>7} {method:>24}: PSNR {rows[-1]['psnr']:.2f} dB, SSIM {rows[-1]['ssim']:.3f}, "
              f"FID {rows[-1]['fid']:.1f}, {rows[-1]['s_per_image']:.2f} s/image", flush=True)
        if hasattr(args, "save"):
            args.save(rows)

    if scored:
        add("test images", "", "other test images (the FID floor)", torch.stack([test[int(i)][0] for i in order[-n:]]),
            None, 0.0)
    for task, setting in parse_tasks(args.restore_tasks):
        where = {"mask": setting} if task == "inpaint" else {"sr_factor": int(setting)}
        check_restoration(task, tuple(net.shape), where.get("mask", "center"), where.get("sr_factor", 4),
                          args.restore_resample, 1)
        known = (inpainting_mask(setting, tuple(net.shape), torch.Generator().manual_seed(0))
                 if task == "inpaint" else torch.ones(1, *net.shape))
        region = 1 - known if task == "inpaint" else torch.ones(1, *net.shape)
        for method, images in baselines(task, setting, truth, known, low, high).items():
            add(task, setting, method, images, region, 0.0)
        shown, restored_rows = None, {}
        for r in sorted({1, args.restore_resample}):
            start = time.perf_counter()
            restored, shown = restore_images(net, truth, torch.Generator().manual_seed(r), task=task, steps=steps,
                                             resample=r, clip_x0=cfg.model.clip_x0, y=labels,
                                             guidance_scale=cfg.model.guidance_scale, **where)
            images = net.from_model(restored).cpu()
            name = ("RePaint" if task == "inpaint" else "ILVR") + (f", resampled r = {r}" if r > 1 else ", r = 1")
            add(task, setting, name, images, region, time.perf_counter() - start)
            restored_rows[name] = images[:8]
        pictures.append((f"{task} {setting}", figure_rows(task, setting, net.from_model(shown[:8]).cpu(), restored_rows,
                                                          truth[:8])))
    fig = restoration_figure(pictures, low, high)
    fig.savefig(Path(args.results) / "restoration.png", dpi=100)
    plt.close(fig)
    return rows
