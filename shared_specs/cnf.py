"""Spec cases for ``cnf``: a small time-conditioned MLP field, its divergence (exact and Hutchinson), the augmented CNF
dynamics, one Euler and one classic RK4 step, and the log-likelihood by fixed-step integration of the augmented ODE.

The field is fixed: f(t, x) = W3 tanh(W2 tanh(W1 [x, t] + b1) + b2) + b3 with its weights as inputs (torch Linear
layout), so both backends get the same field; probes v of Hutchinson's estimator are inputs too. Float64, gradients
w.r.t. the state, the time, the probe and the weights (second derivatives for the divergence). Third witnesses, in
NumPy: the Jacobian by the chain rule W3 diag(1 - h2^2) W2 diag(1 - h1^2) W1 (not autodiff) for the divergence, and a
generic explicit Runge-Kutta loop over a Butcher tableau (not the twins' unrolled stages) for the steps and the
log-likelihood. ``log_likelihood``'s 'rk4' is torchdiffeq's 3/8 rule (its tableau below); ``rk4_step`` is classic.
"""

from __future__ import annotations

import math

import numpy as np

from shared_specs.case import FunctionCase, gaussian, uniform

B, D, H = 5, 2, 8
WEIGHTS = ("w1", "b1", "w2", "b2", "w3", "b3")

# Butcher tableaux (a, b, c) of the explicit methods
TABLEAUX = {
    "euler": ([[]], [1.0], [0.0]),
    "midpoint": ([[], [0.5]], [0.0, 1.0], [0.0, 0.5]),
    "rk4_classic": ([[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0]),
    "rk4": ([[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]], [1 / 8, 3 / 8, 3 / 8, 1 / 8], [0.0, 1 / 3, 2 / 3, 1.0]),
}


# Independent references (NumPy) -----------------------------------------------------------------------------------
def _hidden(t, x, w1, b1, w2, b2):
    tx = np.concatenate([x, np.full((len(x), 1), float(t))], axis=1)
    h1 = np.tanh(tx @ w1.T + b1)
    return h1, np.tanh(h1 @ w2.T + b2)


def ref_field(t, x, w1, b1, w2, b2, w3, b3):
    return _hidden(t, x, w1, b1, w2, b2)[1] @ w3.T + b3


def ref_jacobian(t, x, w1, b1, w2, b2, w3, b3):
    """df/dx by the chain rule: W3 diag(1 - h2^2) W2 diag(1 - h1^2) W1[:, :D]. (B, D, D)."""
    h1, h2 = _hidden(t, x, w1, b1, w2, b2)
    d = x.shape[1]
    return np.stack([w3 @ np.diag(1 - a**2) @ w2 @ np.diag(1 - b**2) @ w1[:, :d] for a, b in zip(h2, h1)])


def ref_divergence_exact(t, x, w1, b1, w2, b2, w3, b3):
    return np.trace(ref_jacobian(t, x, w1, b1, w2, b2, w3, b3), axis1=1, axis2=2)


def ref_divergence_hutchinson(t, x, v, w1, b1, w2, b2, w3, b3):
    return np.einsum("bi,bij,bj->b", v, ref_jacobian(t, x, w1, b1, w2, b2, w3, b3), v)


def ref_cnf_dynamics(t, x, w1, b1, w2, b2, w3, b3, v=None):
    w = (w1, b1, w2, b2, w3, b3)
    div = ref_divergence_exact(t, x, *w) if v is None else ref_divergence_hutchinson(t, x, v, *w)
    return ref_field(t, x, *w), -div


def _rk_step(f, t, y, h, method):
    """One explicit Runge-Kutta step of ``method``'s Butcher tableau: k_i = f(t + c_i h, y + h sum_j a_ij k_j)."""
    a, b, c = TABLEAUX[method]
    ks = []
    for a_i, c_i in zip(a, c):
        ks.append(f(t + c_i * h, y + h * sum((a_ij * k for a_ij, k in zip(a_i, ks)), np.zeros_like(y))))
    return y + h * sum(b_i * k for b_i, k in zip(b, ks))


def ref_step(method):
    def step(t, x, h, w1, b1, w2, b2, w3, b3):
        return _rk_step(lambda s, y: ref_field(s, y, w1, b1, w2, b2, w3, b3), float(t), x, float(h), method)
    return step


def ref_log_likelihood(x, w1, b1, w2, b2, w3, b3, method, steps):
    """The augmented state [x, l] from t = 1 (l = 0) to t = 0 by ``steps`` steps of the tableau; then
    log N(z; 0, I) + l(0)."""
    w = (w1, b1, w2, b2, w3, b3)

    def rhs(t, s):
        return np.concatenate([ref_field(t, s[:, :-1], *w), ref_divergence_exact(t, s[:, :-1], *w)[:, None]], 1)

    s = np.concatenate([x, np.zeros((len(x), 1))], axis=1)
    for n in range(steps):
        s = _rk_step(rhs, 1.0 - n / steps, s, -1.0 / steps, method)
    z = s[:, :-1]
    return -0.5 * np.sum(z**2, axis=1) - 0.5 * z.shape[1] * math.log(2 * math.pi) + s[:, -1]


# Input makers ---------------------------------------------------------------------------------------------------
def _weights(rng, d=D, hidden=H):
    """The MLP's weights, scaled so the field bends visibly (N(0, 2.25 / fan_in), biases N(0, 0.1^2))."""
    shapes = {"w1": (hidden, d + 1), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,), "w3": (d, hidden),
              "b3": (d,)}
    return {k: gaussian(rng, *s, scale=1.5 / math.sqrt(s[-1]) if k[0] == "w" else 0.1) for k, s in shapes.items()}


def _field_inputs(rng, d=D, probe=None, step=False):
    out = {"t": uniform(rng, 1)[0] * np.ones(()), "x": gaussian(rng, B, d)}
    if probe == "rademacher":
        out["v"] = rng.choice([-1.0, 1.0], (B, d))
    elif probe == "gaussian":
        out["v"] = gaussian(rng, B, d)
    if step:
        out["h"] = np.asarray(uniform(rng, 1, low=0.05, high=0.3)[0])
    return out | _weights(rng, d)


def _ll_inputs(rng):
    return {"x": gaussian(rng, B, D)} | _weights(rng)


ALL = ("t", "x") + WEIGHTS
DIV = ALL[:-1]  # the divergence does not depend on b3 (torch's autograd refuses unused inputs)


CASES = (
    FunctionCase("cnf/mlp_field", "mlp_field", _field_inputs, grad_wrt=ALL, reference=ref_field),
    FunctionCase("cnf/mlp_divergence_exact", "mlp_divergence_exact", _field_inputs, grad_wrt=DIV,
                 reference=ref_divergence_exact),
    FunctionCase("cnf/mlp_divergence_exact_3d", "mlp_divergence_exact", lambda r: _field_inputs(r, d=3),
                 grad_wrt=("x", "w1", "w3"), reference=ref_divergence_exact),
    FunctionCase("cnf/mlp_divergence_hutchinson_rademacher", "mlp_divergence_hutchinson",
                 lambda r: _field_inputs(r, probe="rademacher"), grad_wrt=DIV + ("v",),
                 reference=ref_divergence_hutchinson),
    FunctionCase("cnf/mlp_divergence_hutchinson_gaussian", "mlp_divergence_hutchinson",
                 lambda r: _field_inputs(r, d=3, probe="gaussian"), grad_wrt=("x", "v", "w1", "w2"),
                 reference=ref_divergence_hutchinson),
    FunctionCase("cnf/mlp_cnf_dynamics_exact", "mlp_cnf_dynamics", _field_inputs, grad_wrt=ALL,
                 reference=ref_cnf_dynamics),
    FunctionCase("cnf/mlp_cnf_dynamics_hutchinson", "mlp_cnf_dynamics", lambda r: _field_inputs(r, probe="rademacher"),
                 grad_wrt=ALL, reference=ref_cnf_dynamics),
    FunctionCase("cnf/mlp_euler_step", "mlp_euler_step", lambda r: _field_inputs(r, step=True),
                 grad_wrt=ALL + ("h",), reference=ref_step("euler")),
    FunctionCase("cnf/mlp_rk4_step", "mlp_rk4_step", lambda r: _field_inputs(r, step=True), grad_wrt=ALL + ("h",),
                 reference=ref_step("rk4_classic")),
    FunctionCase("cnf/mlp_log_likelihood_euler", "mlp_log_likelihood", _ll_inputs, grad_wrt=("x",) + WEIGHTS,
                 static={"method": "euler", "steps": 6}, reference=ref_log_likelihood),
    FunctionCase("cnf/mlp_log_likelihood_midpoint", "mlp_log_likelihood", _ll_inputs, grad_wrt=("x", "w1", "w3"),
                 static={"method": "midpoint", "steps": 4}, reference=ref_log_likelihood),
    FunctionCase("cnf/mlp_log_likelihood_rk4_38", "mlp_log_likelihood", _ll_inputs, grad_wrt=("x",) + WEIGHTS,
                 static={"method": "rk4", "steps": 4}, reference=ref_log_likelihood),
)
