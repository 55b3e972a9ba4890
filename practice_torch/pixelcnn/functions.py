"""PixelCNN's pure functions in PyTorch, the twins of ``theory_jax/pixelcnn.py`` (same names, same arguments).

Masks (van den Oord et al. 2016, sec. 3.5; the gated stacks of "Conditional Image Generation with PixelCNN Decoders",
sec. 2), the masked convolution (W . M) * x + b, the gated activation (eq. 2), and the chain-rule likelihood
log p(x) = sum_i log p(x_i | x_<i) (eq. 1) with one inverse-CDF sampling step. Images NCHW, kernels OIHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# 1. Masks ----------------------------------------------------------------------------------------------------------
def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The (k, k) PixelCNN mask: 1 on the rows above the centre and left of it in the centre row; the centre itself
    only for type 'B'. k odd. float64."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    k, c = kernel_size, kernel_size // 2
    rows, cols = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    keep = (rows < c) | ((rows == c) & ((cols < c) if mask_type == "A" else (cols <= c)))
    return keep.to(torch.float64)


def stack_mask(kernel_size: int, stack: str, mask_type: str) -> torch.Tensor:
    """The gated PixelCNN's masks. 'vertical': (k, k), every row above the centre (type 'B': and the centre row);
    'horizontal': (1, k), the taps left of the centre (type 'B': and the centre). float64."""
    if stack not in ("vertical", "horizontal") or mask_type not in ("A", "B"):
        raise ValueError(f"unknown stack mask {stack!r}/{mask_type!r}: stack vertical|horizontal, type A|B")
    k, c = kernel_size, kernel_size // 2
    if stack == "vertical":
        rows = torch.arange(k)[:, None].expand(k, k)
        keep = rows < c if mask_type == "A" else rows <= c
    else:
        cols = torch.arange(k)[None, :]
        keep = cols < c if mask_type == "A" else cols <= c
    return keep.to(torch.float64)


# 2. Masked convolution and the gate --------------------------------------------------------------------------------
def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-correlation with the masked kernel (W . M) * x + b, zero padding (kh // 2, kw // 2).
    x: (B, I, H, W), weight: (O, I, kh, kw), bias: (O,), mask: (kh, kw) -> (B, O, H, W)."""
    kh, kw = weight.shape[-2:]
    return F.conv2d(x, weight * mask.to(weight.dtype), bias, padding=(kh // 2, kw // 2))


def gated_activation(a: torch.Tensor) -> torch.Tensor:
    """Eq. 2: tanh(a_f) . sigmoid(a_g), the channels split in two halves. a: (B, 2C, H, W) -> (B, C, H, W)."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


# 3. The chain-rule likelihood and one sampling step ----------------------------------------------------------------
def categorical_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = sum_i log softmax(l_i)[x_i] (eq. 1) per image. logits: (B, K, H, W), x: (B, H, W) int -> (B,)."""
    logp = torch.log_softmax(logits, dim=1)
    return logp.gather(1, x[:, None].long()).sum(dim=(1, 2, 3))


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = sum_i [x_i l_i - softplus(l_i)] per image (binarised; = the 2-way softmax of (0, l)).
    logits: (B, H, W), x: (B, H, W) in {0, 1} -> (B,)."""
    return (x.to(logits.dtype) * logits - F.softplus(logits)).sum(dim=(1, 2))


def sample_pixel(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """An inverse-CDF draw of one pixel per image: min{k : u < cdf_k}, the uniform u passed in.
    logits: (B, K), u: (B,) -> (B,) int64."""
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    return torch.clamp((cdf <= u[:, None] * cdf[:, -1:]).sum(-1), max=logits.shape[-1] - 1)
