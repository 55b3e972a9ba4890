"""GANs in PyTorch: the twin of ``theory_jax/gan.py`` (the losses on the discriminator's logits).

Same function names and arguments as the derivation module, so ``shared_specs/gan.py`` calls both with the same
NumPy inputs. ``python -m theory_jax gan`` proves what they compute: the optimal discriminator, the minimax value
2 JS - log 4, and why generators train on the non-saturating loss. The f-GAN of ``practice_torch/f_divergence``
trains the Jensen-Shannon game (``--set model.divergence=js``) with these losses' generalisation.
"""

from practice_torch.gan.functions import (
    adam_unroll,
    adam_unrolled_generator_loss,
    discriminator_loss,
    fade_in,
    gauss_log_pdf,
    generator_loss_nonsaturating,
    generator_loss_saturating,
    growth,
    js_discrete,
    maxout,
    minibatch_std,
    normalize,
    optimal_logit,
    pack,
    pixel_norm,
    power_iteration,
    softplus,
    spectral_normalize,
    unroll,
    unrolled_generator_loss,
    value_discrete,
)
from practice_torch.gan.networks import MaxoutDiscriminator, PacGANGenerator
from practice_torch.gan.progressive import ProgressiveDiscriminator, ProgressiveGenerator

__all__ = ["MaxoutDiscriminator", "PacGANGenerator", "ProgressiveDiscriminator", "ProgressiveGenerator", "adam_unroll",
           "adam_unrolled_generator_loss", "discriminator_loss", "fade_in", "gauss_log_pdf", "generator_loss_nonsaturating",
           "generator_loss_saturating", "growth", "js_discrete", "maxout", "minibatch_std", "normalize", "optimal_logit",
           "pack", "pixel_norm", "power_iteration", "softplus", "spectral_normalize", "unroll", "unrolled_generator_loss",
           "value_discrete"]
