"""Spec cases for ``wavenet``: mu-law companding and quantisation, the dilated causal convolution, the gated unit and
one gated residual block with a global condition, the clock code of positions in a clip, in float64.

Each function runs in ``theory_jax.wavenet`` and ``practice_torch.wavenet`` on the same NumPy inputs (kernels in the
torch layout (O, C, K), signals (B, C, T)), with gradients wherever the function is differentiable. Third witnesses,
each from a different formula than the twins':
* companding: ``np.log`` of 1 + mu|x| / ``np.power``; the ITU-T G.711 closed form's inverse by bisection;
* quantisation: a nearest-level search over all 256 levels (``np.argmin``);
* the causal convolution and the block: a brute-force loop over time and taps on an explicitly zero-padded past;
* the clock: each pair written as (sin, cos)(pi 2^k t), not as 2 pi t over a period.

Three module cases in float32 under the weight converter: the torch ``GatedResidualBlock`` and ``WaveNet`` (also with
the amplitude input, a clock and crop starts) against their flax twins (written with flax's Conv in NWC, causal
padding and kernel dilation), gradients w.r.t. every weight (and the block's input and condition).
"""

from __future__ import annotations

import numpy as np

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

MU, LEVELS = 255.0, 256


# Independent references ------------------------------------------------------------------------------------------
def ref_compand(x, mu=MU):
    return np.sign(x) * np.log(1.0 + mu * np.abs(x)) / np.log(1.0 + mu)


def ref_expand(y, mu=MU):
    """Invert the compander by bisection on |x| in [0, 1] (60 halvings: below 1e-18), not by its closed form."""
    lo, hi = np.zeros_like(y), np.ones_like(y)
    for _ in range(60):
        mid = (lo + hi) / 2
        above = ref_compand(mid, mu) > np.abs(y)
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.sign(y) * (lo + hi) / 2


def ref_quantize(y, levels=LEVELS):
    grid = np.linspace(-1.0, 1.0, levels)
    return np.argmin(np.abs(np.clip(y, -1, 1)[..., None] - grid), axis=-1)


def ref_causal_conv1d(x, weight, bias, dilation=1):
    kernel = weight.shape[-1]
    pad = (kernel - 1) * dilation
    padded = np.concatenate([np.zeros(x.shape[:2] + (pad,)), x], axis=-1)
    out = np.zeros((x.shape[0], weight.shape[0], x.shape[-1]))
    for t in range(x.shape[-1]):
        for k in range(kernel):
            out[:, :, t] += padded[:, :, t + k * dilation] @ weight[:, :, k].T
    return out + bias[:, None]


def ref_gated_residual_block(x, h, w_filter, w_gate, b_filter, b_gate, v_filter, v_gate, w_res, b_res, w_skip, b_skip,
                             dilation=1):
    a = ref_causal_conv1d(x, w_filter, b_filter, dilation) + (h @ v_filter.T)[..., None]
    g = ref_causal_conv1d(x, w_gate, b_gate, dilation) + (h @ v_gate.T)[..., None]
    z = np.tanh(a) / (1.0 + np.exp(-g))
    res = np.stack([w_res @ z[b] for b in range(len(z))]) + b_res[:, None]
    skip = np.stack([w_skip @ z[b] for b in range(len(z))]) + b_skip[:, None]
    return x + res, skip


def ref_clock_features(positions, sample_rate, pairs):
    """Pair k as (sin, cos)(pi 2^k t), t = positions / sample_rate in seconds: the angular frequency written out."""
    t = positions / sample_rate
    rows = [np.sin(np.pi * 2.0**k * t) for k in range(pairs)] + [np.cos(np.pi * 2.0**k * t) for k in range(pairs)]
    return np.stack(rows, axis=1)


# Input makers --------------------------------------------------------------------------------------------------
def _waves(rng):
    """Amplitudes over the whole range, loud and near silence, both ends included (no exact zero: sign's kink)."""
    x = uniform(rng, 4, 50, low=-1.0, high=1.0)
    x[0, :10] = uniform(rng, 10, low=-1e-3, high=1e-3)
    x[0, -2:] = (1.0, -1.0)
    return x


def _levels(rng):
    """Off-level mu-law values (never halfway between two levels), the ends and beyond (clipped)."""
    q = rng.integers(0, LEVELS, (4, 30))
    y = 2.0 * q / (LEVELS - 1) - 1.0 + uniform(rng, 4, 30, low=-0.45, high=0.45) / (LEVELS - 1)
    y[0, :4] = (-1.0, 1.0, -1.2, 1.3)
    return {"y": y}


def _conv_inputs(channels=3, out=4, kernel=2, length=24):
    def make(rng):
        return {"x": gaussian(rng, 2, channels, length), "weight": gaussian(rng, out, channels, kernel, scale=0.5),
                "bias": gaussian(rng, out, scale=0.1)}
    return make


def _block_inputs(rng, channels=4, cond=3, skip=5, kernel=2, length=20):
    def w(*shape):
        return gaussian(rng, *shape, scale=1.0 / np.sqrt(np.prod(shape[1:])))

    return {"x": gaussian(rng, 2, channels, length), "h": gaussian(rng, 2, cond),
            "w_filter": w(channels, channels, kernel), "w_gate": w(channels, channels, kernel),
            "b_filter": gaussian(rng, channels, scale=0.1), "b_gate": gaussian(rng, channels, scale=0.1),
            "v_filter": w(channels, cond), "v_gate": w(channels, cond), "w_res": w(channels, channels),
            "b_res": gaussian(rng, channels, scale=0.1), "w_skip": w(skip, channels),
            "b_skip": gaussian(rng, skip, scale=0.1)}


BLOCK_WEIGHTS = ("x", "h", "w_filter", "w_gate", "b_filter", "b_gate", "v_filter", "v_gate", "w_res", "b_res", "w_skip",
                 "b_skip")

BLOCK_MODULE = {"channels": 4, "skip": 6, "num_classes": 3, "kernel": 3, "dilation": 4}
NET_MODULE = {"levels": 16, "channels": 4, "skip": 6, "num_classes": 3, "kernel": 2, "dilations": (1, 2, 4, 1, 2)}
CLOCK_MODULE = NET_MODULE | {"clock": 3, "sample_rate": 100, "amplitude": True}


def _block_module_inputs(r):
    """x: (2, 4, 24) NCT (the flax side takes NTC), h: two labels' one-hots (2, 3)."""
    return {"x": gaussian(r, 2, 4, 24, dtype="float32"), "h": np.eye(3, dtype="float32")[[0, 2]]}


CASES = (
    FunctionCase("wavenet/mu_law_compand", "mu_law_compand", lambda r: {"x": _waves(r)}, grad_wrt=("x",),
                 reference=ref_compand),
    FunctionCase("wavenet/mu_law_compand_mu15", "mu_law_compand", lambda r: {"x": _waves(r)}, static={"mu": 15.0},
                 grad_wrt=("x",), reference=ref_compand),
    FunctionCase("wavenet/mu_law_expand", "mu_law_expand", lambda r: {"y": _waves(r)}, grad_wrt=("y",),
                 reference=ref_expand),
    FunctionCase("wavenet/quantize", "quantize", _levels, reference=ref_quantize),
    FunctionCase("wavenet/dequantize", "dequantize", lambda r: {"q": r.integers(0, LEVELS, (3, 40))},
                 reference=lambda q: np.linspace(-1.0, 1.0, LEVELS)[q]),
    FunctionCase("wavenet/mu_law_encode", "mu_law_encode", lambda r: {"x": _waves(r)},
                 reference=lambda x: ref_quantize(ref_compand(x))),
    FunctionCase("wavenet/mu_law_decode", "mu_law_decode", lambda r: {"q": r.integers(0, LEVELS, (3, 40))},
                 reference=lambda q: ref_expand(np.linspace(-1.0, 1.0, LEVELS)[q])),
    FunctionCase("wavenet/causal_conv1d", "causal_conv1d", _conv_inputs(), grad_wrt=("x", "weight", "bias"),
                 reference=ref_causal_conv1d),
    FunctionCase("wavenet/causal_conv1d_dilated", "causal_conv1d", _conv_inputs(kernel=3), static={"dilation": 4},
                 grad_wrt=("x", "weight", "bias"), reference=ref_causal_conv1d),
    FunctionCase("wavenet/gated_activation", "gated_activation",
                 lambda r: {"filter_pre": gaussian(r, 3, 4, 10, scale=2.0), "gate_pre": gaussian(r, 3, 4, 10, scale=2.0)},
                 grad_wrt=("filter_pre", "gate_pre"),
                 reference=lambda filter_pre, gate_pre: np.tanh(filter_pre) / (1.0 + np.exp(-gate_pre))),
    FunctionCase("wavenet/gated_residual_block", "gated_residual_block", _block_inputs, static={"dilation": 2},
                 grad_wrt=BLOCK_WEIGHTS, reference=ref_gated_residual_block),
    FunctionCase("wavenet/gated_residual_block_k3_d8", "gated_residual_block", lambda r: _block_inputs(r, kernel=3),
                 static={"dilation": 8}, grad_wrt=BLOCK_WEIGHTS, reference=ref_gated_residual_block),
    FunctionCase("wavenet/clock_features", "clock_features",
                 lambda r: {"positions": np.concatenate([[[0, 1, 7999, 8000, 15999]] * 2, r.integers(0, 16000, (2, 25))],
                                                        axis=1)},
                 static={"sample_rate": 8000, "pairs": 6}, reference=ref_clock_features),
    # the network (float32 modules: Conv1d (O, C, K) -> flax Conv (K, C, O), NCT -> NTC) -----------------------------
    ModuleCase("wavenet/GatedResidualBlock", "GatedResidualBlock", BLOCK_MODULE, _block_module_inputs,
               grad_wrt=("x", "h"), image_inputs=("x",), image_outputs=("0", "1")),
    ModuleCase("wavenet/WaveNet", "WaveNet", NET_MODULE,
               lambda r: {"q": r.integers(0, 16, (2, 20)), "y": np.array([0, 2])}, image_outputs=("<root>",)),
    ModuleCase("wavenet/WaveNet_clock_amplitude", "WaveNet", CLOCK_MODULE,
               lambda r: {"q": r.integers(0, 16, (2, 20)), "y": np.array([0, 2]), "start": np.array([0, 37])},
               image_outputs=("<root>",)),
)
