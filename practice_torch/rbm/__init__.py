"""Restricted Boltzmann machines in PyTorch: the twin of ``theory_jax/rbm.py``, and a trainable model.

    functions.py the spec'd functions (same names and arguments as the derivation): energy, free_energy,
                 hidden_probs, visible_probs, bernoulli_sample, gibbs_step, gibbs_chain, sufficient_statistics,
                 cd_gradient, binary_states, log_partition_by_enumeration, log_likelihood, base_log_partition,
                 annealed_free_energy, ais_step, ais_log_weights, ais_log_partition
    networks.py  ``RBM`` (its parameters; twin of the flax ``RBM``) and ``ImageRBM`` (an RBM on binarised images with
                 its persistent chains and pixel counts in buffers)
    training.py  the training adapter (not imported here): CD-k or PCD, Gibbs samples, log-likelihood by AIS

The derivation (``python -m theory_jax rbm``) proves what these compute: the conditionals factorise, F(v) sums
the hidden units out, CD-k's bias falls with k, and AIS estimates log Z within 0.5 nats on an enumerable RBM.
"""

from practice_torch.rbm.functions import (ais_log_partition, ais_log_weights, ais_step, annealed_free_energy,
                                          base_log_partition, bernoulli_sample, binary_states, cd_gradient, energy,
                                          free_energy, gibbs_chain, gibbs_step, hidden_probs, log_likelihood,
                                          log_partition_by_enumeration, sufficient_statistics, visible_probs)
from practice_torch.rbm.networks import RBM, ImageRBM

__all__ = [
    "RBM", "ImageRBM", "ais_log_partition", "ais_log_weights", "ais_step", "annealed_free_energy",
    "base_log_partition", "bernoulli_sample", "binary_states", "cd_gradient", "energy", "free_energy", "gibbs_chain",
    "gibbs_step", "hidden_probs", "log_likelihood", "log_partition_by_enumeration", "sufficient_statistics",
    "visible_probs",
]
