"""TRPO's training form on the character LM: the parameter-space Fisher-vector product against an explicit Hessian,
the natural step inside the trust region (and no step when the surrogate cannot improve), one update of the LM
keeping the measured KL within delta, an exactly resumed run and one-line errors (eval is REINFORCE's, tested
there)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.engine.config import apply_overrides
from practice_torch.trpo import training as trpo_training
from practice_torch.trpo.natural import kl_fisher_product, natural_step

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["model.prompt_length=8", "model.response_length=8", "model.samples_per_prompt=2", "train.batch_size=3",
        "train.log_every=1", "train.samples=2", "model.eval_prompts=8", "train.checkpoint_every=2",
        "model.cg_iterations=4"]



def tabular(seed=0):
    """A softmax policy over 3 actions in 4 states whose parameters are its logits, and sampled (s, a, A)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))
    old = theta.detach().clone()
    states, actions = torch.randint(0, 4, (32,), generator=g), torch.randint(0, 3, (32,), generator=g)
    advantages = torch.randn(32, generator=g, dtype=torch.float64)

    def surrogate():
        logp, old_logp = torch.log_softmax(theta, -1), torch.log_softmax(old, -1)
        return torch.mean(torch.exp(logp[states, actions] - old_logp[states, actions]) * advantages)

    def mean_kl():
        old_logp, logp = torch.log_softmax(old, -1), torch.log_softmax(theta, -1)
        return torch.mean(torch.sum(old_logp.exp() * (old_logp - logp), -1))

    return theta, old, surrogate, mean_kl, advantages


def test_the_fisher_vector_product_is_the_kls_hessian_times_v_plus_damping():
    theta, _, _, mean_kl, _ = tabular()
    v = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    product = kl_fisher_product(mean_kl, [theta], damping=0.1)
    hessian = torch.autograd.functional.hessian(
        lambda flat: torch.mean(torch.sum(torch.softmax(theta.detach(), -1) * (
            torch.log_softmax(theta.detach(), -1) - torch.log_softmax(flat.view(4, 3), -1)), -1)),
        theta.detach().reshape(-1))
    torch.testing.assert_close(product(v), hessian @ v + 0.1 * v)
    torch.testing.assert_close(product(2 * v), 2 * product(v))  # the graph of the first backward serves again
    # the control: without damping the product differs by exactly 0.1 v
    torch.testing.assert_close(kl_fisher_product(mean_kl, [theta], 0.0)(v), hessian @ v)


def test_the_natural_step_improves_the_surrogate_inside_the_trust_region():
    theta, old, surrogate, mean_kl, _ = tabular()
    step = natural_step([theta], surrogate, mean_kl, max_kl=0.01, cg_iterations=12, damping=1e-3)
    assert step["step_fraction"] > 0 and step["surrogate_after"] > step["surrogate_before"]
    assert float(mean_kl().detach()) == pytest.approx(step["kl"]) and step["kl"] <= 0.01
    assert step["kl"] > 0.002  # a real step: near the boundary, not a timid one
    assert not torch.equal(theta.detach(), old)


def test_no_step_is_taken_when_the_surrogate_cannot_improve():
    """The control: zero advantages give a zero gradient and a surrogate no step improves: theta stays theta_old."""
    theta, old, surrogate, mean_kl, advantages = tabular()
    advantages.zero_()
    step = natural_step([theta], surrogate, mean_kl, max_kl=0.01)
    assert step["step_fraction"] == 0.0 and torch.equal(theta.detach(), old)


def test_one_update_of_the_language_model_stays_within_delta(lm_run, tmp_path):
    cfg = apply_overrides(trpo_training.default_config("quick", "shakespeare"),
                          [f"model.reference={lm_run}", *TINY, "model.max_kl=0.005", "train.steps=1"])
    from practice_torch.models import new_trainer

    trainer = new_trainer(cfg, tmp_path / "run")
    net = trainer.net
    before = {k: v.clone() for k, v in net.policy.state_dict().items()}
    trainer.run()
    assert any(not torch.equal(before[k], v) for k, v in net.policy.state_dict().items())
    logged = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < logged["trust_kl"] <= 0.005 and logged["step_fraction"] > 0


def test_a_resumed_run_ends_bit_identical(lm_run, tmp_path):
    cfg = apply_overrides(trpo_training.default_config("quick", "shakespeare"),
                          [f"model.reference={lm_run}", *TINY, "train.steps=3"])
    resumed = assert_resumes_exactly(cfg, tmp_path / "resume", stop_at=1)
    assert resumed.step == 3 and math.isfinite(float(next(resumed.net.policy.parameters()).detach().sum()))


@pytest.mark.parametrize("setting, message", [
    ("model.max_kl=0", "model.max_kl must be positive"),
    ("model.cg_iterations=0", "model.cg_iterations must be positive, got 0"),
    ("model.fisher_fraction=0", "model.fisher_fraction must be in (0, 1]"),
])
def test_bad_settings_get_one_line_errors(setting, message, lm_run, tmp_path, capsys):
    assert main(["train", "trpo", "--steps", "1", "--out", str(tmp_path / "run"), "--set",
                 f"model.reference={lm_run}", "--set", setting]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
