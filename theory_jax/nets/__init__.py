"""Shared networks (the diffusion U-Net, the MLP denoiser of vectors, the transformer trunk) in flax; the twin of
``practice_torch/nets``. Beside them, the conv layers of the flax twins in the forms XLA's CPU backend runs fast
(``conv``: the transposed convolution, group normalisation, a linear layer to a map)."""

from theory_jax.nets.conv import ConvTranspose, GroupNorm, UnflattenDense
from theory_jax.nets.denoisers import MLPDenoiser
from theory_jax.nets.transformer import MLP, Block, MultiHeadAttention, Transformer
from theory_jax.nets.unet import (AttentionBlock, CrossAttentionBlock, Downsample, ResBlock, TimeEmbedding, UNet, Upsample,
                                  timestep_embedding, timestep_frequencies)

__all__ = ["ConvTranspose", "GroupNorm", "UnflattenDense", "MLPDenoiser", "AttentionBlock", "CrossAttentionBlock",
           "Downsample", "ResBlock", "TimeEmbedding", "UNet", "Upsample", "timestep_embedding", "timestep_frequencies",
           "MLP", "Block", "MultiHeadAttention", "Transformer"]
