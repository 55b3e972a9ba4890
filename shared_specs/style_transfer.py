"""Spec cases for ``style_transfer``: the Gram matrix, the style and content losses and CycleGAN's cycle and
identity losses, in float64.

Each function runs in ``theory_jax.style_transfer`` and ``practice_torch.style_transfer`` on the same NumPy inputs,
gradients included (the cycle loss also with half its residuals exactly 0, where |x|'s slope is a convention).
Third witnesses: NumPy's einsum for the Gram matrix, and Gatys et al.'s eq. 4 (unnormalised Grams) rescaled by
4 / C^2 for the style loss. One float32 module case: CycleGAN's ``Translator`` (strided conv,
residual blocks with instance norm, torch's transposed conv padding), the same NumPy weights in both backends through
``shared_specs.interop``, gradients in the image and every weight.
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, C, H, W = 2, 3, 4, 5
TRANSLATOR = {"shape": (1, 8, 8), "width": 4, "blocks": 2}


def ref_gram_matrix(features):
    flat = features.reshape(features.shape[0], features.shape[1], -1)
    return np.einsum("bik,bjk->bij", flat, flat) / (flat.shape[1] * flat.shape[2])


def ref_style_loss(features, style_features):
    """Gatys et al.'s E_l = sum (F F^T - S S^T)^2 / (4 C^2 N^2) per example, averaged, times 4 / C^2."""
    f, s = (a.reshape(B, C, -1) for a in (features, style_features))
    gatys = np.sum((np.einsum("bik,bjk->bij", f, f) - np.einsum("bik,bjk->bij", s, s)) ** 2, axis=(1, 2)) \
        / (4 * C**2 * (H * W) ** 2)
    return np.mean(gatys) * 4 / C**2


def _two_domains(rng):
    return {"x": gaussian(rng, B, C, H, W), "y": gaussian(rng, B + 1, C, H, W)}


def _cycled_with_ties(rng):
    """Half of the cycled values exactly equal to the originals: |0|'s slope is torch's sign(0) = 0 in both."""
    d = _two_domains(rng)
    keep = [rng.uniform(size=v.shape) < 0.5 for v in (d["x"], d["y"])]
    return {**d, "x_cycled": d["x"] + 0.2 * gaussian(rng, B, C, H, W) * keep[0],
            "y_cycled": d["y"] + 0.2 * gaussian(rng, B + 1, C, H, W) * keep[1]}


def ref_cycle_loss(x, x_cycled, y, y_cycled):
    return np.abs(x_cycled - x).mean() + np.abs(y_cycled - y).mean()


CASES = (
    FunctionCase("style_transfer/gram_matrix", "gram_matrix", lambda r: {"features": gaussian(r, B, C, H, W)},
                 grad_wrt=("features",), reference=ref_gram_matrix),
    FunctionCase("style_transfer/style_loss", "style_loss",
                 lambda r: {"features": gaussian(r, B, C, H, W), "style_features": 1.5 * gaussian(r, B, C, H, W) + 0.3},
                 grad_wrt=("features", "style_features"), reference=ref_style_loss),
    FunctionCase("style_transfer/content_loss", "content_loss",
                 lambda r: {"features": gaussian(r, B, C, H, W), "content_features": gaussian(r, B, C, H, W)},
                 grad_wrt=("features", "content_features"),
                 reference=lambda features, content_features: np.mean((features - content_features) ** 2)),
    FunctionCase("style_transfer/cycle_loss", "cycle_loss",
                 lambda r: {**(d := _two_domains(r)), "x_cycled": d["x"] + 0.2 * gaussian(r, B, C, H, W),
                            "y_cycled": d["y"] + 0.2 * gaussian(r, B + 1, C, H, W)},
                 grad_wrt=("x", "x_cycled", "y", "y_cycled"), reference=ref_cycle_loss),
    FunctionCase("style_transfer/cycle_loss/ties", "cycle_loss", _cycled_with_ties,
                 grad_wrt=("x", "x_cycled", "y", "y_cycled"), reference=ref_cycle_loss),
    FunctionCase("style_transfer/identity_loss", "identity_loss",
                 lambda r: {**(d := _two_domains(r)), "f_of_x": d["x"] + 0.3 * gaussian(r, B, C, H, W),
                            "g_of_y": d["y"] + 0.3 * gaussian(r, B + 1, C, H, W)},
                 grad_wrt=("x", "f_of_x", "y", "g_of_y"),
                 reference=lambda x, f_of_x, y, g_of_y: np.abs(g_of_y - y).mean() + np.abs(f_of_x - x).mean()),
    ModuleCase("style_transfer/translator", "Translator", TRANSLATOR,
               lambda r: {"x": uniform(r, 2, 1, 8, 8, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",),
               image_outputs=("<root>",)),
)
