"""The ``rbm`` derivation (``python -m theory_jax rbm``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/rbm.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import logsumexp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.rbm import (
    ais_log_partition,
    ais_log_weights,
    ais_step,
    annealed_free_energy,
    base_log_partition,
    binary_states,
    cd_gradient,
    energy,
    free_energy,
    gibbs_step,
    hidden_probs,
    log_likelihood,
    log_partition_by_enumeration,
    sufficient_statistics,
    visible_probs,
)

TITLE = "restricted Boltzmann machines"
LECTURES = "restricted Boltzmann machines; contrastive divergence; annealed importance sampling"


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
