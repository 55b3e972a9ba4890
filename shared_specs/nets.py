"""Spec cases for the shared networks (``practice_torch.nets`` vs ``theory_jax.nets``): the DDPM U-Net and the MLP
denoiser of vectors.

``UNET_CASES`` (appended to ``shared_specs.ddpm.CASES``): the time embedding, one residual block with and
without a width change, the multi-head attention block, and the whole U-Net forward, unconditional and
class-conditional (a null label y = num_classes among the labels), at full precision under the weight
converter, each with gradients w.r.t. every weight and the inputs. They pin down GroupNorm epsilon,
explicit conv padding, nearest upsampling, the attention token order (NCHW vs NHWC), the skip
concatenation order and the [sin | cos] timestep embedding. Timesteps go up to 1000, where float32
sinusoids are most sensitive to a different frequency rounding. The MLP denoiser (ddpm, score and flow_matching on
2-D data): unconditional with real t, and class-conditional with a null label among the labels.
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import ModuleCase, gaussian

B, T = 3, 1000
# The sub-block cases use the shapes the small U-Net meets inside (so a run compiles each JAX op once):
# widths 8 and 16, embedding 32, 8x8 then 4x4, attention at level 1 with two heads. Two input and three output
# channels, so a channel-order slip at either end shows.
SMALL = {"in_channels": 2, "out_channels": 3, "channels": 8, "channel_mults": (1, 2), "num_res_blocks": 1,
         "attention_levels": (1,), "heads": 2, "groups": 4}
EMB = 4 * SMALL["channels"]


def _timesteps(r, n=B, integer=False):
    """Indices in [0, T) (int64, or float32 with one non-integer noise level among them)."""
    t = r.integers(0, T, size=n)
    if integer:
        return t.astype(np.int64)
    t = t.astype("float32")
    t[-1] = np.float32(r.uniform(0, T))
    return t


def _block_inputs(channels, size, scale=1.0):
    return lambda r: {"x": gaussian(r, B, channels, *size, dtype="float32", scale=scale),
                      "emb": gaussian(r, B, EMB, dtype="float32")}


def _unet_inputs(channels=1, classes=0, cond_dim=0):
    def make(r):
        inputs = {"x": gaussian(r, B, channels, 8, 8, dtype="float32"), "t": _timesteps(r, integer=bool(classes))}
        if classes:
            inputs["y"] = np.array([0, classes, r.integers(1, classes)], dtype=np.int64)  # y = classes: null token
        if cond_dim:
            inputs["cond"] = r.uniform(-1, 1, size=(B, cond_dim)).astype("float32")  # e.g. normalised galaxy parameters
        return inputs
    return make


def _cross_inputs(r):
    """x (B, 16, 4, 4), context (B, 5, 12) and its padding mask (B, 5): rows of 5, 3 and 1 real tokens, the padded
    tokens' states as random as the real ones (so a mask that lets them through changes the output)."""
    return {"x": gaussian(r, B, 16, 4, 4, dtype="float32"), "context": gaussian(r, B, 5, 12, dtype="float32"),
            "mask": np.arange(5)[None, :] < np.array([5, 3, 1])[:, None]}


IMAGE_IO = {"image_inputs": ("x",), "image_outputs": ("<root>",)}

UNET_CASES = (
    ModuleCase("nets/unet_forward", "UNet", SMALL, _unet_inputs(channels=2), grad_wrt=("x",), **IMAGE_IO),
    ModuleCase("nets/unet_forward/conditional-integer-t", "UNet", {**SMALL, "num_classes": 3},
               _unet_inputs(channels=2, classes=3), grad_wrt=("x",), **IMAGE_IO),
    ModuleCase("nets/unet_forward/continuous-condition", "UNet", {**SMALL, "cond_dim": 5},
               _unet_inputs(channels=2, cond_dim=5), grad_wrt=("x", "cond"), **IMAGE_IO),
    ModuleCase("nets/unet_time_embedding", "TimeEmbedding", {"channels": SMALL["channels"]},
               lambda r: {"t": _timesteps(r)}),
    # small activations (std 0.05) make GroupNorm's epsilon visible: 1e-6 instead of 1e-5 is caught
    ModuleCase("nets/unet_res_block/shortcut", "ResBlock", {"in_channels": 24, "out_channels": 8, "emb_dim": EMB,
                                                            "groups": 4},
               _block_inputs(24, (8, 8), scale=0.05), grad_wrt=("x", "emb"), **IMAGE_IO),
    ModuleCase("nets/unet_res_block/attention", "ResBlock", {"in_channels": 16, "out_channels": 16, "emb_dim": EMB,
                                                             "groups": 4, "attention": True, "heads": 2},
               _block_inputs(16, (4, 4)), grad_wrt=("x", "emb"), **IMAGE_IO),
    ModuleCase("nets/unet_attention", "AttentionBlock", {"channels": 16, "heads": 2, "groups": 4},
               lambda r: {"x": gaussian(r, B, 16, 4, 4, dtype="float32")}, grad_wrt=("x",), **IMAGE_IO),
    # the positions of a 4x4 feature map reading 5 tokens of width 12, three captions of 5, 3 and 1 real tokens
    ModuleCase("nets/unet_cross_attention/padded", "CrossAttentionBlock",
               {"channels": 16, "context_dim": 12, "heads": 2, "groups": 4}, _cross_inputs,
               grad_wrt=("x", "context"), **IMAGE_IO),
)


MLP = {"dim": 2, "hidden": 16, "depth": 2}


def _mlp_inputs(classes=0):
    def make(r):
        inputs = {"x": gaussian(r, B, 2, dtype="float32"), "t": _timesteps(r, integer=bool(classes))}
        if classes:
            inputs["y"] = np.array([0, classes, r.integers(1, classes)], dtype=np.int64)  # y = classes: null token
        return inputs
    return make


UNET_CASES += (
    ModuleCase("nets/mlp_denoiser", "MLPDenoiser", MLP, _mlp_inputs(), grad_wrt=("x",)),
    ModuleCase("nets/mlp_denoiser/conditional", "MLPDenoiser", {**MLP, "num_classes": 3}, _mlp_inputs(classes=3),
               grad_wrt=("x",)),
)
