"""Wasserstein GANs in PyTorch: the twin of ``theory_jax/wgan.py`` (the dual's objective, weight clipping, the
gradient penalty at interpolates, the exact 1-D W1).

Same function names and arguments as the derivation module, so ``shared_specs/wgan.py`` calls both with the same
NumPy inputs. ``python -m theory_jax wgan`` proves what they compute.
"""

from practice_torch.wgan.functions import (
    clip_weights,
    critic_gradient_penalty,
    critic_objective,
    gradient_penalty,
    input_gradients,
    interpolates,
    lipschitz_penalty,
    mlp_critic,
    w1_sorted,
)

__all__ = ["clip_weights", "critic_gradient_penalty", "critic_objective", "gradient_penalty", "input_gradients",
           "interpolates", "lipschitz_penalty", "mlp_critic", "w1_sorted"]
