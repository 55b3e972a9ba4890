"""GAN inversion in PyTorch: the twin of ``theory_jax/gan_inversion.py`` (a small generator, the inversion
objective and its gradient step, the latent-regression objective of an encoder).

Same function names and arguments as the derivation module, so ``shared_specs/gan_inversion.py`` calls both with
the same NumPy inputs. ``python -m theory_jax gan_inversion`` proves what they compute.
"""

from practice_torch.gan_inversion.functions import (
    inversion_loss,
    inversion_step,
    latent_regression_loss,
    mlp_generator,
)

__all__ = ["inversion_loss", "inversion_step", "latent_regression_loss", "mlp_generator"]
