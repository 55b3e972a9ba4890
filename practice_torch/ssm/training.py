"""The SSM's training interface (``practice_torch.models``): ``python -m practice_torch train ssm``.

Two data sets, each in the units of the project's model for it:

- ``shakespeare`` (the default): a character LM, trained as the ``language_model`` is (random ``context``-long crops
  of the 256-character windows, the next-character cross-entropy in nats, ``val_loss`` at every log step);
  ``eval`` is the language model's (nats/char, bits/char, perplexity on context-long pieces), ``sample`` writes
  continuations of ``prompt`` with every decoding rule, each token one recurrent step of the stack.
- ``spoken_digits``: a digit-conditioned model of mu-law audio, trained as ``wavenet`` is but on whole clips (the
  SSM starts from a zero state at the start of the clip, as it does when it samples); ``eval`` is WaveNet's (NLL in
  nats and bits per sample of every sample of every clip after the first), ``sample`` writes one WAV per digit,
  drawn one recurrent step per sample, and their log-mel spectrograms beside held-out recordings; ``eval`` then
  reports the project's digit classifier's accuracy on them (the samples are labelled with their digit).
- ``selective_copying`` and ``induction_heads``: Mamba's synthetic tasks (``data.sequence_tasks``), whole sequences
  with the loss on the answers only (``evaluation.sequence_tasks``); ``eval`` reports the share of answers right,
  and for induction heads at 1 to 16 times the training length; ``sample`` writes the first held-out
  sequences' answers. ``model.kind=s4d`` against ``mamba`` is the paper's time-invariant SSM against the selective one.

The network is ``layers.SSMStack``: ``kind='mamba'`` (the selective SSM, chunked scan in training) or ``'s4d'``
(the diagonal SSM, FFT convolution in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from practice_torch.data.text import WINDOW, crop  # shakespeare's window; text trains on crops of it
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.evaluation import sequence_tasks
from practice_torch.models import Artefact
from practice_torch.ssm.layers import AudioSSM, SSMStack
from practice_torch.wavenet.clips import DATA_RATE, encode  # spoken_digits' rate; waveforms to mu-law classes


@dataclass
class Config:
    """The SSM's hyperparameters: the run's ``model.*`` keys."""

    kind: Literal["mamba", "s4d"] = "mamba"
    channels: int = 128  # H, the model width
    layers: int = 7
    state: int = 4  # N: Mamba's state per channel; S4D's real state size (N/2 complex pairs)
    expand: int = 2  # Mamba: inner width E = expand * H
    conv_width: int = 4  # Mamba: the causal depthwise conv
    rank: int = 0  # Mamba: the rank R of Delta's projection; 0 = ceil(H / 16)
    imag_init: Literal["lin", "inv"] = "lin"  # S4D's initialisation of Im(A)
    # text
    context: int = 64  # training window (characters); eval scores pieces of this length, as language_model's
    strategy: Literal["greedy", "beam", "temperature", "top_k", "top_p"] = "top_p"
    prompt: str = "JULIET.\\n"  # '\n' may be written as the two characters \ and n
    top_k: int = 20
    top_p: float = 0.9
    beam: int = 4
    sample_length: int = 300  # characters generated per sample
    # audio
    sample_rate: int = 8000  # 8000 or 16000
    levels: int = 256  # mu-law classes
    sample_seconds: float = 1.0
    # both
    temperature: float = 0.8


# quick shakespeare: 7 Mamba blocks of width 128 (E = 256, N = 4): 0.77 M parameters, the language_model quick
# preset's 0.81 M; same batch, crops, optimiser and schedule but warmup 50, 620 steps: about the wall time of its 2000
# steps on one thread of a 2-core CPU (python -m benchmarks lm_curves sets the two side by side at equal CPU time).
# quick spoken_digits: 6 S4D blocks of width 64 (N = 16), whole 1 s clips at 8 kHz, batch 4, 600 steps (as many
# sample positions as WaveNet's quick preset trains on), on one thread: about 1.4 s a step.
# full: the same models wider and deeper for a GPU (not yet run on one). The Mamba LM keeps N = 8: the chunked scan
# holds a few (B, L, E, N) float32 tensors per block for the backward (about 2 GB per block at batch 64 x 256,
# E = 768, N = 8).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_char", "test NLL", "bits/char"), ("bits_per_sample", "test NLL", "bits/sample"),
            ("accuracy", "answers right", "share"))

TEXT_TRAIN = dict(batch_size=12, lr=2e-3, betas=(0.9, 0.99), warmup_steps=100, min_lr_ratio=0.1, grad_clip=1.0)
PRESETS = {
    "quick": {
        "shakespeare": Preset(Config(), TrainConfig(steps=620, checkpoint_every=155, log_every=50, val_batch=100,
                                                    samples=8, threads=1, **{**TEXT_TRAIN, "warmup_steps": 50})),
        "spoken_digits": Preset(
            Config(kind="s4d", channels=64, layers=6, state=16, temperature=1.0),
            TrainConfig(steps=600, batch_size=4, lr=3e-3, warmup_steps=50, min_lr_ratio=0.1, grad_clip=1.0,
                        weight_decay=0.0, checkpoint_every=150, log_every=50, val_batch=8, samples=10, threads=1)),
    },
    "full": {
        "shakespeare": Preset(
            Config(channels=384, layers=12, state=8, context=256),
            TrainConfig(steps=5000, checkpoint_every=1000, log_every=100, val_batch=256, samples=16, precision="bf16",
                        **{**TEXT_TRAIN, "batch_size": 64, "lr": 1e-3})),
        "spoken_digits": Preset(
            Config(kind="s4d", channels=128, layers=12, state=64, sample_rate=16000, temperature=1.0),
            TrainConfig(steps=20_000, batch_size=16, lr=2e-3, warmup_steps=500, grad_clip=1.0, weight_decay=0.0,
                        checkpoint_every=2000, log_every=200, val_batch=32, samples=10, precision="bf16")),
    },
}
# quick selective_copying and induction_heads: Mamba's synthetic tasks with the paper's 2 layers of width 64, the
# state N = 8 (the scan's cost grows with N: the paper's 16 took twice the time a step and learned slower in 250
# steps on seed 0), batches of 32, AdamW at 5e-3 on one thread (on selective copying 0.35 of the answers right after
# 500 steps where 2e-3 had 0.13). S4D at the same size: --set model.kind=s4d --set model.channels=144 --set
# model.state=16 (57k parameters against Mamba's 62k).
TASK_MODEL = Config(channels=64, layers=2, state=8)
PRESETS["quick"] |= sequence_tasks.task_presets(lambda length: replace(TASK_MODEL, context=length), lr=5e-3)
default_config = preset_config("ssm", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("kind", "channels", "layers", "state", "expand", "conv_width", "rank", "sample_rate", "levels")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("context", "strategy", "prompt", "temperature", "top_k", "top_p", "beam", "sample_length", "sample_seconds")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("channels", "layers", "state", "expand", "conv_width", "top_k", "beam", "sample_length",
                           "sample_rate", "sample_seconds", "temperature"), "positive"),
          **dict.fromkeys(("context", "levels"), "at least 2"), "rank": "at least 0", "top_p": "in (0, 1]"}


def build(config: Config, data) -> SSMStack:
    """The SSM for ``shakespeare`` windows (a character LM) or ``spoken_digits`` waveforms (mu-law, digit-conditioned).
    One line (ValueError) for a combination it cannot build."""
    if min(config.channels, config.layers, config.state, config.expand, config.conv_width) < 1 or config.rank < 0:
        raise ValueError("model.channels, layers, state, expand and conv_width must be positive, rank >= 0")
    if config.kind == "s4d" and config.state % 2:
        raise ValueError(f"model.state={config.state} is odd: S4D keeps N/2 complex conjugate pairs, use an even N")
    options = dict(channels=config.channels, layers=config.layers, kind=config.kind, state=config.state,
                   imag_init=config.imag_init, expand=config.expand, conv_width=config.conv_width,
                   rank=config.rank or None)
    if data.name in sequence_tasks.TASKS:
        sequence_tasks.check_context("ssm", config.context, data.name, data.shape[0])
        return sequence_tasks.mark(SSMStack(data.num_classes, context=config.context, **options), data.name)
    if data.modality == "text" and data.name == "shakespeare":
        if not 2 <= config.context <= WINDOW:
            raise ValueError(f"model.context must be in 2..{WINDOW} (the data window), got {config.context}")
        from practice_torch.language_model.functions import check_strategy

        check_strategy(config.strategy)
        return SSMStack(data.num_classes, context=config.context, **options)
    if data.modality == "audio" and data.shape == (1, DATA_RATE):
        if DATA_RATE % config.sample_rate or config.sample_rate < 1000:
            raise ValueError(f"model.sample_rate must divide {DATA_RATE} (8000 or 16000), got {config.sample_rate}")
        if config.levels < 2:
            raise ValueError(f"model.levels is a number of mu-law classes (>= 2), got {config.levels}")
        return AudioSSM(config.levels, config.sample_rate, data.num_classes, **options)
    raise ValueError(f"the SSM trains on shakespeare (text) or spoken_digits (audio, leave data.view unset), "
                     f"not {data.name} {data.shape}")


def draw_noise(net: SSMStack, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Text: the start of each example's context-long crop of its window, (n,) int64 (as language_model's).
    Audio and the synthetic tasks: nothing (whole clips and sequences)."""
    if net.modality == "audio" or sequence_tasks.task_of(net):
        return {}
    return {"offset": torch.randint(0, WINDOW - net.context + 1, (n,), generator=generator)}


def loss(net: SSMStack, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Mean next-token cross-entropy (nats); terms: bits/char (text) or bits/sample (audio). A synthetic task: the
    cross-entropy of its answers (``sequence_tasks.answer_loss``)."""
    x, y = batch
    if sequence_tasks.task_of(net):
        return sequence_tasks.answer_loss(net(x), y), {}
    if net.modality == "audio":
        nll = clip_nll(net, x, y)
        return nll, {"bits_per_sample": nll.detach() / math.log(2)}
    x, y = crop(x, noise["offset"], net.context), crop(y, noise["offset"], net.context)
    logits = net(x)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    return nll, {"bits_per_char": nll.detach() / math.log(2)}


def clip_nll(net: SSMStack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-sample cross-entropy (nats) of whole clips, teacher-forced from a zero state and told the digit.
    x: (B, 1, 16000) waveforms, y: (B,) digits -> ()."""
    q = encode(net, x)  # (B, T) mu-law classes at net.sample_rate
    logits = net(q[:, :-1], y.to(q.device))
    return F.cross_entropy(logits.reshape(-1, net.levels).float(), q[:, 1:].reshape(-1))


def validate(net: SSMStack, config: Config, batch) -> dict[str, torch.Tensor]:
    """val_loss: held-out cross-entropy (nats per token) of the first ``context`` characters of each window (text) or
    of whole clips (audio) or of a synthetic task's answers; the engine calls it in eval mode at every log step."""
    if sequence_tasks.task_of(net):
        return sequence_tasks.validation_loss(net, batch)
    if net.modality == "audio":
        return {"val_loss": clip_nll(net, *batch)}
    x, y = (t[:, : net.context] for t in batch)
    return {"val_loss": F.cross_entropy(net(x).reshape(-1, net.vocab_size).float(), y.reshape(-1))}


# Sampling ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_audio(net: SSMStack, y: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0,
                   first: int | None = None) -> torch.Tensor:
    """Ancestral sampling, one recurrent step per sample: q_0 = ``first`` (default the silence class), then q_{t+1}
    by the inverse CDF of softmax(logits / temperature) at ``uniforms[:, t]``. y: (B,), uniforms: (B, T) ->
    (B, T + 1) int64."""
    batch, length = uniforms.shape
    q = torch.full((batch, length + 1), net.levels // 2 if first is None else first, dtype=torch.long,
                   device=uniforms.device)
    state, columns = net.init_state(batch), uniforms.double().T.contiguous()
    for t in range(length):
        logits, state = net.step(q[:, t], state, y)
        cdf = torch.softmax(logits.double() / temperature, -1).cumsum(-1)
        q[:, t + 1] = torch.searchsorted(cdf, columns[t, :, None])[:, 0].clamp_max(net.levels - 1)
    return q


@torch.no_grad()
def sample(net: SSMStack, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """Text: 'samples' (n continuations of the prompt with ``strategy``) and 'strategies' (one per decoding rule), as
    language_model's. Audio: 'samples', ceil(n / 10) clips per digit as WAV, and 'spectrograms' (log-mel, above
    held-out recordings of the same digits). A synthetic task: 'answers' of the held-out ``examples``."""
    if sequence_tasks.task_of(net):
        return sequence_tasks.answers_artefact(net, examples)
    if net.modality == "text":
        from practice_torch.language_model.text import decoding_artefacts

        return decoding_artefacts(net, config, n, generator)
    from practice_torch.data.audio import DIGITS
    from practice_torch.wavenet.clips import real_examples, spectrogram_figure
    from practice_torch.wavenet.functions import mu_law_decode

    device = next(net.parameters()).device
    per_digit = max(1, math.ceil(n / net.num_classes))
    y = torch.arange(net.num_classes).repeat_interleave(per_digit)
    uniforms = torch.rand(len(y), int(config.sample_seconds * net.sample_rate) - 1, generator=generator,
                          dtype=torch.float64)
    q = generate_audio(net, y.to(device), uniforms.to(device), config.temperature)
    waves = mu_law_decode(q.cpu(), net.levels).float()
    names = list(DIGITS[: net.num_classes]) if net.num_classes <= len(DIGITS) else [str(d) for d in range(10)]
    figure = spectrogram_figure("spectrograms", waves[::per_digit], net.sample_rate, names,
                                real_examples(net, examples, device), title=f"SSM ({net.blocks[0].kind}) samples")
    return [Artefact("samples", "audio", waves, sample_rate=net.sample_rate, labels=y), figure]


# Evaluation --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: SSMStack, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Text: language_model's evaluation (every character of the split in context-long pieces: nats/char,
    bits/char, perplexity). Audio: WaveNet's (every sample of every clip after the first given its whole past and
    the digit: nats and bits per sample, and the entropy of the split's class histogram). A synthetic task: the share
    of answers right (``sequence_tasks.task_metrics``)."""
    if sequence_tasks.task_of(net):
        return sequence_tasks.task_metrics(net, dataset)
    if net.modality == "text":
        from practice_torch.language_model.text import held_out_bits

        return held_out_bits(net, config.context, dataset)
    from practice_torch.wavenet.clips import evaluate_clips

    return evaluate_clips(net, dataset, lambda q, y: net(q, y).transpose(1, 2))
