"""Spec cases for ``ssm``: discretisation (zero-order hold, bilinear), the diagonal kernel, the causal convolution
against the recurrence, and the selective scan (parallel and sequential), in float64, plus one float32 case at
length 1024 for the scan, and S4D's starting frequencies against the paper's laws with N the real state size. The
layers (S4D, Mamba's selective block, the pre-norm block, the character-LM stack) run under the weight converter
in float32, gradients with respect to every weight and the input, in their parallel mode and token by token
through ``recurrent`` (the generation path): both backends, the same converted weights.

Each function runs in ``theory_jax.ssm`` and ``practice_torch.ssm`` on the same NumPy inputs, gradients included
(the PyTorch convolution goes through the FFT, the JAX one is direct). Third witnesses: SciPy's ``expm`` of Van
Loan's block matrix, NumPy's ``convolve``, and the sequential loop written in NumPy.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from shared_specs.case import FunctionCase, ModuleCase, gaussian

N, M, L, D, NS = 4, 2, 24, 3, 4


def _system(rng):
    return {"a": gaussian(rng, N, N) - 2 * np.eye(N), "b": gaussian(rng, N, M), "delta": np.asarray(0.3)}


def ref_zoh(a, b, delta):
    block = linalg.expm(delta * np.block([[a, b], [np.zeros((M, N + M))]]))
    return block[:N, :N], block[:N, N:]


def ref_bilinear(a, b, delta):
    left = np.eye(N) - delta / 2 * a
    return np.linalg.solve(left, np.eye(N) + delta / 2 * a), np.linalg.solve(left, delta * b)


def _diagonal(rng):
    lam = -np.exp(gaussian(rng, N, scale=0.5))
    a_bar = np.exp(0.1 * lam)
    return {"a_bar": a_bar, "b_bar": (a_bar - 1) / lam, "c": gaussian(rng, N)}


def ref_scan(u, delta, a, b, c):
    x, out = np.zeros(a.shape), []
    for t in range(u.shape[0]):
        x = np.exp(delta[t][:, None] * a) * x + (delta[t][:, None] * b[t][None, :]) * u[t][:, None]
        out.append(x @ c[t])
    return np.stack(out)


def _selective(rng, length=L, dtype="float64"):
    values = {"u": gaussian(rng, length, D), "delta": np.log1p(np.exp(gaussian(rng, length, D))),
              "a": -np.exp(gaussian(rng, D, NS, scale=0.5)), "b": gaussian(rng, length, NS),
              "c": gaussian(rng, length, NS)}
    return {k: v.astype(dtype) for k, v in values.items()}


def ref_s4d_imag_init(state, init):
    """The S4D paper's laws (sec. 4.1) as the authors' ``dplr`` computes them: n < N/2, N the real state size."""
    n = np.arange(state // 2)
    return np.pi * n if init == "lin" else state / np.pi * (state / (2 * n + 1) - 1)


CASES = (
    # S4D's starting frequencies, float32 as the layers' parameters; N = 64, the size the paper's figures use
    *(FunctionCase(f"ssm/s4d_imag_init/{init}", "s4d_imag_init", lambda r: {}, dtype="float32",
                   static={"state": 64, "init": init}, reference=ref_s4d_imag_init) for init in ("lin", "inv")),
    FunctionCase("ssm/discretize_zoh", "discretize_zoh", _system, grad_wrt=("a", "b", "delta"), reference=ref_zoh),
    FunctionCase("ssm/discretize_bilinear", "discretize_bilinear", _system, grad_wrt=("a", "b", "delta"),
                 reference=ref_bilinear),
    FunctionCase("ssm/diagonal_kernel", "diagonal_kernel", _diagonal, grad_wrt=("a_bar", "b_bar", "c"),
                 static={"length": L},
                 reference=lambda a_bar, b_bar, c, length: np.array([c @ (a_bar**j * b_bar) for j in range(length)])),
    FunctionCase("ssm/causal_convolution", "causal_convolution",
                 lambda r: {"kernel": gaussian(r, L), "u": gaussian(r, L)}, grad_wrt=("kernel", "u"),
                 reference=lambda kernel, u: np.convolve(kernel, u)[:L]),
    FunctionCase("ssm/diagonal_recurrence", "diagonal_recurrence", lambda r: {**_diagonal(r), "u": gaussian(r, L)},
                 grad_wrt=("a_bar", "b_bar", "c", "u"),
                 reference=lambda a_bar, b_bar, c, u: np.convolve(
                     np.array([c @ (a_bar**j * b_bar) for j in range(L)]), u)[:L]),
    FunctionCase("ssm/selective_scan", "selective_scan", _selective, grad_wrt=("u", "delta", "a", "b", "c"),
                 reference=ref_scan),
    FunctionCase("ssm/selective_scan_sequential", "selective_scan_sequential", _selective,
                 grad_wrt=("u", "delta", "a", "b", "c"), reference=ref_scan),
    # float32 at length 1024: the parallel scan's rounding against the loop's (float32 policy: the models train in it)
    FunctionCase("ssm/selective_scan/float32_1024", "selective_scan",
                 lambda r: _selective(r, 1024, "float32"), dtype="float32", reference=ref_scan),
    *(ModuleCase(f"ssm/{name}{suffix}", module, config, inputs, method=method, grad_wrt=grad)
      for name, module, config, inputs, grad in (
          ("s4d", "S4D", {"channels": 3, "state": 8}, lambda r: {"u": gaussian(r, 2, 8, 3, dtype="float32")}, ("u",)),
          ("s4d/inv", "S4D", {"channels": 3, "state": 8, "imag_init": "inv"},
           lambda r: {"u": gaussian(r, 2, 8, 3, dtype="float32")}, ("u",)),
          ("mamba", "Mamba", {"channels": 4, "state": 4},
           lambda r: {"u": gaussian(r, 2, 8, 4, dtype="float32")}, ("u",)),
          ("block/s4d", "SSMBlock", {"channels": 3, "kind": "s4d", "state": 8},
           lambda r: {"u": gaussian(r, 2, 8, 3, dtype="float32")}, ("u",)),
          ("block/mamba", "SSMBlock", {"channels": 4, "kind": "mamba", "state": 4},
           lambda r: {"u": gaussian(r, 2, 8, 4, dtype="float32")}, ("u",)),
          ("stack", "SSMStack", {"vocab_size": 7, "channels": 4, "layers": 2, "state": 4},
           lambda r: {"x": r.integers(0, 7, (2, 8))}, ()),
          ("mamba/length_11", "Mamba", {"channels": 4, "state": 4},  # chunks of 3, the last one padded
           lambda r: {"u": gaussian(r, 2, 11, 4, dtype="float32")}, ("u",)),
          ("stack/s4d", "SSMStack", {"vocab_size": 7, "channels": 4, "layers": 2, "kind": "s4d", "state": 4},
           lambda r: {"x": r.integers(0, 7, (2, 8))}, ()),
          ("stack/classes", "SSMStack", {"vocab_size": 7, "channels": 4, "layers": 1, "kind": "s4d", "state": 4,
                                         "classes": 3},
           lambda r: {"x": r.integers(0, 7, (2, 8)), "y": r.integers(0, 3, (2,))}, ()))
      for method, suffix in (("__call__", ""), ("recurrent", "/recurrent"))
      if not (method == "recurrent" and name == "mamba/length_11")),  # token by token there are no chunks to pad
    # the parallel prefill of a prompt: the next token's logits and every block's state (Mamba's conv window is
    # (B, E, K - 1) in torch and (B, K - 1, E) in flax, so it crosses as an image; S4D's state is complex)
    ModuleCase("ssm/stack/start", "SSMStack", {"vocab_size": 7, "channels": 4, "layers": 2, "state": 4},
               lambda r: {"prompt": r.integers(0, 7, (2, 9))}, method="start", image_outputs=("1/0/0", "1/1/0")),
    ModuleCase("ssm/stack/s4d/start", "SSMStack", {"vocab_size": 7, "channels": 4, "layers": 2, "kind": "s4d",
                                                   "state": 4}, lambda r: {"prompt": r.integers(0, 7, (2, 9))},
               method="start"),
)
