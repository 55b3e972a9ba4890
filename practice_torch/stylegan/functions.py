"""StyleGAN2's math (Karras et al. 2019, "A style-based generator architecture for GANs"; Karras et al. 2020,
"Analyzing and improving the image quality of StyleGAN"): the mapping network's input normalisation, the modulated
and demodulated convolution (eqs. 1-3), noise inputs, style mixing and truncation in W, the path-length penalty
(eq. 4), R1 and lazy regularisation (sec. 3.1), and the non-saturating logistic loss the reference trains with.

Twins of the functions in ``theory_jax/stylegan.py``, same names and arguments. Every array is NCHW (the exchange
layout) and every kernel OIHW in both backends.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from practice_torch.gan.functions import softplus


# 1. The mapping network's input and the style modulation -----------------------------------------------------------
def pixel_norm(z, eps: float = 1e-8):
    """z / sqrt(mean(z^2) + eps) over the features: each latent scaled to unit root mean square before the mapping
    network (Karras et al. 2019, app. C; the reference's ``normalize_2nd_moment``). z: (B, D) -> (B, D)."""
    return z * torch.rsqrt(torch.mean(z**2, dim=-1, keepdim=True) + eps)


def modulate(weight, styles):
    """w'_{ijk} = s_i w_{ijk} (StyleGAN2, eq. 1): each example's styles scale the kernel's input channels.
    weight: (O, I, k, k), styles: (B, I) -> (B, O, I, k, k)."""
    return weight[None] * styles[:, None, :, None, None]


def demodulate(weight, eps: float = 1e-8):
    """w''_{ijk} = w'_{ijk} / sqrt(sum_{i,k} w'_{ijk}^2 + eps) (StyleGAN2, eq. 3): each output channel of each
    example's kernel scaled to unit norm, so that unit-variance inputs give unit-variance outputs (eq. 2).
    weight: (B, O, I, k, k), eps: the epsilon under the square root -> (B, O, I, k, k)."""
    return weight * torch.rsqrt(torch.sum(weight**2, dim=(2, 3, 4), keepdim=True) + eps)


_demodulate = demodulate  # the function, under a name the flag ``demodulate`` of the convolutions does not shadow


def modulated_conv2d(x, weight, styles, demodulate: bool = True, eps: float = 1e-8):
    """The modulated (and demodulated) k x k convolution, stride 1, 'same' padding k // 2, computed as StyleGAN2's
    grouped convolution (sec. 2.2): the batch folded into the channels, x as (1, B I, H, W), the B kernels as
    (B O, I, k, k), groups = B. x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I), demodulate: whether to
    apply eq. 3 (the ToRGB layers do not), eps: eq. 3's epsilon -> (B, O, H, W)."""
    b, i, h, w = x.shape
    o, _, k, _ = weight.shape
    kernels = modulate(weight, styles)  # eq. 1
    if demodulate:
        kernels = _demodulate(kernels, eps)  # eq. 3
    out = F.conv2d(x.reshape(1, b * i, h, w), kernels.reshape(b * o, i, k, k), padding=k // 2, groups=b)
    return out.reshape(b, o, h, w)


def modulated_conv2d_per_example(x, weight, styles, demodulate: bool = True, eps: float = 1e-8):
    """``modulated_conv2d`` as the definition reads: for each example b an ordinary convolution of x_b with its own
    modulated (and demodulated) kernel; the reference the grouped form is checked against.
    x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I) -> (B, O, H, W)."""
    kernels = modulate(weight, styles)
    if demodulate:
        kernels = _demodulate(kernels, eps)
    pad = weight.shape[-1] // 2
    return torch.cat([F.conv2d(x[b:b + 1], kernels[b], padding=pad) for b in range(x.shape[0])])


# 2. The synthesis network's other operations ---------------------------------------------------------------------
def upsample2x(x):
    """Nearest-neighbour doubling of H and W. The paper upsamples with a [1, 3, 3, 1] FIR low-pass filter (Zhang
    2019, as in the reference's ``upfirdn2d``); it is left out here. x: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def add_noise(x, noise, strength):
    """x + strength * noise, one noise image per example broadcast over the channels, scaled by the layer's learned
    strength (Karras et al. 2019, sec. 3.2, the "B" inputs of Figure 1). x: (B, C, H, W), noise: (B, 1, H, W),
    strength: () -> (B, C, H, W)."""
    return x + strength * noise


def minibatch_stddev(x, group_size: int = 4, eps: float = 1e-8):
    """x with one feature map appended: the standard deviation of each feature and pixel over a group of examples,
    sqrt(Var_group + eps) (biased), averaged over the features and pixels (Karras et al. 2018, sec. 3; StyleGAN2's
    discriminator, the reference's ``MinibatchStdLayer`` with one feature). Groups of G = min(group_size, B)
    examples, example n in group n mod (B / G), as the reference reshapes (G, B / G, ...); where G does not divide
    B (the reference refuses such a batch), G is the largest divisor of B below it. ``gan.functions.minibatch_std``
    takes one statistic over the whole batch of flat features; this one groups images.
    x: (B, C, H, W) -> (B, C + 1, H, W)."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.reshape(g, b // g, c, h, w)
    std = torch.sqrt(torch.mean((y - y.mean(dim=0)) ** 2, dim=0) + eps)  # (B / G, C, H, W)
    stat = std.mean(dim=(1, 2, 3)).reshape(1, b // g, 1, 1, 1).expand(g, b // g, 1, h, w)
    return torch.cat([x, stat.reshape(b, 1, h, w)], dim=1)


# 3. Styles in W: mixing and truncation ----------------------------------------------------------------------------
def mixing_ws(w1, w2, cutoff, num_ws: int):
    """Style mixing regularisation (Karras et al. 2019, sec. 3.1): layer l takes w1 where l < cutoff and w2 from the
    cut-off on (cutoff = num_ws: no mixing). w1, w2: (B, D), cutoff: (B,) integers in [1, num_ws] -> (B, num_ws, D)."""
    layers = torch.arange(num_ws, device=w1.device)
    first = (layers[None, :] < cutoff[:, None])[..., None]  # (B, num_ws, 1)
    return torch.where(first, w1[:, None, :], w2[:, None, :])


def truncate(w, w_avg, psi):
    """The truncation trick in W, w' = w_avg + psi (w - w_avg) (Karras et al. 2019, app. B): a shrink toward the
    mean style, psi = 1 leaving w as it is. w: (..., D), w_avg: (D,) -> (..., D)."""
    return w_avg + psi * (w - w_avg)


def update_w_avg(w_avg, w, beta: float = 0.995):
    """The tracked mean style the truncation shrinks toward, w_avg <- mean_b(w) + beta (w_avg - mean_b(w)) (the
    reference's lerp, an exponential moving average of the batch means). w_avg: (D,), w: (B, D) -> (D,)."""
    mean = w.mean(dim=0)
    return mean + beta * (w_avg - mean)


# 4. The regularisers: path length (eq. 4), R1, lazy regularisation (sec. 3.1) ---------------------------------------
def path_lengths(grads):
    """||J_w^T y||_2 per example, averaged in square over the ws: sqrt(mean_l sum_d g_{l d}^2) (StyleGAN2, eq. 4;
    the reference's ``pl_lengths``). grads: (B, num_ws, D) = J_w^T y -> (B,)."""
    return torch.sqrt(torch.mean(torch.sum(grads**2, dim=2), dim=1))


def path_length_penalty(lengths, pl_mean, decay: float = 0.01):
    """(penalty, new_pl_mean): a = pl_mean + decay (mean(lengths) - pl_mean), the running mean of the lengths
    (constant to the gradient), and E (||J_w^T y|| - a)^2 (StyleGAN2, eq. 4).
    lengths: (B,), pl_mean: (), decay: the running mean's rate -> ((), ())."""
    new_pl_mean = (pl_mean + decay * (torch.mean(lengths) - pl_mean)).detach()
    return torch.mean((lengths - new_pl_mean) ** 2), new_pl_mean


def r1_penalty(grads):
    """R1 without its weight: E_x ||grad_x D(x)||^2 at the real images (Mescheder et al. 2018, eq. 9; the caller
    multiplies by gamma / 2 and, when lazy, by the interval). grads: (B, C, H, W) of the real logits' sum with
    respect to the real images -> ()."""
    return torch.mean(torch.sum(grads.reshape(grads.shape[0], -1) ** 2, dim=1))


def lazy_adam(lr: float, betas, interval: int):
    """(lr, betas) of a player regularised every ``interval`` minibatches (StyleGAN2, sec. 3.1; the reference's
    ``mb_ratio``): c = interval / (interval + 1), lr c and betas ** c, so that the regularised player's Adam keeps
    its step size and its moments' time constant per minibatch though it steps interval + 1 times in interval
    minibatches. interval 0 or 1 (no lazy regularisation): (lr, betas) as they are."""
    if interval <= 1:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(b**c for b in betas)


# 5. The non-saturating logistic loss -------------------------------------------------------------------------------
def logistic_d_loss(real_logits, fake_logits):
    """The discriminator's logistic loss, mean softplus(-D(x)) + mean softplus(D(G(z))) (Goodfellow et al. 2014,
    eq. 1 negated; StyleGAN2's ``loss_Dgen`` + ``loss_Dreal``). real_logits: (B,), fake_logits: (B',) -> ()."""
    return torch.mean(softplus(-real_logits)) + torch.mean(softplus(fake_logits))


def logistic_g_loss(fake_logits):
    """The generator's non-saturating loss, mean softplus(-D(G(z))) = -mean log sigmoid(D(G(z))) (Goodfellow et
    al. 2014, sec. 3). fake_logits: (B,) -> ()."""
    return torch.mean(softplus(-fake_logits))
