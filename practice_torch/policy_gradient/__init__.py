"""Policy gradients in PyTorch: the twin of ``theory_jax/policy_gradient.py`` (action and sequence
log-probabilities, rewards-to-go, the leave-one-out baseline, the REINFORCE surrogate).

Same function names and arguments as the derivation module, so ``shared_specs/policy_gradient.py`` calls both with
the same NumPy inputs. ``python -m theory_jax policy_gradient`` proves what they compute.
"""

from practice_torch.policy_gradient.functions import (
    action_log_probs,
    leave_one_out_baseline,
    reinforce_loss,
    rewards_to_go,
    sequence_log_prob,
)

__all__ = ["action_log_probs", "leave_one_out_baseline", "reinforce_loss", "rewards_to_go", "sequence_log_prob"]
