"""Latent diffusion in PyTorch: the twin of ``theory_jax/latent_diffusion.py``.

* ``functions``: latent scaling, the effective schedule and SNR, the prior term, label dropout, the latent epsilon
  loss and the closed-form DDPM bound of a linear-Gaussian chain; same names and arguments as the JAX twin.
* ``training``: the frozen VAE + scaled latents + class-conditional MLP DDPM, and the training adapter
  (``python -m practice_torch train latent_diffusion``), not imported here.
"""

from practice_torch.latent_diffusion.functions import (effective_alpha_bar, latent_ddpm_bound, latent_eps_loss,
                                                       latent_scale, latent_snr, noisy_latents, prior_kl, scale_latents,
                                                       unscale_latents)

__all__ = [
    "effective_alpha_bar", "latent_ddpm_bound", "latent_eps_loss", "latent_scale", "latent_snr", "noisy_latents",
    "prior_kl", "scale_latents", "unscale_latents",
]
