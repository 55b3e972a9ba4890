"""The language model's training interface (``practice_torch.models``): ``python -m practice_torch train language_model``.

Data: ``shakespeare`` windows of 256 characters; each training example is a random ``context``-long crop of one (the
crop offsets are the model's noise, drawn by the engine), so a batch is nanoGPT's "random windows of block_size".
Loss: the mean next-character cross-entropy in nats (``decoding.cross_entropy``; fused ``F.cross_entropy`` here,
the same number). ``validate`` scores the first ``context`` characters of ``train.val_batch`` held-out windows at
every log step (the engine cycles through the validation split) and logs ``val_loss``: the validation curve of the
run, in ``loss.png`` and ``metrics.jsonl``.

``sample`` writes continuations of ``prompt`` with ``strategy`` (``--set model.strategy=top_p --set
model.prompt='JULIET.\\n'``), one continuation per strategy side by side, and the BPE tokeniser learned from the
training text (``bpe_merges`` merges, as JSON, with a sample cut into its tokens). ``eval`` reports the cross-entropy
of the split in nats/char, bits/char and perplexity, every character predicted from up to ``context - 1`` before it.

On Mamba's synthetic tasks (``selective_copying``, ``induction_heads``: ``data.sequence_tasks``) the Transformer
reads whole sequences with the loss on the answers only, and ``eval`` reports the share of answers right, for
induction heads also at 1 to 16 times the training length (``evaluation.sequence_tasks``); the quick presets use
rotary positions, the paper's MHA-RoPE (learned ones cannot read past the training length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from practice_torch.data.text import WINDOW, crop
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.evaluation import sequence_tasks
from practice_torch.language_model.functions import check_strategy
from practice_torch.language_model.networks import LanguageModel, build_language_model
from practice_torch.language_model.text import bpe_artefacts, decoding_artefacts, held_out_bits
from practice_torch.models import Artefact


@dataclass
class Config:
    """The language model's hyperparameters: the run's ``model.*`` keys."""

    architecture: Literal["transformer", "lstm"] = "transformer"
    context: int = 64  # training window (and the Transformer's maximum context)
    dim: int = 128  # embedding / model width (the LSTM's hidden size)
    layers: int = 4
    heads: int = 4  # transformer only
    dropout: float = 0.0
    tie: bool = True  # transformer: output head = token embedding^T
    position: Literal["learned", "sinusoidal", "rope", "none"] = "learned"  # transformer only
    # sampling and evaluation (sample/eval accept --set model.KEY=VALUE for these)
    strategy: Literal["greedy", "beam", "temperature", "top_k", "top_p"] = "top_p"
    prompt: str = "JULIET.\\n"  # '\n' may be written as the two characters \ and n
    temperature: float = 0.8
    top_k: int = 20
    top_p: float = 0.9
    beam: int = 4
    sample_length: int = 300  # characters generated per sample
    bpe_merges: int = 256  # merges of the BPE tokeniser written with the samples; 0 = none


# quick: nanoGPT's shakespeare_char CPU size (4 layers, 4 heads, width 128, context 64, dropout 0, warmup 100 and cosine
# decay to 0.1 lr, beta2 0.99, batch 12, 2000 steps) but lr 2e-3 (better than nanoGPT's 1e-3 here: validation 2.05 vs
# 2.13 nats/char at step 850), on one thread (two threads are slower on a shared 2-core machine), 100 held-out windows
# scored at each log step; ``--set model.architecture=lstm --set model.dim=256 --set model.layers=2``: an LSTM.
# full: a 6 x 384 Transformer with context 256 (GPU), its step under CUDA graphs (reduce-overhead: on an H200 5000
# steps took 36 s of training against 82 s in the default mode, the step bound by the host's kernel launches).
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("bits_per_char", "test NLL", "bits/char"), ("accuracy", "answers right", "share"))

PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=2000, batch_size=12, lr=2e-3, betas=(0.9, 0.99), warmup_steps=100, min_lr_ratio=0.1,
                    grad_clip=1.0, checkpoint_every=500, log_every=50, val_batch=100, samples=8, threads=1))},
    "full": {"shakespeare": Preset(
        Config(context=256, dim=384, layers=6, heads=6, dropout=0.2),
        TrainConfig(steps=5000, batch_size=64, lr=1e-3, betas=(0.9, 0.99), warmup_steps=100, min_lr_ratio=0.1,
                    grad_clip=1.0, checkpoint_every=1000, log_every=100, val_batch=256, samples=16,
                    precision="bf16", compile=True, compile_mode="reduce-overhead"))},
}
# quick selective_copying and induction_heads: a 2-layer Transformer of width 48 (4 heads, rotary positions: 57k
# parameters, the task SSMs' size), trained as the ssm's quick task presets are but at lr 2e-3 (at 5e-3 it had 0.45 of
# the copies right after 1 500 steps, at 2e-3 and width 64 0.51 after 1 000).
TASK_MODEL = Config(dim=48, layers=2, heads=4, position="rope")
PRESETS["quick"] |= sequence_tasks.task_presets(lambda length: replace(TASK_MODEL, context=length), lr=2e-3)
default_config = preset_config("language_model", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("architecture", "context", "dim", "layers", "heads", "tie", "position",)
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("strategy", "prompt", "temperature", "top_k", "top_p", "beam", "sample_length", "bpe_merges")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("dim", "layers", "heads", "temperature", "top_k", "beam", "sample_length"), "positive"),
          "context": "at least 2", "bpe_merges": "at least 0", "dropout": "in [0, 1)", "top_p": "in (0, 1]"}


def build(config: Config, data) -> LanguageModel:
    """The character model for a text data set of windows (``shakespeare``), or for a synthetic task's sequences
    (``sequence_tasks.TASKS``, context their length); its val split feeds ``val_loss``."""
    tasks = sequence_tasks.TASKS
    if data.name in tasks:
        sequence_tasks.check_context("language_model", config.context, data.name, data.shape[0])
    elif data.modality != "text" or data.name != "shakespeare":
        raise ValueError(f"the character language model trains on shakespeare windows or {' or '.join(tasks)}, "
                         f"not {data.name}")
    if not 2 <= config.context <= WINDOW:
        raise ValueError(f"model.context must be in 2..{WINDOW} (the data window), got {config.context}")
    if min(config.dim, config.layers) < 1:
        raise ValueError("model.dim and model.layers must be positive")
    check_strategy(config.strategy)
    net = build_language_model(config.architecture, data.num_classes, config.context, config.dim, config.layers,
                               config.heads, config.dropout, config.tie, config.position)
    return sequence_tasks.mark(net, data.name) if data.name in tasks else net


def draw_noise(net: LanguageModel, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The start of each example's context-long crop of its 256-window: (n,) int64 in 0..256 - context. A
    synthetic task's sequences are read whole: nothing."""
    if sequence_tasks.task_of(net):
        return {}
    return {"offset": torch.randint(0, WINDOW - net.context + 1, (n,), generator=generator)}


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """bf16 logits (under autocast) in float32 for the softmax; float32 and float64 as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def loss(net: LanguageModel, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """Mean next-character cross-entropy (nats) on the crops; terms: bits/char. A synthetic task: the cross-entropy
    of its answers (``sequence_tasks.answer_loss``)."""
    x, y = batch
    if sequence_tasks.task_of(net):
        return sequence_tasks.answer_loss(net(x), y), {}
    x, y = crop(x, noise["offset"], net.context), crop(y, noise["offset"], net.context)
    logits = net(x)
    nll = F.cross_entropy(at_least_float32(logits.reshape(-1, logits.shape[-1])), y.reshape(-1))
    return nll, {"bits_per_char": nll.detach() / math.log(2)}


def validate(net: LanguageModel, config: Config, batch) -> dict[str, torch.Tensor]:
    """val_loss: the cross-entropy (nats/char) of the first ``context`` characters of held-out windows (x, y): (B, 256)
    each, every one predicted from the characters before it in its piece; the engine calls it in eval mode."""
    x, y = (t[:, : net.context] for t in batch)
    logits = net(x)
    return {"val_loss": F.cross_entropy(at_least_float32(logits.reshape(-1, logits.shape[-1])), y.reshape(-1))}


# Sampling ----------------------------------------------------------------------------------------------------------






@torch.no_grad()
def sample(net: LanguageModel, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """'samples': n continuations with ``config.strategy``; 'strategies': one per decoding rule
    (``text.decoding_artefacts``); 'bpe_tokenizer' and 'bpe_sample': the BPE tokeniser learned from the training text
    and a sample cut into its tokens. A synthetic task: 'answers' of the held-out ``examples``."""
    if sequence_tasks.task_of(net):
        return sequence_tasks.answers_artefact(net, examples)
    artefacts = decoding_artefacts(net, config, n, generator)
    if config.bpe_merges:
        artefacts += bpe_artefacts(config.bpe_merges, artefacts[0].data[0])
    return artefacts


# Evaluation --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: LanguageModel, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """``text.held_out_bits``: the cross-entropy of every character of the split in context-long pieces. A synthetic
    task: the share of answers right (``sequence_tasks.task_metrics``)."""
    if sequence_tasks.task_of(net):
        return sequence_tasks.task_metrics(net, dataset)
    return held_out_bits(net, config.context, dataset)
