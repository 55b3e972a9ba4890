"""Text guidance in PyTorch: the twin of ``theory_jax/text_to_image.py`` (cross-attention to a caption's tokens with
a padding mask, classifier-free guidance on the empty caption, CLIP's symmetric InfoNCE). The U-Net block that puts
the cross-attention into a denoiser is ``practice_torch.nets.CrossAttentionBlock``.

Same function names and arguments as the derivation module, so ``shared_specs/text_to_image.py`` calls both with the
same NumPy inputs. ``python -m theory_jax text_to_image`` proves what they compute.
"""

from practice_torch.text_to_image.functions import contrastive_loss, cross_attention, guided_eps, info_nce

__all__ = ["contrastive_loss", "cross_attention", "guided_eps", "info_nce"]
