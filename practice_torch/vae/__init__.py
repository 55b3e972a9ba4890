"""The variational autoencoder in PyTorch: the twin of ``theory_jax/vae.py``.

Gaussian encoder; Bernoulli or Gaussian decoder; MLP or convolutional; beta-VAE; beta-TCVAE; FactorVAE; hierarchical
VAE; VAE-GAN; conditional VAE; importance-sampled NLL. The derivation (``python -m theory_jax vae``) proves what the
ELBO, its gradient estimators and the bounds compute.

* ``functions``: ``reparameterize``, ``bernoulli_log_prob``, ``with_condition``, ``draw_eps``, the KL's three parts
  of beta-TCVAE, ``total_correlation_terms``, FactorVAE's ``permute_dims``, ``factor_vae_loss`` and
  ``tc_discriminator_loss``, the hierarchical VAE's ``hierarchical_kl`` and ``latent_activity``, VAE-GAN's
  ``feature_reconstruction_nll`` and ``vaegan_losses`` (same names as the JAX twin; noise is an argument, ``draw_eps``
  and ``permutations`` turn drawn noise into it).
* ``networks``: ``MLPEncoder``, ``MLPDecoder``, ``ConvEncoder``, ``ConvDecoder``, FactorVAE's ``TCDiscriminator``,
  VAE-GAN's ``FeatureDiscriminator``, the two-level ``HierarchicalVAE`` and ``VAE`` (ELBO, beta-VAE objective,
  importance-sampled likelihood); class and attribute names match the flax twin so ``shared_specs.interop`` maps the weights.
* ``training``: the training adapter (``python -m practice_torch train vae``), loaded only when asked for.
"""

from practice_torch.vae.functions import (bernoulli_log_prob, draw_eps, factor_vae_loss, feature_reconstruction_nll,
                                         hierarchical_kl, latent_activity, permutations, permute_dims, reparameterize,
                                         tc_discriminator_loss, total_correlation_terms, vaegan_losses, with_condition)
from practice_torch.vae.networks import (VAE, ConvDecoder, ConvEncoder, FeatureDiscriminator, HierarchicalVAE,
                                        MLPDecoder, MLPEncoder, TCDiscriminator, check_divisible)

__all__ = ["VAE", "ConvDecoder", "ConvEncoder", "FeatureDiscriminator", "HierarchicalVAE", "MLPDecoder", "MLPEncoder",
           "TCDiscriminator", "bernoulli_log_prob", "check_divisible", "draw_eps", "factor_vae_loss",
           "feature_reconstruction_nll", "hierarchical_kl", "latent_activity", "permutations", "permute_dims",
           "reparameterize", "tc_discriminator_loss", "total_correlation_terms", "vaegan_losses", "with_condition"]
