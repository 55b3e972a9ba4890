"""The VAE's samples in JAX (``practice_torch.vae.training.sample``): decoder means of z ~ N(0, I), a cVAE's one row
per class, and the hierarchical VAE's 'levels' figure (each row one draw of z2, its columns draws of z1 given it).

The prior's draws are the PyTorch sampler's, from the same generator in the same order; the decoder is the flax
twin's (``theory_jax.vae.VAE.sample``: sigmoid(logits) for a Bernoulli decoder, the Gaussian mean otherwise). Images
come out of the twin channels last and go to the artefacts as PyTorch's, (N, C, H, W)."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from practice_jax.samplers import channels_first

TRAINING_MODULES = ("tc_discriminator", "discriminator")  # FactorVAE's and VAE-GAN's: the decoder samples alone


def twin_settings(model):
    """FactorVAE's and VAE-GAN's discriminators are the training step's; the trainer's twin is the VAE without them."""
    return dataclasses.replace(model, factor_gamma=0.0, vaegan_gamma=0.0)


def check(model, net) -> None:
    """Every VAE the trainer's twin builds samples here."""


def variable_shapes(module, net, model) -> dict:
    c, h, w = net.image_shape
    y = jnp.zeros((1,), jnp.int32) if net.num_classes else None
    args = (jnp.zeros((1, h, w, c)), jnp.zeros((1, net.latent_dim))) + ((y,) if model.levels == 1 else ())
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args))


@partial(jax.jit, static_argnums=0)
def decoder_means(module, variables, z, y=None):
    """The decoder's mean at latents z (B, d) (the hierarchical VAE: the prior's standard coordinates u (B, top_dim +
    latent_dim)), y (B,) labels of a cVAE -> (B, H, W, C)."""
    return module.apply(variables, z, y, method=type(module).sample)


def class_rows(net, n: int) -> tuple[np.ndarray | None, int]:
    """(labels, per row): a cVAE ceil(n / K) samples per class, one row per class; else (None, ~sqrt n)."""
    if not net.num_classes:
        return None, math.ceil(math.sqrt(n))
    per_row = math.ceil(n / net.num_classes)
    return np.repeat(np.arange(net.num_classes), per_row), per_row


def prior_samples(twin, n: int, generator, decode=decoder_means) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(decoder means (B, C, H, W) of z ~ N(0, I) drawn from ``generator`` as PyTorch draws them, the labels, per
    row). ``decode``: the decoder (negative controls replace it)."""
    from practice_torch.vae.functions import draw_eps

    y, per_row = class_rows(twin.net, n)
    z = draw_eps((n if y is None else len(y), twin.net.latent_dim), generator).numpy()
    images = decode(twin.module, twin.variables, z, None if y is None else jnp.asarray(y))
    return channels_first(images), y, per_row


def levels(twin, generator, rows: int = 6, cols: int = 8) -> np.ndarray:
    """The hierarchical VAE's two scales (``training.levels_figure``): u (rows, cols, d) with one z2 a row and z1 at
    its prior mean in the first column -> decoder means (rows * cols, C, H, W)."""
    from practice_torch.vae.functions import draw_eps

    net = twin.net
    u = draw_eps((rows, cols, net.latent_dim), generator).numpy()
    u[:, :, :net.top_dim] = u[:, :1, :net.top_dim]
    u[:, 0, net.top_dim:] = 0.0
    return channels_first(decoder_means(twin.module, twin.variables, u.reshape(rows * cols, -1)))


def sample(twin, model, n: int, generator, examples=None) -> list:
    """'samples' (and 'levels' for the hierarchical VAE); log-mel samples as spectrogram pictures and, through
    Griffin-Lim, WAV files, as PyTorch writes them."""
    import torch

    from practice_torch.engine.interface import Artefact

    images, y, per_row = prior_samples(twin, n, generator)
    samples = torch.from_numpy(images)
    figures = [Artefact("samples", "images", samples, nrow=per_row,
                        labels=None if y is None else torch.from_numpy(y))]
    if model.levels == 2:
        figures.append(Artefact("levels", "images", torch.from_numpy(levels(twin, generator)), nrow=8))
    if not model.mel:
        return figures
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    pictures = [dataclasses.replace(a, data=mel_picture(a.data)) for a in figures]
    return pictures + [Artefact("samples_audio", "audio", mel_to_waveform(samples[::per_row][:10, 0]))]
