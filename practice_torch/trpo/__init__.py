"""Trust region policy optimisation in PyTorch: the twin of ``theory_jax/trpo.py`` (the mean KL, Fisher-vector
products by double backward, conjugate gradient, the importance-sampled surrogate).

Same function names and arguments as the derivation module, so ``shared_specs/trpo.py`` calls both with the same
NumPy inputs. ``python -m theory_jax trpo`` proves what they compute.
"""

from practice_torch.trpo.functions import conjugate_gradient, fisher_vector_product, mean_kl, surrogate

__all__ = ["conjugate_gradient", "fisher_vector_product", "mean_kl", "surrogate"]
