"""The WGAN's training form: the critic without normalisation, n_critic critic steps per generator step, the loss
built from ``practice_torch.wgan.functions`` (the dual's objective, the gradient penalty at interpolates, weight
clipping), the exact W1 of eval, an exactly resumed run, the CLI on tiny 2-D and image runs, one-line errors; the
quick presets are slow tests."""

from __future__ import annotations

import json

import pytest
import torch
from adversarial import adam_steps, tiny_trainer
from resumption import assert_resumes_exactly
from torch import nn

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.wgan import functions
from practice_torch.wgan import training as wgan_training

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GAUSSIANS, DIGITS = get_info("gaussians"), get_info("digits")
TINY = ["--device", "cpu", "--set", "model.hidden=16,16", "--set", "model.latent_dim=2", "--set", "train.batch_size=32",
        "--set", "train.warmup_steps=2", "--set", "train.log_every=6", "--set", "train.samples=200"]


def tiny(data=GAUSSIANS, **kw) -> tuple[nn.Module, wgan_training.Config]:
    torch.manual_seed(0)
    config = wgan_training.Config(**{"hidden": (16, 16), "latent_dim": 2, "channels": (4, 8), "fc": 16, **kw})
    return wgan_training.build(config, data), config


def tiny_net(data=GAUSSIANS, **kw):
    return tiny(data, **kw)[0]



def test_the_conv_critic_has_no_normalisation_and_the_f_gans_keeps_its_own():
    from practice_torch.f_divergence import ConvCritic

    net = tiny_net(DIGITS, architecture="conv")
    assert not any(isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)) for m in net.critic.modules())
    assert net(torch.randn(3, 2)).shape == (3, 1, 8, 8) and net.critic(torch.rand(3, 1, 8, 8)).shape == (3,)
    normed = ConvCritic((1, 8, 8), (4, 8), 16)
    assert isinstance(normed.norm2, nn.GroupNorm) and isinstance(normed.norm_fc, nn.LayerNorm)


def test_a_step_is_n_critic_critic_updates_then_one_generator_update(tmp_path):
    trainer = tiny_trainer("wgan", tmp_path / "run", "model.n_critic=3")
    generator_before = [p.detach().clone() for p in trainer.net.generator.parameters()]
    trainer.run(stop_at=2)
    assert adam_steps(trainer.optimizers["critic"]) == {6} and adam_steps(trainer.optimizers["generator"]) == {2}
    assert all(not torch.equal(a, b) for a, b in zip(generator_before, trainer.net.generator.parameters()))
    only = tiny_trainer("wgan", tmp_path / "critic_only", "model.critic_only=true")
    generator_before = [p.detach().clone() for p in only.net.generator.parameters()]
    only.run(stop_at=4)  # critic_only: one critic update a step, the generator never
    assert adam_steps(only.optimizers["critic"]) == {4} and not only.optimizers["generator"].state
    assert all(torch.equal(a, b) for a, b in zip(generator_before, only.net.generator.parameters()))


def test_the_critic_loss_is_the_dual_objective_plus_the_penalty_of_the_functions():
    (net, config), x = tiny(), torch.randn(8, 2)
    z, alpha = torch.randn(8, 2), torch.rand(8)
    fake = net(z).detach()
    loss, terms = wgan_training.critic_objective_terms(net, config, x, fake, alpha)
    objective = functions.critic_objective(net.critic(x), net.critic(fake))
    grads = functions.input_gradients(net.critic, functions.interpolates(x, fake, alpha))
    torch.testing.assert_close(loss, -objective + 10.0 * functions.gradient_penalty(grads))
    torch.testing.assert_close(terms["w1_estimate"], objective.detach())
    g_loss = wgan_training.generator_objective(net, config, z)
    torch.testing.assert_close(g_loss, -net.critic(net(z)).mean())


def test_the_one_sided_penalty():
    (net, config), x = tiny(penalty="lp"), torch.randn(8, 2)
    z, alpha = torch.randn(8, 2), torch.rand(8)
    fake = net(z).detach()
    loss, terms = wgan_training.critic_objective_terms(net, config, x, fake, alpha)
    grads = functions.input_gradients(net.critic, functions.interpolates(x, fake, alpha))
    objective = functions.critic_objective(net.critic(x), net.critic(fake))
    torch.testing.assert_close(loss, -objective + 10.0 * functions.lipschitz_penalty(grads))
    torch.testing.assert_close(terms["gradient_penalty"], functions.lipschitz_penalty(grads))
    assert not torch.allclose(terms["gradient_penalty"], functions.gradient_penalty(grads))  # not the two-sided one
    inside = (0.5 * grads / grads.norm(dim=1, keepdim=True)).detach()
    assert float(functions.lipschitz_penalty(inside)) == 0.0  # norms below 1 cost nothing


def test_a_tiny_1d_run_reports_the_sorted_w1_and_draws_the_critic(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "wgan", "--dataset", "mixture1d", "--steps", "12", "--out", str(run), *TINY]) == 0
    assert (run / "samples/samples.png").is_file()
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["w1_exact"] > metrics["w1_floor"] > 0 and metrics["critic_w1_relative_error"] >= 0, metrics
    capsys.readouterr()


def test_the_penalty_trains_the_critic_through_a_double_backward():
    net, x = tiny_net(), torch.randn(8, 2)
    z, alpha = torch.randn(8, 2), torch.rand(8)
    grads = functions.input_gradients(net.critic, functions.interpolates(x, net(z).detach(), alpha))
    weight_grad = torch.autograd.grad(functions.gradient_penalty(grads), net.critic.layers[0].weight)[0]
    assert weight_grad.abs().sum() > 0


def test_weight_clipping_projects_the_critic_before_it_is_used():
    (net, config), x = tiny(penalty="clip", clip=0.01), torch.randn(8, 2)
    assert max(float(p.detach().abs().max()) for p in net.critic_parameters()) > 0.01
    loss, terms = wgan_training.critic_objective_terms(net, config, x, net(torch.randn(8, 2)), torch.rand(8))
    assert max(float(p.detach().abs().max()) for p in net.critic_parameters()) <= 0.01
    assert "gradient_penalty" not in terms
    torch.testing.assert_close(net.critic.out.weight, functions.clip_weights(net.critic.out.weight, 0.01))
    assert max(float(p.detach().abs().max()) for p in net.generator.parameters()) > 0.01  # the generator is not clipped


def test_exact_w1_is_the_sorted_w1_in_one_dimension():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 1, generator=gen), 0.5 + 2 * torch.randn(300, 1, generator=gen)
    assert abs(wgan_training.exact_w1(a, b) - float(functions.w1_sorted(a[:, 0].double(), b[:, 0].double()))) < 1e-9



def test_the_w1_split_tells_the_modes_weights_from_their_widths():
    """On four modes: samples drawn from the data's own mixture score the floors; samples as narrow as the data but
    all on two of the modes raise only w1_weights (half the mass moves one spacing: 4 x 0.5 = 2, to within the
    centres' noise, the data's means); samples on every mode, evenly, but ten times as wide raise only
    centre_distance. The bound W1 <= the sum holds for each."""
    gen = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    def mixture(n, modes=4, width=0.1):
        y = torch.arange(modes).repeat(n // modes)  # each half of the data has every mode, evenly
        return centres[y] + width * torch.randn(n, 2, generator=gen), y

    data, labels = mixture(1000)
    fair, two_modes, wide = mixture(500)[0], mixture(500, modes=2)[0], mixture(500, width=1.0)[0]
    splits = {name: wgan_training.w1_split(fake, data, labels) for name, fake in
              [("fair", fair), ("two modes", two_modes), ("wide", wide)]}
    floor = splits["fair"]
    assert floor["w1_weights"] < 1e-6 and floor["w1_weights_floor"] < 1e-6, floor  # each mode 125 points a side
    assert abs(floor["centre_distance"] - floor["centre_distance_floor"]) < 0.02, floor
    assert abs(splits["two modes"]["w1_weights"] - 2.0) < 0.05 and splits["two modes"]["centre_distance"] < 0.2
    assert splits["wide"]["w1_weights"] < 0.2 and splits["wide"]["centre_distance"] > 5 * floor["centre_distance"]
    for name, fake in [("fair", fair), ("two modes", two_modes), ("wide", wide)]:
        split = splits[name]
        bound = split["centre_distance"] + split["w1_weights"] + split["centre_distance_floor"]
        assert wgan_training.exact_w1(fake, data[:500]) <= bound + 1e-9, name


def test_a_resumed_run_is_bit_identical(tmp_path):
    cfg = apply_overrides(wgan_training.default_config("quick", "gaussians"), [
        "model.hidden=8", "model.latent_dim=2", "model.n_critic=2", "train.batch_size=16", "train.steps=7",
        "train.checkpoint_every=4", "train.log_every=4", "train.samples=10", "train.device=cpu", "data.limit=64"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=4)  # both players' optimizers resume


@pytest.mark.parametrize("penalty", ["gp", "clip"])
def test_cli_trains_samples_and_evaluates_a_tiny_2d_run(tmp_path, capsys, penalty):
    run = tmp_path / "run"
    assert main(["train", "wgan", "--steps", "12", "--out", str(run), *TINY, "--set", f"model.penalty={penalty}"]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/critic.png").is_file()  # the value surface
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["modes"] == 8 and metrics["w1_exact"] > metrics["w1_floor"] > 0, metrics
    assert metrics["grad_norm_interpolates"] > 0 and "critic_w1" in metrics and "w1_weights" in metrics
    capsys.readouterr()


def test_cli_trains_a_tiny_conv_wgan_gp_on_images(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "wgan", "--dataset", "digits", "--steps", "4", "--out", str(run), "--device", "cpu",
                 "--set", "model.channels=4,8", "--set", "model.fc=16", "--set", "model.n_critic=1",
                 "--set", "train.batch_size=8", "--set", "train.samples=9", "--set", "data.limit=100"]) == 0
    assert (run / "samples/samples.png").is_file()
    assert main(["eval", str(run), "--no-sample-metrics", "--set", "model.eval_references=false"]) == 0
    assert json.loads((run / "eval_test.json").read_text())["grad_norm_interpolates"] > 0
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.penalty=spectral"], "expected one of gp, lp, clip"),
    (["--set", "model.n_critic=0"], "model.n_critic must be positive, got 0"),
    (["--dataset", "names"], "vectors or images; names is text"),
    (["--set", "model.architecture=conv"], "architecture=conv needs images"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "wgan", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_covers_the_eight_gaussians(tmp_path):
    """Gulrajani et al.'s toy (lambda 0.1): measured on six seeds, 8 of 8 modes each, 78-83% of the samples within 3
    standard deviations of a mode, W1 0.13-0.19 (floor 0.095), the critic's gradient norm at interpolates 1.23-1.34
    (a soft constraint at this lambda)."""
    assert main(["train", "wgan", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["modes_covered"] == 8 and metrics["high_quality"] > 0.7, metrics
    assert metrics["w1_exact"] < 2.5 * metrics["w1_floor"] and 1 < metrics["grad_norm_interpolates"] < 1.5, metrics


@pytest.mark.slow
def test_a_critic_alone_estimates_the_exact_1d_w1_within_5_percent(tmp_path):
    """The Kantorovich-Rubinstein dual by a one-sided-penalty critic (lambda 100) against the untrained generator:
    measured 1.243 against the sorted-sample W1 1.234 (0.7%); lambda 10 lets the slope reach 1.06 (7% over)."""
    assert main(["train", "wgan", "--dataset", "mixture1d", "--steps", "3000", "--set", "model.critic_only=true",
                 "--set", "model.gp_weight=100", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["critic_w1_relative_error"] < 0.05 and abs(metrics["grad_norm_interpolates"] - 1) < 0.05, metrics
