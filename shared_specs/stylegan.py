"""Spec cases for ``stylegan``: StyleGAN2's math in float64 and its networks in float32.

Each function runs in ``theory_jax.stylegan`` and ``practice_torch.stylegan`` on the same NumPy inputs, gradients
included; NumPy and SciPy are the third witnesses: ``scipy.signal.correlate2d`` summed over the input channels for
the modulated convolution (its grouped form and its per-example form), the demodulation's norms written out, the
minibatch standard deviation group by group with ``np.std``, the mixing cut-off layer by layer, the penalties and the
lazy Adam settings from their formulas. ``demodulate/small_weights`` has kernels so small that the eps of eq. 3 moves
the result by a few per cent. The networks (every array NCHW, parameters in the torch layout in both backends) run
under the converter with the same weights: the equalised layers, a synthesis layer with and without upsampling,
ToRGB, the residual discriminator block, the discriminator with two minibatch-std groups, the mapping network (its
``w_avg`` a running statistic), the synthesis network with its noise inputs, and the generator with style mixing
and truncation.
"""

from __future__ import annotations

import numpy as np
from scipy import signal, special

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, C_IN, C_OUT, K, S, D, L = 3, 4, 5, 3, 6, 7, 6  # batch, in/out channels, kernel, side, w_dim, num_ws


# references -------------------------------------------------------------------------------------------------------
def ref_kernels(weight, styles, demodulate=True, eps=1e-8):
    """Eq. 1 and 3 written out: w'_{b o i k} = s_{b i} w_{o i k}, then each (b, o) scaled by 1 / sqrt(sum w'^2 + eps)."""
    kernels = np.einsum("oikl,bi->boikl", weight, styles)
    if demodulate:
        kernels = kernels / np.sqrt(np.sum(kernels**2, axis=(2, 3, 4), keepdims=True) + eps)
    return kernels


def ref_modulated_conv2d(x, weight, styles, demodulate=True, eps=1e-8):
    """SciPy: each example's output channel the sum over input channels of ``correlate2d`` ('same', zero padding)."""
    kernels = ref_kernels(weight, styles, demodulate, eps)
    return np.array([[sum(signal.correlate2d(x[b, i], kernels[b, o, i], mode="same") for i in range(x.shape[1]))
                      for o in range(weight.shape[0])] for b in range(x.shape[0])])


def ref_minibatch_stddev(x, group_size=4, eps=1e-8):
    """Group by group: examples n, n + B/G, n + 2B/G, ... form group n; np.std (biased) over it, averaged."""
    b, _, h, w = x.shape
    g = min(group_size, b)
    groups = b // g
    stat = np.empty(b)
    for n in range(groups):
        members = x[n::groups]
        stat[n::groups] = np.mean(np.sqrt(np.var(members, axis=0) + eps))
    return np.concatenate([x, np.broadcast_to(stat[:, None, None, None], (b, 1, h, w))], axis=1)


def ref_mixing_ws(w1, w2, cutoff, num_ws):
    """Layer by layer: w1 before the example's cut-off, w2 from it on."""
    return np.stack([np.stack([w1[b] if layer < cutoff[b] else w2[b] for layer in range(num_ws)])
                     for b in range(len(w1))])


def ref_path_length_penalty(lengths, pl_mean, decay=0.01):
    new_mean = pl_mean + decay * (lengths.mean() - pl_mean)
    return np.mean((lengths - new_mean) ** 2), new_mean


def ref_lazy_adam(lr, betas, interval):
    c = interval / (interval + 1) if interval > 1 else 1.0
    return lr * c, tuple(b**c for b in betas)


def _conv_inputs(kernel):
    def make(rng):
        return {"x": gaussian(rng, B, C_IN, S, S), "weight": gaussian(rng, C_OUT, C_IN, kernel, kernel),
                "styles": 1.0 + 0.5 * gaussian(rng, B, C_IN)}
    return make


def _small_kernels(rng):
    """Kernels of scale 1e-4: sum w'^2 ~ 4e-7 per output channel, so eps = 1e-8 moves each by ~1%."""
    return {"weight": gaussian(rng, 2, C_OUT, C_IN, K, K, scale=1e-4)}


def _cutoffs(rng):
    return {"w1": gaussian(rng, 5, D), "w2": gaussian(rng, 5, D), "cutoff": np.array([1, 2, L - 1, L, 3])}


# the networks' settings: a 12 x 12 image from a 3 x 3 constant (three blocks), a batch of two for the generator
IMAGE = (1, 12, 12)
CHANNELS = (4, 3, 2)
SYNTHESIS = {"w_dim": D, "img_shape": IMAGE, "channels": CHANNELS, "base": 3}
# init_weights draws every stored weight N(0, 1/fan_in), where the mapping network's own init is N(0, 1/lr_mul^2):
# at lr_mul 0.01 its w would be ~1e-7, under float32's atol, and the generator's styles would not depend on z. So
# the mapping network's case runs at lr_mul 1 (lr_mul is EqualizedLinear's case), and the generator's with no
# mapping layers, w = pixel_norm(z) of order 1, so that mixing and truncation move every pixel.
GENERATOR = {"z_dim": D, "w_dim": D, "mapping_layers": 0, "img_shape": (2, 8, 8), "channels": (4, 3), "base": 4}


def _f32(rng, *shape, scale=1.0):
    return gaussian(rng, *shape, dtype="float32", scale=scale)


def _noises(rng, batch, sides):
    return [_f32(rng, batch, 1, r, r) for r in sides]


def _synthesis_inputs(rng):
    return {"ws": _f32(rng, 2, 2 * len(CHANNELS), D), "noises": _noises(rng, 2, (3, 6, 6, 12, 12))}


def _generator_inputs(rng):
    return {"z": _f32(rng, 3, D), "noises": _noises(rng, 3, (4, 8, 8)), "z2": _f32(rng, 3, D),
            "cutoff": np.array([1, 3, 4])}


CASES = (
    # 1. modulation, demodulation, the grouped convolution --------------------------------------------------------
    FunctionCase("stylegan/pixel_norm", "pixel_norm", lambda r: {"z": gaussian(r, B, D, scale=3.0)}, grad_wrt=("z",),
                 reference=lambda z: z / np.sqrt(np.mean(z**2, axis=-1, keepdims=True) + 1e-8)),
    FunctionCase("stylegan/modulate", "modulate",
                 lambda r: {"weight": gaussian(r, C_OUT, C_IN, K, K), "styles": gaussian(r, B, C_IN)},
                 grad_wrt=("weight", "styles"), reference=lambda weight, styles: ref_kernels(weight, styles, False)),
    FunctionCase("stylegan/demodulate", "demodulate", lambda r: {"weight": gaussian(r, B, C_OUT, C_IN, K, K)},
                 grad_wrt=("weight",),
                 reference=lambda weight: weight / np.sqrt(np.sum(weight**2, axis=(2, 3, 4), keepdims=True) + 1e-8)),
    FunctionCase("stylegan/demodulate/small_weights", "demodulate", _small_kernels, grad_wrt=("weight",),
                 reference=lambda weight: weight / np.sqrt(np.sum(weight**2, axis=(2, 3, 4), keepdims=True) + 1e-8)),
    FunctionCase("stylegan/modulated_conv2d", "modulated_conv2d", _conv_inputs(K),
                 grad_wrt=("x", "weight", "styles"), reference=ref_modulated_conv2d),
    FunctionCase("stylegan/modulated_conv2d/1x1-no-demodulation", "modulated_conv2d", _conv_inputs(1),
                 static={"demodulate": False}, grad_wrt=("x", "weight", "styles"), reference=ref_modulated_conv2d),
    FunctionCase("stylegan/modulated_conv2d_per_example", "modulated_conv2d_per_example", _conv_inputs(K),
                 grad_wrt=("x", "weight", "styles"), reference=ref_modulated_conv2d),
    # 2. the synthesis network's other operations, the discriminator's minibatch standard deviation -----------------
    FunctionCase("stylegan/upsample2x", "upsample2x", lambda r: {"x": gaussian(r, B, C_IN, 3, 4)}, grad_wrt=("x",),
                 reference=lambda x: x.repeat(2, axis=2).repeat(2, axis=3)),
    FunctionCase("stylegan/add_noise", "add_noise",
                 lambda r: {"x": gaussian(r, B, C_IN, S, S), "noise": gaussian(r, B, 1, S, S),
                            "strength": np.float64(0.3)},
                 grad_wrt=("x", "noise", "strength"), reference=lambda x, noise, strength: x + strength * noise),
    FunctionCase("stylegan/minibatch_stddev", "minibatch_stddev", lambda r: {"x": gaussian(r, 8, 3, 4, 4)},
                 grad_wrt=("x",), reference=ref_minibatch_stddev),
    FunctionCase("stylegan/minibatch_stddev/one-group-of-three", "minibatch_stddev",
                 lambda r: {"x": gaussian(r, 3, 2, 3, 3)}, grad_wrt=("x",), reference=ref_minibatch_stddev),
    # 3. styles in W -----------------------------------------------------------------------------------------------
    FunctionCase("stylegan/mixing_ws", "mixing_ws", _cutoffs, static={"num_ws": L}, grad_wrt=("w1", "w2"),
                 reference=ref_mixing_ws),
    FunctionCase("stylegan/truncate", "truncate", lambda r: {"w": gaussian(r, B, L, D), "w_avg": gaussian(r, D)},
                 static={"psi": 0.7}, grad_wrt=("w", "w_avg"),
                 reference=lambda w, w_avg, psi: w_avg + psi * (w - w_avg)),
    FunctionCase("stylegan/update_w_avg", "update_w_avg", lambda r: {"w_avg": gaussian(r, D), "w": gaussian(r, B, D)},
                 grad_wrt=("w_avg", "w"),
                 reference=lambda w_avg, w: w.mean(0) + 0.995 * (w_avg - w.mean(0))),
    # 4. the regularisers ------------------------------------------------------------------------------------------
    FunctionCase("stylegan/path_lengths", "path_lengths", lambda r: {"grads": gaussian(r, B, L, D)},
                 grad_wrt=("grads",), reference=lambda grads: np.sqrt(np.mean(np.sum(grads**2, axis=2), axis=1))),
    FunctionCase("stylegan/path_length_penalty", "path_length_penalty",
                 lambda r: {"lengths": 2.0 + gaussian(r, 8), "pl_mean": np.float64(1.5)}, static={"decay": 0.01},
                 grad_wrt=("lengths", "pl_mean"), reference=ref_path_length_penalty),
    FunctionCase("stylegan/r1_penalty", "r1_penalty", lambda r: {"grads": gaussian(r, B, 2, S, S)},
                 grad_wrt=("grads",), reference=lambda grads: np.mean(np.sum(grads**2, axis=(1, 2, 3)))),
    FunctionCase("stylegan/lazy_adam", "lazy_adam", lambda r: {}, static={"lr": 2e-3, "betas": (0.0, 0.99),
                                                                           "interval": 16}, reference=ref_lazy_adam),
    FunctionCase("stylegan/lazy_adam/every-step", "lazy_adam", lambda r: {},
                 static={"lr": 2e-3, "betas": (0.0, 0.99), "interval": 1}, reference=ref_lazy_adam),
    # 5. the losses, on logits spanning [-40, 40] ----------------------------------------------------------------------
    FunctionCase("stylegan/logistic_d_loss", "logistic_d_loss",
                 lambda r: {"real_logits": gaussian(r, B, scale=15.0), "fake_logits": gaussian(r, B + 2, scale=15.0)},
                 grad_wrt=("real_logits", "fake_logits"),
                 reference=lambda real_logits, fake_logits: (-np.mean(special.log_expit(real_logits))
                                                             - np.mean(special.log_expit(-fake_logits)))),
    FunctionCase("stylegan/logistic_g_loss", "logistic_g_loss", lambda r: {"fake_logits": gaussian(r, B, scale=15.0)},
                 grad_wrt=("fake_logits",), reference=lambda fake_logits: -np.mean(special.log_expit(fake_logits))),
    # 6. the networks, float32, under the converter -----------------------------------------------------------------
    ModuleCase("stylegan/equalized_linear/lrelu-lr_mul", "EqualizedLinear",
               {"in_features": 6, "out_features": 4, "lr_mul": 0.01, "activation": "lrelu"},
               lambda r: {"x": _f32(r, 3, 6, scale=30.0)}, grad_wrt=("x",)),
    ModuleCase("stylegan/equalized_conv2d/no-bias", "EqualizedConv2d",
               {"in_channels": 3, "out_channels": 4, "kernel": 3, "bias": False, "activation": "lrelu"},
               lambda r: {"x": _f32(r, 2, 3, 5, 5)}, grad_wrt=("x",)),
    ModuleCase("stylegan/synthesis_layer", "SynthesisLayer", {"in_channels": 3, "out_channels": 4, "w_dim": D},
               lambda r: {"x": _f32(r, 2, 3, 5, 5), "w": _f32(r, 2, D), "noise": _f32(r, 2, 1, 5, 5)},
               grad_wrt=("x", "w", "noise")),
    ModuleCase("stylegan/synthesis_layer/up", "SynthesisLayer",
               {"in_channels": 3, "out_channels": 4, "w_dim": D, "up": True},
               lambda r: {"x": _f32(r, 2, 3, 4, 4), "w": _f32(r, 2, D), "noise": _f32(r, 2, 1, 8, 8)},
               grad_wrt=("x", "w", "noise")),
    ModuleCase("stylegan/to_rgb", "ToRGB", {"in_channels": 4, "img_channels": 3, "w_dim": D},
               lambda r: {"x": _f32(r, 2, 4, 5, 5), "w": _f32(r, 2, D)}, grad_wrt=("x", "w")),
    ModuleCase("stylegan/discriminator_block", "DiscriminatorBlock", {"in_channels": 3, "out_channels": 5},
               lambda r: {"x": _f32(r, 2, 3, 8, 8)}, grad_wrt=("x",)),
    # init_weights' N(0, 1/fan_in) weights times the equalised gain 1/sqrt(fan_in) shrink each layer's output ~4x;
    # images of scale 1e3 keep the logits' dependence on x (their spread over the batch, 0.04) far above the atol
    # (at scale 1 it is 5e-5, and the biases alone would be checked); the input gradient, ~2e-5, is left out
    ModuleCase("stylegan/discriminator/two-groups", "Discriminator", {"img_shape": IMAGE, "channels": CHANNELS,
                                                                      "base": 3},
               lambda r: {"x": uniform(r, 8, *IMAGE, low=-1e3, high=1e3, dtype="float32")}),
    ModuleCase("stylegan/mapping_network", "MappingNetwork", {"z_dim": 5, "w_dim": D, "layers": 3, "lr_mul": 1.0},
               lambda r: {"z": _f32(r, 4, 5)}, grad_wrt=("z",)),
    ModuleCase("stylegan/synthesis_network", "SynthesisNetwork", SYNTHESIS, _synthesis_inputs,
               grad_wrt=("ws",)),
    ModuleCase("stylegan/generator/mixing-truncation", "Generator", GENERATOR, _generator_inputs, grad_wrt=("z", "z2"),
               static={"psi": 0.7}),
)
