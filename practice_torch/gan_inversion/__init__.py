"""GAN inversion in PyTorch: the twin of ``theory_jax/gan_inversion.py`` (a small generator, the inversion
objective and its gradient step, the latent-regression objective of an encoder).

* ``functions``: those functions, same names and arguments as the JAX twin.
* ``networks``: ``Encoder`` (twin: the flax ``Encoder``), ``Inverter`` (a frozen trained generator beside the encoder),
  the encoder's loss and the inverters (optimisation of eq. 1 by Adam; the hybrid starts it at E(x)).
* ``training``: the training adapter (``python -m practice_torch train gan_inversion``), not imported here.

Same function names and arguments as the derivation module, so ``shared_specs/gan_inversion.py`` calls both with
the same NumPy inputs. ``python -m theory_jax gan_inversion`` proves what they compute.
"""

from practice_torch.gan_inversion.functions import (
    inversion_loss,
    inversion_step,
    latent_regression_loss,
    mlp_generator,
)
from practice_torch.gan_inversion.networks import Encoder, Inverter

__all__ = ["Encoder", "Inverter", "inversion_loss", "inversion_step", "latent_regression_loss", "mlp_generator"]
