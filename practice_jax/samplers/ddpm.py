"""DDPM's samples in JAX (``practice_torch.ddpm.training.sample``): the reverse chain x_T -> x_0 over the run's
respaced schedule, by DDPM's ancestral step (Ho et al. 2020, Algorithm 2) or DDIM's (Song et al. 2021, eq. 12) at
``model.eta``, the predicted x_0 clipped to [-1, 1] (``model.clip_x0``), classifier-free guided (Ho & Salimans 2022,
eq. 6) at ``model.guidance_scale`` when the run is conditional.

``reverse_chain`` is the whole chain as one pure function of x_T and the noise z of every step, a ``lax.scan`` of the
step rule (``theory_jax.diffusion``: ``ddpm_step``, ``ddim_step``) over the kept steps; ``generate`` draws x_T and the
z's from the engine's generator as ``practice_torch.diffusion.sample_loop`` draws them (x_T, then one z a step from
the last kept step down to the second, none at the first), and hands them to it."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import theory_jax.diffusion as jdiff
from practice_jax.samplers import SampleError, channels_first, channels_last
from theory_jax.broadcasting import per_example


def twin_settings(model):
    """Dropout is the training step's (the denoiser samples without it)."""
    return dataclasses.replace(model, dropout=0.0)


def check(model, net) -> None:
    if model.task != "sample":
        raise SampleError(f"model.task={model.task}: practice_jax sample draws new samples (model.task=sample); "
                          "restore held-out images with python -m practice_torch sample")


def variable_shapes(module, net, model) -> dict:
    x = jnp.zeros((1, *net.shape[1:], net.shape[0]) if len(net.shape) == 3 else (1, *net.shape))
    y = jnp.zeros((1,), jnp.int32) if net.num_classes else None
    return jax.eval_shape(lambda: module.init(jax.random.key(0), x, jnp.zeros((1,), jnp.int32), y))


# 1. The step rules: x_{t-1} from x_t, the predicted noise, the schedule and z -----------------------------------
def ddpm_rule(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
    """DDPM's ancestral step (Algorithm 2), which has no eta: x_{t-1} = mu_tilde(x_t, x0_hat) + sqrt(beta_tilde) z."""
    return jdiff.ddpm_step(x_t, eps, alpha_bar_t, alpha_bar_prev, z)


STEP_RULES = {"ddpm": ddpm_rule, "ddim": jdiff.ddim_step}  # each (x_t, eps, a_t, a_prev, eta, z) -> x_{t-1}


def clipped_eps(x_t, eps, alpha_bar_t, clip: float):
    """The eps for which predict_x0 gives x0_hat clipped to [-clip, clip] (Ho et al.'s clip_denoised):
    eps' = (x_t - sqrt(a_t) clip(x0_hat)) / sqrt(1 - a_t). x_t, eps: (B, ...), alpha_bar_t: () or (B,)."""
    a = per_example(alpha_bar_t, x_t)
    x0 = jnp.clip(jdiff.predict_x0(x_t, alpha_bar_t, eps), -clip, clip)
    return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)


# 2. The noise prediction and the chain ----------------------------------------------------------------------------
def noise_prediction(module, params, x_t, t, y, y_null, w):
    """eps_theta(x_t, t[, y]); with the null labels ``y_null`` (B,), classifier-free guidance
    (1 + w) eps(x_t, t, y) - w eps(x_t, t, null) (eq. 6), both halves in one batch as PyTorch's.
    x_t: (B, ...), t: (B,) original indices -> (B, ...)."""
    if y_null is None:
        return module.apply({"params": params}, x_t, t, y)
    both = module.apply({"params": params}, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                        jnp.concatenate([y, y_null]))
    eps_cond, eps_uncond = jnp.split(both, 2)
    return jdiff.cfg_eps(eps_cond, eps_uncond, w)


@partial(jax.jit, static_argnames=("module", "step", "clip", "chains"))
def reverse_chain(module, params, x_T, zs, timesteps, alpha_bars, alpha_bars_prev, y=None, y_null=None, w=0.0,
                  eta=0.0, *, step, clip: bool, chains: int):
    """x_0 from x_T by ``step`` at each kept step i = S - 1 .. 0 (Ho et al. Algorithm 2; Song et al. eq. 12):
    1. eps = eps_theta(x_t, t_i[, y]) (guided with ``y_null``); 2. with ``clip``, the eps of x0_hat clipped to
    [-1, 1]; 3. x_{t_{i-1}} = step(x_t, eps, a_i, a_prev_i, eta, z_i).
    x_T: (B, ...) the model's space (images channels last); zs: (S, B, ...) the noise of each step (zs[0] unused by
    the last step, whose variance is 0); timesteps: (S,) original indices; alpha_bars, alpha_bars_prev: (S,)
    -> (x_0 (B, ...), the first ``chains`` chains after each step i (S, chains, ...))."""
    b = x_T.shape[0]

    def one(x, kept):
        t, a_t, a_prev, z = kept
        eps = noise_prediction(module, params, x, jnp.full((b,), t), y, y_null, w)
        if clip:
            eps = clipped_eps(x, eps, a_t, 1.0)
        x = step(x, eps, a_t, a_prev, eta, z)
        return x, x[:chains]

    return jax.lax.scan(one, x_T, (timesteps, alpha_bars, alpha_bars_prev, zs), reverse=True)


def draw_chain_noise(shape: tuple[int, ...], steps: int, generator) -> tuple[np.ndarray, np.ndarray]:
    """(x_T (B, ...), zs (S, B, ...)) from ``generator`` in ``sample_loop``'s order: x_T, then z of steps S - 1 .. 1;
    zs[0] = 0 (the last step draws none)."""
    import torch

    x_T = torch.randn(shape, generator=generator)
    zs = np.zeros((steps, *shape), np.float32)
    for i in range(steps - 1, 0, -1):
        zs[i] = torch.randn(shape, generator=generator, dtype=x_T.dtype).numpy()
    return x_T.numpy(), zs


def generate(twin, model, n: int, generator, y: np.ndarray | None = None, frames: int = 0, chains: int = 8,
             step=None) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """n samples (n, *shape) in the model's space by ``model.sampler`` over ``model.sample_steps`` respaced steps, and
    x_t of the first ``chains`` chains at about ``frames`` steps with their t (T for x_T), as
    ``practice_torch.diffusion.model.generate`` returns them (images (N, C, H, W)). ``step``: the step rule
    (default the run's; negative controls replace it)."""
    import torch

    from practice_torch.diffusion.model import sampling_schedule

    net = twin.net
    schedule = sampling_schedule(net, model.sample_steps)
    images = len(net.shape) == 3
    x_T, zs = draw_chain_noise((n, *net.shape), len(schedule), generator)
    to_twin, from_twin = (channels_last, channels_first) if images else (np.asarray, np.array)
    tables = (schedule.timesteps.numpy().astype(np.int32), schedule.alpha_bars.numpy().astype(np.float32),
              schedule.alpha_bars_prev.numpy().astype(np.float32))  # alpha_bar in x's precision, as per_example casts
    labels = None if y is None else jnp.asarray(y, jnp.int32)
    null = jnp.full((n,), net.num_classes, jnp.int32) if labels is not None and model.guidance_scale else None
    x0, states = reverse_chain(twin.module, twin.variables["params"], to_twin(x_T), to_twin(zs), *tables, labels, null,
                               model.guidance_scale, model.eta, step=step or STEP_RULES[model.sampler],
                               clip=model.clip_x0, chains=chains)
    # frames quadratically spaced in the step index, as PyTorch keeps them: more near t = 0
    keep = (torch.linspace(1, 0, frames) ** 2 * (len(schedule) - 1)).round().long().tolist() if frames else []
    keep_t = {int(schedule.timesteps[i]) for i in keep}
    kept = [i for i in range(len(schedule) - 1, -1, -1) if int(schedule.timesteps[i]) in keep_t]
    snapshots = [x_T[:chains]] + [from_twin(states[i]) for i in kept]
    return from_twin(x0), snapshots, [len(net.schedule)] + [int(schedule.timesteps[i]) for i in kept]


def sample(twin, model, n: int, generator, examples=None) -> list:
    """Images: a grid of n samples (a conditional net: one row per class), then the reverse chain x_T ... x_0 of 8 of
    them at ``chain_frames`` steps (one row per sample). 2-D: samples beside the held-out data and all chains as
    scatter panels at a few steps. Log-mel spectrograms as images and, through Griffin-Lim, WAV files."""
    import torch

    from practice_torch.ddpm.figures import vector_figures
    from practice_torch.engine.interface import Artefact

    net = twin.net
    y, per_row = None, math.ceil(math.sqrt(n))
    if net.num_classes:
        per_row = math.ceil(n / net.num_classes)
        y = np.repeat(np.arange(net.num_classes), per_row)
    vectors = len(net.shape) == 1
    x0, snapshots, times = generate(twin, model, n if y is None else len(y), generator, y, model.chain_frames,
                                    chains=n if vectors else 8)
    x0, snapshots = torch.from_numpy(x0), [torch.from_numpy(s) for s in snapshots]
    if vectors:
        return vector_figures(x0, snapshots, times, examples)
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    chain = torch.stack(snapshots, dim=1)  # (8, frames + 1, C, H, W)
    to_picture = mel_picture if model.mel else net.from_model
    figures = [Artefact("samples", "images", to_picture(x0), nrow=per_row),
               Artefact("chain", "images", to_picture(chain.reshape(-1, *net.shape)), nrow=chain.shape[1])]
    if not model.mel:
        return figures
    return figures + [Artefact("samples_audio", "audio", mel_to_waveform(x0[::per_row][:10, 0]))]
