"""REINFORCE's training form: the judges, the language model as a policy (the prompt masked out of log pi, with an
unmasked control that differs), the frozen reference, the loss as the twin's surrogate with the leave-one-out
baseline, the CLI on a tiny language model trained here (train, an exactly resumed run, sample and eval without the
reference run), one-line errors; the quick preset on a quick-preset language model is a slow test."""

from __future__ import annotations

import json
import math

import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.policy_gradient import functions
from practice_torch.policy_gradient import training as pg_training
from practice_torch.policy_gradient.judges import LEXICON, judge, letter_share, lexicon_share
from practice_torch.policy_gradient.policy import (
    LanguageSettings,
    PolicyAndReference,
    build_lm,
    episode_logits,
    response_log_prob,
    response_token_log_probs,
    sample_responses,
    token_kl,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXT = get_info("shakespeare")
TINY = ["--set", "model.prompt_length=8", "--set", "model.response_length=8", "--set", "model.samples_per_prompt=3",
        "--set", "train.batch_size=4", "--set", "train.log_every=2", "--set", "train.samples=3", "--set",
        "model.eval_prompts=16"]



@pytest.fixture(scope="module")
def pg_run(lm_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("pg") / "run"
    assert main(["train", "policy_gradient", "--steps", "4", "--out", str(run), "--set",
                 f"model.reference={lm_run}", *TINY]) == 0
    return run


SHORT = {"prompt_length": 6, "response_length": 5}  # the tiny nets' episode: the step's config says it

def tiny_pair(seed: int = 0) -> PolicyAndReference:
    torch.manual_seed(seed)
    s = LanguageSettings(context=24, dim=16, layers=1, heads=2, prompt_length=6, response_length=5)
    return PolicyAndReference(build_lm(s, TEXT.num_classes))


# The judges ------------------------------------------------------------------------------------------------------
def test_the_judges_score_what_they_say():
    assert letter_share("Eve ate") == pytest.approx(3 / 7)
    assert letter_share("EVE", "ev") == 1.0 and letter_share("") == 0.0
    assert lexicon_share("O sweet love, my lord!") == pytest.approx(2 / 5)
    assert lexicon_share("...") == 0.0 and "love" in LEXICON
    assert judge("letter", "a")("banana") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown judge 'rhyme'; choose from letter, lexicon"):
        judge("rhyme")
    with pytest.raises(ValueError, match="model.letters must be one or more letters"):
        judge("letter", "3")


# The language model as a policy ----------------------------------------------------------------------------------
def test_a_responses_log_prob_sums_its_characters_and_leaves_the_prompt_out():
    net = tiny_pair()
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, TEXT.num_classes, (3, 6), generator=g)
    responses = torch.randint(1, TEXT.num_classes, (3, 5), generator=g)
    tokens, logits = episode_logits(net.policy, prompts, responses)
    assert tokens.shape == (3, 11) and logits.shape == (3, 10, TEXT.num_classes)
    per_char = response_token_log_probs(logits, tokens, 6)
    torch.testing.assert_close(response_log_prob(logits, tokens, 6), per_char.sum(-1))
    # by hand: the log-softmax of the logits at the position before each response character
    by_hand = torch.stack([torch.log_softmax(logits[:, 5 + t], -1)[torch.arange(3), responses[:, t]]
                           for t in range(5)], 1)
    torch.testing.assert_close(per_char, by_hand)
    # the control: without the mask the prompt's characters count too, and the sum is lower
    unmasked = functions.sequence_log_prob(logits, tokens[:, 1:], torch.ones(3, 10))
    assert torch.all(unmasked < response_log_prob(logits, tokens, 6) - 1.0)


def test_responses_are_drawn_from_the_policy_by_the_given_uniforms():
    net = tiny_pair()
    prompts = torch.randint(1, TEXT.num_classes, (2, 6), generator=torch.Generator().manual_seed(1))
    u = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(2))
    a, b = sample_responses(net.policy, prompts, u), sample_responses(net.policy, prompts, u)
    assert a.shape == (2, 3, 5) and torch.equal(a, b)
    assert not torch.equal(a, sample_responses(net.policy, prompts, 1 - u))
    # each response character is the inverse CDF of its uniform under the policy's next-character distribution
    rows = prompts.repeat_interleave(3, 0)
    tokens, logits = episode_logits(net.policy, rows, a.reshape(6, 5))
    cdf = torch.cumsum(torch.softmax(logits[:, 5:], -1), -1)
    drawn = torch.searchsorted(cdf, u.reshape(6, 5, 1), right=True)[..., 0]
    torch.testing.assert_close(drawn, a.reshape(6, 5))


def test_the_reference_stays_frozen_and_in_eval_mode():
    net = tiny_pair().train()
    assert net.policy.training and not net.reference.training
    assert all(not p.requires_grad for p in net.reference.parameters())
    x = torch.randint(1, TEXT.num_classes, (4, 11))
    logits = episode_logits(net.policy, x[:, :6], x[:, 6:])[1]
    ref = episode_logits(net.reference, x[:, :6], x[:, 6:])[1]
    assert torch.allclose(token_kl(logits, ref), torch.zeros(4, 10), atol=1e-6)  # a copy: KL 0
    with torch.no_grad():
        for p in net.policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(4)))
    kl = token_kl(episode_logits(net.policy, x[:, :6], x[:, 6:])[1], ref)
    assert torch.all(kl > 0)  # the copy is the reference's own, not shared


def test_the_loss_is_reinforce_with_the_leave_one_out_baseline():
    net, config = tiny_pair(), pg_training.Config(**SHORT, judge="letter", letters="e", kl_coef=0.1, samples_per_prompt=3)
    g = torch.Generator().manual_seed(3)
    batch = (torch.randint(1, TEXT.num_classes, (2, 16), generator=g),)
    noise = pg_training.draw_noise(net, config, 2, g)
    assert noise["u"].shape == (2, 3, 5)
    loss, terms = pg_training.loss(net, config, batch, noise, 0)
    # the same quantities by the twin's functions
    prompts = batch[0][:, :6].repeat_interleave(3, 0)
    responses = sample_responses(net.policy, batch[0][:, :6], noise["u"]).reshape(6, 5)
    tokens, logits = episode_logits(net.policy, prompts, responses)
    log_pi = response_log_prob(logits, tokens, 6)
    log_ref = response_log_prob(episode_logits(net.reference, prompts, responses)[1], tokens, 6)
    rewards, returns = pg_training.returns_of(config, responses, log_pi, log_ref)
    baseline = functions.leave_one_out_baseline(returns.reshape(2, 3)).reshape(-1)
    torch.testing.assert_close(loss, functions.reinforce_loss(log_pi, returns, baseline))
    torch.testing.assert_close(terms["reward"], rewards.mean())
    loss.backward()
    assert all(p.grad is not None for p in net.policy.parameters() if p.requires_grad)
    assert all(p.grad is None for p in net.reference.parameters())


# Through the CLI -----------------------------------------------------------------------------------------------
def test_train_sample_and_eval_without_the_reference_run(pg_run, lm_run, tmp_path):
    cfg = json.loads((pg_run / "config.json").read_text())
    assert cfg["model"]["dim"] == 32 and cfg["model"]["context"] == 24  # inherited from the reference run
    builds_on = json.loads((pg_run / "builds_on.json").read_text())["reference"]
    assert builds_on["run"] == str(lm_run) and builds_on["model"] == "language_model" and builds_on["step"] == 10
    assert builds_on["config"]["model"]["dim"] == 32
    moved = tmp_path / "lm-moved"
    lm_run.rename(moved)  # sample and eval never read the reference run again
    try:
        assert main(["sample", str(pg_run), "--n", "3"]) == 0
        assert main(["eval", str(pg_run)]) == 0
    finally:
        moved.rename(lm_run)
    text = (pg_run / "samples-1" / "versus_reference.txt").read_text()
    assert text.count("prompt:") == 3 and "reference:" in text
    metrics = json.loads((pg_run / "eval_test.json").read_text())
    for key in ("reward", "reward_sd", "reference_reward", "kl_to_reference", "reward_gain_in_sd", "bits_per_char"):
        assert math.isfinite(metrics[key]), key
    assert metrics["prompts"] == 16 and metrics["kl_to_reference"] >= 0


def test_a_resumed_run_ends_bit_identical(lm_run, tmp_path):
    cfg = pg_training.default_config("quick", "shakespeare")
    cfg = apply_overrides(cfg, [f"model.reference={lm_run}", "model.prompt_length=8", "model.response_length=8",
                                "model.samples_per_prompt=2", "train.batch_size=3", "train.steps=4",
                                "train.checkpoint_every=2", "train.samples=2", "train.log_every=2"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=2)


@pytest.mark.parametrize("setting, message", [
    ([], "needs? a trained language model|fine-tunes a trained language model: --set model.reference=RUN_DIR"),
    (["--set", "model.reference=/nonexistent"], "model.reference=/nonexistent: not a trained language_model run"),
    (["--set", "model.samples_per_prompt=1"], "model.samples_per_prompt must be at least 2"),
    (["--set", "model.judge=rhyme"], "unknown judge 'rhyme'"),
])
def test_bad_settings_get_one_line_errors(setting, message, tmp_path, capsys):
    assert main(["train", "policy_gradient", "--steps", "1", "--out", str(tmp_path / "run"), *setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert __import__("re").search(message, err), err


def test_a_response_longer_than_the_context_and_a_run_of_another_model_are_refused(lm_run, pg_run, tmp_path, capsys):
    assert main(["train", "policy_gradient", "--steps", "1", "--out", str(tmp_path / "a"), "--set",
                 f"model.reference={lm_run}", "--set", "model.response_length=20"]) == 2
    assert "exceeds the reference model's context 24" in capsys.readouterr().err
    assert main(["train", "policy_gradient", "--steps", "1", "--out", str(tmp_path / "b"), "--set",
                 f"model.reference={pg_run}"]) == 2
    assert "is a policy_gradient run; name a trained language_model run" in capsys.readouterr().err


@pytest.mark.slow
def test_the_quick_preset_raises_the_judges_reward_by_a_standard_deviation(tmp_path):
    """A quick-preset language model (its own slow test's size), then REINFORCE's quick preset on the letter judge:
    the mean reward on held-out prompts rises by at least one of the reference's standard deviations, with a
    bounded KL to the reference and held-out bits/char within 0.1 of the reference's."""
    lm = tmp_path / "lm"
    assert main(["train", "language_model", "--out", str(lm)]) == 0
    assert main(["eval", str(lm)]) == 0
    run = tmp_path / "pg"
    assert main(["train", "policy_gradient", "--out", str(run), "--set", f"model.reference={lm}"]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    reference = json.loads((lm / "eval_test.json").read_text())
    assert metrics["reward_gain_in_sd"] >= 1.0
    assert metrics["bits_per_char"] < reference["bits_per_char"] + 0.1  # the held-out text barely worse


def test_the_reward_against_kl_figure_reads_evaluated_runs_and_refuses_others(pg_run, lm_run, tmp_path, capsys):
    from practice_torch.policy_gradient import frontier

    assert main(["eval", str(pg_run)]) == 0
    points = frontier.frontier_points([pg_run])
    assert points[0]["model"] == "policy_gradient" and points[0]["kl"] >= 0 and 0 <= points[0]["reward"] <= 1
    assert frontier.main([str(pg_run), "--out", str(tmp_path / "f.png")]) == 0 and (tmp_path / "f.png").stat().st_size
    assert frontier.main([str(lm_run), "--out", str(tmp_path / "g.png")]) == 2  # a run that fine-tunes nothing
    assert "no eval_test.json" in capsys.readouterr().err and not (tmp_path / "g.png").exists()
