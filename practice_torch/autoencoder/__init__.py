"""Autoencoders in PyTorch: the twin of ``theory_jax/autoencoder.py``.

MLP and convolutional autoencoders, the denoising autoencoder, linear autoencoders and PCA, and anomaly detection
by reconstruction error. The derivation (``python -m theory_jax autoencoder``) proves that a linear autoencoder
spans the principal subspace and that the optimal denoiser is the posterior mean.

* ``functions``: ``reconstruction_mse``, ``reconstruction_bce``, ``corrupt``, ``linear_autoencoder``,
  ``pca_components``, ``pca_reconstruct``, ``principal_angles``, ``optimal_denoiser`` (same names as the JAX twin;
  noise is an argument).
* ``networks``: ``MLPEncoder``, ``ConvEncoder`` and ``Autoencoder`` (the decoders are the VAE's); class and attribute
  names match the flax twin so ``shared_specs.interop`` maps the weights.
* ``training``: the training adapter (``python -m practice_torch train autoencoder``), loaded only when asked for.
"""

from practice_torch.autoencoder.functions import (
    corrupt,
    linear_autoencoder,
    optimal_denoiser,
    pca_components,
    pca_reconstruct,
    principal_angles,
    reconstruction_bce,
    reconstruction_mse,
)
from practice_torch.autoencoder.networks import Autoencoder, ConvEncoder, MLPEncoder

__all__ = ["Autoencoder", "ConvEncoder", "MLPEncoder", "corrupt", "linear_autoencoder", "optimal_denoiser",
           "pca_components", "pca_reconstruct", "principal_angles", "reconstruction_bce", "reconstruction_mse"]
