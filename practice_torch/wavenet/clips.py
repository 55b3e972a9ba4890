"""Mu-law clips of spoken digits, for any model of them (``wavenet``; ``ssm`` on audio): the waveforms' mu-law classes
at a model's rate, held-out recordings to hear beside samples, spectrogram pictures and the clip likelihoods of
``eval``. A library module: the adapters import it, it imports no adapter."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from practice_torch.wavenet.functions import mu_law_decode, mu_law_encode
from practice_torch.wavenet.networks import WaveNet

DATA_RATE = 16_000


def encode(net: WaveNet, x: torch.Tensor) -> torch.Tensor:
    """Waveforms at 16 kHz (B, 1, 16000) -> mu-law classes at ``net.sample_rate`` (B, T) int64."""
    import torchaudio

    wave = x[:, 0].float()
    if net.sample_rate != DATA_RATE:
        wave = torchaudio.functional.resample(wave, DATA_RATE, net.sample_rate)
    return mu_law_encode(wave.clamp(-1, 1), net.levels)


def spectrogram_figure(name: str, waves: torch.Tensor, sample_rate: int, labels: list[str], real: torch.Tensor | None,
                       title: str = "WaveNet samples"):
    """Log-mel spectrograms (``practice_torch.data.audio.log_mel`` at 16 kHz) of waves (N, T), one panel each, with
    a second row of ``real`` (N, T) recordings when given."""
    import torchaudio

    from practice_torch.data.audio import log_mel, mel_picture
    from practice_torch.plots import figure_artefact, new_figure

    groups = [waves] if real is None else [waves, real]
    cols = min(5, len(labels))
    per_group = math.ceil(len(labels) / cols)
    fig, _ = new_figure(1)
    fig.clf()
    fig.set_size_inches(1.7 * cols, 1.9 * per_group * len(groups))
    axes = fig.subplots(per_group * len(groups), cols, squeeze=False)
    for g, group in enumerate(groups):
        wave = group.float() if sample_rate == DATA_RATE else torchaudio.functional.resample(group.float(), sample_rate,
                                                                                              DATA_RATE)
        pictures = mel_picture(log_mel(F.pad(wave, (0, max(0, DATA_RATE - wave.shape[-1])))[..., :DATA_RATE]))
        for i, label in enumerate(labels):
            ax = axes[g * per_group + i // cols, i % cols]
            ax.imshow(pictures[i].numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if g == 0 else f"real {label}", fontsize=8)
    fig.suptitle(f"{title}, log-mel over 1 s" + ("; below: held-out recordings" if real is not None else ""),
                 fontsize=9)
    fig.tight_layout()
    return figure_artefact(name, fig)


def real_examples(net: WaveNet, examples, device) -> torch.Tensor | None:
    """One held-out recording per digit, mu-law encoded and decoded at the model's rate: (num_classes, T); taken from
    ``examples`` when they hold every digit, else from the validation split; None without data."""
    from practice_torch.data import DatasetMissing
    from practice_torch.data.audio import load_spoken_digits

    if examples is None or len(set(examples[1].tolist())) < net.num_classes:
        try:
            val = load_spoken_digits("val")
        except DatasetMissing:
            return None
        first = {}
        for i, label in enumerate(val.labels):
            first.setdefault(label, i)
        if len(first) < net.num_classes:
            return None
        examples = (torch.stack([val[first[d]][0] for d in range(net.num_classes)]), torch.arange(net.num_classes))
    x, labels = examples
    pick = [int((labels == d).nonzero()[0, 0]) for d in range(net.num_classes)]
    return mu_law_decode(encode(net, x[pick].to(device)).cpu(), net.levels).float()


def evaluate_clips(net, dataset: Dataset, logits_of) -> dict[str, float]:
    """``evaluate`` for any model of mu-law clips: ``logits_of(q, y)`` maps classes q: (B, T - 1) and labels y: (B,)
    to next-sample logits (B, levels, T - 1); ``net`` gives ``sample_rate``, ``levels`` and the device."""
    device = next(net.parameters()).device
    total, count = 0.0, 0
    histogram = torch.zeros(net.levels, dtype=torch.float64)
    for x, y in DataLoader(dataset, batch_size=16):
        q = encode(net, x.to(device))
        logits = logits_of(q[:, :-1], y.to(device))
        total += F.cross_entropy(logits.float(), q[:, 1:], reduction="sum").item()
        count += q[:, 1:].numel()
        histogram += torch.bincount(q[:, 1:].reshape(-1).cpu(), minlength=net.levels).double()
    nats = total / max(count, 1)
    p = histogram / histogram.sum().clamp_min(1)
    marginal = -(p[p > 0] * p[p > 0].log()).sum().item() / math.log(2)
    return {"nats_per_sample": nats, "bits_per_sample": nats / math.log(2), "marginal_bits": marginal,
            "samples": count, "clips": len(dataset)}
