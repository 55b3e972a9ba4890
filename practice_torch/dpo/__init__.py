"""Direct preference optimisation in PyTorch: the twin of ``theory_jax/dpo.py`` (the implicit reward, DPO's loss,
the KL-regularised optimum over a finite set of responses).

Same function names and arguments as the derivation module, so ``shared_specs/dpo.py`` calls both with the same
NumPy inputs. ``python -m theory_jax dpo`` proves what they compute.
"""

from practice_torch.dpo.functions import dpo_loss, implicit_reward, kl_regularised_optimum

__all__ = ["dpo_loss", "implicit_reward", "kl_regularised_optimum"]
