"""Spec cases for ``flow_matching``: the conditional OT path and its target, the CFM loss, minibatch OT coupling.

Each function runs in ``theory_jax.flow_matching`` and ``practice_torch.flow_matching`` on the same NumPy inputs (the
noise x0 and the times t injected), in float64, with gradients. Third witnesses, written independently in NumPy/SciPy:
the path as mu_t + sigma_t x0 with mu_t = t x1, sigma_t = 1 - (1 - sigma_min) t (Lipman et al. eq. 20, 22), the target
as the field u_t(x | x1) = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t) of eq. 21 evaluated at x_t, the cost by
``scipy.spatial.distance.cdist``, and the assignment as the vertex solution of the assignment linear programme
(``scipy.optimize.linprog`` over the Birkhoff polytope), independent of both the torch twin's Hungarian algorithm
(``linear_sum_assignment``) and the JAX twin's enumeration of permutations.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

from shared_specs.case import FunctionCase, gaussian, uniform

B = 5


def _col(c, x):
    return np.reshape(c, np.shape(c) + (1,) * (x.ndim - np.ndim(c)))


# Independent references (NumPy / SciPy) -----------------------------------------------------------------------------
def ref_conditional_path(x0, x1, t, sigma_min=0.0):
    """mu_t(x1) + sigma_t(x1) x0 with mu_t = t x1 and sigma_t = 1 - (1 - sigma_min) t (Lipman et al. eq. 20, 22)."""
    mu, sigma = _col(t, x1) * x1, 1 - (1 - sigma_min) * _col(t, x0)
    return mu + sigma * x0


def ref_target_velocity(x0, x1, sigma_min=0.0, t=0.37):
    """Eq. 21, u_t(x | x1) = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t), at x = the path's x_t (any t)."""
    x = ref_conditional_path(x0, x1, np.full(len(x0), t), sigma_min)
    return (x1 - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * t)


def ref_path_sample_and_target(x1, x0, t, sigma_min=0.0):
    x_t = ref_conditional_path(x0, x1, t, sigma_min)
    return x_t, (x1 - (1 - sigma_min) * x_t) / (1 - (1 - sigma_min) * _col(t, x0))


def ref_ot_assignment(cost):
    """The assignment LP: min <C, P> over doubly stochastic P (Birkhoff polytope); HiGHS returns a vertex, a
    permutation matrix (Birkhoff-von Neumann). -> sigma (B,) int64 with P[i, sigma_i] = 1."""
    b = cost.shape[0]
    rows = np.kron(np.eye(b), np.ones(b))  # sum_j P_ij = 1
    cols = np.kron(np.ones(b), np.eye(b))  # sum_i P_ij = 1
    res = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.ones(2 * b), bounds=(0, 1), method="highs")
    return np.argmax(res.x.reshape(b, b), axis=1).astype(np.int64)


def ref_straightness(x0, x1, velocities):
    """Liu et al. 2023, Definition 3.1 as a left-to-right loop: for each time and example, the squared distance
    between the displacement x1 - x0 and the velocity there, averaged."""
    total = 0.0
    for v in velocities:
        for a, b, w in zip(x0, x1, v):
            total += float(np.dot((b - a - w).ravel(), (b - a - w).ravel()))
    return total / (len(velocities) * len(x0))


def ref_consistency_function(x_t, t, F, sigma_data=0.5):
    """EDM's skip parameterisation (Karras et al. 2022, Table 1; Song et al. 2023, Appendix C, sigma_min = 0) on the
    scaled x_t / t at the noise level sigma = (1 - t) / t: the form the FM-time scalings rewrite, t in (0, 1]."""
    sigma = (1 - t) / t
    c_skip, c_out = sigma_data**2 / (sigma**2 + sigma_data**2), sigma_data * sigma / np.sqrt(sigma**2 + sigma_data**2)
    return _col(c_skip, x_t) * x_t / _col(t, x_t) + _col(c_out, x_t) * F


def ref_consistency_scalings(t, sigma_data=0.5):
    """The coefficients of x_t and F in ``ref_consistency_function``."""
    sigma = (1 - t) / t
    return sigma_data**2 / (sigma**2 + sigma_data**2) / t, sigma_data * sigma / np.sqrt(sigma**2 + sigma_data**2)


def ref_ot_coupling(x0, x1):
    return x0[ref_ot_assignment(cdist(x1.reshape(len(x1), -1), x0.reshape(len(x0), -1), "sqeuclidean"))]


# Input makers ---------------------------------------------------------------------------------------------------
def _path_images(rng):
    return {"x0": gaussian(rng, B, 1, 4, 4), "x1": uniform(rng, B, 1, 4, 4, low=-1.0, high=1.0),
            "t": uniform(rng, B)}


def _path_vectors(rng):
    return {"x0": gaussian(rng, 16, 2), "x1": gaussian(rng, 16, 2, scale=2.0), "t": uniform(rng, 16)}


def _pair_sample(rng):
    return {"x1": gaussian(rng, B, 3, scale=1.5), "x0": gaussian(rng, B, 3), "t": uniform(rng, B, high=0.95)}


def _cost(rng):
    """A fixed 6 x 6 squared-distance matrix between two point clouds (distinct costs: a unique optimum)."""
    return {"cost": cdist(gaussian(rng, 6, 2, scale=1.5), gaussian(rng, 6, 2), "sqeuclidean")}


def _cost_sigma(rng):
    return {"cost": uniform(rng, 7, 7, high=3.0), "sigma": rng.permutation(7).astype(np.int64)}


def _coupling(rng):
    return {"x0": gaussian(rng, 6, 1, 2, 2), "x1": uniform(rng, 6, 1, 2, 2, low=-1.0, high=1.0) + 0.5}


CASES = (
    FunctionCase("flow_matching/conditional_path", "conditional_path", _path_images, grad_wrt=("x0", "x1", "t"),
                 reference=ref_conditional_path),
    FunctionCase("flow_matching/conditional_path_sigma_min", "conditional_path", _path_vectors,
                 grad_wrt=("x0", "x1", "t"), static={"sigma_min": 0.05}, reference=ref_conditional_path),
    FunctionCase("flow_matching/target_velocity", "target_velocity",
                 lambda r: {"x0": gaussian(r, B, 2, 3), "x1": gaussian(r, B, 2, 3, scale=2.0)},
                 grad_wrt=("x0", "x1"), static={"sigma_min": 0.01}, reference=ref_target_velocity),
    FunctionCase("flow_matching/path_sample_and_target", "path_sample_and_target", _pair_sample,
                 grad_wrt=("x1", "x0", "t"), reference=ref_path_sample_and_target),
    FunctionCase("flow_matching/path_sample_and_target_sigma_min", "path_sample_and_target", _pair_sample,
                 grad_wrt=("x1", "x0", "t"), static={"sigma_min": 0.1}, reference=ref_path_sample_and_target),
    FunctionCase("flow_matching/cfm_loss", "cfm_loss",
                 lambda r: {"v": gaussian(r, B, 1, 4, 4), "u": gaussian(r, B, 1, 4, 4, scale=2.0)},
                 grad_wrt=("v", "u"), reference=lambda v, u: np.sum((v - u) ** 2) / v.size),
    FunctionCase("flow_matching/squared_cost", "squared_cost",
                 lambda r: {"x0": gaussian(r, 6, 1, 2, 2), "x1": gaussian(r, 4, 1, 2, 2, scale=2.0)},
                 grad_wrt=("x0", "x1"),
                 reference=lambda x0, x1: cdist(x0.reshape(6, -1), x1.reshape(4, -1), "sqeuclidean")),
    FunctionCase("flow_matching/ot_assignment", "ot_assignment", _cost, reference=ref_ot_assignment),
    FunctionCase("flow_matching/transport_cost", "transport_cost", _cost_sigma, grad_wrt=("cost",),
                 reference=lambda cost, sigma: np.mean([cost[i, s] for i, s in enumerate(sigma)])),
    FunctionCase("flow_matching/straightness", "straightness",
                 lambda r: {"x0": gaussian(r, 4, 1, 2, 2), "x1": gaussian(r, 4, 1, 2, 2, scale=2.0),
                            "velocities": gaussian(r, 3, 4, 1, 2, 2, scale=1.5)},
                 grad_wrt=("x0", "x1", "velocities"), reference=ref_straightness),
    FunctionCase("flow_matching/consistency_scalings", "consistency_scalings",
                 lambda r: {"t": np.concatenate([uniform(r, 6, low=0.02, high=0.98), [1.0]])}, grad_wrt=("t",),
                 static={"sigma_data": 0.5}, reference=ref_consistency_scalings),
    FunctionCase("flow_matching/consistency_function", "consistency_function",
                 lambda r: {"x_t": gaussian(r, B, 1, 3, 3), "t": uniform(r, B, low=0.05, high=1.0),
                            "F": gaussian(r, B, 1, 3, 3)},
                 grad_wrt=("x_t", "t", "F"), static={"sigma_data": 0.7}, reference=ref_consistency_function),
    FunctionCase("flow_matching/ode_step", "ode_step",
                 lambda r: {"x_t": gaussian(r, B, 2), "v": gaussian(r, B, 2, scale=2.0), "t": uniform(r, B, high=0.5),
                            "t_next": uniform(r, B, low=0.5)},
                 grad_wrt=("x_t", "v", "t", "t_next"),
                 reference=lambda x_t, v, t, t_next: x_t + (t_next - t)[:, None] * v),
    FunctionCase("flow_matching/consistency_loss", "consistency_loss",
                 lambda r: {"f_online": gaussian(r, B, 1, 3, 3), "f_target": gaussian(r, B, 1, 3, 3)},
                 grad_wrt=("f_online", "f_target"),
                 reference=lambda f_online, f_target: np.sum((f_online - f_target) ** 2) / f_online.size),
    FunctionCase("flow_matching/ot_coupling", "ot_coupling", _coupling, grad_wrt=("x0",), reference=ref_ot_coupling),
)
