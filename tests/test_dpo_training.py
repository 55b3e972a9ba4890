"""DPO's training form: the reward model's pairs (the same for the same seed and batch size), the loss as the twin's
DPO loss on the untied pairs with the prompt masked out of log pi (an unmasked control differs), log 2 at the start,
a frozen reference (an updated one is caught), the CLI on a tiny language model trained here (train, an exactly
resumed run, sample and eval without the reference run), one-line errors; the quick preset is a slow test."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.dpo import training as dpo_training
from practice_torch.dpo.functions import dpo_loss
from practice_torch.engine.batches import fetch
from practice_torch.engine.checkpoint import latest_step
from practice_torch.engine.config import apply_overrides
from practice_torch.models import new_trainer, open_run
from practice_torch.policy_gradient import functions
from practice_torch.policy_gradient.judges import judge
from practice_torch.policy_gradient.policy import LanguageSettings, PolicyAndReference, build_lm, episode_logits
from practice_torch.reward_model import training as rm_training
from practice_torch.reward_model.pairs import preference_pairs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXT = get_info("shakespeare")
TINY = ["--set", "model.prompt_length=8", "--set", "model.response_length=8", "--set", "train.batch_size=6",
        "--set", "train.log_every=2", "--set", "train.samples=3", "--set", "model.eval_prompts=16", "--set",
        "model.eval_pairs=16", "--set", "train.lr=1e-3"]



@pytest.fixture(scope="module")
def dpo_run(lm_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("dpo") / "run"
    assert main(["train", "dpo", "--steps", "4", "--out", str(run), "--set", f"model.reference={lm_run}", *TINY]) == 0
    return run


SHORT = {"prompt_length": 6, "response_length": 5}  # the tiny nets' episode: the step's config says it

def tiny_pair(seed: int = 0) -> PolicyAndReference:
    torch.manual_seed(seed)
    s = LanguageSettings(context=24, dim=16, layers=1, heads=2, prompt_length=6, response_length=5)
    return PolicyAndReference(build_lm(s, TEXT.num_classes))


def tiny_config(module, lm_run):
    cfg = module.default_config("quick", "shakespeare")
    return apply_overrides(cfg, [f"model.reference={lm_run}", "model.prompt_length=8", "model.response_length=8",
                                 "train.batch_size=4", "train.steps=4", "train.checkpoint_every=2",
                                 "train.samples=2", "train.log_every=2", "model.eval_pairs=8"])


# The pairs are the reward model's --------------------------------------------------------------------------------
def test_dpo_and_the_reward_model_see_the_same_pairs_for_the_same_seed_and_batch_size(lm_run, tmp_path):
    pairs = []
    for module in (rm_training, dpo_training):
        trainer = new_trainer(tiny_config(module, lm_run), tmp_path / module.__name__)
        for _ in range(2):  # the first two steps' batches and noise, as the engine draws them
            x = fetch(trainer.train_set, trainer.batches.next())[0]
            u = module.draw_noise(trainer.net, trainer.cfg.model, trainer.batch_size, trainer.noise)["u"]
            pairs.append(preference_pairs(trainer.net.reference, x[:, :8], u, judge("letter", "e")))
    for a, b in zip(pairs[:2], pairs[2:]):
        for name in ("prompts", "responses", "chosen", "rejected", "rewards", "tied"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(pairs[0].responses, pairs[1].responses)


# The loss --------------------------------------------------------------------------------------------------------
def test_the_loss_is_dpo_on_the_untied_pairs_and_log_2_at_the_start():
    net = tiny_pair()
    g = torch.Generator().manual_seed(3)
    batch = (torch.randint(1, TEXT.num_classes, (8, 16), generator=g),)
    noise = dpo_training.draw_noise(net, dpo_training.Config(**SHORT), 8, g)
    loss, terms = dpo_training.loss(net, dpo_training.Config(**SHORT), batch, noise, 0)
    assert float(loss.detach()) == pytest.approx(math.log(2)) and float(terms["margin"]) == 0.0  # pi = pi_ref
    with torch.no_grad():
        for p in net.policy.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    loss, terms = dpo_training.loss(net, dpo_training.Config(**SHORT), batch, noise, 0)
    pairs = preference_pairs(net.reference, batch[0][:, :6], noise["u"], judge("letter", "e"))
    pi_w, pi_l = dpo_training.pair_log_probs(net.policy, pairs, 6)
    ref_w, ref_l = dpo_training.pair_log_probs(net.reference, pairs, 6)
    keep = pairs.untied
    torch.testing.assert_close(loss, dpo_loss(pi_w[keep], pi_l[keep], ref_w[keep], ref_l[keep], 0.1))
    torch.testing.assert_close(terms["margin"], (0.1 * (pi_w - ref_w - pi_l + ref_l))[keep].mean())
    loss.backward()
    assert all(p.grad is not None for p in net.policy.parameters())
    assert all(p.grad is None for p in net.reference.parameters()) and not net.reference.training


def test_the_prompt_is_masked_out_of_the_pairs_log_probs():
    net = tiny_pair()
    g = torch.Generator().manual_seed(4)
    prompts = torch.randint(1, TEXT.num_classes, (4, 6), generator=g)
    u = dpo_training.draw_noise(net, dpo_training.Config(**SHORT), 4, g)["u"]
    pairs = preference_pairs(net.reference, prompts, u, judge("letter", "e"))
    masked = torch.cat(dpo_training.pair_log_probs(net.policy, pairs, 6))
    tokens, logits = episode_logits(net.policy, prompts.repeat(2, 1), torch.cat([pairs.chosen, pairs.rejected]))
    unmasked = functions.sequence_log_prob(logits, tokens[:, 1:], torch.ones(8, 10))  # the control
    assert torch.all(unmasked < masked - 1.0)
    other = prompts.clone()
    other[:, 0] = (other[:, 0] + 1) % TEXT.num_classes  # a prompt's characters are conditioned on, not scored
    pairs.prompts = other
    assert not torch.equal(torch.cat(dpo_training.pair_log_probs(net.policy, pairs, 6)), masked)


# Through the CLI -------------------------------------------------------------------------------------------------
def test_train_sample_and_eval_without_the_reference_run(dpo_run, lm_run, tmp_path):
    moved = tmp_path / "lm-moved"
    lm_run.rename(moved)  # sample and eval never read the reference run again
    try:
        assert main(["sample", str(dpo_run), "--n", "3"]) == 0
        assert main(["eval", str(dpo_run)]) == 0
    finally:
        moved.rename(lm_run)
    assert (dpo_run / "samples-1" / "versus_reference.txt").read_text().count("prompt:") == 3
    metrics = json.loads((dpo_run / "eval_test.json").read_text())
    for key in ("reward", "reference_reward", "reward_gain_in_sd", "kl_to_reference", "bits_per_char", "dpo_loss",
                "implicit_margin", "implicit_accuracy"):
        assert math.isfinite(metrics[key]), key
    assert metrics["prompts"] == 16 and metrics["held_out_pairs"] == 16 and metrics["kl_to_reference"] > 0


def test_the_reference_is_the_language_model_run_after_training_and_an_updated_one_is_caught(dpo_run, lm_run):
    _, _, lm = open_run(lm_run, torch.device("cpu"))
    _, _, net = open_run(dpo_run, torch.device("cpu"))
    assert latest_step(dpo_run / "checkpoints") == 4

    def same(a, b) -> bool:
        return all(torch.equal(x, b.state_dict()[k]) for k, x in a.state_dict().items())

    assert same(net.reference, lm) and not same(net.policy, lm)  # the policy moved, the reference did not
    updated = copy.deepcopy(net.reference)
    with torch.no_grad():
        next(updated.parameters()).add_(1e-3)
    assert not same(updated, lm)  # the control: a reference that moved is caught


def test_a_resumed_run_ends_bit_identical(lm_run, tmp_path):
    assert_resumes_exactly(tiny_config(dpo_training, lm_run), tmp_path, stop_at=2)


@pytest.mark.parametrize("setting, message", [
    ([], "fine-tunes a trained language model: --set model.reference=RUN_DIR"),
    (["--set", "model.beta=0"], "model.beta must be positive"),
    (["--set", "model.eval_pairs=1"], "model.eval_pairs must be at least 2, got 1"),
    (["--set", "model.judge=rhyme"], "unknown judge 'rhyme'"),
])
def test_bad_settings_get_one_line_errors(setting, message, tmp_path, capsys):
    assert main(["train", "dpo", "--steps", "1", "--out", str(tmp_path / "run"), *setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err


@pytest.mark.slow
def test_the_quick_preset_raises_the_judges_reward_by_a_standard_deviation(tmp_path):
    """A quick-preset language model, then DPO's quick preset on the letter judge's pairs: the mean reward on
    held-out prompts rises by at least one of the reference's standard deviations, the held-out implicit accuracy
    is at least 0.8, the KL to the reference is reported and the held-out bits/char worsen by less than 0.1."""
    lm = tmp_path / "lm"
    assert main(["train", "language_model", "--out", str(lm)]) == 0
    assert main(["eval", str(lm)]) == 0
    run = tmp_path / "dpo"
    assert main(["train", "dpo", "--out", str(run), "--set", f"model.reference={lm}"]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    reference = json.loads((lm / "eval_test.json").read_text())
    assert metrics["reward_gain_in_sd"] >= 1.0
    assert metrics["implicit_accuracy"] >= 0.8 and metrics["kl_to_reference"] > 0
    assert metrics["bits_per_char"] < reference["bits_per_char"] + 0.1  # the held-out text barely worse
