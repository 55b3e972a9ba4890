"""The GAN's samples in JAX (``practice_torch.gan.training.sample``): G(z[, y]) with z ~ N(0, I), a conditional
generator's one row per class, the DCGAN's batch normalisation by its running statistics (torch's ``eval()``), as a
trained generator samples.

z is drawn from the engine's generator as ``practice_torch.gan.sampling.generate`` draws it; the generator is the flax
twin's (``theory_jax.gan.Adversarial``, ``train=False``). Images, 2-D scatters and log-mel spectrograms go to the
artefacts as PyTorch writes them."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from practice_jax.samplers import SampleError, channels_first


def twin_settings(model):
    """The game's settings the trainer's twin refuses are the training step's (how the players take turns, the
    discriminator's learning rate, the look-ahead's optimizer); the generator is the same without them."""
    return dataclasses.replace(model, discriminator_steps=max(model.discriminator_steps, 1), discriminator_lr=None,
                               unroll_optimizer="sgd")


def check(model, net) -> None:
    if model.progressive:
        raise SampleError("practice_jax sample gan draws from fixed players, not grown ones (model.progressive=true): "
                          "sample with python -m practice_torch sample")


def variable_shapes(module, net, model) -> dict:
    from theory_jax.gan import Adversarial

    x = jnp.zeros((1, *net.shape[1:], net.shape[0]) if len(net.shape) == 3 else (1, *net.shape))
    y = jnp.zeros((1,), jnp.int32) if net.num_classes else None
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, net.latent_dim)), x, y,
                                              method=Adversarial.init_all))


@partial(jax.jit, static_argnums=(0, 4))
def generate(module, variables, z, y=None, train: bool = False):
    """G(z, y): z (B, d), y (B,) labels of a conditional generator -> (B, *example), images channels last; ``train``:
    the batch normalisation by the batch (for negative controls) instead of the running statistics."""
    if train:
        return module.apply(variables, z, y, train=True, mutable=["batch_stats"])[0]
    return module.apply(variables, z, y, train=False)


def draw(twin, n: int, generator, train: bool = False) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(n samples (B, *example), images (B, C, H, W); the labels; per row), z drawn from ``generator`` as PyTorch
    draws it (``gan.sampling.generate``)."""
    import torch

    from practice_torch.gan.sampling import class_rows

    y, per_row = class_rows(twin.net, n)
    z = torch.randn((n if y is None else len(y), twin.net.latent_dim), generator=generator).numpy()
    x = generate(twin.module, twin.variables, z, None if y is None else jnp.asarray(y.numpy()), train)
    x = channels_first(x) if x.ndim == 4 else np.array(x)
    return x, None if y is None else y.numpy(), per_row


def sample(twin, model, n: int, generator, examples=None) -> list:
    """Images: a grid of about n samples (a conditional GAN: one row per class, ``labels`` set). 2-D: a scatter of n
    samples beside the held-out ``examples``."""
    import torch

    from practice_torch.engine.interface import Artefact
    from practice_torch.gan.sampling import mel_artefacts
    from practice_torch.plots import scatter_figure_2d

    x, y, per_row = draw(twin, n, generator)
    samples, labels = torch.from_numpy(x), None if y is None else torch.from_numpy(y)
    if model.mel:
        return mel_artefacts(samples, per_row, labels)
    if len(twin.net.shape) == 3:
        return [Artefact("samples", "images", samples, nrow=per_row, labels=labels)]
    data = samples if examples is None else examples[0]
    return [scatter_figure_2d("samples", samples, data, title=f"GAN samples ({model.generator_loss})")]
