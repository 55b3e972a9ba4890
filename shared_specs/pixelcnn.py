"""Spec cases for ``pixelcnn``: the masks, the masked convolution, the gate, the chain-rule likelihood, bits/dim and
one sampling step, in float64.

Each function runs in ``theory_jax.pixelcnn`` and ``practice_torch.pixelcnn`` on the same NumPy inputs (the sampling
uniforms drawn here, docs/ARCHITECTURE.md rule 1), with gradients wherever the function is differentiable. Third
witnesses: the masks by looping over the taps and comparing their raster index with the centre's; the masked
convolution by an explicit sum over the taps of a zero-padded image (NumPy); the likelihoods by SciPy's
``log_softmax`` / ``log_expit``; the sampling step by ``np.searchsorted`` on the CDF.

Two float32 module cases under the weight converter: the class-conditional torch ``PlainPixelCNN`` and
``GatedPixelCNN`` against their flax twins (NHWC, HWIO kernels), gradients w.r.t. every weight and the image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, H, W = 2, 5, 6


# Independent references ------------------------------------------------------------------------------------------
def ref_causal_mask(kernel_size, mask_type):
    """Tap (r, s) is kept iff its raster index r k + s precedes the centre's (or is it, for type B)."""
    centre = kernel_size // 2 * kernel_size + kernel_size // 2
    return np.array([[float(r * kernel_size + s < centre or (mask_type == "B" and r * kernel_size + s == centre))
                      for s in range(kernel_size)] for r in range(kernel_size)])


def ref_stack_mask(kernel_size, stack, mask_type):
    c = kernel_size // 2
    if stack == "vertical":  # whole rows: above the centre row (A), or up to and including it (B)
        return np.array([[float(r < c or (mask_type == "B" and r == c)) for _ in range(kernel_size)]
                         for r in range(kernel_size)])
    return np.array([[float(s < c or (mask_type == "B" and s == c)) for s in range(kernel_size)]])


def ref_masked_conv2d(x, weight, bias, mask):
    kh, kw = weight.shape[-2:]
    padded = np.pad(x, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    out = np.zeros((x.shape[0], weight.shape[0], x.shape[2], x.shape[3])) + bias[None, :, None, None]
    for r in range(kh):
        for s in range(kw):
            patch = padded[:, :, r: r + x.shape[2], s: s + x.shape[3]]  # (B, I, H, W)
            out += np.einsum("oi,bihw->bohw", weight[:, :, r, s] * mask[r, s], patch)
    return out


def ref_gated_activation(a):
    f, g = np.split(a, 2, axis=1)
    return np.tanh(f) * special.expit(g)


def ref_categorical_log_likelihood(logits, x):
    logp = special.log_softmax(logits, axis=1)
    return np.take_along_axis(logp, x[:, None], axis=1).sum(axis=(1, 2, 3))


def ref_bernoulli_log_likelihood(logits, x):
    return np.sum(np.where(x == 1, special.log_expit(logits), special.log_expit(-logits)), axis=(1, 2))


def ref_sample_pixel(logits, u):
    probs = special.softmax(logits, axis=-1)
    return np.array([min(np.searchsorted(np.cumsum(p), ui * p.sum(), side="right"), len(p) - 1)
                     for p, ui in zip(probs, u)])


# Input makers ----------------------------------------------------------------------------------------------------
def _conv(mask):
    def make(rng):
        k = mask.shape
        return {"x": gaussian(rng, B, 3, H, W), "weight": gaussian(rng, 4, 3, *k, scale=0.5),
                "bias": gaussian(rng, 4, scale=0.1), "mask": mask}
    return make


CASES = (
    FunctionCase("pixelcnn/causal_mask_A", "causal_mask", lambda r: {}, static={"kernel_size": 5, "mask_type": "A"},
                 reference=ref_causal_mask),
    FunctionCase("pixelcnn/causal_mask_B", "causal_mask", lambda r: {}, static={"kernel_size": 3, "mask_type": "B"},
                 reference=ref_causal_mask),
    FunctionCase("pixelcnn/stack_mask_vertical_A", "stack_mask", lambda r: {},
                 static={"kernel_size": 5, "stack": "vertical", "mask_type": "A"}, reference=ref_stack_mask),
    FunctionCase("pixelcnn/stack_mask_vertical_B", "stack_mask", lambda r: {},
                 static={"kernel_size": 3, "stack": "vertical", "mask_type": "B"}, reference=ref_stack_mask),
    FunctionCase("pixelcnn/stack_mask_horizontal_A", "stack_mask", lambda r: {},
                 static={"kernel_size": 5, "stack": "horizontal", "mask_type": "A"}, reference=ref_stack_mask),
    FunctionCase("pixelcnn/stack_mask_horizontal_B", "stack_mask", lambda r: {},
                 static={"kernel_size": 3, "stack": "horizontal", "mask_type": "B"}, reference=ref_stack_mask),
    FunctionCase("pixelcnn/masked_conv2d_A", "masked_conv2d", _conv(ref_causal_mask(3, "A")),
                 grad_wrt=("x", "weight", "bias"), reference=ref_masked_conv2d),
    FunctionCase("pixelcnn/masked_conv2d_B5", "masked_conv2d", _conv(ref_causal_mask(5, "B")),
                 grad_wrt=("x", "weight", "bias"), reference=ref_masked_conv2d),
    FunctionCase("pixelcnn/masked_conv2d_horizontal", "masked_conv2d", _conv(ref_stack_mask(3, "horizontal", "A")),
                 grad_wrt=("x", "weight", "bias"), reference=ref_masked_conv2d),
    FunctionCase("pixelcnn/gated_activation", "gated_activation", lambda r: {"a": gaussian(r, B, 6, H, W, scale=2.0)},
                 grad_wrt=("a",), reference=ref_gated_activation),
    FunctionCase("pixelcnn/categorical_log_likelihood", "categorical_log_likelihood",
                 lambda r: {"logits": gaussian(r, B, 7, H, W, scale=2.0), "x": r.integers(0, 7, (B, H, W))},
                 grad_wrt=("logits",), reference=ref_categorical_log_likelihood),
    FunctionCase("pixelcnn/bernoulli_log_likelihood", "bernoulli_log_likelihood",
                 lambda r: {"logits": gaussian(r, B, H, W, scale=3.0),
                            "x": r.integers(0, 2, (B, H, W)).astype("float64")},
                 grad_wrt=("logits",), reference=ref_bernoulli_log_likelihood),
    FunctionCase("pixelcnn/bits_per_dim", "bits_per_dim", lambda r: {"nll": uniform(r, 4, low=100.0, high=3000.0)},
                 static={"num_dims": 784}, grad_wrt=("nll",),
                 reference=lambda nll, num_dims: nll / (num_dims * math.log(2))),
    FunctionCase("pixelcnn/sample_pixel", "sample_pixel",
                 lambda r: {"logits": gaussian(r, 8, 256, scale=3.0), "u": uniform(r, 8)}, reference=ref_sample_pixel),
    # the networks, class-conditional (float32 modules: Conv2d OIHW -> HWIO, NCHW -> NHWC) ---------------------------
    ModuleCase("pixelcnn/PlainPixelCNN", "PlainPixelCNN", {"channels": 4, "layers": 3, "kernel": 3, "out_channels": 5,
                                                           "num_classes": 3, "first_kernel": 5},
               lambda r: {"x": gaussian(r, B, 1, H, W, dtype="float32"), "y": np.array([0, 2])}, grad_wrt=("x",),
               image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("pixelcnn/GatedPixelCNN", "GatedPixelCNN", {"channels": 4, "layers": 3, "kernel": 3, "out_channels": 5,
                                                           "num_classes": 3, "first_kernel": 5},
               lambda r: {"x": gaussian(r, B, 1, H, W, dtype="float32"), "y": np.array([1, 2])}, grad_wrt=("x",),
               image_inputs=("x",), image_outputs=("<root>",)),
)
