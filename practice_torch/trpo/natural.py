"""TRPO's update in parameter space, written once for every policy (Schulman et al. 2015, sec. 6 and Appendix C):

1. g = grad_theta L(theta_old), L the surrogate;
2. s ~ F^-1 g by ``conjugate_gradient`` on Fisher-vector products, F v = grad_theta((grad_theta KL) . v) + damping v
   with KL the mean KL(pi_old || pi_theta) over the visited states (its Hessian at theta_old is the Fisher matrix);
3. the largest step on the quadratic model of the trust region, beta = sqrt(2 delta / s^T F s);
4. a backtracking line search that accepts the first theta_old + 0.5^k beta s whose surrogate improves and whose
   measured KL is at most delta; if none does, theta stays theta_old.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from practice_torch.trpo.functions import conjugate_gradient

__all__ = ["flat_grad", "kl_fisher_product", "natural_step"]


def flat_grad(output: torch.Tensor, params: list[nn.Parameter], create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    """d output / d theta over the flattened parameters. () -> (P,)."""
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def kl_fisher_product(mean_kl: Callable[[], torch.Tensor], params: list[nn.Parameter], damping: float
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> F v + damping v, F the Hessian of ``mean_kl()`` (KL(pi_old || pi_theta) at the current parameters,
    pi_old held constant) at theta = theta_old: the gradient of (grad_theta KL) . v, by double backprop. (P,) -> (P,).
    The first backward pass (with its graph) is made once, at the first product, and serves every later one."""
    first: list[torch.Tensor] = []

    def product(v: torch.Tensor) -> torch.Tensor:
        # the fused attention kernels have no second derivative: attention runs on the math kernel here
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            if not first:
                first.append(flat_grad(mean_kl(), params, create_graph=True))
            return flat_grad(torch.dot(first[0], v), params, retain_graph=True) + damping * v
    return product


def natural_step(params: list[nn.Parameter], surrogate: Callable[[], torch.Tensor], mean_kl: Callable[[], torch.Tensor],
                 max_kl: float, cg_iterations: int = 10, damping: float = 0.1, backtracks: int = 10,
                 fisher_kl: Callable[[], torch.Tensor] | None = None) -> dict[str, float]:
    """One TRPO update of ``params`` in place (steps 1-4 above). ``surrogate()`` and ``mean_kl()`` evaluate L(theta)
    and the mean KL(pi_old || pi_theta) at the parameters' current values; ``fisher_kl()``, if given, is the same KL
    on a subsample of the states, for the Fisher-vector products only (Schulman et al. 2015, sec. 6: the products
    dominate the cost, and a fraction of the data estimates F well); the line search measures ``mean_kl``.
    Returns the surrogate before and after, the accepted step's fraction of the full step (0: rejected, theta
    unchanged) and its measured KL."""
    with torch.enable_grad():
        before = surrogate()
        g = flat_grad(before, params)  # 1.
    before = before.detach()
    fvp = kl_fisher_product(fisher_kl or mean_kl, params, damping)
    s = conjugate_gradient(fvp, g, cg_iterations)  # 2.
    shs = float(torch.dot(s, fvp(s)))
    theta_old = parameters_to_vector(params).detach()
    result = {"surrogate_before": float(before), "surrogate_after": float(before), "step_fraction": 0.0, "kl": 0.0}
    if shs > 0 and math.isfinite(shs):
        full_step = math.sqrt(2 * max_kl / shs) * s  # 3.
        for k in range(backtracks):  # 4.
            vector_to_parameters(theta_old + 0.5**k * full_step, params)
            with torch.no_grad():
                trial, kl = float(surrogate()), float(mean_kl())
            if trial > float(before) and kl <= max_kl:
                return {**result, "surrogate_after": trial, "step_fraction": 0.5**k, "kl": kl}
    vector_to_parameters(theta_old, params)
    return result
