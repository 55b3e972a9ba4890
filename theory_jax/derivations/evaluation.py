"""The ``evaluation`` derivation (``python -m theory_jax evaluation``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/evaluation.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import sympy as sp
from scipy.spatial import cKDTree

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.evaluation import (
    bits_per_dim,
    dequantize,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kid,
    mmd2_biased,
    mmd2_unbiased,
    nll_on_level_scale,
    polynomial_kernel,
    precision_recall,
    sqrtm_psd,
)

TITLE = "evaluation of generative models"
LECTURES = "FID; Inception Score; kernel MMD and KID; precision and recall; bits/dim and dequantisation"


# 6. The derivation ------------------------------------------------------------------------------------------
def _spd(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.3 * np.eye(d))


def _gaussians(rng: np.random.Generator, n: int, d: int):
    return [(rng.standard_normal(d), _spd(rng, d), rng.standard_normal(d), _spd(rng, d)) for _ in range(n)]


def _rbf_expectation(delta, var_sum, bandwidth):
    """E exp(-|z|^2 / 2l^2) for z ~ N(delta, V): det(I + V/l^2)^{-1/2} exp(-delta^T (l^2 I + V)^{-1} delta / 2)."""
    d = len(delta)
    return (np.linalg.det(np.eye(d) + var_sum / bandwidth**2) ** -0.5
            * np.exp(-0.5 * delta @ np.linalg.solve(bandwidth**2 * np.eye(d) + var_sum, delta)))


def _section_frechet_formula(d: Derivation, rng: np.random.Generator):
    """The Frechet distance between Gaussians: the symmetric eigh form, and its 1-D and diagonal cases."""
    pairs = _gaussians(rng, 20, 5)
    fd = frechet_distance(*(jnp.asarray(np.stack(p)) for p in zip(*pairs)))
    via_sqrtm = [np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
                 for m1, s1, m2, s2 in pairs]
    d.numeric("`frechet_distance` (symmetric form $(S_1^{1/2} S_2 S_1^{1/2})^{1/2}$ by eigh) equals "
              "$\\|\\mu_1-\\mu_2\\|^2 + \\mathrm{tr}(S_1 + S_2 - 2(S_1S_2)^{1/2})$ with scipy.linalg.sqrtm "
              "of the non-symmetric product (20 random pairs, d = 5)", fd, via_sqrtm)

    m1, m2 = sp.symbols("mu_1 mu_2", real=True)
    s1, s2 = sp.symbols("sigma_1 sigma_2", positive=True)
    one_d = (m1 - m2) ** 2 + s1**2 + s2**2 - 2 * sp.sqrt(s1**2 * s2**2)
    d.symbolic("In 1-D, $d_F^2 = (\\mu_1-\\mu_2)^2 + (\\sigma_1-\\sigma_2)^2$", one_d, (m1 - m2) ** 2 + (s1 - s2) ** 2)
    zr = sp.Symbol("z", real=True)
    quantile_w2 = sp.integrate((m1 + s1 * zr - m2 - s2 * zr) ** 2 * sp.exp(-zr**2 / 2) / sp.sqrt(2 * sp.pi),
                               (zr, -sp.oo, sp.oo))
    d.symbolic("...which is $W_2^2$: in 1-D the optimal coupling pairs quantiles, $x_1 = \\mu_1 + \\sigma_1 z$, "
               "$x_2 = \\mu_2 + \\sigma_2 z$, and $\\int (x_1 - x_2)^2 \\varphi(z)\\,dz$ is the same", quantile_w2, one_d)
    a, b = sp.symbols("a1:4", positive=True), sp.symbols("b1:4", positive=True)
    s1m, s2m = sp.diag(*[x**2 for x in a]), sp.diag(*[x**2 for x in b])
    cross = sum(sp.sqrt(a[i] ** 2 * b[i] ** 2) for i in range(3))  # tr (S1 S2)^{1/2}, S1 S2 = diag(a_i^2 b_i^2)
    d.symbolic("Diagonal covariances $S_1 = \\mathrm{diag}(a_i^2)$, $S_2 = \\mathrm{diag}(b_i^2)$: "
               "$\\mathrm{tr}(S_1 + S_2 - 2(S_1S_2)^{1/2}) = \\sum_i (a_i - b_i)^2$, the 1-D case per coordinate",
               s1m.trace() + s2m.trace() - 2 * cross, sum((a[i] - b[i]) ** 2 for i in range(3)))
    return pairs, fd


def _section_optimal_transport(d: Derivation, rng: np.random.Generator, pairs):
    """Optimal transport: the map T(x) = m2 + A (x - m1) costs d_F^2, and every other coupling costs more."""
    mu1, c1, mu2, c2 = pairs[0]
    r = np.asarray(sqrtm_psd(jnp.asarray(c1)))
    r_inv = np.linalg.inv(r)
    amap = r_inv @ np.asarray(sqrtm_psd(jnp.asarray(r @ c2 @ r))) @ r_inv
    d.say("Let $A = S_1^{-1/2}(S_1^{1/2}S_2S_1^{1/2})^{1/2}S_1^{-1/2}$ and $T(x) = \\mu_2 + A(x - \\mu_1)$.")
    d.numeric("$T$ pushes $\\mathcal N(\\mu_1, S_1)$ forward to $\\mathcal N(\\mu_2, S_2)$: $A S_1 A = S_2$",
              amap @ c1 @ amap, c2)
    d.inequality("$A$ is symmetric positive definite, so $T$ is the gradient of a convex function and, by "
                 "Brenier's theorem, the optimal transport map (smallest eigenvalue of $A$ > 0)",
                 1e-6, np.linalg.eigvalsh(0.5 * (amap + amap.T)).min())
    x = rng.multivariate_normal(mu1, c1, size=20_000)
    tx = mu2 + (x - mu1) @ amap.T
    fd0 = float(frechet_distance(*map(jnp.asarray, pairs[0])))
    d.monte_carlo("Its cost $\\mathbb E\\|X - T(X)\\|^2$ equals $d_F^2$ (20 000 draws): $d_F^2 = W_2^2$",
                  np.sum((x - tx) ** 2, axis=1), fd0)
    costs, r2 = [], np.asarray(sqrtm_psd(jnp.asarray(c2)))
    for _ in range(300):  # any coupling's cross-covariance is S1^{1/2} K S2^{1/2} with ||K||_op <= 1
        k = rng.standard_normal((5, 5))
        k = k / np.linalg.norm(k, 2) * rng.uniform(0.5, 1.0) if rng.uniform() < 0.5 else np.linalg.qr(k)[0]
        c = r @ k @ r2
        costs.append(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(c))
    d.inequality("Every other coupling costs more: 300 random cross-covariances $S_1^{1/2} K S_2^{1/2}$ "
                 "($K$ orthogonal or a contraction) give $\\mathbb E\\|X - Y\\|^2 \\ge d_F^2$", fd0, np.array(costs))
    return amap


def _section_frechet_zero_iff_equal(d: Derivation, pairs, fd, amap) -> None:
    """Zero iff equal: the trace term is a squared Frobenius norm; and the gradient of d_F^2."""
    zero = jnp.zeros(5)
    bures = [frechet_distance(zero, jnp.asarray(s1_), zero, jnp.asarray(s2_)) for _, s1_, _, s2_ in pairs]
    norms = []
    for _, s1_, _, s2_ in pairs:
        r1, r2 = np.asarray(sqrtm_psd(jnp.asarray(s1_))), np.asarray(sqrtm_psd(jnp.asarray(s2_)))
        u = scipy.linalg.polar(r2 @ r1)[0]  # the orthogonal polar factor of S2^{1/2} S1^{1/2}
        norms.append(np.sum((r1 - r2 @ u) ** 2))
    d.numeric("$\\mathrm{tr}(S_1 + S_2 - 2(S_1^{1/2}S_2S_1^{1/2})^{1/2}) = \\min_U \\|S_1^{1/2} - S_2^{1/2}U\\|_F^2$ "
              "over orthogonal $U$, attained at the polar factor of $S_2^{1/2}S_1^{1/2}$ (scipy.linalg.polar): a squared "
              "norm, so $d_F^2 \\ge 0$, and zero only if $S_1^{1/2} = S_2^{1/2}U$, i.e. $S_1 = S_2$", bures, norms)
    same = frechet_distance(*(jnp.asarray(np.stack(p)) for p in zip(*[(m, s, m, s) for m, s, _, _ in pairs])))
    d.numeric("...and $d_F^2(\\mathcal N(\\mu, S), \\mathcal N(\\mu, S)) = 0$ (20 random Gaussians)",
              same, np.zeros(20))
    d.inequality("$d_F^2 > 0$ for each of the 20 unequal pairs (smallest value shown against 0)", 1e-6, fd)

    mu1, _, mu2, _ = pairs[0]
    grads = jax.jit(jax.grad(frechet_distance, argnums=(0, 3)))(*map(jnp.asarray, pairs[0]))
    d.gradient("$\\nabla_{\\mu_1} d_F^2 = 2(\\mu_1 - \\mu_2)$ and $\\nabla_{S_2} d_F^2 = I - A^{-1}$ "
               "(jax.grad through eigh)", jnp.concatenate([grads[0], grads[1].ravel()]),
               np.concatenate([2 * (mu1 - mu2), (np.eye(5) - np.linalg.inv(amap)).ravel()]))


def _section_plug_in_bias(d: Derivation, rng: np.random.Generator) -> None:
    """The plug-in FID is biased upwards by O(1/N); extrapolating in 1/N recovers the population value."""
    dim, reps, sizes = 4, 400, np.array([50, 100, 200, 400, 800])
    cov_b = _spd(rng, dim)
    mean_b = 0.5 * rng.standard_normal(dim)
    cov_a = np.eye(dim)
    stats = jax.vmap(gaussian_statistics)
    fd_batch = jax.jit(frechet_distance)
    same, diff, mean_part = {}, {}, {}
    for n in sizes:
        xa = rng.standard_normal((2, reps, n, dim))
        xb = mean_b + rng.standard_normal((reps, n, dim)) @ np.linalg.cholesky(cov_b).T
        (ma, sa), (ma2, sa2), (mb, sb) = stats(jnp.asarray(xa[0])), stats(jnp.asarray(xa[1])), stats(jnp.asarray(xb))
        same[n], diff[n] = np.asarray(fd_batch(ma, sa, ma2, sa2)), np.asarray(fd_batch(ma, sa, mb, sb))
        mean_part[n] = np.sum(np.asarray(ma - ma2) ** 2, axis=1)
    d.monte_carlo("Plug-in FID: the mean term alone is biased, $\\mathbb E\\|\\hat\\mu_1 - \\hat\\mu_2\\|^2 = "
                  "2\\,\\mathrm{tr}(S)/N$ for two samples of size $N$ of one Gaussian (N = 50, 400 replicates)",
                  mean_part[50], 2 * dim / 50)
    means = np.array([same[n].mean() for n in sizes])
    ses = np.array([same[n].std(ddof=1) / np.sqrt(reps) for n in sizes])
    d.inequality("Between two samples of the same Gaussian the plug-in FID is positive on average: mean "
                 + ", ".join(f"{m:.3f}" for m in means) + f" at N = {', '.join(map(str, sizes))} (d = {dim}), "
                 "each more than 4 standard errors above the true value 0", 4 * ses, means)
    exact = float(frechet_distance(jnp.zeros(dim), jnp.asarray(cov_a), jnp.asarray(mean_b), jnp.asarray(cov_b)))
    fig, ax = new_figure()
    for i, (label, table, truth) in enumerate((("the same Gaussian", same, 0.0), ("two different Gaussians", diff, exact))):
        y = np.array([table[n].mean() for n in sizes])
        w = 1 / np.array([table[n].var(ddof=1) / reps for n in sizes])
        design = np.stack([np.ones(len(sizes)), 1.0 / sizes], axis=1)
        cov_fit = np.linalg.inv(design.T @ (w[:, None] * design))
        intercept = (cov_fit @ design.T @ (w * y))[0]
        d.numeric(f"Extrapolating FID$_N = a + b/N$ to $N \\to \\infty$ (Chong & Forsyth 2020), {label}: "
                  f"$a$ = {intercept:.4f} recovers the population value {truth:.4f} within 4 standard errors of the fit",
                  intercept, truth, rtol=0.0, atol=4 * math.sqrt(cov_fit[0, 0]))
        ax.errorbar(1.0 / sizes, y, yerr=2 / np.sqrt(w), fmt="o", color=f"C{i}", capsize=3, label=f"plug-in, {label}")
        ax.plot([0.0, 1.0 / sizes[0]], intercept + (cov_fit @ design.T @ (w * y))[1] * np.array([0.0, 1.0 / sizes[0]]),
                "-", color=f"C{i}", lw=1)
        ax.plot([0.0], [truth], "*", color=f"C{i}", ms=12)
    ax.set(xlabel="$1/N$", ylabel="FID (feature units$^2$)")
    ax.legend(fontsize=8)
    d.figure(fig, "The plug-in FID grows linearly in $1/N$ above its population value (stars, at $1/N = 0$); the "
                  "weighted line $a + b/N$ through the means ($\\pm$ 2 SE) extrapolates back to it.")


def _section_inception_score(d: Derivation, rng: np.random.Generator) -> None:
    """The Inception Score is exp of the mutual information between image and label: between 1 and C."""
    tables = [rng.dirichlet(np.full(10, alpha), size=64) for alpha in (0.05, 0.3, 1.0, 5.0, 50.0) for _ in range(10)]
    score = jax.jit(inception_score)
    scores = np.array([float(score(jnp.asarray(p))) for p in tables])

    def entropy(p):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)

    mutual = np.array([entropy(p.mean(0)) - entropy(p).mean() for p in tables])
    d.numeric("$\\mathrm{IS} = \\exp(\\mathbb E_x \\mathrm{KL}(p(y|x)\\,\\|\\,p(y))) = \\exp(H(y) - \\mathbb E_x H(y|x))$"
              " (50 tables of 64 images x 10 classes)", scores, np.exp(mutual))
    p = tables[7]
    joint = p / len(p)
    indep = np.full((len(p), 1), 1 / len(p)) * p.mean(0)[None, :]
    d.numeric("...$= \\exp I(x; y)$, with $I = \\mathrm{KL}(p(x, y)\\,\\|\\,p(x)p(y))$ on the joint table "
              "($x$ uniform over the images)", np.log(scores[7]), np.sum(scipy.special.rel_entr(joint, indep)))
    d.inequality("$\\mathrm{IS} \\ge 1$ since KL $\\ge 0$ (all 50 tables)", 1.0, scores)
    d.inequality("$\\mathrm{IS} \\le C = 10$ since $I(x;y) \\le H(y) \\le \\log C$ (all 50 tables)", scores, 10.0)
    rows = np.tile(rng.dirichlet(np.ones(10)), (64, 1))
    onehot = np.eye(10)[np.arange(60) % 10]
    d.numeric("Both bounds are attained: IS = 1 when every image gets the same $p(y|x)$; IS = C when "
              "$p(y|x)$ is one-hot and the classes are balanced",
              [score(jnp.asarray(rows)), score(jnp.asarray(onehot))], [1.0, 10.0])
    q = sp.Symbol("p", positive=True)
    table = sp.Matrix([[q, 1 - q], [1 - q, q]])
    marginal = [(table[0, j] + table[1, j]) / 2 for j in range(2)]
    log_is = sum(table[i, j] * sp.log(table[i, j] / marginal[j]) for i in range(2) for j in range(2)) / 2
    binary_h = -(q * sp.log(q) + (1 - q) * sp.log(1 - q))
    d.symbolic("Two images, two classes, $p(y|x_1) = (p, 1-p)$, $p(y|x_2) = (1-p, p)$: "
               "$\\log \\mathrm{IS} = \\log 2 - H_b(p)$", sp.expand_log(log_is, force=True), sp.log(2) - binary_h)
    d.symbolic("...which tends to $\\log C = \\log 2$ as the predictions become certain ($p \\to 0$)",
               sp.limit(sp.log(2) - binary_h, q, 0, "+"), sp.log(2))
    p = jnp.asarray(tables[12])
    d.gradient("$\\partial \\log \\mathrm{IS} / \\partial p_{ij} = (\\log p_{ij} - \\log p(y_j)) / N$ (jax.grad)",
               jax.jit(jax.grad(lambda t: jnp.log(inception_score(t))))(p), (jnp.log(p) - jnp.log(p.mean(0))) / p.shape[0])


def _section_mmd(d: Derivation, rng: np.random.Generator) -> None:
    """The unbiased MMD^2 U-statistic against its closed-form population value; the biased V-statistic."""
    mu, v = sp.Symbol("mu", real=True), sp.Symbol("v", positive=True)
    ell, z = sp.Symbol("ell", positive=True), sp.Symbol("z", real=True)
    integral = sp.integrate(sp.exp(-z**2 / (2 * ell**2)) * sp.exp(-(z - mu) ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v),
                            (z, -sp.oo, sp.oo))
    closed = ell / sp.sqrt(ell**2 + v) * sp.exp(-mu**2 / (2 * (ell**2 + v)))
    d.symbolic("The RBF kernel's mean under Gaussians, in 1-D: for $z = x - y \\sim \\mathcal N(\\mu, v)$, "
               "$\\mathbb E\\, e^{-z^2/2\\ell^2} = \\frac{\\ell}{\\sqrt{\\ell^2 + v}} e^{-\\mu^2 / 2(\\ell^2 + v)}$ "
               "(SymPy: the integral divided by the closed form is 1); in d dimensions, per eigen-direction, "
               "$\\det(I + V/\\ell^2)^{-1/2} e^{-\\mu^T(\\ell^2 I + V)^{-1}\\mu/2}$",
               sp.simplify(sp.powsimp(integral / closed, force=True)), 1)
    dim, m, n, ell_v, reps = 3, 12, 16, 1.5, 4000
    m1, m2 = np.zeros(dim), 0.4 * rng.standard_normal(dim)
    c1, c2 = _spd(rng, dim, 0.5), _spd(rng, dim, 0.5)
    e_xx, e_yy = _rbf_expectation(np.zeros(dim), 2 * c1, ell_v), _rbf_expectation(np.zeros(dim), 2 * c2, ell_v)
    population = e_xx + e_yy - 2 * _rbf_expectation(m1 - m2, c1 + c2, ell_v)
    xs = m1 + rng.standard_normal((reps, m, dim)) @ np.linalg.cholesky(c1).T
    ys = m2 + rng.standard_normal((reps, n, dim)) @ np.linalg.cholesky(c2).T
    unbiased_batch = jax.jit(jax.vmap(mmd2_unbiased, (0, 0, None)))
    unbiased = np.asarray(unbiased_batch(jnp.asarray(xs), jnp.asarray(ys), ell_v))
    biased = np.asarray(jax.jit(jax.vmap(mmd2_biased, (0, 0, None)))(jnp.asarray(xs), jnp.asarray(ys), ell_v))
    d.monte_carlo(f"MMD$^2_u$ is unbiased: its mean over {reps} pairs of samples (m = {m}, n = {n}, d = {dim}) equals the "
                  "population MMD$^2 = \\mathbb E k(x,x') + \\mathbb E k(y,y') - 2\\mathbb E k(x,y)$ in closed form",
                  unbiased, population)
    bias = (1 - e_xx) / m + (1 - e_yy) / n
    d.monte_carlo("The V-statistic (diagonals kept) is not: its mean is MMD$^2 + (k(x,x) - \\mathbb E k(x,x'))/m + "
                  "(k(y,y) - \\mathbb E k(y,y'))/n$", biased, population + bias)
    d.inequality(f"...a bias of {bias:.4f}, many standard errors of this experiment: the Monte Carlo check above has the "
                 "power to see it", population + 4 * biased.std(ddof=1) / np.sqrt(reps), biased.mean())
    fig, ax = new_figure()
    bins = np.linspace(min(unbiased.min(), biased.min()), max(unbiased.max(), biased.max()), 60)
    ax.hist(unbiased, bins=bins, alpha=0.6, label="MMD$^2_u$ (U-statistic)")
    ax.hist(biased, bins=bins, alpha=0.6, label="V-statistic")
    ax.axvline(population, color="k", ls="--", lw=1, label="population MMD$^2$")
    ax.axvline(unbiased.mean(), color="C0", lw=1.5)
    ax.axvline(biased.mean(), color="C1", lw=1.5)
    ax.set(xlabel="estimate of MMD$^2$ (m = 12, n = 16)", ylabel=f"count of {reps} replicates")
    ax.legend(fontsize=8)
    d.figure(fig, "The U-statistic's mean (blue line) sits on the population MMD$^2$, and single estimates can be "
                  "negative; the V-statistic's mean (orange line) is shifted up by its bias.")
    same = np.asarray(unbiased_batch(jnp.asarray(xs), jnp.asarray(xs[::-1]), ell_v))[: reps // 2]
    d.monte_carlo("For equal distributions MMD$^2_u$ is zero in expectation (independent sample pairs)", same, 0.0)
    d.inequality("...so it must take negative values: the smallest of the estimates is below 0", same.min(), 0.0)


def _section_kid(d: Derivation, rng: np.random.Generator) -> None:
    """KID: the cubic kernel has an explicit feature map phi(x) = (1, x/sqrt(d))^{(x)3}; its MMD^2_u is unbiased."""
    reps = 4000
    feats = rng.standard_gamma(2.0, size=(2, reps, 10, 6)) / 2.0
    kid_batch = jax.jit(jax.vmap(kid))
    kid_same = np.asarray(kid_batch(jnp.asarray(feats[0]), jnp.asarray(feats[1])))
    d.monte_carlo("KID (MMD$^2_u$ with $k(x,y) = (x\\cdot y/d + 1)^3$) is zero in expectation for equal "
                  "distributions (Gamma features, d = 6, 10 per set)", kid_same, 0.0)
    x, y = feats[0, 0], feats[1, 0] + 0.3

    def phi(a):
        v_ = np.concatenate([np.ones((len(a), 1)), a / np.sqrt(a.shape[1])], axis=1)
        return np.einsum("ni,nj,nk->nijk", v_, v_, v_).reshape(len(a), -1)

    xj, yj = jnp.asarray(x), jnp.asarray(y)
    k_xx, k_yy, k_xy = polynomial_kernel(xj, xj), polynomial_kernel(yj, yj), polynomial_kernel(xj, yj)
    v_stat = jnp.mean(k_xx) + jnp.mean(k_yy) - 2 * jnp.mean(k_xy)
    d.numeric("The cubic kernel is an inner product of explicit features $\\phi(x) = (1, x/\\sqrt d)^{\\otimes 3}$, so "
              "the V-statistic is $\\|\\bar\\phi(x) - \\bar\\phi(y)\\|^2 \\ge 0$ (kernel matrix and V-statistic)",
              jnp.append(k_xy.ravel(), v_stat),
              np.append((phi(x) @ phi(y).T).ravel(), np.sum((phi(x).mean(0) - phi(y).mean(0)) ** 2)))
    shifted = np.asarray(kid_batch(jnp.asarray(feats[0]), jnp.asarray(feats[1] + 0.3)))
    block = 50  # fresh quadruples (x, x', y, y') per replicate for the linear-time estimate
    q = rng.standard_gamma(2.0, size=(4, reps, block, 6)) / 2.0 + np.array([0, 0, 0.3, 0.3])[:, None, None, None]

    def paired(u, w):
        return (np.sum(u * w, axis=-1) / 6 + 1) ** 3

    linear = (paired(q[0], q[1]) + paired(q[2], q[3]) - paired(q[0], q[3]) - paired(q[1], q[2])).mean(axis=1)
    d.monte_carlo("For shifted features KID agrees in expectation with the linear-time estimate "
                  "$k(x,x') + k(y,y') - k(x,y') - k(x',y)$ on fresh quadruples (Gretton et al. 2012, sec. 6): "
                  f"their difference has mean 0 over {reps} replicates", shifted - linear, 0.0)
    d.inequality(f"...and that common value ({shifted.mean():.4f}) is positive: 4 standard errors above 0",
                 4 * shifted.std(ddof=1) / np.sqrt(reps), shifted.mean())


def _section_precision_recall(d: Derivation, rng: np.random.Generator) -> None:
    """Precision and recall by k-NN manifolds: the limiting cases, a brute-force check and mode dropping."""
    real = rng.standard_normal((300, 4))
    pr = jax.jit(precision_recall, static_argnames="k")
    d.numeric("Precision and recall of a set against itself: (1, 1)", pr(jnp.asarray(real),
              jnp.asarray(real)), [1.0, 1.0])
    d.numeric("...against a disjoint set far away: (0, 0)", pr(jnp.asarray(real),
              jnp.asarray(real + 100.0)), [0.0, 0.0])
    p, r = pr(jnp.asarray(real), jnp.asarray(real[:100]))
    d.numeric("A subset of the real set (100 of 300) has precision 1 (every fake point is real) ...", p, 1.0)
    d.inequality(f"...and recall {float(r):.3f} < 1 (it misses part of the real manifold)", r, 1.0 - 1e-3)
    fake = rng.standard_normal((250, 4)) * 1.2 + 0.2
    tree_real, tree_fake = cKDTree(real), cKDTree(fake)
    radius_real = tree_real.query(real, k=4)[0][:, 3]  # the point itself is its own 1st neighbour
    radius_fake = tree_fake.query(fake, k=4)[0][:, 3]
    brute_p = np.mean([np.any(np.linalg.norm(real - f, axis=1) <= radius_real) for f in fake])
    brute_r = np.mean([np.any(np.linalg.norm(fake - x, axis=1) <= radius_fake) for x in real])
    d.numeric("`precision_recall` (k = 3) agrees with a brute-force k-NN (scipy cKDTree radii, one point at a time)",
              pr(jnp.asarray(real), jnp.asarray(fake)), [brute_p, brute_r])
    centres = 6.0 * np.eye(4)
    modes = centres[rng.integers(0, 4, 800)] + rng.standard_normal((800, 4))
    dropped = centres[rng.integers(0, 2, 800)] + rng.standard_normal((800, 4))
    p, r = map(float, pr(jnp.asarray(modes), jnp.asarray(dropped)))
    d.inequality(f"Mode dropping (fake samples from 2 of 4 real modes) keeps precision high ({p:.3f} > 0.9) and "
                 f"halves recall ({r:.3f}, within 0.1 of 1/2)", [0.9, abs(r - 0.5)], [p, 0.1])


def _section_bits_per_dim(d: Derivation) -> None:
    """Bits per dimension, and the 8 bits/dim between the unit and the level scale."""
    big_d = sp.Symbol("D", positive=True)
    d.symbolic("Reading a density on $[0,1]^D$ instead of $[0, 256)^D$ ($y = x/256$) changes $-\\log p$ by "
               "$D \\log 256$, i.e. by exactly 8 bits/dim", big_d * sp.log(256) / (big_d * sp.log(2)), 8)
    d.numeric("A uniform pmf on 256 levels costs 8 bits/dim; the uniform density on $[0,1]^D$ costs 0, "
              "plus 8 on the level scale", [bits_per_dim(784 * math.log(256), 784),
                                            bits_per_dim(nll_on_level_scale(0.0, 784), 784)], [8.0, 8.0])


def _section_dequantisation(d: Derivation, rng: np.random.Generator) -> None:
    """Uniform dequantisation: a continuous NLL upper-bounds the discrete one, and without it NLLs are meaningless."""
    # A continuous model on [0, 256): a mixture of two Beta densities scaled by 256, per dimension (SciPy).
    parts = [(0.6, scipy.stats.beta(2.0, 7.0, scale=256.0)), (0.4, scipy.stats.beta(9.0, 2.5, scale=256.0))]

    def log_density(t):
        return scipy.special.logsumexp([math.log(w) + dist.logpdf(t) for w, dist in parts], axis=0)

    levels = np.arange(256.0)
    pmf = sum(w * (dist.cdf(levels + 1) - dist.cdf(levels)) for w, dist in parts)
    nodes, wq = np.polynomial.legendre.leggauss(64)
    u, wq = (nodes + 1) / 2, wq / 2
    bound = -np.sum(wq * log_density(levels[:, None] + u), axis=-1)  # E_u[-log p(x + u)] per level
    d.numeric("The discrete model $P(x) = \\int_{[0,1)} p(x + u)\\,du$ induced by a density on $[0, 256)$ is a pmf "
              "on the 256 levels", np.sum(pmf), 1.0)
    d.inequality("Dequantisation bound (Theis et al. 2016): $-\\log P(x) \\le \\mathbb E_{u}[-\\log p(x + u)]$ by "
                 "Jensen, at every one of the 256 levels (64-point Gauss-Legendre in $u$)", -np.log(pmf), bound)
    fig, axes = new_figure(columns=2)
    axes[0].bar(levels[:24] + 0.5, pmf[:24], width=1.0, color="C7", alpha=0.6, label="pmf $P(x)$ on unit bins")
    t = np.linspace(0.0, 24.0, 400)
    axes[0].plot(t, np.exp(log_density(t)), color="C0", label="density $p(t)$")
    axes[0].set(xlabel="level $x$ / value $t$", ylabel="probability / density", title="the first 24 of 256 levels")
    axes[0].legend(fontsize=8)
    axes[1].plot(levels, bound + np.log(pmf), color="C3")
    axes[1].set(yscale="log", xlabel="level $x$", ylabel="$E_u[-\\log p(x+u)] + \\log P(x)$ (nats)",
                title="the Jensen gap, $\\geq 0$")
    d.figure(fig, "A density induces the pmf of its mass on each unit bin (left); the dequantised NLL exceeds the "
                  "discrete one at every level by a Jensen gap (right), largest where $\\log p$ is steep, near 0 at "
                  "its modes and its dip.")
    hist = rng.dirichlet(np.ones(256))
    d.numeric("The bound is tight for a density constant on each unit bin, $p(x + u) = P(x)$",
              -np.log(hist), -np.sum(wq * np.log(hist[:, None] * np.ones_like(u)), axis=-1))

    dims, n = 16, 4000
    x = rng.choice(256, size=(n, dims), p=pmf / pmf.sum())
    y = np.asarray(dequantize(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(rng.uniform(size=(n, dims)))))
    nll_unit = -np.sum(log_density(256.0 * y) + math.log(256), axis=-1)  # the density of y on [0, 1]^D
    nll_levels = nll_on_level_scale(jnp.asarray(nll_unit), dims)
    d.numeric("The same dequantised data scored on $[0,1]^D$ and on $[0, 256)^D$: exactly 8 bits/dim apart",
              bits_per_dim(nll_levels, dims) - bits_per_dim(jnp.asarray(nll_unit), dims), np.full(n, 8.0))
    expected = np.sum(bound[x], axis=-1)
    d.monte_carlo("With $u \\sim U[0,1)^D$ passed to `dequantize`, the continuous NLL (+ $D\\log 256$) estimates "
                  f"the bound $\\sum_d \\mathbb E_u[-\\log p(x_d + u)]$ without bias ({n} images of D = {dims})",
                  nll_levels - expected, 0.0)
    discrete = -np.sum(np.log(pmf)[x], axis=-1)
    bpd = [float(bits_per_dim(v.mean(), dims)) for v in (discrete, expected)]
    d.inequality(f"So the dequantised bits/dim ({bpd[1]:.5f}) upper-bound the discrete bits/dim ({bpd[0]:.5f}), "
                 "image by image (nearly tight for this smooth density)", discrete, expected)
    sigma = 1e-3  # p(t) = sum_x P(x) N(t; x, sigma^2): a valid density that spikes on the integers
    spiky = scipy.special.logsumexp(np.log(pmf) + scipy.stats.norm.logpdf(levels[:, None], levels, sigma), axis=1)
    raw = float(bits_per_dim(-np.sum(spiky[x], axis=-1).mean(), dims))
    d.inequality(f"Without dequantisation a density spiking on the integers (width {sigma:g}) scores {raw:.2f} bits/dim "
                 f"on the raw levels, below 0 and below the {bpd[0]:.2f} of the best discrete model: continuous NLLs of "
                 "discrete data are only meaningful dequantised", [raw, 0.0], [0.0, bpd[0]])


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("evaluation", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    d.say("FID fits a Gaussian to the features of real and of generated images and reports the Frechet (2-Wasserstein) "
          "distance between the two: $d_F^2 = \\|\\mu_1 - \\mu_2\\|^2 + \\mathrm{tr}(S_1 + S_2 - 2(S_1S_2)^{1/2})$.")
    pairs, fd = _section_frechet_formula(d, rng)
    amap = _section_optimal_transport(d, rng, pairs)
    _section_frechet_zero_iff_equal(d, pairs, fd, amap)
    _section_plug_in_bias(d, rng)
    d.say("The Inception Score rewards confident $p(y|x)$ (low $H(y|x)$) and varied classes (high $H(y)$).")
    _section_inception_score(d, rng)
    d.say("Kernel MMD compares mean embeddings, $\\mathrm{MMD}^2 = \\|\\mathbb E\\phi(x) - \\mathbb E\\phi(y)\\|^2$; "
          "KID is its unbiased estimate on features with a cubic kernel.")
    _section_mmd(d, rng)
    _section_kid(d, rng)
    d.say("Precision asks whether generated samples look real; recall whether the real data are covered.")
    _section_precision_recall(d, rng)
    d.say("Likelihoods of 8-bit images are reported in bits/dim, on data dequantised with uniform noise.")
    _section_bits_per_dim(d)
    _section_dequantisation(d, rng)
    return d
