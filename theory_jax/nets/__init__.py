"""Networks shared by several topics (the diffusion models' U-Net) in flax; the twin of ``practice_torch/nets``."""

from theory_jax.nets.unet import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeEmbedding,
    UNet,
    Upsample,
    timestep_embedding,
    timestep_frequencies,
)

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "TimeEmbedding", "UNet", "Upsample", "timestep_embedding",
           "timestep_frequencies"]
