"""State-space models in PyTorch: the twin of ``theory_jax/ssm.py`` (discretisation, the diagonal kernel, the
causal convolution and the recurrence, HiPPO-LegS, the selective scan in parallel and sequential form) and the
layers (``layers.py``): S4D, Mamba's selective block, pre-norm residual blocks and a character-LM stack.

Same function names and arguments as the derivation module, so ``shared_specs/ssm.py`` calls both with the same
NumPy inputs. ``python -m theory_jax ssm`` proves what they compute.
"""

from practice_torch.ssm.functions import (
    causal_convolution,
    diagonal_kernel,
    diagonal_recurrence,
    discretize_bilinear,
    discretize_zoh,
    hippo_legs,
    selective_scan,
    selective_scan_chunked,
    selective_scan_sequential,
)
from practice_torch.ssm.layers import S4D, AudioSSM, Mamba, SSMBlock, SSMStack, s4d_imag_init

__all__ = ["S4D", "AudioSSM", "Mamba", "SSMBlock", "SSMStack", "causal_convolution", "diagonal_kernel",
           "diagonal_recurrence",
           "discretize_bilinear", "discretize_zoh", "hippo_legs", "s4d_imag_init", "selective_scan",
           "selective_scan_chunked", "selective_scan_sequential"]
