"""The ``mixture_em`` derivation (``python -m theory_jax mixture_em``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/mixture_em.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.mixture_em import (
    component_log_prob,
    e_step,
    em_step,
    free_energy,
    log_joint,
    log_likelihood,
    m_step,
    sample_gmm,
)

TITLE = "Gaussian mixtures fitted by expectation-maximisation"
LECTURES = "latent variable models; GMM by EM; EM as coordinate ascent on the ELBO"


# 3. The derivation -------------------------------------------------------------------------------
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]])
TRUE_COVS = np.array([[[0.6, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.5]], [[0.5, 0.0], [0.0, 0.2]]])


def _data(n: int = 600, seed: int = 0) -> np.ndarray:
    """n draws of the 3-component 2-D mixture above (NumPy noise through ``sample_gmm``)."""
    rng = np.random.default_rng(seed)
    return np.asarray(sample_gmm(jnp.asarray(TRUE_WEIGHTS), jnp.asarray(TRUE_MEANS), jnp.asarray(TRUE_COVS),
                                 jnp.asarray(rng.uniform(size=n)), jnp.asarray(rng.standard_normal((n, 2)))))


def _farthest_points(x: np.ndarray, k: int) -> list[int]:
    """Indices of k data points: the first, then each time the point farthest from those chosen."""
    chosen = [0]
    for _ in range(k - 1):
        chosen.append(int(np.argmax(np.min(((x[:, None] - x[chosen][None]) ** 2).sum(-1), axis=1))))
    return chosen


def _naive_log_likelihood(x, weights, means, covariances):
    """log sum_k pi_k N_k(x) with the density written out (det and inverse, no log-sum-exp). NumPy."""
    d = x.shape[-1]
    total = np.zeros(len(x))
    for w, m, c in zip(weights, means, covariances):
        diff = x - m
        quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(c), diff)
        total += w * np.exp(-0.5 * quad) / np.sqrt((2 * np.pi) ** d * np.linalg.det(c))
    with np.errstate(divide="ignore"):
        return np.log(total), total


def _mp_log_likelihood(x, weights, means, covariances, digits: int = 50):
    """log p(x) and p(k|x) for one point in ``digits``-digit arithmetic (mpmath): the reference far away."""
    with mpmath.workdps(digits):
        xv = mpmath.matrix([mpmath.mpf(float(v)) for v in x])
        terms = []
        for w, m, c in zip(weights, means, covariances):
            cm = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in c])
            diff = xv - mpmath.matrix([mpmath.mpf(float(v)) for v in m])
            quad = (diff.T * mpmath.inverse(cm) * diff)[0]
            terms.append(mpmath.mpf(float(w)) * mpmath.exp(-quad / 2)
                         / mpmath.sqrt((2 * mpmath.pi) ** len(x) * mpmath.det(cm)))
        total = mpmath.fsum(terms)
        return float(mpmath.log(total)), np.array([float(t / total) for t in terms])


def _sympy_posterior():
    """Two 1-D components: the posterior log-odds log r_1/(1 - r_1) is log(pi_1/pi_2) + log N_1 - log N_2."""
    x, m1, m2 = sp.symbols("x mu_1 mu_2", real=True)
    s1, s2, pi1, pi2 = sp.symbols("sigma_1 sigma_2 pi_1 pi_2", positive=True)

    def normal(m, s):
        return sp.exp(-((x - m) ** 2) / (2 * s**2)) / sp.sqrt(2 * sp.pi * s**2)

    r1 = pi1 * normal(m1, s1) / (pi1 * normal(m1, s1) + pi2 * normal(m2, s2))
    log_odds = sp.log(pi1 / pi2) + sp.log(s2 / s1) - (x - m1) ** 2 / (2 * s1**2) + (x - m2) ** 2 / (2 * s2**2)
    bayes_log_odds = sp.expand_log(sp.log(sp.simplify(r1 / (1 - r1))), force=True)
    return bayes_log_odds, log_odds, r1, (x, m1, m2, s1, s2, pi1, pi2)


@partial(jax.jit, static_argnames=("steps",))
def _em_run(x, weights, means, covariances, steps: int, reg_covar: float = 0.0):
    """``steps`` EM iterations; -> final theta and, per iteration t, (l(theta_t), F(q_t, theta_{t+1}), l(theta_{t+1}))."""
    def body(theta, _):
        resp, log_px = e_step(x, *theta)
        new = m_step(x, resp, "diag" if theta[2].ndim == 2 else "full", reg_covar)
        return new, (jnp.mean(log_px), jnp.mean(free_energy(x, resp, *new)), jnp.mean(log_likelihood(x, *new)))

    return jax.lax.scan(body, (weights, means, covariances), None, length=steps)


def _mean_free_energy(x, q, weights, means, covariances):
    return jnp.mean(free_energy(x, q, weights, means, covariances))


def _softmax_bound(x, q_logits, logits, means, covariances):
    """The mean F(q, theta) in unconstrained coordinates: q = softmax(q_logits) per example, pi = softmax(logits)."""
    return _mean_free_energy(x, jax.nn.softmax(q_logits), jax.nn.softmax(logits), means, covariances)


_bound = jax.jit(_mean_free_energy)
_bound_grad = jax.jit(jax.grad(_mean_free_energy, argnums=(1, 2, 3, 4)))
_softmax_bound_grad = jax.jit(jax.grad(_softmax_bound, argnums=(1, 2, 3, 4)))
_bounds = jax.jit(jax.vmap(_mean_free_energy, in_axes=(None, 0, 0, 0, 0)))  # many (q, theta) at once
_log_likelihood_grad = jax.jit(jax.grad(lambda x, logits, means, covariances: jnp.mean(
    log_likelihood(x, jax.nn.softmax(logits), means, covariances)), argnums=(1, 2, 3)))


def _section_stable_density(d: Derivation, rng: np.random.Generator, x, w0, m0, c0) -> None:
    """The mixture density written stably (log-sum-exp, Cholesky): exact near the data and far from it."""
    lse = log_likelihood(x, w0, m0, c0)
    d.numeric("`log_likelihood` (log-sum-exp over $\\log\\pi_k + \\log\\mathcal N_k$, Cholesky) equals "
              "$\\log \\sum_k \\pi_k \\mathcal N(x; \\mu_k, \\Sigma_k)$ with the density written out "
              "(determinant and inverse), at all 600 points", lse,
              _naive_log_likelihood(*map(np.asarray, (x, w0, m0, c0)))[0])
    diag = jnp.exp(jnp.asarray(rng.standard_normal((3, 2))))
    d.numeric("Diagonal covariances (K, D) give the full-covariance density of $\\mathrm{diag}(\\sigma_k^2)$ "
              "(600 x 3 component log-densities)", component_log_prob(x, m0, diag),
              component_log_prob(x, m0, jax.vmap(jnp.diag)(diag)))
    far = jnp.array([[1e3, -1e3]])
    naive_far, total_far = _naive_log_likelihood(np.asarray(far), *map(np.asarray, (w0, m0, c0)))
    mp_ll, mp_resp = _mp_log_likelihood(np.asarray(far[0]), *map(np.asarray, (w0, m0, c0)))
    d.say(f"At $x = (10^3, -10^3)$ the sum $\\sum_k \\pi_k\\mathcal N_k(x)$ underflows: in float64 it is "
          f"{total_far[0]:g}, so the naive $\\log p(x) = {naive_far[0]}$ and the naive posterior is 0/0.")
    far_resp, far_ll = e_step(far, w0, m0, c0)
    d.numeric("The log-sum-exp form stays exact there: $\\log p(x)$ and $p(k\\mid x)$ equal a 50-digit "
              "mpmath evaluation of the written-out formula",
              jnp.concatenate([far_ll, far_resp[0]]), np.concatenate([[mp_ll], mp_resp]))


def _section_e_step_is_bayes(d: Derivation, x, w0, m0, c0):
    """E-step = Bayes' rule: the responsibilities are the exact posterior, a logistic function of a quadratic."""
    resp, log_px = e_step(x, w0, m0, c0)
    _, dens = _naive_log_likelihood(np.asarray(x), *map(np.asarray, (w0, m0, c0)))
    direct = np.stack([np.exp(_naive_log_likelihood(np.asarray(x), np.array([1.0]), np.asarray(m0[k:k + 1]),
                                                    np.asarray(c0[k:k + 1]))[0]) / 3 for k in range(3)], axis=1)
    d.numeric("E-step: the responsibilities are the exact posterior, "
              "$r_{nk} = \\pi_k\\mathcal N_k(x_n) / \\sum_j \\pi_j\\mathcal N_j(x_n) = p(z_n = k\\mid x_n)$ "
              "(Bayes' rule computed directly, all 600 x 3)", resp, direct / dens[:, None])
    bayes_log_odds, log_odds, r1, syms = _sympy_posterior()
    d.symbolic("Two 1-D components: the posterior log-odds $\\log\\frac{r_1}{1 - r_1} = \\log\\frac{\\pi_1}{\\pi_2}"
               " + \\log\\frac{\\sigma_2}{\\sigma_1} - \\frac{(x-\\mu_1)^2}{2\\sigma_1^2} + "
               "\\frac{(x-\\mu_2)^2}{2\\sigma_2^2}$, so $r_1$ is a logistic function of a quadratic in $x$",
               bayes_log_odds, log_odds)
    d.symbolic("...and with $\\sigma_1 = \\sigma_2$ the quadratic terms cancel: "
               "$\\partial^2_x \\log\\frac{r_1}{1-r_1} = 0$, a linear decision boundary",
               sp.diff(log_odds.subs(syms[4], syms[3]), syms[0], 2), 0)
    grid = np.linspace(-3, 3, 41)
    closed = sp.lambdify(syms, r1, "numpy")(grid, -1.0, 1.5, 0.7, 1.2, 0.4, 0.6)
    r_jax, _ = e_step(jnp.asarray(grid)[:, None], jnp.array([0.4, 0.6]), jnp.array([[-1.0], [1.5]]),
                      jnp.array([[0.49], [1.44]]))
    d.numeric("`e_step` on 41 points of a 1-D two-component mixture equals the SymPy posterior $r_1(x)$",
              r_jax[:, 0], closed)
    fig, ax = new_figure()
    ax.plot(grid, r_jax[:, 0], label="e_step: $r_1(x)$")
    ax.plot(grid[::2], closed[::2], "o", ms=4, mfc="none", label="SymPy posterior")
    ax.plot(grid, 1 - closed, "--", lw=1, label="$r_2(x) = 1 - r_1(x)$")
    for mu, name in ((-1.0, "$\\mu_1$"), (1.5, "$\\mu_2$")):
        ax.axvline(mu, color="grey", ls=":", lw=1)
        ax.annotate(name, (mu, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom")
    ax.set(xlabel="$x$", ylabel="responsibility $p(z = k \\mid x)$")
    ax.legend(fontsize=8, loc="center left")
    d.figure(fig, "The responsibilities of a 1-D two-component mixture: a smooth hand-over from component 1 to 2 "
             "between the means, the code's values on the SymPy posterior.")
    return resp, log_px


def _section_free_energy_bound(d: Derivation, rng: np.random.Generator, x, resp, log_px, w0, m0, c0) -> None:
    """The free energy: log p(x) = F(q, theta) + KL(q || p(z|x)), so F is a lower bound, tight at the E-step."""
    n = x.shape[0]
    qs = rng.dirichlet(np.ones(3), size=(20, n))
    f_q = np.asarray(_bounds(x, jnp.asarray(qs), *(jnp.broadcast_to(a, (20, *a.shape)) for a in (w0, m0, c0))))
    kl_q = np.array([np.mean(np.sum(q * (np.log(q) - np.log(np.asarray(resp))), axis=1)) for q in qs])
    d.say("The free energy $F(q,\\theta) = \\mathbb E_q[\\log p(x,z)] + H(q)$ (eq. 1), averaged over the data, for any "
          "per-example $q_n(z)$ on the 3 components.")
    d.numeric("$\\log p(x) = F(q,\\theta) + \\mathrm{KL}(q\\,\\|\\,p(z\\mid x))$ (eq. 2) for 20 random $q$ "
              "(Dirichlet draws per example)", f_q + kl_q, np.full(20, float(jnp.mean(log_px))))
    d.inequality("Hence $F(q,\\theta) \\le \\log p(x)$: the free energy is a lower bound (the ELBO)",
                 f_q, np.full(20, float(jnp.mean(log_px))))
    d.numeric("The E-step makes it tight: $F(r, \\theta) = \\log p(x)$ at $q = r = p(z\\mid x)$",
              free_energy(x, resp, w0, m0, c0), log_px)
    q0 = jnp.asarray(qs[0, 0])  # one random q for the first example (at q = r the integrand is constant)
    z_idx = np.sum(rng.uniform(size=(4000, 1)) > np.cumsum(np.asarray(q0))[None, :-1], axis=1)
    mc = np.asarray(log_joint(x[:1], w0, m0, c0))[0, z_idx] - np.log(np.asarray(q0)[z_idx])
    d.monte_carlo("$F = \\mathbb E_{z\\sim q}[\\log p(x, z) - \\log q(z)]$ as a Monte Carlo average "
                  "(4000 draws of $z \\sim q$, a random $q$, first example)", mc,
                  free_energy(x[:1], q0[None], w0, m0, c0)[0])
    logits = jnp.log(resp)
    grad_q = n * _softmax_bound_grad(x, logits, jnp.log(w0), m0, c0)[0]
    d.gradient("The E-step is the maximiser of $F$ over $q$: $\\nabla F$ w.r.t. the logits of $q$ vanishes at "
               "$q = r$ (jax.grad, 600 x 3)", grad_q, jnp.zeros_like(grad_q))


def _section_m_step_maximises(d: Derivation, rng: np.random.Generator, x, resp):
    """The M-step's closed form (eqs. 4-6) zeroes the gradient of F for fixed q, and is its maximum."""
    new_w, new_m, new_c = m_step(x, resp, "full", 0.0)
    grads = _bound_grad(x, resp, new_w, new_m, new_c)[1:]
    d.gradient("M-step, means: $\\nabla_{\\mu_k} F = \\frac1N\\sum_n r_{nk}\\Sigma_k^{-1}(x_n - \\mu_k) = 0$ at "
               "$\\mu_k = \\sum_n r_{nk}x_n / N_k$ (eq. 5; jax.grad)", grads[1], jnp.zeros_like(new_m))
    d.gradient("M-step, covariances: $\\nabla_{\\Sigma_k} F = 0$ at $\\Sigma_k = \\sum_n r_{nk}(x_n-\\mu_k)"
               "(x_n-\\mu_k)^\\top / N_k$ (eq. 6 with no regulariser)", grads[2], jnp.zeros_like(new_c))
    d.gradient("M-step, weights, by a Lagrangian $F + \\lambda(1 - \\sum_k\\pi_k)$: $\\partial F/\\partial\\pi_k = "
               "N_k/(N\\pi_k) = \\lambda$ for every $k$, with $\\lambda = 1$, at $\\pi_k = N_k/N$ (eq. 4)",
               grads[0], jnp.ones(3))
    g_logits = _softmax_bound_grad(x, jnp.log(resp), jnp.log(new_w), new_m, new_c)[1]
    d.gradient("...equivalently, with $\\pi = \\mathrm{softmax}(a)$ the constraint is built in and "
               "$\\nabla_a F = 0$", g_logits, jnp.zeros(3))
    steps_w = np.exp(0.2 * rng.standard_normal((30, 3))) * np.asarray(new_w)
    steps_c = 0.2 * rng.standard_normal((30, 3, 2, 2))
    perturbed = _bounds(x, jnp.broadcast_to(resp, (30, *resp.shape)), jnp.asarray(steps_w / steps_w.sum(1, keepdims=True)),
                        new_m + 0.2 * rng.standard_normal((30, 3, 2)), new_c + steps_c @ np.swapaxes(steps_c, -1, -2))
    f_m = float(_bound(x, resp, new_w, new_m, new_c))
    d.inequality("...and it is the maximum: $F(r, \\theta') \\le F(r, \\theta_{\\mathrm{M}})$ for 30 random "
                 "perturbations $\\theta'$ (weights, means and positive semi-definite covariance steps)",
                 np.array(perturbed), np.full(30, f_m))
    return new_w, new_m, new_c


def _section_em_never_decreases(d: Derivation, x, w0, m0, c0, resp, new_c, steps: int):
    """EM never decreases the log-likelihood: the sandwich l(theta_t) <= F(q_t, theta_{t+1}) <= l(theta_{t+1})."""
    _, (ll_t, f_next, ll_next) = _em_run(x, w0, m0, c0, steps)
    ll_t, f_next, ll_next = map(np.asarray, (ll_t, f_next, ll_next))
    d.say("Why: $\\ell(\\theta_t) = F(q_t, \\theta_t) \\le F(q_t, \\theta_{t+1}) \\le \\ell(\\theta_{t+1})$ with "
          "$q_t = p(z\\mid x, \\theta_t)$: the first step is the M-step's maximisation, the second eq. 2 "
          "($\\mathrm{KL} \\ge 0$). "
          f"A run of {steps} EM iterations (full covariances) from $\\theta_0$; each claim below checks every iteration "
          "(slack 1e-12 nats for float64 rounding). The M-step here is exact (no `reg_covar`): adding $\\epsilon I$ to "
          "$\\Sigma_k$, as scikit-learn and the PyTorch trainer do, keeps the covariances invertible but makes the "
          "M-step maximise $F$ only approximately, so the guarantee then holds up to that perturbation.")
    d.inequality("M-step: $\\ell(\\theta_t) = F(q_t,\\theta_t) \\le F(q_t,\\theta_{t+1})$ at all 100 iterations",
                 ll_t, f_next, slack=1e-12)
    d.inequality("Bound: $F(q_t,\\theta_{t+1}) \\le \\ell(\\theta_{t+1})$ at all 100 iterations", f_next, ll_next,
                 slack=1e-12)
    gains = ll_next - ll_t
    d.inequality(f"So $\\ell(\\theta_{{t+1}}) \\ge \\ell(\\theta_t)$ at every one of the {steps} iterations: from "
                 f"{ll_t[0]:.4f} to {ll_next[-1]:.6f} nats per example; smallest increase {gains.min():.2e}, "
                 f"largest {gains.max():.3f}", ll_t, ll_next, slack=1e-12)
    dw0, dm0, dc0 = w0, m0, jnp.ones((3, 2))
    _, (dll_t, _, dll_next) = _em_run(x, dw0, dm0, dc0, steps)
    d.inequality(f"The same for diagonal covariances ({steps} iterations, smallest increase "
                 f"{float(np.min(np.asarray(dll_next) - np.asarray(dll_t))):.2e})",
                 np.asarray(dll_t), np.asarray(dll_next), slack=1e-12)
    d.numeric("A diagonal M-step is the diagonal of the full one (same responsibilities)",
              m_step(x, resp, "diag", 0.0)[2], jnp.diagonal(new_c, axis1=-2, axis2=-1))
    return ll_t, ll_next


def _section_fixed_point(d: Derivation, x, w0, m0, c0, new_w, new_m, new_c, ll_t, ll_next, steps: int):
    """EM's fixed point is a stationary point of l(theta), where the bound touches with the same slope."""
    start = _farthest_points(np.asarray(x), 3)
    (w_s, m_s, c_s), (ll_run, _, _) = _em_run(x, w0, x[jnp.asarray(start)], c0, steps)
    d.say(f"EM finds a local maximum only: the run above stalls at {ll_next[-1]:.4f} (two means share a cluster). "
          f"From farthest-point starting means (data points {start}) it climbs from {float(ll_run[0]):.4f} to "
          f"{float(ll_run[-1]):.4f} nats per example in {steps} iterations.")
    fig, ax = new_figure()
    ax.plot(np.arange(steps + 1), np.append(ll_t, ll_next[-1]), label="from $\\theta_0$ (data points 0, 1, 2)")
    ax.plot(np.arange(steps), np.asarray(ll_run), label=f"from farthest points {start}")
    ax.set(xscale="symlog", xlabel="EM iteration $t$", ylabel="$\\ell(\\theta_t)$ (nats per example)")
    ax.legend(fontsize=8)
    d.figure(fig, "The log-likelihood climbs at every EM iteration and never falls back, but where it levels off "
             "depends on the start: a local maximum, not the global one.")
    fixed = em_step(x, w_s, m_s, c_s, 0.0)
    d.numeric("EM has reached a fixed point: $\\theta^* = M(E(\\theta^*))$",
              jnp.concatenate([a.ravel() for a in fixed[:3]]), jnp.concatenate([a.ravel() for a in (w_s, m_s, c_s)]))
    theta = (jnp.log(new_w), new_m, new_c)  # an arbitrary theta (one M-step from theta_0)
    g_ll = _log_likelihood_grad(x, *theta)
    g_f = _softmax_bound_grad(x, jnp.log(e_step(x, new_w, new_m, new_c)[0]), *theta)[1:]
    d.gradient("Where the bound touches, the slopes agree: $\\nabla_\\theta \\ell(\\theta) = "
               "\\nabla_\\theta F(q,\\theta)|_{q = p(z\\mid x,\\theta)}$ at an arbitrary $\\theta$ (all parameters)",
               jnp.concatenate([g.ravel() for g in g_ll]), jnp.concatenate([g.ravel() for g in g_f]))
    star = (jnp.log(w_s), m_s, c_s)
    g_star = _log_likelihood_grad(x, *star)
    d.gradient("So at the EM fixed point (the M-step zeroes $\\nabla_\\theta F$) the log-likelihood is stationary: "
               "$\\nabla_\\theta \\ell(\\theta^*) = 0$ (softmax weights, means, covariances)",
               jnp.concatenate([g.ravel() for g in g_star]), jnp.zeros(sum(g.size for g in g_star)))
    return w_s, m_s, c_s


def _section_elbo_maximal_at_fixed_point(d: Derivation, rng: np.random.Generator, x, w_s, m_s, c_s) -> None:
    """At the fixed point the ELBO F(q, theta) is maximal jointly in (q, theta), and equals the log-likelihood."""
    r_s, ll_s = e_step(x, w_s, m_s, c_s)
    f_star = float(_bound(x, r_s, w_s, m_s, c_s))
    sym = 0.05 * rng.standard_normal((40, 3, 2, 2))
    near = _bounds(x, jax.nn.softmax(jnp.log(r_s) + 0.1 * rng.standard_normal((40, *r_s.shape))),
                   jax.nn.softmax(jnp.log(w_s) + 0.05 * rng.standard_normal((40, 3))),
                   m_s + 0.05 * rng.standard_normal((40, 3, 2)),
                   c_s + 0.5 * (sym + np.swapaxes(sym, -1, -2)))
    d.inequality(f"...and the ELBO is maximal there: $F(q^*,\\theta^*) = \\ell(\\theta^*) = {f_star:.6f}$ is above "
                 "$F(q, \\theta)$ for 40 random joint perturbations of $(q, \\theta)$ around it",
                 np.array(near), np.full(40, f_star))
    d.numeric("...where it equals the log-likelihood (the E-step's tight bound, eq. 2)", f_star, jnp.mean(ll_s))


def _section_sampling_the_fit(d: Derivation, rng: np.random.Generator, x, w_s, m_s, c_s) -> None:
    """Sampling the fitted mixture, and how close the fit is to the mixture that generated the data."""
    u, eps = jnp.asarray(rng.uniform(size=20000)), jnp.asarray(rng.standard_normal((20000, 2)))
    xs_ = np.asarray(sample_gmm(w_s, m_s, c_s, u, eps))
    mix_mean = np.asarray(w_s @ m_s)
    second = np.einsum("k,kij->ij", np.asarray(w_s),
                       np.asarray(c_s) + np.einsum("ki,kj->kij", np.asarray(m_s), np.asarray(m_s)))
    d.monte_carlo("`sample_gmm` (component by inverse CDF, then $\\mu_k + L_k\\epsilon$) has the mixture's mean "
                  "$\\sum_k\\pi_k\\mu_k$ and second moment $\\sum_k \\pi_k(\\Sigma_k + \\mu_k\\mu_k^\\top)$ "
                  "(20 000 draws)", np.concatenate([xs_, np.einsum("ni,nj->nij", xs_, xs_).reshape(-1, 4)], axis=1),
                  np.concatenate([mix_mean, second.ravel()]))
    order = np.argmin(((np.asarray(m_s)[:, None] - TRUE_MEANS[None]) ** 2).sum(-1), axis=0)  # fitted k per true k
    d.inequality("The fit recovers the generating mixture (N = 600; components matched by nearest mean): "
                 "weights within 0.05 and means within 0.15 of the truth",
                 np.concatenate([np.abs(np.asarray(w_s)[order] - TRUE_WEIGHTS) / 0.05,
                                 np.abs(np.asarray(m_s)[order] - TRUE_MEANS).max(1) / 0.15]), np.ones(6))
    fig, ax = new_figure()
    ax.scatter(*np.asarray(x).T, s=4, c="lightgrey", label="data (N = 600)")
    circle = np.stack([np.cos(np.linspace(0, 2 * np.pi, 100)), np.sin(np.linspace(0, 2 * np.pi, 100))])
    for k in range(3):
        for cov, mean, style in ((c_s[k], m_s[k], "C0-"), (TRUE_COVS[k], TRUE_MEANS[k], "k--")):
            ellipse = np.asarray(mean)[:, None] + 2 * np.linalg.cholesky(np.asarray(cov)) @ circle
            ax.plot(*ellipse, style, lw=1.2, label=None if k else ("EM fit" if style == "C0-" else "truth") + ", 2 sd")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.legend(fontsize=8, loc="upper left")
    d.figure(fig, "The mixture EM converged to (solid, two-standard-deviation ellipses) lies on the one that "
             "generated the data (dashed).")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("mixture_em", TITLE, LECTURES, echo=echo)
    x = jnp.asarray(_data())
    rng = np.random.default_rng(1)
    w0, m0, c0 = jnp.full(3, 1 / 3), x[jnp.array([0, 1, 2])], jnp.broadcast_to(jnp.eye(2), (3, 2, 2))
    steps = 100
    d.say("Data: $N = 600$ draws of a 3-component mixture in 2-D. Parameters "
          "$\\theta = (\\pi, \\mu_k, \\Sigma_k)$; the start $\\theta_0$: three data points as means, "
          "$\\Sigma_k = I$, $\\pi_k = 1/3$.")

    _section_stable_density(d, rng, x, w0, m0, c0)
    resp, log_px = _section_e_step_is_bayes(d, x, w0, m0, c0)
    _section_free_energy_bound(d, rng, x, resp, log_px, w0, m0, c0)
    new_w, new_m, new_c = _section_m_step_maximises(d, rng, x, resp)
    ll_t, ll_next = _section_em_never_decreases(d, x, w0, m0, c0, resp, new_c, steps)
    w_s, m_s, c_s = _section_fixed_point(d, x, w0, m0, c0, new_w, new_m, new_c, ll_t, ll_next, steps)
    _section_elbo_maximal_at_fixed_point(d, rng, x, w_s, m_s, c_s)
    _section_sampling_the_fit(d, rng, x, w_s, m_s, c_s)
    return d
