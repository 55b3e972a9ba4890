"""The diffusion core shared by ``ddpm``, ``ddim``, ``guidance``, ``score`` and ``latent_diffusion`` (JAX twin:
``theory_jax/diffusion.py``). Those topics import this package and never each other.

* ``schedule``: linear and cosine betas, alpha_bars, ``q_sample``, ``predict_x0``, the posterior q(x_{t-1}|x_t, x_0),
  and ``Schedule``, the float64 tables shared by training and every sampler (``respace``).
* ``steps``: the per-step update rules, ``ddpm_step`` (ancestral), ``ddim_step`` / ``ddim_sigma`` and
  ``ddim_reverse_step`` (the DDIM family and its inversion), ``clipped_eps``.
* ``conditioning``: ``null_labels`` (label dropout), ``cfg_eps`` (classifier-free guidance), ``classifier_guided_eps``,
  ``implicit_classifier_grad``.
* ``loop``: ``sample_loop``, the one reverse chain, which takes a step function (``step_rule`` names DDPM's and DDIM's).
* ``cascade``: cascaded diffusion's ``downsample``, ``upsample`` and Gaussian conditioning augmentation
  (``augment_condition``).
* ``restoration``: inpainting and super-resolution with a trained DDPM (``restore``: RePaint's replacement and
  resampling, ILVR's low-pass consistency; ``replace_known``, ``replace_low_pass``, ``renoise``, ``low_pass``,
  ``repaint_levels``).

Pure functions of tensors with the noise passed in; nothing here imports the engine, a data set or a topic.
"""

from practice_torch.diffusion.cascade import augment_condition, downsample, upsample
from practice_torch.diffusion.conditioning import cfg_eps, classifier_guided_eps, implicit_classifier_grad, null_labels
from practice_torch.diffusion.loop import SAMPLERS, sample_loop, step_rule
from practice_torch.diffusion.restoration import (low_pass, renoise, repaint_levels, replace_known,
                                                  replace_low_pass, restore)
from practice_torch.diffusion.schedule import (Schedule, alpha_bars, cosine_betas, linear_betas,
                                               posterior_mean_variance, predict_x0, q_sample)
from practice_torch.diffusion.steps import clipped_eps, ddim_reverse_step, ddim_sigma, ddim_step, ddpm_step

__all__ = [
    "SAMPLERS", "alpha_bars", "augment_condition", "cfg_eps", "classifier_guided_eps", "clipped_eps", "cosine_betas",
    "ddim_reverse_step", "ddim_sigma", "ddim_step", "ddpm_step", "downsample", "implicit_classifier_grad",
    "linear_betas", "low_pass", "null_labels", "posterior_mean_variance", "predict_x0", "q_sample", "renoise",
    "repaint_levels", "replace_known", "replace_low_pass", "restore", "sample_loop", "Schedule", "step_rule",
    "upsample",
]
