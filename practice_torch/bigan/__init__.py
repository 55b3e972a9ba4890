"""BiGAN / ALI in PyTorch: the twin of ``theory_jax/bigan.py`` (the two joint laws of (x, z) pairs, a joint
discriminator, the losses of both sides).

Same function names and arguments as the derivation module, so ``shared_specs/bigan.py`` calls both with the same
NumPy inputs. ``python -m theory_jax bigan`` proves what they compute.
"""

from practice_torch.bigan.functions import bigan_losses, encoder_joint, generator_joint, pair_logits

__all__ = ["bigan_losses", "encoder_joint", "generator_joint", "pair_logits"]
