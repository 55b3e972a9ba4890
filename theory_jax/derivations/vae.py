"""The ``vae`` derivation (``python -m theory_jax vae``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/vae.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as a
notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from theory_jax.derivation import Derivation, as_float64, full_precision, new_figure
from theory_jax.derivations.vae_linear_gaussian import (
    _beta_study,
    _cvae_terms,
    _elbo_terms,
    _gradient_samples,
    _iwae_samples,
    _model,
    _random_qs,
)
from theory_jax.elbo import (
    gaussian_kl,
    gaussian_log_prob,
    mvn_kl,
    standard_normal_kl,
)
from theory_jax.vae import (
    LOG_2PI,
    VAE,
    bernoulli_log_prob,
    feature_reconstruction_nll,
    hierarchical_kl,
    log_density_matrix,
    permute_dims,
    reparameterize,
    stratified_log_weights,
    tc_discriminator_loss,
    total_correlation_terms,
    vaegan_losses,
    with_condition,
)

TITLE = "the variational autoencoder"
LECTURES = ("VAE; reparameterisation; training and inference; beta-VAE; beta-TCVAE; FactorVAE; hierarchical VAEs; "
            "VAE-GAN; conditional VAE")


# 4. The derivation -------------------------------------------------------------------------------
@jax.jit
def _small_vae_terms(x, eps):
    """A small flax VAE at init (key 0) on x (B, 4, 4, 1), eps (B, 2): -importance_nll with K = 1, elbo, the
    closed-form KL and its one-sample estimate log q(z|x) - log p(z) at the same z, each (B,)."""
    model = VAE(image_shape=(1, 4, 4), latent_dim=2, architecture="mlp", likelihood="bernoulli", hidden=(8,))
    params = as_float64(model.init(jax.random.key(0), x, eps))
    mean, logvar = model.apply(params, x, method=VAE.encode)
    z = reparameterize(mean, logvar, eps)
    kl_sample = gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z)
    return (-model.apply(params, x, eps[:, None, :], method=VAE.importance_nll),
            model.apply(params, x, eps, method=VAE.elbo), standard_normal_kl(mean, logvar), kl_sample)


def _sympy_reparameterisation():
    """Density of z = mu + sigma eps by change of variables, and the Gaussian density it should be."""
    z, mu = sp.symbols("z mu", real=True)
    sigma = sp.symbols("sigma", positive=True)
    eps = (z - mu) / sigma  # the inverse map
    pushed = sp.exp(-eps**2 / 2) / sp.sqrt(2 * sp.pi) * sp.Abs(sp.diff(eps, z))
    return pushed, sp.exp(-(z - mu) ** 2 / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2)


def _section_gaussian_elbo(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma):
    """The Gaussian VAE's ELBO = E_q log p(x|z) - KL(q || N(0, I)), each term in closed form and by sampling."""
    latent = weight.shape[1]
    mean, logvar = jnp.asarray(rng.standard_normal(latent)), jnp.asarray(0.5 * rng.standard_normal(latent))
    terms = _elbo_terms(x, weight, bias, sigma, mean, logvar, jnp.asarray(rng.standard_normal((20000, latent))))
    d.monte_carlo("$\\mathrm{KL}(q\\,\\|\\,\\mathcal N(0,I)) = "
                  "-\\frac12\\sum_j(1 + \\log\\sigma_j^2 - \\mu_j^2 - \\sigma_j^2)$ (`standard_normal_kl`) "
                  "$= \\mathbb E_q[\\log q(z) - \\log p(z)]$ (20 000 samples)",
                  terms["kl_samples"], terms["kl"])
    ms, lvs = jnp.asarray(rng.standard_normal((50, latent))), jnp.asarray(rng.standard_normal((50, latent)))
    d.numeric("...and it is `gaussian_kl` with $p = \\mathcal N(0, I)$ (50 random encoders)",
              standard_normal_kl(ms, lvs), gaussian_kl(ms, lvs, 0 * ms, 0 * lvs))
    d.monte_carlo("$\\mathbb E_q[\\log p(x\\mid z)] = -\\frac D2\\log 2\\pi\\sigma^2 - "
                  "\\frac{|x - W\\mu - b|^2 + \\|W\\,\\mathrm{diag}\\,\\sigma_q\\|_F^2}{2\\sigma^2}$ (20 000 samples)",
                  terms["recon_samples"], terms["recon"])
    d.numeric("ELBO $= \\mathbb E_q[\\log p(x\\mid z)] - \\mathrm{KL}(q\\,\\|\\,p(z))$: the VAE's form equals the "
              "`linear_gaussian_elbo` form $\\mathbb E_q[\\log p(x, z)] + H[q]$",
              terms["recon"] - terms["kl"], terms["elbo"])
    return mean, logvar, terms


def _section_reparameterisation(d: Derivation, terms, mean, logvar):
    """Reparameterisation: z = mu + sigma eps, eps ~ N(0, 1), has density N(mu, sigma^2)."""
    pushed, gauss = _sympy_reparameterisation()
    d.symbolic("Change of variables: "
               "$\\varphi\\big(\\frac{z-\\mu}{\\sigma}\\big)\\,\\big|\\frac{d\\epsilon}{dz}\\big| = "
               "\\mathcal N(z; \\mu, \\sigma^2)$, so $z = \\mu + \\sigma\\epsilon$ samples $q$", pushed, gauss)
    z, mean, logvar = np.asarray(terms["z"]), np.asarray(mean), np.asarray(logvar)
    d.monte_carlo("`reparameterize` draws have mean $\\mu$ and variance $\\sigma^2$ (20 000 draws, per coordinate)",
                  np.concatenate([z, (z - mean) ** 2], axis=1), np.concatenate([mean, np.exp(logvar)]))
    fig, ax = new_figure()
    for j in range(z.shape[1]):
        grid = mean[j] + np.exp(0.5 * logvar[j]) * np.linspace(-4, 4, 200)
        ax.hist(z[:, j], bins=60, density=True, histtype="stepfilled", alpha=0.35, color=f"C{j}")
        ax.plot(grid, np.exp(-0.5 * (grid - mean[j]) ** 2 / np.exp(logvar[j])) / np.sqrt(2 * np.pi * np.exp(logvar[j])),
                color=f"C{j}", label=f"$z_{j + 1}$: $N(\\mu_{j + 1}, \\sigma_{j + 1}^2)$")
    ax.set(xlabel="$z = \\mu + \\sigma\\epsilon$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, "Histograms of 20 000 reparameterised draws per coordinate lie on the Gaussian densities "
                  "$N(\\mu_j, \\sigma_j^2)$ of the encoder.")
    return mean, logvar


def _section_gradient_estimators(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, mean, logvar):
    """Reparameterised and score-function gradients: both unbiased, the first with far smaller variance."""
    latent = weight.shape[1]
    g_rep, g_score, exact = _gradient_samples(x, weight, bias, sigma, mean, logvar,
                                              jnp.asarray(rng.standard_normal((50000, latent))))
    d.say("Two unbiased estimators of $\\nabla_\\phi \\mathbb E_{q_\\phi}[f(z)]$: reparameterised "
          "$\\nabla_\\phi f(\\mu + \\sigma\\epsilon)$ and score function $f(z)\\nabla_\\phi \\log q_\\phi(z)$; "
          "$\\phi = (\\mu, \\log\\sigma^2)$, exact gradient by `jax.grad` of the closed form above.")
    d.monte_carlo("Reparameterisation gradient is unbiased (50 000 samples, all 6 coordinates)", g_rep, exact)
    d.monte_carlo("Score-function (REINFORCE) gradient is unbiased (same samples)", g_score, exact)
    var_rep, var_score = np.var(g_rep, axis=0, ddof=1), np.var(g_score, axis=0, ddof=1)
    d.inequality(f"Per-sample variance: reparameterised below score function in every coordinate, by a factor "
                 f"{np.min(var_score / var_rep):.0f} to {np.max(var_score / var_rep):.0f}", var_rep, var_score)
    g_rep, g_score = np.asarray(g_rep[:, 0]), np.asarray(g_score[:, 0])
    window = (np.percentile(g_score, 1), np.percentile(g_score, 99))
    fig, ax = new_figure()
    ax.hist(g_score, bins=80, range=window, density=True, alpha=0.5, label="score function")
    ax.hist(g_rep, bins=80, range=window, density=True, alpha=0.7, label="reparameterised")
    ax.axvline(float(exact[0]), color="k", ls="--", lw=1, label="exact gradient")
    ax.set(yscale="log", xlabel="per-sample estimate of $\\partial_{\\mu_1} E_q \\log p(x|z)$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, "Both estimators are centred on the exact gradient, but one reparameterised sample is far more "
                  "precise than one score-function sample (50 000 samples, first coordinate, 1-99% range).")


def _section_beta_vae(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma):
    """beta-VAE: E log p(x|z) - beta KL; its optimum is the posterior of a noisier model."""
    latent = weight.shape[1]
    betas = jnp.array([1.0, 1.5, 2.0, 4.0, 8.0, 0.5])
    study = _beta_study(x, weight, bias, sigma, *_random_qs(rng, 20, latent), betas)
    objective, elbos, kl_star = (np.asarray(study[k]) for k in ("objective", "elbos", "kl_star"))
    d.numeric("At $\\beta = 1$ the $\\beta$-VAE objective $\\mathbb E_q\\log p(x\\mid z) - \\beta\\,\\mathrm{KL}$ "
              "is the ELBO (20 random full-covariance $q$)", objective[0], elbos)
    d.inequality("For $\\beta > 1$ ($\\beta$ = 1.5, 2, 4, 8) it lower-bounds the ELBO, which lower-bounds $\\log p(x)$",
                 np.concatenate([objective[1:5].ravel(), elbos]),
                 np.concatenate([np.tile(elbos, 4), np.full(20, study["log_px"])]))
    d.say("Maximising over $q = \\mathcal N(m, LL^\\top)$: $\\beta$ scales the prior and entropy terms, which is "
          "the ELBO of a model with noise variance $\\beta\\sigma^2$, so "
          "$\\Sigma^* = (I + W^\\top W/\\beta\\sigma^2)^{-1}$, $m^* = \\Sigma^* W^\\top (x - b)/\\beta\\sigma^2$.")
    d.gradient("$\\nabla_{m, L}$ of the $\\beta$ objective vanishes at $(m^*, \\mathrm{chol}\\,\\Sigma^*)$ for "
               "$\\beta$ = 1, 1.5, 2, 4, 8, 0.5 (jax.grad)", study["grads"], np.zeros(study["grads"].shape))
    d.numeric("At $\\beta = 1$ the optimum is the true posterior `linear_gaussian_posterior`",
              study["optimum"], study["posterior"])
    d.inequality(f"Larger $\\beta$ pulls $q^*$ to the prior: $\\mathrm{{KL}}(q^*\\|p(z))$ falls from {kl_star[0]:.3f} "
                 f"to {kl_star[4]:.3f} nats as $\\beta$ goes 1, 1.5, 2, 4, 8", kl_star[1:5], kl_star[:4])
    order = np.argsort(np.asarray(betas))
    fig, ax = new_figure()
    ax.plot(np.asarray(betas)[order], kl_star[order], "o-", label="$\\mathrm{KL}(q^*_\\beta \\| p(z))$")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="$\\beta = 1$: the posterior")
    ax.set(xscale="log", xlabel="$\\beta$", ylabel="nats")
    ax.set_xticks(np.asarray(betas)[order], [f"{b:g}" for b in np.asarray(betas)[order]])
    ax.set_xticks([], minor=True)
    ax.legend()
    d.figure(fig, "The optimal encoder of the $\\beta$-VAE objective moves towards the prior as $\\beta$ grows: "
                  "its KL to $N(0, I)$, the rate, falls monotonically.")
    return study


def _section_conditional_vae(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, v) -> None:
    """Conditional VAE: x | z, y ~ N(W z + b + V onehot(y), sigma^2 I), z ~ N(0, I)."""
    latent = weight.shape[1]
    zs, ys = rng.standard_normal((6, latent)), np.array([0, 1, 2, 0, 1, 2])
    d.numeric("A linear decoder on `with_condition(z, y)` $= [z, e_y]$ is $Wz + b + Ve_y$: a class-dependent bias",
              np.asarray(with_condition(jnp.asarray(zs), jnp.asarray(ys), 3)) @ np.concatenate([weight, v], axis=1).T
              + bias, zs @ np.asarray(weight).T + bias + np.asarray(v)[:, ys].T)
    celbo, ckl, log_pxy = _cvae_terms(x, weight, bias, sigma, v, *_random_qs(rng, 3, latent))
    d.numeric("$\\log p(x\\mid y) = \\mathrm{cELBO} + \\mathrm{KL}(q(z\\mid x, y)\\,\\|\\,p(z\\mid x, y))$ "
              "for $y$ = 0, 1, 2, every term closed form", np.asarray(celbo) + np.asarray(ckl), log_pxy)


def _section_bernoulli_decoder(d: Derivation, rng: np.random.Generator) -> None:
    """Bernoulli decoder: log p(x|z) = x l - softplus(l), stable for any logit l."""
    xb, logits = rng.uniform(size=(40, 8)), rng.uniform(-8, 8, size=(40, 8))
    p = 1 / (1 + np.exp(-logits))
    d.numeric("`bernoulli_log_prob`$(x, l) = \\sum x\\log s(l) + (1-x)\\log(1 - s(l))$, $s$ the sigmoid ($|l| \\le 8$)",
              bernoulli_log_prob(jnp.asarray(xb), jnp.asarray(logits)),
              np.sum(xb * np.log(p) + (1 - xb) * np.log(1 - p), axis=-1))
    xe, le = np.array([[1.0], [0.0], [1.0], [0.0]]), np.array([[1000.0], [1000.0], [-1000.0], [-1000.0]])
    with np.errstate(all="ignore"):
        pe = 1 / (1 + np.exp(-le))
        naive = np.sum(xe * np.log(pe) + (1 - xe) * np.log(1 - pe), axis=-1)
    d.numeric(f"At $|l| = 1000$ the naive formula gives {np.sum(~np.isfinite(naive))} of 4 non-finite values; "
              "`bernoulli_log_prob` gives the exact $0, -1000, -1000, 0$",
              bernoulli_log_prob(jnp.asarray(xe), jnp.asarray(le)), np.array([0.0, -1000.0, -1000.0, 0.0]))


def _section_importance_sampling(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, study) -> None:
    """Importance-sampled likelihood (Burda et al. 2016) with a mis-fitted diagonal encoder."""
    latent = weight.shape[1]
    est = {k: _iwae_samples(x, weight, bias, sigma, jnp.asarray(rng.standard_normal((r, k, latent))))
           for k, r in ((1, 20000), (1000, 400))}
    q_elbo = float(est[1][1])
    d.say("$q(z\\mid x)$: a diagonal encoder, mean 0.8 of the posterior's plus 0.1, variances 1.3x its marginals; "
          "$-\\log p(x) \\approx -\\log \\frac1K\\sum_k p(x, z_k)/q(z_k\\mid x)$, $z_k \\sim q$.")
    d.monte_carlo("With $K = 1$ the estimate's mean is the ELBO of $q$ (20 000 replicates)", est[1][0], q_elbo)
    log_px = float(study["log_px"])
    gap1, gap_k = log_px - q_elbo, log_px - float(np.mean(est[1000][0]))
    d.inequality(f"With $K = 1000$ the importance-sampled NLL approaches $-\\log p(x)$: the gap falls from "
                 f"{gap1:.3f} nats (K = 1) to {gap_k:.5f} (mean of 400 replicates), below 1% of the K = 1 gap",
                 abs(gap_k), 0.01 * gap1)


def _gaussian_kl_parts(cov_x, weight, offset, noise_var):
    """The KL's three parts, closed form, for x ~ N(0, cov_x) and the linear encoder q(z|x) = N(W x + c, diag(s^2)):
    q(z) = N(c, C), C = W cov_x W^T + diag(s^2). Returns (E_x KL(q(z|x) || N(0, I)), I(x; z), TC, dimension-wise KL)."""
    cov_z = weight @ cov_x @ weight.T + np.diag(noise_var)
    diag, k = np.diag(cov_z), len(offset)
    average_kl = 0.5 * (noise_var.sum() + np.trace(weight @ cov_x @ weight.T) + offset @ offset - k
                        - np.log(noise_var).sum())
    mutual_information = 0.5 * (np.linalg.slogdet(cov_z)[1] - np.log(noise_var).sum())
    total_correlation = 0.5 * (np.log(diag).sum() - np.linalg.slogdet(cov_z)[1])
    dimension_wise_kl = 0.5 * np.sum(diag + offset**2 - 1 - np.log(diag))
    return average_kl, mutual_information, total_correlation, dimension_wise_kl


def _rotation(angle: float) -> np.ndarray:
    """The 3 x 3 rotation by ``angle`` in the plane of the first two latents."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _mixture_log_density(z, means, logvar):
    """log q(z) of the equal-weight mixture (1/N) sum_n N(means_n, diag e^logvar_n), by SciPy: z (M, d) -> (M,)."""
    from scipy import special, stats

    parts = stats.norm.logpdf(z[:, None], means[None], np.exp(0.5 * logvar[None])).sum(-1)
    return special.logsumexp(parts, axis=-1) - math.log(len(means))


def _section_total_correlation(d: Derivation, rng: np.random.Generator) -> None:
    """beta-TCVAE: E_x KL(q(z|x) || p(z)) = I(x; z) + TC(q(z)) + sum_k KL(q(z_k) || p(z_k)) (Chen et al. 2018)."""
    d.say(r"The $\beta$-VAE weighs the whole KL. Averaged over the data, it splits in three (Hoffman & Johnson's "
          r"ELBO surgery; Chen et al. 2018): $\mathbb E_{p(x)}\mathrm{KL}(q(z\mid x)\|p(z)) = I_q(x; z) + "
          r"\mathrm{KL}(q(z)\|\prod_k q(z_k)) + \sum_k \mathrm{KL}(q(z_k)\|p(z_k))$, with $q(z) = \mathbb E_{p(x)} "
          r"q(z\mid x)$ the aggregate posterior: the index-code mutual information, the total correlation (TC) and the "
          r"dimension-wise KL. Only the TC measures how far the latents are from independent; $\beta$-TCVAE weighs it "
          r"alone.")
    c11, c12, c22, s1, s2, m1, m2 = sp.symbols("C_11 C_12 C_22 s_1 s_2 c_1 c_2", positive=True)
    det_c = c11 * c22 - c12**2
    average_kl = (s1 + s2 + (c11 - s1) + (c22 - s2) + m1**2 + m2**2 - 2 - sp.log(s1) - sp.log(s2)) / 2
    parts = ((sp.log(det_c) - sp.log(s1) - sp.log(s2)) / 2, (sp.log(c11) + sp.log(c22) - sp.log(det_c)) / 2,
             (c11 + m1**2 - 1 - sp.log(c11) + c22 + m2**2 - 1 - sp.log(c22)) / 2)
    d.symbolic(r"For Gaussian data and a linear encoder $q(z\mid x) = \mathcal N(Wx + c, \mathrm{diag}\,s^2)$, "
               r"$q(z) = \mathcal N(c, C)$ with $C = W\Sigma_x W^\top + \mathrm{diag}\,s^2$, and the three parts "
               r"$\frac12\log\frac{|C|}{\prod s_k^2}$, $\frac12(\sum_k\log C_{kk} - \log|C|)$, "
               r"$\frac12\sum_k(C_{kk} + c_k^2 - 1 - \log C_{kk})$ add up to the average KL "
               r"$\frac12(\mathrm{tr}\,C + |c|^2 - d - \sum_k \log s_k^2)$ ($d = 2$, every entry a symbol)",
               sum(parts), average_kl)
    big_d, latent = 5, 3
    root = rng.standard_normal((big_d, big_d))
    cov_x = root @ root.T / big_d + 0.5 * np.eye(big_d)
    # W = B cov_x^(-1/2), the rows of B orthogonal: W cov_x W^T = B B^T is diagonal, so q(z) factorises
    whiten = np.linalg.inv(np.linalg.cholesky(cov_x))
    basis = np.linalg.qr(rng.standard_normal((big_d, big_d)))[0][:latent] * np.array([[2.0], [0.7], [0.5]])
    weight, offset, noise_var = basis @ whiten, np.array([0.3, -0.2, 0.1]), np.full(latent, 0.3)
    angles = np.linspace(0, np.pi / 2, 13)
    table = np.array([_gaussian_kl_parts(cov_x, _rotation(a) @ weight, _rotation(a) @ offset, noise_var)
                      for a in angles])
    d.numeric(f"Numerically, $d = {latent}$, $D = {big_d}$, encoders rotated in the plane of $z_1, z_2$ by 13 "
              r"angles in $[0, \pi/2]$: mutual information + TC + dimension-wise KL = the average KL",
              table[:, 1:].sum(1), table[:, 0])
    d.numeric(r"A rotation of an isotropic-noise encoder changes neither the average KL nor $I(x; z)$: the $\beta$-VAE's "
              r"penalty cannot tell the rotations apart", table[:, :2], np.broadcast_to(table[:1, :2], table[:, :2].shape))
    d.numeric(r"The encoder whose $W\Sigma_xW^\top$ is diagonal has a factorised $q(z)$: TC = 0", table[0, 2], 0.0)
    d.inequality(f"Rotating it mixes its latents: TC rises to {table[6, 2]:.3f} nats at $\\pi/4$, and the "
                 "dimension-wise KL falls (by as much: the total and the MI stay)",
                 np.array([1e-3, table[6, 3]]), np.array([table[6, 2], table[0, 3]]))
    fig, ax = new_figure()
    degrees = np.degrees(angles)
    ax.stackplot(degrees, table[:, 1], table[:, 2], table[:, 3],
                 labels=["index-code MI $I(x; z)$", "total correlation", "dimension-wise KL"], alpha=0.8)
    ax.plot(degrees, table[:, 0], "k--", lw=1.5, label=r"$\mathbb{E}_x\,\mathrm{KL}(q(z|x)\,\|\,p(z))$")
    ax.set(xlabel="rotation of the encoder in the $(z_1, z_2)$ plane (degrees)", ylabel="nats", xlim=(0, 90))
    ax.legend(fontsize=8, loc="lower right")
    d.figure(fig, "The same average KL, split three ways: rotating the encoder moves nats from the dimension-wise "
                  "KL into the total correlation and back, while the beta-VAE's penalty (the dashed total) stays put.")


def _section_tc_estimator(d: Derivation, rng: np.random.Generator) -> None:
    """The minibatch estimate of q(z) that beta-TCVAE trains on: exact on the whole data set, unbiased on a batch."""
    from scipy import stats

    d.say(r"Training needs the TC of the aggregate posterior $q(z) = \frac1N\sum_n q(z\mid x_n)$, a mixture over the "
          r"whole training set, from a batch of $M \ll N$: beta-TCVAE estimates $q(z_i)$ by a weighted sum over the "
          r"batch, and the TC and MI from its log.")
    latent, n, m = 3, 40, 8
    means, logvar = rng.standard_normal((n, latent)), rng.uniform(-1.5, 0.0, (n, latent))
    z = means + np.exp(0.5 * logvar) * rng.standard_normal((n, latent))  # z_i ~ q(z | x_i), one per example
    exact = {"qz": _mixture_log_density(z, means, logvar),
             "marginals": sum(_mixture_log_density(z[:, k:k + 1], means[:, k:k + 1], logvar[:, k:k + 1])
                              for k in range(latent))}
    terms = jax.jit(total_correlation_terms, static_argnums=3)  # one compiled call rather than op by op
    mi, tc, dim_kl = (np.asarray(t) for t in terms(jnp.asarray(z), jnp.asarray(means), jnp.asarray(logvar), n))
    log_qzx = stats.norm.logpdf(z, means, np.exp(0.5 * logvar)).sum(-1)
    d.numeric(f"`total_correlation_terms` over a batch that is the whole data set ($M = N = {n}$) is exact: its TC is "
              r"$\log q(z_i) - \sum_k \log q(z_{ik})$ of the mixture $q(z) = \frac1N\sum_n q(z\mid x_n)$, its MI "
              r"$\log q(z_i\mid x_i) - \log q(z_i)$", np.stack([tc, mi]),
              np.stack([exact["qz"] - exact["marginals"], log_qzx - exact["qz"]]))
    d.numeric(r"Its three parts add up to $\log q(z_i\mid x_i) - \log p(z_i)$, the one-sample KL estimate the "
              r"ELBO's KL is the mean of", mi + tc + dim_kl,
              log_qzx - stats.norm.logpdf(z).sum(-1))
    draws = 20_000  # batches of z_0's example and M - 1 others drawn uniformly from the rest of the data set
    others = 1 + (rng.integers(0, n - 1, (draws, m - 1)))
    batch = np.concatenate([np.zeros((draws, 1), int), others], axis=1)
    densities = np.exp(np.asarray(jax.jit(log_density_matrix)(z[:1], means, logvar)).sum(-1))[0]  # q(z_0 | x_j), all j
    weights = np.exp(np.asarray(stratified_log_weights(m, n)))[0]
    estimates = (densities[batch] * weights).sum(1)
    d.monte_carlo(f"Over a minibatch of $M = {m}$ of the $N = {n}$, `stratified_log_weights` ($1/N$ for the example "
                  r"that drew $z_i$, $(N-1)/(N(M-1))$ for each other) make $\sum_j w_{ij}\, q(z_i\mid x_j)$ an unbiased "
                  f"estimate of $q(z_i)$ ({draws} batches)", estimates, np.exp(exact["qz"][0]))


def _section_factor_vae(d: Derivation, rng: np.random.Generator) -> None:
    """FactorVAE's estimate of the TC: permuted codes sample the product of marginals; the optimal discriminator's
    mean logit is the TC."""
    d.say(r"FactorVAE (Kim & Mnih 2018) penalises the TC without estimating $q(z)$: a discriminator tells codes of the "
          r"batch from codes whose dimensions were each shuffled across the batch (`permute_dims`), and its logit "
          r"$\log \frac{D(z)}{1 - D(z)}$ estimates the density ratio $\log \frac{q(z)}{\prod_k q(z_k)}$.")
    cov = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
    batches, b = 400, 256
    z = rng.multivariate_normal(np.zeros(3), cov, size=(batches, b))
    perms = np.stack([[rng.permutation(b) for _ in range(3)] for _ in range(batches)])
    shuffled = np.asarray(jax.vmap(permute_dims)(jnp.asarray(z), jnp.asarray(perms)))
    d.numeric("`permute_dims` keeps each dimension's values: every column of the shuffled batch, sorted, is the "
              "column it came from, sorted", np.sort(shuffled, axis=1), np.sort(z, axis=1))
    corr = np.stack([np.corrcoef(x.T)[np.triu_indices(3, 1)] for x in shuffled])
    d.monte_carlo(f"...and breaks their dependence: the shuffled codes' correlations (0.8, 0.3, 0.5 before) have "
                  f"mean 0 over {batches} batches of {b}", corr, np.zeros(3))
    draws = rng.multivariate_normal(np.zeros(3), cov, size=200_000)
    log_q = -0.5 * (3 * math.log(2 * math.pi) + np.log(np.linalg.det(cov))
                    + np.einsum("ni,ij,nj->n", draws, np.linalg.inv(cov), draws))
    log_marginals = -0.5 * (math.log(2 * math.pi) + draws**2).sum(1)  # unit variances
    d.monte_carlo(r"At the optimal discriminator the logit is $\log q(z) - \sum_k \log q(z_k)$, and its mean over "
                  r"$q(z) = N(0, \Sigma)$ is the TC, $-\frac12 \log\det R$ with $R$ the correlation matrix "
                  "(200 000 draws)", log_q - log_marginals, -0.5 * math.log(np.linalg.det(cov)))
    # the discriminator's loss is minimised there: two binary codes, q(z) on 10 codes (4 + 1 + 1 + 4 of 00, 01, 10,
    # 11), whose permuted batches sample prod_k q(z_k) = 1/4 each; a logit per code
    atoms_q, atoms_p = np.repeat(np.arange(4), [4, 1, 1, 4]), np.arange(4)
    q, p = np.array([4, 1, 1, 4]) / 10, np.full(4, 0.25)
    optimum = jnp.log(q / p)
    grad = jax.grad(lambda logit: tc_discriminator_loss(logit[atoms_q], logit[atoms_p]))(optimum)
    d.gradient(r"`tc_discriminator_loss` is stationary at $\log \frac{q(z)}{\prod_k q(z_k)}$: on two binary codes "
               r"with $q$ = (0.4, 0.1, 0.1, 0.4) on 00, 01, 10, 11 (its permuted batches: 1/4 each), the gradient "
               "with respect to each code's logit vanishes there (jax.grad; the loss is convex in the logits)",
               np.asarray(grad), np.zeros(4))


def _two_level_model(rng: np.random.Generator):
    """A linear-Gaussian two-level model, one latent a level: z2 ~ N(0, 1), z1 | z2 ~ N(a z2 + c, s1^2),
    x | z1 ~ N(w z1 + b, s0^2 I) in 3-D, and one observed x. -> (params, x)."""
    params = {"a": 1.5, "c": 0.3, "s1": 0.6, "w": np.array([1.2, -0.7, 0.4]), "b": np.array([0.1, 0.2, -0.3]),
              "s0": 0.5}
    return params, np.array([1.4, -0.9, 0.2])


def _two_level_posterior(m, x):
    """The exact posterior p(z1, z2 | x) of ``_two_level_model``: (mean (2,), precision (2, 2)) over (z1, z2), and
    log p(x), from the joint Gaussian's precision."""
    w, s0, s1, a = m["w"], m["s0"], m["s1"], m["a"]
    # -log p(x, z) is quadratic in (z1, z2): z2^2 / 2 + (z1 - a z2 - c)^2 / (2 s1^2) + |x - w z1 - b|^2 / (2 s0^2)
    precision = np.array([[1 / s1**2 + w @ w / s0**2, -a / s1**2], [-a / s1**2, 1 + a**2 / s1**2]])
    linear = np.array([m["c"] / s1**2 + w @ (x - m["b"]) / s0**2, -a * m["c"] / s1**2])
    mean = np.linalg.solve(precision, linear)
    cov_x = s0**2 * np.eye(3) + np.outer(w, w) * (s1**2 + a**2)  # x's marginal covariance
    diff = x - (w * m["c"] + m["b"])
    log_px = -0.5 * (3 * LOG_2PI + np.linalg.slogdet(cov_x)[1] + diff @ np.linalg.solve(cov_x, diff))
    return mean, precision, log_px


def _section_hierarchical(d: Derivation, rng: np.random.Generator) -> None:
    """The two-level ELBO as a sum of per-level KLs; top-down inference is exact where a mean-field q is not."""
    d.say(r"A hierarchical VAE (Sonderby et al. 2016, the ladder VAE; Vahdat & Kautz 2020, NVAE) stacks latents, "
          r"$p(z_2)\,p(z_1\mid z_2)\,p(x\mid z_1)$, and infers them top-down, $q(z_2\mid x)\,q(z_1\mid x, z_2)$, so that "
          r"the ELBO is the reconstruction less one KL a level: $\mathbb E_q\log p(x\mid z_1) - \mathrm{KL}(q(z_2\mid x)"
          r"\,\|\,p(z_2)) - \mathbb E_{q(z_2\mid x)}\mathrm{KL}(q(z_1\mid x, z_2)\,\|\,p(z_1\mid z_2))$ "
          r"(`hierarchical_kl`). On a linear-Gaussian two-level model, one latent a level, whose posterior is exact:")
    m, x = _two_level_model(rng)
    mean, precision, log_px = _two_level_posterior(m, x)
    cov = np.linalg.inv(precision)
    # top-down q: z2's exact marginal, then z1's exact conditional given z2 (a Gaussian whose mean is linear in z2)
    q2_mean, q2_var = mean[1], cov[1, 1]
    q1_var = 1 / precision[0, 0]
    draws = 20_000
    z2 = q2_mean + np.sqrt(q2_var) * rng.standard_normal(draws)
    q1_mean = mean[0] - precision[0, 1] / precision[0, 0] * (z2 - mean[1])
    z1 = q1_mean + np.sqrt(q1_var) * rng.standard_normal(draws)
    log_joint = (np.asarray(gaussian_log_prob(jnp.asarray(np.broadcast_to(x, (draws, 3))), jnp.asarray(
                     m["w"] * z1[:, None] + m["b"]), jnp.full((draws, 3), 2 * np.log(m["s0"])))) +
                 np.asarray(gaussian_log_prob(jnp.asarray(z1[:, None]), jnp.asarray((m["a"] * z2 + m["c"])[:, None]),
                                              jnp.full((draws, 1), 2 * np.log(m["s1"])))) +
                 np.asarray(gaussian_log_prob(jnp.asarray(z2[:, None]), jnp.zeros((draws, 1)), jnp.zeros((draws, 1)))))
    log_q = (np.asarray(gaussian_log_prob(jnp.asarray(z2[:, None]), jnp.full((draws, 1), q2_mean),
                                          jnp.full((draws, 1), np.log(q2_var)))) +
             np.asarray(gaussian_log_prob(jnp.asarray(z1[:, None]), jnp.asarray(q1_mean[:, None]),
                                          jnp.full((draws, 1), np.log(q1_var)))))
    d.numeric(r"Top-down inference is exact here: with $q(z_2\mid x)$ the posterior's marginal and $q(z_1\mid x, z_2)$ "
              r"its conditional (a Gaussian whose mean is linear in $z_2$), $\log p(x, z) - \log q(z) = \log p(x)$ at "
              f"every one of {draws} draws: the hierarchical bound is tight", log_joint - log_q,
              np.full(draws, log_px))
    kl_top, kl_bottom = hierarchical_kl(jnp.full((draws, 1), q2_mean), jnp.full((draws, 1), np.log(q2_var)),
                                        jnp.asarray(q1_mean[:, None]), jnp.full((draws, 1), np.log(q1_var)),
                                        jnp.asarray((m["a"] * z2 + m["c"])[:, None]),
                                        jnp.full((draws, 1), 2 * np.log(m["s1"])))
    recon = np.asarray(gaussian_log_prob(jnp.asarray(np.broadcast_to(x, (draws, 3))),
                                         jnp.asarray(m["w"] * z1[:, None] + m["b"]),
                                         jnp.full((draws, 3), 2 * np.log(m["s0"]))))
    d.monte_carlo(r"...and the form a network trains on, one reconstruction sample less the two KLs in closed form "
                  r"(`hierarchical_kl`, the lower level's at the sampled $z_2$), has mean $\log p(x)$ "
                  f"({draws} draws)", recon - np.asarray(kl_top) - np.asarray(kl_bottom), log_px)
    # the best mean-field q(z1) q(z2): the posterior's mean, variances 1 / Lambda_kk; its gap is KL(q || posterior)
    tril_post, tril_mf = np.linalg.cholesky(cov), np.diag(1 / np.sqrt(np.diag(precision)))
    gap = float(mvn_kl(jnp.asarray(mean), jnp.asarray(tril_mf), jnp.asarray(mean), jnp.asarray(tril_post)))
    formula = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    d.numeric(r"A mean-field $q(z_1)\,q(z_2)$, the one-level VAE's factorised posterior over the same latents, misses "
              r"the levels' dependence: at its optimum (the posterior's mean, variances $1/\Lambda_{kk}$) its gap "
              r"$\mathrm{KL}(q\,\|\,p(z\mid x))$ (`mvn_kl`) is $\frac12(\sum_k\log\Lambda_{kk} - \log\det\Lambda)$ = "
              f"{gap:.4f} nats, with $\\Lambda$ the posterior precision", gap, formula)
    d.inequality(f"...so the top-down bound is tighter than the best mean-field one on this model by more than 0.01 "
                 f"nats (posterior correlation {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):.2f})", 0.01, gap)


def _shift_features(x, kernels):
    """Translation-invariant features of 1-D signals: the energy of each kernel's circular correlation with x, its
    square summed over the positions. x: (..., n), kernels: (k, w) -> (..., k). A circular shift of x leaves them
    unchanged."""
    windows = jnp.stack([jnp.roll(x, -j, axis=-1) for j in range(kernels.shape[1])], axis=-1)  # (..., n, w)
    return jnp.sum((windows @ kernels.T) ** 2, axis=-2)


def _section_vaegan(d: Derivation) -> None:
    """VAE-GAN: why a pixel likelihood blurs and a feature one need not; the discriminator's optimum with two fakes."""
    _section_vaegan_likelihood(d)
    _section_vaegan_discriminator(d)


def _section_vaegan_likelihood(d: Derivation) -> None:
    """Two images a pixel apart: the pixels' Gaussian loss prefers their blur, shift-blind features either one."""
    d.say(r"VAE-GAN (Larsen et al. 2016) keeps the VAE's encoder and prior but measures the reconstruction in the "
          r"features $\mathrm{Dis}_l$ of a GAN's discriminator, $-\log \mathcal N(\mathrm{Dis}_l(x) \mid "
          r"\mathrm{Dis}_l(\tilde x), I)$, rather than in the pixels. Why: a Gaussian likelihood on pixels is "
          r"maximised, when the code leaves the data uncertain, by the pixels' mean, a blur. Two equally likely "
          r"images, one and the same shifted by a pixel (circularly, 1-D here):")
    sharp = np.zeros(16)
    sharp[5:9] = (0.6, 1.0, 0.8, 0.9)
    data = jnp.asarray(np.stack([sharp, np.roll(sharp, 1)]))
    blur = data.mean(0)

    def pixel_loss(out):  # the expected unit-variance Gaussian NLL over the two images, less its constant
        return jnp.mean(0.5 * jnp.sum((data - out) ** 2, axis=-1))

    gap = float(jnp.sum((data[0] - data[1]) ** 2))
    d.gradient(r"The expected pixel loss $\frac12 \mathbb E \|x - \tilde x\|^2$ is stationary at the blur "
               r"$\tilde x = \frac12 (x_a + x_b)$ (jax.grad; it is convex, so that is its minimum)",
               np.asarray(jax.grad(pixel_loss)(blur)), np.zeros(16))
    d.numeric(r"...where it is $\frac18 \|x_a - x_b\|^2$, half the $\frac14 \|x_a - x_b\|^2$ of either sharp "
              r"image: the pixel likelihood prefers the blur", np.array([pixel_loss(blur), pixel_loss(data[0])]),
              np.array([gap / 8, gap / 4]))
    kernels = jnp.asarray([[-1.0, 1.0, 0.0], [1.0, -2.0, 1.0], [1.0, 1.0, 1.0]])  # edges, curvature, local mass
    feats = _shift_features(data, kernels)

    def feature_loss(out):
        return jnp.mean(feature_reconstruction_nll(feats, _shift_features(out, kernels)[None]))

    d.numeric(r"In features that do not see a shift (the energies of a first difference, a second difference and a "
              r"local sum, each summed over the positions), `feature_reconstruction_nll` is the Gaussian "
              r"$-\log \mathcal N(\mathrm{Dis}_l(x) \mid \mathrm{Dis}_l(\tilde x), I)$ less $\frac F2 \log 2\pi$ "
              r"(jax.scipy.stats.norm)",
              feature_reconstruction_nll(feats, _shift_features(blur, kernels)[None]),
              -jax.scipy.stats.norm.logpdf(feats, _shift_features(blur, kernels)).sum(-1) - 1.5 * LOG_2PI)
    d.numeric(r"...and there the sharp image costs nothing, $x_a$ and $x_b$ having the same features",
              feature_loss(data[0]), 0.0)
    d.inequality(r"...while the blur, whose edges are softer, costs more than a tenth: the feature likelihood "
                 r"prefers the sharp image", 0.1, feature_loss(blur))
    fig, (ax_pix, ax_bar) = new_figure(columns=2)
    for k, (signal, name) in enumerate(((data[0], "$x_a$"), (data[1], "$x_b$ (shifted)"), (blur, "the blur"))):
        ax_pix.step(np.arange(16), np.asarray(signal) + 0.02 * k, where="mid", label=name, lw=1.5,
                    ls="-" if k < 2 else "--")
    ax_pix.set(xlabel="pixel", ylabel="value")
    ax_pix.legend(fontsize=8)
    width, at = 0.35, np.arange(2)
    ax_bar.bar(at - width / 2, [pixel_loss(data[0]), pixel_loss(blur)], width, label="pixel loss")
    ax_bar.bar(at + width / 2, [feature_loss(data[0]), feature_loss(blur)], width, label="feature loss")
    ax_bar.set(xticks=at, xticklabels=["sharp $x_a$", "blur"], ylabel="expected loss over $\\{x_a, x_b\\}$")
    ax_bar.legend(fontsize=8)
    d.figure(fig, "Two equally likely images a pixel apart: the pixels' Gaussian loss is smaller for their blur, the "
                  "shift-blind features' loss is zero for either sharp image.")


def _section_vaegan_discriminator(d: Derivation) -> None:
    """The discriminator's loss facing the data and two fakes is least at p_data / (p_data + p_recon + p_prior)."""
    d.say(r"The discriminator sees the data against two fakes, the reconstructions $\tilde x$ and the prior's samples "
          r"$x_p$, each term of $L_\mathrm{GAN}$ of weight one; pointwise its loss $-p_\mathrm{data} \log D - "
          r"(p_{\tilde x} + p_{x_p}) \log (1 - D)$ is least at $D = \frac{p_\mathrm{data}}{p_\mathrm{data} + "
          r"p_{\tilde x} + p_{x_p}}$, so a decoder whose both fakes match the data leaves it at 1/3, not 1/2.")
    p_data, p_recon, p_prior = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.2, 0.7])
    counts = 10
    atoms = [np.repeat(np.arange(3), np.round(p * counts).astype(int)) for p in (p_data, p_recon, p_prior)]

    def discriminator_loss(logits):
        zeros = jnp.zeros(len(atoms[0]))
        return vaegan_losses(zeros, zeros, logits[atoms[0]], logits[atoms[1]], logits[atoms[2]], 1.0)[2]

    optimum = jnp.log(p_data / (p_recon + p_prior))
    d.gradient(r"The discriminator's loss of `vaegan_losses` is stationary at logit $\log \frac{p_\mathrm{data}}"
               r"{p_{\tilde x} + p_{x_p}}$: three atoms, the data, the reconstructions and the prior's samples on "
               r"them with (0.5, 0.3, 0.2), (0.2, 0.5, 0.3) and (0.1, 0.2, 0.7) (jax.grad)",
               np.asarray(jax.grad(discriminator_loss)(optimum)), np.zeros(3))


def _section_flax_vae(d: Derivation, rng: np.random.Generator) -> None:
    """The flax VAE's importance-sampled NLL at K = 1 is its ELBO with the KL estimated by one sample."""
    n = 2000  # the flax VAE on 3 images, each with n draws of eps
    xv, ev = np.tile(rng.uniform(size=(3, 4, 4, 1)), (n, 1, 1, 1)), rng.standard_normal((3 * n, 2))
    neg_nll, elbo, kl, kl_sample = map(np.asarray, _small_vae_terms(jnp.asarray(xv), jnp.asarray(ev)))
    d.numeric("The flax `VAE` (MLP, Bernoulli, $4\\times 4$ images): $-$`importance_nll` with $K = 1$ is `elbo` with "
              "its closed-form KL swapped for the one-sample $\\log q(z\\mid x) - \\log p(z)$, same $\\epsilon$ "
              "(float64 params)", neg_nll, elbo + kl - kl_sample)
    d.monte_carlo(f"...so they agree in expectation over $\\epsilon$: $-$`importance_nll` ($K = 1$) minus `elbo` "
                  f"has mean 0 ({n} draws of $\\epsilon$ for each of 3 images)",
                  (neg_nll - elbo).reshape(n, 3), np.zeros(3))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("vae", TITLE, LECTURES, echo=echo)
    x, weight, bias, sigma, v = _model()
    rng = np.random.default_rng(1)
    d.say("A VAE pairs a decoder $p_\\theta(x\\mid z)$, prior $p(z) = \\mathcal N(0, I)$ and a diagonal Gaussian "
          "encoder $q_\\phi(z\\mid x) = \\mathcal N(\\mu, \\mathrm{diag}\\,\\sigma^2)$. Checks use the linear "
          "decoder $x\\mid z \\sim \\mathcal N(Wz + b, \\sigma^2 I)$ ($d = 3$, $D = 5$, $\\sigma = 0.7$), "
          "where every term has a closed form.")

    mean, logvar, terms = _section_gaussian_elbo(d, rng, x, weight, bias, sigma)
    mean, logvar = _section_reparameterisation(d, terms, mean, logvar)
    _section_gradient_estimators(d, rng, x, weight, bias, sigma, mean, logvar)
    study = _section_beta_vae(d, rng, x, weight, bias, sigma)
    _section_conditional_vae(d, rng, x, weight, bias, sigma, v)
    _section_bernoulli_decoder(d, rng)
    _section_importance_sampling(d, rng, x, weight, bias, sigma, study)
    _section_total_correlation(d, rng)
    _section_tc_estimator(d, rng)
    _section_factor_vae(d, rng)
    _section_hierarchical(d, rng)
    _section_vaegan(d)
    _section_flax_vae(d, rng)
    return d
