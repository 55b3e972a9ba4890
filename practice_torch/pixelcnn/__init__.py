"""PixelCNN in PyTorch: the twin of ``theory_jax/pixelcnn.py``.

* ``functions``: causal masks (type A and B), the gated stacks' masks, the masked convolution, the gated activation,
  the chain-rule likelihood (categorical and Bernoulli), one inverse-CDF sampling step; bits/dim is the evaluation's
  (``practice_torch.evaluation.metrics.bits_per_dim``), exported here under the twin's name;
* ``networks``: ``MaskedConv2d``, the plain ``PlainPixelCNN`` and the ``GatedPixelCNN`` (vertical/horizontal stacks,
  optional class conditioning);
* ``training``: the training adapter (``python -m practice_torch train pixelcnn``), not imported here.
"""

from practice_torch.evaluation.metrics import bits_per_dim
from practice_torch.pixelcnn.functions import (bernoulli_log_likelihood, categorical_log_likelihood, causal_mask,
                                               gated_activation, masked_conv2d, sample_pixel, stack_mask)
from practice_torch.pixelcnn.networks import GatedLayer, GatedPixelCNN, MaskedConv2d, PlainPixelCNN

EVAL_SAMPLES = 500  # eval's default FID/KID sample count: sampling is sequential over the 784 pixels

__all__ = [
    "EVAL_SAMPLES", "GatedLayer", "GatedPixelCNN", "MaskedConv2d", "PlainPixelCNN", "bernoulli_log_likelihood",
    "bits_per_dim", "categorical_log_likelihood", "causal_mask", "gated_activation", "masked_conv2d", "sample_pixel",
    "stack_mask",
]
