"""The ``trpo`` derivation (``python -m theory_jax trpo``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/trpo.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.trpo import (
    conjugate_gradient,
    fisher_vector_product,
    mean_kl,
    surrogate,
)

TITLE = "trust region policy optimisation: conjugate gradient on Fisher-vector products, and the line search"
LECTURES = "trust region policy optimisation"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _section_fisher_is_kl_hessian(d: Derivation, rng: np.random.Generator, old, rho):
    """The Fisher information written out, equal to the mean KL's Hessian and to double-backward products F v."""
    s, a = old.shape
    pi = jax.nn.softmax(old, -1)
    d.say("A tabular softmax policy, 3 states with weights $\\rho(s)$ and 4 actions: the Fisher information "
          "$F = \\mathbb E_{s \\sim \\rho, a \\sim \\pi}[\\nabla \\log \\pi \\nabla \\log \\pi^\\top]$ is a 12 x 12 "
          "matrix we can write out.")
    score = jax.jacfwd(lambda th: jax.nn.log_softmax(th, -1))(old)  # (S, A, S, A): d log pi(a|s) / d theta
    flat = score.reshape(s, a, s * a)
    fisher = jnp.einsum("s,sa,sai,saj->ij", rho, pi, flat, flat)
    hess_kl = jax.hessian(lambda th: mean_kl(old, th, rho))(old).reshape(s * a, s * a)
    d.numeric("The Fisher information is the Hessian of the mean KL at $\\theta_{\\mathrm{old}}$", hess_kl, fisher)
    d.numeric("The mean KL and its gradient vanish at $\\theta_{\\mathrm{old}}$ (a minimum)", jnp.concatenate(
        [mean_kl(old, old, rho)[None], jax.grad(lambda th: mean_kl(old, th, rho))(old).ravel()]), np.zeros(1 + s * a))
    vs = rng.standard_normal((5, s, a))
    d.numeric("The Fisher-vector product by double backward, `fisher_vector_product`, equals $Fv$ for 5 random $v$",
              jnp.stack([fisher_vector_product(old, old, rho, jnp.asarray(v)) for v in vs]).reshape(5, -1),
              (vs.reshape(5, -1) @ np.asarray(fisher)))
    return fisher, flat


def _section_sampled_fisher(d: Derivation, rng: np.random.Generator, old, rho, fisher, flat):
    """F as the mean outer product of sampled scores; the sampled state-action pairs serve the surrogate below."""
    n = 200_000
    states = rng.choice(old.shape[0], size=n, p=np.asarray(rho))
    u = rng.uniform(size=n)
    actions = (u[:, None] > np.cumsum(np.asarray(jax.nn.softmax(old, -1))[states], -1)).sum(-1)
    sampled = np.asarray(flat)[states, actions]  # (n, 12)
    outer = np.einsum("ni,nj->nij", sampled[:, :4], sampled[:, :4]).reshape(n, -1)
    d.monte_carlo("...and is estimated by the outer products of sampled scores (200 000 state-action pairs; the first "
                  "state's 4 x 4 block)", outer, np.asarray(fisher)[:4, :4].ravel())
    return states, actions


def _section_natural_gradient(d: Derivation, rng: np.random.Generator, old, fisher, states, actions):
    """The natural gradient F^+ g by conjugate gradient, whose F-norm error falls at every iteration."""
    advantages = rng.standard_normal(len(states))
    advantages -= np.asarray(old)[states, actions] * 0.5  # advantages that favour the actions pi finds unlikely
    g = jax.grad(surrogate)(old, old, jnp.asarray(states), jnp.asarray(actions), jnp.asarray(advantages)).ravel()
    matrix = np.asarray(fisher)
    d.numeric("$F$ is singular (logits shifted by a constant per state change no probability): rank 9 of 12, "
              "and the surrogate's gradient lies in its range", np.array([np.linalg.matrix_rank(matrix, tol=1e-10),
                                                                        np.linalg.norm(g - matrix @ np.linalg.pinv(
                                                                            matrix) @ g)]), np.array([9.0, 0.0]),
              atol=1e-12)
    x = conjugate_gradient(jnp.asarray(matrix), g, 18)
    d.numeric("Conjugate gradient from 0 on $Fx = g$ reaches the natural gradient $F^+ g$ (in exact arithmetic in "
              "rank = 9 iterations; in floating point, with $F$'s condition number, 18)",
              x, np.linalg.pinv(matrix) @ np.asarray(g), rtol=1e-8, atol=1e-10)
    exact = np.linalg.pinv(matrix) @ np.asarray(g)
    errors = np.array([np.sqrt((e := np.asarray(conjugate_gradient(jnp.asarray(matrix), g, k)) - exact) @ matrix @ e)
                       for k in range(10)])
    d.inequality("...and its error in the $F$-norm, $\\|x_k - x^*\\|_F$, the quantity CG minimises over growing "
                 "Krylov spaces, falls at every iteration (its residual need not)", errors[1:], errors[:-1])
    fig, ax = new_figure()
    ax.semilogy(range(10), errors, "o-", label="$\\|x_k - x^*\\|_F$")
    ax.axvline(9, color="k", ls="--", lw=1, label="rank $F$ = 9")
    ax.set(xlabel="conjugate-gradient iteration $k$", ylabel="error in the $F$-norm")
    ax.legend()
    d.figure(fig, "Conjugate gradient's error in the $F$-norm falls at every iteration and collapses at "
                  "$k$ = rank $F$ = 9.")
    return advantages, x


def _section_trust_region(d: Derivation, old, rho, fisher, x) -> None:
    """Scaled to the trust region, the step's quadratic KL model is delta, and the true KL close to it."""
    matrix = np.asarray(fisher)
    delta = 0.01
    step = np.asarray(x) * np.sqrt(2 * delta / (np.asarray(x) @ matrix @ np.asarray(x)))
    d.numeric("Scaled to $\\sqrt{2\\delta / s^\\top F s}$, the step's quadratic model of the KL is exactly $\\delta$",
              0.5 * step @ matrix @ step, delta)
    kl_full = float(mean_kl(old, old + step.reshape(old.shape), rho))
    d.inequality("...and the true KL differs from it by a third-order term (within 10% at $\\delta = 0.01$)",
                 np.array(abs(kl_full - delta)), np.array(0.1 * delta))


def _section_line_search(d: Derivation, old, rho, fisher, x, states, actions, advantages) -> None:
    """At a large delta the quadratic model misleads; the backtracking line search restores the bound."""
    matrix = np.asarray(fisher)
    big = 0.5
    step_big = np.asarray(x) * np.sqrt(2 * big / (np.asarray(x) @ matrix @ np.asarray(x)))
    frac, kls = 1.0, []
    obj0 = float(surrogate(old, old, jnp.asarray(states), jnp.asarray(actions), jnp.asarray(advantages)))
    while True:  # backtracking: halve until the true KL is within the bound and the surrogate improves
        cand = old + frac * step_big.reshape(old.shape)
        kl = float(mean_kl(old, cand, rho))
        kls.append(kl)
        gain = float(surrogate(cand, old, jnp.asarray(states), jnp.asarray(actions), jnp.asarray(advantages))) - obj0
        if kl <= big and gain > 0:
            break
        frac /= 2
    d.inequality(f"At a large $\\delta = {big}$ the quadratic model is too optimistic here (moving probability "
                 f"toward actions the policy finds unlikely): the full step's true KL is {kls[0]:.3f}; the backtracking "
                 f"line search halves the step {len(kls) - 1} time(s), to a KL of {kls[-1]:.3f}, within the bound",
                 np.array([big, kls[-1]]), np.array([kls[0], big]))
    fracs = np.linspace(0.0, 1.0, 41)
    true_kl = jax.vmap(lambda f: mean_kl(old, old + f * jnp.asarray(step_big).reshape(old.shape), rho))(fracs)
    fig, ax = new_figure()
    ax.plot(fracs, true_kl, label="true mean KL")
    ax.plot(fracs, big * fracs**2, "--", label="quadratic model $\\frac{1}{2} s^\\top F s$")
    ax.plot(0.5 ** np.arange(len(kls)), kls, "o", color="C3", label="line-search candidates")
    ax.axhline(big, color="k", lw=1, ls=":", label=f"$\\delta$ = {big}")
    ax.set(xlabel="fraction of the full step", ylabel="KL$(\\pi_{old} \\| \\pi)$")
    ax.legend()
    d.figure(fig, "Along the natural-gradient step the true KL outgrows its quadratic model; halving the step "
                  "brings it under $\\delta$.")
    d.inequality("...and the accepted step improves the surrogate", np.array(0.0), np.array(gain))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("trpo", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    s, a = 3, 4
    old = jnp.asarray(2 * rng.standard_normal((s, a)))
    rho = jnp.asarray(rng.dirichlet(np.ones(s)))

    fisher, flat = _section_fisher_is_kl_hessian(d, rng, old, rho)
    states, actions = _section_sampled_fisher(d, rng, old, rho, fisher, flat)
    advantages, x = _section_natural_gradient(d, rng, old, fisher, states, actions)
    _section_trust_region(d, old, rho, fisher, x)
    _section_line_search(d, old, rho, fisher, x, states, actions, advantages)
    return d
