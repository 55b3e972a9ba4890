"""Coupling flows (NICE, RealNVP, Glow) in PyTorch: the twin of ``theory_jax/coupling_flows.py``.

* ``functions``: the spec'd pure functions: masks, additive and affine coupling (with the one-layer ``conditioner``
  of the spec, or any conditioner's output h), actnorm, the invertible 1x1 convolution (LU-parameterised), squeeze,
  the logit transform, bits/dim of dequantised data.
* ``layers``: the layers as modules (data-initialised ActNorm, LU InvConv1x1, Coupling with a conv or MLP
  conditioner), ``MultiScaleFlow`` (RealNVP's multi-scale architecture with Glow steps) and ``VectorFlow`` (2-D).
* ``training``: the training adapter (``python -m practice_torch train coupling_flows``), not imported here.
"""

from practice_torch.coupling_flows.functions import (actnorm_forward, actnorm_inverse, additive_coupling_forward,
                                                     additive_coupling_inverse, bits_per_dim_from_log_prob,
                                                     channel_mask, checkerboard_mask, conditioner, coupling_forward,
                                                     coupling_inverse, coupling_transform, coupling_transform_inverse,
                                                     invconv_forward, invconv_inverse, invconv_lu_weight, logit_inverse,
                                                     logit_transform, squeeze, standard_normal_log_prob, unsqueeze)
from practice_torch.coupling_flows.layers import (ActNorm, ConvNet, Coupling, InvConv1x1, MLPNet, MultiScaleFlow,
                                                  ResBlock, Squeeze, VectorFlow)

__all__ = [
    "ActNorm", "ConvNet", "Coupling", "InvConv1x1", "MLPNet", "MultiScaleFlow", "ResBlock", "Squeeze", "VectorFlow",
    "actnorm_forward", "actnorm_inverse", "additive_coupling_forward", "additive_coupling_inverse",
    "bits_per_dim_from_log_prob", "channel_mask", "checkerboard_mask", "conditioner", "coupling_forward",
    "coupling_inverse", "coupling_transform", "coupling_transform_inverse", "invconv_forward", "invconv_inverse",
    "invconv_lu_weight", "logit_inverse", "logit_transform", "squeeze", "standard_normal_log_prob", "unsqueeze",
]
