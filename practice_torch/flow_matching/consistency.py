"""Consistency distillation of a flow-matching teacher (Song, Dhariwal, Chen & Sutskever 2023, "Consistency models"):
the consistency model (``ConsistencyModel``), its sampler in one step or several (Algorithm 1) and its training step
(Algorithm 2). A library module of the flow-matching package: the adapter (``training.py``) imports it.

Time runs as in flow matching: t = 0 is the noise, t = 1 the data, x_t = (1 - t) x0 + t x1. The consistency function
f_theta(x_t, t) = c_skip(t) x_t + c_out(t) F_theta(x_t, t) maps every point of an ODE trajectory to the trajectory's
end at t = 1 (``functions.consistency_function``; f(x, 1) = x by construction). Distillation draws a data point, its
noised x_t at a grid time t_n = n / N, takes one Euler step of the teacher's ODE to t_{n+1}, and pulls f_theta at
(x_t, t_n) toward the target network's f at (x_hat, t_{n+1}); the target's weights theta- follow theta by an EMA.
"""

from __future__ import annotations

import torch

from practice_torch.flow_matching.functions import conditional_path, consistency_function, consistency_loss, ode_step
from practice_torch.flow_matching.model import FlowModel, condition
from practice_torch.flow_matching.sampling import Trajectory


class ConsistencyModel(FlowModel):
    """F_theta (``net``, trained) of f_theta = c_skip x + c_out F_theta, beside ``target`` (theta-: the same network,
    an EMA of theta, frozen) and ``teacher`` (the flow-matching field whose ODE it distils, frozen). ``forward`` is
    F_theta's raw output; ``consistency`` is f_theta."""

    def __init__(self, student: FlowModel, target: FlowModel, teacher: FlowModel):
        super().__init__(student.net, student.shape, student.num_classes, student.cond_dim, student.unit_images)
        self.target = target.requires_grad_(False)
        self.teacher = teacher.requires_grad_(False)

    def train(self, mode: bool = True) -> ConsistencyModel:
        super().train(mode)
        self.target.eval()
        self.teacher.eval()
        return self

    def consistency(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, sigma_data: float
                    ) -> torch.Tensor:
        """f_theta(x_t, t[, y]): x_t (B, *shape), t (B,) -> (B, *shape), the trajectory's end at t = 1."""
        return consistency_function(x_t, t, self(x_t, t, y), sigma_data)


def distillation_loss(net: ConsistencyModel, config, x1: torch.Tensor, y: torch.Tensor | None,
                      noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """Song et al. 2023, Algorithm 2 (eq. 7): n ~ U{0, ..., N - 1} (``noise['n']``), t_n = n / N, x_t on the straight
    path from the noise x0 to the data x1 (B, ...), x_hat = one Euler step of the teacher's ODE from t_n to t_{n+1}
    (CFG with ``config.guidance_scale``), and the squared distance between f_theta(x_t, t_n) and the detached
    f_theta-(x_hat, t_{n+1})."""
    steps, sigma_data = config.consistency_steps, config.sigma_data
    x0 = noise["x0"].to(x1.device)
    t = noise["n"].to(x1.device, x1.dtype) / steps
    t_next = t + 1 / steps
    cond = condition(net, y)
    x_t = conditional_path(x0, x1, t)
    with torch.no_grad():
        x_hat = ode_step(x_t, net.teacher.field(cond, config.guidance_scale)(t, x_t), t, t_next)  # eq. 6
        f_target = consistency_function(x_hat, t_next, net.target(x_hat, t_next, cond), sigma_data)
    return consistency_loss(net.consistency(x_t, t, cond, sigma_data), f_target)


@torch.no_grad()
def update_target(net: ConsistencyModel, decay: float) -> None:
    """theta- <- stopgrad(mu theta- + (1 - mu) theta) (Song et al. 2023, Algorithm 2), mu = ``decay``."""
    for target, online in zip(net.target.net.parameters(), net.net.parameters()):
        target.lerp_(online.detach(), 1 - decay)


@torch.no_grad()
def consistency_sample(net: ConsistencyModel, x0: torch.Tensor, y: torch.Tensor | None, times: tuple[float, ...],
                       sigma_data: float, generator: torch.Generator) -> Trajectory:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) in flow matching's time: x = f(x0, times[0])
    from the noise x0 (n, *shape), then at each later time tau a fresh noise z puts x back on the path,
    x_tau = (1 - tau) z + tau x, and x = f(x_tau, tau). One network evaluation a time.
    -> ``Trajectory`` (x: (len(times) + 1, n, *shape): the noise, then each step's estimate of the data)."""
    cond = condition(net, y)
    states, x = [x0], None
    for k, tau in enumerate(times):
        t = torch.full((len(x0),), float(tau), device=x0.device, dtype=x0.dtype)
        x_t = x0 if k == 0 else conditional_path(
            torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype), x, t)
        x = net.consistency(x_t, t, cond, sigma_data)
        states.append(x)
    return Trajectory(torch.stack(states), torch.linspace(0, 1, len(times) + 1), len(times))
