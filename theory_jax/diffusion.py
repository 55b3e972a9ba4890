"""The diffusion core in JAX: what ``ddpm``, ``ddim``, ``guidance``, ``score`` and ``latent_diffusion`` share.

The twin of ``practice_torch/diffusion/`` (same names, same arguments). Timestep convention of the project: integer
index t in 0..T-1 (the paper's t+1); alpha_bar[t] = prod_{s<=t} (1 - beta_s) and alpha_bar_prev[0] = 1. Per-example
coefficients are () or (B,) arrays broadcast over the trailing axes of x (``per_example``). The derivations prove
these functions: ``python -m theory_jax ddpm`` the schedules, q(x_t|x_0), the posterior and the ancestral step;
``python -m theory_jax ddim`` the DDIM family; ``python -m theory_jax guidance`` label dropout and the guidance
combinations; ``python -m theory_jax ddpm`` also restoration by replacement and resampling. Pure functions with
their noise passed in; no derivation here.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from theory_jax.broadcasting import per_example

__all__ = ["alpha_bars", "augment_condition", "cfg_eps", "classifier_guided_eps", "cosine_betas",
           "ddim_reverse_step", "ddim_sigma", "ddim_step", "ddpm_step", "downsample", "implicit_classifier_grad",
           "linear_betas", "low_pass", "null_labels", "posterior_mean_variance", "predict_x0", "q_sample", "renoise",
           "repaint_levels", "replace_known", "replace_low_pass", "upsample"]


# 1. Noise schedules -------------------------------------------------------------------------------------------
def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    """beta_t evenly spaced from beta_start to beta_end (Ho et al. 2020, section 4). -> (T,) float64."""
    return jnp.linspace(beta_start, beta_end, T, dtype=jnp.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999):
    """beta_t = min(1 - f(t+1)/f(t), max_beta), f(u) = cos^2((u/T + s)/(1 + s) pi/2) (Nichol & Dhariwal eq. 17)."""
    u = jnp.arange(T + 1, dtype=jnp.float64)
    f = jnp.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return jnp.minimum(1 - f[1:] / f[:-1], max_beta)


def alpha_bars(betas):
    """alpha_bar[t] = prod_{s<=t} (1 - beta_s) (Ho et al. eq. 4). (T,) -> (T,)."""
    return jnp.cumprod(1 - betas)


# 2. q(x_t|x_0), its inverse, the posterior and the ancestral step ---------------------------------------------
def q_sample(x0, alpha_bar_t, eps):
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, a draw of q(x_t|x_0) (Ho et al. 2020, eq. 4).
    x0: (B, ...) the data; alpha_bar_t: (B,) or () the cumulative product of the alphas at each example's t;
    eps: (B, ...) the noise ~ N(0, I) -> x_t: (B, ...)."""
    a = per_example(alpha_bar_t, x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps


def predict_x0(x_t, alpha_bar_t, eps):
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (eq. 4 solved for x_0; eq. 15)."""
    a = per_example(alpha_bar_t, x_t)
    return (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)


def posterior_mean_variance(x0, x_t, alpha_bar_t, alpha_bar_prev):
    """q(x_{t-1}|x_t, x_0) = N(mu_tilde, beta_tilde I) (eqs. 6-7), beta_t = 1 - alpha_bar_t / alpha_bar_prev.
    -> (mean (B, ...), var shaped like alpha_bar_t)."""
    a_t, a_prev = per_example(alpha_bar_t, x_t), per_example(alpha_bar_prev, x_t)
    beta = 1 - a_t / a_prev
    mean = jnp.sqrt(a_prev) * beta / (1 - a_t) * x0 + jnp.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x_t
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean, var.reshape(jnp.shape(alpha_bar_t))


def ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    """One ancestral step x_t -> x_{t-1} ~ N(mu_tilde(x_t, x0_hat), beta_tilde I) (Ho et al. 2020, Algorithm 2):
    1. x0_hat from the predicted noise eps (eq. 15); 2. the posterior mean and variance at x0_hat (eq. 7);
    3. x_{t-1} = mean + sqrt(beta_tilde) z. beta_tilde = 0 at t = 0 (alpha_bar_prev = 1), so the last step is the mean.
    x_t: (B, ...) the current sample; eps: (B, ...) the predicted noise eps_theta(x_t, t); alpha_bar_t, alpha_bar_prev:
    (B,) or () the cumulative products of the alphas at t and t - 1; z: (B, ...) fresh noise ~ N(0, I)
    -> x_{t-1}: (B, ...)."""
    mean, var = posterior_mean_variance(predict_x0(x_t, alpha_bar_t, eps), x_t, alpha_bar_t, alpha_bar_prev)
    return mean + jnp.sqrt(per_example(var, x_t)) * z


# 3. DDIM's family (Song, Meng & Ermon 2021, eqs. 12 and 16) and its inversion ---------------------------------
def ddim_sigma(alpha_bar_t, alpha_bar_prev, eta):
    """sigma_t(eta) = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (eq. 16). Shapes broadcast."""
    return eta * jnp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * jnp.sqrt(1 - alpha_bar_t / alpha_bar_prev)


def ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
    """One DDIM reverse step x_t -> x_{t-1} (eq. 12). x_t, eps, z: (B, ...); a_t, a_prev: (B,) or (); eta: float.

    x_{t-1} = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma^2) * eps + sigma * z.
    """
    a_t, a_prev = per_example(alpha_bar_t, x_t), per_example(alpha_bar_prev, x_t)
    sigma = ddim_sigma(a_t, a_prev, per_example(eta, x_t))
    x0_hat = (x_t - jnp.sqrt(1 - a_t) * eps) / jnp.sqrt(a_t)           # "predicted x_0"
    direction = jnp.sqrt(jnp.maximum(1 - a_prev - sigma**2, 0)) * eps   # "direction pointing to x_t"
    return jnp.sqrt(a_prev) * x0_hat + direction + sigma * z              # + random noise


def ddim_reverse_step(x_prev, eps, alpha_bar_t, alpha_bar_prev):
    """One step of DDIM inversion x_{t-1} -> x_t: ``ddim_step`` at eta = 0 solved for x_t with eps held fixed.

    x_prev, eps: (B, ...); a_t, a_prev: (B,) or (). x_t = sqrt(a_t) x0_hat + sqrt(1 - a_t) eps with
    x0_hat = (x_{t-1} - sqrt(1 - a_prev) eps) / sqrt(a_prev): the forward Euler step of eq. 14.
    """
    a_t, a_prev = per_example(alpha_bar_t, x_prev), per_example(alpha_bar_prev, x_prev)
    x0_hat = (x_prev - jnp.sqrt(1 - a_prev) * eps) / jnp.sqrt(a_prev)
    return jnp.sqrt(a_t) * x0_hat + jnp.sqrt(1 - a_t) * eps


# 4. Conditioning: label dropout and the two guidance combinations (Ho & Salimans 2022; Dhariwal & Nichol 2021) ----
def null_labels(y, drop, num_classes: int):
    """Label dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1): the dropped labels become the
    null token K = num_classes. y: (B,) int, drop: (B,) bool -> (B,) int."""
    return jnp.where(drop, num_classes, y)


def cfg_eps(eps_cond, eps_uncond, w):
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): eps~ = (1 + w) eps(x_t, y) - w eps(x_t, null).
    eps_cond: (B, ...) the prediction given the condition y; eps_uncond: (B, ...) the unconditional one; w: a float,
    () or (B,), the guidance weight (w = 0 is the conditional model, w = -1 the unconditional one) -> (B, ...)."""
    w = per_example(w, eps_cond)
    return (1 + w) * eps_cond - w * eps_uncond


def classifier_guided_eps(eps, grad_log_p_y, alpha_bar_t, w):
    """Classifier guidance in epsilon form (Dhariwal & Nichol 2021, Algorithm 2):
    eps - w sqrt(1 - alpha_bar_t) grad_x log p(y | x_t). eps, grad_log_p_y: (B, ...); alpha_bar_t, w: () or (B,)."""
    a, w = per_example(alpha_bar_t, eps), per_example(w, eps)
    return eps - w * jnp.sqrt(1 - a) * grad_log_p_y


def implicit_classifier_grad(eps_cond, eps_uncond, alpha_bar_t):
    """grad_x log p_i(y | x_t) of the implicit classifier p_i(y|x) = p(x|y) p(y) / p(x) (Ho & Salimans, sec. 3.2):
    score(x|y) - score(x) = -(eps(x_t, y) - eps(x_t)) / sqrt(1 - alpha_bar_t). (B, ...), alpha_bar_t () or (B,)."""
    a = per_example(alpha_bar_t, eps_cond)
    return -(eps_cond - eps_uncond) / jnp.sqrt(1 - a)


# 4. Restoration with a trained model: RePaint's inpainting and ILVR's low-pass consistency ----------------------
def low_pass(x, factor: int):
    """P x = up(down(x)): x (B, C, H, W) averaged over factor x factor blocks, each block filled with its mean."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    return jnp.repeat(jnp.repeat(blocks, factor, axis=2), factor, axis=3)


def replace_known(x_model, y_t, known):
    """(1 - m) x_model + m y_t: the truth's noised draw where the 0/1 mask m knows the pixel (RePaint eq. 8)."""
    return (1 - known) * x_model + known * y_t


def replace_low_pass(x_model, y_t, factor: int):
    """x_model - P x_model + P y_t with P = ``low_pass`` (ILVR eq. 5). (B, C, H, W)."""
    return x_model - low_pass(x_model, factor) + low_pass(y_t, factor)


def renoise(x_prev, alpha_bar_t, alpha_bar_prev, z):
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z, beta_t = 1 - a_t / a_prev: q(x_t | x_{t-1}), RePaint's jump
    back up. x_prev, z: (B, ...); alpha_bar_t, alpha_bar_prev: (B,) or ()."""
    keep = per_example(alpha_bar_t, x_prev) / per_example(alpha_bar_prev, x_prev)
    return jnp.sqrt(keep) * x_prev + jnp.sqrt(1 - keep) * z


def repaint_levels(n: int, jump: int = 1, resample: int = 1) -> list[int]:
    """The noise levels visited over n kept steps, n - 1 down to -1 (x_0), going back up ``jump`` levels
    ``resample - 1`` times at every ``jump``-th level (RePaint's jump schedule)."""
    left = {level: resample - 1 for level in range(0, n - jump, jump)}
    level, levels = n, []
    while level >= 1:
        level -= 1
        levels.append(level)
        if left.get(level, 0) > 0:
            left[level] -= 1
            for _ in range(jump):
                level += 1
                levels.append(level)
    return levels + [-1]


# 5. Cascades: the low-resolution condition and its augmentation (Ho et al. 2021, "Cascaded diffusion models") ----
def downsample(x, factor: int):
    """The low-resolution image: x (B, C, H, W) averaged over factor x factor blocks -> (B, C, H / factor, W /
    factor). H and W must be multiples of ``factor``."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def upsample(z, factor: int):
    """Each pixel of z (B, C, h, w) repeated over a factor x factor block (nearest) -> (B, C, h factor, w factor):
    the super-resolution stage's condition at the output's size; ``low_pass`` = upsample(downsample(x))."""
    return jnp.repeat(jnp.repeat(z, factor, axis=2), factor, axis=3)


def augment_condition(z, alpha_bar_s, eps):
    """Gaussian conditioning augmentation (Ho et al. 2021, section 4.1): the condition corrupted by the forward
    process at level s, z_s = sqrt(alpha_bar_s) z + sqrt(1 - alpha_bar_s) eps; a random s in training, a chosen one
    at sampling, and the stage is told s. z: (B, ...) the low-resolution condition; alpha_bar_s: (B,) or () the
    signal's share at each example's level; eps: (B, ...) the noise ~ N(0, I) -> z_s: (B, ...)."""
    a = per_example(alpha_bar_s, z)
    return jnp.sqrt(a) * z + jnp.sqrt(1 - a) * eps
