"""Style transfer and domain translation in PyTorch: the twin of ``theory_jax/style_transfer.py`` (the Gram matrix,
the style and content losses, CycleGAN's cycle-consistency and identity losses).

Same function names and arguments as the derivation module, so ``shared_specs/style_transfer.py`` calls both with
the same NumPy inputs. ``python -m theory_jax style_transfer`` proves what they compute.

The modules: ``functions`` (the losses), ``transfer`` (Gatys et al.'s style transfer by optimising the pixels, on
the project's fashion_mnist feature network; ``python -m practice_torch.style_transfer``), ``networks`` (CycleGAN's
translators and discriminators) and ``training`` (the CycleGAN's training adapter, ``python -m practice_torch train
style_transfer``; never imported here).
"""

from practice_torch.style_transfer.functions import content_loss, cycle_loss, gram_matrix, identity_loss, style_loss
from practice_torch.style_transfer.networks import ResidualBlock, Translator

__all__ = ["ResidualBlock", "Translator", "content_loss", "cycle_loss", "gram_matrix", "identity_loss", "style_loss"]
