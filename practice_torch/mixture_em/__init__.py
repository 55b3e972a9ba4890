"""Gaussian mixtures fitted by EM in PyTorch: the twin of ``theory_jax/mixture_em.py``, and a trainable model.

    functions.py the spec'd functions (same names and arguments as the derivation): component_log_prob,
                 log_joint, log_likelihood, e_step, m_step, em_step, free_energy, sample_gmm
    networks.py  the GMM module (parameters as buffers), PCA features of images, k-means++ seeding
    training.py  the training adapter (not imported here): EM through the engine's ``update`` hook, samples, evaluation

The derivation (``python -m theory_jax mixture_em``) proves what these compute: the E-step is Bayes' rule,
EM never decreases the log-likelihood, and its fixed points are stationary points where the ELBO is maximal.
"""

from practice_torch.mixture_em.functions import (component_log_prob, e_step, em_step, free_energy, log_joint,
                                                 log_likelihood, m_step, moments_m_step, sample_gmm)
from practice_torch.mixture_em.networks import GMM, PCAFeatures, all_reduce_sum, seed_means, smallest_rows

__all__ = [
    "GMM", "PCAFeatures", "all_reduce_sum", "component_log_prob", "e_step", "em_step", "free_energy", "log_joint",
    "log_likelihood", "m_step", "moments_m_step", "sample_gmm", "seed_means", "smallest_rows",
]
