"""Trust region policy optimisation: the natural gradient by conjugate gradient on Fisher-vector products, and the
line search that keeps the KL within its bound.

Lectures: trust region policy optimisation (Schulman et al. 2015, "Trust region policy optimization", eq. 14 and
Appendix C; Kakade 2001, "A natural policy gradient"; Nocedal & Wright 2006, Algorithm 5.2 for conjugate gradient;
Pearlmutter 1994 for Hessian-vector products by double backprop).

TRPO maximises the surrogate L(theta) = E[pi_theta(a|s)/pi_old(a|s) A] subject to mean KL(pi_old || pi_theta) <=
delta. To second order the constraint is 1/2 s^T F s <= delta, with F the Fisher information of the policy, which is
also the Hessian of the mean KL at theta_old; the step is along s = F^-1 g, scaled to sqrt(2 delta / s^T F s), then
shrunk by a backtracking line search until the true KL is within delta and the surrogate improves. F is never formed:
conjugate gradient needs only products F v, each the gradient of (grad KL) . v, a double backward.
Twin: ``practice_torch/trpo`` (same names, same arguments); cases: ``shared_specs/trpo.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


# 1. The pure functions (twins in practice_torch.trpo) -----------------------------------------------------------
def mean_kl(old_logits, logits, state_weights):
    """sum_s rho(s) KL(pi_old(.|s) || pi(.|s)) for softmax policies. old_logits, logits: (S, A), state_weights: (S,)
    -> ()."""
    old_logp, logp = jax.nn.log_softmax(old_logits, -1), jax.nn.log_softmax(logits, -1)
    return jnp.sum(state_weights * jnp.sum(jnp.exp(old_logp) * (old_logp - logp), -1))


def fisher_vector_product(old_logits, logits, state_weights, v):
    """F v as the gradient of (grad_theta mean_kl) . v (Pearlmutter's double backward); at logits = old_logits this
    is the Fisher information times v. All (S, A) but state_weights (S,) -> (S, A)."""
    def directional(th):
        return jnp.sum(jax.grad(lambda t: mean_kl(old_logits, t, state_weights))(th) * v)
    return jax.grad(directional)(logits)


def conjugate_gradient(matrix, b, iterations: int):
    """x ~ A^-1 b for a symmetric positive semi-definite A by conjugate gradient from x = 0 (Nocedal & Wright,
    Algorithm 5.2), a fixed number of iterations; a step whose residual is already 0 changes nothing.
    matrix: (n, n), or a callable v -> A v, (n,) -> (n,) (matrix-free: a Fisher-vector product); b: (n,)
    -> (n,)."""
    x, r = jnp.zeros_like(b), b
    p, rr = r, jnp.dot(r, r)
    for _ in range(iterations):
        ap = matrix(p) if callable(matrix) else matrix @ p
        pap = jnp.dot(p, ap)
        alpha = jnp.where(pap > 0, rr / jnp.where(pap > 0, pap, 1.0), 0.0)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = jnp.dot(r, r)
        p = r + jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1.0), 0.0) * p
        rr = rr_new
    return x


def surrogate(logits, old_logits, states, actions, advantages):
    """L = mean pi(a|s)/pi_old(a|s) A over sampled (s, a) (eq. 14's importance-sampled objective).
    logits, old_logits: (S, A), states, actions: (N,) int, advantages: (N,) -> ()."""
    logp = jax.nn.log_softmax(logits, -1)[states, actions]
    old_logp = jax.nn.log_softmax(old_logits, -1)[states, actions]
    return jnp.mean(jnp.exp(logp - jax.lax.stop_gradient(old_logp)) * advantages)
