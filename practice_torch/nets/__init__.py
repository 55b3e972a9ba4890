"""Networks shared by several topics (the diffusion models' U-Net); the twin of ``theory_jax/nets``."""

from practice_torch.nets.unet import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeEmbedding,
    UNet,
    UNetConfig,
    Upsample,
    timestep_embedding,
    timestep_frequencies,
)

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "TimeEmbedding", "UNet", "UNetConfig", "Upsample",
           "timestep_embedding", "timestep_frequencies"]
