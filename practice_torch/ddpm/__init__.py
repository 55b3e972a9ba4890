"""DDPM (Ho, Jain & Abbeel 2020) in PyTorch: the twin of ``theory_jax/ddpm.py``.

* ``schedule``: linear and cosine betas, alpha_bars, q_sample, predict_x0, the posterior q(x_{t-1}|x_t, x_0),
  ``ddpm_step``; the ``Schedule`` object shared by training and every sampler (``respace``).
* ``sampling``: ``sample_loop``, the reverse chain for the 'ddpm' and 'ddim' samplers.
* ``likelihood``: the terms of the variational bound (L_T, L_{t-1}, the discretised decoder L_0) and L_simple.
* ``denoisers``: ``MLPDenoiser`` for 2-D data; images use ``practice_torch.nets.UNet`` (re-exported here).
* ``training``: the model interface of ``practice_torch.models`` (``python -m practice_torch train ddpm``).
"""

from practice_torch.ddpm.denoisers import MLPDenoiser
from practice_torch.ddpm.likelihood import (
    decoder_nll,
    discretized_gaussian_log_likelihood,
    eps_loss,
    prior_kl,
    vlb_term,
    vlb_weight,
)
from practice_torch.ddpm.sampling import SAMPLERS, clipped_eps, sample_loop
from practice_torch.ddpm.schedule import (
    Schedule,
    alpha_bars,
    cosine_betas,
    ddpm_step,
    linear_betas,
    posterior_mean_variance,
    predict_x0,
    q_sample,
)
from practice_torch.ddpm.training import (
    Config,
    Diffusion,
    build,
    default_config,
    draw_noise,
    eps_function,
    evaluate,
    generate,
    loss,
    sample,
)
from practice_torch.nets import UNet, UNetConfig

__all__ = [
    "SAMPLERS", "Config", "Diffusion", "MLPDenoiser", "Schedule", "UNet", "UNetConfig", "alpha_bars", "build",
    "clipped_eps", "cosine_betas", "ddpm_step", "decoder_nll", "default_config", "discretized_gaussian_log_likelihood",
    "draw_noise", "eps_function", "eps_loss", "evaluate", "generate", "linear_betas", "loss", "posterior_mean_variance",
    "predict_x0", "prior_kl", "q_sample", "sample", "sample_loop", "vlb_term", "vlb_weight",
]
