"""Spec cases for ``trpo``: the mean KL, the Fisher-vector product by double backward, conjugate gradient and the
surrogate, in float64.

Each function runs in ``theory_jax.trpo`` and ``practice_torch.trpo`` on the same NumPy inputs, gradients included
(for ``fisher_vector_product``, a third-order derivative of the KL). Third witnesses: the explicit Fisher
information (the score's outer products) times v, and ``numpy.linalg.solve`` for conjugate gradient run to
convergence.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, gaussian

S, A, N, DIM = 3, 4, 20, 6


def _policies(rng):
    return {"old_logits": gaussian(rng, S, A), "logits": gaussian(rng, S, A), "state_weights": rng.dirichlet(np.ones(S))}


def ref_mean_kl(old_logits, logits, state_weights):
    old_logp, logp = special.log_softmax(old_logits, -1), special.log_softmax(logits, -1)
    return np.sum(state_weights * np.sum(np.exp(old_logp) * (old_logp - logp), -1))


def ref_fisher_vector_product(old_logits, logits, state_weights, v):
    """At logits = old_logits: F v with F = sum_s rho_s (diag(pi_s) - pi_s pi_s^T) per state's block."""
    pi = special.softmax(logits, -1)
    return np.stack([state_weights[s] * (pi[s] * v[s] - pi[s] * (pi[s] @ v[s])) for s in range(S)])


def _spd(rng):
    m = rng.standard_normal((DIM, DIM))
    return {"matrix": m @ m.T + 0.5 * np.eye(DIM), "b": gaussian(rng, DIM)}


def ref_surrogate(logits, old_logits, states, actions, advantages):
    ratio = np.exp(special.log_softmax(logits, -1)[states, actions] - special.log_softmax(old_logits, -1)[states, actions])
    return np.mean(ratio * advantages)


CASES = (
    FunctionCase("trpo/mean_kl", "mean_kl", _policies, grad_wrt=("old_logits", "logits", "state_weights"),
                 reference=ref_mean_kl),
    FunctionCase("trpo/fisher_vector_product", "fisher_vector_product",
                 lambda r: {**(p := _policies(r)), "logits": p["old_logits"], "v": gaussian(r, S, A)},
                 grad_wrt=("old_logits", "logits", "state_weights", "v"), reference=ref_fisher_vector_product),
    FunctionCase("trpo/conjugate_gradient", "conjugate_gradient", _spd, grad_wrt=("matrix", "b"),
                 static={"iterations": 3 * DIM}, reference=lambda matrix, b, iterations: np.linalg.solve(matrix, b)),
    FunctionCase("trpo/surrogate", "surrogate",
                 lambda r: {"logits": gaussian(r, S, A), "old_logits": gaussian(r, S, A),
                            "states": r.integers(0, S, N), "actions": r.integers(0, A, N), "advantages": gaussian(r, N)},
                 grad_wrt=("logits", "advantages"), reference=ref_surrogate),
)
