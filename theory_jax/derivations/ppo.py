"""The ``ppo`` derivation (``python -m theory_jax ppo``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/ppo.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.ppo import (
    clipped_surrogate_loss,
    gae,
    kl_k1,
    kl_k3,
)

TITLE = "proximal policy optimisation: the clipped surrogate, GAE and the KL penalty's estimators"
LECTURES = "proximal policy optimisation"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _section_gae(d: Derivation, rng: np.random.Generator) -> None:
    """GAE's backward recursion is its closed form, and interpolates between the Monte Carlo return and TD(0)."""
    b, t = 4, 7
    rewards, values = rng.standard_normal((b, t)), rng.standard_normal((b, t + 1))
    values[:, -1] = 0.0
    gamma, lam = 0.95, 0.8
    deltas = rewards + gamma * values[:, 1:] - values[:, :-1]
    closed = np.stack([np.sum(deltas[:, s:] * (gamma * lam) ** np.arange(t - s), 1) for s in range(t)], 1)
    d.numeric("GAE's recursion equals its closed form $A_t = \\sum_l (\\gamma\\lambda)^l \\delta_{t+l}$ (eq. 16)",
              gae(rewards, values, gamma, lam), closed)
    returns = np.stack([np.sum(rewards[:, s:] * gamma ** np.arange(t - s), 1) for s in range(t)], 1)
    d.numeric("$\\lambda = 1$: the advantage is the discounted return minus the value, $G_t - V(s_t)$ (unbiased, "
              "high variance)", gae(rewards, values, gamma, 1.0), returns - values[:, :-1])
    d.numeric("$\\lambda = 0$: the one-step TD error $\\delta_t$ (low variance, biased by $V$)",
              gae(rewards, values, gamma, 0.0), deltas)


def _section_clipped_surrogate(d: Derivation, rng: np.random.Generator) -> None:
    """The clipped surrogate: a pessimistic lower bound whose gradient stops where the ratio left 1 +- eps."""
    n, eps = 68, 0.2
    # ratios in about [0.6, 1.65], inside and outside the clip range, and 4 exactly on 1 -+ eps (log-ratios whose exp
    # is the bound to within 0.07 ulp, old log-probabilities 0), each bound with an advantage of either sign
    old = np.concatenate([rng.standard_normal(n - 4) - 2, np.zeros(4)])
    new = np.concatenate([old[:-4] + rng.uniform(-0.5, 0.5, n - 4), np.repeat(np.log([1 - eps, 1 + eps]), 2)])
    adv = np.concatenate([rng.standard_normal(n - 4), [1.0, -1.0, 1.0, -1.0]])
    ratio = np.exp(new - old)
    clipped = np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv)
    d.inequality("The clipped objective is a lower bound of the unclipped surrogate, per sample",
                 clipped, ratio * adv, slack=0.0)
    fig, ax = new_figure()
    for sign, name, color in ((1, "$A > 0$", "C0"), (-1, "$A < 0$", "C3")):
        pick = np.sign(adv) == sign
        order = np.argsort(ratio[pick])
        ax.plot(ratio[pick][order], (ratio * adv / np.abs(adv))[pick][order], ":", color=color, lw=1,
                label=f"unclipped $\\rho A/|A|$, {name}")
        ax.plot(ratio[pick], (clipped / np.abs(adv))[pick], "o", ms=3, color=color, label=f"clipped, {name}")
    for edge in (1 - eps, 1 + eps):
        ax.axvline(edge, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="probability ratio $\\rho = \\pi/\\pi_{\\mathrm{old}}$", ylabel="objective per unit $|A|$")
    ax.legend(fontsize=7)
    d.figure(fig, "The 68 samples' clipped objective: flat once the ratio has moved past $1 \\pm \\epsilon$ (dashed) in "
             "the advantage's direction, equal to the unclipped surrogate everywhere else, and never above it.")
    grad = jax.grad(clipped_surrogate_loss)(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv), eps)
    frozen = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    d.numeric(f"Its gradient is zero exactly where the ratio has moved past $1 \\pm \\epsilon$ in the advantage's "
              f"direction ({int(frozen.sum())} of {n} samples)...", grad[frozen], np.zeros(int(frozen.sum())))
    d.gradient("...and is the unclipped surrogate's, $-\\rho A / N$, everywhere else (including ratios past the "
               "range against the advantage: the min keeps the pessimistic term), ratios exactly on $1 \\pm \\epsilon$ "
               "included: the objective is $\\rho A$ on both sides of $1 - \\epsilon$ when $A > 0$, and at the kinks the "
               "clamp passes its bounds, as torch's does", grad[~frozen],
               -(ratio * adv)[~frozen] / n, atol=1e-14)
    d.gradient("At $\\pi = \\pi_{\\mathrm{old}}$ (the first epoch's first step) the clipped loss has the policy "
               "gradient's own gradient, $-A/N$", jax.grad(clipped_surrogate_loss)(jnp.asarray(old), jnp.asarray(old),
                                                                                   jnp.asarray(adv), eps),
               -adv / n, atol=1e-14)


def _section_kl_estimators(d: Derivation, rng: np.random.Generator) -> None:
    """The KL penalty's per-sample estimators k1 and k3: both unbiased, k3 never negative and of lower variance."""
    d.say("The KL penalty's estimators, from samples of the policy $\\pi = \\mathcal N(0.1, 1)$ against the "
          "reference $\\mathcal N(0, 1.1^2)$, where $\\mathrm{KL}(\\pi \\| \\pi_{\\mathrm{ref}})$ is closed form.")
    m_p, s_p, m_r, s_r = 0.1, 1.0, 0.0, 1.1
    exact_kl = np.log(s_r / s_p) + (s_p**2 + (m_p - m_r) ** 2) / (2 * s_r**2) - 0.5
    x = m_p + s_p * rng.standard_normal(400_000)
    lp, lr = stats.norm.logpdf(x, m_p, s_p), stats.norm.logpdf(x, m_r, s_r)
    k1, k3 = np.asarray(kl_k1(lp, lr)), np.asarray(kl_k3(lp, lr))
    d.monte_carlo("k1 = $\\log \\pi/\\pi_{\\mathrm{ref}}$ is unbiased (400 000 samples)", k1, exact_kl)
    d.monte_carlo("k3 = $(r - 1) - \\log r$ is unbiased too", k3, exact_kl)
    d.inequality("k3 is never negative, per sample (it is a Bregman divergence of $\\log$; up to rounding)...", -k3,
                 np.zeros_like(k3), slack=1e-15)
    d.inequality(f"...while k1 is negative on {np.mean(k1 < 0):.0%} of the samples, and k3's variance is the "
                 "lower", np.array([k3.var(), 0.0]), np.array([k1.var(), -np.min(k1)]))
    fig, ax = new_figure()
    bins = np.linspace(-1.0, 1.0, 101)
    ax.hist(k1, bins=bins, density=True, alpha=0.5, label=f"k1 (sd {k1.std():.3f})")
    ax.hist(k3, bins=bins, density=True, alpha=0.5, label=f"k3 (sd {k3.std():.3f})")
    ax.axvline(exact_kl, color="k", ls="--", lw=1, label=f"KL = {exact_kl:.4f}")
    ax.set(xlabel="per-sample estimate (nats)", ylabel="density", yscale="log")
    ax.legend(fontsize=8)
    d.figure(fig, "400 000 per-sample KL estimates: both average to the exact KL, but k1 is often negative and "
             "spreads wider, while k3 is never below 0.")


def _section_sequence_kl(d: Derivation, rng: np.random.Generator) -> None:
    """The KL over whole sequences is the expected sum of per-token KLs (chain rule), enumerated on a bigram LM."""
    d.say("The KL of an LM to its reference over whole sequences is the expected sum of per-token KLs (the chain "
          "rule): a bigram policy and reference over 3 tokens, sequences of length 3, enumerated.")
    vocab, length = 3, 3
    pol, ref = jax.nn.log_softmax(jnp.asarray(rng.standard_normal((vocab, vocab))), -1), jax.nn.log_softmax(
        jnp.asarray(rng.standard_normal((vocab, vocab))), -1)
    start = 0
    seqs = np.array(list(itertools.product(range(vocab), repeat=length)))
    prev = np.hstack([np.full((len(seqs), 1), start), seqs[:, :-1]])
    lp_tok, lr_tok = pol[prev, seqs], ref[prev, seqs]
    p_seq = jnp.exp(jnp.sum(lp_tok, 1))
    seq_kl = jnp.sum(p_seq * jnp.sum(lp_tok - lr_tok, 1))
    token_kl = jnp.sum(jnp.exp(pol) * (pol - ref), -1)  # KL of the next-token laws after each previous token
    d.numeric("$\\mathrm{KL}(\\pi \\| \\pi_{\\mathrm{ref}})$ over the 27 sequences equals $\\mathbb E_\\pi[\\sum_t "
              "\\mathrm{KL}(\\pi(\\cdot | y_{t-1}) \\| \\pi_{\\mathrm{ref}}(\\cdot | y_{t-1}))]$",
              seq_kl, jnp.sum(p_seq * jnp.sum(token_kl[prev], 1)))
    d.numeric("...and the per-token k1 penalties summed along a sequence, averaged over sequences, give the same",
              jnp.sum(p_seq * jnp.sum(kl_k1(lp_tok, lr_tok), 1)), seq_kl)


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ppo", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_gae(d, rng)
    _section_clipped_surrogate(d, rng)
    _section_kl_estimators(d, rng)
    _section_sequence_kl(d, rng)
    return d
