"""The ``gan_inversion`` derivation (``python -m theory_jax gan_inversion``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/gan_inversion.py``. ``--markdown FILE`` writes it as a document, ``--notebook
FILE`` as a notebook.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory_jax.derivation import Derivation, full_precision, new_figure
from theory_jax.gan_inversion import (
    inversion_step,
    latent_regression_loss,
    mlp_generator,
)

TITLE = "GAN inversion: optimisation, latent-regression encoders and the hybrid, closed form for linear generators"
LECTURES = "GAN inversion"


# 2. The derivation -----------------------------------------------------------------------------------------------
def _descend(z, x, params, prior_weight, lr, steps):
    step = jax.jit(lambda zz: inversion_step(zz, x, *params, prior_weight, lr))
    path = [np.asarray(z)]
    for _ in range(steps):
        z = step(z)
        path.append(np.asarray(z))
    return np.stack(path)


def _section_ridge_descent(d: Derivation, rng: np.random.Generator, k: int, dim: int):
    """A linear generator: inversion is ridge regression, and gradient descent contracts to it at rate 1 - mu/L."""
    d.say("A linear generator $G(z) = Az + c$ first (`mlp_generator` with the identity in place of tanh is "
          "affine; here $A$ and $c$ directly), where $L(z) = \\|Az + c - x\\|^2/D + \\lambda\\|z\\|^2$ is a ridge "
          "regression: $z^* = (A^\\top A + \\lambda D I)^{-1} A^\\top (x - c)$.")
    a_mat, c_vec = rng.standard_normal((dim, k)), rng.standard_normal(dim)
    lam = 0.05

    def linear_loss(z, x):
        return jnp.sum((z @ a_mat.T + c_vec - x) ** 2) / dim + lam * jnp.sum(z**2)

    x_out = rng.standard_normal(dim)  # an image outside the generator's range
    z_star = np.linalg.solve(a_mat.T @ a_mat + lam * dim * np.eye(k), a_mat.T @ (x_out - c_vec))
    codes = rng.standard_normal((5, k))
    d.gradient("$\\nabla L = \\frac{2}{D} A^\\top (Az + c - x) + 2\\lambda z$ (`jax.grad`) at 5 random codes",
               jax.vmap(jax.grad(linear_loss), in_axes=(0, None))(jnp.asarray(codes), x_out),
               np.stack([2 / dim * a_mat.T @ (a_mat @ zz + c_vec - x_out) + 2 * lam * zz for zz in codes]))
    hess = 2 / dim * a_mat.T @ a_mat + 2 * lam * np.eye(k)
    eig = np.linalg.eigvalsh(hess)
    lr = 1 / eig[-1]
    z = np.zeros(k)
    errors = [np.linalg.norm(z - z_star)]
    grad = jax.jit(jax.grad(linear_loss))  # one program for the 400 steps
    for _ in range(400):
        z = z - lr * np.asarray(grad(z, x_out))
        errors.append(np.linalg.norm(z - z_star))
    d.numeric("Gradient descent with step $1/L$ ($L$ the Hessian's largest eigenvalue) reaches the ridge solution",
              z, z_star, rtol=1e-9, atol=1e-12)
    rate_bound = (1 - eig[0] / eig[-1]) ** np.arange(401) * errors[0]
    d.inequality("...contracting at least by $1 - \\mu/L$ per step ($\\mu$ the smallest eigenvalue; condition "
                 f"number {eig[-1] / eig[0]:.1f}): $\\|z_t - z^*\\| \\le (1 - \\mu/L)^t \\|z_0 - z^*\\|$",
                 np.array(errors), rate_bound, slack=1e-14)
    fig, ax = new_figure()
    ax.semilogy(errors, label="gradient descent, step $1/L$")
    ax.semilogy(rate_bound, "k--", lw=1, label="$(1 - \\mu/L)^t \\, \\|z_0 - z^*\\|$")
    ax.set(xlabel="step $t$", ylabel="$\\|z_t - z^*\\|$", ylim=(1e-17, None))
    ax.legend()
    d.figure(fig, "On the ridge-regression loss of a linear generator the error falls geometrically, always under the "
                  "$(1 - \\mu/L)^t$ line, until it reaches float64 round-off.")
    return a_mat, c_vec, lam, x_out, z_star


def _section_range(d: Derivation, rng: np.random.Generator, a_mat, c_vec, lam, x_out, z_star) -> None:
    """Outside the generator's range inversion projects (shrunk by lambda); inside it, it recovers the code."""
    dim, k = a_mat.shape
    residual = a_mat @ z_star + c_vec - x_out
    d.numeric("Outside the range, the reconstruction is a (shrunk) projection: at $\\lambda$'s optimum "
              "$A^\\top (G(z^*) - x) = -\\lambda D z^*$, and with $\\lambda = 0$ the residual is orthogonal to the "
              "range", a_mat.T @ residual, -lam * dim * z_star)
    z_true = rng.standard_normal(k)
    x_in = a_mat @ z_true + c_vec
    d.numeric("Inside the range with $\\lambda = 0$, inversion recovers the code exactly: $z^* = z_{\\mathrm{true}}$",
              np.linalg.lstsq(a_mat, x_in - c_vec, rcond=None)[0], z_true)


def _section_latent_regression(d: Derivation, rng: np.random.Generator, a_mat, c_vec) -> None:
    """Learning-based inversion: the best latent-regression encoder of a noisy linear generator is the posterior mean."""
    dim, k = a_mat.shape
    d.say("Learning-based inversion: an encoder trained by latent regression on the generator's own samples. For a "
          "noisy linear generator $x = Az + c + \\sigma\\varepsilon$, $z \\sim \\mathcal N(0, I)$, the best encoder is "
          "the posterior mean $E^*(x) = A^\\top (AA^\\top + \\sigma^2 I)^{-1} (x - c)$, with error "
          "$\\mathrm{tr}(I - A^\\top (AA^\\top + \\sigma^2 I)^{-1} A)$.")
    sigma, n = 0.5, 200_000
    zs = rng.standard_normal((n, k))
    xs = zs @ a_mat.T + c_vec + sigma * rng.standard_normal((n, dim))
    gain = a_mat.T @ np.linalg.inv(a_mat @ a_mat.T + sigma**2 * np.eye(dim))
    fitted = np.linalg.lstsq(np.hstack([xs, np.ones((n, 1))]), zs, rcond=None)[0]
    d.numeric("Least squares on 200 000 samples (a linear encoder trained to convergence) finds it, up to "
              "sampling error ($\\sim 1/\\sqrt n$)", fitted[:dim].T, gain, rtol=0, atol=0.01)
    fresh = rng.standard_normal((n, k))
    x_fresh = fresh @ a_mat.T + c_vec + sigma * rng.standard_normal((n, dim))
    per_example = np.sum(((x_fresh - c_vec) @ gain.T - fresh) ** 2, axis=1)
    d.monte_carlo("Its latent-regression loss on fresh samples is the posterior's total variance", per_example,
                  np.trace(np.eye(k) - gain @ a_mat))
    d.numeric("`latent_regression_loss` is that per-example error averaged",
              latent_regression_loss(fresh, (x_fresh - c_vec) @ gain.T), per_example.mean())


def _section_hybrid(d: Derivation, rng: np.random.Generator, k: int, dim: int, hidden: int) -> None:
    """A nonlinear generator: descent from an encoder's estimate (the hybrid) beats random starts; L is not convex."""
    d.say("A nonlinear generator (`mlp_generator`, 3 -> 16 -> 8, tanh) and the hybrid: the same gradient descent "
          "(`inversion_step`, $\\lambda = 0$) from a random code and from a latent-regression encoder's estimate.")
    params = (rng.standard_normal((hidden, k)) * 0.8, rng.standard_normal(hidden) * 0.2,
              rng.standard_normal((dim, hidden)) / 2, rng.standard_normal(dim) * 0.2)
    train_z = rng.standard_normal((20_000, k))
    train_x = np.asarray(mlp_generator(train_z, *params))
    features = np.hstack([train_x, np.ones((len(train_x), 1))])
    encoder = np.linalg.lstsq(features, train_z, rcond=None)[0]  # a linear latent-regression encoder
    targets = rng.standard_normal((16, k))
    x_target = mlp_generator(targets, *params)
    from_encoder = np.hstack([np.asarray(x_target), np.ones((16, 1))]) @ encoder
    from_random = rng.standard_normal((16, k))
    steps = 600
    path_enc = _descend(jnp.asarray(from_encoder), x_target, params, 0.0, 0.5, steps)
    path_rand = _descend(jnp.asarray(from_random), x_target, params, 0.0, 0.5, steps)

    def mse(path):
        return np.mean((np.asarray(jax.vmap(lambda zz: mlp_generator(zz, *params))(path)) - np.asarray(x_target)) ** 2,
                       axis=-1)  # (steps + 1, 16)

    mse_enc, mse_rand = mse(path_enc), mse(path_rand)
    d.inequality("The encoder's estimate is a better start: its reconstruction error before any step is below the "
                 "random code's for every one of 16 targets", mse_enc[0], mse_rand[0])
    done_enc, done_rand = mse_enc[-1] < 1e-6, mse_rand[-1] < 1e-6
    both = done_enc & done_rand
    steps_enc, steps_rand = np.argmax(mse_enc < 1e-6, axis=0)[both], np.argmax(mse_rand < 1e-6, axis=0)[both]
    d.inequality(f"The hybrid needs fewer steps: summed over the {int(both.sum())} targets both starts reconstruct "
                 f"to MSE 1e-6 within {steps} steps, descent from the encoder takes {int(steps_enc.sum())} steps and "
                 f"from random codes {int(steps_rand.sum())}", np.array(steps_enc.sum()), np.array(steps_rand.sum()))
    stuck = ~done_enc & ~done_rand
    d.inequality(f"$L$ is not convex: {int(stuck.sum())} of the 16 targets, each exactly $G(z)$ for some $z$, are "
                 "reconstructed from neither start (their error stays above 1e-4: local minima), the reason "
                 "inversion of real generators needs good starts and restarts", np.full(int(stuck.sum()), 1e-4),
                 np.minimum(mse_enc[-1], mse_rand[-1])[stuck])
    fig, ax = new_figure()
    ax.semilogy(mse_rand, color="tab:orange", lw=0.7, alpha=0.6)
    ax.semilogy(mse_enc, color="tab:blue", lw=0.7, alpha=0.6)
    ax.semilogy(np.median(mse_rand, axis=1), color="tab:orange", lw=2.5, label="from random codes")
    ax.semilogy(np.median(mse_enc, axis=1), color="tab:blue", lw=2.5, label="from the encoder (hybrid)")
    ax.axhline(1e-6, color="k", ls="--", lw=1, label="MSE $10^{-6}$")
    ax.set(xlabel="gradient step", ylabel="reconstruction MSE", ylim=(1e-12, 1e2))
    ax.legend(loc="lower right", fontsize=8)
    d.figure(fig, "Thin lines: the 16 targets, bold: their median. Descent from the encoder's estimate starts lower and "
                  "crosses $10^{-6}$ sooner; the lines that level off high are local minima, reached from both starts.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("gan_inversion", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    k, dim, hidden = 3, 8, 16

    a_mat, c_vec, lam, x_out, z_star = _section_ridge_descent(d, rng, k, dim)
    _section_range(d, rng, a_mat, c_vec, lam, x_out, z_star)
    _section_latent_regression(d, rng, a_mat, c_vec)
    _section_hybrid(d, rng, k, dim, hidden)
    return d
