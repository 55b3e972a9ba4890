"""Guidance in PyTorch: the two combinations and their identities, the noise-aware classifier (its gradient, a tiny
training run, bad input), guided sampling in both modes on a tiny DDPM, the sweep on a handful of samples; and wrong
guidance caught by the spec runner (negative controls)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from practice_torch import guidance as gd
from practice_torch import models
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError
from practice_torch.guidance import training as gd_training
from shared_specs import topics
from shared_specs.runner import Perturbation, run_case

CASES = {case.id: case for case in topics.spec_cases("guidance")}
DIGITS = get_info("digits")
TINY_DDPM = ["--device", "cpu", "--set", "model.conditional=true", "--set", "model.channels=8", "--set",
             "model.channel_mults=1,2", "--set", "model.attention_levels=", "--set", "model.T=50", "--set",
             "model.sample_steps=4", "--set", "train.batch_size=16", "--set", "train.samples=10", "--set",
             "train.log_every=5", "--set", "model.nll_examples=10"]
TINY_GUIDE = ["--device", "cpu", "--set", "model.channels=8", "--set", "model.T=50", "--set", "train.batch_size=32",
              "--set", "model.eval_examples=100", "--set", "model.eval_buckets=3", "--set", "train.log_every=5",
              "--set", "train.ema_decay=0", "--set", "train.warmup_steps=5", "--set", "train.lr=5e-3"]


# The combinations --------------------------------------------------------------------------------------------------
def test_cfg_interpolates_and_extrapolates_between_the_two_models():
    eps_c, eps_u = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(gd.cfg_eps(eps_c, eps_u, 0.0), eps_c)
    torch.testing.assert_close(gd.cfg_eps(eps_c, eps_u, -1.0), eps_u)
    w = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    out = gd.cfg_eps(eps_c, eps_u, w)
    for i in range(3):
        torch.testing.assert_close(out[i], eps_c[i] + w[i] * (eps_c[i] - eps_u[i]))


def test_cfg_is_classifier_guidance_by_the_implicit_classifier():
    eps_c, eps_u = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    a = torch.rand(5, dtype=torch.float64) * 0.98 + 0.01
    implicit = gd.implicit_classifier_grad(eps_c, eps_u, a)
    for w in (0.5, 2.0, 7.0):
        torch.testing.assert_close(gd.classifier_guided_eps(eps_c, implicit, a, w), gd.cfg_eps(eps_c, eps_u, w))
        torch.testing.assert_close(gd.classifier_guided_eps(eps_u, implicit, a, 1 + w), gd.cfg_eps(eps_c, eps_u, w))


def test_a_coefficient_of_the_wrong_length_is_one_line():
    with pytest.raises(ValueError, match=r"per-example coefficient must be a scalar or \(3,\), got \(2,\)"):
        gd.cfg_eps(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(2))


# Negative controls: the spec runner catches wrong guidance (docs/ARCHITECTURE.md rule 5) ---------------------------------
def test_classifier_guidance_without_the_noise_scale_is_caught_by_the_spec(both):
    def unscaled(fn):  # eps - w grad log p(y|x_t), forgetting sqrt(1 - alpha_bar_t): alpha_bar_t = 0 drops the factor
        return lambda eps, grad_log_p_y, alpha_bar_t, w: fn(eps, grad_log_p_y, 0.0 * alpha_bar_t, w)

    case = CASES["guidance/classifier_guided_eps/images-per-example-alpha"]
    assert run_case(case).passed
    result = run_case(case, Perturbation("no sqrt(1 - alpha_bar)", fn=unscaled))
    assert not result.passed and "output" in result.message()
    shifted = Perturbation("alpha_bar of the previous step", inputs=lambda x: {**x, "alpha_bar_t": x["alpha_bar_t"] * 0.99})
    assert not run_case(case, shifted).passed


# The noise-aware classifier ------------------------------------------------------------------------------------------
class LinearClassifier(torch.nn.Module):
    """logits = W vec(x) (t ignored): grad_x log softmax_y = W^T (onehot(y) - softmax) in closed form."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(k, d, dtype=torch.float64))

    def forward(self, x, t):
        return x.flatten(1) @ self.weight.T


def test_classifier_grad_is_the_closed_form_even_under_no_grad():
    torch.manual_seed(0)
    net, x, y = LinearClassifier(16, 3), torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    probs = torch.softmax(net(x, None), -1)
    expected = ((torch.nn.functional.one_hot(y, 3) - probs) @ net.weight).reshape(x.shape)
    with torch.no_grad():
        torch.testing.assert_close(gd.classifier_grad(net, x, torch.zeros(4, dtype=torch.long), y), expected)


def test_the_classifier_is_the_unet_encoder_and_checks_its_input():
    torch.manual_seed(0)
    net = gd.NoisyClassifier((1, 8, 8), 10, channels=8, channel_mults=(1, 2), attention_levels=(1,))
    assert net(torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 49])).shape == (3, 10)
    with pytest.raises(ValueError, match="7x7 images do not halve 2 times"):
        gd.NoisyClassifier((1, 7, 7), 10, channel_mults=(1, 2, 2))
    for name, message in (("moons", "takes \\(C, H, W\\) images"), ("spoken_digits", "data.view=mel")):
        with pytest.raises(ValueError, match=message):
            gd_training.build(gd_training.Config(), get_info(name))
    with pytest.raises(ValueError, match="eval_buckets must be in 1..T=10"):
        gd_training.build(gd_training.Config(T=10, eval_buckets=11), DIGITS)


def test_registry_and_presets():
    assert models.get_model("guidance") is gd_training and all(hasattr(gd_training, name) for name in models.INTERFACE)
    quick, full = gd_training.default_config("quick"), gd_training.default_config("full")
    assert quick.data.name == "fashion_mnist" and full.model.channels > quick.model.channels
    assert gd_training.default_config("quick", "digits").model.channel_mults == (1, 2)
    assert gd_training.bucket_edges(1000, 3) == [(0, 333), (333, 667), (667, 1000)]
    with pytest.raises(ConfigError, match="unknown preset"):
        gd_training.default_config("huge")


def test_a_tiny_classifier_run_learns_and_reports_accuracy_per_bucket(tmp_path, capsys):
    out = tmp_path / "guide"
    assert main(["train", "guidance", "--dataset", "digits", "--steps", "40", "--out", str(out), *TINY_GUIDE]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < math.log(10)  # below chance cross-entropy after 40 steps
    assert (out / "samples" / "noised_inputs.png").is_file() and "t =" in (out / "samples" / "predictions.txt").read_text()
    assert main(["eval", str(out), "--no-sample-metrics"]) == 0
    metrics = json.loads((out / "eval_test.json").read_text())
    buckets = [metrics[f"accuracy_t{lo}-{hi - 1}"] for lo, hi in gd_training.bucket_edges(50, 3)]
    assert all(0 <= a <= 1 for a in buckets) and buckets[0] > 0.3 and metrics["chance_accuracy"] == 0.1
    assert metrics["accuracy"] == pytest.approx(sum(buckets) / 3)


# Guided sampling ------------------------------------------------------------------------------------------------------
def _tiny_models(conditional=True, T=50):
    from practice_torch.ddpm.training import Config as DDPMConfig
    from practice_torch.ddpm.training import build as build_ddpm

    torch.manual_seed(0)
    ddpm = build_ddpm(DDPMConfig(T=T, channels=8, channel_mults=(1, 2), attention_levels=(), conditional=conditional,
                                  sample_steps=4),
                      DIGITS).eval()
    guide = gd_training.build(gd_training.Config(T=T, channels=8, channel_mults=(1, 2)), DIGITS).eval()
    return ddpm, guide


def test_guided_eps_functions_are_the_combinations_of_the_nets():
    ddpm, guide = _tiny_models()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 30, 49]), torch.tensor([1, 2, 3, 4])
    null = torch.full_like(y, 10)
    with torch.no_grad():
        eps_c, eps_u = ddpm(x, t, y), ddpm(x, t, null)
        torch.testing.assert_close(gd.guided_eps_fn(ddpm, y, 0.0)(x, t), eps_c, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gd.guided_eps_fn(ddpm, y, 2.0)(x, t), 3 * eps_c - 2 * eps_u, rtol=1e-5, atol=1e-5)
        a = ddpm.schedule.alpha_bars[t].float()
        grad = gd.classifier_grad(guide, x, t, y)
        expected = eps_u - 1.5 * torch.sqrt(1 - a)[:, None, None, None] * grad
        torch.testing.assert_close(gd.guided_eps_fn(ddpm, y, 1.5, "classifier", guide)(x, t), expected)
        torch.testing.assert_close(gd.guided_eps_fn(ddpm, y, 1.5, "classifier", guide, conditional_base=True)(x, t),
                                   eps_c - 1.5 * torch.sqrt(1 - a)[:, None, None, None] * grad)


def test_guided_samples_are_images_and_bad_combinations_are_one_line():
    ddpm, guide = _tiny_models()
    y = torch.arange(10)
    for mode in ("cfg", "classifier"):
        images = gd.guided_sample(ddpm, y, 2.0, mode, guide, steps=3, generator=torch.Generator().manual_seed(0))
        assert images.shape == (10, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    unconditional, _ = _tiny_models(conditional=False)
    with pytest.raises(ValueError, match="needs a class-conditional DDPM"):
        gd.guided_sample(unconditional, y, 1.0, "cfg", steps=2)
    assert gd.guided_sample(unconditional, y, 1.0, "classifier", guide, steps=2).shape == (10, 1, 8, 8)
    other, _ = _tiny_models(T=60)
    with pytest.raises(ValueError, match="another noise schedule"):
        gd.guided_sample(other, y, 1.0, "classifier", guide, steps=2)
    with pytest.raises(ValueError, match="needs a classifier"):
        gd.guided_sample(ddpm, y, 1.0, "classifier", None, steps=2)
    with pytest.raises(ValueError, match="'cfg' or 'classifier'"):
        gd.guided_sample(ddpm, y, 1.0, "implicit", steps=2)


# The sweep --------------------------------------------------------------------------------------------------------------
def test_the_sweep_on_a_handful_of_samples(tmp_path):
    from benchmarks.guidance import guidance_sweep

    ddpm_run, guide_run = tmp_path / "ddpm", tmp_path / "guide"
    assert main(["train", "ddpm", "--dataset", "digits", "--steps", "2", "--out", str(ddpm_run), *TINY_DDPM]) == 0
    assert main(["train", "guidance", "--dataset", "digits", "--steps", "2", "--out", str(guide_run), *TINY_GUIDE]) == 0
    args = argparse.Namespace(run=str(ddpm_run), classifier=str(guide_run), scales="0,2", guidance_samples=20,
                              guidance_steps=3, data_dir=None, results=tmp_path / "results")
    (tmp_path / "results").mkdir()
    rows = guidance_sweep(args)
    assert [(r["guidance"], r["scale"]) for r in rows[1:]] == [("cfg", 0.0), ("cfg", 2.0), ("classifier", 0.0),
                                                              ("classifier", 2.0)]
    assert rows[0]["guidance"] == "test images" and rows[0]["accuracy"] > 0.8  # the floor: real images, true labels
    assert all(r["samples"] == 20 and 0 <= r["accuracy"] <= 1 and math.isfinite(r["fid"]) for r in rows)
    for name in ("guidance_sweep.png", "guidance_sweep_cfg_samples.png", "guidance_sweep_classifier_samples.png"):
        assert (tmp_path / "results" / name).is_file()


@pytest.mark.slow
def test_the_digits_preset_classifies_noised_digits(tmp_path):
    """The digits preset (600 steps, ~1 min): accurate at small t, above chance until x_t is nearly pure noise."""
    out = tmp_path / "guide"
    assert main(["train", "guidance", "--dataset", "digits", "--device", "cpu", "--out", str(out)]) == 0
    assert main(["eval", str(out), "--no-sample-metrics"]) == 0
    metrics = json.loads((out / "eval_test.json").read_text())
    buckets = [metrics[f"accuracy_t{lo}-{hi - 1}"] for lo, hi in gd_training.bucket_edges(1000, 5)]
    assert buckets[0] > 0.85 and all(b > 0.2 for b in buckets[:4]) and buckets[0] >= buckets[-1]
