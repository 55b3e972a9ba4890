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
import sympy as sp
from jax.nn import sigmoid, softplus
from jax.scipy.special import logsumexp

from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "restricted Boltzmann machines"
LECTURES = "restricted Boltzmann machines; contrastive divergence; annealed importance sampling"


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


# 6. The derivation ---------------------------------------------------------------------------------------------
def _tiny_rbm(visible: int = 4, hidden: int = 3, scale: float = 1.0, seed: int = 0):
    """Every visible state (2^D, D), every hidden state (2^H, H) and float64 NumPy-drawn (weight, a, b); D = ``visible``,
    H = ``hidden`` (not ``d``: a notebook would take a function whose first parameter is ``d`` for a step)."""
    rng = np.random.default_rng(seed)
    params = (jnp.asarray(scale * rng.standard_normal((visible, hidden))), jnp.asarray(0.5 * rng.standard_normal(visible)),
              jnp.asarray(0.5 * rng.standard_normal(hidden)))
    return binary_states(visible), binary_states(hidden), params


@jax.jit
def _negative_energies(v, h, weight, visible_bias, hidden_bias):
    """-E(v, h) (``energy``) for every visible state (rows of v, (S, D)) and hidden state (rows of h, (R, H)) -> (S, R)."""
    s, r = v.shape[0], h.shape[0]
    return -energy(jnp.repeat(v, r, axis=0), jnp.tile(h, (s, 1)), weight, visible_bias, hidden_bias).reshape(s, r)


def _joint_log_probs(v, h, weight, visible_bias, hidden_bias):
    """log p(v, h) for every pair (2^D, 2^H), normalised by brute force over all 2^(D + H) states."""
    neg_e = _negative_energies(v, h, weight, visible_bias, hidden_bias)
    return neg_e - logsumexp(neg_e)


def _free_energy_by_enumeration(v, h, weight, visible_bias, hidden_bias):
    """-log sum_h exp(-E(v, h)) over the 2^H hidden states: (2^D,)."""
    return -logsumexp(_negative_energies(v, h, weight, visible_bias, hidden_bias), axis=1)


def _bernoulli_prob(x, probs):
    """prod_i p_i^x_i (1 - p_i)^(1 - x_i) for every row of x (S, n) and every row of probs (R, n) -> (R, S)."""
    return jnp.exp(jnp.log(probs) @ x.T + jnp.log1p(-probs) @ (1 - x).T)


@jax.jit
def _transition(v, h, params):
    """The Gibbs sweep's exact transition matrix over the visible states, T[v, v'] = sum_h p(h|v) p(v'|h)."""
    weight, a, b = params
    return _bernoulli_prob(h, hidden_probs(v, weight, b)) @ _bernoulli_prob(v, visible_probs(h, weight, a))


def _sympy_claims():
    """(F by summing h, its closed form), (p(h = 1|v) from the joint, sigmoid), (p(v1, v2|h), product) in SymPy."""
    a, b, w, v = sp.symbols("a b w v", real=True)
    joint = [sp.exp(a * v + b * hh + v * w * hh) for hh in (0, 1)]
    free = (-sp.log(sum(joint)), -a * v - sp.log(1 + sp.exp(b + w * v)))
    cond = (joint[1] / sum(joint), 1 / (1 + sp.exp(-(b + w * v))))
    a1, a2, w1, w2, h, v1, v2 = sp.symbols("a_1 a_2 w_1 w_2 h v_1 v_2", real=True)

    def unnorm(x1, x2):
        return sp.exp(a1 * x1 + a2 * x2 + (w1 * x1 + w2 * x2) * h)

    pair = unnorm(v1, v2) / sum(unnorm(x1, x2) for x1 in (0, 1) for x2 in (0, 1))
    product = (sp.exp((a1 + w1 * h) * v1) / (1 + sp.exp(a1 + w1 * h))
               * sp.exp((a2 + w2 * h) * v2) / (1 + sp.exp(a2 + w2 * h)))
    return free, cond, (pair, product)


@jax.jit
def _exact_gradient(v_data, v_all, params):
    """(jax.grad of mean log p(v_data) with log Z by enumeration, data term - model term by enumeration)."""
    weight, a, b = params

    def mean_log_lik(weight, a, b):
        return jnp.mean(log_likelihood(v_data, log_partition_by_enumeration(weight, a, b), weight, a, b))

    auto = jax.grad(mean_log_lik, argnums=(0, 1, 2))(weight, a, b)
    p_v = jnp.exp(log_likelihood(v_all, log_partition_by_enumeration(weight, a, b), weight, a, b))
    p_h = hidden_probs(v_all, weight, b)
    model = {"weight": (v_all * p_v[:, None]).T @ p_h, "visible_bias": p_v @ v_all, "hidden_bias": p_v @ p_h}
    data = sufficient_statistics(v_data, weight, b)
    return jnp.concatenate([g.ravel() for g in auto]), _flat({k: data[k] - model[k] for k in data})


def _per_state(v, weight, hidden_bias):
    """The sufficient statistics of each state of v (S, D) alone, flattened as ``_flat``: (S, D H + D + H)."""
    p = hidden_probs(v, weight, hidden_bias)
    return jnp.concatenate([(v[:, :, None] * p[:, None, :]).reshape(len(v), -1), v, p], axis=1)


def _flat(grads):
    return jnp.concatenate([grads[k].ravel() for k in ("weight", "visible_bias", "hidden_bias")])


def _ais(rng, runs, betas, base_visible_bias, params):
    """``ais_log_weights`` of ``runs`` runs along ``betas``, uniforms drawn from the NumPy ``rng``."""
    (d, h), steps = params[0].shape, len(betas) - 1
    return _ais_log_weights(jnp.asarray(rng.uniform(size=(runs, d))), betas,
                            jnp.asarray(rng.uniform(size=(runs, steps, h))), jnp.asarray(rng.uniform(size=(runs, steps, d))),
                            base_visible_bias, *params)


_ais_log_weights = jax.jit(ais_log_weights)


def _section_free_energy(d: Derivation, v, h, params):
    """The free energy sums the hidden units out: F(v) = -a.v - sum_j softplus(b_j + (vW)_j) (eq. 3)."""
    d.numeric("$F(v) = -\\log \\sum_h e^{-E(v, h)}$ on every visible state (`free_energy` against the sum over the "
              "8 hidden states)", free_energy(v, *params), _free_energy_by_enumeration(v, h, *params))
    (free_lhs, free_rhs), cond, factorised = _sympy_claims()
    d.symbolic("One visible and one hidden unit, in SymPy: $-\\log\\sum_{h\\in\\{0,1\\}} e^{av + bh + vwh} = "
               "-av - \\log(1 + e^{b + wv})$, the softplus of eq. 3", sp.expand_log(free_lhs - free_rhs, force=True), 0)
    return cond, factorised


def _section_conditionals(d: Derivation, v, h, params, cond, factorised):
    """The conditionals factorise into independent Bernoullis, p(h|v) and p(v|h) (eq. 2), checked against the joint."""
    weight, a, b = params
    (cond_lhs, cond_rhs), (pair, product) = cond, factorised
    joint = _joint_log_probs(v, h, *params)
    p_h_given_v = jnp.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    d.symbolic("...and $p(h = 1\\mid v) = e^{-E(v,1)} / \\sum_h e^{-E(v,h)} = \\sigma(b + wv)$ (eq. 2)", cond_lhs,
               cond_rhs)
    d.symbolic("Two visible units: $p(v_1, v_2\\mid h) = p(v_1\\mid h)\\,p(v_2\\mid h)$ with "
               "$p(v_i\\mid h) = e^{(a_i + w_i h)v_i} / (1 + e^{a_i + w_i h})$: the normaliser "
               "$\\sum_{v}e^{\\dots}$ is a product", pair, product)
    d.numeric("$p(h\\mid v)$ from the joint (all $16\\times 8$ pairs) equals $\\prod_j \\mathrm{Bernoulli}(h_j; "
              "\\sigma(b_j + (vW)_j))$ (`hidden_probs`)", p_h_given_v, _bernoulli_prob(h, hidden_probs(v, weight, b)))
    p_v_given_h = jnp.exp(joint - logsumexp(joint, axis=0, keepdims=True)).T
    d.numeric("$p(v\\mid h)$ from the joint (all $8 \\times 16$ pairs) equals $\\prod_i \\mathrm{Bernoulli}(v_i; "
              "\\sigma(a_i + (Wh)_i))$ (`visible_probs`)", p_v_given_h, _bernoulli_prob(v, visible_probs(h, weight, a)))
    return joint


def _section_partition(d: Derivation, v, h, params, joint) -> None:
    """p(v) = exp(-F(v)) / Z, log Z through either layer, and -dF/dW in closed form."""
    weight, a, b = params
    log_z = log_partition_by_enumeration(*params)
    d.numeric("$\\log Z$ summed over the smaller layer (`log_partition_by_enumeration`, 8 hidden states) equals "
              "$\\log\\sum_{v,h} e^{-E(v,h)}$ over all 128 joint states", log_z,
              logsumexp(_negative_energies(v, h, *params)))
    d.numeric("...and the same $Z$ through the other layer: $Z(W, a, b) = Z(W^\\top, b, a)$ (16 visible states "
              "of the transposed RBM)", log_partition_by_enumeration(weight.T, b, a), log_z)
    d.numeric("$p(v) = e^{-F(v)}/Z$ is the marginal $\\sum_h p(v, h)$ of the joint on every visible state",
              jnp.exp(log_likelihood(v, log_z, *params)), jnp.exp(logsumexp(joint, axis=1)))
    fig, ax = new_figure()
    states = np.arange(len(v))
    ax.bar(states, np.asarray(jnp.exp(log_likelihood(v, log_z, *params))), color="C0", alpha=0.6,
           label="$e^{-F(v)}/Z$")
    ax.plot(states, np.asarray(jnp.exp(logsumexp(joint, axis=1))), "k_", ms=14, mew=2,
            label="$\\sum_h p(v, h)$ (128 joint states)")
    ax.set(xlabel="visible state $v$ (binary 0000 to 1111)", ylabel="$p(v)$", xticks=states[::3])
    ax.legend(fontsize="small")
    d.figure(fig, "The free energy gives the visible marginal directly: $e^{-F(v)}/Z$ (bars) equals the joint summed "
                  "over the hidden units (black dashes) on all 16 visible states of the 4 x 3 RBM.")
    batch = v[jnp.array([3, 9, 14])]
    g_auto = jax.grad(lambda w: jnp.sum(-free_energy(batch, w, a, b)))(weight)
    d.gradient("$-\\partial F(v)/\\partial W = v\\, p(h{=}1\\mid v)^\\top$, summed over 3 states (jax.grad against "
               "the closed form)", g_auto, batch.T @ hidden_probs(batch, weight, b))


def _section_gradient_and_gibbs(d: Derivation, rng: np.random.Generator):
    """A 10 x 6 RBM: the exact log-likelihood gradient (eq. 4), and the Gibbs sweep that leaves p(v) invariant."""
    vm, hm, pm = _tiny_rbm(10, 6, scale=1.5, seed=1)
    prototypes = rng.uniform(size=(3, 10)) < 0.5
    flips = rng.uniform(size=(60, 10)) < 0.1
    v_data = jnp.asarray(prototypes[rng.integers(0, 3, 60)] ^ flips, dtype=jnp.float64)
    d.say("A harder RBM, $D = 10$, $H = 6$ ($2^{10}$ visible states), weights $\\sim\\mathcal N(0, 1.5^2)$, and 60 "
          "data vectors: three random prototypes with 10% of their bits flipped.")
    auto, exact = _exact_gradient(v_data, vm, pm)
    d.gradient("The exact log-likelihood gradient (eq. 4): jax.grad of $\\frac1N\\sum_n\\log p(v_n)$ (with $\\log Z$ by "
               "enumeration) equals the data term $\\mathbb E_{\\mathrm{data}}[v\\,p(h|v)^\\top]$ minus the model term "
               "$\\mathbb E_{p(v)}[v\\,p(h|v)^\\top]$ (and the same for both biases), all 76 parameters",
               auto, exact)
    T = _transition(vm, hm, pm)
    p_model = jnp.exp(log_likelihood(vm, log_partition_by_enumeration(*pm), *pm))
    d.numeric("The Gibbs sweep leaves the model invariant: $\\sum_v p(v)\\,T(v, v') = p(v')$ with "
              "$T(v, v') = \\sum_h p(h|v)p(v'|h)$ (1024 x 1024)", p_model @ T, p_model, atol=1e-14)
    start = jnp.broadcast_to(v_data[0], (20000, 10))
    u = rng.uniform(size=(20000, 16))
    h1, v1 = jax.jit(gibbs_step)(start, jnp.asarray(u[:, :6]), jnp.asarray(u[:, 6:]), *pm)
    idx = int(np.sum(np.asarray(v_data[0]) * 2 ** np.arange(9, -1, -1)))
    d.monte_carlo("`gibbs_step` with given uniforms samples the sweep: over 20 000 sweeps from one data vector, the "
                  "means of $h$ and $v'$ are $p(h = 1|v)$ and $\\sum_{v'} T(v, v')\\,v'$", jnp.concatenate([h1, v1], 1),
                  jnp.concatenate([hidden_probs(v_data[:1], pm[0], pm[2])[0], T[idx] @ vm]))
    return vm, pm, v_data, exact, T, p_model


def _section_cd_exact(d: Derivation, vm, pm, v_data, exact, T, p_model):
    """The expected CD-k gradient exactly, from the chains' law p_data T^k: its bias falls as k grows."""
    p_data = jnp.zeros(1024).at[jnp.asarray(np.asarray(v_data) @ 2 ** np.arange(9, -1, -1), dtype=int)].add(1 / 60)
    data_stats, flat_states = _flat(sufficient_statistics(v_data, pm[0], pm[2])), _per_state(vm, pm[0], pm[2])
    ks = (1, 2, 5, 10, 20, 50)
    dist, expected, tv = p_data, {}, []
    for k in range(1, max(ks) + 1):
        dist = dist @ T
        expected[k] = data_stats - dist @ flat_states  # E[CD-k], exactly
        tv.append(0.5 * float(jnp.sum(jnp.abs(dist - p_model))))
    bias = np.array([float(jnp.linalg.norm(expected[k] - exact)) for k in ks])
    d.say("The expected CD-k gradient is exact too: the chains' law after $k$ sweeps from the data is "
          "$p_{\\mathrm{data}}T^k$. Its bias $\\|\\mathbb E[\\mathrm{CD}_k] - \\nabla\\ell\\|$ for $k$ = "
          + ", ".join(f"{k}: {e:.2g}" for k, e in zip(ks, bias)) + ".")
    d.inequality("The total variation $\\|p_{\\mathrm{data}}T^k - p\\|_{TV}$ never increases with $k$ (a Markov kernel "
                 f"contracts it), $k$ = 1..{max(ks)}: from {tv[0]:.3f} to {tv[-1]:.4f}", np.array(tv[1:]),
                 np.array(tv[:-1]), slack=1e-12)
    d.inequality("...and the exact bias of CD-k falls as $k$ grows, $k \\in \\{1, 2, 5, 10, 20, 50\\}$", bias[1:],
                 bias[:-1])
    return expected, tv, bias


def _section_cd_sampled(d: Derivation, rng: np.random.Generator, pm, v_data, exact, expected, tv, bias) -> None:
    """CD-k from sampled chains: unbiased for E[CD_k], and its measured error falls with k."""
    chains = 400  # per data vector
    v_rep = jnp.repeat(v_data, chains, axis=0)
    errors, ses = [], []
    mc_ks = (1, 2, 5)
    per_chain_cd = jax.jit(jax.vmap(lambda x, uh, uv: _flat(cd_gradient(x[None], x[None], uh[None], uv[None], *pm)[0])))
    for k in mc_ks:
        u_h, u_v = rng.uniform(size=(len(v_rep), k, 6)), rng.uniform(size=(len(v_rep), k, 10))
        per_chain = per_chain_cd(v_rep, jnp.asarray(u_h), jnp.asarray(u_v))
        if k == 1:
            d.monte_carlo(f"`cd_gradient` with given uniforms is an unbiased estimate of $\\mathbb E[\\mathrm{{CD}}_1]$: "
                          f"{len(v_rep)} chains ({chains} per data vector), all 76 components",
                          per_chain, expected[1])
        errors.append(float(jnp.linalg.norm(jnp.mean(per_chain, 0) - exact)))
        ses.append(float(jnp.sqrt(jnp.sum(jnp.var(per_chain, 0, ddof=1)) / len(v_rep))))
    listed = ", ".join(f"$k$ = {k}: {e:.4f}" for k, e in zip(mc_ks, errors))
    d.inequality(f"Measured with {len(v_rep)} chains per $k$: the error "
                 f"$\\|\\widehat{{\\mathrm{{CD}}}}_k - \\nabla\\ell\\|$ "
                 f"falls with $k$: {listed} (Monte Carlo error, the root of the summed variances over the chains: "
                 f"{max(ses):.4f} at most; each error plus its Monte Carlo error below the previous one minus its own)",
                 np.array(errors[1:]) + np.array(ses[1:]), np.array(errors[:-1]) - np.array(ses[:-1]))
    fig, axes = new_figure(columns=2)
    axes[0].plot(np.arange(1, len(tv) + 1), tv, ".-")
    axes[0].set(xlabel="Gibbs sweeps $k$", ylabel="$\\|p_{\\mathrm{data}}T^k - p\\|_{TV}$", yscale="log",
                title="the chains' law")
    axes[1].plot((1, 2, 5, 10, 20, 50), bias, "o-", label="exact bias of $E[\\mathrm{CD}_k]$")
    axes[1].errorbar(mc_ks, errors, yerr=ses, fmt="s", mfc="none", capsize=3, label=f"{len(v_rep)} sampled chains")
    axes[1].set(xlabel="Gibbs sweeps $k$", ylabel="$\\|\\mathrm{CD}_k - \\nabla\\ell\\|$", xscale="log", yscale="log",
                title="the CD-k gradient's error")
    axes[1].legend(fontsize="small")
    d.figure(fig, "Left: $k$ Gibbs sweeps from the data bring the chains' law towards the model. Right: so the bias "
                  "of CD-k falls as $k$ grows; sampled chains measure the same fall (up to their Monte Carlo error).")


def _section_ais_setup(d: Derivation, rng: np.random.Generator):
    """A 14 x 8 RBM with exact log Z; the AIS base model, the annealed free energy and its invariant transition."""
    va, ha, pa = _tiny_rbm(14, 8, scale=1.0, seed=3)
    log_z_a = float(log_partition_by_enumeration(*pa))
    marg = jnp.exp(log_likelihood(va, log_z_a, *pa)) @ va
    a0 = jnp.log(marg) - jnp.log1p(-marg)  # the base rates: the model's own marginals, as from its data
    d.say(f"AIS on a 14 x 8 RBM (weights $\\sim\\mathcal N(0, 1)$, exact $\\log Z = {log_z_a:.4f}$ by enumeration). "
          "Base model: independent Bernoullis with the RBM's visible marginals, $a_0 = \\mathrm{logit}\\,p(v_i = 1)$, "
          "as a data set's marginals would give.")
    d.numeric("$\\log Z_0 = \\sum_i \\mathrm{softplus}(a_{0,i}) + H\\log 2$ (`base_log_partition`) is the enumerated "
              "$\\log Z$ of the RBM with $W = 0$, $a = a_0$, $b = 0$", base_log_partition(a0, 8),
              log_partition_by_enumeration(jnp.zeros((14, 8)), a0, jnp.zeros(8)))
    d.numeric("$F_\\beta$ (eq. 5) is the RBM's $F$ at $\\beta = 1$ and the base model's $-a_0\\cdot v - H\\log 2$ at "
              "$\\beta = 0$ (all $2^{14}$ states)",
              jnp.concatenate([annealed_free_energy(va, 1.0, a0, *pa), annealed_free_energy(va, 0.0, a0, *pa)]),
              jnp.concatenate([free_energy(va, *pa), -va @ a0 - 8 * math.log(2.0)]))
    beta = 0.6
    log_p_beta = -annealed_free_energy(va, beta, a0, *pa)
    p_beta = jnp.exp(log_p_beta - logsumexp(log_p_beta))
    draws = np.searchsorted(np.cumsum(np.asarray(p_beta)), rng.uniform(size=20000) * float(jnp.sum(p_beta)))
    v_beta = va[jnp.asarray(np.minimum(draws, 2**14 - 1))]
    v_next, _ = jax.jit(ais_step)(v_beta, jnp.zeros(20000), beta, beta, jnp.asarray(rng.uniform(size=(20000, 8))),
                         jnp.asarray(rng.uniform(size=(20000, 14))), a0, *pa)
    d.monte_carlo("`ais_step`'s transition at $\\beta = 0.6$ keeps $p_\\beta$ invariant: 20 000 exact draws of "
                  "$p_\\beta$ (by enumeration) after one transition have $p_\\beta$'s 14 marginals", v_next, p_beta @ va)
    return pa, a0, log_z_a


def _section_ais(d: Derivation, rng: np.random.Generator, pa, a0, log_z_a) -> None:
    """AIS is unbiased for Z/Z_0, so by Jensen its log Z errs low, the less the more steps; the trainer's estimate."""
    runs, steps = 2000, 100
    betas = jnp.linspace(0.0, 1.0, steps + 1)
    log_w = _ais(rng, runs, betas, a0, pa)
    log_ratio = log_z_a - float(base_log_partition(a0, 8))
    d.monte_carlo(f"AIS is unbiased for the ratio: $\\mathbb E[w] = Z/Z_0$ ({runs} runs of {steps} linear steps; "
                  f"$w / (Z/Z_0)$ has mean 1)", jnp.exp(log_w - log_ratio), 1.0)
    short = _ais(rng, runs, jnp.linspace(0.0, 1.0, 11), a0, pa)
    d.inequality(f"By Jensen, $\\mathbb E[\\log w] \\le \\log (Z/Z_0)$: so AIS's $\\log\\hat Z$ errs low on average, "
                 f"the more the fewer its steps: mean $\\log w - \\log(Z/Z_0)$ = {float(jnp.mean(log_w)) - log_ratio:.4f} "
                 f"with {steps} steps, {float(jnp.mean(short)) - log_ratio:.4f} with 10 ({runs} runs each)",
                 jnp.array([jnp.mean(short), jnp.mean(log_w)]), jnp.array([jnp.mean(log_w), log_ratio]))
    fig, ax = new_figure()
    bins = np.linspace(float(jnp.min(short)) - log_ratio, float(jnp.max(short)) - log_ratio, 70)
    ax.hist(np.asarray(short) - log_ratio, bins=bins, histtype="step", density=True, label="10 steps")
    ax.hist(np.asarray(log_w) - log_ratio, bins=bins, histtype="step", density=True, label=f"{steps} steps")
    for series, color in ((short, "C0"), (log_w, "C1")):
        ax.axvline(float(jnp.mean(series)) - log_ratio, color=color, ls=":")
    ax.axvline(0.0, color="k", lw=1, label="$\\log(Z/Z_0)$")
    ax.set(xlabel="$\\log w - \\log(Z/Z_0)$ (nats)", ylabel="density")
    ax.legend(fontsize="small")
    d.figure(fig, f"AIS log-weights of {runs} runs, relative to the exact $\\log(Z/Z_0)$: with 10 annealing steps "
                  "they scatter far more widely than with 100, and their mean (dotted) falls further below 0 (Jensen).")
    runs, steps = 100, 1000
    betas = jnp.concatenate([jnp.linspace(0, 0.5, 200, endpoint=False), jnp.linspace(0.5, 0.9, 400, endpoint=False),
                             jnp.linspace(0.9, 1.0, 401)])
    log_w = _ais(rng, runs, betas, a0, pa)
    estimate = float(ais_log_partition(log_w, base_log_partition(a0, 8)))
    d.inequality(f"AIS as the trainer runs it ({runs} runs, {steps} steps, $\\beta$ spaced as Salakhutdinov & Murray "
                 f"2008: finer near 1): $\\log\\hat Z = {estimate:.4f}$ against the exact {log_z_a:.4f}, within 0.5 "
                 "nats", abs(estimate - log_z_a), 0.5)


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("rbm", TITLE, LECTURES, echo=echo)
    v, h, params = _tiny_rbm()  # every visible and hidden state of a 4 x 3 RBM, float64 weights
    d.say("A tiny RBM, $D = 4$ visible and $H = 3$ hidden units, weights drawn with NumPy in float64: small enough "
          "to write down $p(v, h)$ on all $2^{7} = 128$ joint states.")
    cond, factorised = _section_free_energy(d, v, h, params)
    joint = _section_conditionals(d, v, h, params, cond, factorised)
    _section_partition(d, v, h, params, joint)
    rng = np.random.default_rng(2)
    vm, pm, v_data, exact, T, p_model = _section_gradient_and_gibbs(d, rng)
    expected, tv, bias = _section_cd_exact(d, vm, pm, v_data, exact, T, p_model)
    _section_cd_sampled(d, rng, pm, v_data, exact, expected, tv, bias)
    pa, a0, log_z_a = _section_ais_setup(d, rng)
    _section_ais(d, rng, pa, a0, log_z_a)
    return d
