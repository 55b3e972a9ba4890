"""Proximal policy optimisation in PyTorch: the twin of ``theory_jax/ppo.py`` (the clipped surrogate, GAE, the
KL penalty's k1 and k3 estimators).

Same function names and arguments as the derivation module, so ``shared_specs/ppo.py`` calls both with the same
NumPy inputs. ``python -m theory_jax ppo`` proves what they compute.
"""

from practice_torch.ppo.functions import clipped_surrogate_loss, gae, kl_k1, kl_k3

__all__ = ["clipped_surrogate_loss", "gae", "kl_k1", "kl_k3"]
