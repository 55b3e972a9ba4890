"""Networks shared by several topics (the diffusion U-Net, the MLP denoiser of vectors, the transformer trunk); the
twin of ``theory_jax/nets``. Nothing here imports a topic."""

from practice_torch.nets.denoisers import MLPDenoiser
from practice_torch.nets.transformer import MLP, Block, KVCache, MultiHeadAttention, Transformer, TransformerConfig
from practice_torch.nets.unet import (AttentionBlock, CrossAttentionBlock, Downsample, ResBlock, TimeEmbedding, UNet,
                                      UNetConfig, Upsample, timestep_embedding, timestep_frequencies)

__all__ = ["MLPDenoiser", "AttentionBlock", "CrossAttentionBlock", "Downsample", "ResBlock", "TimeEmbedding", "UNet",
           "UNetConfig", "Upsample", "timestep_embedding", "timestep_frequencies",
           "MLP", "Block", "KVCache", "MultiHeadAttention", "Transformer", "TransformerConfig"]
