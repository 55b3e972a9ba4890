"""WaveNet's training interface (``practice_torch.models``): ``python -m practice_torch train wavenet``.

Data: ``spoken_digits`` waveforms (1 s at 16 kHz), resampled to ``sample_rate`` (8 kHz by default; torchaudio's
sinc resampler) and mu-law encoded into ``levels`` classes. Each training example is a random ``crop + 1``-sample
piece of a clip, its start drawn by the engine (the model's noise) from the middle ``centre`` fraction of the clip,
where the word is (clips are centred words padded with silence). Loss: the mean next-sample cross-entropy in nats
under teacher forcing, conditioned on the digit.

``sample`` writes one clip per digit (WAV at ``sample_rate``, ``sample_seconds`` long, cached-queue sampling) and a
figure of their log-mel spectrograms (with held-out recordings of the same digits beside them when given). ``eval``:
the test NLL of every sample of every clip after the first, each predicted from the whole past of its clip, in nats
and bits per sample, beside the entropy of the split's class histogram (the best model blind to the past).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.models import Artefact
from practice_torch.wavenet.clips import DATA_RATE, encode, evaluate_clips, real_examples, spectrogram_figure
from practice_torch.wavenet.functions import mu_law_decode
from practice_torch.wavenet.networks import WaveNet


@dataclass
class Config:
    """WaveNet's hyperparameters: the run's ``model.*`` keys."""

    sample_rate: int = 8000  # 8000 or 16000 (the data's rate)
    levels: int = 256  # mu-law classes (mu = levels - 1)
    channels: int = 32  # residual channels
    skip: int = 64  # skip channels
    kernel: int = 2
    cycle: int = 11  # dilations 1, 2, ..., 2^cycle ...
    repeats: int = 2  # ... repeated this many times (receptive field 8191 samples: a whole word at 8 kHz)
    crop: int = 4096  # training positions per example (teacher forcing): a word's start or end with silence
    centre: float = 0.6  # crops start within the middle fraction of the clip
    sample_seconds: float = 1.0
    temperature: float = 1.0
    amplitude: bool = True  # add the sample's decoded amplitude (a 1x1 projection) to its class embedding
    clock: int = 6  # sine/cosine pairs of the time since the clip start (periods 2 s ... 62.5 ms) added to the input

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(self.cycle + 1)) * self.repeats


# quick: 8 kHz, 24 blocks of 32 channels (dilations 1..2048 twice: receptive field 8191 samples = 1.02 s, a whole word),
# batch 2 crops of 4096, on one thread. A receptive field of 128 ms (1..256 twice) gives a lower NLL per CPU second but
# words that do not end: no sample position then knows how long the word has lasted.
# full: 16 kHz, 26 blocks of 64 channels (1..4096 twice: 1.02 s), batch 16 crops of 8192, GPU.
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_sample", "test NLL", "bits/sample"),)

PRESETS = {
    "quick": dict.fromkeys(("spoken_digits", "*"), Preset(
        Config(),
        TrainConfig(steps=2000, batch_size=2, lr=3e-3, warmup_steps=50, min_lr_ratio=0.1, grad_clip=1.0,
                    checkpoint_every=500, log_every=50, samples=10, threads=1))),
    "full": dict.fromkeys(("spoken_digits", "*"), Preset(
        Config(sample_rate=16000, channels=64, skip=256, cycle=12, repeats=2, crop=8192),
        TrainConfig(steps=50_000, batch_size=16, lr=1e-3, warmup_steps=500, grad_clip=1.0, checkpoint_every=5000,
                    log_every=200, samples=10, precision="bf16"))),
}
default_config = preset_config("wavenet", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("sample_rate", "levels", "channels", "skip", "kernel", "cycle", "repeats", "amplitude", "clock")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("sample_seconds", "temperature")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("sample_rate", "channels", "skip", "repeats", "crop", "sample_seconds", "temperature"),
                          "positive"),
          **dict.fromkeys(("levels", "kernel"), "at least 2"), **dict.fromkeys(("cycle", "clock"), "at least 0"),
          "centre": "in (0, 1]"}


def build(config: Config, data) -> WaveNet:
    """The WaveNet for ``spoken_digits`` waveforms (view wave), conditioned on the digit."""
    if data.modality != "audio" or data.shape != (1, DATA_RATE):
        raise ValueError(f"WaveNet trains on spoken_digits waveforms (1, {DATA_RATE}), not {data.name} {data.shape}"
                         " (leave data.view unset)")
    if DATA_RATE % config.sample_rate or config.sample_rate < 1000:
        raise ValueError(f"model.sample_rate must divide {DATA_RATE} (8000 or 16000), got {config.sample_rate}")
    if not 1 <= config.crop < config.sample_rate or not 0 < config.centre <= 1:
        raise ValueError(f"model.crop must be in 1..{config.sample_rate - 1} and model.centre in (0, 1]")
    if min(config.channels, config.skip, config.repeats, config.kernel - 1, config.levels - 1) < 1 or config.cycle < 0:
        raise ValueError("model.channels, skip and repeats must be positive, kernel >= 2, levels >= 2, cycle >= 0")
    if config.clock < 0:
        raise ValueError(f"model.clock is a number of sine/cosine pairs (0 for no clock), got {config.clock}")
    net = WaveNet(config.levels, config.channels, config.skip, data.num_classes, config.kernel, config.dilations,
                  config.clock, config.sample_rate, config.amplitude)
    return net




def draw_noise(net: WaveNet, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Each example's crop start in the middle ``centre`` of the clip: (n,) int64."""
    span = net.sample_rate - config.crop - 1
    low = int(span * (1 - config.centre) / 2)
    return {"offset": torch.randint(low, span - low + 1, (n,), generator=generator)}


def loss(net: WaveNet, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Mean next-sample cross-entropy (nats) over the crops' ``crop`` positions; terms: bits per sample."""
    x, y = batch
    q = encode(net, x)
    start = noise["offset"].to(q.device)
    q = torch.gather(q, 1, start[:, None] + torch.arange(config.crop + 1, device=q.device))
    logits = net(q[:, :-1], y.to(q.device), start)
    nll = F.cross_entropy(logits.float(), q[:, 1:])
    return nll, {"bits_per_sample": nll.detach() / math.log(2)}


# Sampling ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample(net: WaveNet, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': ceil(n / 10) clips per digit, WAV at ``sample_rate`` (cached sampling, on one thread);
    'spectrograms': their log-mel pictures (above held-out recordings of the same digits when ``examples`` hold
    them)."""
    from practice_torch.data.audio import DIGITS

    device = next(net.parameters()).device
    per_digit = max(1, math.ceil(n / net.num_classes))
    y = torch.arange(net.num_classes).repeat_interleave(per_digit)
    length = int(config.sample_seconds * net.sample_rate) - 1
    uniforms = torch.rand(len(y), length, generator=generator, dtype=torch.float64)
    q = net.generate(y.to(device), uniforms.to(device), temperature=config.temperature)  # on the run's train.threads
    waves = mu_law_decode(q.cpu(), net.levels).float()
    first = waves[::per_digit]
    real = real_examples(net, examples, device)
    names = list(DIGITS[: net.num_classes]) if net.num_classes <= len(DIGITS) else [str(d) for d in range(10)]
    return [Artefact("samples", "audio", waves, sample_rate=net.sample_rate, labels=y),
            spectrogram_figure("spectrograms", first, net.sample_rate, names, real)]




# Evaluation --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: WaveNet, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Test NLL of samples 1..T-1 of every clip given its whole past and label (one causal forward per clip):
    nats and bits per sample; ``marginal_bits``: the entropy of the split's mu-law class histogram."""
    return evaluate_clips(net, dataset, net)


