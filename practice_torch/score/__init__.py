"""Score models in PyTorch: the twin of ``theory_jax/score.py``.

* ``functions``: eps <-> score, the geometric noise levels and annealed step sizes of NCSN, the sigma^2-weighted
  DSM loss, one Langevin step and Tweedie's denoising step; same names and arguments as the JAX twin.
* ``ncsn``: the noise-conditional score network s(x, sigma) = f(x, c(sigma)) / sigma and annealed Langevin sampling.
* ``training``: the training adapter (``python -m practice_torch train score``), not imported here.
"""

from practice_torch.score.functions import (alpha_bar_to_sigma, annealed_step_sizes, denoise, dsm_loss, eps_to_score,
                                            geometric_sigmas, langevin_step, perturb, score_to_eps)
from practice_torch.score.ncsn import NCSN, annealed_langevin_sampling, initial_state, level_subset

__all__ = [
    "NCSN", "alpha_bar_to_sigma", "annealed_langevin_sampling", "annealed_step_sizes", "denoise", "dsm_loss",
    "eps_to_score", "geometric_sigmas", "initial_state", "langevin_step", "level_subset", "perturb", "score_to_eps",
]
