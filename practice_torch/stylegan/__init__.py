"""StyleGAN2 in PyTorch: the twin of ``theory_jax/stylegan.py`` (Karras et al. 2019 and 2020).

* ``functions``: the math, same names and arguments as the JAX twin: ``pixel_norm``, ``modulate``, ``demodulate``,
  ``modulated_conv2d`` (the grouped form) and ``modulated_conv2d_per_example`` (its reference), ``upsample2x``,
  ``add_noise``, ``minibatch_stddev``, ``mixing_ws``, ``truncate``, ``update_w_avg``, ``path_lengths``,
  ``path_length_penalty``, ``r1_penalty``, ``lazy_adam``, ``logistic_d_loss``, ``logistic_g_loss``.
* ``networks``: the equalised layers, ``MappingNetwork``, ``SynthesisLayer``, ``ToRGB``, ``SynthesisNetwork``,
  ``Generator``, ``DiscriminatorBlock``, ``Discriminator`` and ``StyleGAN`` (both players, the buffer ``pl_mean``).
* ``training``: the training adapter (``python -m practice_torch train stylegan``), not imported here.

``python -m theory_jax stylegan`` proves what the functions compute: demodulation's unit variance, the grouped
convolution, the path-length penalty's fixed point, truncation as a shrink, lazy regularisation's rescaling.
"""

from practice_torch.stylegan.functions import (
    add_noise,
    demodulate,
    lazy_adam,
    logistic_d_loss,
    logistic_g_loss,
    minibatch_stddev,
    mixing_ws,
    modulate,
    modulated_conv2d,
    modulated_conv2d_per_example,
    path_length_penalty,
    path_lengths,
    pixel_norm,
    r1_penalty,
    truncate,
    update_w_avg,
    upsample2x,
)
from practice_torch.stylegan.networks import (
    Discriminator,
    DiscriminatorBlock,
    EqualizedConv2d,
    EqualizedLinear,
    Generator,
    MappingNetwork,
    StyleGAN,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGB,
)

__all__ = ["Discriminator", "DiscriminatorBlock", "EqualizedConv2d", "EqualizedLinear", "Generator",
           "MappingNetwork", "StyleGAN", "SynthesisLayer", "SynthesisNetwork", "ToRGB", "add_noise", "demodulate",
           "lazy_adam", "logistic_d_loss", "logistic_g_loss", "minibatch_stddev", "mixing_ws", "modulate",
           "modulated_conv2d", "modulated_conv2d_per_example", "path_length_penalty", "path_lengths", "pixel_norm",
           "r1_penalty", "truncate", "update_w_avg", "upsample2x"]
