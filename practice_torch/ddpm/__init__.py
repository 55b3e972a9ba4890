"""DDPM (Ho, Jain & Abbeel 2020) in PyTorch: the twin of ``theory_jax/ddpm.py``.

* ``practice_torch.diffusion`` (the core every diffusion topic shares, re-exported here): linear and cosine betas,
  alpha_bars, ``q_sample``, ``predict_x0``, the posterior q(x_{t-1}|x_t, x_0), ``ddpm_step``, the ``Schedule`` shared
  by training and every sampler (``respace``), and ``sample_loop``, the reverse chain of the 'ddpm' and 'ddim' samplers;
  ``restore``, inpainting and super-resolution with a trained model (RePaint's replacement and resampling); the
  cascade's ``downsample``, ``upsample`` and ``augment_condition`` (Gaussian conditioning augmentation).
* ``functions``: the terms of the variational bound (L_T, L_{t-1}, the discretised decoder L_0) and L_simple.
* Networks: ``practice_torch.nets.MLPDenoiser`` for 2-D data, ``practice_torch.nets.UNet`` for images (re-exported).
* ``training``: the training adapter (``python -m practice_torch train ddpm``), loaded only when asked for.
"""

from practice_torch.ddpm.functions import (decoder_nll, discretized_gaussian_log_likelihood, eps_loss, prior_kl,
                                           vlb_term, vlb_weight)
from practice_torch.diffusion import (SAMPLERS, Schedule, alpha_bars, augment_condition, clipped_eps, cosine_betas,
                                      ddpm_step, downsample, linear_betas, low_pass, posterior_mean_variance,
                                      predict_x0, q_sample, renoise, repaint_levels, replace_known, replace_low_pass,
                                      restore, sample_loop, upsample)
from practice_torch.diffusion.model import Diffusion
from practice_torch.nets import MLPDenoiser, UNet, UNetConfig

__all__ = [
    "SAMPLERS", "Diffusion", "MLPDenoiser", "Schedule", "UNet", "UNetConfig", "alpha_bars", "augment_condition",
    "clipped_eps", "cosine_betas", "ddpm_step", "decoder_nll", "discretized_gaussian_log_likelihood", "downsample",
    "eps_loss", "linear_betas",
    "low_pass", "posterior_mean_variance", "predict_x0", "prior_kl", "q_sample", "renoise", "repaint_levels",
    "replace_known", "replace_low_pass", "restore", "sample_loop", "upsample", "vlb_term", "vlb_weight",
]
