"""Guided sampling from a trained DDPM: classifier-free guidance, or classifier guidance by a noise-aware classifier.

Both are an ``eps_fn`` for ``practice_torch.diffusion.sample_loop`` (any of its samplers, on a respaced schedule):

* ``"cfg"`` (Ho & Salimans 2022): a class-conditional DDPM trained with label dropout gives eps(x_t, y) and
  eps(x_t, null) in one batch; ``cfg_eps`` combines them with scale w.
* ``"classifier"`` (Dhariwal & Nichol 2021, Algorithm 2): grad_x log p_phi(y | x_t, t) of the classifier run by
  autograd, ``classifier_guided_eps`` with scale s. ``conditional_base`` picks the guided model: eps(x_t, y) of a
  conditional run, or eps(x_t) (the null label of a conditional run, or an unconditional run). On the
  unconditional model, s = 1 + w targets the same tilt p_t(x) p_t(y | x_t)^{1+w} as CFG with w (the derivation).

t in ``eps_fn`` is the ORIGINAL timestep index, so alpha_bar_t is read from the full schedule of the DDPM net.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from practice_torch.diffusion import cfg_eps, classifier_guided_eps, sample_loop
from practice_torch.diffusion.model import sampling_schedule
from practice_torch.guidance.classifier import classifier_grad

Mode = Literal["cfg", "classifier"]


def check_compatible(ddpm: nn.Module, guide: nn.Module) -> None:
    """The classifier must have been trained on the DDPM's x_t: same schedule, same example shape and classes."""
    if len(guide.schedule) != len(ddpm.schedule) or not torch.allclose(guide.schedule.alpha_bars,
                                                                       ddpm.schedule.alpha_bars):
        raise ValueError(f"the classifier was trained on another noise schedule (T = {len(guide.schedule)}) than the "
                         f"DDPM (T = {len(ddpm.schedule)}): train it with the DDPM run's model.schedule and model.T")
    if tuple(guide.shape) != tuple(ddpm.shape) or (ddpm.num_classes and guide.num_classes != ddpm.num_classes):
        raise ValueError(f"the classifier takes {tuple(guide.shape)} examples of {guide.num_classes} classes; the DDPM "
                         f"makes {tuple(ddpm.shape)} examples of {ddpm.num_classes or 'unlabelled'} classes")


def guided_eps_fn(ddpm: nn.Module, y: Tensor, scale: float, mode: Mode = "cfg", guide: nn.Module | None = None,
                  conditional_base: bool = False):
    """eps_fn(x_t, t) -> guided eps (B, ...) for the labels y (B,) with guidance ``scale``.

    ddpm: a ``practice_torch.diffusion.model.Diffusion`` (``num_classes`` > 0 for "cfg"); guide: a ``Guide`` (the classifier
    run's net) for "classifier"."""
    if mode == "cfg":
        if not ddpm.num_classes:
            raise ValueError("classifier-free guidance needs a class-conditional DDPM (model.conditional=true)")
        null = torch.full_like(y, ddpm.num_classes)

        def cfg(x: Tensor, t: Tensor) -> Tensor:
            eps_cond, eps_uncond = ddpm(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
            return cfg_eps(eps_cond, eps_uncond, scale)

        return cfg
    if mode != "classifier":
        raise ValueError(f"guidance mode must be 'cfg' or 'classifier', got {mode!r}")
    if guide is None:
        raise ValueError("classifier guidance needs a classifier (a `train guidance` run)")
    check_compatible(ddpm, guide)
    if conditional_base and not ddpm.num_classes:
        raise ValueError("conditional_base=True needs a class-conditional DDPM")
    base_y = y if conditional_base else (torch.full_like(y, ddpm.num_classes) if ddpm.num_classes else None)
    alpha_bars = ddpm.schedule.alpha_bars

    def guided(x: Tensor, t: Tensor) -> Tensor:
        eps = ddpm(x, t, base_y)
        grad = classifier_grad(guide, x, t, y)
        return classifier_guided_eps(eps, grad, alpha_bars[t.cpu()].to(x.device), scale)

    return guided


@torch.no_grad()
def guided_sample(ddpm: nn.Module, y: Tensor, scale: float, mode: Mode = "cfg", guide: nn.Module | None = None, *,
                  steps: int = 50, sampler: str = "ddim", eta: float = 0.0, conditional_base: bool = False,
                  clip_x0: bool = True, generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """Samples for the labels y (B,), guided with ``scale`` by ``mode``, drawn by ``sample_loop`` on the DDPM's
    schedule respaced to ``steps`` (0: all T) with ``sampler`` ('ddim' or 'ddpm') -> (B, *shape) in data space
    ([0, 1] for images; x_0 clipped to [-1, 1] at each step when ``clip_x0``)."""
    device = next(ddpm.parameters()).device
    y = y.long().to(device)
    schedule = sampling_schedule(ddpm, steps)
    x_T = torch.randn((len(y), *ddpm.shape), generator=generator).to(device)
    x0 = sample_loop(guided_eps_fn(ddpm, y, scale, mode, guide, conditional_base), schedule, x_T, sampler=sampler,
                     eta=eta, generator=generator, progress=progress, clip_x0=1.0 if clip_x0 else None)
    return ddpm.from_model(x0)
