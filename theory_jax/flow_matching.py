"""Flow matching: conditional OT paths, the CFM loss, minibatch optimal-transport coupling, the marginal ODE.

Lectures: flow matching; conditional flow matching; optimal-transport paths (Lipman, Chen, Ben-Hamu, Nickel & Le
2023, "Flow matching for generative modeling", eqs. 5-9 and 20-23, Theorems 1-2; Liu, Gong & Liu 2023, "Flow straight
and fast" (rectified flow); Tong et al. 2024, "Improving and generalizing flow-based generative models with minibatch
optimal transport" (OT-CFM); Pooladian et al. 2023, "Multisample flow matching").

Convention of issue 6: t = 0 is the noise x0 ~ N(0, I), t = 1 the data x1. Conditioned on one data point x1 the path
and its velocity are

    x_t = psi_t(x0 | x1) = (1 - (1 - sigma_min) t) x0 + t x1,      u_t = d x_t / dt = x1 - (1 - sigma_min) x0,

so p_t(x | x1) = N(t x1, (1 - (1 - sigma_min) t)^2 I) runs from N(0, I) to N(x1, sigma_min^2 I). Averaged over the
data the marginal velocity v_t(x) = E[u_t | x_t = x] generates the marginal path p_t (continuity equation), and the
CFM loss E ||v_theta(t, x_t) - u_t||^2 differs from the intractable FM loss E ||v_theta(t, x_t) - v_t(x_t)||^2 by a
constant free of theta (Lipman et al. Theorem 2): same gradients, same minimiser. Pairing x0 and x1 by an optimal
transport plan instead of independently lowers the transport cost and straightens the marginal paths.
Twin: ``practice_torch/flow_matching`` (same names, same arguments); cases: ``shared_specs/flow_matching.py``.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.broadcasting import per_example


# 1. The pure functions (twins in practice_torch.flow_matching) --------------------------------------------------
def conditional_path(x0, x1, t, sigma_min=0.0):
    """psi_t(x0 | x1) = (1 - (1 - sigma_min) t) x0 + t x1 (Lipman et al. eq. 22). x0, x1: (B, ...), t: (B,) -> (B, ...)."""
    t = per_example(t, x0)
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def target_velocity(x0, x1, sigma_min=0.0):
    """u_t = d psi_t / dt = x1 - (1 - sigma_min) x0 (Lipman et al. eq. 23), constant in t. (B, ...) -> (B, ...)."""
    return x1 - (1 - sigma_min) * x0


def path_sample_and_target(x1, x0, t, sigma_min=0.0):
    """One CFM training pair (Lipman et al. 2023, eq. 22-23): x_t = (1 - (1 - sigma_min) t) x0 + t x1 on the conditional
    OT path from the noise x0 to the data x1, and its velocity u_t = x1 - (1 - sigma_min) x0. x1: (B, ...) the data;
    x0: (B, ...) the injected noise ~ N(0, I); t: (B,) the times in [0, 1]; sigma_min: a float, the path's standard
    deviation at t = 1 -> (x_t, u_t), both (B, ...)."""
    return conditional_path(x0, x1, t, sigma_min), target_velocity(x0, x1, sigma_min)


def cfm_loss(v, u):
    """L_CFM: the mean over examples and dimensions of (v_theta(t, x_t) - u_t)^2 (Lipman et al. 2023, eq. 9 divided
    by D). v: (B, ...) the network's velocity v_theta(t, x_t); u: (B, ...) the path's target velocity u_t -> ()."""
    return jnp.mean((v - u) ** 2)


def squared_cost(x0, x1):
    """C_ij = ||x0_i - x1_j||^2 over flattened examples. x0: (B, ...), x1: (B', ...) -> (B, B')."""
    a, b = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


@lru_cache(maxsize=16)
def _permutations(b: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(b))), dtype=np.int64)


def ot_assignment(cost):
    """The exact optimal assignment sigma (B,) minimising sum_i C[i, sigma_i], by enumerating all B! permutations
    (B <= 8: a brute force, the independent witness of the torch twin's Hungarian algorithm). cost: (B, B) -> (B,)."""
    b = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != b or b > 8:
        raise ValueError(f"the brute-force assignment needs a square (B, B) cost matrix with B <= 8, got {cost.shape}")
    perms = jnp.asarray(_permutations(b))
    totals = jnp.sum(cost[jnp.arange(b)[None, :], perms], axis=1)
    return perms[jnp.argmin(totals)]


def transport_cost(cost, sigma):
    """(1/B) sum_i C[i, sigma_i], the mean cost of the coupling i -> sigma_i. cost: (B, B), sigma: (B,) -> ()."""
    return jnp.mean(cost[jnp.arange(cost.shape[0]), sigma])


def ot_coupling(x0, x1):
    """Minibatch OT (OT-CFM): the noise x0 (B, ...) reordered so that row j is the noise paired with x1[j] by the
    exact assignment under the squared Euclidean cost. -> (B, ...)."""
    return x0[ot_assignment(squared_cost(x1, x0))]


def straightness(x0, x1, velocities):
    """S = int_0^1 E ||(x1 - x0) - v_t||^2 dt (Liu, Gong & Liu 2023, Definition 3.1: the straightness of a flow; 0
    iff every trajectory is a straight line at constant speed), the integral as the mean over K times of a
    trajectory, the norm summed over each example's dimensions. x0: (B, ...) the trajectories' starts, x1: (B, ...)
    their ends, velocities: (K, B, ...) the field along them at K times -> ()."""
    gap = (x1 - x0)[None] - velocities
    return jnp.mean(jnp.sum(gap.reshape(gap.shape[0], gap.shape[1], -1) ** 2, axis=-1))


def consistency_scalings(t, sigma_data=0.5):
    """(c_skip, c_out) of the consistency function f(x_t, t) = c_skip x_t + c_out F(x_t, t) (Song et al. 2023,
    Appendix C: EDM's skip parameterisation with sigma_min = 0) in flow matching's time. The path x_t = (1 - t) x0 + t
    x1 is t (x1 + sigma x0) with the noise level sigma = (1 - t) / t; on the scaled x_t / t, EDM's c_skip =
    sigma_data^2 / (sigma^2 + sigma_data^2) and c_out = sigma_data sigma / sqrt(sigma^2 + sigma_data^2) become
    c_skip = sigma_data^2 t / r and c_out = sigma_data (1 - t) / sqrt(r), r = (1 - t)^2 + sigma_data^2 t^2: finite
    at the noise (t = 0), and c_skip = 1, c_out = 0 at the data (t = 1), the boundary condition f(x, 1) = x.
    t: (B,) -> (c_skip (B,), c_out (B,))."""
    r = (1 - t) ** 2 + sigma_data**2 * t**2
    return sigma_data**2 * t / r, sigma_data * (1 - t) / jnp.sqrt(r)


def consistency_function(x_t, t, F, sigma_data=0.5):
    """f_theta(x_t, t) = c_skip(t) x_t + c_out(t) F_theta(x_t, t) (Song et al. 2023, eq. 5), with r = (1 - t)^2 +
    sigma_data^2 t^2, c_skip = sigma_data^2 t / r and c_out = sigma_data (1 - t) / sqrt(r) (the consistency
    scalings): the point at t = 1 of the ODE trajectory through x_t, equal to x_t at t = 1 whatever F says.
    x_t: (B, ...) a point of the path, t: (B,) its time, F: (B, ...) the network's output, sigma_data: a float, the
    data's scale -> (B, ...)."""
    c_skip, c_out = consistency_scalings(t, sigma_data)
    return per_example(c_skip, x_t) * x_t + per_example(c_out, x_t) * F


def ode_step(x_t, v, t, t_next):
    """One Euler step of the teacher's ODE dx/dt = v from t to t_next (Song et al. 2023, eq. 6, the solver Phi):
    x_hat = x_t + (t_next - t) v. x_t, v: (B, ...), t, t_next: (B,) -> (B, ...)."""
    return x_t + per_example(t_next - t, x_t) * v


def consistency_loss(f_online, f_target):
    """Consistency distillation (Song et al. 2023, eq. 7) with d the squared L2 distance per dimension and lambda = 1:
    the mean over examples and dimensions of (f_theta(x_t, t) - f_theta-(x_hat, t_next))^2, the target already
    detached (its weights theta- an EMA of theta). f_online, f_target: (B, ...) -> ()."""
    return jnp.mean((f_online - f_target) ** 2)


# 2. Gaussian data: the marginal velocity in closed form ------------------------------------------------------------
def gaussian_path_moments(t, m, s):
    """Independent coupling of x0 ~ N(0, I) and x1 ~ N(m, S), sigma_min = 0: E x_t = t m, Cov x_t = (1-t)^2 I + t^2 S,
    Cov(u, x_t) = K = t S - (1 - t) I (symmetric), Cov u = S + I. -> (Sigma_t, K)."""
    eye = jnp.eye(m.shape[0])
    return (1 - t) ** 2 * eye + t**2 * s, t * s - (1 - t) * eye


def marginal_velocity(t, x, m, s):
    """v_t(x) = E[x1 - x0 | x_t = x] = m + K Sigma_t^-1 (x - t m) by Gaussian conditioning. x: (N, D) -> (N, D)."""
    sigma_t, k = gaussian_path_moments(t, m, s)
    return m + (x - t * m) @ jnp.linalg.solve(sigma_t, k)  # rows: (K Sigma_t^-1 (x - t m))^T, both symmetric


def _linear_losses(theta, t, m, s):
    """At time t, for the linear model v(x) = A x + b with A = A0 + t A1, b = b0 + t b1 (theta = (A0, A1, b0, b1)):
    (L_CFM(t), L_FM(t), the conditional variance tr(Cov u - K Sigma_t^-1 K)), all exact Gaussian moments (sums over D)."""
    a0, a1, b0, b1 = theta
    a, b = a0 + t * a1, b0 + t * b1
    sigma_t, k = gaussian_path_moments(t, m, s)
    cov_u = s + jnp.eye(m.shape[0])
    mean_r = a @ (t * m) + b - m
    l_cfm = jnp.trace(a @ sigma_t @ a.T - a @ k - k @ a.T + cov_u) + mean_r @ mean_r
    gain = jnp.linalg.solve(sigma_t, k).T  # G = K Sigma_t^-1: v_t(x) = G x + g
    g = m - gain @ (t * m)
    diff = a - gain
    mean_f = diff @ (t * m) + b - g
    l_fm = jnp.trace(diff @ sigma_t @ diff.T) + mean_f @ mean_f
    return l_cfm, l_fm, jnp.trace(cov_u - k @ jnp.linalg.solve(sigma_t, k))


def integrated_losses(theta, m, s, nodes: int = 40):
    """(int_0^1 L_CFM dt, int_0^1 L_FM dt) by Gauss-Legendre quadrature on ``nodes`` points of [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    ts, ws = jnp.asarray((x + 1) / 2), jnp.asarray(w / 2)
    l_cfm, l_fm, _ = jax.vmap(lambda t: _linear_losses(theta, t, m, s))(ts)
    return jnp.sum(ws * l_cfm), jnp.sum(ws * l_fm)


__all__ = ["cfm_loss", "conditional_path", "consistency_function", "consistency_loss", "consistency_scalings",
           "gaussian_path_moments", "marginal_velocity", "ode_step", "ot_assignment", "ot_coupling",
           "path_sample_and_target", "squared_cost", "straightness", "target_velocity", "transport_cost"]
