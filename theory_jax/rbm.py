"""Restricted Boltzmann machines: energy, free energy, factorised conditionals, contrastive divergence, AIS.

Lectures: restricted Boltzmann machines; contrastive divergence (Hinton 2002; Tieleman 2008 for persistent CD;
Salakhutdinov & Murray 2008 for the log-likelihood by annealed importance sampling; Neal 2001 for AIS itself).

A Bernoulli-Bernoulli RBM on v in {0, 1}^D, h in {0, 1}^H with weight W (D, H), visible bias a (D,), hidden bias b (H,):
    E(v, h) = -a.v - b.h - v W h,        p(v, h) = exp(-E(v, h)) / Z                              (eq. 1)
    p(h_j = 1 | v) = sigmoid(b_j + (v W)_j),   p(v_i = 1 | h) = sigmoid(a_i + (W h)_i)              (eq. 2)
    F(v) = -log sum_h exp(-E(v, h)) = -a.v - sum_j softplus(b_j + (v W)_j),  p(v) = exp(-F(v)) / Z  (eq. 3)
    d log p(v) / d theta = -dF(v)/d theta + E_model[dF/d theta]: data term minus model term        (eq. 4)
CD-k replaces the model term by the statistics at the end of k Gibbs steps started at the data (PCD: started at
persistent chains). AIS anneals from a base model p_0(v) ∝ exp(a0.v) (independent Bernoullis) to the RBM through
    F_beta(v) = -(1 - beta) a0.v - beta a.v - sum_j softplus(beta (b_j + (v W)_j)),  0 = beta_0 < ... < beta_K = 1 (eq. 5)
and Z / Z_0 = E[w], w = prod_k exp(F_{beta_{k-1}}(v_k) - F_{beta_k}(v_k)) along Gibbs transitions that keep each
p_beta invariant.                                                                                     (eq. 6)
Randomness is an argument: every sampler takes its uniforms. Twin: ``practice_torch/rbm/functions.py`` (same names);
the networks: ``RBM`` here and in ``practice_torch/rbm/networks.py``; cases: ``shared_specs/rbm.py``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import sigmoid, softplus
from jax.scipy.special import logsumexp


# 1. Energy and free energy ----------------------------------------------------------------------------------
def energy(v, h, weight, visible_bias, hidden_bias):
    """E(v, h) = -a.v - b.h - v W h (eq. 1). v: (B, D), h: (B, H), weight: (D, H) -> (B,)."""
    return -v @ visible_bias - h @ hidden_bias - jnp.sum((v @ weight) * h, axis=-1)


def free_energy(v, weight, visible_bias, hidden_bias):
    """F(v) = -a.v - sum_j softplus(b_j + (v W)_j) (eq. 3), so that p(v) = exp(-F(v)) / Z. v: (B, D) -> (B,)."""
    return -v @ visible_bias - jnp.sum(softplus(hidden_bias + v @ weight), axis=-1)


# 2. The factorised conditionals and Gibbs sampling ------------------------------------------------------------
def hidden_probs(v, weight, hidden_bias):
    """p(h_j = 1 | v) = sigmoid(b_j + (v W)_j) (eq. 2). v: (B, D) -> (B, H)."""
    return sigmoid(hidden_bias + v @ weight)


def visible_probs(h, weight, visible_bias):
    """p(v_i = 1 | h) = sigmoid(a_i + (W h)_i) (eq. 2). h: (B, H) -> (B, D)."""
    return sigmoid(visible_bias + h @ weight.T)


def bernoulli_sample(probs, uniform):
    """1[u < p]: a Bernoulli(p) draw from a uniform u in [0, 1) of the same shape (no gradient)."""
    return (uniform < probs).astype(probs.dtype)


def gibbs_step(v, u_h, u_v, weight, visible_bias, hidden_bias):
    """One block Gibbs sweep: h ~ p(h | v), then v' ~ p(v | h), from uniforms u_h (B, H), u_v (B, D). -> (h, v')."""
    h = bernoulli_sample(hidden_probs(v, weight, hidden_bias), u_h)
    return h, bernoulli_sample(visible_probs(h, weight, visible_bias), u_v)


def gibbs_chain(v, u_h, u_v, weight, visible_bias, hidden_bias):
    """k Gibbs sweeps from v (B, D); u_h: (B, k, H), u_v: (B, k, D) -> v_k (B, D)."""
    for t in range(u_h.shape[1]):
        _, v = gibbs_step(v, u_h[:, t], u_v[:, t], weight, visible_bias, hidden_bias)
    return v


# 3. The log-likelihood gradient and contrastive divergence ----------------------------------------------------
def sufficient_statistics(v, weight, hidden_bias):
    """-d mean F(v) / d theta, the batch mean of the expected sufficient statistics given v (B, D):
    {'hidden_bias': mean p(h|v) (H,), 'visible_bias': mean v (D,), 'weight': v^T p(h|v) / B (D, H)} (keys sorted,
    as JAX orders a dict)."""
    p = hidden_probs(v, weight, hidden_bias)
    return {"hidden_bias": jnp.mean(p, axis=0), "visible_bias": jnp.mean(v, axis=0), "weight": v.T @ p / v.shape[0]}


def cd_gradient(v, chain_start, u_h, u_v, weight, visible_bias, hidden_bias):
    """The CD-k estimate of d mean log p(v) / d theta (Hinton 2002; eq. 4): the data statistics minus those at the end
    of k = u_h.shape[1] Gibbs sweeps from ``chain_start`` (the data v: CD-k; persistent chains: PCD). v: (B, D) the
    data; chain_start: (B, D); u_h: (B, k, H), u_v: (B, k, D) the sweeps' uniforms (``gibbs_chain``); weight: (D, H),
    visible_bias: (D,), hidden_bias: (H,) the RBM's parameters
    -> ({'weight': (D, H), 'visible_bias': (D,), 'hidden_bias': (H,)}, v_k: (B, D))."""
    v_k = gibbs_chain(chain_start, u_h, u_v, weight, visible_bias, hidden_bias)
    data, model = sufficient_statistics(v, weight, hidden_bias), sufficient_statistics(v_k, weight, hidden_bias)
    return {k: data[k] - model[k] for k in data}, v_k


# 4. The partition function: exact by enumeration, estimated by AIS ----------------------------------------------
def binary_states(n, dtype=jnp.float64):
    """Every state of n binary units, (2^n, n), in counting order (the last unit fastest)."""
    return jnp.asarray(((np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1), dtype=dtype)


def log_partition_by_enumeration(weight, visible_bias, hidden_bias):
    """log Z, summing over the smaller layer: log sum_h exp(b.h + sum_i softplus(a_i + (W h)_i)) when H <= D,
    else log sum_v exp(-F(v)). Exact; 2^min(D, H) terms."""
    d, h = weight.shape
    if h <= d:
        states = binary_states(h, weight.dtype)
        return logsumexp(states @ hidden_bias + jnp.sum(softplus(visible_bias + states @ weight.T), axis=-1))
    return logsumexp(-free_energy(binary_states(d, weight.dtype), weight, visible_bias, hidden_bias))


def log_likelihood(v, log_partition, weight, visible_bias, hidden_bias):
    """log p(v) = -F(v) - log Z (eq. 3). v: (B, D) -> (B,)."""
    return -free_energy(v, weight, visible_bias, hidden_bias) - log_partition


def base_log_partition(base_visible_bias, num_hidden):
    """log Z_0 of the AIS base model p_0(v, h) ∝ exp(a0.v) (beta = 0 in eq. 5): sum_i softplus(a0_i) + H log 2."""
    return jnp.sum(softplus(base_visible_bias)) + num_hidden * math.log(2.0)


def annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias):
    """F_beta(v) = -(1 - beta) a0.v - beta a.v - sum_j softplus(beta (b_j + (v W)_j)) (eq. 5): the base model at
    beta = 0, the RBM at beta = 1. v: (B, D); beta: () or (B,) -> (B,)."""
    beta = jnp.asarray(beta)
    pre = beta[..., None] * (hidden_bias + v @ weight)
    return -(1 - beta) * (v @ base_visible_bias) - beta * (v @ visible_bias) - jnp.sum(softplus(pre), axis=-1)


def ais_step(v, log_weight, beta_prev, beta, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    """One AIS step (eq. 6): log w += F_{beta_prev}(v) - F_beta(v), then a Gibbs sweep that leaves p_beta invariant,
    h ~ sigmoid(beta (b + v W)), v' ~ sigmoid((1 - beta) a0 + beta (a + W h)). v: (M, D), log_weight: (M,),
    u_h: (M, H), u_v: (M, D) -> (v', log_weight')."""
    log_weight = (log_weight + annealed_free_energy(v, beta_prev, base_visible_bias, weight, visible_bias, hidden_bias)
                  - annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias))
    h = bernoulli_sample(sigmoid(beta * (hidden_bias + v @ weight)), u_h)
    v = bernoulli_sample(sigmoid((1 - beta) * base_visible_bias + beta * (visible_bias + h @ weight.T)), u_v)
    return v, log_weight


def ais_log_weights(u_0, betas, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    """M AIS runs: v_1 ~ p_0 from u_0 (M, D), then ``ais_step`` at betas[k] for k = 1..K (betas (K + 1,) from 0 to 1;
    u_h (M, K, H), u_v (M, K, D)). -> log w (M,), whose mean exp estimates Z / Z_0 without bias."""
    v = bernoulli_sample(jnp.broadcast_to(sigmoid(base_visible_bias), u_0.shape), u_0)

    def body(carry, xs):
        beta_prev, beta, uh, uv = xs
        return ais_step(*carry, beta_prev, beta, uh, uv, base_visible_bias, weight, visible_bias, hidden_bias), None

    (_, log_w), _ = jax.lax.scan(body, (v, jnp.zeros(u_0.shape[0], u_0.dtype)),
                                 (betas[:-1], betas[1:], jnp.swapaxes(u_h, 0, 1), jnp.swapaxes(u_v, 0, 1)))
    return log_w


def ais_log_partition(log_weights, base_log_partition):
    """log Z ≈ log Z_0 + log mean_m w_m (a log-sum-exp over the M runs' log w (M,)) -> ()."""
    return base_log_partition + logsumexp(log_weights) - math.log(log_weights.shape[0])


# 5. The network ------------------------------------------------------------------------------------------------
class RBM(nn.Module):
    """The RBM's parameters (``weight`` (D, H), ``visible_bias``, ``hidden_bias``: the torch names and layout) and the
    functions above as methods."""

    visible: int
    hidden: int

    def setup(self):
        self.weight = self.param("weight", nn.initializers.normal(0.01), (self.visible, self.hidden))
        self.visible_bias = self.param("visible_bias", nn.initializers.zeros, (self.visible,))
        self.hidden_bias = self.param("hidden_bias", nn.initializers.zeros, (self.hidden,))

    def params(self):
        return self.weight, self.visible_bias, self.hidden_bias

    def __call__(self, v):
        """F(v) (B,)."""
        return free_energy(v, *self.params())

    def contrastive_loss(self, v, chain_start, u_h, u_v):
        """mean F(v) - mean F(v_k), v_k held fixed: its gradient is minus the CD-k estimate (``cd_gradient``)."""
        v_k = jax.lax.stop_gradient(gibbs_chain(chain_start, u_h, u_v, *self.params()))
        return jnp.mean(free_energy(v, *self.params())) - jnp.mean(free_energy(v_k, *self.params()))
