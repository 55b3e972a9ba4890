"""The f-GAN in PyTorch: divergences, Algorithm 1's single loss, samples and evaluation, the critic's estimate
against the true D_f, the CLI on a tiny run, bad input; and a wrong conjugate caught by the spec runner."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from adversarial import adam_steps

from practice_torch import f_divergence as fd
from practice_torch import models
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.f_divergence import training as fd_training
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, run_case

GAUSSIANS = get_info("gaussians")
CASES = {case.id: case for case in topics.spec_cases("f_divergence")}
TINY = ["--device", "cpu", "--set", "model.hidden=16,16", "--set", "model.latent_dim=2", "--set", "train.batch_size=32",
        "--set", "train.warmup_steps=2", "--set", "train.log_every=5", "--set", "train.samples=200"]


def tiny_net(**kw) -> fd.FGAN:
    torch.manual_seed(0)
    return fd_training.build(fd_training.Config(**{"hidden": (16, 16), "latent_dim": 2, **kw}), GAUSSIANS)


# Divergences -----------------------------------------------------------------------------------------------
def test_conjugates_are_infinite_outside_their_domain_with_zero_gradient():
    edges = {"reverse_kl": 0.0, "js": math.log(2), "tv": 0.5, "hellinger": 1.0}
    for divergence, edge in edges.items():
        t = torch.tensor([edge - 0.1, edge + 0.1], dtype=torch.float64, requires_grad=True)
        value = fd.f_conjugate(t, divergence)
        assert torch.isfinite(value[0]) and value[1] == math.inf, divergence
        (grad,) = torch.autograd.grad(value[0], t)
        assert torch.isfinite(grad).all() and grad[1] == 0, divergence


def test_the_critics_density_ratio_inverts_the_optimal_critic():
    u = torch.linspace(0.1, 5, 50, dtype=torch.float64)
    for divergence in fd.DIVERGENCES:
        if divergence == "tv":
            with pytest.raises(ValueError, match="only says where p > q"):
                fd.density_ratio(fd.f_derivative(u, divergence), divergence)
        else:
            torch.testing.assert_close(fd.density_ratio(fd.f_derivative(u, divergence), divergence), u)


def test_an_unknown_divergence_is_one_line_naming_the_choices():
    for call in (lambda: fd.f_generator(torch.ones(2), "kullback"), lambda: fd.FGAN((2,), "kullback")):
        with pytest.raises(ValueError, match="unknown divergence 'kullback'; choose from kl, reverse_kl, js, tv"):
            call()
    with pytest.raises(ConfigError, match="expected one of kl, reverse_kl, js, tv, pearson, hellinger"):
        apply_overrides(fd_training.default_config("quick"), ["model.divergence=kullback"])


# Algorithm 1: one loss, descent for the generator, ascent for the critic ------------------------------------
def _grads(net, value, part):
    return torch.autograd.grad(value, list(getattr(net, part).parameters()), retain_graph=True, allow_unused=True)


@pytest.mark.parametrize("divergence", fd.DIVERGENCES)
@pytest.mark.parametrize("objective", ["saddle", "non_saturating"])
def test_one_loss_is_descent_for_the_generator_and_ascent_for_the_critic(divergence, objective):
    net = tiny_net(divergence=divergence)
    x, z = torch.randn(32, 2), torch.randn(32, 2)
    loss, terms = fd.fgan_loss(net, x, z, generator_objective=objective)
    # F(theta, omega) of eq. 6 without any detaching: what each player optimises
    fake = net(z)
    objective_value = fd.variational_objective(net.critic(x), net.critic(fake), divergence)
    generator_target = (objective_value if objective == "saddle"
                        else -torch.mean(fd.output_activation(net.critic(fake), divergence)))
    for got, want in zip(_grads(net, loss, "critic"), _grads(net, objective_value, "critic")):
        torch.testing.assert_close(got, -want)  # the critic ascends F
    for got, want in zip(_grads(net, loss, "generator"), _grads(net, generator_target, "generator")):
        torch.testing.assert_close(got, want)  # the generator descends F (or the non-saturating loss)
    torch.testing.assert_close(terms["divergence_estimate"], objective_value)


def test_the_r1_penalty_is_half_the_squared_critic_gradient_on_data():
    net = tiny_net()
    x, z = torch.randn(16, 2), torch.randn(16, 2)
    losses, terms = fd_training.player_losses(net, x, z, r1=2.0)
    loss = losses["critic"] + losses["generator"]
    plain, _ = fd.fgan_loss(net, x, z, r1=0.0)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.critic(xg).sum(), xg)
    torch.testing.assert_close(terms["r1_penalty"], 0.5 * grad.pow(2).sum(1).mean())
    torch.testing.assert_close(loss, plain + 2.0 * terms["r1_penalty"])
    with pytest.raises(ValueError, match="unknown generator objective 'minimax'; choose from saddle, non_saturating"):
        fd.fgan_loss(net, x, z, generator_objective="minimax")


def test_a_step_updates_the_critic_and_the_generator_at_once_each_on_its_own_optimizer(tmp_path):
    cfg = apply_overrides(fd_training.default_config("quick"), ["model.hidden=16,16", "model.latent_dim=2",
                                                                 "train.batch_size=32", "data.limit=128",
                                                                 "train.samples=10", "train.device=cpu"])
    trainer = new_trainer(cfg, tmp_path / "run")
    trainer.run(stop_at=3)
    assert adam_steps(trainer.optimizers["critic"]) == {3} and adam_steps(trainer.optimizers["generator"]) == {3}
    assert trainer.batches.position == 3 * 32  # one batch a step: the simultaneous updates share it


# Samples and evaluation ------------------------------------------------------------------------------------------
def test_samples_of_2d_data_are_a_scatter_and_the_critics_density_ratio():
    net = tiny_net().eval()
    data = fd.Gaussians().draw(300, torch.Generator().manual_seed(0))[0]
    figures = fd_training.sample(net, fd_training.Config(), 100, torch.Generator().manual_seed(0), (data, torch.zeros(300)))
    assert [f.name for f in figures] == ["samples", "density_ratio"]
    assert all(f.kind == "images" and f.data.shape[:2] == (1, 3) and 0 <= f.data.min() <= f.data.max() <= 1
               for f in figures)
    figures = fd_training.sample(net, fd_training.Config(divergence="tv"), 100, torch.Generator(), (data, None))
    assert [f.name for f in figures] == [
        "samples"]
    # no data: the samples alone
    assert len(fd_training.sample(net, fd_training.Config(), 100, torch.Generator(), None)) == 1


def test_image_samples_are_a_grid_in_the_unit_interval():
    torch.manual_seed(0)
    config = fd_training.Config(architecture="conv", channels=(4, 8), fc=16, latent_dim=3)
    net = fd_training.build(config, get_info("digits")).eval()
    (grid,) = fd_training.sample(net, fd_training.Config(), 10, torch.Generator().manual_seed(0))
    assert grid.data.shape == (10, 1, 8, 8) and grid.nrow == 4 and 0 <= grid.data.min() and grid.data.max() <= 1


def test_mode_coverage_counts_modes_and_samples_near_the_data():
    data, labels = (torch.from_numpy(a) for a in fd_gaussians(4000))
    full = fd_training.mode_coverage(data[:2000], data[2000:], labels[2000:])
    assert full["modes_covered"] == full["modes"] == 8 and full["high_quality"] > 0.95
    one = fd_training.mode_coverage(data[:2000][labels[:2000] == 3], data[2000:], labels[2000:])
    assert one["modes_covered"] == 1
    far = fd_training.mode_coverage(data[:2000] * 3, data[2000:], labels[2000:])
    assert far["high_quality"] < 0.05


def fd_gaussians(n):
    from practice_torch.data.toy2d import gaussians

    x, y = gaussians(n, np.random.default_rng(5))
    return x.astype(np.float32), y


def test_evaluation_reports_the_critics_estimate_and_mode_coverage():
    net = tiny_net().eval()
    x, y = (torch.from_numpy(a) for a in fd_gaussians(500))
    metrics = fd_training.evaluate(net, fd_training.Config(), torch.utils.data.TensorDataset(x, y),
                                   torch.Generator().manual_seed(0))
    assert metrics["examples"] == 500 and metrics["modes"] == 8 and 0 <= metrics["high_quality"] <= 1
    assert metrics["divergence_estimate"] == pytest.approx(metrics["mean_critic_data"] - metrics["mean_conjugate_model"])
    assert 0 < metrics["divergence_estimate_se"] < 1


# The critic alone against the true divergence ------------------------------------------------------------------
def test_the_quadrature_truth_matches_the_closed_forms():
    for divergence in ("kl", "reverse_kl", "hellinger", "pearson"):
        assert fd.true_divergence(divergence) == pytest.approx(fd.closed_form(divergence), rel=1e-9)


def _check_estimate(e: fd.Estimate, rel: float) -> None:
    assert e.estimate <= e.truth + 4 * e.standard_error, f"{e}: above the truth (the bound is a lower bound)"
    assert abs(e.estimate - e.truth) <= rel * e.truth + 4 * e.standard_error, e


@pytest.mark.parametrize("divergence", ["js", "hellinger"])
def test_a_trained_critic_estimates_the_divergence_between_gaussians(divergence):
    _check_estimate(fd.estimate_divergence(divergence, steps=200, batch_size=512, eval_samples=50_000), rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("divergence", fd.DIVERGENCES)
def test_the_critic_estimates_all_six_divergences_within_three_percent(divergence):
    _check_estimate(fd.estimate_divergence(divergence), rel=0.03)


# The spec catches a wrong conjugate (negative control, docs/ARCHITECTURE.md rule 5) ----------------------------------
def test_a_wrong_conjugate_is_caught_by_the_spec(both):
    import jax.numpy as jnp

    def forgotten_minus_one(fn):  # KL's f*(t) = e^{t-1}; e^t is the conjugate of u log u - u
        return lambda t, divergence: jnp.exp(t)

    result = run_case(CASES["f_divergence/f_conjugate/kl"], Perturbation("f*(t) = e^t", fn=forgotten_minus_one))
    assert not result.passed and "output" in result.message()


def test_a_conjugate_without_its_domain_is_caught_by_the_spec(both):
    import jax.numpy as jnp

    def no_domain(fn):  # Hellinger's t / (1 - t) evaluated beyond t = 1 instead of +inf
        return lambda t, divergence: t / (1 - t)

    assert run_case(CASES["f_divergence/f_conjugate/hellinger"]).passed
    result = run_case(CASES["f_divergence/f_conjugate/hellinger"], Perturbation("no domain", fn=no_domain))
    assert not result.passed
    wrong_activation = Perturbation("g_f = log 2 - softplus(v)", fn=lambda fn: lambda v, divergence: jnp.log(2.0)
                                    - jnp.logaddexp(0.0, v))
    assert not run_case(CASES["f_divergence/output_activation/js"], wrong_activation).passed


# The training interface and the command line -----------------------------------------------------------------
def test_both_critics_read_their_value_and_the_projection_features_off_one_head():
    """``networks.Critic``: V(x) = out(features(x)) and ``logit_and_features`` (V, features) for the MLP and the conv
    critic alike (the projection discriminator of ``practice_torch.gan`` reads both)."""
    torch.manual_seed(0)
    for critic, x in ((fd.MLPCritic((2,), (16, 8)), torch.randn(5, 2)),
                      (fd.ConvCritic((1, 8, 8), (4, 8), 16), torch.rand(3, 1, 8, 8))):
        value, features = critic.logit_and_features(x)
        assert value.shape == (len(x),) and features.shape == (len(x), critic.out.in_features)
        assert torch.equal(value, critic(x)) and torch.equal(features, critic.features(x))
        assert torch.equal(value, critic.out(features)[:, 0])
        assert not torch.equal(value, critic(x.flip(0)))  # control: another batch order, other values


def test_registry_presets_and_build_errors():
    assert models.get_model("f_divergence") is fd_training and all(hasattr(fd_training, name) for name in models.INTERFACE)
    quick, images = fd_training.default_config("quick"), fd_training.default_config("quick", "fashion_mnist")
    assert quick.data.name == "gaussians" and quick.model.architecture == "mlp" and images.model.architecture == "conv"
    assert fd_training.default_config("full").train.steps > quick.train.steps
    with pytest.raises(ConfigError, match="unknown preset"):
        fd_training.default_config("huge")
    with pytest.raises(ValueError, match="vectors or images; names is text"):
        fd_training.build(fd_training.Config(), get_info("names"))
    with pytest.raises(ValueError, match="architecture=conv needs images"):
        fd_training.build(fd_training.Config(architecture="conv"), GAUSSIANS)


def test_cli_trains_samples_and_evaluates_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "f_divergence", "--steps", "20", "--out", str(run), *TINY]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/density_ratio.png").is_file()
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["examples"] == 2000 and metrics["modes"] == 8 and math.isfinite(metrics["divergence_estimate"])
    capsys.readouterr()


def test_cli_trains_the_conv_f_gan_on_images(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "f_divergence", "--dataset", "digits", "--steps", "3", "--out", str(run), "--device", "cpu",
                 "--set", "model.channels=4,8", "--set", "model.fc=16", "--set", "model.divergence=kl",
                 "--set", "train.batch_size=8", "--set", "train.samples=9"]) == 0
    assert (run / "samples/samples.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.divergence=kullback"], "expected one of kl, reverse_kl, js, tv, pearson, hellinger"),
    (["--dataset", "names"], "vectors or images; names is text"),
    (["--set", "model.architecture=conv"], "architecture=conv needs images"),
    (["--dataset", "nope"], "unknown data set 'nope'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "f_divergence", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_covers_the_eight_modes_within_two_minutes(tmp_path):
    start = time.perf_counter()
    assert main(["train", "f_divergence", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 120
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["modes_covered"] == 8 and metrics["high_quality"] > 0.6, metrics


@pytest.mark.slow
def test_the_quick_preset_trains_on_fashion_mnist_within_five_minutes(tmp_path):
    start = time.perf_counter()
    assert main(["train", "f_divergence", "--dataset", "fashion_mnist", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 300
    assert (tmp_path / "run/samples/samples.png").is_file()


def test_the_critics_spec_catches_a_transposed_kernel_and_nhwc_flattening(both):
    """Negative controls of the module case ``f_divergence/conv_critic`` (the GAN's, WGAN's and f-GAN's
    discriminator in torch against its flax twin, weights converted)."""
    from shared_specs.runner import caught

    case = CASES["f_divergence/conv_critic"]

    def transposed(params):  # (H, W, I, O): the spatial axes swapped
        return {**params, "down1": {**params["down1"], "kernel": np.swapaxes(params["down1"]["kernel"], 0, 1)}}

    def nhwc_rows(params):  # the Dense kernel's rows in (h, w, c) order instead of torch's (c, h, w)
        kernel = params["fc"]["kernel"]
        rows = kernel.reshape(8, 2, 2, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
        return {**params, "fc": {**params["fc"], "kernel": rows}}

    assert "output" in caught(case, Perturbation("transposed kernel", params=transposed))
    assert "output" in caught(case, Perturbation("NHWC flattening", params=nhwc_rows))


def test_the_generators_spec_catches_batch_norms_eps_of_0_8_and_lost_running_statistics(both, monkeypatch):
    """Negative controls of the DCGAN generator's module cases: ``BatchNorm2d(c, 0.8)`` (a peer's slip: the second
    positional argument is eps, not momentum) in the twin, running statistics left at flax's initial mean 0 and
    variance 1 instead of the trained ones, and the projected map reshaped NHWC instead of torch's NCHW view."""
    import theory_jax.f_divergence as jfd
    from shared_specs.runner import caught

    train, evaluate = CASES["f_divergence/conv_generator"], CASES["f_divergence/conv_generator/eval"]
    assert run_case(train).passed and run_case(evaluate).passed
    with monkeypatch.context() as patch:
        patch.setattr(jfd, "BATCHNORM_EPS", 0.8)
        assert "output" in caught(train, Perturbation("BatchNorm eps 0.8"))
        assert "output" in caught(evaluate, Perturbation("BatchNorm eps 0.8"))

    from shared_specs.backends import JaxBackend
    real = JaxBackend.statistics
    with monkeypatch.context() as patch:  # flax's initial running statistics: mean 0, variance 1
        patch.setattr(JaxBackend, "statistics", lambda self, case, weights, inputs: {
            name: {"mean": np.zeros_like(s["mean"]), "var": np.ones_like(s["var"])}
            for name, s in real(self, case, weights, inputs).items()})
        assert "output" in caught(evaluate, Perturbation("running statistics not converted"))

    def nhwc_columns(params):  # the projection's outputs read in (h, w, c) order instead of torch's (c, h, w)
        kernel = params["project"]["kernel"]
        cols = kernel.reshape(-1, 8, 2, 2).transpose(0, 2, 3, 1).reshape(kernel.shape)
        return {**params, "project": {**params["project"], "kernel": cols}}

    assert "output" in caught(train, Perturbation("NHWC reshape", params=nhwc_columns))
