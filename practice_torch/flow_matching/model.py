"""The trained flow-matching field and drawing from it: ``FlowModel`` (v_theta with what sampling needs), what it is
conditioned on (``condition``) and ``generate`` (the ODE from noise to data). A library module: the adapter
(``training.py``), ``theory_jax check`` and the benchmarks import it; it imports no adapter."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from practice_torch.flow_matching.sampling import integrate

TIME_SCALE = 1000.0  # the field's embedding sees 1000 t: the range of DDPM's timestep indices


class FlowModel(nn.Module):
    """The field v_theta(t, x[, y | cond]) with what sampling needs: the shape of an example, the conditioning
    (``num_classes`` K > 0: labels, null token K; ``cond_dim`` > 0: a float vector), and whether the data are
    images in [0, 1] (modelled as 2x - 1)."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...], num_classes: int = 0, cond_dim: int = 0,
                 unit_images: bool = False):
        super().__init__()
        self.net, self.shape, self.num_classes, self.cond_dim = net, tuple(shape), num_classes, cond_dim
        self.unit_images = unit_images

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """v_theta: x (B, *shape), t (B,) or 0-d in [0, 1], y (B,) long / (B, cond_dim) float / None -> (B, *shape)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(len(x)) * TIME_SCALE
        if self.cond_dim:
            return self.net(x, t, cond=y)
        return self.net(x, t, y) if self.num_classes else self.net(x, t)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1 if self.unit_images else x

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.unit_images else x

    def field(self, y: torch.Tensor | None = None, guidance_scale: float = 0.0):
        """field(t, x) -> dx/dt for the ODE solver, conditioned on y; with guidance w > 0 (labels only) the CFG
        field (1 + w) v(x, y) - w v(x), both halves in one batch. t: 0-d (a solver's step) or (B,) (an example's
        own time, as consistency distillation steps the teacher)."""
        if y is None or not guidance_scale or not self.num_classes:
            return lambda t, x: self(x, t, y)
        null = torch.full_like(y, self.num_classes)

        def guided(t, x):
            both = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim else t
            v_cond, v_uncond = self(torch.cat([x, x]), both, torch.cat([y, null])).chunk(2)
            return (1 + guidance_scale) * v_cond - guidance_scale * v_uncond

        return guided


class RectifiedFlow(FlowModel):
    """A rectified flow of the next order (Liu, Gong & Liu 2023): the field v_theta it trains and its frozen
    ``teacher`` (a ``FlowModel``), whose ODE draws the pairs (x0, z1) it trains on. Samples, like the field, are the
    student's."""

    def __init__(self, student: FlowModel, teacher: FlowModel):
        super().__init__(student.net, student.shape, student.num_classes, student.cond_dim, student.unit_images)
        self.teacher = teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> RectifiedFlow:
        super().train(mode)
        self.teacher.eval()  # frozen: its pairs never see dropout
        return self


def condition(net: FlowModel, y: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor | None:
    """What the field is conditioned on: labels (dropped ones -> null token K), the float vector, or None."""
    if net.cond_dim:
        return y.float()
    if not net.num_classes:
        return None
    from practice_torch.guidance import null_labels  # label dropout for classifier-free guidance

    return y.long() if drop is None else null_labels(y.long(), drop.to(y.device), net.num_classes)


def galaxy_conditions(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 5) normalised galaxy parameters drawn as the data set draws them (a seed from ``generator``)."""
    from practice_torch.data.galaxies import draw_conditions, normalise_condition

    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    return normalise_condition(torch.from_numpy(draw_conditions(n, rng)))


@torch.no_grad()
def generate(net: FlowModel, config, n: int, generator: torch.Generator, y: torch.Tensor | None = None,
             frames: int = 0, noise: torch.Tensor | None = None):
    """n samples in model space: x0 ~ N(0, I) from ``generator`` (or the given ``noise`` (n, *shape)), then the ODE
    of v_theta(., ., y) (CFG with ``config.guidance_scale``) by ``config.method``, ``ode_steps``, ``atol`` and ``rtol``
    (``config``: the run's flow_matching Config).
    -> ``sampling.Trajectory`` (x[-1]: (n, *shape))."""
    device = next(net.parameters()).device
    x0 = (torch.randn((n, *net.shape), generator=generator) if noise is None else noise).to(device)
    field = net.field(condition(net, y), config.guidance_scale)
    return integrate(field, x0, config.method, config.ode_steps, config.atol, config.rtol, frames)
