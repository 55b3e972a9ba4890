"""Restoration with a trained unconditional DDPM, no retraining: inpainting (RePaint, Lugmayr et al. 2022) and
super-resolution by low-pass consistency (ILVR, Choi et al. 2021), one rule for both.

Each task knows a linear projection P of the truth y: the pixels under a mask m (``P x = m * x``), or y's low
frequencies (``P x = up(down(x))``: average pooling by a factor s, then nearest upsampling; ``low_pass``). Both are
orthogonal projections (P^2 = P, P symmetric). Every reverse step keeps the model's draw outside P's range and
replaces its part inside by a draw of the truth's forward process at the step's noise level (RePaint eq. 8 for the
mask, ``replace_known``; ILVR eq. 5 for the low-pass filter, ``replace_low_pass``):

    x_{t-1} = (I - P) x_{t-1}^model + P y_{t-1},      y_{t-1} ~ q(y_{t-1} | y) = N(sqrt(a_{t-1}) y, (1 - a_{t-1}) I)

The known part then has exactly its forward marginal at every step and equals y at the end. The unknown part is
drawn by the model from an x_t whose known part was drawn without looking at it, so where the two are correlated the
result is not the conditional p(x_unknown | y_known): ``python -m theory_jax ddpm`` measures that on a 2-D Gaussian.
RePaint's resampling harmonises them: after a step, go back up with q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I) (``renoise``) and take the step again, ``resample`` times in all, ``jump`` levels at a time
(``repaint_levels``). JAX twins: ``theory_jax/diffusion.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from practice_torch.broadcasting import per_example
from practice_torch.diffusion.model import Diffusion, eps_function, sampling_schedule
from practice_torch.diffusion.schedule import Schedule, q_sample
from practice_torch.diffusion.steps import clipped_eps, ddpm_step
from practice_torch.progress import progress as bar

__all__ = ["MASKS", "TASKS", "Replacement", "check_restoration", "inpainting_mask", "low_pass", "renoise",
           "repaint_levels", "replace_known", "replace_low_pass", "replacement", "restore", "restore_images"]

Replacement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_model, y_t) -> x
TASKS = ("inpaint", "super_resolution")
MASKS = ("center", "left", "right", "top", "bottom", "pixels")  # the inpainting masks (``inpainting_mask``)


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """P x = up(down(x)): x (B, C, H, W) averaged over factor x factor blocks, each block filled with its mean
    (ILVR's phi_N with a box filter). H and W must be multiples of ``factor``."""
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def replace_known(x_model: torch.Tensor, y_t: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(1 - m) x_model + m y_t: the model's draw where the pixel is unknown, the truth's noised draw where the mask m
    (0/1, broadcastable to x) knows it (RePaint eq. 8). x_model, y_t: (B, ...)."""
    return (1 - known) * x_model + known * y_t


def replace_low_pass(x_model: torch.Tensor, y_t: torch.Tensor, factor: int) -> torch.Tensor:
    """x_model - P x_model + P y_t with P = ``low_pass``: the model's high frequencies, the truth's noised low ones
    (ILVR eq. 5). x_model, y_t: (B, C, H, W)."""
    return x_model - low_pass(x_model, factor) + low_pass(y_t, factor)


def renoise(x_prev: torch.Tensor, alpha_bar_t, alpha_bar_prev, z: torch.Tensor) -> torch.Tensor:
    """One forward step back up, x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) with
    beta_t = 1 - a_t / a_prev (a respaced schedule's step): RePaint's resampling jump. x_prev, z: (B, ...);
    alpha_bar_t, alpha_bar_prev: (B,) or ()."""
    keep = per_example(alpha_bar_t, x_prev) / per_example(alpha_bar_prev, x_prev)
    return torch.sqrt(keep) * x_prev + torch.sqrt(1 - keep) * z


def repaint_levels(n: int, jump: int = 1, resample: int = 1) -> list[int]:
    """The noise levels a restoration visits over a schedule of n kept steps: from n - 1 (x_T's) down to -1 (x_0),
    going back up ``jump`` levels ``resample - 1`` times at every ``jump``-th level, then down again (RePaint's jump
    schedule). Level i holds x at alpha_bar_i; a step down from i is the reverse step of kept step i; a step up to i
    is ``renoise`` with kept step i's beta. resample = 1: the plain chain n - 1, ..., 0, -1."""
    if n < 1 or jump < 1 or resample < 1:
        raise ValueError(f"repaint_levels needs n, jump and resample >= 1, got {n}, {jump}, {resample}")
    left = {level: resample - 1 for level in range(0, n - jump, jump)}
    level, levels = n, []
    while level >= 1:
        level -= 1
        levels.append(level)
        if left.get(level, 0) > 0:
            left[level] -= 1
            for _ in range(jump):
                level += 1
                levels.append(level)
    return levels + [-1]


@torch.no_grad()
def restore(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, y: torch.Tensor,
            replace: Replacement, generator: torch.Generator, *, jump: int = 1, resample: int = 1,
            clip_x0: float | None = None, progress: bool = True) -> torch.Tensor:
    """x_0 (B, ...) consistent with what ``replace`` knows of the truth y (B, ...): the DDPM ancestral chain over
    ``schedule``'s kept steps with ``replace(x, y_{t-1})`` after each reverse step (``replace_known`` with a mask,
    ``replace_low_pass`` with a factor) and RePaint's resampling (``repaint_levels``). eps_fn(x_t, t): t (B,) long
    original timestep indices. All noise comes from ``generator`` on the CPU: x_T, then per move the step's noise
    and the truth's noise (down) or the jump's (up)."""
    b, device = y.shape[0], y.device

    def normal() -> torch.Tensor:
        return torch.randn(y.shape, generator=generator, dtype=y.dtype).to(device)

    x = normal()
    levels = repaint_levels(len(schedule), jump, resample)
    for here, there in bar(list(zip(levels[:-1], levels[1:])), desc="restoring", leave=False, disable=not progress):
        if there < here:  # the reverse step of kept step `here`, then the known part replaced
            a_t = schedule.alpha_bars[here].expand(b)
            a_prev = schedule.alpha_bars_prev[here].expand(b)
            eps = eps_fn(x, schedule.timesteps[here].expand(b).to(device))
            if clip_x0 is not None:
                eps = clipped_eps(x, eps, a_t, clip_x0)
            z = normal() if here > 0 else torch.zeros_like(x)
            x = ddpm_step(x, eps, a_t, a_prev, z)
            y_prev = q_sample(y, a_prev, normal()) if here > 0 else y  # a_prev = 1 at the last step: y itself
            x = replace(x, y_prev)
        else:  # back up to level `there` with kept step `there`'s beta
            x = renoise(x, schedule.alpha_bars[there].expand(b), schedule.alpha_bars_prev[there].expand(b), normal())
    return x


# The tasks on images: a mask or a factor, checked; held-out images restored by a trained model -----------------
def check_restoration(task: str, shape: tuple[int, ...], mask: str, sr_factor: int, resample: int, jump: int) -> None:
    """A one-line ValueError for a restoration setting that cannot work on examples of ``shape`` (C, H, W)."""
    if task not in TASKS:
        raise ValueError(f"model.task must be 'sample', 'inpaint' or 'super_resolution', got {task!r}")
    if len(shape) != 3:
        raise ValueError(f"model.task={task} restores images; these examples have shape {shape}")
    if task == "inpaint" and mask not in MASKS:
        raise ValueError(f"model.mask must be one of {', '.join(MASKS)}, got {mask!r}")
    if task == "super_resolution" and (sr_factor < 2 or shape[1] % sr_factor or shape[2] % sr_factor):
        raise ValueError(f"model.sr_factor must be at least 2 and divide the image's {shape[1]} x {shape[2]}, "
                         f"got {sr_factor}")
    if resample < 1 or jump < 1:
        raise ValueError(f"model.resample and model.jump must be at least 1, got {resample} and {jump}")


def inpainting_mask(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """(1, C, H, W) of 1 where a pixel is known: 'center' hides the middle half (a square of side H/2), 'left' /
    'right' / 'top' / 'bottom' hide that half, 'pixels' hides 3 pixels in 4 at random (drawn from ``generator``)."""
    _, h, w = shape
    known = torch.ones((1, *shape))
    if name == "center":
        known[..., h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 0
    elif name == "left":
        known[..., :, :w // 2] = 0
    elif name == "right":
        known[..., :, w // 2:] = 0
    elif name == "top":
        known[..., :h // 2, :] = 0
    elif name == "bottom":
        known[..., h // 2:, :] = 0
    elif name == "pixels":
        known = (torch.rand((1, 1, h, w), generator=generator) < 0.25).float().expand(1, *shape).clone()
    else:
        raise ValueError(f"model.mask must be one of {', '.join(MASKS)}, got {name!r}")
    return known


def replacement(task: str, shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                mask: str = "center", sr_factor: int = 4) -> tuple[Replacement, Callable[[torch.Tensor], torch.Tensor]]:
    """(replace(x, y_t), what is known shown as an image) of a task: the mask's pixels (the unknown ones shown as
    0, mid-grey in model space), or the sr_factor block means."""
    if task == "inpaint":
        known = inpainting_mask(mask, shape, generator).to(device)
        return (lambda x, y_t: replace_known(x, y_t, known)), (lambda y: known * y)
    return (lambda x, y_t: replace_low_pass(x, y_t, sr_factor)), (lambda y: low_pass(y, sr_factor))


@torch.no_grad()
def restore_images(net: Diffusion, x: torch.Tensor, generator: torch.Generator, *, task: str, mask: str = "center",
                   sr_factor: int = 4, steps: int = 100, resample: int = 1, jump: int = 1, clip_x0: bool = True,
                   y: torch.Tensor | None = None, guidance_scale: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(restored, known) in model space for images x (n, C, H, W) in data space: ``task`` by ``restore`` over
    ``steps`` respaced steps, class-conditioned on y (with guidance) when the net is conditional."""
    device = next(net.parameters()).device
    truth = net.to_model(x.to(device))
    replace, shown = replacement(task, tuple(net.shape), generator, device, mask, sr_factor)
    labels = y.long().to(device) if net.num_classes and y is not None else None
    restored = restore(eps_function(net, labels, guidance_scale), sampling_schedule(net, steps), truth, replace,
                       generator, jump=jump, resample=resample, clip_x0=1.0 if clip_x0 else None)
    return restored, shown(truth)
