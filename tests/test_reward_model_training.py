"""The reward model's training form: preference pairs labelled by the judge (ties marked and masked out), the scalar
head read at the last token of the trained trunk, the loss as the twin's Bradley-Terry loss, the held-out metrics
(with swapped labels as the control), the CLI on a tiny language model trained here (train, an exactly resumed run,
sample and eval without the reference run), one-line errors; the quick preset's accuracy is a slow test."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.policy_gradient.judges import judge
from practice_torch.policy_gradient.policy import LanguageSettings, build_lm, hidden_states
from practice_torch.reward_model import training as rm_training
from practice_torch.reward_model.functions import preference_loss
from practice_torch.reward_model.networks import RewardModel
from practice_torch.reward_model.pairs import label_pairs, untied_mean

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXT = get_info("shakespeare")
TINY = ["--set", "model.prompt_length=8", "--set", "model.response_length=8", "--set", "train.batch_size=6",
        "--set", "train.log_every=2", "--set", "train.samples=3", "--set", "model.eval_pairs=24"]



@pytest.fixture(scope="module")
def rm_run(lm_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("rm") / "run"
    assert main(["train", "reward_model", "--steps", "4", "--out", str(run), "--set", f"model.reference={lm_run}",
                 *TINY]) == 0
    return run


SHORT = {"prompt_length": 6, "response_length": 5}  # the tiny nets' episode: the step's config says it

def tiny_reward_model(seed: int = 0) -> RewardModel:
    torch.manual_seed(seed)
    s = LanguageSettings(context=24, dim=16, layers=1, heads=2, prompt_length=6, response_length=5)
    return RewardModel(build_lm(s, TEXT.num_classes))


# The pairs -------------------------------------------------------------------------------------------------------
def test_the_chosen_response_has_the_higher_reward_and_ties_are_marked():
    prompts = torch.arange(3)[:, None].expand(3, 2)
    responses = torch.arange(12).reshape(3, 2, 2)
    pairs = label_pairs(prompts, responses, torch.tensor([[0.5, 0.25], [0.0, 0.75], [0.5, 0.5]], dtype=torch.float64))
    assert pairs.first_wins.tolist() == [True, False, False] and pairs.tied.tolist() == [False, False, True]
    assert torch.equal(pairs.chosen[:2], torch.stack([responses[0, 0], responses[1, 1]]))
    assert torch.equal(pairs.rejected[:2], torch.stack([responses[0, 1], responses[1, 0]]))
    assert pairs.reward_gap().tolist() == [0.25, 0.75, 0.0]


def test_ties_are_masked_out_of_the_loss():
    r_w, r_l = torch.tensor([1.0, -2.0, 0.5], requires_grad=True), torch.tensor([0.0, 1.0, 3.0])
    untied = torch.tensor([True, False, True])
    torch.testing.assert_close(untied_mean(preference_loss, untied, r_w, r_l), preference_loss(r_w[[0, 2]], r_l[[0, 2]]))
    none = untied_mean(preference_loss, torch.zeros(3, dtype=torch.bool), r_w, r_l)
    none.backward()  # all tied: zero, and still a graph the engine can step through
    assert float(none.detach()) == 0.0 and torch.equal(r_w.grad, torch.zeros(3))


# The reward model ------------------------------------------------------------------------------------------------
def test_the_reward_is_the_head_at_the_last_token_of_prompt_and_response():
    net = tiny_reward_model()
    g = torch.Generator().manual_seed(0)
    prompts, responses = torch.randint(1, TEXT.num_classes, (3, 6), generator=g), torch.randint(1, 60, (3, 5), generator=g)
    assert torch.equal(net(prompts, responses), torch.zeros(3))  # the head starts at zero: every preference 1/2
    torch.nn.init.normal_(net.head.weight, generator=g)
    h = hidden_states(net.trunk, torch.cat([prompts, responses], 1))
    torch.testing.assert_close(net(prompts, responses), net.head(h[:, -1])[:, 0])
    changed = responses.clone()
    changed[:, 0] = (changed[:, 0] + 1) % TEXT.num_classes
    assert torch.all(net(prompts, changed) != net(prompts, responses))  # the last token sees the whole response


def test_the_loss_is_bradley_terry_on_the_untied_pairs_and_the_reference_stays_frozen():
    net = tiny_reward_model()
    torch.nn.init.normal_(net.head.weight, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(3)
    batch = (torch.randint(1, TEXT.num_classes, (8, 16), generator=g),)
    noise = rm_training.draw_noise(net, rm_training.Config(**SHORT), 8, g)
    assert noise["u"].shape == (8, 2, 5)
    loss, terms = rm_training.loss(net, rm_training.Config(**SHORT), batch, noise, 0)
    pairs = rm_training.preference_pairs(net.reference, batch[0][:, :6], noise["u"], judge("letter", "e"))
    r_w, r_l = net(pairs.prompts, pairs.chosen), net(pairs.prompts, pairs.rejected)
    keep = pairs.untied
    torch.testing.assert_close(loss, preference_loss(r_w[keep], r_l[keep]))
    torch.testing.assert_close(terms["accuracy"], (r_w > r_l)[keep].float().mean())
    loss.backward()
    assert net.head.weight.grad is not None and all(p.grad is not None for p in net.trunk.parameters())
    assert all(p.grad is None for p in net.reference.parameters()) and not net.reference.training


def test_pair_metrics_score_the_judges_own_rewards_perfectly_and_swapped_labels_below_chance():
    net = tiny_reward_model()
    g = torch.Generator().manual_seed(5)
    prompts = torch.randint(1, TEXT.num_classes, (64, 6), generator=g)
    u = rm_training.draw_noise(net, rm_training.Config(**SHORT), 64, g)["u"]
    pairs = rm_training.preference_pairs(net.reference, prompts, u, judge("letter", "e"))
    perfect = rm_training.pair_metrics(20.0 * pairs.rewards, pairs, 5)
    assert perfect["pair_accuracy"] == 1.0 and perfect["reward_correlation"] == pytest.approx(1.0)
    assert perfect["untied_pairs"] + round(perfect["tied_share"] * 64) == 64
    swapped = rm_training.pair_metrics(-20.0 * pairs.rewards, pairs, 5)  # the control: chosen and rejected swapped
    assert swapped["pair_accuracy"] < 0.5 and swapped["bt_loss"] > math.log(2)


def test_the_calibration_error_by_hand():
    p = np.array([0.05, 0.15, 0.12, 0.95, 0.99])
    outcome = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    count, mean_p, freq, ece = rm_training.calibration_bins(p, outcome)
    assert count.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2] and np.isnan(mean_p[2])
    assert ece == pytest.approx((0.05 + 2 * abs(0.135 - 0.5) + 2 * abs(0.97 - 1.0)) / 5)


# Through the CLI -------------------------------------------------------------------------------------------------
def test_train_sample_and_eval_without_the_reference_run(rm_run, lm_run, tmp_path):
    moved = tmp_path / "lm-moved"
    lm_run.rename(moved)  # sample and eval never read the reference run again
    try:
        assert main(["sample", str(rm_run), "--n", "3"]) == 0
        assert main(["eval", str(rm_run)]) == 0
    finally:
        moved.rename(lm_run)
    text = (rm_run / "samples-1" / "samples.txt").read_text()
    assert text.count("prompt:") == 3 and "judge" in text
    assert (rm_run / "samples-1" / "calibration.png").exists()
    metrics = json.loads((rm_run / "eval_test.json").read_text())
    for key in ("pair_accuracy", "bt_loss", "calibration_error", "reward_correlation"):
        assert math.isfinite(metrics[key]), key
    assert metrics["pairs"] == 24 and 0 <= metrics["pair_accuracy"] <= 1


def test_a_resumed_run_ends_bit_identical(lm_run, tmp_path):
    cfg = rm_training.default_config("quick", "shakespeare")
    cfg = apply_overrides(cfg, [f"model.reference={lm_run}", "model.prompt_length=8", "model.response_length=8",
                                "train.batch_size=4", "train.steps=4", "train.checkpoint_every=2", "train.samples=2",
                                "train.log_every=2", "model.eval_pairs=8"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=2)


@pytest.mark.parametrize("setting, message", [
    ([], "fine-tunes a trained language model: --set model.reference=RUN_DIR"),
    (["--set", "model.reference=/nonexistent"], "model.reference=/nonexistent: not a trained language_model run"),
    (["--set", "model.eval_pairs=1"], "model.eval_pairs must be at least 2"),
    (["--set", "model.judge=rhyme"], "unknown judge 'rhyme'"),
])
def test_bad_settings_get_one_line_errors(setting, message, tmp_path, capsys):
    assert main(["train", "reward_model", "--steps", "1", "--out", str(tmp_path / "run"), *setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err


@pytest.mark.slow
def test_the_quick_preset_orders_held_out_pairs_as_the_judge_does(tmp_path):
    """A quick-preset language model, then the reward model's quick preset on the letter judge: at least 90% of
    the untied held-out pairs ordered as the judge orders them."""
    lm = tmp_path / "lm"
    assert main(["train", "language_model", "--out", str(lm)]) == 0
    run = tmp_path / "rm"
    assert main(["train", "reward_model", "--out", str(run), "--set", f"model.reference={lm}"]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["pair_accuracy"] >= 0.9
    assert metrics["reward_correlation"] >= 0.8
