"""The text tower of text-to-image diffusion: characters -> token states the U-Net cross-attends to.

``TextEncoder`` is CLIP's text transformer in miniature (Radford et al. 2021, section 2.4): a token ``embedding``
and the project's causal trunk (``practice_torch.nets.Transformer``: learned positions, pre-norm blocks, a final
LayerNorm). Causal attention means the state of token i reads the start token and the characters up to i only, so
the states of a caption's real tokens never depend on the padding after it; the U-Net's cross-attention masks the
padded states out. The twin is ``theory_jax.text_to_image.TextEncoder`` (same attribute names).
"""

from __future__ import annotations

from torch import nn

from practice_torch.nets.transformer import Transformer, TransformerConfig


class TextEncoder(nn.Module):
    """Token ids (B, S) int64 -> token states (B, S, dim). ``vocab`` ids (pad, start, the characters), ``layers``
    causal blocks of ``heads`` heads, positions up to ``max_len``."""

    def __init__(self, vocab: int, dim: int = 64, heads: int = 4, layers: int = 2, max_len: int = 48):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.trunk = Transformer(TransformerConfig(dim=dim, heads=heads, layers=layers, max_len=max_len, causal=True))

    def forward(self, ids):
        return self.trunk(self.embedding(ids))
