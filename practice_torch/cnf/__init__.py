"""Continuous normalizing flows in PyTorch: the twin of ``theory_jax/cnf.py``.

* ``functions``: exact and Hutchinson divergence, the augmented dynamics (dx/dt, dlogp/dt), one Euler and one classic
  RK4 step, the spec'd MLP field, and ``log_likelihood`` (torchdiffeq, t = 1 data -> t = 0 noise).
* ``field``: FFJORD's field (ConcatSquash MLP) and the ``CNF`` module (log_prob, transport).
* ``training``: the training adapter (``python -m practice_torch train cnf``), not imported here.
"""

from practice_torch.cnf.field import CNF, ConcatLinear, ConcatSquashLinear, ODEField
from practice_torch.cnf.functions import (FIXED_STEP, TRACES, AugmentedDynamics, CountingField, cnf_dynamics,
                                          divergence_exact, divergence_hutchinson, draw_probe, euler_step,
                                          field_and_divergence, log_likelihood, mlp_cnf_dynamics, mlp_divergence_exact,
                                          mlp_divergence_hutchinson, mlp_euler_step, mlp_field, mlp_log_likelihood,
                                          mlp_rk4_step, rk4_step, solver_options, standard_normal_log_prob, transport)

__all__ = [
    "AugmentedDynamics", "CNF", "ConcatLinear", "ConcatSquashLinear", "CountingField", "FIXED_STEP", "ODEField",
    "TRACES", "cnf_dynamics", "divergence_exact", "divergence_hutchinson", "draw_probe", "euler_step",
    "field_and_divergence", "log_likelihood", "mlp_cnf_dynamics", "mlp_divergence_exact",
    "mlp_divergence_hutchinson", "mlp_euler_step", "mlp_field", "mlp_log_likelihood", "mlp_rk4_step", "rk4_step",
    "solver_options", "standard_normal_log_prob", "transport",
]
