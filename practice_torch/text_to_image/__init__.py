"""Text guidance in PyTorch: the twin of ``theory_jax/text_to_image.py`` (cross-attention to a caption's tokens with
a padding mask, classifier-free guidance on the empty caption, CLIP's symmetric InfoNCE). The U-Net block that puts
the cross-attention into a denoiser is ``practice_torch.nets.CrossAttentionBlock`` (in every attention level of the
U-Net when its ``context_dim`` is set); ``networks.TextEncoder`` turns a caption's characters into the token states
it reads. The training adapter (``training.py``) is loaded only when asked for.

Same function names and arguments as the derivation module, so ``shared_specs/text_to_image.py`` calls both with the
same NumPy inputs. ``python -m theory_jax text_to_image`` proves what they compute.
"""

from practice_torch.text_to_image.functions import contrastive_loss, cross_attention, guided_eps, info_nce
from practice_torch.text_to_image.networks import TextEncoder

__all__ = ["TextEncoder", "contrastive_loss", "cross_attention", "guided_eps", "info_nce"]
