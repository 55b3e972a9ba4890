"""Exercises of DDPM: the forward process, the simple loss, one reverse step and a cascade's conditioning
augmentation."""

from __future__ import annotations

import jax.numpy as jnp

from theory_jax.broadcasting import per_example
from theory_jax.exercises import Exercise, Mistake


def _no_square_roots(x0, alpha_bar_t, eps):
    a = per_example(alpha_bar_t, x0)
    return a * x0 + (1 - a) * eps


def _noise_without_root(x0, alpha_bar_t, eps):
    a = per_example(alpha_bar_t, x0)
    return jnp.sqrt(a) * x0 + (1 - a) * eps


def _batch_mean(eps, eps_pred):
    return jnp.mean((eps - eps_pred) ** 2)


def _summed(eps, eps_pred):
    return ((eps - eps_pred) ** 2).reshape(eps.shape[0], -1).sum(axis=1)


def _mean_and_variance(x_t, eps, alpha_bar_t, alpha_bar_prev):
    a_t, a_prev = per_example(alpha_bar_t, x_t), per_example(alpha_bar_prev, x_t)
    beta = 1 - a_t / a_prev
    x0 = (x_t - jnp.sqrt(1 - a_t) * eps) / jnp.sqrt(a_t)
    mean = (jnp.sqrt(a_prev) * beta * x0 + jnp.sqrt(1 - beta) * (1 - a_prev) * x_t) / (1 - a_t)
    return mean, beta, (1 - a_prev) / (1 - a_t) * beta


def _beta_noise(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    mean, beta, _ = _mean_and_variance(x_t, eps, alpha_bar_t, alpha_bar_prev)
    return mean + jnp.sqrt(beta) * z


def _no_noise(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    return _mean_and_variance(x_t, eps, alpha_bar_t, alpha_bar_prev)[0]


def _mean_at_x_t(x_t, eps, alpha_bar_t, alpha_bar_prev, z):
    _, beta, var = _mean_and_variance(x_t, eps, alpha_bar_t, alpha_bar_prev)
    return (x_t - beta * eps) / jnp.sqrt(1 - beta) + jnp.sqrt(var) * z


def _noise_added_unscaled(z, alpha_bar_s, eps):
    a = per_example(alpha_bar_s, z)
    return z + jnp.sqrt(1 - a) * eps


def _level_reversed(z, alpha_bar_s, eps):
    a = per_example(alpha_bar_s, z)
    return jnp.sqrt(1 - a) * z + jnp.sqrt(a) * eps


EXERCISES = (
    Exercise(
        "q_sample",
        "the forward process in one jump: x_t given x_0 is a Gaussian whose mean shrinks as its variance grows",
        ("q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. eq. 4); the noise eps is given.",
         "alpha_bar_t is one number per example, (B,): broadcast it against x0 (per_example).",
         "sqrt(a) x0 + sqrt(1 - a) eps with a = per_example(alpha_bar_t, x0)."),
        (Mistake("you scale by alpha_bar_t and 1 - alpha_bar_t: those are the variances' factors; the sample takes "
                 "their square roots", _no_square_roots),
         Mistake("your noise is scaled by 1 - alpha_bar_t: its standard deviation is sqrt(1 - alpha_bar_t)",
                 _noise_without_root))),
    Exercise(
        "eps_loss",
        "DDPM's L_simple: the network predicts the noise, scored by mean squared error per example",
        ("Eq. 14: || eps - eps_theta(x_t, t) ||^2, without the VLB's weights; one value per example.",
         "Average over every non-batch axis; keep the batch axis.",
         "((eps - eps_pred)^2).reshape(B, -1).mean(axis=1)."),
        (Mistake("your loss is one number for the batch: this function gives one per example, (B,), which the "
                 "training averages (and the VLB weighs per t)", _batch_mean),
         Mistake("your loss sums over the dimensions: L_simple here is their mean", _summed))),
    Exercise(
        "ddpm_step",
        "ancestral sampling: one step of the learned reverse process, the posterior at the predicted x_0",
        ("Algorithm 2: predict x_0 from x_t and eps, take the posterior q(x_{t-1} | x_t, x_0) at it, add its noise.",
         "beta_t = 1 - alpha_bar_t / alpha_bar_prev; x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t); the posterior "
         "mean is (sqrt(a_prev) beta_t x0_hat + sqrt(1 - beta_t) (1 - a_prev) x_t) / (1 - a_t) (eq. 7).",
         "Add sqrt(beta_tilde) z with beta_tilde = (1 - a_prev) / (1 - a_t) beta_t: 0 at the last step, where "
         "alpha_bar_prev = 1."),
        (Mistake("your noise has variance beta_t: this sampler uses the posterior's beta_tilde = (1 - alpha_bar_prev) / "
                 "(1 - alpha_bar_t) beta_t (Ho et al.'s other choice, sigma^2 = beta_t, is the upper bound)",
                 _beta_noise),
         Mistake("your step adds no noise: ancestral sampling draws x_{t-1}, adding sqrt(beta_tilde) z", _no_noise),
         Mistake("your mean is (x_t - beta_t eps) / sqrt(alpha_t): eq. 11's coefficient of eps is "
                 "beta_t / sqrt(1 - alpha_bar_t)", _mean_at_x_t)),
        withhold=("posterior_mean_variance", "predict_x0")),
    Exercise(
        "augment_condition",
        "a cascade's Gaussian conditioning augmentation: the forward process run on the low-resolution condition",
        ("Ho et al. 2021, section 4.1: the super-resolution stage is trained on a noised condition z_s, drawn as "
         "q(z_s | z) of the diffusion's own forward process, and is told the level s.",
         "The same variance-preserving mix as q_sample, applied to the condition: the signal keeps sqrt(alpha_bar_s) "
         "of its scale and the noise brings the variance back to one for unit-variance data.",
         "sqrt(alpha_bar_s) z + sqrt(1 - alpha_bar_s) eps, alpha_bar_s broadcast per example."),
        (Mistake("your augmentation adds noise without shrinking the condition: the forward process scales z by "
                 "sqrt(alpha_bar_s), so the variance stays that of the data", _noise_added_unscaled),
         Mistake("your levels run backwards: alpha_bar_s is the share of the signal kept, sqrt(alpha_bar_s) z, and "
                 "1 - alpha_bar_s the noise's", _level_reversed))),
)
