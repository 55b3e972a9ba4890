"""Mamba's synthetic tasks: the generated sequences ask what the paper asks, the loss and the scores count only the
answers (an oracle scores 1, a copy of the wrong token 0), and both models that read them (the SSM and the language
model's Transformer) train, sample and evaluate on them through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from practice_torch.data import get_info
from practice_torch.data import sequence_tasks as tasks
from practice_torch.data.text import IGNORE
from practice_torch.engine.config import apply_overrides
from practice_torch.evaluation import sequence_tasks
from practice_torch.language_model import training as lm_training
from practice_torch.models import new_trainer, open_run
from practice_torch.ssm import training as ssm_training

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_selective_copying_asks_for_the_data_tokens_in_order_at_the_markers():
    x, y = tasks.selective_copying(50, np.random.default_rng(0), length=48, tokens=8)
    assert x.shape == y.shape == (50, 48)
    for xs, ys in zip(x, y, strict=True):
        data = xs[:40][xs[:40] != tasks.NOISE]
        assert len(data) == 8 and (data >= 1).all() and (data <= tasks.VOCAB - 2).all()
        assert (xs[40:] == tasks.MARKER).all() and (ys[40:] == data).all() and (ys[:40] == IGNORE).all()
    positions = [tuple(np.flatnonzero(xs[:40])) for xs in x]
    assert len(set(positions)) > 45  # where the tokens lie changes from sequence to sequence


def test_induction_heads_asks_for_the_token_after_the_first_trigger():
    x, y = tasks.induction_heads(200, np.random.default_rng(0), length=32)
    assert ((x == tasks.TRIGGER).sum(1) == 2).all() and (x[:, -1] == tasks.TRIGGER).all()
    first = (x == tasks.TRIGGER).argmax(1)
    assert (y[:, -1] == x[np.arange(200), first + 1]).all() and (y[:, :-1] == IGNORE).all()
    assert first.min() == 0 and first.max() == 29  # the trigger may stand anywhere before the last two positions
    longer = tasks.induction_heads_at(256, 10).tensors[0]
    assert longer.shape == (10, 256) and torch.equal(longer, tasks.induction_heads_at(256, 10).tensors[0])


def test_the_registered_splits_differ_and_keep_their_shapes():
    for name, length in (("selective_copying", 128), ("induction_heads", 64), ("induction_heads_256", 256)):
        info = get_info(name)
        train, test = info.load("train", limit=5), info.load("test", limit=5)
        assert info.shape == (length,) and train.tensors[0].shape == (5, length)
        assert not torch.equal(train.tensors[0], test.tensors[0])


class Oracle(nn.Module):
    """Logits with their arg max at the asked token wherever one is asked (``shift`` tokens off, mod VOCAB)."""

    def __init__(self, answers: dict[tuple, torch.Tensor], shift: int = 0):
        super().__init__()
        self.weight, self.answers, self.shift = nn.Parameter(torch.zeros(())), answers, shift

    def forward(self, x):
        y = torch.stack([self.answers[tuple(row.tolist())] for row in x])
        return F.one_hot((y.clamp_min(0) + self.shift) % tasks.VOCAB, tasks.VOCAB).float()


def test_scores_count_only_the_answers():
    data = get_info("selective_copying").load("test", limit=30)
    x, y = data.tensors
    answers = {tuple(a.tolist()): b for a, b in zip(x, y, strict=True)}
    assert sequence_tasks.task_metrics(sequence_tasks.mark(Oracle(answers), "selective_copying"), data)[
        "accuracy"] == 1.0
    wrong = sequence_tasks.task_metrics(sequence_tasks.mark(Oracle(answers, 1), "selective_copying"), data)
    assert wrong["accuracy"] == wrong["sequence_accuracy"] == 0.0
    # one wrong answer of 16 in every sequence: 15/16 of the answers, no sequence all right
    logits = F.one_hot(y.clamp_min(0), tasks.VOCAB).float()
    logits[:, -1] = logits[:, -1].roll(1, -1)
    right, every = sequence_tasks.answers_right(logits, y)
    assert right.float().mean() == pytest.approx(1 - 1 / tasks.COPY_TOKENS) and not every.any()


def test_the_loss_is_the_cross_entropy_of_the_answers_alone():
    x, y = map(torch.from_numpy, tasks.induction_heads(6, np.random.default_rng(1), length=16))
    logits = torch.randn(6, 16, tasks.VOCAB, generator=torch.Generator().manual_seed(0))
    by_hand = -torch.log_softmax(logits[:, -1], -1)[torch.arange(6), y[:, -1]].mean()
    assert sequence_tasks.answer_loss(logits, y) == pytest.approx(by_hand.item(), rel=1e-6)
    every_position = F.cross_entropy(logits.reshape(-1, tasks.VOCAB), x.roll(-1, 1).reshape(-1))
    assert abs(every_position.item() - by_hand.item()) > 1e-3  # the control: a loss on every token differs


@pytest.mark.parametrize("module, sets", [
    (ssm_training, ["model.channels=8", "model.state=4"]),
    (ssm_training, ["model.kind=s4d", "model.channels=8", "model.state=4"]),
    (lm_training, ["model.dim=8", "model.heads=2"]),
])
def test_each_model_trains_samples_and_evaluates_on_induction_heads(module, sets, tmp_path):
    cfg = apply_overrides(module.default_config("quick", "induction_heads"), [
        *sets, "model.layers=1", "train.steps=4", "train.log_every=2", "train.warmup_steps=1", "train.batch_size=4",
        "train.samples=3", "train.val_batch=8", "data.limit=64"])
    outcome = new_trainer(cfg, tmp_path / "run").run()
    assert [p.name for p in outcome.files if p.suffix == ".txt"] == ["answers.txt"]
    assert (tmp_path / "run/samples/answers.txt").read_text().count("asked [") == 3
    net = open_run(tmp_path / "run", torch.device("cpu"))[2]
    assert sequence_tasks.task_of(net) == "induction_heads"
    metrics = module.evaluate(net, cfg.model, get_info("induction_heads").load("test", limit=20), torch.Generator())
    assert {"accuracy", "sequence_accuracy", "accuracy_1024"} <= set(metrics)
    assert metrics["accuracy"] == metrics["sequence_accuracy"]  # one answer a sequence


def test_a_context_other_than_the_tasks_length_is_refused_and_learned_positions_stop_at_it():
    for module in (ssm_training, lm_training):
        cfg = apply_overrides(module.default_config("quick", "induction_heads"), ["model.context=32"])
        with pytest.raises(ValueError, match="model.context=64"):
            module.build(cfg.model, get_info("induction_heads"))
    cfg = apply_overrides(lm_training.default_config("quick", "induction_heads"),
                          ["model.position=learned", "model.dim=8", "model.heads=2"])
    net = lm_training.build(cfg.model, get_info("induction_heads"))
    metrics = sequence_tasks.task_metrics(net, get_info("induction_heads").load("test", limit=10), longer=4)
    assert not any(key.startswith("accuracy_") for key in metrics)


def test_induction_heads_at_the_papers_length_builds_at_256_and_is_scored_up_to_4096():
    """``induction_heads_256`` (the paper's training length): the quick presets' context is 256, a net built for it
    is that task's, and it is scored at 2 to 16 times 256 (control: a context of 64 is refused)."""
    info = get_info("induction_heads_256")
    for module in (ssm_training, lm_training):
        assert module.default_config("quick", "induction_heads_256").model.context == 256
        with pytest.raises(ValueError, match="model.context=256"):
            module.build(module.default_config("quick", "induction_heads").model, info)
    cfg = apply_overrides(ssm_training.default_config("quick", "induction_heads_256"),
                          ["model.kind=s4d", "model.channels=8", "model.state=4", "model.layers=1"])
    net = ssm_training.build(cfg.model, info)
    assert sequence_tasks.task_of(net) == "induction_heads_256"
    metrics = sequence_tasks.task_metrics(net, info.load("test", limit=4), longer=2)
    assert [k for k in metrics if k.startswith("accuracy_")] == [f"accuracy_{256 * k}" for k in (2, 4, 8, 16)]


@pytest.mark.slow
def test_the_quick_mamba_answers_every_induction_heads_test_at_four_times_its_length(tmp_path):
    cfg = ssm_training.default_config("quick", "induction_heads")
    new_trainer(cfg, tmp_path / "run").run()
    net = open_run(tmp_path / "run", torch.device("cpu"))[2]
    metrics = ssm_training.evaluate(net, cfg.model, get_info("induction_heads").load("test"), torch.Generator())
    assert metrics["accuracy"] >= 0.99 and metrics["accuracy_256"] >= 0.99
