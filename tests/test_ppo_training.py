"""PPO's training form on the character LM: the per-token rewards (k1 penalty, the judge at the end), GAE advantages
and returns of a rollout, the first update on a fresh rollout as a plain policy gradient (ratio 1, nothing clipped),
an iteration of epochs x minibatches updates, an exactly resumed run, two processes under torchrun as one, the CLI
and one-line errors; the quick preset is a slow test. CartPole: tests/test_control.py."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from types import SimpleNamespace

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
from project.compare import compare_trees, tolerance

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXT = get_info("shakespeare")
TINY = ["model.prompt_length=8", "model.response_length=8", "model.epochs=2", "train.batch_size=4",
        "train.log_every=1", "train.samples=2", "model.eval_prompts=8", "train.checkpoint_every=2"]



SHORT = {"prompt_length": 6, "response_length": 5}  # the tiny nets' episode: the step's config says it

def tiny_net(seed: int = 0, **settings) -> ppo_training.PolicyWithValue:
    torch.manual_seed(seed)
    config = ppo_training.Config(**SHORT, context=24, dim=16, layers=1, heads=2, **settings)
    net = ppo_training.PolicyWithValue(build_lm(config, TEXT.num_classes))
    with torch.no_grad():  # a value head that is not zero, so that GAE has something to subtract
        net.value_head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
    return net


def batch_and_noise(net, n: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    batch = (torch.randint(1, TEXT.num_classes, (n, 16), generator=g),)
    return batch, ppo_training.draw_noise(net, ppo_training.Config(**SHORT), n, g)


def test_the_per_token_rewards_are_the_k1_penalty_with_the_judge_at_the_end():
    log_pi, log_ref = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    judged = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    rewards = ppo_training.token_rewards(judged, log_pi, log_ref, 0.1)
    torch.testing.assert_close(rewards.sum(-1), judged - 0.1 * (log_pi - log_ref).sum(-1))
    torch.testing.assert_close(rewards[:, :-1], -0.1 * (log_pi - log_ref)[:, :-1])


def test_a_rollout_has_gae_advantages_and_returns_a_plus_v():
    net = tiny_net(kl_coef=0.05)
    batch, noise = batch_and_noise(net)
    config = ppo_training.Config(**SHORT, kl_coef=0.05)
    r = ppo_training.collect_text(net, config, (batch[0][:, :6],), noise)
    assert r.inputs.shape == (4, 11) and r.old_log_probs.shape == r.advantages.shape == (4, 5)
    responses = sample_responses(net.policy, batch[0][:, :6], noise["u"])[:, 0]
    assert torch.equal(r.actions, responses) and torch.equal(r.inputs[:, 6:], responses)
    with torch.no_grad():
        logits, values = net.logits_and_values(r.inputs, 6)
        log_pi = action_log_probs(logits, responses)
        log_ref = action_log_probs(net.reference(r.inputs[:, :-1])[:, 5:], responses)
    torch.testing.assert_close(r.old_log_probs, log_pi)
    judged = torch.tensor(ppo_training.score(ppo_training.judge("letter", "e"), ppo_training.decode(responses)))
    rewards = ppo_training.token_rewards(judged, log_pi, log_ref, 0.05)
    raw = functions.gae(rewards, torch.cat([values, torch.zeros(4, 1)], 1), 1.0, 0.95)
    torch.testing.assert_close(r.advantages, raw)
    torch.testing.assert_close(r.returns, raw + values)
    # the control: with lambda = 0 the advantages are one-step TD errors, and differ
    assert not torch.allclose(functions.gae(rewards, torch.cat([values, torch.zeros(4, 1)], 1), 1.0, 0.0), raw)


def test_the_first_update_is_a_plain_policy_gradient_and_an_iteration_is_epochs_of_minibatches():
    net = tiny_net()
    config = ppo_training.Config(**SHORT, epochs=3, minibatches=2)
    batch, noise = batch_and_noise(net)
    samples = ppo_training.collect_text(net, config, (batch[0][:, :6],), noise)
    loss, terms = ppo_training.ppo_loss(net, config, samples, torch.arange(4))
    assert float(terms["clip_fraction"]) == 0.0 and float(terms["approx_kl"]) == pytest.approx(0.0, abs=1e-7)
    logits, values = net.logits_and_values(samples.inputs, 6)
    log_pi = action_log_probs(logits, samples.actions)
    a, value_term = samples.advantages, 0.5 * 0.5 * torch.mean((values - samples.returns) ** 2)
    normalised = (a - a.mean()) / (a.std() + 1e-8)
    torch.testing.assert_close(loss, -torch.mean(torch.exp(log_pi - samples.old_log_probs) * normalised) + value_term)
    # the control: the advantages as they are, not normalised
    assert not torch.allclose(loss, -torch.mean(torch.exp(log_pi - samples.old_log_probs) * a) + value_term)

    updates = []
    run = SimpleNamespace(environments=None, next_batch=lambda: ((batch[0][:, :6],), noise), autocast=nullcontext,
                          update=lambda **losses: updates.append(losses))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ppo_training.train_step(net, config, 0, run)
    assert len(updates) == 6 and all(set(u) == {"policy"} for u in updates)  # 3 passes x 2 minibatches
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # no rollout kept in the net


def test_a_resumed_run_ends_bit_identical(lm_run, tmp_path):
    cfg = ppo_training.default_config("quick", "shakespeare")
    cfg = apply_overrides(cfg, [f"model.reference={lm_run}", *TINY, "train.steps=3"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=1)
    assert not any("rollout" in k for k in resumed.net.state_dict())  # no rollout in the weights


def test_train_sample_eval_through_the_cli(lm_run, tmp_path):
    run = tmp_path / "ppo"
    sets = [a for s in (f"model.reference={lm_run}", *TINY) for a in ("--set", s)]
    assert main(["train", "ppo", "--steps", "2", "--out", str(run), *sets]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert all(math.isfinite(metrics[k]) for k in ("reward", "reference_reward", "kl_to_reference", "bits_per_char"))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"reward", "kl_k1", "clip_fraction", "value_loss", "approx_kl", "grad_norm_policy"} <= set(logged[-1])


@pytest.mark.parametrize("setting, message", [
    ("model.epochs=0", "model.epochs must be positive, got 0"),
    ("model.clip=1.5", "model.clip must be in \\(0, 1\\), got 1.5"),
    ("model.lam=2", "model.lam must be in \\[0, 1\\], got 2.0"),
    ("model.kl_coef=-1", "model.kl_coef must be at least 0, got -1.0"),
])
def test_bad_settings_get_one_line_errors(setting, message, lm_run, tmp_path, capsys):
    assert main(["train", "ppo", "--steps", "1", "--out", str(tmp_path / "run"), "--set",
                 f"model.reference={lm_run}", "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert __import__("re").search(message, err), err


@pytest.mark.slow  # 16 s: two torchrun processes (the engine's DDP path is in the default suite, tests/test_distributed.py)
def test_two_processes_train_as_one(lm_run, tmp_path):
    """Under torchrun each rank samples its prompts' responses, the rollout is gathered and each rank trains on its
    share of each minibatch: the weights match one process's. Negative control: the weights move between
    checkpoints."""
    sets = [a for s in (f"model.reference={lm_run}", *TINY, "model.minibatches=2", "train.warmup_steps=1",
                        "data.limit=20000", "train.checkpoint_every=1") for a in ("--set", s)]
    args = ["practice_torch", "train", "ppo", "--device", "cpu", "--steps", "2", *sets]
    python(*TORCHRUN, "-m", *args, "--out", str(tmp_path / "ddp"))
    python("-m", *args, "--out", str(tmp_path / "single"))
    ddp, single = checkpoint(tmp_path / "ddp", 2), checkpoint(tmp_path / "single", 2)
    tol = tolerance("step", "float32")
    result = compare_trees(ddp, single, tol)
    assert result.passed, result.message()
    assert not compare_trees(checkpoint(tmp_path / "single", 1), single, tol).passed
