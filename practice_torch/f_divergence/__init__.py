"""f-divergences and the f-GAN in PyTorch: the twin of ``theory_jax/f_divergence.py``.

* ``functions``: generators f, derivatives f', conjugates f*, output activations g_f (Nowozin et al. 2016,
  Tables 1-2) and the variational objective on critic outputs; same names and arguments as the JAX twin.
* ``networks``: generator, critic and Algorithm 1's single-step loss.
* ``training``: the training adapter (``python -m practice_torch train f_divergence``), not imported here.
* ``estimate``: the critic alone between two known 2-D Gaussians, its estimate against the true D_f.
"""

from practice_torch.f_divergence.estimate import Estimate, Gaussians, closed_form, estimate_divergence, true_divergence
from practice_torch.f_divergence.functions import (DIVERGENCES, check_divergence, conjugate_at_activation,
                                                   density_ratio, f_conjugate, f_derivative, f_divergence_discrete,
                                                   f_generator, output_activation, variational_bound_discrete,
                                                   variational_objective)
from practice_torch.f_divergence.networks import (FGAN, ConvCritic, ConvGenerator, MLPCritic, MLPGenerator, fgan_loss)

__all__ = [
    "DIVERGENCES", "FGAN", "ConvCritic", "ConvGenerator", "Estimate", "Gaussians", "MLPCritic", "MLPGenerator",
    "check_divergence", "closed_form", "conjugate_at_activation", "density_ratio", "estimate_divergence",
    "f_conjugate", "f_derivative", "f_divergence_discrete", "f_generator", "fgan_loss", "output_activation",
    "true_divergence", "variational_bound_discrete", "variational_objective",
]
