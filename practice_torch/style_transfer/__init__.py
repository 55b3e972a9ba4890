"""Style transfer and domain translation in PyTorch: the twin of ``theory_jax/style_transfer.py`` (the Gram matrix,
the style and content losses, CycleGAN's cycle-consistency and identity losses).

Same function names and arguments as the derivation module, so ``shared_specs/style_transfer.py`` calls both with
the same NumPy inputs. ``python -m theory_jax style_transfer`` proves what they compute.
"""

from practice_torch.style_transfer.functions import content_loss, cycle_loss, gram_matrix, identity_loss, style_loss

__all__ = ["content_loss", "cycle_loss", "gram_matrix", "identity_loss", "style_loss"]
