"""The ``vq_vae`` derivation (``python -m theory_jax vq_vae``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/vq_vae.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE``
as a notebook.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial.distance
import scipy.stats
import sympy as sp
from jax.flatten_util import ravel_pytree

from theory_jax.derivation import Derivation, float64_params, full_precision, new_figure
from theory_jax.vae import conv_transpose_padding
from theory_jax.vq_vae import (
    GridDecoder,
    GridEncoder,
    assignment_stats,
    code_usage,
    codebook_loss,
    commitment_loss,
    ema_codebook,
    ema_update,
    perplexity,
    quantise,
    restart_dead_codes,
    squared_distances,
    straight_through,
    vector_quantise,
)

TITLE = "the vector-quantised VAE"
LECTURES = ("vector quantisation; straight-through estimator; codebook and commitment losses; EMA codebook and "
            "k-means; perplexity; dead-code restarts")


# 8. The derivation ------------------------------------------------------------------------------------
def _separated(rng, n: int, codebook: np.ndarray, margin: float, scale: float = 1.0) -> np.ndarray:
    """n Gaussian rows (scale ``scale``) whose nearest code beats the second nearest by ``margin`` in squared
    distance: no ties in the argmin, and no flip under a perturbation smaller than the margin."""
    rows = []
    while len(rows) < n:
        z = scale * rng.standard_normal((4 * n, codebook.shape[1]))
        dist = np.sort(scipy.spatial.distance.cdist(z, codebook, "sqeuclidean"), axis=1)
        rows += list(z[dist[:, 1] - dist[:, 0] > margin])
    return np.asarray(rows[:n])


def _brute_force_nearest(z: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """argmin over codes by a Python loop, the distance computed directly as sum (z - e)^2."""
    best = np.full(len(z), np.inf)
    index = np.zeros(len(z), dtype=np.int64)
    for k, e in enumerate(codebook):
        dist = np.sum((z - e) ** 2, axis=1)
        better = dist < best
        best[better], index[better] = dist[better], k
    return index


def _sympy_losses():
    """The scalar losses with stop-gradient modelled as a separate symbol, held fixed while differentiating and
    set back to the variable afterwards: (d codebook/d e, d commitment/d z, d codebook/d z, d commitment/d e)."""
    z, e, z_sg, e_sg, beta = sp.symbols("z e z_sg e_sg beta", real=True)
    codebook = (z_sg - e) ** 2  # ||sg(z) - e||^2
    commitment = beta * (z - e_sg) ** 2  # beta ||z - sg(e)||^2
    back = {z_sg: z, e_sg: e}
    derivatives = [sp.diff(codebook, e).subs(back), sp.diff(commitment, z).subs(back),
                   sp.diff(codebook, z).subs(back), sp.diff(commitment, e).subs(back)]
    return derivatives, (z, e, beta), (codebook + commitment).subs(back)


def _gaussian_voronoi(codes: np.ndarray):
    """For z ~ N(0, 1) and sorted 1-D codes: the mass of each Voronoi interval and the expected distortion
    E (z - q(z))^2, by the truncated-normal moments int_a^b z^j phi for j = 0, 1, 2."""
    edges = np.concatenate([[-np.inf], (codes[1:] + codes[:-1]) / 2, [np.inf]])
    a, b = edges[:-1], edges[1:]
    phi = scipy.stats.norm.pdf
    m0 = scipy.stats.norm.cdf(b) - scipy.stats.norm.cdf(a)
    m1 = phi(a) - phi(b)
    with np.errstate(invalid="ignore"):  # -inf * 0 at the outer edges, which contribute 0
        m2 = m0 + np.nan_to_num(a * phi(a)) - np.nan_to_num(b * phi(b))
    return m0, float(np.sum(m2 - 2 * codes * m1 + codes**2 * m0))


def _section_nearest_code(d: Derivation, rng: np.random.Generator):
    """1. Nearest-codebook assignment: the distances, the argmin, idempotence."""
    num_codes, dim, n = 12, 4, 300
    codebook = rng.standard_normal((num_codes, dim))
    z = _separated(rng, n, codebook, margin=1e-3, scale=1.3)
    zj, ej = jnp.asarray(z), jnp.asarray(codebook)
    direct = np.sum((z[:, None, :] - codebook[None]) ** 2, axis=-1)
    d.numeric(f"The expanded distance $\\|z\\|^2 - 2z\\cdot e + \\|e\\|^2$ (`squared_distances`) is the direct "
              f"$\\sum_d (z_d - e_d)^2$ and SciPy's `cdist(..., 'sqeuclidean')`, for {n} rows and $K = {num_codes}$ "
              f"codes in $D = {dim}$",
              jnp.stack([squared_distances(zj, ej)] * 2),
              np.stack([direct, scipy.spatial.distance.cdist(z, codebook, "sqeuclidean")]))
    z_q, indices = jax.jit(quantise)(zj, ej)
    d.numeric("`nearest_code` (eq. 1, $k(z) = \\arg\\min_k \\|z - e_k\\|^2$) is the brute-force answer of a Python "
              "loop over the codes; the rows were drawn so that the nearest code wins by a margin (no ties)",
              indices, _brute_force_nearest(z, codebook))
    twice, again = jax.jit(quantise)(z_q, ej)
    d.numeric("Quantising twice changes nothing: a code is its own nearest code, so $q(q(z)) = q(z)$ (values and "
              "indices)", jnp.concatenate([twice.ravel(), again]), jnp.concatenate([z_q.ravel(), indices]))
    d.inequality("$z_q = e_{k(z)}$ is closer to $z$ than every other code: $\\|z - z_q\\|^2 \\le \\|z - e_k\\|^2$ for "
                 "all rows and codes (direct distances)", np.sum((z - np.asarray(z_q)) ** 2, -1)[:, None], direct)
    return codebook, z, zj, ej, z_q, indices


def _section_voronoi(d: Derivation):
    """1. ...which cuts space into Voronoi cells: code frequencies and distortion for Gaussian z in 1-D."""
    codes_1d = np.array([-1.7, -0.6, 0.1, 0.9, 2.2])
    masses, distortion = _gaussian_voronoi(codes_1d)
    draws = jnp.asarray(np.random.default_rng(11).standard_normal((200_000, 1)))
    q1, k1 = jax.jit(quantise)(draws, jnp.asarray(codes_1d[:, None]))
    d.monte_carlo(f"Quantisation cuts space into Voronoi cells: for $z \\sim \\mathcal N(0, 1)$ and the 1-D codebook "
                  f"{codes_1d.tolist()}, code $k$ is chosen with the Gaussian mass of the interval between the midpoints "
                  f"of its neighbours ({len(draws):,} draws, all 5 frequencies)",
                  np.asarray(jax.nn.one_hot(k1, len(codes_1d), dtype=jnp.float64)), masses)
    d.monte_carlo(f"...and the expected distortion $\\mathbb E(z - z_q)^2$ is the sum over cells of "
                  f"$\\int_a^b (z - e_k)^2\\varphi$, by the truncated-normal moments (= {distortion:.5f})",
                  np.asarray((draws - q1)[:, 0] ** 2), distortion)
    z_1d, k_1d, grid = np.asarray(draws[:, 0]), np.asarray(k1), np.linspace(-4.5, 4.5, 300)
    edges = np.concatenate([[-4.5], (codes_1d[1:] + codes_1d[:-1]) / 2, [4.5]])  # the cells, cut at +-4.5
    fig, axes = new_figure(columns=2)
    for k in range(len(codes_1d)):  # each cell's draws, binned inside the cell (bins of about 0.1)
        cell = np.linspace(edges[k], edges[k + 1], int((edges[k + 1] - edges[k]) / 0.1) + 2)
        axes[0].hist(z_1d[k_1d == k], cell, weights=np.full(np.sum(k_1d == k), 1 / (len(z_1d) * (cell[1] - cell[0]))),
                     histtype="stepfilled")
    axes[0].plot(grid, scipy.stats.norm.pdf(grid), "k-", lw=1, label="$N(0, 1)$")
    axes[0].plot(codes_1d, np.zeros(len(codes_1d)), "kv", ms=7, label="codes $e_k$")
    axes[0].set(xlabel="$z$", ylabel="density", title="draws coloured by their code")
    axes[0].legend(fontsize=8)
    axes[1].bar(np.arange(len(codes_1d)) - 0.2, masses, 0.4, label="Gaussian mass of the cell")
    axes[1].bar(np.arange(len(codes_1d)) + 0.2, np.bincount(k_1d, minlength=len(codes_1d)) / len(z_1d), 0.4,
                label="frequency in the draws")
    axes[1].set(xlabel="code $k$", ylabel="probability", title="how often each code wins", ylim=(0, 0.4))
    axes[1].legend(fontsize=8)
    d.figure(fig, "Nearest-code quantisation cuts the line at the midpoints between codes; each code is chosen "
             "with the Gaussian mass of its cell.")
    return codes_1d, masses, k1


def _section_straight_through(d: Derivation, rng: np.random.Generator, z, zj, ej, z_q) -> None:
    """2. The straight-through estimator: z_q forward, the identity backward; the plain quantiser's gradient is 0."""
    d.say("The quantiser is piecewise constant, so its gradient is zero almost everywhere and nothing would reach "
          "the encoder. The straight-through estimator (Bengio et al. 2013; eq. 3's 'copy gradients') feeds the "
          "decoder $z + \\mathrm{sg}(z_q - z)$: $z_q$ forward, the identity backward.")
    cot = jnp.asarray(rng.standard_normal(z.shape))

    def through(zz, cb):
        return straight_through(zz, quantise(zz, cb)[0])

    @jax.jit
    def through_vjp(zz, cb, c):
        out, vjp = jax.vjp(through, zz, cb)
        return out, *vjp(c)

    out, g_z, g_e = through_vjp(zj, ej, cot)
    d.numeric("Forward, `straight_through`$(z, z_q)$ is $z_q$", out, z_q)
    d.gradient("Backward, the vector-Jacobian product of any cotangent $c$ through $z + \\mathrm{sg}(q(z) - z)$ is "
               "$c$ itself with respect to $z$, and 0 with respect to the codebook (jax.vjp, a random $c$)",
               jnp.concatenate([g_z.ravel(), g_e.ravel()]), jnp.concatenate([cot.ravel(), jnp.zeros(g_e.size)]))
    direction, h = jnp.asarray(rng.standard_normal(z.shape)), 1e-7
    g_plain, finite = jax.jit(lambda zz, cb: (jax.grad(lambda v: jnp.sum(cot * quantise(v, cb)[0]))(zz),
                                               (quantise(zz + h * direction, cb)[0] - quantise(zz, cb)[0]) / h))(zj, ej)
    d.gradient("The plain quantiser's gradient with respect to $z$ is 0: by autodiff (argmin has no derivative, the "
               "gather of codes does not depend on $z$) and by finite differences of step $10^{-7}$, far inside "
               "every row's margin", jnp.concatenate([g_plain.ravel(), finite.ravel()]), jnp.zeros(2 * z.size))


def _section_losses(d: Derivation, rng: np.random.Generator, codebook, z, zj) -> None:
    """3. The codebook and commitment losses: which parameters each moves, and the k-means step."""
    num_codes, dim = codebook.shape
    d.say("Since the straight-through gradient bypasses the codebook, eq. 3 adds two terms: the codebook loss "
          "$\\|\\mathrm{sg}(z_e) - e\\|^2$ pulls the codes to the encoder outputs, and the commitment loss "
          "$\\beta\\|z_e - \\mathrm{sg}(e)\\|^2$ keeps the encoder near its codes.")
    (dcb_de, dcm_dz, dcb_dz, dcm_de), (zs, es, beta), total = _sympy_losses()
    d.symbolic("Scalar case, stop-gradient modelled as a symbol held fixed while differentiating: "
               "$\\partial_e \\|\\mathrm{sg}(z) - e\\|^2 = 2(e - z)$, the codebook's pull towards the encoder output",
               dcb_de, 2 * (es - zs))
    d.symbolic("...and $\\partial_z \\beta\\|z - \\mathrm{sg}(e)\\|^2 = 2\\beta(z - e)$, the encoder's pull "
               "towards its code", dcm_dz, 2 * beta * (zs - es))
    d.symbolic("...while the codebook loss has no derivative in $z$ and the commitment loss none in $e$ "
               "($|\\partial_z| + |\\partial_e| = 0$): the sum has the value $(1 + \\beta)(z - e)^2$, but its two "
               "halves move different parameters with different weights, 1 and $\\beta$",
               sp.Abs(dcb_dz) + sp.Abs(dcm_de) + total - (1 + beta) * (zs - es) ** 2, 0)
    far = np.concatenate([codebook, 50.0 + rng.standard_normal((3, dim))])  # three codes no row chooses
    farj = jnp.asarray(far)

    def both_losses(zz, cb):
        zq = quantise(zz, cb)[0]
        return jnp.sum(codebook_loss(zz, zq)), jnp.sum(commitment_loss(zz, zq))

    (gcb_z, gcb_e), (gcm_z, gcm_e) = jax.jit(jax.jacrev(both_losses, argnums=(0, 1)))(zj, farj)
    k_far = _brute_force_nearest(z, far)
    expected = np.zeros_like(far)
    for row, k in zip(z, k_far):
        expected[k] += 2 * (far[k] - row)
    d.gradient(f"$\\partial$ codebook loss $/\\partial e_k = 2\\sum_{{n: k_n = k}}(e_k - z_n)$ (a Python loop over the "
               f"rows), zero for the {len(far) - num_codes} codes no row chooses; $\\partial/\\partial z = 0$",
               jnp.concatenate([gcb_e.ravel(), gcb_z.ravel()]), np.concatenate([expected.ravel(), np.zeros(z.size)]))
    zq_far = far[k_far]
    d.gradient("$\\partial$ commitment loss $/\\partial z = 2(z - z_q)$, and 0 for the codebook",
               jnp.concatenate([gcm_z.ravel(), gcm_e.ravel()]),
               np.concatenate([(2 * (z - zq_far)).ravel(), np.zeros(far.size)]))
    counts = np.bincount(k_far, minlength=len(far))
    used = counts > 0
    step = np.asarray(farj - gcb_e / (2 * np.maximum(counts, 1))[:, None])
    means = np.stack([z[k_far == k].mean(0) for k in np.flatnonzero(used)])
    d.numeric("A gradient step on the codebook loss with step size $1/(2n_k)$ per code moves each used code to the "
              "mean of its rows: one k-means step (Lloyd 1982)", step[used], means)


def _section_ema_kmeans(d: Derivation, rng: np.random.Generator, codebook, z, zj, indices):
    """4. The EMA codebook: assignment statistics, and with decay 0 one k-means step."""
    num_codes, dim = codebook.shape
    d.say("Appendix A.1 replaces the codebook loss by exponential moving averages of the counts $N_k$ and sums "
          "$m_k$ of the vectors assigned to each code, $e_k = m_k / N_k$ (`ema_update`, `ema_codebook`).")
    counts_j, sums_j = assignment_stats(zj, indices, num_codes)
    idx = np.asarray(indices)
    loop_counts = np.array([np.sum(idx == k) for k in range(num_codes)], dtype=float)
    loop_sums = np.stack([z[idx == k].sum(0) for k in range(num_codes)])
    d.numeric("`assignment_stats`: the one-hot counts $n_k$ and sums $\\sum_{k_n = k} z_n$ are those of a loop over "
              "the codes", jnp.concatenate([counts_j, sums_j.ravel()]), np.concatenate([loop_counts, loop_sums.ravel()]))
    from sklearn.cluster import KMeans  # imported here: it is slow to load and only this claim needs it

    init = codebook.copy()
    lloyd = KMeans(n_clusters=num_codes, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(z).cluster_centers_
    state = ema_update(jnp.asarray(rng.uniform(1, 5, num_codes)), jnp.asarray(rng.standard_normal((num_codes, dim))),
                       zj, indices, 0.0)
    ema_step = ema_codebook(*state, 0.0)
    used_codes = loop_counts > 0
    d.numeric(f"With decay 0 and $\\epsilon = 0$, `ema_codebook`(`ema_update`(...)) is one k-means step "
              f"(appendix A.1 with $\\gamma = 0$; Lloyd 1982): the {int(used_codes.sum())} used codes equal "
              "scikit-learn's `KMeans(init=codebook, max_iter=1)` centres "
              "(a third witness; it moves empty clusters elsewhere, so unused codes are left out)",
              ema_step[used_codes], lloyd[used_codes])
    return counts_j, sums_j, loop_counts, loop_sums


def _section_ema_convergence(d: Derivation, rng: np.random.Generator, zj, indices, loop_counts, loop_sums) -> None:
    """4. ...on a fixed assignment the EMA codes converge geometrically, at rate gamma, to the cluster means."""
    (num_codes, dim), n, used_codes = loop_sums.shape, len(zj), loop_counts > 0
    decay, steps = 0.9, 400
    n0 = jnp.asarray(rng.uniform(0.5, 3.0, num_codes))
    n0 = n0 / jnp.sum(n0) * n  # the state's total count is the batch size, as after any update
    m0 = jnp.asarray(3.0 * rng.standard_normal((num_codes, dim)))

    @jax.jit
    def iterate(n0, m0):
        def one(carry, _):
            size, total = ema_update(*carry, zj, indices, decay)
            return (size, total), (ema_codebook(size, total, 0.0), jnp.sum(size))

        return jax.lax.scan(one, (n0, m0), None, length=steps)[1]

    books, totals = iterate(n0, m0)
    mu = jnp.asarray(np.where(used_codes[:, None], loop_sums / np.maximum(loop_counts, 1)[:, None], 0.0))
    t = np.arange(1, steps + 1)[:, None, None]
    n_t = decay**t[:, :, 0] * np.asarray(n0) + (1 - decay**t[:, :, 0]) * loop_counts
    closed = decay**t * (np.asarray(m0) - np.asarray(n0)[:, None] * np.asarray(mu)) / n_t[:, :, None]
    sel = used_codes
    d.numeric(f"Appendix A.1 on a fixed assignment, decay $\\gamma = {decay}$: after $t$ updates $e_k^{{(t)}} - \\bar z_k = "
              "\\gamma^t (m_k^{(0)} - N_k^{(0)} \\bar z_k) / N_k^{(t)}$ with $N_k^{(t)} = \\gamma^t N_k^{(0)} + "
              "(1 - \\gamma^t) n_k$, for every $t \\le 100$ and used code: geometric convergence at rate $\\gamma$",
              (books - mu[None])[:100, sel], closed[:100, sel])
    errors = np.max(np.abs(np.asarray(books - mu[None])[:, sel]), axis=(1, 2))
    rate = float(np.exp(np.polyfit(np.arange(101, 201), np.log(errors[100:200]), 1)[0]))
    d.numeric(f"...so the measured rate, $\\exp$ of the slope of $\\log\\max|e^{{(t)}} - \\bar z|$ over "
              f"$100 < t \\le 200$, is $\\gamma$ to $10^{{-6}}$ (measured {rate:.8f}; by then $N^{{(t)}} = n_k$ up to "
              f"$\\gamma^{{100}}$ = {decay**100:.0e})", rate, decay, rtol=1e-6, atol=0.0)
    fig, ax = new_figure()
    ax.semilogy(np.arange(1, steps + 1), errors, label="EMA codebook, measured")
    ax.semilogy(np.arange(1, steps + 1), np.max(np.abs(closed[:, sel]), axis=(1, 2)), "--",
                label="closed form $\\gamma^t (m^{(0)} - N^{(0)} \\bar z) / N^{(t)}$")
    ax.semilogy(np.arange(1, steps + 1), errors[0] * decay ** np.arange(steps), "k:", lw=1,
                label=f"$\\gamma^t$, $\\gamma$ = {decay}")
    ax.set(xlabel="EMA updates $t$", ylabel="max $|e_k^{(t)} - \\bar z_k|$ (used codes)")
    ax.legend(fontsize=8)
    d.figure(fig, "The EMA codebook forgets its start geometrically: the distance of the used codes to their cluster "
             "means falls like $\\gamma^t$, down to rounding error.")
    d.numeric(f"After {steps} updates ($\\gamma^{{{steps}}} = {decay**steps:.0e}$) the used codes are the cluster "
              "means $\\bar z_k$, and every update kept the total count $\\sum_k N_k = n$",
              jnp.concatenate([books[-1][sel].ravel(), totals]),
              jnp.concatenate([mu[sel].ravel(), jnp.full(steps, float(n))]))


def _section_laplace_smoothing(d: Derivation, loop_counts, loop_sums) -> None:
    """4. ...and Laplace smoothing gives a code that lost all its vectors a finite vector."""
    num_codes, dim = loop_sums.shape
    lost = np.arange(num_codes) < 2  # two codes that have lost all their vectors: N_k = m_k = 0
    sizes, sums = np.where(lost, 0.0, loop_counts), np.where(lost[:, None], 0.0, loop_sums)
    eps, total = 1e-5, float(np.sum(np.where(lost, 0.0, loop_counts)))
    smoothed = (sizes + eps) / (total + num_codes * eps) * total
    book_eps = ema_codebook(jnp.asarray(sizes), jnp.asarray(sums), eps)
    d.numeric(f"Laplace smoothing ($\\epsilon = {eps:g}$) keeps the total count, $\\sum_k \\tilde N_k = "
              "\\sum_k N_k = n$, and gives two codes that lost every vector ($N_k = m_k = 0$) a finite vector, 0, "
              "where $\\epsilon = 0$ would divide 0 by 0",
              np.concatenate([[np.sum(smoothed)], np.asarray(book_eps)[lost].ravel()]),
              np.concatenate([[total], np.zeros(2 * dim)]))


def _section_usage(d: Derivation, rng: np.random.Generator, codebook, codes_1d, masses, k1) -> None:
    """5. Codebook usage: the perplexity exp H(p), the effective number of codes in use."""
    num_codes = len(codebook)
    d.say("A codebook can collapse: few codes win every argmin. The perplexity $\\exp H(p)$ of the usage "
          "frequencies $p_k$ is the effective number of codes in use.")
    random_counts = rng.integers(0, 20, size=num_codes).astype(float)
    random_counts[:3] = 0.0
    perplexity_jit = jax.jit(perplexity)
    d.numeric(f"`perplexity` is $K = {num_codes}$ for uniform usage, 1 for a single code, and "
              "$\\exp$ of `scipy.stats.entropy` for counts with zeros ($0 \\log 0 = 0$)",
              jnp.stack([perplexity_jit(jnp.full(num_codes, 7.0)), perplexity_jit(jnp.eye(num_codes)[3] * 40.0),
                         perplexity_jit(jnp.asarray(random_counts))]),
              np.array([num_codes, 1.0, np.exp(scipy.stats.entropy(random_counts))]))
    usage = code_usage(k1, len(codes_1d))
    d.numeric("`code_usage` of the 200 000 Gaussian draws of section 1 is NumPy's `bincount` of their indices",
              usage, np.bincount(np.asarray(k1), minlength=len(codes_1d)))
    d.numeric(f"...and their perplexity {float(perplexity_jit(usage)):.4f} is that of the Voronoi masses, "
              f"{float(np.exp(scipy.stats.entropy(masses))):.4f}, up to sampling error (within 0.01): 5 codes, "
              "fewer than 5 in effect", perplexity_jit(usage), np.exp(scipy.stats.entropy(masses)), rtol=0.0, atol=1e-2)
    many = jnp.asarray(rng.integers(0, 9, size=(50, num_codes)).astype(float) + np.eye(num_codes)[0])
    perps = jax.jit(jax.vmap(perplexity))(many)
    d.inequality(f"$1 \\le$ perplexity $\\le K$ for 50 random count vectors (from {float(perps.min()):.2f} to "
                 f"{float(perps.max()):.2f})", jnp.concatenate([jnp.ones(50), perps]),
                 jnp.concatenate([perps, jnp.full(50, float(num_codes))]))


def _section_dead_codes(d: Derivation, rng: np.random.Generator, codebook, z, zj, ej, counts_j, sums_j,
                        loop_counts) -> None:
    """6. Dead-code restarts (Jukebox): rarely used codes restart at encoder outputs, with a consistent EMA state."""
    num_codes, n, used_codes = len(codebook), len(z), loop_counts > 0
    use = jnp.asarray(np.where(used_codes, loop_counts, 0.0))
    threshold = float(np.sort(loop_counts)[2]) + 0.5  # the three least used codes (more on a tie) are dead
    choice = rng.integers(0, n, size=num_codes)
    new_book, new_size, new_sum = restart_dead_codes(ej, counts_j, sums_j, zj, use, threshold, jnp.asarray(choice))
    dead = np.asarray(use) < threshold
    d.say(f"Codes used fewer than a threshold times restart at encoder outputs chosen by the caller (Jukebox): "
          f"here {int(dead.sum())} of {num_codes}.")
    d.numeric("`restart_dead_codes` (Dhariwal et al. 2020): each dead code becomes its chosen row $z_{c_k}$ with "
              "EMA state $N_k = 1$, $m_k = z_{c_k}$; every other code and its state are untouched",
              jnp.concatenate([new_book.ravel(), new_size, new_sum.ravel()]),
              np.concatenate([np.where(dead[:, None], z[choice], codebook).ravel(),
                              np.where(dead, 1.0, np.asarray(counts_j)),
                              np.where(dead[:, None], z[choice], np.asarray(sums_j)).ravel()]))
    d.numeric("...so the restarted state is consistent: `ema_codebook` of it ($\\epsilon = 0$) returns the restarted "
              "codes", ema_codebook(new_size, new_sum, 0.0)[dead], z[choice][dead])


def _section_networks(d: Derivation, rng: np.random.Generator):
    """7. The networks: the decoder's transposed conv is the adjoint of the encoder's strided conv."""
    image = (1, 8, 8)
    enc = GridEncoder(image, code_dim=3, channels=(4, 8), groups=2)
    dec = GridDecoder(image, code_dim=3, channels=(4, 8), groups=2)
    x = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)))
    enc_params = float64_params(enc, rng, x)
    z_e = jax.eval_shape(enc.apply, enc_params, x)
    dec_params = float64_params(dec, rng, z_e)
    net_book = jnp.asarray(rng.standard_normal((6, 3)))
    d.say("The networks: `GridEncoder` halves the image $L$ times with strided 3x3 convs and ends in a 1x1 conv to "
          "$D$ channels, so a $(C, H, W)$ image becomes an $H/2^L \\times W/2^L$ grid of code vectors; "
          "`GridDecoder` mirrors it with transposed convs.")
    kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 8)) / 6.0)
    conv = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False)
    pad = conv_transpose_padding(3, 1, 1)
    deconv = nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding=(pad, pad), transpose_kernel=True, use_bias=False)
    probe_in = jnp.asarray(rng.standard_normal((2, 8, 8, 4)))
    probe_out = jnp.asarray(rng.standard_normal((2, 4, 4, 8)))

    @jax.jit
    def adjoint(kernel, probe_in, probe_out):
        _, conv_vjp = jax.vjp(lambda v: conv.apply({"params": {"kernel": kernel}}, v), probe_in)
        return deconv.apply({"params": {"kernel": kernel}}, probe_out), conv_vjp(probe_out)[0]

    d.numeric("The decoder's transposed conv (torch's `ConvTranspose2d(stride 2, padding 1, output_padding 1)`, in "
              "flax `ConvTranspose(transpose_kernel=True)` with padding $(k - 1 - p, k - 1 - p + 1)$) is the adjoint "
              "of the encoder's strided conv with the same kernel: its output is the conv's vector-Jacobian product",
              *adjoint(kernel, probe_in, probe_out))
    return enc, dec, x, enc_params, z_e, dec_params, net_book


def _section_end_to_end(d: Derivation, enc, dec, x, enc_params, z_e, dec_params, net_book) -> None:
    """7. ...end to end, the gradient is copied across the quantiser to the encoder, and none reaches the codebook."""
    image = enc.image_shape
    def reconstruction(ep, cb):
        zz = enc.apply(ep, x)
        z_st, _, _ = vector_quantise(zz.reshape(-1, 3), cb)
        return jnp.sum((dec.apply(dec_params, z_st.reshape(zz.shape)) - x) ** 2)

    @jax.jit
    def copied(enc_params, book):
        g_enc, g_book = jax.grad(reconstruction, argnums=(0, 1))(enc_params, book)
        zz, enc_vjp = jax.vjp(lambda p: enc.apply(p, x), enc_params)
        zq = quantise(zz.reshape(-1, 3), book)[0].reshape(zz.shape)
        g_zq = jax.grad(lambda v: jnp.sum((dec.apply(dec_params, v) - x) ** 2))(zq)
        return (jnp.concatenate([ravel_pytree(g_enc)[0], g_book.ravel()]),
                jnp.concatenate([ravel_pytree(enc_vjp(g_zq)[0])[0], jnp.zeros(book.size)]))

    d.gradient(f"End to end ({image} images to a {z_e.shape[1]}x{z_e.shape[2]} grid of {z_e.shape[3]}-vectors, "
               "decoded back): the reconstruction loss's gradient for the encoder's weights is the encoder's "
               "vector-Jacobian product of the decoder's gradient at $z_q$ (the gradient is copied across the "
               "quantiser), and the codebook gets none from it",
               *copied(enc_params, net_book))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("vq_vae", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(7)
    d.say("A VQ-VAE (van den Oord et al. 2017) replaces the VAE's Gaussian code by a discrete one: the encoder "
          "outputs $z_e(x)$, a grid of vectors in $\\mathbb R^D$, and each vector is replaced by its nearest entry of "
          "a learned codebook $e_1, \\dots, e_K$ (eq. 1-2). The decoder sees only codebook vectors; the prior over "
          "the grid of indices is learned afterwards (a PixelCNN in the paper).")

    codebook, z, zj, ej, z_q, indices = _section_nearest_code(d, rng)
    codes_1d, masses, k1 = _section_voronoi(d)
    _section_straight_through(d, rng, z, zj, ej, z_q)
    _section_losses(d, rng, codebook, z, zj)
    counts_j, sums_j, loop_counts, loop_sums = _section_ema_kmeans(d, rng, codebook, z, zj, indices)
    _section_ema_convergence(d, rng, zj, indices, loop_counts, loop_sums)
    _section_laplace_smoothing(d, loop_counts, loop_sums)
    _section_usage(d, rng, codebook, codes_1d, masses, k1)
    _section_dead_codes(d, rng, codebook, z, zj, ej, counts_j, sums_j, loop_counts)
    enc, dec, x, enc_params, z_e, dec_params, net_book = _section_networks(d, rng)
    _section_end_to_end(d, enc, dec, x, enc_params, z_e, dec_params, net_book)
    return d
