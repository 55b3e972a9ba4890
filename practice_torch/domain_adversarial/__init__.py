"""Domain-adversarial networks in PyTorch: the twin of ``theory_jax/domain_adversarial.py`` (the gradient reversal
layer, the domain and label losses, the lambda schedule, the DANN objective).

Same function names and arguments as the derivation module, so ``shared_specs/domain_adversarial.py`` calls both
with the same NumPy inputs. ``python -m theory_jax domain_adversarial`` proves what they compute.

* ``functions``: ``gradient_reversal`` and its layer, ``domain_loss``, ``label_loss``, ``lambda_schedule``,
  ``dann_objective``; same names as the JAX twin.
* ``networks``: ``DANN`` (conv feature extractor, label classifier, domain classifier behind the reversal; flax twin
  in the derivation module) and ``dann_loss`` (lambda an argument: the adapter schedules it by the step number).
* ``domains``: the target domains, deterministic shifts of a registered image set (not imported here: it reads data).
* ``training``: the training adapter (``python -m practice_torch train domain_adversarial``), not imported here.
"""

from practice_torch.domain_adversarial.functions import (
    GradientReversal,
    dann_objective,
    domain_loss,
    gradient_reversal,
    label_loss,
    lambda_schedule,
)
from practice_torch.domain_adversarial.networks import DANN, dann_loss

__all__ = ["DANN", "GradientReversal", "dann_loss", "dann_objective", "domain_loss",
           "gradient_reversal", "label_loss", "lambda_schedule"]
