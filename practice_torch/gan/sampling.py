"""Drawing from a GAN's generator, for every adversarial topic (gan, wgan): n samples G(z[, y]) drawn from the
engine's generator, one row per class for a conditional net, and the image references of ``eval`` (the samples' FID
beside an untrained copy's and the training images'). A library module: the adapters import it, it imports no
adapter."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from practice_torch.engine.interface import Artefact
from practice_torch.gan.networks import Adversarial


def class_rows(net: Adversarial, n: int) -> tuple[torch.Tensor | None, int]:
    """(labels, per row): a conditional net draws ceil(n / K) samples per class, one row per class; else (None, ~sqrt n)."""
    if not net.num_classes:
        return None, math.ceil(math.sqrt(n))
    per_row = math.ceil(n / net.num_classes)
    return torch.arange(net.num_classes).repeat_interleave(per_row), per_row


@torch.no_grad()
def generate(net: Adversarial, n: int, generator: torch.Generator, y=None) -> torch.Tensor:
    """n samples G(z[, y]) on the CPU, z drawn from ``generator``; y (n,) labels for a conditional net."""
    device = next(net.parameters()).device
    z = torch.randn((n, net.latent_dim), generator=generator).to(device)
    return net(z, None if y is None else y.to(device)).cpu()


def mel_artefacts(samples, per_row: int, y=None) -> list[Artefact]:
    """Log-mel samples (N, 1, 64, 64) as spectrogram pictures (low frequencies at the bottom) and, through
    Griffin-Lim, as WAV files: the first 10 (a conditional GAN: the first of each class's row)."""
    from practice_torch.data.audio import mel_picture, mel_to_waveform

    heard = samples[::per_row] if y is not None else samples
    return [Artefact("samples", "images", mel_picture(samples), nrow=per_row, labels=y),
            Artefact("samples_audio", "audio", mel_to_waveform(heard[:10, 0]))]


def references(net: Adversarial, dataset: Dataset, generator: torch.Generator, samples: int | None = None
               ) -> dict[str, float]:
    """``quality.image_references`` for this net: its samples, an untrained copy's, the training images (the
    training split of ``dataset``'s data set, loaded with the run's options: ``engine.runs.sibling_split``), each as
    many as the held-out images, at most ``samples`` (eval's ``--samples``; default ``REFERENCE_SAMPLES``)."""
    from practice_torch.data.audio import mel_picture
    from practice_torch.engine.runs import sibling_split
    from practice_torch.gan.quality import REFERENCE_SAMPLES, image_references, untrained_copy

    n = min(len(dataset), samples or REFERENCE_SAMPLES)
    y = torch.arange(n) % net.num_classes if net.num_classes else None
    fresh = untrained_copy(net)
    data = dataset.run_data
    return image_references(lambda m: generate(net, m, generator, y), lambda m: generate(fresh, m, generator, y),
                            dataset, sibling_split(dataset, "train"), data.name, labels=y,
                            n=n, picture=mel_picture if data.view == "mel" else None)
