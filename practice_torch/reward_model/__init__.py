"""Reward modelling in PyTorch: the twin of ``theory_jax/reward_model.py`` (Bradley-Terry preference
probabilities, the reward model's loss, the scalar head on the last real token).

Same function names and arguments as the derivation module, so ``shared_specs/reward_model.py`` calls both with
the same NumPy inputs. ``python -m theory_jax reward_model`` proves what they compute.
"""

from practice_torch.reward_model.functions import last_token_reward, preference_loss, preference_prob

__all__ = ["last_token_reward", "preference_loss", "preference_prob"]
