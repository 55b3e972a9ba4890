"""Exercises of StyleGAN2: the modulated and demodulated convolution, and the path-length penalty."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory_jax.exercises import Exercise, Mistake
from theory_jax.stylegan import _conv2d, _demodulate, modulate


def _grouped(x, kernels):
    b, i, h, w = x.shape
    _, o, _, k, _ = kernels.shape
    return _conv2d(x.reshape(1, b * i, h, w), kernels.reshape(b * o, i, k, k), k // 2, groups=b).reshape(b, o, h, w)


def _over_outputs(weight, eps=1e-8):
    return weight * jax.lax.rsqrt(jnp.sum(weight**2, axis=(1, 3, 4), keepdims=True) + eps)


def _without_square_root(weight, eps=1e-8):
    return weight / (jnp.sum(weight**2, axis=(2, 3, 4), keepdims=True) + eps)


def _over_the_taps_only(weight, eps=1e-8):
    return weight * jax.lax.rsqrt(jnp.sum(weight**2, axis=(3, 4), keepdims=True) + eps)


def _always_demodulated(x, weight, styles, demodulate=True, eps=1e-8):
    return _grouped(x, _demodulate(modulate(weight, styles), eps))


def _demodulated_then_modulated(x, weight, styles, demodulate=True, eps=1e-8):
    kernels = _demodulate(weight[None], eps) if demodulate else weight[None]
    return _grouped(x, kernels * styles[:, None, :, None, None])


def _one_kernel_for_the_batch(x, weight, styles, demodulate=True, eps=1e-8):
    kernels = modulate(weight, jnp.broadcast_to(jnp.mean(styles, axis=0), styles.shape))
    return _grouped(x, _demodulate(kernels, eps) if demodulate else kernels)


def _mean_not_updated(lengths, pl_mean, decay=0.01):
    return jnp.mean((lengths - pl_mean) ** 2), pl_mean


def _decay_on_the_wrong_side(lengths, pl_mean, decay=0.01):
    new = jax.lax.stop_gradient(decay * pl_mean + (1 - decay) * jnp.mean(lengths))
    return jnp.mean((lengths - new) ** 2), new


def _squared_lengths(lengths, pl_mean, decay=0.01):
    new = jax.lax.stop_gradient(pl_mean + decay * (jnp.mean(lengths) - pl_mean))
    return jnp.mean((lengths**2 - new) ** 2), new


EXERCISES = (
    Exercise(
        "demodulate",
        "StyleGAN2's demodulation: each output channel of each example's kernel scaled to unit norm (eq. 3)",
        ("Unit-variance inputs give output channel j the variance sum over its inputs and taps of the squared "
         "weights (eq. 2): divide by its square root.",
         "weight is (B, O, I, k, k): sum the squares over the axes I, k, k (2, 3, 4), keep the dimensions, add eps.",
         "return weight * rsqrt(sum(weight^2, axis=(2, 3, 4), keepdims=True) + eps)."),
        (Mistake("you normalise over the output channels: eq. 3 normalises each output channel over its inputs and "
                 "taps (axes 2, 3, 4 of (B, O, I, k, k))", _over_outputs),
         Mistake("you divide by the sum of squares: eq. 3 divides by its square root, the channel's standard "
                 "deviation", _without_square_root),
         Mistake("you sum over the kernel's taps only: the output's variance sums over the input channels too",
                 _over_the_taps_only))),
    Exercise(
        "modulated_conv2d",
        "StyleGAN2's modulated convolution as one grouped convolution, a kernel per example (eqs. 1-3, sec. 2.2)",
        ("Each example gets its own kernel: its styles scale the kernel's input channels (eq. 1), then, when asked, "
         "demodulation (eq. 3).",
         "modulate(weight, styles) is (B, O, I, k, k); fold the batch into the channels and convolve once with "
         "groups = B.",
         "x as (1, B I, H, W), the kernels as (B O, I, k, k), _conv2d(..., k // 2, groups=B), then (B, O, H, W)."),
        (Mistake("you demodulate even when demodulate is False: the ToRGB layers modulate without it",
                 _always_demodulated),
         Mistake("you demodulate the kernel before modulating it: the styles must come first (eq. 1), so that "
                 "demodulation removes their scale", _demodulated_then_modulated),
         Mistake("every example gets the same kernel: each example's own styles make its own kernel",
                 _one_kernel_for_the_batch)),
        withhold=("modulated_conv2d_per_example",), gives=("_demodulate",)),
    Exercise(
        "path_length_penalty",
        "StyleGAN2's path-length penalty with its running mean (Karras et al. 2020, eq. 4)",
        ("The target length a is a running mean of the lengths: move it toward this batch's mean first, then "
         "penalise each length's distance from it.",
         "a = pl_mean + decay (mean(lengths) - pl_mean), held constant (stop_gradient); the penalty is the mean of "
         "(lengths - a)^2; return both.",
         "new = stop_gradient(pl_mean + decay * (mean(lengths) - pl_mean)); return mean((lengths - new)^2), new."),
        (Mistake("your running mean is never updated: move a toward this batch's mean before the penalty and "
                 "return the new one", _mean_not_updated),
         Mistake("your running mean keeps decay of the old mean and 1 - decay of the batch's: it should move only "
                 "decay of the way, a + decay (mean - a)", _decay_on_the_wrong_side),
         Mistake("you penalise the squared lengths: eq. 4 penalises (||J^T y|| - a)^2, the lengths themselves",
                 _squared_lengths))),
)
