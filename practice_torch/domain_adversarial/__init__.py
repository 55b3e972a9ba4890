"""Domain-adversarial networks in PyTorch: the twin of ``theory_jax/domain_adversarial.py`` (the gradient reversal
layer, the domain and label losses, the lambda schedule, the DANN objective).

Same function names and arguments as the derivation module, so ``shared_specs/domain_adversarial.py`` calls both
with the same NumPy inputs. ``python -m theory_jax domain_adversarial`` proves what they compute.
"""

from practice_torch.domain_adversarial.functions import (
    GradientReversal,
    dann_objective,
    domain_loss,
    gradient_reversal,
    label_loss,
    lambda_schedule,
)

__all__ = ["GradientReversal", "dann_objective", "domain_loss", "gradient_reversal", "label_loss", "lambda_schedule"]
