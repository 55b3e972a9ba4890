"""WaveNet (van den Oord et al. 2016) in PyTorch: the twin of ``theory_jax/wavenet.py``.

* ``functions``: mu-law companding and its inverse, quantisation, the dilated causal convolution, the receptive
  field, the gated activation, one gated residual block and the clock code of a position in the clip (pure
  functions, checked by ``shared_specs.wavenet``).
* ``networks``: ``WaveNet``, gated residual blocks with skip connections conditioned on the digit (and on the clock
  when it has one), and its cached ancestral sampler.
* ``training``: the training adapter (``python -m practice_torch train wavenet``), not imported here.
"""

from practice_torch.wavenet.functions import (causal_conv1d, clock_features, dequantize, gated_activation,
                                              gated_residual_block, mu_law_compand, mu_law_decode, mu_law_encode,
                                              mu_law_expand, quantize, receptive_field)
from practice_torch.wavenet.networks import GatedResidualBlock, WaveNet

__all__ = [
    "GatedResidualBlock", "WaveNet", "causal_conv1d", "clock_features", "dequantize", "gated_activation",
    "gated_residual_block", "mu_law_compand", "mu_law_decode", "mu_law_encode", "mu_law_expand", "quantize",
    "receptive_field",
]
