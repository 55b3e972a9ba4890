"""Training and scoring a causal sequence model on Mamba's synthetic tasks (``data.sequence_tasks``), shared by the
models that read them: the SSM (S4D, Mamba) and the language model's Transformer.

A net built for a task carries the task's name (``mark``): its loss reads whole sequences (no crops of windows) and
counts only the answers (``answer_loss``); ``task_metrics`` scores the test split (``accuracy``: the share of answers
right, ``sequence_accuracy``: of sequences with every answer right) and, for induction heads, test sequences of 2 to
16 times the training length (``accuracy_<length>``), the paper's Table 2 scaled down; a length a net cannot read
(a Transformer's learned position table ends at its training length) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from practice_torch.data.sequence_tasks import COPY_LENGTH, INDUCTION_LENGTH, PAPER_INDUCTION_LENGTH
from practice_torch.data.text import IGNORE
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.interface import Artefact
from practice_torch.engine.presets import Preset

TASKS = ("selective_copying", "induction_heads", "induction_heads_256")
LENGTH_FACTORS = (2, 4, 8, 16)  # induction heads is tested at these multiples of its training length too
TOKENS_PER_BATCH = 16_384  # scoring batches of about this many tokens, whatever the length


def task_presets(model_at: Callable[[int], Any], lr: float) -> dict[str, Preset]:
    """A model's quick presets on the tasks: ``model_at(length)``, its configuration for sequences of that length;
    batches of 32, AdamW (``lr``, betas 0.9/0.98, weight decay 0.1) with warmup 100 and cosine decay to 0.1 of it,
    one thread; 2 000 steps of selective copying, 1 000 of induction heads (at 64 tokens, or the paper's 256)."""
    train = dict(batch_size=32, lr=lr, betas=(0.9, 0.98), weight_decay=0.1, warmup_steps=100, min_lr_ratio=0.1,
                 grad_clip=1.0, val_batch=200, samples=8, threads=1)
    return {"selective_copying": Preset(model_at(COPY_LENGTH),
                                        TrainConfig(steps=2000, checkpoint_every=500, log_every=100, **train)),
            **{name: Preset(model_at(length), TrainConfig(steps=1000, checkpoint_every=250, log_every=50, **train))
               for name, length in (("induction_heads", INDUCTION_LENGTH),
                                    ("induction_heads_256", PAPER_INDUCTION_LENGTH))}}


def mark(net: nn.Module, task: str) -> nn.Module:
    """``net`` with the name of the task it reads (what ``task_of`` returns)."""
    net.task = task
    return net


def task_of(net: nn.Module) -> str | None:
    """The synthetic task ``net`` was built for, or None (a net for shakespeare or audio)."""
    return getattr(net, "task", None)


def check_context(model: str, context: int, task: str, length: int) -> None:
    """One line (ValueError) unless the model's context is the task's length (what the net is built for)."""
    if context != length:
        raise ValueError(f"{task} sequences are {length} tokens: run {model} on it with model.context={length}, "
                         f"not {context}")


def answer_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of the answers, the positions where y is not IGNORE. logits: (B, L, V), y: (B, L)
    -> ()."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE)


def answers_right(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(right (A,) bool, of every answer position in order; every_answer (B,) bool, per sequence): the arg max
    against y where y is not IGNORE. logits: (B, L, V), y: (B, L)."""
    asked = y != IGNORE
    right = logits.argmax(-1) == y
    return right[asked], (right | ~asked).all(-1)


@torch.no_grad()
def scored(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(share of answers right, share of sequences with every answer right) of (x, y): (N, L) each, in batches of
    about ``TOKENS_PER_BATCH`` tokens on the net's device."""
    device, rows = next(net.parameters()).device, max(1, TOKENS_PER_BATCH // x.shape[1])
    answers, sequences = [], []
    for xs, ys in zip(x.split(rows), y.split(rows), strict=True):
        right, every = answers_right(net(xs.to(device)).float(), ys.to(device))
        answers.append(right.cpu())
        sequences.append(every.cpu())
    return torch.cat(answers).float().mean().item(), torch.cat(sequences).float().mean().item()


@torch.no_grad()
def task_metrics(net: nn.Module, dataset: Dataset, longer: int = 500) -> dict[str, float]:
    """``accuracy`` and ``sequence_accuracy`` on ``dataset`` (a test split of ``task_of(net)``); for induction heads
    also ``accuracy_<length>`` on ``longer`` test sequences at each of ``LENGTH_FACTORS`` times the training length."""
    from practice_torch.data.sequence_tasks import induction_heads_at

    x, y = dataset.tensors
    accuracy, sequence_accuracy = scored(net, x, y)
    metrics = {"accuracy": accuracy, "sequence_accuracy": sequence_accuracy, "examples": len(x)}
    if task_of(net).startswith("induction_heads"):
        for factor in LENGTH_FACTORS:
            length = factor * x.shape[1]
            try:
                metrics[f"accuracy_{length}"] = scored(net, *induction_heads_at(length, longer).tensors)[0]
            except ValueError:  # positions past a learned table: this net cannot read the length
                continue
    return metrics


def validation_loss(net: nn.Module, batch) -> dict[str, torch.Tensor]:
    """val_loss: ``answer_loss`` of held-out sequences (x, y): (B, L) each."""
    x, y = batch
    return {"val_loss": answer_loss(net(x), y)}


@torch.no_grad()
def answers_artefact(net: nn.Module, examples) -> list[Artefact]:
    """'answers': for each held-out sequence of ``examples`` (x, y): (n, L) each, the tokens asked for and the net's
    answers, side by side; [] without examples."""
    if examples is None:
        return []
    x, y = examples[:2]
    guess = net(x.to(next(net.parameters()).device)).argmax(-1).cpu()
    lines = []
    for xs, ys, gs in zip(x, y, guess, strict=True):
        asked = ys != IGNORE
        right = int((gs[asked] == ys[asked]).sum())
        lines.append(f"asked {ys[asked].tolist()}  answered {gs[asked].tolist()}  ({right} of {int(asked.sum())} "
                     f"right; input of {len(xs)} tokens starts {xs[:24].tolist()})")
    return [Artefact("answers", "text", lines)]
