"""Energy-based models in PyTorch: the twin of ``theory_jax/ebm.py``.

* ``functions``: the Langevin step, its tempered variant and temperature, the replay buffer's refresh and the
  contrastive divergence with its L2 energy regulariser; same names and arguments as the JAX twin.
* ``networks``: ``MLPEnergy`` (points), ``ConvEnergy`` (images), ``EBM``, an energy with its replay buffer and
  Langevin chains, and ``Langevin``, the chains' settings.
* ``training``: the training adapter (``python -m practice_torch train ebm``), not imported here.
"""

from practice_torch.ebm.functions import (cd_loss, langevin_step, langevin_temperature, refresh_buffer,
                                          tempered_langevin_step)
from practice_torch.ebm.networks import EBM, ConvEnergy, Langevin, MLPEnergy

__all__ = ["EBM", "ConvEnergy", "Langevin", "MLPEnergy", "cd_loss", "langevin_step", "langevin_temperature",
           "refresh_buffer", "tempered_langevin_step"]
