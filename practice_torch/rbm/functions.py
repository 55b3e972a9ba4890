"""The RBM's math in PyTorch: the twin of ``theory_jax/rbm.py``, with the same names, arguments and sections.

E(v, h) = -a.v - b.h - v W h; F(v) = -a.v - sum_j softplus(b_j + (v W)_j); p(h_j = 1|v) = sigmoid(b_j + (v W)_j),
p(v_i = 1|h) = sigmoid(a_i + (W h)_i); CD-k; AIS from independent Bernoullis p_0(v) ∝ exp(a0.v) through F_beta
(eq. 5 of the derivation). Randomness is an argument: every sampler takes its uniforms. weight: (D, H).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


# 1. Energy and free energy ----------------------------------------------------------------------------------
def energy(v, h, weight, visible_bias, hidden_bias):
    """E(v, h) = -a.v - b.h - v W h (eq. 1). v: (B, D), h: (B, H), weight: (D, H) -> (B,)."""
    return -v @ visible_bias - h @ hidden_bias - torch.sum((v @ weight) * h, dim=-1)


def free_energy(v, weight, visible_bias, hidden_bias):
    """F(v) = -a.v - sum_j softplus(b_j + (v W)_j) (eq. 3), so that p(v) = exp(-F(v)) / Z. v: (B, D) -> (B,)."""
    return -v @ visible_bias - F.softplus(hidden_bias + v @ weight).sum(-1)


# 2. The factorised conditionals and Gibbs sampling ------------------------------------------------------------
def hidden_probs(v, weight, hidden_bias):
    """p(h_j = 1 | v) = sigmoid(b_j + (v W)_j) (eq. 2). v: (B, D) -> (B, H)."""
    return torch.sigmoid(hidden_bias + v @ weight)


def visible_probs(h, weight, visible_bias):
    """p(v_i = 1 | h) = sigmoid(a_i + (W h)_i) (eq. 2). h: (B, H) -> (B, D)."""
    return torch.sigmoid(visible_bias + h @ weight.T)


def bernoulli_sample(probs, uniform):
    """1[u < p]: a Bernoulli(p) draw from a uniform u in [0, 1) of the same shape (no gradient)."""
    return (uniform < probs).to(probs.dtype)


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
    """-d mean F(v) / d theta: {'hidden_bias': mean p(h|v), 'visible_bias': mean v, 'weight': v^T p(h|v) / B (D, H)}
    (keys sorted, as JAX orders a dict)."""
    p = hidden_probs(v, weight, hidden_bias)
    return {"hidden_bias": p.mean(0), "visible_bias": v.mean(0), "weight": v.T @ p / v.shape[0]}


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
def binary_states(n, dtype=torch.float64, device=None):
    """Every state of n binary units, (2^n, n), in counting order (the last unit fastest)."""
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return ((torch.arange(2**n, device=device)[:, None] >> shifts) & 1).to(dtype)


def log_partition_by_enumeration(weight, visible_bias, hidden_bias):
    """log Z, summing over the smaller layer (2^min(D, H) terms). Exact."""
    d, h = weight.shape
    if h <= d:
        states = binary_states(h, weight.dtype, weight.device)
        return torch.logsumexp(states @ hidden_bias + F.softplus(visible_bias + states @ weight.T).sum(-1), dim=0)
    states = binary_states(d, weight.dtype, weight.device)
    return torch.logsumexp(-free_energy(states, weight, visible_bias, hidden_bias), dim=0)


def log_likelihood(v, log_partition, weight, visible_bias, hidden_bias):
    """log p(v) = -F(v) - log Z (eq. 3). v: (B, D) -> (B,)."""
    return -free_energy(v, weight, visible_bias, hidden_bias) - log_partition


def base_log_partition(base_visible_bias, num_hidden):
    """log Z_0 of the AIS base model p_0(v, h) ∝ exp(a0.v): sum_i softplus(a0_i) + H log 2."""
    return F.softplus(base_visible_bias).sum() + num_hidden * math.log(2.0)


def annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias):
    """F_beta(v) = -(1 - beta) a0.v - beta a.v - sum_j softplus(beta (b_j + (v W)_j)) (eq. 5). beta: () or (B,)."""
    beta = torch.as_tensor(beta, dtype=v.dtype, device=v.device)
    pre = beta[..., None] * (hidden_bias + v @ weight)
    return -(1 - beta) * (v @ base_visible_bias) - beta * (v @ visible_bias) - F.softplus(pre).sum(-1)


def ais_step(v, log_weight, beta_prev, beta, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    """One AIS step (eq. 6): log w += F_{beta_prev}(v) - F_beta(v), then a Gibbs sweep that leaves p_beta invariant,
    h ~ sigmoid(beta (b + v W)), v' ~ sigmoid((1 - beta) a0 + beta (a + W h)). -> (v', log_weight')."""
    log_weight = (log_weight + annealed_free_energy(v, beta_prev, base_visible_bias, weight, visible_bias, hidden_bias)
                  - annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias))
    h = bernoulli_sample(torch.sigmoid(beta * (hidden_bias + v @ weight)), u_h)
    v = bernoulli_sample(torch.sigmoid((1 - beta) * base_visible_bias + beta * (visible_bias + h @ weight.T)), u_v)
    return v, log_weight


def ais_log_weights(u_0, betas, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
    """M AIS runs: v_1 ~ p_0 from u_0 (M, D), then ``ais_step`` at betas[k], k = 1..K (betas (K + 1,) from 0 to 1;
    u_h (M, K, H), u_v (M, K, D)). -> log w (M,)."""
    v = bernoulli_sample(torch.sigmoid(base_visible_bias).expand_as(u_0), u_0)
    log_w = torch.zeros(u_0.shape[0], dtype=u_0.dtype, device=u_0.device)
    for k in range(1, len(betas)):
        v, log_w = ais_step(v, log_w, betas[k - 1], betas[k], u_h[:, k - 1], u_v[:, k - 1], base_visible_bias, weight,
                            visible_bias, hidden_bias)
    return log_w


def ais_log_partition(log_weights, base_log_partition):
    """log Z ≈ log Z_0 + log mean_m w_m (a log-sum-exp over the runs' log w (M,)) -> ()."""
    return base_log_partition + torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
