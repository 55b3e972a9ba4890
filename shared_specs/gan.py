"""Spec cases for ``gan``: the GAN's losses on the discriminator's logits and its closed forms, in float64. The game
trained in both trainers (the players' own optimizers, the inner discriminator loop or simultaneous updates, R1) is a
twin-training case (``practice_jax/twin_cases.py``).

Each function runs in ``theory_jax.gan`` and ``practice_torch.gan`` on the same NumPy inputs, gradients included;
SciPy is the third witness (``scipy.special.log_expit`` for log D and log(1 - D), ``jensenshannon`` for JS,
``scipy.stats.norm`` for the Gaussian log-density). The logits span [-40, 40]: a naive log(sigmoid) would give
-inf there. Spectral normalisation's witness is torch's own ``torch.nn.utils.parametrizations.spectral_norm`` on a
layer holding the same weight and the same u and v, in training mode (its power iteration updates them). The
minibatch standard deviation's witness is NumPy's population ``np.var``; the unrolled discriminator's, its logistic
regression steps with the gradients written out by hand (and Adam's update written out, for the look-ahead that
takes the optimizer's steps); packing's (PacGAN), ``np.concatenate`` of each group of m
examples; maxout's, NumPy's ``max`` over each unit's pieces. PacGAN's toy players (its batch-normalised generator, in
training and with the running statistics, and its maxout discriminator) are module cases.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

B, K = 6, 9


# the progressive players at 2 stages (4 -> 8): every layer in use while the second resolution fades in
PROGRESSIVE_G = {"latent_dim": 5, "image_shape": (1, 8, 8), "channels": 4, "stages": 2}
PROGRESSIVE_D = {"image_shape": (1, 8, 8), "channels": 4, "stages": 2}
# PacGAN's toy players, small: a generator of two normalised layers, a discriminator of two maxout layers of 3 pieces
PACGAN_G = {"latent_dim": 2, "shape": (2,), "hidden": (6, 5)}
PACGAN_D = {"shape": (4,), "hidden": (5, 4), "pieces": 3}


def _logits(rng):
    return {"real_logits": gaussian(rng, B, scale=15.0), "fake_logits": gaussian(rng, B + 2, scale=15.0)}


def _distributions(rng):
    p, q = rng.dirichlet(np.ones(K), size=3), rng.dirichlet(np.ones(K), size=3)
    return {"d": rng.uniform(0.05, 0.95, size=(3, K)), "p": p, "q": q}


def _spectral_inputs(shape):
    def make(rng):
        rest = int(np.prod(shape[1:]))
        return {"w": gaussian(rng, *shape), "u": gaussian(rng, shape[0]), "v": gaussian(rng, rest)}
    return make


def ref_spectral_normalize(w, u, v, n_iter, eps=1e-12):
    """torch's parametrization: a layer with weight w and buffers _u, _v (normalised, as it keeps them), trained
    mode, so that reading its weight runs n_iter power iterations; returns (W / sigma, u, v)."""
    import torch
    from torch.nn.utils.parametrizations import spectral_norm

    layer = torch.nn.Linear(1, 1, bias=False) if w.ndim == 2 else torch.nn.Conv2d(1, 1, 1, bias=False)
    layer = layer.double()
    layer.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
    spectral_norm(layer, n_power_iterations=n_iter, eps=eps)
    param = layer.parametrizations.weight[0]
    param._u.copy_(torch.from_numpy(u))
    param._v.copy_(torch.from_numpy(v))
    layer.train()
    with torch.no_grad():
        weight = layer.weight
    return weight.numpy(), param._u.numpy(), param._v.numpy()


def ref_minibatch_std(h, eps=1e-8):
    """NumPy: h with the mean over features of the population standard deviation over the batch appended."""
    std = np.mean(np.sqrt(np.var(h, axis=0) + eps))
    return np.concatenate([h, np.full((h.shape[0], 1), std)], axis=1)


def ref_pack(x, m, axis=1):
    """NumPy: the i-th row the examples x[i m], ..., x[i m + m - 1] concatenated along ``axis`` (of x)."""
    along = axis - 1 if axis > 0 else axis  # the same axis, counted within one example
    return np.stack([np.concatenate(list(x[i * m:(i + 1) * m]), axis=along) for i in range(len(x) // m)])


def ref_unrolled_generator_loss(fake, real, w, b, steps, lr):
    """NumPy, the discriminator's gradients by hand: d/dw of mean softplus(-l_real) + mean softplus(l_fake) is
    -mean sigmoid(-l_real) x_real + mean sigmoid(l_fake) x_fake (and without the x for b); then the non-saturating
    loss mean softplus(-l_fake) at the last (w, b)."""
    for _ in range(steps):
        a, c = -special.expit(-(real @ w + b)), special.expit(fake @ w + b)
        w, b = w - lr * (a @ real / len(real) + c @ fake / len(fake)), b - lr * (a.mean() + c.mean())
    return -np.mean(special.log_expit(fake @ w + b))


def ref_adam_unrolled_generator_loss(fake, real, w, b, m_w, v_w, m_b, v_b, t, steps, lr, betas=(0.5, 0.999),
                                     eps=1e-8):
    """NumPy: the hand-written gradients of ``ref_unrolled_generator_loss``, each step Adam's update written out
    (Kingma & Ba 2015, Algorithm 1) from the moments given, after t steps."""
    b1, b2 = betas
    for k in range(1, steps + 1):
        a, c = -special.expit(-(real @ w + b)), special.expit(fake @ w + b)
        g_w, g_b = a @ real / len(real) + c @ fake / len(fake), a.mean() + c.mean()
        m_w, m_b = b1 * m_w + (1 - b1) * g_w, b1 * m_b + (1 - b1) * g_b
        v_w, v_b = b2 * v_w + (1 - b2) * g_w ** 2, b2 * v_b + (1 - b2) * g_b ** 2
        c1, c2 = 1 - b1 ** (t + k), 1 - b2 ** (t + k)
        w = w - lr * (m_w / c1) / (np.sqrt(v_w / c2) + eps)
        b = b - lr * (m_b / c1) / (np.sqrt(v_b / c2) + eps)
    return -np.mean(special.log_expit(fake @ w + b))


def _adam_unroll_inputs(rng):
    """``_unroll_inputs`` and Adam's moments after a few steps: m of either sign, v > 0 of the gradients' scale."""
    return {**_unroll_inputs(rng), "m_w": 0.1 * gaussian(rng, 3), "v_w": 0.01 * np.exp(gaussian(rng, 3)),
            "m_b": np.array(0.1 * rng.standard_normal()), "v_b": np.array(0.01 * np.exp(rng.standard_normal()))}


def _unroll_inputs(rng):
    """A batch of fakes and of real points in 3-D, a logistic discriminator's weights (large enough that each step
    moves the logits by order one, so the unroll's second-order term shows in the fakes' gradient)."""
    return {"fake": gaussian(rng, B, 3), "real": gaussian(rng, B + 1, 3) + 1.0, "w": gaussian(rng, 3),
            "b": np.array(rng.standard_normal())}


CASES = (
    FunctionCase("gan/spectral_normalize", "spectral_normalize", _spectral_inputs((6, 4)), static={"n_iter": 1},
                 grad_wrt=("w",), reference=ref_spectral_normalize),
    FunctionCase("gan/spectral_normalize_conv", "spectral_normalize", _spectral_inputs((5, 3, 2, 2)),
                 static={"n_iter": 3}, grad_wrt=("w",), reference=ref_spectral_normalize),
    FunctionCase("gan/minibatch_std", "minibatch_std", lambda r: {"h": gaussian(r, B, K)}, grad_wrt=("h",),
                 reference=ref_minibatch_std),
    # progressive growing: pixel norm (NumPy's RMS), and both players at a 2-stage growth, fading in
    FunctionCase("gan/pixel_norm", "pixel_norm", lambda r: {"x": gaussian(r, B, K, scale=3.0)}, grad_wrt=("x",),
                 reference=lambda x: x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-8)),
    ModuleCase("gan/progressive_generator/fading-in", "ProgressiveGenerator", PROGRESSIVE_G,
               lambda r: {"z": gaussian(r, 3, 5, dtype="float32")}, grad_wrt=("z",), image_outputs=("<root>",),
               static={"stage": 1, "alpha": 0.3}),
    ModuleCase("gan/progressive_discriminator/fading-in", "ProgressiveDiscriminator", PROGRESSIVE_D,
               lambda r: {"x": uniform(r, 3, 1, 8, 8, dtype="float32")}, grad_wrt=("x",), image_inputs=("x",),
               static={"stage": 1, "alpha": 0.3}),
    # PacGAN's toy players: maxout units (NumPy's max over each unit's consecutive pieces), the generator normalised by
    # the batch and by converted running statistics, the discriminator on packed pairs of 2-D points
    FunctionCase("gan/maxout", "maxout", lambda r: {"h": gaussian(r, B, 4 * 3)}, static={"pieces": 3}, grad_wrt=("h",),
                 reference=lambda h, pieces: np.max(h.reshape(h.shape[0], -1, pieces), axis=-1)),
    ModuleCase("gan/pacgan_generator", "PacGANGenerator", PACGAN_G, lambda r: {"z": gaussian(r, 7, 2, dtype="float32")},
               grad_wrt=("z",), train=True),
    ModuleCase("gan/pacgan_generator/eval", "PacGANGenerator", PACGAN_G,
               lambda r: {"z": gaussian(r, 7, 2, dtype="float32")}, grad_wrt=("z",), train=False),
    ModuleCase("gan/maxout_discriminator", "MaxoutDiscriminator", PACGAN_D,
               lambda r: {"x": gaussian(r, 5, 4, dtype="float32")}, grad_wrt=("x",)),
    FunctionCase("gan/pack", "pack", lambda r: {"x": gaussian(r, B, 3)}, static={"m": 2, "axis": 1},
                 grad_wrt=("x",), reference=ref_pack),
    FunctionCase("gan/pack_channels_last", "pack", lambda r: {"x": gaussian(r, B, 2, 2, 3)},
                 static={"m": 3, "axis": -1}, grad_wrt=("x",), reference=ref_pack),
    FunctionCase("gan/unrolled_generator_loss", "unrolled_generator_loss", _unroll_inputs,
                 static={"steps": 3, "lr": 0.5}, grad_wrt=("fake", "w", "b"), reference=ref_unrolled_generator_loss),
    FunctionCase("gan/adam_unrolled_generator_loss", "adam_unrolled_generator_loss", _adam_unroll_inputs,
                 static={"t": 3, "steps": 3, "lr": 0.2}, grad_wrt=("fake", "w", "b", "m_w", "v_w"),
                 reference=ref_adam_unrolled_generator_loss),
    FunctionCase("gan/discriminator_loss", "discriminator_loss", _logits, grad_wrt=("real_logits", "fake_logits"),
                 reference=lambda real_logits, fake_logits: (-np.mean(special.log_expit(real_logits))
                                                             - np.mean(special.log_expit(-fake_logits)))),
    FunctionCase("gan/generator_loss_saturating", "generator_loss_saturating",
                 lambda r: {"fake_logits": gaussian(r, B, scale=15.0)}, grad_wrt=("fake_logits",),
                 reference=lambda fake_logits: np.mean(special.log_expit(-fake_logits))),
    FunctionCase("gan/generator_loss_nonsaturating", "generator_loss_nonsaturating",
                 lambda r: {"fake_logits": gaussian(r, B, scale=15.0)}, grad_wrt=("fake_logits",),
                 reference=lambda fake_logits: -np.mean(special.log_expit(fake_logits))),
    FunctionCase("gan/optimal_logit", "optimal_logit",
                 lambda r: {"log_p": gaussian(r, B, K), "log_q": gaussian(r, B, K)}, grad_wrt=("log_p", "log_q"),
                 reference=lambda log_p, log_q: special.logit(np.exp(log_p) / (np.exp(log_p) + np.exp(log_q)))),
    FunctionCase("gan/value_discrete", "value_discrete", _distributions, grad_wrt=("d", "p", "q"),
                 reference=lambda d, p, q: np.sum(p * np.log(d) + q * np.log(1 - d), -1)),
    FunctionCase("gan/js_discrete", "js_discrete", lambda r: {k: v for k, v in _distributions(r).items() if k != "d"},
                 grad_wrt=("p", "q"),
                 reference=lambda p, q: np.array([jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)])),
    FunctionCase("gan/gauss_log_pdf", "gauss_log_pdf",
                 lambda r: {"x": gaussian(r, B), "mean": gaussian(r, B), "std": np.exp(gaussian(r, B, scale=0.3))},
                 grad_wrt=("x", "mean", "std"), reference=lambda x, mean, std: stats.norm.logpdf(x, mean, std)),
)
