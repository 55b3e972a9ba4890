"""Flow matching in PyTorch: the twin of ``theory_jax/flow_matching.py``.

* ``functions``: the conditional OT path and its target velocity, the CFM loss, the exact minibatch OT assignment;
  same names and arguments as the JAX twin.
* ``sampling``: the ODE sampler (torchdiffeq: euler / midpoint / rk4 / dopri5), counting function evaluations.
* ``training``: the training adapter (``python -m practice_torch train flow_matching``), not imported here:
  an MLP field on 2-D data, a class-conditional U-Net on images, a U-Net conditioned on galaxy parameters.
* ``figures``: 2-D samples, trajectories, the field and the density (the galaxy measurements and the sweep figure
  are ``practice_torch.evaluation.galaxies``, shared with ``text_to_image``).
"""

from practice_torch.flow_matching.functions import (cfm_loss, conditional_path, consistency_function,
                                                    consistency_loss, consistency_scalings, ode_step, ot_assignment,
                                                    ot_coupling, path_sample_and_target, squared_cost, straightness,
                                                    target_velocity, transport_cost)
from practice_torch.flow_matching.sampling import METHODS, Trajectory, integrate

__all__ = [
    "METHODS", "Trajectory", "cfm_loss", "conditional_path", "consistency_function", "consistency_loss",
    "consistency_scalings", "integrate", "ode_step", "ot_assignment", "ot_coupling",
    "path_sample_and_target", "squared_cost", "straightness", "target_velocity", "transport_cost",
]
