"""Shared networks (the diffusion U-Net, the transformer trunk) in flax; the twin of ``practice_torch/nets``."""

from theory_jax.nets.transformer import MLP, Block, MultiHeadAttention, Transformer
from theory_jax.nets.unet import (AttentionBlock, Downsample, ResBlock, TimeEmbedding, UNet, Upsample,
                                  timestep_embedding, timestep_frequencies)

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "TimeEmbedding", "UNet", "Upsample", "timestep_embedding",
           "timestep_frequencies", "MLP", "Block", "MultiHeadAttention", "Transformer"]
