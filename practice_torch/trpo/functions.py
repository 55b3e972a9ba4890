"""TRPO's pieces (Schulman et al. 2015, eq. 14 and Appendix C; Nocedal & Wright, Algorithm 5.2). Twins of
``theory_jax/trpo.py``, same names and arguments."""

from __future__ import annotations

import torch


def mean_kl(old_logits, logits, state_weights):
    """sum_s rho(s) KL(pi_old(.|s) || pi(.|s)). old_logits, logits: (S, A), state_weights: (S,) -> ()."""
    old_logp, logp = torch.log_softmax(old_logits, -1), torch.log_softmax(logits, -1)
    return torch.sum(state_weights * torch.sum(torch.exp(old_logp) * (old_logp - logp), -1))


def fisher_vector_product(old_logits, logits, state_weights, v):
    """F v = grad_theta((grad_theta mean_kl) . v), a double backward; differentiable itself when autograd is on.
    All (S, A) but state_weights (S,) -> (S, A)."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        theta = logits if logits.requires_grad else logits.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(mean_kl(old_logits, theta, state_weights), theta, create_graph=True)
        (fvp,) = torch.autograd.grad(torch.sum(grad * v), theta, create_graph=keep_graph)
    return fvp


def conjugate_gradient(matrix, b, iterations: int):
    """x ~ A^-1 b by conjugate gradient from 0, a fixed number of iterations (a zero residual changes nothing).
    matrix: (n, n), or a callable v -> A v, (n,) -> (n,) (matrix-free: a Fisher-vector product); b: (n,)
    -> (n,)."""
    x, r = torch.zeros_like(b), b
    p, rr = r, torch.dot(r, r)
    one = torch.ones((), dtype=b.dtype, device=b.device)
    for _ in range(iterations):
        ap = matrix(p) if callable(matrix) else matrix @ p
        pap = torch.dot(p, ap)
        alpha = torch.where(pap > 0, rr / torch.where(pap > 0, pap, one), 0 * one)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = torch.dot(r, r)
        p = r + torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, one), 0 * one) * p
        rr = rr_new
    return x


def surrogate(logits, old_logits, states, actions, advantages):
    """mean pi(a|s)/pi_old(a|s) A over sampled (s, a); pi_old is a constant. logits, old_logits: (S, A),
    states, actions: (N,) int, advantages: (N,) -> ()."""
    states, actions = states.long(), actions.long()
    logp = torch.log_softmax(logits, -1)[states, actions]
    old_logp = torch.log_softmax(old_logits, -1)[states, actions]
    return torch.mean(torch.exp(logp - old_logp.detach()) * advantages)
