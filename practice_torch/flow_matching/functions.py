"""Flow matching's pure functions in PyTorch: the twins of ``theory_jax/flow_matching.py`` (same names, arguments).

Time convention of the flows issue: t = 0 is the noise N(0, I), t = 1 the data; a field v(t, x) pushes noise to data.

* the conditional (optimal-transport) path of Lipman et al. 2023, eq. 20-23:
  x_t = (1 - (1 - sigma_min) t) x0 + t x1 and its velocity u_t(x_t | x1) = x1 - (1 - sigma_min) x0; sigma_min = 0
  is the straight line x_t = (1 - t) x0 + t x1 of rectified flow (Liu et al. 2023) with u = x1 - x0;
* the conditional flow-matching loss L_CFM = E ||v_theta(t, x_t) - u_t||^2 (Lipman et al. eq. 9, per dimension);
* minibatch optimal-transport coupling (Tong et al. 2024; Pooladian et al. 2023): the exact assignment of a batch of
  noise to a batch of data minimising the summed squared distance (SciPy's ``linear_sum_assignment``).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from practice_torch.broadcasting import per_example

__all__ = ["cfm_loss", "conditional_path", "consistency_function", "consistency_loss", "consistency_scalings",
           "ode_step", "ot_assignment", "ot_coupling", "path_sample_and_target",
           "squared_cost", "straightness", "target_velocity", "transport_cost"]


def conditional_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """psi_t(x0 | x1) = (1 - (1 - sigma_min) t) x0 + t x1 (Lipman et al. eq. 22 with mu_t = t x1,
    sigma_t = 1 - (1 - sigma_min) t). x0, x1: (B, ...), t: (B,) in [0, 1] -> (B, ...)."""
    t = per_example(t, x0)
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor, sigma_min: float = 0.0) -> torch.Tensor:
    """u_t(psi_t(x0) | x1) = d psi_t / dt = x1 - (1 - sigma_min) x0 (Lipman et al. eq. 23): constant in t.
    x0, x1: (B, ...) -> (B, ...)."""
    return x1 - (1 - sigma_min) * x0


def path_sample_and_target(x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0):
    """One CFM training pair (Lipman et al. 2023, eq. 22-23): x_t = (1 - (1 - sigma_min) t) x0 + t x1 on the conditional
    OT path from the noise x0 to the data x1, and its velocity u_t = x1 - (1 - sigma_min) x0. x1: (B, ...) the data;
    x0: (B, ...) the injected noise ~ N(0, I); t: (B,) the times in [0, 1]; sigma_min: a float, the path's standard
    deviation at t = 1 -> (x_t, u_t), both (B, ...)."""
    return conditional_path(x0, x1, t, sigma_min), target_velocity(x0, x1, sigma_min)


def cfm_loss(v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """L_CFM: the mean over examples and dimensions of (v_theta(t, x_t) - u_t)^2 (Lipman et al. 2023, eq. 9 divided
    by D). v: (B, ...) the network's velocity v_theta(t, x_t); u: (B, ...) the path's target velocity u_t -> ()."""
    return (v - u).pow(2).mean()


def squared_cost(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """C_ij = ||x0_i - x1_j||^2 over the flattened examples. x0: (B, ...), x1: (B', ...) -> (B, B')."""
    a, b = x0.flatten(1), x1.flatten(1)
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def ot_assignment(cost: torch.Tensor) -> torch.Tensor:
    """The exact optimal assignment of a square cost matrix: sigma (B,) long with sum_i C[i, sigma_i] minimal
    (Hungarian / Jonker-Volgenant via ``scipy.optimize.linear_sum_assignment``). cost: (B, B) -> (B,)."""
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"the OT assignment needs a square (B, B) cost matrix, got {tuple(cost.shape)}")
    rows, cols = linear_sum_assignment(cost.detach().double().cpu().numpy())
    sigma = np.empty_like(cols)
    sigma[rows] = cols
    return torch.from_numpy(sigma).long().to(cost.device)


def transport_cost(cost: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The mean cost of the coupling i -> sigma_i: (1/B) sum_i C[i, sigma_i]. cost: (B, B), sigma: (B,) -> scalar."""
    return cost.gather(1, sigma[:, None]).mean()


def ot_coupling(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Minibatch OT (Tong et al. 2024, OT-CFM): the noise x0 (B, ...) reordered so that x0_out[j] is the noise the
    exact assignment pairs with the data x1[j] under the squared Euclidean cost. -> (B, ...)."""
    sigma = ot_assignment(squared_cost(x1, x0))  # row j (a data point) -> its noise column sigma_j
    return x0[sigma]


def straightness(x0: torch.Tensor, x1: torch.Tensor, velocities: torch.Tensor) -> torch.Tensor:
    """S = int_0^1 E ||(x1 - x0) - v_t||^2 dt (Liu, Gong & Liu 2023, Definition 3.1: the straightness of a flow; 0
    iff every trajectory is a straight line at constant speed), the integral as the mean over K times of a
    trajectory, the norm summed over each example's dimensions. x0: (B, ...) the trajectories' starts, x1: (B, ...)
    their ends, velocities: (K, B, ...) the field along them at K times -> ()."""
    gap = (x1 - x0)[None] - velocities
    return gap.reshape(gap.shape[0], gap.shape[1], -1).pow(2).sum(-1).mean()


def consistency_scalings(t: torch.Tensor, sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of the consistency function f(x_t, t) = c_skip x_t + c_out F(x_t, t) (Song et al. 2023,
    Appendix C: EDM's skip parameterisation with sigma_min = 0) in flow matching's time: with sigma = (1 - t) / t
    and r = (1 - t)^2 + sigma_data^2 t^2, c_skip = sigma_data^2 t / r and c_out = sigma_data (1 - t) / sqrt(r);
    c_skip(1) = 1, c_out(1) = 0 (the boundary f(x, 1) = x). t: (B,) -> (c_skip (B,), c_out (B,))."""
    r = (1 - t) ** 2 + sigma_data**2 * t**2
    return sigma_data**2 * t / r, sigma_data * (1 - t) / r.sqrt()


def consistency_function(x_t: torch.Tensor, t: torch.Tensor, F: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """f_theta(x_t, t) = c_skip(t) x_t + c_out(t) F_theta(x_t, t) (Song et al. 2023, eq. 5), with r = (1 - t)^2 +
    sigma_data^2 t^2, c_skip = sigma_data^2 t / r and c_out = sigma_data (1 - t) / sqrt(r) (the consistency
    scalings): the point at t = 1 of the ODE trajectory through x_t, equal to x_t at t = 1 whatever F says.
    x_t: (B, ...) a point of the path, t: (B,) its time, F: (B, ...) the network's output, sigma_data: a float, the
    data's scale -> (B, ...)."""
    c_skip, c_out = consistency_scalings(t, sigma_data)
    return per_example(c_skip, x_t) * x_t + per_example(c_out, x_t) * F


def ode_step(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the teacher's ODE dx/dt = v from t to t_next (Song et al. 2023, eq. 6, the solver Phi):
    x_hat = x_t + (t_next - t) v. x_t, v: (B, ...), t, t_next: (B,) -> (B, ...)."""
    return x_t + per_example(t_next - t, x_t) * v


def consistency_loss(f_online: torch.Tensor, f_target: torch.Tensor) -> torch.Tensor:
    """Consistency distillation (Song et al. 2023, eq. 7) with d the squared L2 distance per dimension and
    lambda = 1: the mean of (f_theta(x_t, t) - f_theta-(x_hat, t_next))^2, the target detached. -> ()."""
    return (f_online - f_target).pow(2).mean()
