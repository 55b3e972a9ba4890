"""Guided diffusion in PyTorch: the twin of ``theory_jax/guidance.py``.

* From the diffusion core (``practice_torch.diffusion.conditioning``, shared with ``ddpm`` and ``latent_diffusion``):
  ``null_labels`` (label dropout), ``cfg_eps`` (classifier-free guidance), ``classifier_guided_eps`` (classifier
  guidance in epsilon form), ``implicit_classifier_grad``; pure, same names and arguments as the JAX twins.
* ``functions``: the noise-aware classifier's loss ``noisy_classifier_loss`` and ``class_log_prob`` (twins).
* ``classifier``: the noise-aware classifier (the U-Net's encoder half), ``classifier_grad`` (grad_x log p(y | x_t) by
  autograd).
* ``training``: the training adapter (``python -m practice_torch train guidance``), not imported here.
* ``sampling``: ``guided_sample`` and ``guided_eps_fn``: CFG or classifier guidance through the core's ``sample_loop``.
"""

from practice_torch.diffusion import cfg_eps, classifier_guided_eps, implicit_classifier_grad, null_labels
from practice_torch.guidance.classifier import NoisyClassifier, classifier_grad
from practice_torch.guidance.functions import class_log_prob, noisy_classifier_loss
from practice_torch.guidance.sampling import check_compatible, guided_eps_fn, guided_sample

__all__ = [
    "NoisyClassifier", "cfg_eps", "check_compatible", "class_log_prob", "classifier_grad", "classifier_guided_eps",
    "guided_eps_fn", "guided_sample", "implicit_classifier_grad", "noisy_classifier_loss", "null_labels",
]
