"""Change of variables in PyTorch: the twin of ``theory_jax/change_of_variables.py``.

* ``functions``: Box-Muller and its inverse, inverse-CDF samplers (the uniforms are passed in), log-det helpers, the
  elementwise monotone flow (mixture-of-logistics CDF, then the inverse Gaussian CDF), LU mixing layers and the
  composed flow; same names and arguments as the derivation module.
* ``networks``: ``GaussianizationFlow``, the composed flow as a module.
* ``training``: the training adapter (``python -m practice_torch train change_of_variables``), loaded only when asked.
"""

from practice_torch.change_of_variables.functions import (box_muller, box_muller_inverse, box_muller_log_det,
                                                          draw_uniform, exponential_icdf, flow_forward, flow_inverse,
                                                          flow_log_prob, gaussian_icdf, gaussianize,
                                                          gaussianize_inverse, log_abs_det_jacobian, logistic_icdf,
                                                          logistic_mixture_log_cdf, logistic_mixture_log_pdf, lu_linear,
                                                          lu_linear_inverse, lu_weight, normal_icdf,
                                                          standard_normal_log_prob)
from practice_torch.change_of_variables.networks import GaussianizationFlow

__all__ = [
    "GaussianizationFlow", "box_muller", "box_muller_inverse", "box_muller_log_det", "draw_uniform", "exponential_icdf",
    "flow_forward", "flow_inverse", "flow_log_prob", "gaussian_icdf", "gaussianize", "gaussianize_inverse",
    "log_abs_det_jacobian", "logistic_icdf", "logistic_mixture_log_cdf", "logistic_mixture_log_pdf", "lu_linear",
    "lu_linear_inverse", "lu_weight", "normal_icdf", "standard_normal_log_prob",
]
