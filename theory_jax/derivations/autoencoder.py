"""The ``autoencoder`` derivation (``python -m theory_jax autoencoder``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/autoencoder.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import sympy as sp

from theory_jax.autoencoder import (
    linear_autoencoder,
    optimal_denoiser,
    pca_components,
    principal_angles,
    reconstruction_bce,
    reconstruction_mse,
)
from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "autoencoders"
LECTURES = "autoencoders; linear autoencoders and PCA; denoising autoencoders; anomaly detection"


# 5. The derivation ------------------------------------------------------------------------------------
SPECTRUM = np.array([4.0, 2.5, 1.0, 0.5, 0.25, 0.1])  # the variances of the PCA toy, along a random rotation


def _pca_data(n: int = 400, k: int = 2, seed: int = 0):
    """n points in D = 6 with variances SPECTRUM along random orthonormal axes, plus an offset (float64)."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((len(SPECTRUM), len(SPECTRUM))))[0]
    x = rng.standard_normal((n, len(SPECTRUM))) * np.sqrt(SPECTRUM) @ rotation.T + rng.standard_normal(len(SPECTRUM))
    return jnp.asarray(x), k, rng


def _linear_ae_loss(encoder_weight, decoder_weight, x, mean):
    """Mean over the data of |x - x_hat|^2 (summed over coordinates)."""
    return jnp.mean(jnp.sum((x - linear_autoencoder(x, encoder_weight, decoder_weight, mean)) ** 2, axis=-1))


def _train_linear_ae(x, mean, encoder_weight, decoder_weight, lr: float, steps: int):
    """Plain gradient descent on ``_linear_ae_loss``, in float64."""
    grad = jax.grad(_linear_ae_loss, argnums=(0, 1))

    def step(_, w):
        g = grad(*w, x, mean)
        return w[0] - lr * g[0], w[1] - lr * g[1]

    return jax.jit(lambda w: jax.lax.fori_loop(0, steps, step, w))((encoder_weight, decoder_weight))


def _denoising_toy(seed: int = 3, d: int = 3):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    return jnp.asarray(rng.standard_normal(d)), jnp.asarray(a @ a.T / d + 0.3 * np.eye(d)), 0.8, rng


def _linear_denoiser_risk(gain, offset, mean, cov, noise_std):
    """E |x~ A + c - x|^2 for x ~ N(mean, cov), x~ = x + s eps, row-vector convention (closed form):
    |mean (A - I) + c|^2 + tr((A - I)^T cov (A - I)) + s^2 |A|_F^2."""
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)
    bias = mean @ (gain - eye) + offset
    return bias @ bias + jnp.trace((gain - eye).T @ cov @ (gain - eye)) + noise_std**2 * jnp.sum(gain**2)


def _sympy_denoiser():
    """The 1-D linear denoiser a x~ + c minimising E(a x~ + c - x)^2, x ~ N(mu, v), x~ = x + s e, by calculus."""
    a, c, mu = sp.symbols("a c mu", real=True)
    v, s = sp.symbols("v s", positive=True)
    risk = ((a - 1) * mu + c) ** 2 + (a - 1) ** 2 * v + a**2 * s**2  # E of the square: bias^2 + variances
    best = sp.solve([sp.diff(risk, a), sp.diff(risk, c)], [a, c], dict=True)[0]
    return best[a] * sp.Symbol("xt") + best[c], mu + v / (v + s**2) * (sp.Symbol("xt") - mu)


def _linear_ae_losses(x, mean, encoder_weight, decoder_weight, lr: float, steps: int):
    """The loss along ``_train_linear_ae``'s iterates, from the start to the end (for the figure): (steps + 1,)."""
    grad = jax.grad(_linear_ae_loss, argnums=(0, 1))

    def step(w, _):
        g = grad(*w, x, mean)
        return (w[0] - lr * g[0], w[1] - lr * g[1]), _linear_ae_loss(*w, x, mean)

    w, losses = jax.jit(lambda w: jax.lax.scan(step, w, None, length=steps))((encoder_weight, decoder_weight))
    return jnp.append(losses, _linear_ae_loss(*w, x, mean))


def _section_reconstruction_objective(d: Derivation, rng: np.random.Generator) -> None:
    """The reconstruction losses: MSE and binary cross-entropy, their gradients, and the BCE's floor."""
    x, x_hat = jnp.asarray(rng.uniform(size=(5, 12))), jnp.asarray(rng.uniform(size=(5, 12)))
    g = jax.grad(lambda h: jnp.sum(reconstruction_mse(x, h)))(x_hat)
    d.gradient("$\\nabla_{\\hat x}$ of the per-example MSE $\\frac1D|x - \\hat x|^2$ is $\\frac2D(\\hat x - x)$ "
               "(jax.grad)", g, 2 * (x_hat - x) / x.shape[1])
    logits = jnp.asarray(rng.uniform(-6, 6, size=(5, 12)))
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    d.numeric("`reconstruction_bce`$(x, l)$ is $-\\frac1D\\sum x\\log s(l) + (1-x)\\log(1-s(l))$, $s$ the sigmoid",
              reconstruction_bce(x, logits), -np.mean(np.asarray(x) * np.log(p) + (1 - np.asarray(x)) * np.log(1 - p),
                                                      axis=-1))
    g = jax.grad(lambda lg: jnp.sum(reconstruction_bce(x, lg)))(logits)
    d.gradient("$\\nabla_l$ BCE $= \\frac1D(s(l) - x)$: the gradient vanishes where the output $s(l)$ is the pixel",
               g, (jax.nn.sigmoid(logits) - x) / x.shape[1])
    entropy = -np.mean(np.asarray(x) * np.log(x) + (1 - np.asarray(x)) * np.log(1 - np.asarray(x)), axis=-1)
    d.inequality("For $x \\in (0, 1)$ the BCE is smallest at $s(l) = x$, where it is the binary entropy of $x$ "
                 "(not 0): BCE minus that entropy is a KL, $\\ge 0$, at 60 random logits",
                 entropy[None], np.stack([reconstruction_bce(x, jnp.asarray(rng.uniform(-6, 6, size=(5, 12))))
                                          for _ in range(60)]))
    out = np.linspace(0.005, 0.995, 199)
    fig, ax = new_figure()
    for pixel, color in ((0.1, "C0"), (0.5, "C1"), (0.8, "C2")):
        ax.plot(out, -pixel * np.log(out) - (1 - pixel) * np.log(1 - out), color=color, label=f"pixel $x = {pixel}$")
        ax.plot(pixel, -pixel * np.log(pixel) - (1 - pixel) * np.log(1 - pixel), "o", color=color)
    ax.set(xlabel="output $s(l)$", ylabel="BCE of one pixel (nats)", ylim=(0, 3))
    ax.legend(fontsize=8)
    d.figure(fig, "The binary cross-entropy of a pixel $x$ is smallest where the output equals $x$ (dots), and there "
                  "it is the binary entropy of $x$, not 0: only black and white pixels can be reconstructed at zero loss.")


def _section_linear_autoencoder(d: Derivation, rng: np.random.Generator) -> None:
    """A linear autoencoder trained by gradient descent spans the principal subspace (Baldi & Hornik 1989)."""
    data, k, data_rng = _pca_data()
    mean, components = pca_components(data, k)
    centred = np.asarray(data - mean)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred / len(centred))[::-1]
    d.say(f"A linear autoencoder $\\hat x = \\bar x + W_d W_e (x - \\bar x)$, $k = {k}$, on 400 points in $D = 6$ "
          f"with variances {', '.join(f'{v:g}' for v in SPECTRUM)} along random axes (Baldi & Hornik 1989: "
          "every minimum of its squared error is the projection onto the top-$k$ principal subspace).")
    d.numeric("PCA's reconstruction error $\\frac1n\\sum|x - \\hat x|^2$ is the sum of the $D - k$ smallest "
              "eigenvalues of the covariance (Eckart-Young)",
              _linear_ae_loss(components, components.T, data, mean), np.sum(eigenvalues[k:]))
    w_e, w_d = (jnp.asarray(0.1 * data_rng.standard_normal(s)) for s in ((k, 6), (6, k)))
    cov = jnp.asarray(centred.T @ centred / len(centred))
    g_e, g_d = jax.grad(_linear_ae_loss, argnums=(0, 1))(w_e, w_d, data, mean)
    resid = 2 * (w_d @ w_e - jnp.eye(6)) @ cov
    d.gradient("$\\nabla_{W_d} = 2(W_dW_e - I)\\,C\\,W_e^\\top$ and $\\nabla_{W_e} = 2W_d^\\top(W_dW_e - I)\\,C$, "
               "$C$ the covariance (jax.grad vs the closed form)",
               jnp.concatenate([g_d.ravel(), g_e.ravel()]), jnp.concatenate([(resid @ w_e.T).ravel(),
                                                                            (w_d.T @ resid).ravel()]))
    losses = np.asarray(_linear_ae_losses(data, mean, w_e, w_d, lr=0.05, steps=4000))  # for the figure
    w_e, w_d = _train_linear_ae(data, mean, w_e, w_d, lr=0.05, steps=4000)
    angles = principal_angles(w_d, components.T)
    d.numeric(f"After 4 000 steps of gradient descent (float64, from a random start) the decoder's columns span the "
              f"top-{k} principal subspace: principal angles to the SVD's $V_k$ are 0 (largest "
              f"{float(jnp.max(angles)):.1e} rad)", angles, np.zeros(k))
    d.numeric("...as the encoder's rows do, and $W_d W_e$ is the PCA projector $V_k^\\top V_k$",
              jnp.concatenate([principal_angles(w_e.T, components.T), (w_d @ w_e).ravel()]),
              jnp.concatenate([jnp.zeros(k), (components.T @ components).ravel()]))
    d.numeric("Its reconstruction error is PCA's", _linear_ae_loss(w_e, w_d, data, mean), np.sum(eigenvalues[k:]))
    fig, ax = new_figure()
    ax.plot(np.arange(1, len(losses) + 1), losses, "k", label="linear AE, gradient descent")
    for j, what in ((0, "start"), (1, "saddle, $k = 1$"), (2, "PCA, $k = 2$")):
        ax.axhline(np.sum(eigenvalues[j:]), color=f"C{j}", ls=(":", "-.", "--")[j], lw=1.2,
                   label=f"$\\lambda_{{{j + 1}}} + \\dots + \\lambda_6$ ({what})")
    ax.set(xscale="log", xlabel="gradient step", ylabel="reconstruction error")
    ax.legend(fontsize=8, loc="center right", bbox_to_anchor=(1.0, 0.66))
    d.figure(fig, "Gradient descent on the linear autoencoder's loss lingers near the saddle where one principal "
                  "direction is learned, then settles at PCA's error, the sum of the 4 smallest eigenvalues.")
    pairs = [np.asarray(rng.standard_normal((2, 6, k))) for _ in range(5)]
    pairs.append((np.asarray(w_d), np.asarray(components.T)))
    d.numeric("`principal_angles` agrees with `scipy.linalg.subspace_angles` (a third witness) on 5 random pairs of "
              "2-D subspaces and the trained pair",
              jnp.stack([principal_angles(jnp.asarray(a), jnp.asarray(b)) for a, b in pairs]),
              np.stack([scipy.linalg.subspace_angles(a, b) for a, b in pairs]))
    mix = jnp.asarray(data_rng.standard_normal((k, k)))
    d.numeric("Only the subspace is determined: $(W_e, W_d) \\to (G^{-1}W_e, W_dG)$ for an invertible $G$ "
              "reconstructs as well, so the columns of $W_d$ need not be the principal axes",
              _linear_ae_loss(jnp.linalg.solve(mix, w_e), w_d @ mix, data, mean), np.sum(eigenvalues[k:]))


def _section_denoiser_optimum(d: Derivation, mu, sigma_x, s, toy_rng: np.random.Generator):
    """The denoising optimum E[x | x~]: by calculus in 1-D, and by gradient descent on the exact risk in 3-D."""
    dim = mu.shape[0]
    d.say(f"Denoising: $x \\sim \\mathcal N(\\mu, \\Sigma)$ in $D = {dim}$, $\\tilde x = x + \\sigma\\epsilon$ with "
          f"$\\sigma = {s}$. The minimiser of $\\mathbb E|f(\\tilde x) - x|^2$ over all $f$ is "
          "$\\mathbb E[x\\mid\\tilde x]$; for this Gaussian it is linear, "
          "$\\mu + \\Sigma(\\Sigma + \\sigma^2 I)^{-1}(\\tilde x - \\mu)$ "
          "(`optimal_denoiser`).")
    lhs, rhs = _sympy_denoiser()
    d.symbolic("In 1-D, setting the derivatives of $\\mathbb E(a\\tilde x + c - x)^2$ in $a$ and $c$ to 0 gives "
               "$\\mu + \\frac{v}{v + \\sigma^2}(\\tilde x - \\mu)$, the posterior mean", lhs, rhs)
    moments = jnp.block([[sigma_x + s**2 * jnp.eye(dim) + jnp.outer(mu, mu), mu[:, None]], [mu[None], jnp.ones((1, 1))]])
    lr = 0.5 / float(jnp.linalg.eigvalsh(moments)[-1])  # the risk's Hessian is 2 E[(x~, 1)(x~, 1)^T]
    risk_grad = jax.grad(_linear_denoiser_risk, argnums=(0, 1))

    def descend(_, w):
        ga, gc = risk_grad(*w, mu, sigma_x, s)
        return w[0] - lr * ga, w[1] - lr * gc

    fitted_gain, fitted_offset = jax.jit(lambda w: jax.lax.fori_loop(0, 3000, descend, w))((jnp.eye(dim), jnp.zeros(dim)))
    probe = jnp.asarray(toy_rng.standard_normal((10, dim)))
    d.numeric("A linear denoiser $\\tilde x A + c$ fitted by gradient descent on the exact expected loss (float64, "
              "3 000 steps from the identity) is `optimal_denoiser` at 10 points",
              probe @ fitted_gain + fitted_offset, optimal_denoiser(probe, mu, sigma_x, s))
    return probe


def _section_denoiser_samples(d: Derivation, mu, sigma_x, s, toy_rng: np.random.Generator) -> None:
    """On samples: least squares recovers the optimal gain; its loss is the posterior variance; residuals are orthogonal."""
    dim = mu.shape[0]
    gain = jnp.linalg.solve(sigma_x + s**2 * jnp.eye(dim), sigma_x)
    n, reps = 500, 400
    xs = np.asarray(mu) + toy_rng.standard_normal((reps, n, dim)) @ np.linalg.cholesky(np.asarray(sigma_x)).T
    noisy = xs + s * toy_rng.standard_normal(xs.shape)
    design = np.concatenate([noisy, np.ones((reps, n, 1))], axis=-1)
    ols = np.stack([np.linalg.lstsq(a, b, rcond=None)[0][:dim] for a, b in zip(design, xs)])
    d.monte_carlo(f"Least squares on samples is unbiased for it (E[x|x~] is exactly linear): the fitted matrix, "
                  f"averaged over {reps} fits of {n} pairs each, is $\\Sigma(\\Sigma + \\sigma^2I)^{{-1}}$ "
                  "(all 9 entries)", ols.reshape(reps, -1), np.asarray(gain).ravel())
    flat_x, flat_noisy = xs.reshape(-1, dim), noisy.reshape(-1, dim)
    residual = flat_x - np.asarray(optimal_denoiser(jnp.asarray(flat_noisy), mu, sigma_x, s))
    posterior_cov = sigma_x - sigma_x @ gain
    d.monte_carlo(f"Its expected loss is the trace of the posterior covariance, "
                  f"$\\mathrm{{tr}}(\\Sigma - \\Sigma(\\Sigma + \\sigma^2I)^{{-1}}\\Sigma)$ ({len(flat_x):,} samples)",
                  np.sum(residual**2, axis=-1), jnp.trace(posterior_cov))
    d.monte_carlo("Orthogonality: the residual $x - f^*(\\tilde x)$ is uncorrelated with $\\tilde x$ (all 9 entries of "
                  "$\\mathbb E[(x - f^*)(\\tilde x - \\mu)^\\top] = 0$)",
                  (residual[:, :, None] * (flat_noisy - np.asarray(mu))[:, None, :]).reshape(len(flat_x), -1),
                  np.zeros(dim * dim))


def _section_denoiser_risk(d: Derivation, mu, sigma_x, s, toy_rng: np.random.Generator, probe) -> None:
    """The optimum beats other linear denoisers, and its residual is a score (Tweedie, Vincent 2011)."""
    dim = mu.shape[0]
    gain = jnp.linalg.solve(sigma_x + s**2 * jnp.eye(dim), sigma_x)
    optimum = _linear_denoiser_risk(gain, mu @ (jnp.eye(dim) - gain), mu, sigma_x, s)
    gains = gain + 0.1 * jnp.asarray(toy_rng.standard_normal((20, dim, dim)))
    offsets = mu @ (jnp.eye(dim) - gain) + 0.1 * jnp.asarray(toy_rng.standard_normal((20, dim)))
    others = jax.vmap(_linear_denoiser_risk, in_axes=(0, 0, None, None, None))(gains, offsets, mu, sigma_x, s)
    identity = _linear_denoiser_risk(jnp.eye(dim), jnp.zeros(dim), mu, sigma_x, s)
    d.inequality(f"Its expected loss {float(optimum):.4f} is below returning $\\tilde x$ ($D\\sigma^2$ = "
                 f"{float(identity):.2f}) and below 20 perturbed linear denoisers",
                 jnp.full(21, optimum), jnp.concatenate([identity[None], others]))
    offset = mu @ (jnp.eye(dim) - gain)
    distance = np.sqrt(np.sum((gains - gain) ** 2, axis=(1, 2)) + np.sum((offsets - offset) ** 2, axis=1))
    fig, ax = new_figure()
    ax.plot(distance, others, "o", label="20 perturbed $(A, c)$")
    ax.plot(float(jnp.sqrt(jnp.sum((jnp.eye(dim) - gain) ** 2) + offset @ offset)), identity, "s", color="C3",
            label="identity: return $\\tilde x$")
    ax.plot(0.0, optimum, "*", color="k", ms=12, label="$E[x|\\tilde x]$")
    ax.axhline(float(optimum), color="k", ls="--", lw=1)
    ax.set(xlabel="distance of $(A, c)$ from the optimum", ylabel="expected loss $E|\\tilde x A + c - x|^2$")
    ax.legend(fontsize=8)
    d.figure(fig, "Every other linear denoiser tried (20 perturbations of the optimum, and the identity) has a larger "
                  "expected loss than the posterior mean $E[x|\\tilde x]$ (star, dashed line).")
    marginal_cov = sigma_x + s**2 * jnp.eye(dim)

    def log_marginal(xt):
        diff = xt - mu
        return -0.5 * diff @ jnp.linalg.solve(marginal_cov, diff) - 0.5 * jnp.linalg.slogdet(2 * math.pi * marginal_cov)[1]

    d.numeric("Tweedie / Vincent (2011): $f^*(\\tilde x) = \\tilde x + \\sigma^2\\nabla\\log p_\\sigma(\\tilde x)$, "
              "$p_\\sigma = \\mathcal N(\\mu, \\Sigma + \\sigma^2 I)$ (jax.grad), so the denoiser's residual is a score",
              probe + s**2 * jax.vmap(jax.grad(log_marginal))(probe), optimal_denoiser(probe, mu, sigma_x, s))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("autoencoder", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(1)
    d.say("An autoencoder maps $x$ to a code $z = e(x)$ of size $k < D$ and back, $\\hat x = g(z)$, trained to "
          "minimise a reconstruction loss: the mean squared error, or for $x \\in [0, 1]$ the binary cross-entropy "
          "of the decoder's logits.")
    _section_reconstruction_objective(d, rng)
    _section_linear_autoencoder(d, rng)

    # Denoising autoencoders: the optimum is E[x | x~].
    mu, sigma_x, s, toy_rng = _denoising_toy()
    probe = _section_denoiser_optimum(d, mu, sigma_x, s, toy_rng)
    _section_denoiser_samples(d, mu, sigma_x, s, toy_rng)
    _section_denoiser_risk(d, mu, sigma_x, s, toy_rng, probe)
    return d
