"""The flax twins of the shared networks of a trained run, for the JAX twin checks (``shared_specs/twin_check.py``):
``flax_twin`` (the U-Net on images, the MLP denoiser on vectors) and the layout changes between torch's channels-first
images and the twins' channels-last ones."""

from __future__ import annotations

import dataclasses

from shared_specs.twin_rows import CheckError


def nhwc(x):
    """(B, C, H, W) -> (B, H, W, C), for the flax twins."""
    return x.transpose(0, 2, 3, 1)



def nchw(x):
    """(B, H, W, C) -> (B, C, H, W)."""
    return x.transpose(0, 3, 1, 2)



def flax_twin(network):
    """(the flax twin of a torch denoiser or field, torch layout -> the twin's, the twin's -> torch's): the U-Net
    takes channels-last images, the MLP denoiser vectors as they are."""
    from theory_jax.nets import MLPDenoiser, UNet

    if type(network).__name__ == "UNet":
        return UNet(**dataclasses.asdict(network.config)), nhwc, nchw
    if type(network).__name__ == "MLPDenoiser":
        twin = MLPDenoiser(dim=network.dim, hidden=network.hidden, depth=len(network.blocks),
                           num_classes=network.num_classes)
        return twin, (lambda x: x), (lambda x: x)
    raise CheckError(f"no JAX twin of the {type(network).__name__} network")

