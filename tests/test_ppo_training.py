"""PPO's training form on the character LM: the per-token rewards (k1 penalty, the judge at the end), GAE and the
whitened advantages of a stored rollout, the first step on a fresh rollout as a plain policy gradient (ratio 1,
nothing clipped), a rollout every ``ppo_epochs`` steps, the rollout in the checkpoints (an exactly resumed run cut
inside a cycle), two processes under torchrun as one, the CLI and one-line errors; the quick preset is a slow test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from resumption import assert_resumes_exactly
from test_distributed import TORCHRUN, checkpoint, python

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.policy_gradient.functions import action_log_probs
from practice_torch.policy_gradient.policy import build_lm, sample_responses
from practice_torch.ppo import functions
from practice_torch.ppo import training as ppo_training
from shared_specs.compare import compare_trees, tolerance

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXT = get_info("shakespeare")
TINY = ["model.prompt_length=8", "model.response_length=8", "model.ppo_epochs=3", "train.batch_size=4",
        "train.log_every=1", "train.samples=2", "model.eval_prompts=8", "train.checkpoint_every=2"]



def tiny_net(seed: int = 0, **settings) -> ppo_training.PolicyWithValue:
    torch.manual_seed(seed)
    config = ppo_training.Config(context=24, dim=16, layers=1, heads=2, prompt_length=6, response_length=5,
                                 **settings)
    net = ppo_training.PolicyWithValue(build_lm(config, TEXT.num_classes), config)
    with torch.no_grad():  # a value head that is not zero, so that GAE has something to subtract
        net.value_head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
    return net


def batch_and_noise(net, n: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    batch = (torch.randint(1, TEXT.num_classes, (n, 16), generator=g),)
    return batch, ppo_training.draw_noise(net, ppo_training.Config(), n, g)


def test_the_per_token_rewards_are_the_k1_penalty_with_the_judge_at_the_end():
    log_pi, log_ref = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    judged = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    rewards = ppo_training.token_rewards(judged, log_pi, log_ref, 0.1)
    torch.testing.assert_close(rewards.sum(-1), judged - 0.1 * (log_pi - log_ref).sum(-1))
    torch.testing.assert_close(rewards[:, :-1], -0.1 * (log_pi - log_ref)[:, :-1])


def test_a_rollout_stores_gae_advantages_whitened_and_returns_a_plus_v():
    net = tiny_net(kl_coef=0.05)
    batch, noise = batch_and_noise(net)
    ppo_training.collect(net, ppo_training.Config(kl_coef=0.05), batch[0][:, :6], noise["u"])
    r = net.rollout
    assert r.tokens.shape == (4, 11) and r.old_log_probs.shape == r.advantages.shape == (4, 5)
    responses = sample_responses(net.policy, batch[0][:, :6], noise["u"])[:, 0]
    assert torch.equal(r.tokens[:, 6:], responses)
    with torch.no_grad():
        logits, values = net.logits_and_values(r.tokens)
        log_pi = action_log_probs(logits, responses)
        log_ref = action_log_probs(net.reference(r.tokens[:, :-1])[:, 5:], responses)
    torch.testing.assert_close(r.old_log_probs, log_pi)
    rewards = ppo_training.token_rewards(r.rewards, log_pi, log_ref, 0.05)
    raw = functions.gae(rewards, torch.cat([values, torch.zeros(4, 1)], 1), 1.0, 0.95)
    torch.testing.assert_close(r.returns, raw + values)
    torch.testing.assert_close(r.advantages, (raw - raw.mean()) / (raw.std(correction=0) + 1e-8))
    assert abs(float(r.advantages.mean())) < 1e-5 and abs(float(r.advantages.std(correction=0)) - 1) < 1e-4
    # the control: with lambda = 0 the advantages are one-step TD errors, and differ
    assert not torch.allclose(functions.gae(rewards, torch.cat([values, torch.zeros(4, 1)], 1), 1.0, 0.0), raw)


def test_the_first_step_on_a_fresh_rollout_is_a_plain_policy_gradient_and_rollouts_come_every_ppo_epochs():
    net = tiny_net(ppo_epochs=3)
    batch, noise = batch_and_noise(net)
    config = ppo_training.Config(ppo_epochs=3)
    loss, terms = ppo_training.loss(net, config, batch, noise, 0)
    assert float(terms["clip_fraction"]) == 0.0 and float(terms["kl_old_k3"]) == pytest.approx(0.0, abs=1e-7)
    r = net.rollout
    net.zero_grad()
    terms["policy_loss"].requires_grad_(False)
    logits, values = net.logits_and_values(r.tokens)
    log_pi = action_log_probs(logits, r.tokens[:, 6:])
    vanilla = -torch.mean(torch.exp(log_pi - r.old_log_probs) * r.advantages) + 0.5 * 0.5 * torch.mean(
        (values - r.returns) ** 2)
    torch.testing.assert_close(loss, vanilla)
    first = r.tokens.clone()
    other_batch, other_noise = batch_and_noise(net, seed=7)
    ppo_training.loss(net, config, other_batch, other_noise, 1)
    ppo_training.loss(net, config, other_batch, other_noise, 2)
    assert torch.equal(net.rollout.tokens, first)  # steps 1 and 2 reuse the rollout
    ppo_training.loss(net, config, other_batch, other_noise, 3)
    assert not torch.equal(net.rollout.tokens, first)  # step 3 collects a new one


def test_a_resumed_run_cut_inside_a_cycle_ends_bit_identical(lm_run, tmp_path):
    cfg = ppo_training.default_config("quick", "shakespeare")
    cfg = apply_overrides(cfg, [f"model.reference={lm_run}", *TINY, "train.steps=5"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=2)  # the cycle reads the step number
    assert resumed.net.rollout.tokens.shape == (4, 16)


def test_train_sample_eval_through_the_cli(lm_run, tmp_path):
    run = tmp_path / "ppo"
    sets = [a for s in (f"model.reference={lm_run}", *TINY) for a in ("--set", s)]
    assert main(["train", "ppo", "--steps", "4", "--out", str(run), *sets]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert all(math.isfinite(metrics[k]) for k in ("reward", "reference_reward", "kl_to_reference", "bits_per_char"))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"reward", "kl_k1", "clip_fraction", "value_loss"} <= set(logged[-1])


@pytest.mark.parametrize("setting, message", [
    ("model.ppo_epochs=0", "model.ppo_epochs must be positive and model.clip in \\(0, 1\\)"),
    ("model.clip=1.5", "model.clip in \\(0, 1\\)"),
    ("model.lam=2", "model.gamma and model.lam in \\[0, 1\\]"),
])
def test_bad_settings_get_one_line_errors(setting, message, lm_run, tmp_path, capsys):
    assert main(["train", "ppo", "--steps", "1", "--out", str(tmp_path / "run"), "--set",
                 f"model.reference={lm_run}", "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert __import__("re").search(message, err), err


@pytest.mark.slow  # 16 s: two torchrun processes (the engine's DDP path is in the default suite, tests/test_distributed.py)
def test_two_processes_train_as_one(lm_run, tmp_path):
    """Under torchrun each rank samples its prompts' responses, the rollout is gathered (whitened as one process
    whitens it) and each rank trains on its own rows: the weights match one process's. The rollout in rank 0's
    checkpoint is the whole one. Negative control: the weights move between checkpoints."""
    sets = [a for s in (f"model.reference={lm_run}", *TINY, "train.warmup_steps=1", "data.limit=20000")
            for a in ("--set", s)]
    args = ["practice_torch", "train", "ppo", "--device", "cpu", "--steps", "4", *sets]
    python(*TORCHRUN, "-m", *args, "--out", str(tmp_path / "ddp"))
    python("-m", *args, "--out", str(tmp_path / "single"))
    ddp, single = checkpoint(tmp_path / "ddp", 4), checkpoint(tmp_path / "single", 4)
    assert ddp["rollout.tokens"].shape == single["rollout.tokens"].shape == (4, 16)
    np.testing.assert_array_equal(ddp["rollout.tokens"], single["rollout.tokens"])
    tol = tolerance("step", "float32")
    result = compare_trees(ddp, single, tol)
    assert result.passed, result.message()
    assert not compare_trees(checkpoint(tmp_path / "single", 2), single, tol).passed


@pytest.mark.slow
def test_the_quick_preset_raises_the_judges_reward_by_a_standard_deviation(tmp_path):
    lm = tmp_path / "lm"
    assert main(["train", "language_model", "--out", str(lm)]) == 0
    assert main(["eval", str(lm)]) == 0
    run = tmp_path / "ppo"
    assert main(["train", "ppo", "--out", str(run), "--set", f"model.reference={lm}"]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    reference = json.loads((lm / "eval_test.json").read_text())
    assert metrics["reward_gain_in_sd"] >= 1.0
    assert metrics["bits_per_char"] < reference["bits_per_char"] + 0.1  # the held-out text barely worse


@pytest.fixture(scope="module")
def rm_run(lm_run, tmp_path_factory):
    """A reward model on the tiny language model, trained for 4 steps."""
    run = tmp_path_factory.mktemp("rm") / "run"
    assert main(["train", "reward_model", "--steps", "4", "--out", str(run), "--set", f"model.reference={lm_run}",
                 "--set", "model.prompt_length=8", "--set", "model.response_length=8", "--set", "train.batch_size=4",
                 "--set", "train.samples=2", "--set", "model.eval_pairs=8", "--set", "train.log_every=2"]) == 0
    return run


def test_against_a_reward_model_the_reward_is_its_normalised_score_and_the_judge_only_scores(lm_run, rm_run, tmp_path):
    from practice_torch.models import new_trainer

    cfg = apply_overrides(ppo_training.default_config("quick", "shakespeare"),
                          [f"model.reference={lm_run}", f"model.reward_model={rm_run}", *TINY, "train.steps=4"])
    trainer = new_trainer(cfg, tmp_path / "run")
    net = trainer.net
    assert cfg.model.reward_model_step == 4 and not any(p.requires_grad for p in net.scorer.parameters())
    # the reward model's reference copy (it drew its pairs) is neither kept nor checkpointed; a checkpoint written
    # with it still loads, and any other unexpected weight is still refused (the control)
    from practice_torch.engine.checkpoint import CheckpointError, latest_step, load_weights_into

    assert net.scorer.reference is None and not any(".reference." in k for k in net.state_dict() if "scorer" in k)
    old_style = {**net.state_dict(), **{f"scorer.reference.{k}": v for k, v in net.reference.state_dict().items()}}
    load_weights_into(net, old_style, "an older run")
    with pytest.raises(CheckpointError, match="unexpected scorer.other"):
        load_weights_into(net, {**net.state_dict(), "scorer.other.weight": torch.zeros(1)}, "a foreign run")
    # normalised over the reference's responses to the validation prompts: mean 0 and sd 1 there
    prompts = ppo_training.pg.validation_prompts(ppo_training.NORMALISING_PROMPTS, 8)
    u = torch.rand((len(prompts), 1, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    with torch.no_grad():
        raw = net.scorer(prompts, sample_responses(net.reference, prompts, u)[:, 0])
    torch.testing.assert_close(net.scorer.score_mean, raw.mean())
    torch.testing.assert_close(net.scorer.score_sd, raw.std(correction=1))
    trainer.run()
    r = net.rollout
    with torch.no_grad():
        scored = (net.scorer(r.tokens[:, :8], r.tokens[:, 8:]) - net.scorer.score_mean) / net.scorer.score_sd
    torch.testing.assert_close(r.scores, scored)
    assert not torch.allclose(r.scores, r.rewards)  # the control: the judge's reward is not what is optimised
    # sample, eval and --resume need neither the reference run nor the reward model's
    moved = tmp_path / "rm-moved"
    rm_run.rename(moved)
    try:
        assert main(["eval", str(tmp_path / "run")]) == 0
        # resumed with the reward model's weights from this run's own checkpoint (written without its reference)
        assert main(["train", "ppo", "--resume", str(tmp_path / "run"), "--steps", "5"]) == 0
        assert latest_step(tmp_path / "run" / "checkpoints") == 5
    finally:
        moved.rename(rm_run)


def test_a_reward_model_of_another_shape_or_a_run_of_another_model_is_refused(lm_run, rm_run, tmp_path, capsys):
    base = ["train", "ppo", "--steps", "1", "--set", f"model.reference={lm_run}", "--set", "model.prompt_length=8"]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", f"model.reward_model={rm_run}", "--set",
                 "model.response_length=6"]) == 2
    assert "has response_length=8 where this run has 6" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--set", f"model.reward_model={lm_run}", "--set",
                 "model.response_length=8"]) == 2
    assert "is a language_model run; name a trained reward_model run" in capsys.readouterr().err
