"""Spec cases for ``rbm``: energy, free energy, conditionals, Gibbs sweeps, CD-k, exact log Z, and AIS.

Every function runs in ``theory_jax.rbm`` and ``practice_torch.rbm`` on the same NumPy inputs in float64 (the
uniforms of every sampler included), gradients wherever every output is differentiable: not where an output is a
sample (``1[u < p]``: ``gibbs_step``, ``cd_gradient`` and ``ais_step`` return their chains' new states). The gradient
CD-k stands for is checked as the gradient of the ``RBM``'s contrastive loss (its module and step cases), and AIS's
log-weights as functions of the parameters through ``ais_log_weights``. Third witnesses, written out in NumPy/SciPy:
the free energy and log Z by summing over every hidden (or joint) state, the conditionals with
``scipy.special.expit``, the Gibbs sweeps, CD-k and the AIS recursions as plain loops. The networks: the flax and
torch ``RBM`` under the converter (float32), and three AdamW steps on its contrastive loss.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import expit, logsumexp

from shared_specs.case import FunctionCase, ModuleCase, StepCase, gaussian, uniform

B, D, H, K = 5, 6, 3, 3  # batch, visible, hidden, Gibbs sweeps
CHAINS = 64  # the samplers' cases: enough draws 1[u < p] that a wrong p moves some of them
M, STEPS = 4, 6  # AIS runs and steps
PARAMS = ("weight", "visible_bias", "hidden_bias")


# Input makers ------------------------------------------------------------------------------------------------
def _binary(r, *shape):
    return (uniform(r, *shape) < 0.5).astype("float64")


def _params(r, d=D, h=H):
    return {"weight": gaussian(r, d, h, scale=0.8), "visible_bias": gaussian(r, d, scale=0.5),
            "hidden_bias": gaussian(r, h, scale=0.5)}


def _gibbs(r):
    return {"v": _binary(r, CHAINS, D), "u_h": uniform(r, CHAINS, H), "u_v": uniform(r, CHAINS, D), **_params(r)}


def _chain(r):
    return {"v": _binary(r, B, D), "u_h": uniform(r, B, K, H), "u_v": uniform(r, B, K, D), **_params(r)}


def _cd(persistent):
    def make(r):
        v = _binary(r, B, D)
        start = _binary(r, B, D) if persistent else v
        return {"v": v, "chain_start": start, "u_h": uniform(r, B, K, H), "u_v": uniform(r, B, K, D), **_params(r)}
    return make


def _annealed(r):
    return {"v": _binary(r, B, D), "beta": uniform(r, B), "base_visible_bias": gaussian(r, D), **_params(r)}


def _ais_step(r):
    return {"v": _binary(r, CHAINS, D), "log_weight": gaussian(r, CHAINS), "beta_prev": np.float64(0.3),
            "beta": np.float64(0.45), "u_h": uniform(r, CHAINS, H), "u_v": uniform(r, CHAINS, D),
            "base_visible_bias": gaussian(r, D), **_params(r)}


def _ais(r):
    return {"u_0": uniform(r, M, D), "betas": np.linspace(0.0, 1.0, STEPS + 1) ** 2, "u_h": uniform(r, M, STEPS, H),
            "u_v": uniform(r, M, STEPS, D), "base_visible_bias": gaussian(r, D), **_params(r)}


# Independent references (NumPy, SciPy) ----------------------------------------------------------------------
def _states(n):
    return np.array(list(itertools.product((0.0, 1.0), repeat=n)))


def _softplus(x):
    return np.logaddexp(0.0, x)


def ref_energy(v, h, weight, visible_bias, hidden_bias):
    return -np.einsum("bi,i->b", v, visible_bias) - h @ hidden_bias - np.einsum("bi,ij,bj->b", v, weight, h)


def ref_free_energy(v, weight, visible_bias, hidden_bias):
    """-log sum_h exp(-E(v, h)), enumerating the 2^H hidden states."""
    h = _states(weight.shape[1])
    return -logsumexp((v @ visible_bias)[:, None] + h @ hidden_bias + v @ weight @ h.T, axis=1)


def ref_hidden_probs(v, weight, hidden_bias):
    return expit(hidden_bias + v @ weight)


def ref_visible_probs(h, weight, visible_bias):
    return expit(visible_bias + h @ weight.T)


def ref_gibbs_step(v, u_h, u_v, weight, visible_bias, hidden_bias):
    h = (u_h < expit(hidden_bias + v @ weight)).astype(float)
    return h, (u_v < expit(visible_bias + h @ weight.T)).astype(float)


def ref_gibbs_chain(v, u_h, u_v, weight, visible_bias, hidden_bias):
    for t in range(u_h.shape[1]):
        _, v = ref_gibbs_step(v, u_h[:, t], u_v[:, t], weight, visible_bias, hidden_bias)
    return v


def ref_cd_gradient(v, chain_start, u_h, u_v, weight, visible_bias, hidden_bias):
    """Data statistics minus chain-end statistics, example by example (outer products summed in a loop)."""
    v_k = ref_gibbs_chain(chain_start, u_h, u_v, weight, visible_bias, hidden_bias)
    grad = {name: 0.0 for name in sorted(PARAMS)}
    for x, y in zip(v, v_k):
        px, py = expit(hidden_bias + x @ weight), expit(hidden_bias + y @ weight)
        grad["weight"] = grad["weight"] + (np.outer(x, px) - np.outer(y, py)) / len(v)
        grad["visible_bias"] = grad["visible_bias"] + (x - y) / len(v)
        grad["hidden_bias"] = grad["hidden_bias"] + (px - py) / len(v)
    return grad, v_k


def ref_log_partition(weight, visible_bias, hidden_bias):
    """log sum over every joint state (v, h) of exp(-E(v, h))."""
    v, h = _states(weight.shape[0]), _states(weight.shape[1])
    return logsumexp((v @ visible_bias)[:, None] + (h @ hidden_bias)[None] + v @ weight @ h.T)


def ref_annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias):
    """-log sum_h of p_0(v)^(1 - beta) exp(-E(v, h))^beta, enumerating h (eq. 5 with the hidden units summed out)."""
    h = _states(weight.shape[1])
    neg_e = (v @ visible_bias)[:, None] + h @ hidden_bias + v @ weight @ h.T
    return -logsumexp(((1 - beta) * (v @ base_visible_bias))[:, None] + beta[:, None] * neg_e, axis=1)


def ref_ais_step(v, log_weight, beta_prev, beta, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    def f(x, b):
        return ref_annealed_free_energy(x, np.full(len(x), b), base_visible_bias, weight, visible_bias, hidden_bias)

    log_weight = log_weight + f(v, beta_prev) - f(v, beta)
    h = (u_h < expit(beta * (hidden_bias + v @ weight))).astype(float)
    v = (u_v < expit((1 - beta) * base_visible_bias + beta * (visible_bias + h @ weight.T))).astype(float)
    return v, log_weight


def ref_ais_log_weights(u_0, betas, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    v, log_w = (u_0 < expit(base_visible_bias)).astype(float), np.zeros(len(u_0))
    for k in range(1, len(betas)):
        v, log_w = ref_ais_step(v, log_w, betas[k - 1], betas[k], u_h[:, k - 1], u_v[:, k - 1], base_visible_bias,
                                weight, visible_bias, hidden_bias)
    return log_w


def ref_ais_log_partition(log_weights, base_log_partition):
    return base_log_partition + np.log(np.mean(np.exp(log_weights)))


def ref_base_log_partition(base_visible_bias, num_hidden):
    """log of sum over v of exp(a0.v) times the 2^H hidden states, the product written out."""
    return np.log(np.prod(1 + np.exp(base_visible_bias))) + num_hidden * np.log(2.0)


def _rbm_batch(r):
    return {"v": _binary(r, B, D).astype("float32"), "chain_start": _binary(r, B, D).astype("float32"),
            "u_h": uniform(r, B, K, H, dtype="float32"), "u_v": uniform(r, B, K, D, dtype="float32")}


ADAMW = {"name": "adamw", "lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
NET = {"visible": D, "hidden": H}

CASES = (
    # energy and free energy ---------------------------------------------------------------------------------------
    FunctionCase("rbm/energy", "energy", lambda r: {"v": _binary(r, B, D), "h": _binary(r, B, H), **_params(r)},
                 grad_wrt=PARAMS, reference=ref_energy),
    FunctionCase("rbm/free_energy", "free_energy", lambda r: {"v": _binary(r, B, D), **_params(r)},
                 grad_wrt=PARAMS, reference=ref_free_energy),
    # conditionals and Gibbs sweeps ------------------------------------------------------------------------------
    FunctionCase("rbm/hidden_probs", "hidden_probs",
                 lambda r: {"v": _binary(r, B, D), "weight": gaussian(r, D, H), "hidden_bias": gaussian(r, H)},
                 grad_wrt=("weight", "hidden_bias"), reference=ref_hidden_probs),
    FunctionCase("rbm/visible_probs", "visible_probs",
                 lambda r: {"h": _binary(r, B, H), "weight": gaussian(r, D, H), "visible_bias": gaussian(r, D)},
                 grad_wrt=("weight", "visible_bias"), reference=ref_visible_probs),
    FunctionCase("rbm/gibbs_step", "gibbs_step", _gibbs, reference=ref_gibbs_step),
    FunctionCase("rbm/gibbs_chain", "gibbs_chain", _chain, reference=ref_gibbs_chain),
    # the CD-k gradient ---------------------------------------------------------------------------------------------
    FunctionCase("rbm/cd_gradient", "cd_gradient", _cd(False), reference=ref_cd_gradient),
    FunctionCase("rbm/cd_gradient/persistent", "cd_gradient", _cd(True), reference=ref_cd_gradient),
    # log Z: exact, and by AIS ---------------------------------------------------------------------------------------
    FunctionCase("rbm/log_partition_by_enumeration/hidden", "log_partition_by_enumeration", lambda r: _params(r),
                 grad_wrt=PARAMS, reference=ref_log_partition),
    FunctionCase("rbm/log_partition_by_enumeration/visible", "log_partition_by_enumeration",
                 lambda r: _params(r, d=3, h=5), grad_wrt=PARAMS, reference=ref_log_partition),
    FunctionCase("rbm/base_log_partition", "base_log_partition", lambda r: {"base_visible_bias": gaussian(r, D)},
                 grad_wrt=("base_visible_bias",), static={"num_hidden": H}, reference=ref_base_log_partition),
    FunctionCase("rbm/annealed_free_energy", "annealed_free_energy", _annealed,
                 grad_wrt=("beta", "base_visible_bias", *PARAMS), reference=ref_annealed_free_energy),
    FunctionCase("rbm/ais_step", "ais_step", _ais_step, reference=ref_ais_step),
    FunctionCase("rbm/ais_log_weights", "ais_log_weights", _ais, grad_wrt=("base_visible_bias", *PARAMS),
                 reference=ref_ais_log_weights),
    FunctionCase("rbm/ais_log_partition", "ais_log_partition",
                 lambda r: {"log_weights": gaussian(r, 7, scale=2.0), "base_log_partition": np.float64(3.5)},
                 grad_wrt=("log_weights",), reference=ref_ais_log_partition),
    # the network under the converter ----------------------------------------------------------------------------
    ModuleCase("rbm/RBM", "RBM", NET, lambda r: {"v": _binary(r, B, D).astype("float32")}),
    ModuleCase("rbm/RBM/contrastive_loss", "RBM", NET, _rbm_batch, method="contrastive_loss", level="loglik"),
    StepCase("rbm/adamw_steps", "RBM", NET, lambda r: [_rbm_batch(r) for _ in range(3)], ADAMW,
             method="contrastive_loss"),
)
