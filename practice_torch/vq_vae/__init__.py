"""The vector-quantised VAE in PyTorch (van den Oord et al. 2017): the twin of ``theory_jax/vq_vae.py``.

An encoder maps an image to a grid of vectors, each replaced by its nearest code of a learned codebook of K; the
decoder reconstructs from the codes, the straight-through estimator carries its gradient to the encoder, the
codebook follows the encoder outputs by an exponential moving average, and unused codes restart at encoder outputs.
A second stage fits an autoregressive prior over the grid of code indices; its samples, decoded, are new images.

* ``functions``: ``squared_distances``, ``nearest_code``, ``quantise``, ``straight_through``, ``codebook_loss``,
  ``commitment_loss``, ``assignment_stats``, ``ema_update``, ``ema_codebook``, ``code_usage``, ``perplexity``,
  ``restart_dead_codes``, ``vector_quantise`` (same names as the JAX twin; randomness is an argument).
* ``networks``: ``GridEncoder``, ``GridDecoder``, ``VectorQuantiser`` (codebook and EMA state as buffers),
  ``CodebookUpdate`` (the EMA and restart rule a training step hands the quantiser), ``VQVAE``, the transformer
  prior ``CodePrior`` and the second stage ``VQVAEWithPrior``; class and attribute names match the flax twin so
  ``shared_specs.interop`` maps the weights.
* ``training``: the training adapter (``python -m practice_torch train vq_vae``, ``--set model.stage=prior`` for the
  prior), loaded only when asked for.
"""

from practice_torch.vq_vae.functions import (
    assignment_stats,
    code_usage,
    codebook_loss,
    commitment_loss,
    ema_codebook,
    ema_update,
    nearest_code,
    perplexity,
    quantise,
    restart_dead_codes,
    squared_distances,
    straight_through,
    vector_quantise,
)
from practice_torch.vq_vae.networks import (
    VQVAE,
    CodebookUpdate,
    CodePrior,
    GridDecoder,
    GridEncoder,
    VectorQuantiser,
    VQVAEWithPrior,
)

__all__ = ["VQVAE", "CodePrior", "CodebookUpdate", "GridDecoder", "GridEncoder", "VQVAEWithPrior", "VectorQuantiser",
           "assignment_stats", "code_usage", "codebook_loss", "commitment_loss", "ema_codebook", "ema_update",
           "nearest_code", "perplexity", "quantise", "restart_dead_codes", "squared_distances", "straight_through",
           "vector_quantise"]
