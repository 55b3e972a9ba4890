"""The ``flow_matching`` derivation (``python -m theory_jax flow_matching``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/flow_matching.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy.linalg import sqrtm
from scipy.optimize import linear_sum_assignment

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.flow_matching import (
    _linear_losses,
    cfm_loss,
    consistency_function,
    consistency_loss,
    consistency_scalings,
    gaussian_path_moments,
    integrated_losses,
    marginal_velocity,
    ode_step,
    ot_assignment,
    path_sample_and_target,
    squared_cost,
    straightness,
    transport_cost,
)

TITLE = "flow matching: conditional OT paths, the CFM loss, minibatch optimal transport and the marginal ODE"
LECTURES = ("flow matching; conditional flow matching; optimal-transport paths; rectified flow and reflow; "
            "consistency models")


def _solve(rhs, y0, atol=1e-11, rtol=1e-11):
    """y(1) from y(0) by diffrax's Dopri5 (PID controller)."""
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: rhs(t, y)), diffrax.Dopri5(), 0.0, 1.0, 0.05, y0,
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000)
    return sol.ys[-1]


def _path_energy(field, x0):
    """Solve dx/dt = field(t, x) from x0 (N, D) with the running kinetic energy int ||v||^2 dt: (x(1), energy (N,))."""
    def rhs(t, y):
        v = field(t, y[:, :-1])
        return jnp.concatenate([v, jnp.sum(v**2, 1, keepdims=True)], 1)

    y1 = _solve(rhs, jnp.concatenate([x0, jnp.zeros((len(x0), 1))], 1), 1e-10, 1e-10)
    return y1[:, :-1], y1[:, -1]


# 3. The derivation ---------------------------------------------------------------------------------------------------
def _section_paths(d: Derivation) -> None:
    """The conditional OT path, its velocity and continuity equation; the marginal velocity of Gaussian data (SymPy)."""
    t, x, x0, x1, m = sp.symbols("t x x_0 x_1 m", real=True)
    sig, s = sp.symbols("sigma_min s", positive=True)
    psi = (1 - (1 - sig) * t) * x0 + t * x1
    d.say("## 1. The conditional OT path and its velocity\n$x_t = \\psi_t(x_0|x_1) = (1-(1-\\sigma_{min})t)x_0 + "
          "t x_1$, $x_0 \\sim \\mathcal N(0, I)$ (Lipman et al. eq. 22); $\\sigma_{min} = 0$ is the straight line "
          "of rectified flow.")
    d.symbolic("The target velocity is the time derivative of the path: $\\frac{d}{dt}\\psi_t = x_1 - "
               "(1-\\sigma_{min})x_0$ (`target_velocity`, eq. 23)", sp.diff(psi, t), x1 - (1 - sig) * x0)
    u_of_x = (x1 - (1 - sig) * x) / (1 - (1 - sig) * t)
    d.symbolic("...which as a field of $x$ is $u_t(x|x_1) = \\frac{x_1 - (1-\\sigma_{min})x}{1-(1-\\sigma_{min})t}$ "
               "(eq. 21): evaluated on the path it is that velocity", u_of_x.subs(x, psi), x1 - (1 - sig) * x0)
    d.symbolic("Endpoints: $x_{t=0} = x_0$ (noise) and $x_{t=1} = x_1 + \\sigma_{min}x_0$, i.e. "
               "$p_1(x|x_1) = \\mathcal N(x_1, \\sigma_{min}^2)$", (psi.subs(t, 0) - x0) ** 2
               + (psi.subs(t, 1) - x1 - sig * x0) ** 2)
    sd = 1 - (1 - sig) * t
    p = sp.exp(-(x - t * x1) ** 2 / (2 * sd**2)) / (sp.sqrt(2 * sp.pi) * sd)  # sd > 0 on [0, 1)
    d.symbolic("The conditional velocity generates the conditional path: $p_t(x|x_1) = \\mathcal N(x; t x_1, "
               "(1-(1-\\sigma_{min})t)^2)$ solves the continuity equation $\\partial_t p + \\partial_x(p\\,u_t) = 0$",
               (sp.diff(p, t) + sp.diff(p * u_of_x, x)) / p)
    var = (1 - t) ** 2 + t**2 * s**2
    v = m + (t * s**2 - (1 - t)) / var * (x - t * m)
    pm = sp.exp(-(x - t * m) ** 2 / (2 * var)) / sp.sqrt(2 * sp.pi * var)
    d.say("## 2. The marginal velocity of Gaussian data\nData $x_1 \\sim \\mathcal N(m, S)$ independent of $x_0$ "
          "($\\sigma_{min} = 0$): $(x_t, u)$ is jointly Gaussian with $E x_t = tm$, $\\Sigma_t = (1-t)^2I + t^2S$, "
          "$\\mathrm{Cov}(u, x_t) = K = tS - (1-t)I$, so $v_t(x) = E[u|x_t = x] = m + K\\Sigma_t^{-1}(x - tm)$ "
          "(`marginal_velocity`).")
    d.symbolic("1-D ($S = s^2$): the marginal velocity $v_t$ generates the marginal path "
               "$p_t = \\mathcal N(tm, (1-t)^2 + t^2s^2)$: $\\partial_t p_t + \\partial_x(p_t v_t) = 0$",
               sp.simplify((sp.diff(pm, t) + sp.diff(pm * v, x)) / pm))


def _section_marginal(d: Derivation, rng: np.random.Generator, m, s, low) -> None:
    """The marginal velocity is E[u | x_t]: residuals orthogonal to x_t and t, and the posterior-averaged field."""
    n = 200_000
    x0 = jnp.asarray(rng.standard_normal((n, 2)))
    x1 = m + jnp.asarray(rng.standard_normal((n, 2))) @ low.T
    ts = jnp.asarray(rng.uniform(0, 1, n))
    xt, u = path_sample_and_target(x1, x0, ts)
    resid = u - jax.jit(jax.vmap(lambda t, x: marginal_velocity(t, x[None], m, s)[0]))(ts, xt)
    feats = jnp.concatenate([resid, (resid[:, :, None] * xt[:, None, :]).reshape(n, 4),
                             resid * ts[:, None], (resid[:, :, None] * (ts[:, None] * xt)[:, None, :]).reshape(n, 4)], 1)
    d.monte_carlo("2-D Gaussian data, $t \\sim U[0,1]$ (`path_sample_and_target`, 200 000 draws): the residual "
                  "$u - v_t(x_t)$ has mean 0 and is uncorrelated with $x_t$, $t$ and $t x_t$ (the normal equations of "
                  "$v_t = E[u|x_t]$)", feats, jnp.zeros(12))
    y = jnp.asarray(rng.standard_normal((300, 2))) * 1.5
    for t in (0.25, 0.8):
        sigma_t, k = gaussian_path_moments(t, m, s)
        post_mean = m + (y - t * m) @ jnp.linalg.solve(sigma_t, t * s)  # E[x1 | x_t], Cov(x1, x_t) = t S
        d.numeric(f"$t = {t}$: $v_t(x) = (E[x_1|x_t = x] - x)/(1-t)$, the conditional field $u_t(x|x_1)$ averaged "
                  "over the posterior of $x_1$ (Lipman et al. eq. 8), at 300 points",
                  marginal_velocity(t, y, m, s), (post_mean - y) / (1 - t))


def _section_cfm_gradient(d: Derivation, rng: np.random.Generator, m, s, low) -> None:
    """CFM and FM losses differ by a constant free of theta: same gradients, same minimiser (Lipman et al. Thm. 2)."""
    d.say("## 3. CFM and FM losses have the same gradient\nA linear field $v_\\theta(t, x) = (A_0 + tA_1)x + b_0 + "
          "tb_1$. At each $t$ both losses are exact Gaussian moments; over $t \\sim U[0,1]$ by 40-point "
          "Gauss-Legendre quadrature. $L_{CFM} - L_{FM} = E\\,\\mathrm{tr}\\,\\mathrm{Cov}(u|x_t)$, free of "
          "$\\theta$ (Lipman et al. Theorem 2).")
    thetas = [tuple(jnp.asarray(rng.standard_normal(shape)) for shape in ((2, 2), (2, 2), (2,), (2,)))
              for _ in range(4)]
    gaps = []
    for theta in thetas:
        for t in (0.1, 0.5, 0.9):
            l_cfm, l_fm, cond_var = _linear_losses(theta, t, m, s)
            gaps.append((l_cfm - l_fm, cond_var))
    d.numeric("At $t = 0.1, 0.5, 0.9$ and four random models: $L_{CFM}(t) - L_{FM}(t) = \\mathrm{tr}(\\mathrm{Cov}\\,u "
              "- K\\Sigma_t^{-1}K)$, the same for every model", jnp.stack([g[0] for g in gaps]),
              jnp.stack([g[1] for g in gaps]), atol=1e-11)
    grad_cfm = jax.jit(jax.grad(lambda th: integrated_losses(th, m, s)[0]))
    grad_fm = jax.jit(jax.grad(lambda th: integrated_losses(th, m, s)[1]))
    flat = lambda g: jnp.concatenate([jnp.ravel(a) for a in g])  # noqa: E731
    d.gradient("$\\nabla_\\theta \\int_0^1 L_{CFM}\\,dt = \\nabla_\\theta \\int_0^1 L_{FM}\\,dt$ at the four models "
               "(jax.grad of both closed forms)", jnp.stack([flat(grad_cfm(th)) for th in thetas]),
               jnp.stack([flat(grad_fm(th)) for th in thetas]))
    n, theta = 200_000, thetas[0]
    x0 = jnp.asarray(rng.standard_normal((n, 2)))
    x1 = m + jnp.asarray(rng.standard_normal((n, 2))) @ low.T
    ts = jnp.asarray(rng.uniform(0, 1, n))

    def one_loss(th, x0_, x1_, t_):
        xt, u = path_sample_and_target(x1_[None], x0_[None], t_[None])
        v = xt @ (th[0] + t_ * th[1]).T + th[2] + t_ * th[3]
        return cfm_loss(v, u) * 2  # a sum over D = 2 dimensions, as in the closed forms

    losses = jax.jit(jax.vmap(one_loss, (None, 0, 0, 0)))(theta, x0, x1, ts)
    d.monte_carlo("Monte Carlo: `cfm_loss` on 200 000 draws $(t, x_0, x_1)$ estimates $\\int L_{CFM}\\,dt$",
                  losses, integrated_losses(theta, m, s)[0])
    grads = jax.jit(jax.vmap(lambda a, b, c: flat(jax.grad(one_loss)(theta, a, b, c))))(x0, x1, ts)
    d.monte_carlo("...and its per-sample gradients average to $\\nabla_\\theta L_{FM}$: the CFM gradient is an "
                  "unbiased estimate of the FM gradient (12 parameters)", grads, flat(grad_fm(theta)))
    t = 0.6
    sigma_t, k = gaussian_path_moments(t, m, s)
    gain = jnp.linalg.solve(sigma_t, k).T
    best = (gain, jnp.zeros((2, 2)), m - gain @ (t * m), jnp.zeros(2))
    d.gradient("At $t = 0.6$ the CFM gradient vanishes at the marginal field $A = K\\Sigma_t^{-1}$, $b = m - A tm$: "
               "CFM's minimiser is $v_t$", flat(jax.grad(lambda th: _linear_losses(th, t, m, s)[0])(best)),
               jnp.zeros(12))


def _section_ot(d: Derivation, rng: np.random.Generator, m, s, low):
    """Minibatch OT pairing: brute force = Hungarian, and its expected cost falls with the batch size towards W2^2."""
    d.say("## 4. Minibatch optimal-transport coupling\nPair a batch of noise with a batch of data by the assignment "
          "minimising $\\sum_i \\|x_1^i - x_0^{\\sigma_i}\\|^2$ (Tong et al. 2024). `ot_assignment` enumerates all "
          "$B!$ permutations; SciPy's `linear_sum_assignment` (Jonker-Volgenant) is the witness.")
    batches = 300
    costs = np.asarray(jax.vmap(squared_cost)(m + jnp.asarray(rng.standard_normal((batches, 6, 2))) @ low.T,
                                              jnp.asarray(rng.standard_normal((batches, 6, 2)))))
    brute = np.asarray(jax.jit(jax.vmap(ot_assignment))(jnp.asarray(costs)))
    hungarian = np.stack([linear_sum_assignment(c)[1] for c in costs])
    brute_cost = np.array([c[np.arange(6), p].sum() for c, p in zip(costs, brute)])
    d.numeric(f"{batches} batches of $B = 6$: the brute-force optimum's cost equals the Hungarian algorithm's",
              brute_cost, np.array([c[np.arange(6), p].sum() for c, p in zip(costs, hungarian)]))
    d.numeric("...and so does the assignment itself (unique for continuous data)", brute, hungarian)
    w2_sq = float(m @ m + np.trace(s + np.eye(2) - 2 * sqrtm(np.asarray(s)).real))
    independent = float(m @ m + np.trace(s) + 2)
    per_size = {}
    for b, reps in ((2, 20000), (4, 8000), (7, 1500)):
        x1 = m + jnp.asarray(rng.standard_normal((reps, b, 2))) @ low.T
        x0 = jnp.asarray(rng.standard_normal((reps, b, 2)))
        cost = jax.vmap(squared_cost)(x1, x0)
        per_size[b] = jax.jit(jax.vmap(lambda c: transport_cost(c, ot_assignment(c))))(cost)
    means = [float(per_size[b].mean()) for b in (2, 4, 7)]
    d.inequality("The expected minibatch OT cost lies between the Gaussians' $W_2^2 = \\|m\\|^2 + \\mathrm{tr}(S + I "
                 f"- 2S^{{1/2}})$ = {w2_sq:.3f} and the independent coupling's $E\\|x_1 - x_0\\|^2 = \\|m\\|^2 + "
                 f"\\mathrm{{tr}}S + D$ = {independent:.3f}, and falls with the batch size: B = 2, 4, 7 give "
                 f"{means[0]:.3f}, {means[1]:.3f}, {means[2]:.3f} (each 5 SE apart)",
                 np.array([w2_sq, means[2] + 5 * float(per_size[7].std() / math.sqrt(1500)),
                           means[1] + 5 * float(per_size[4].std() / math.sqrt(8000)),
                           means[0] + 5 * float(per_size[2].std() / math.sqrt(20000))]),
                 np.array([means[2], means[1], means[0], independent]))
    fig, ax = new_figure()
    sizes = (2, 4, 7)
    ax.errorbar(sizes, means, yerr=[2 * float(per_size[b].std()) / math.sqrt(len(per_size[b])) for b in sizes],
                fmt="o-", capsize=3, label="minibatch OT (mean $\\pm$ 2 SE)")
    ax.axhline(independent, color="C1", ls="--", label="independent coupling ($B = 1$)")
    ax.axhline(w2_sq, color="k", ls=":", label="$W_2^2$ (population OT)")
    ax.set(xlabel="batch size $B$", ylabel="$E\\,\\|x_1 - x_0\\|^2$ of the pairs", xticks=[1, 2, 4, 7], xlim=(0.5, 7.5),
           ylim=(1.5, 5.9))
    ax.legend(fontsize="small", loc="lower right")
    d.figure(fig, "Pairing noise and data by optimal transport within a batch lowers the transport cost from the "
                  "independent coupling's towards $W_2^2$ as the batch grows.")
    return w2_sq


def _section_straight_paths(d: Derivation, rng: np.random.Generator, m, s, w2_sq) -> None:
    """With the population OT (Monge) coupling the marginal ODE's trajectories are straight; independently they curve."""
    root = jnp.asarray(sqrtm(np.asarray(s)).real)
    d.say("In the population limit the OT coupling is the Monge map $x_1 = T(x_0) = m + S^{1/2}x_0$: then "
          "$u = m + (S^{1/2} - I)x_0$ is a function of $x_t$, $\\mathrm{Cov}(u|x_t) = 0$, and the marginal ODE "
          "follows straight lines. Straightness: $E\\int_0^1\\|v\\|^2dt - E\\|x(1) - x(0)\\|^2 \\ge 0$, zero iff "
          "every trajectory is a straight line at constant speed (diffrax Dopri5, 2000 starts).")
    x0 = jnp.asarray(rng.standard_normal((2000, 2)))
    eye = jnp.eye(2)

    def ot_field(t, x):  # x_t = t m + ((1 - t) I + t S^1/2) x0  =>  v = m + (S^1/2 - I) x0(x_t)
        return m + jnp.linalg.solve((1 - t) * eye + t * root, (x - t * m).T).T @ (root - eye).T

    for name, field, check in (("the OT coupling's", ot_field, "numeric"),
                               ("the independent coupling's", lambda t, x: marginal_velocity(t, x, m, s), "ineq")):
        end, energy = _path_energy(field, x0)
        excess = jnp.mean(energy) - jnp.mean(jnp.sum((end - x0) ** 2, 1))
        if check == "numeric":
            d.numeric(f"{name} marginal field: every trajectory is straight, excess energy {float(excess):.1e}, and "
                      "ends at $T(x_0)$", jnp.concatenate([excess[None], jnp.ravel(end - (m + x0 @ root.T))]),
                      jnp.zeros(1 + end.size), atol=1e-7)
        else:
            d.inequality(f"{name} marginal field curves: excess energy {float(excess):.4f} > 0.05 (and its "
                         f"mean kinetic energy {float(jnp.mean(energy)):.3f} exceeds the OT one, $W_2^2$ = "
                         f"{w2_sq:.3f})", 0.05, excess)
    starts, steps = x0[:40], 100
    path = [starts]  # the independent coupling's trajectories drawn by the midpoint rule (the claims used Dopri5)
    for i in range(steps):
        half = path[-1] + marginal_velocity(i / steps, path[-1], m, s) / (2 * steps)
        path.append(path[-1] + marginal_velocity((i + 0.5) / steps, half, m, s) / steps)
    path = np.asarray(jnp.stack(path))
    fig, axes = new_figure(columns=2)
    axes[0].plot(path[:, :, 0], path[:, :, 1], "C0", lw=0.8)
    axes[0].plot(*np.asarray(end[:40]).T, "k.", ms=4, label="$x(1)$ by Dopri5")
    axes[0].set(title="independent coupling: curved", xlabel="$x_1$", ylabel="$x_2$")
    axes[0].legend(fontsize="small")
    monge = np.asarray(m + starts @ root.T)
    axes[1].plot(np.stack([starts[:, 0], monge[:, 0]]), np.stack([starts[:, 1], monge[:, 1]]), "C2", lw=0.8)
    axes[1].set(title="OT (Monge) coupling: straight", xlabel="$x_1$")
    for ax in axes:
        ax.plot(*np.asarray(starts).T, "o", color="0.6", ms=3)
    d.figure(fig, "Trajectories of the marginal ODE from 40 noise draws (grey) to the data: the independent "
                  "coupling's marginal field bends them, the OT coupling's moves each along a straight line.")


def _rk4(field, x, t0, t1, steps: int, keep: bool = False):
    """dx/dt = field(t, x) from x (N, D) at t0 to t1 by ``steps`` classic RK4 steps (jitted); t0, t1 scalars or
    (N,) times of each row (``field`` then takes them row by row). -> x(t1) (N, D), or every step's state
    (steps + 1, N, D) with ``keep``."""
    h = (jnp.asarray(t1) - jnp.asarray(t0)) / steps
    hx = h[:, None] if jnp.ndim(h) else h

    def step(x, i):
        t = t0 + i * h
        k1 = field(t, x)
        k2 = field(t + h / 2, x + hx / 2 * k1)
        k3 = field(t + h / 2, x + hx / 2 * k2)
        k4 = field(t + h, x + hx * k3)
        x = x + hx / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x, x

    end, states = jax.jit(lambda x: jax.lax.scan(step, x, jnp.arange(steps)))(x)
    return jnp.concatenate([x[None], states]) if keep else end


def _mixture_velocity(t, x, means, covs, weights):
    """The marginal velocity of the independent coupling for mixture data sum_j pi_j N(m_j, S_j): the components'
    Gaussian velocities (``marginal_velocity``) weighted by the posterior P(j | x_t = x), whose likelihood is
    N(x; t m_j, (1 - t)^2 I + t^2 S_j). x: (N, D) -> (N, D)."""
    logs, fields = [], []
    for m, s, w in zip(means, covs, weights):
        sigma_t, _ = gaussian_path_moments(t, m, s)
        diff = x - t * m
        logs.append(math.log(w) - 0.5 * jnp.sum(diff * jnp.linalg.solve(sigma_t, diff.T).T, 1)
                    - 0.5 * jnp.linalg.slogdet(sigma_t)[1])
        fields.append(marginal_velocity(t, x, m, s))
    post = jax.nn.softmax(jnp.stack(logs), axis=0)  # (J, N)
    return jnp.sum(post[:, :, None] * jnp.stack(fields), 0)


def _section_reflow(d: Derivation, rng: np.random.Generator, m, s, flow_map) -> None:
    """Reflow (Liu, Gong & Liu 2023) of Gaussian data: the flow's own coupling is the Monge map; straightness is the
    excess kinetic energy; one Euler step of the 2-rectified field is exact."""
    root = jnp.asarray(sqrtm(np.asarray(s)).real)
    d.say("## 6. Reflow: rectifying the flow's own coupling\nThe trained flow pairs each noise $z_0$ with the point "
          "$z_1$ its ODE carries it to. Reflow (Liu, Gong & Liu 2023, Algorithm 1) fits a new flow to the straight "
          "lines between these pairs: the 2-rectified flow. Its pairs are the old flow's, so its marginals stay the "
          "data's, and a deterministic coupling whose lines do not cross leaves nothing to average: the new flow "
          "goes straight. The straightness of a flow (Definition 3.1) measures what is left: "
          r"$S = \int_0^1 E\|(z_1 - z_0) - v_t(z_t)\|^2 dt$.")
    d.numeric("The independent coupling's flow map of Gaussian data is $x(1) = S^{1/2}x(0) + m$ (section 5's $M$ is "
              "the symmetric root): its coupling is the Monge map, so one reflow gives the straight OT field of "
              "section 4", flow_map, root, rtol=1e-8, atol=1e-8)
    x0 = jnp.asarray(rng.standard_normal((200, 2)))
    k = 200
    nodes = (np.arange(k) + 0.5) / k  # the midpoint rule in time
    field = lambda t, x: marginal_velocity(t, x, m, s)  # noqa: E731
    path = _rk4(field, x0, 0.0, 1.0, 2 * k, keep=True)  # the nodes are its odd steps
    velocities = jax.vmap(field)(jnp.asarray(nodes), path[1::2])
    measured = straightness(x0, path[-1], velocities)
    end, energy = _path_energy(field, x0)
    excess = jnp.mean(energy) - jnp.mean(jnp.sum((end - x0) ** 2, 1))
    d.numeric(rf"Since $\int_0^1 v_t dt = z_1 - z_0$, the straightness is the excess kinetic energy $E\int\|v\|^2dt "
              rf"- E\|z_1 - z_0\|^2$: `straightness` on 200 trajectories ({k} midpoint nodes) gives "
              f"{float(measured):.5f}, the energy {float(excess):.5f}", measured, excess, rtol=1e-4)
    one_step = x0 + field(0.0, x0)
    monge = m + x0 @ root.T
    miss = jnp.mean(jnp.sum((one_step - monge) ** 2, 1))
    d.inequality(f"One Euler step of the independent coupling's field misses its ODE's end: mean squared error "
                 f"{float(miss):.3f} > 0.1", 0.1, miss)
    ot_field = lambda t, x: m + jnp.linalg.solve((1 - t) * jnp.eye(2) + t * root, (x - t * m).T).T @ (  # noqa: E731
        root - jnp.eye(2)).T
    d.numeric("...while one Euler step of the 2-rectified (OT) field, $z_0 + v_0(z_0)$, lands on $z_1$ exactly",
              x0 + ot_field(0.0, x0), monge, rtol=1e-12, atol=1e-12)


def _section_reflow_mixture(d: Derivation, rng: np.random.Generator) -> None:
    """Reflow on a two-Gaussian mixture: the flow's pairs keep the marginals and lower the transport cost."""
    means = (jnp.array([-2.0, 1.0]), jnp.array([2.0, -1.0]))
    covs = (0.3 * jnp.eye(2), jnp.diag(jnp.array([0.5, 0.1])))
    weights = (0.4, 0.6)
    mixture = lambda t, x: _mixture_velocity(t, x, means, covs, weights)  # noqa: E731
    d.say(r"Data that is not Gaussian: a mixture of two Gaussians, $0.4\,\mathcal N((-2, 1), 0.3I) + "
          r"0.6\,\mathcal N((2, -1), \mathrm{diag}(0.5, 0.1))$. The independent coupling's marginal velocity is the "
          "components' Gaussian velocities weighted by the posterior of each component given $x_t$.")
    z0 = jnp.asarray(rng.standard_normal((2000, 2)))
    z1, energy = _path_energy(mixture, z0)
    mean = weights[0] * means[0] + weights[1] * means[1]
    d.monte_carlo("Reflow keeps the marginals: the ends $z_1$ of 2 000 noise draws have the mixture's mean",
                  z1, mean)
    second = sum(w * (jnp.trace(c) + mu @ mu) for w, mu, c in zip(weights, means, covs))
    cost = jnp.sum((z1 - z0) ** 2, 1)
    d.inequality(f"Rectifying lowers the transport cost (Theorem 3.5): the flow's coupling costs "
                 rf"$E\|z_1 - z_0\|^2$ = {float(cost.mean()):.3f} (+4 SE), the independent coupling's "
                 rf"$E\|x_1\|^2 + D$ = {float(second) + 2:.3f}",
                 cost.mean() + 4 * cost.std() / math.sqrt(len(cost)), second + 2)
    excess = jnp.mean(energy) - jnp.mean(cost)
    d.inequality(f"...and the mixture's flow still curves, straightness {float(excess):.3f} > 0.05: the lines "
                 f"from $z_0$ to $z_1$, which the 2-rectified flow learns, are straighter than the paths that made "
                 f"them", 0.05, excess)
    show = z0[:30]
    frames = np.asarray(_rk4(mixture, show, 0.0, 1.0, 50, keep=True)[1:])
    fig, ax = new_figure()
    ax.plot(np.concatenate([np.asarray(show)[None], frames])[:, :, 0],
            np.concatenate([np.asarray(show)[None], frames])[:, :, 1], "C0", lw=0.8)
    ax.plot(np.stack([show[:, 0], frames[-1, :, 0]]), np.stack([show[:, 1], frames[-1, :, 1]]), "C1--", lw=0.8)
    ax.plot(*np.asarray(show).T, "o", color="0.6", ms=3)
    ax.plot(*frames[-1].T, "k.", ms=4)
    ax.plot([], [], "C0", label="the flow's paths (1-rectified)")
    ax.plot([], [], "C1--", label="the pairs' lines (what reflow fits)")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.set_ylim(top=ax.get_ylim()[1] + 1.2)  # room for the legend above the paths
    ax.legend(fontsize="small", loc="upper left")
    d.figure(fig, "Reflow on the two-Gaussian mixture: the 1-rectified flow carries 30 noise draws (grey) along "
                  "curved paths (blue) to its samples (black); the 2-rectified flow is trained on the straight lines "
                  "between the same pairs (orange, dashed).")


def _section_consistency(d: Derivation, rng: np.random.Generator, m, s) -> None:
    """Consistency models (Song et al. 2023): the skip parameterisation is EDM's in the flow's time, and its boundary
    f(x, 1) = x holds whatever the network says."""
    t, sd, x, F = sp.symbols("t sigma_d x F", positive=True)
    d.say("## 7. Consistency models\nA consistency function maps every point of an ODE trajectory to the "
          "trajectory's end, here at $t = 1$ (Song et al. 2023). It is written $f_\\theta(x_t, t) = "
          "c_{skip}(t)\\,x_t + c_{out}(t)\\,F_\\theta(x_t, t)$ so that $f(x, 1) = x$ holds whatever the network says.")
    sigma = (1 - t) / t
    edm_skip, edm_out = sd**2 / (sigma**2 + sd**2), sd * sigma / sp.sqrt(sigma**2 + sd**2)
    r = (1 - t) ** 2 + sd**2 * t**2
    d.symbolic("EDM's skip parameterisation on the scaled point $x_t / t = x_1 + \\sigma x_0$, $\\sigma = (1-t)/t$, "
               "is `consistency_scalings`' $c_{skip} = \\sigma_d^2 t / r$, $c_{out} = \\sigma_d(1-t)/\\sqrt r$, "
               "$r = (1-t)^2 + \\sigma_d^2t^2$",
               edm_skip * x / t + edm_out * F - (sd**2 * t / r * x + sd * (1 - t) / sp.sqrt(r) * F))
    skip1, out1 = consistency_scalings(jnp.ones(1), 0.5)
    points = jnp.asarray(rng.standard_normal((4, 2)))
    d.numeric("The boundary condition holds by construction: $c_{skip}(1) = 1$, $c_{out}(1) = 0$, so "
              "`consistency_function` returns $x$ at $t = 1$ for any network output",
              jnp.concatenate([skip1, out1, jnp.ravel(consistency_function(
                  points, jnp.ones(4), jnp.asarray(rng.standard_normal((4, 2))) * 100))]),
              jnp.concatenate([jnp.ones(1), jnp.zeros(1), jnp.ravel(points)]), rtol=0, atol=1e-15)


def _section_consistency_loss(d: Derivation, rng: np.random.Generator, m, s) -> None:
    """The distillation loss at the exact consistency function of Gaussian data (the flow map from t to 1):
    zero with the exact ODE step, O(h^4) with the teacher's Euler step."""
    d.say("For Gaussian data the exact consistency function is the flow map from $t$ to 1, affine in $x$: "
          "$f^*(x, t) = M_t x + c_t$. Distillation pulls $f_\\theta(x_{t_n}, t_n)$ toward "
          "$f_{\\theta^-}(\\hat x_{t_{n+1}}, t_{n+1})$, where $\\hat x$ is one step of the teacher's ODE (eq. 7).")

    def map_rhs(t, y):  # the flow map's (M, c): dM/dt = G_t M, dc/dt = G_t c + g_t
        mm, c = y[:4].reshape(2, 2), y[4:]
        sigma_t, k = gaussian_path_moments(t, m, s)
        gain = jnp.linalg.solve(sigma_t, k).T
        return jnp.concatenate([jnp.ravel(gain @ mm), gain @ c + m - gain @ (t * m)])

    field = jax.vmap(lambda t, x: marginal_velocity(t, x[None], m, s)[0])  # row by row, each at its own time
    identity = jnp.concatenate([jnp.ravel(jnp.eye(2)), jnp.zeros(2)])

    def maps(t0):  # f* at each time t0 (K,): (K, 6), the flow map's M and c from t0 to 1 (RK4, 200 steps)
        return _rk4(jax.vmap(map_rhs), jnp.tile(identity, (len(t0), 1)), t0, jnp.ones_like(t0), 200)

    def steps_between(x, t0, t1):  # the exact ODE step, each row from its t0 to its t1 (RK4, 50 steps)
        return _rk4(field, x, t0, t1, 50)
    x0 = jnp.asarray(rng.standard_normal((2000, 2)))
    x1 = m + jnp.asarray(rng.standard_normal((2000, 2))) @ jnp.linalg.cholesky(s).T
    losses = {}
    for steps in (10, 20):
        grid = jnp.arange(steps + 1) / steps
        table = maps(grid[:-1])  # (N, 6): f* at each t_n; at t_N = 1 it is the identity
        table = jnp.concatenate([table, identity[None]])
        n = jnp.asarray(rng.integers(0, steps, len(x0)))
        t_n, t_next = grid[n], grid[n + 1]
        x_t = (1 - t_n[:, None]) * x0 + t_n[:, None] * x1

        def f_star(x, k):
            return jnp.einsum("bij,bj->bi", table[k, :4].reshape(-1, 2, 2), x) + table[k, 4:]

        online = f_star(x_t, n)
        euler = ode_step(x_t, field(t_n, x_t), t_n, t_next)
        losses[steps] = consistency_loss(online, f_star(euler, n + 1))
        if steps == 10:
            exact = steps_between(x_t, t_n, t_next)
            d.numeric("With the exact ODE step the loss at $f^*$ is zero: $f^*$ is constant along trajectories "
                      "(2 000 points, $N = 10$)", consistency_loss(online, f_star(exact, n + 1)), 0.0, atol=1e-12)
    ratio = float(losses[10] / losses[20])
    d.inequality(f"With the teacher's Euler step it is not: the local error $O(h^2)$ makes the loss $O(h^4)$, "
                 f"{float(losses[10]):.2e} at $N = 10$ and {float(losses[20]):.2e} at $N = 20$, a ratio of "
                 f"{ratio:.1f} (16 for $h^4$; between 10 and 25)", np.array([10.0, ratio]), np.array([ratio, 25.0]))


def _section_ode(d: Derivation, rng: np.random.Generator, m, s):
    """The exact marginal field's ODE pushes N(0, I) forward to the data N(m, S): moments and log-density; returns
    the flow map's matrix M."""
    d.say("## 5. The ODE of the marginal field transports N(0, I) to the data\nThe exact $v_t$ is affine in $x$, "
          "$v_t(x) = G_t x + g_t$, so the flow map is affine, $x(1) = Mx(0) + c$ with $\\dot M = G_tM$, "
          "$\\dot c = G_tc + g_t$; the pushforward of $\\mathcal N(0, I)$ is $\\mathcal N(c, MM^T)$.")

    def rhs(t, y):
        mm, c = y[:4].reshape(2, 2), y[4:]
        sigma_t, k = gaussian_path_moments(t, m, s)
        gain = jnp.linalg.solve(sigma_t, k).T
        return jnp.concatenate([jnp.ravel(gain @ mm), gain @ c + m - gain @ (t * m)])

    y1 = _solve(rhs, jnp.concatenate([jnp.ravel(jnp.eye(2)), jnp.zeros(2)]))
    mm, c = y1[:4].reshape(2, 2), y1[4:]
    d.numeric("diffrax Dopri5 (tolerance $10^{-11}$): $c = m$ and $MM^T = S$", jnp.concatenate([c, jnp.ravel(mm @ mm.T)]),
              jnp.concatenate([m, jnp.ravel(s)]), rtol=1e-8, atol=1e-8)
    x0 = jnp.asarray(rng.standard_normal((20_000, 2)))
    x1 = _solve(lambda t, x: marginal_velocity(t, x, m, s), x0, 1e-8, 1e-8)
    feats = jnp.concatenate([x1, (x1[:, :, None] * x1[:, None, :]).reshape(-1, 4)], 1)
    d.monte_carlo("20 000 noise draws pushed through the ODE: the mean and second moments of $x(1)$ are those of "
                  "$\\mathcal N(m, S)$", feats, jnp.concatenate([m, jnp.ravel(s + jnp.outer(m, m))]))
    fig, ax = new_figure()
    ax.plot(*np.asarray(x0[:2000]).T, ".", color="0.7", ms=2, label="noise $x(0) \\sim N(0, I)$")
    ax.plot(*np.asarray(x1[:2000]).T, ".", color="C0", ms=2, label="$x(1)$ after the ODE")
    circle = np.stack([np.cos(np.linspace(0, 2 * np.pi, 100)), np.sin(np.linspace(0, 2 * np.pi, 100))])
    for radius, style in ((1, "-"), (2, "--")):
        ellipse = np.asarray(m)[:, None] + radius * np.linalg.cholesky(np.asarray(s)) @ circle
        ax.plot(*ellipse, "k" + style, lw=1, label=f"{radius}-sd ellipse of $N(m, S)$")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.legend(fontsize="small", markerscale=4)
    d.figure(fig, "The marginal field's ODE carries standard normal noise (grey, 2000 of 20 000 draws) onto the data "
                  "distribution: the pushed samples fill the 1- and 2-sd ellipses of $N(m, S)$.")
    from theory_jax.cnf import log_likelihood

    pts = m + jnp.asarray(rng.standard_normal((200, 2))) * 1.3
    diff = pts - m
    exact = -0.5 * jnp.sum(diff * jnp.linalg.solve(s, diff.T).T, 1) - 0.5 * jnp.linalg.slogdet(s)[1] - math.log(2 * math.pi)
    d.numeric("...and the instantaneous change of variables through the field (`theory_jax.cnf.log_likelihood`, "
              "exact trace, Dopri5 at $10^{-10}$) gives the data density $\\log\\mathcal N(x; m, S)$ at 200 points",
              log_likelihood(lambda t, x: marginal_velocity(t, x, m, s), pts, atol=1e-10, rtol=1e-10), exact,
              rtol=1e-7, atol=1e-7)
    return mm


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("flow_matching", TITLE, LECTURES, echo=echo)
    _section_paths(d)
    rng = np.random.default_rng(0)  # after the SymPy step, whose symbols m and s a notebook would otherwise keep
    low = jnp.array([[0.8, 0.0], [0.5, 0.4]])
    m, s = jnp.array([1.5, -0.5]), low @ low.T
    _section_marginal(d, rng, m, s, low)
    _section_cfm_gradient(d, rng, m, s, low)
    w2_sq = _section_ot(d, rng, m, s, low)
    _section_straight_paths(d, rng, m, s, w2_sq)
    flow_map = _section_ode(d, rng, m, s)
    _section_reflow(d, rng, m, s, flow_map)
    _section_reflow_mixture(d, rng)
    _section_consistency(d, rng, m, s)
    _section_consistency_loss(d, rng, m, s)
    return d
