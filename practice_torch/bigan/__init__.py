"""BiGAN / ALI in PyTorch: the twin of ``theory_jax/bigan.py`` (the two joint laws of (x, z) pairs, a joint
discriminator, the losses of both sides).

Same function names and arguments as the derivation module, so ``shared_specs/bigan.py`` calls both with the same
NumPy inputs. ``python -m theory_jax bigan`` proves what they compute.

* ``functions``: the joints, ``pair_logits``, ``bigan_losses``; same names as the JAX twin.
* ``networks``: the players (``FeatureTrunk``, ``Encoder``, ``JointDiscriminator``, whose flax twin is in
  ``theory_jax/bigan.py``), ``BiGAN`` (weights only), the players' losses ``player_losses``.
* ``training``: the training adapter (``python -m practice_torch train bigan``), not imported here.
"""

from practice_torch.bigan.functions import bigan_losses, encoder_joint, generator_joint, pair_logits
from practice_torch.bigan.networks import FeatureTrunk, JointDiscriminator

__all__ = ["FeatureTrunk", "JointDiscriminator", "bigan_losses", "encoder_joint", "generator_joint", "pair_logits"]
