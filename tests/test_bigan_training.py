"""BiGAN's training form: the three players and their shapes, a discriminator of pairs that sees z and no other
example of the batch, the alternating schedule (the idle players get no gradient), ``bigan_losses`` as the step's
loss, R1 on pairs, the uniform prior, the linear probe (with a control that must fail), an exactly resumed run, the
CLI on tiny image and 2-D runs, one-line errors; the quick preset is a slow test."""

from __future__ import annotations

import json

import pytest
import torch
from adversarial import adam_steps
from resumption import assert_resumes_exactly

from practice_torch.bigan import functions
from practice_torch.bigan import training as bigan_training
from practice_torch.bigan.networks import FeatureTrunk, pair_r1_penalty, player_losses
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.evaluation.probe import linear_probe
from practice_torch.models import new_trainer
from shared_specs import topics

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GAUSSIANS, DIGITS = get_info("gaussians"), get_info("digits")
TINY_IMAGES = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.width=16",
               "--set", "model.joint=16", "--set", "model.fc=16", "--set", "model.latent_dim=4",
               "--set", "model.probe_examples=300", "--set", "train.batch_size=16", "--set", "train.samples=16",
               "--set", "train.log_every=2", "--set", "data.limit=200"]
TINY_2D = ["--dataset", "gaussians", "--device", "cpu", "--set", "model.hidden=16,16", "--set", "model.width=16",
           "--set", "model.joint=16", "--set", "model.probe_examples=500", "--set", "train.batch_size=32",
           "--set", "train.log_every=5", "--set", "train.samples=200", "--set", "data.limit=500"]


def tiny_net(data=DIGITS, **kw):
    torch.manual_seed(0)
    small = {"hidden": (16, 16), "latent_dim": 4, "width": 16, "joint": 8, "channels": (4, 8), "fc": 16}
    return bigan_training.build(bigan_training.Config(**{**small, **kw}), data)


def test_shapes_of_the_encoder_generator_and_joint_discriminator():
    net = tiny_net()
    x, z = torch.rand(5, 1, 8, 8), torch.randn(5, 4)
    images = net(z)
    assert net.encoder(x).shape == (5, 4) and images.shape == (5, 1, 8, 8) and 0 <= images.min() <= images.max() <= 1
    assert net.discriminator(x, z).shape == (5,)
    flat = tiny_net(GAUSSIANS, latent_dim=2)
    assert flat.encoder(torch.randn(3, 2)).shape == (3, 2) and flat(torch.randn(3, 2)).shape == (3, 2)
    assert flat.discriminator(torch.randn(3, 2), torch.randn(3, 2)).shape == (3,)


def test_the_discriminator_judges_pairs_one_by_one():
    net = tiny_net().eval()
    x, z = torch.rand(6, 1, 8, 8), torch.randn(6, 4)
    logits = net.discriminator(x, z)
    torch.testing.assert_close(net.discriminator(x[:1], z[:1]), logits[:1])  # no batch statistics in D
    assert not torch.allclose(net.discriminator(x, z.roll(1, 0)), logits)  # the same x with other codes: D sees z


@pytest.mark.parametrize("discriminator_steps", [2, 0])
def test_a_step_is_a_round_of_the_game_each_player_on_its_own_optimizer(tmp_path, discriminator_steps):
    """discriminator_steps updates of D, then one of E and G together (0: all at once); each AdamW counts its own."""
    cfg = apply_overrides(bigan_training.default_config("quick", "gaussians"), [
        "model.hidden=16,16", "model.latent_dim=2", "model.width=16", "model.joint=16", "train.batch_size=16",
        "data.limit=64", "train.samples=10", "train.device=cpu", f"model.discriminator_steps={discriminator_steps}"])
    trainer = new_trainer(cfg, tmp_path / "run")
    trainer.run(stop_at=2)
    d, eg = trainer.optimizers["discriminator"], trainer.optimizers["encoder_generator"]
    assert adam_steps(d) == {2 * max(discriminator_steps, 1)} and adam_steps(eg) == {2}
    assert {id(p) for group in eg.param_groups for p in group["params"]} == {
        id(p) for p in [*trainer.net.encoder.parameters(), *trainer.net.generator.parameters()]}


def test_the_uniform_prior_draws_the_steps_and_the_samples_latents_in_the_cube(tmp_path):
    """``model.prior=uniform`` (Donahue et al.'s MNIST runs: z ~ U[-1, 1]^50): the step's noise and eval's and
    sample's latents come from the cube, mean 0 and variance 1/3; G draws from the prior it was trained on; E maps
    into the cube, 2 sigmoid(a) - 1 of its head's outputs a, as the paper's code does. The prior is fixed by the
    checkpoint. Control: the normal prior's latents and codes leave the cube."""
    net = tiny_net(prior="uniform")
    x = torch.rand(64, 1, 8, 8)
    with torch.no_grad():
        net.encoder.head.weight.mul_(10)  # outputs a outside [-1, 1]: the squash must bring them in
        codes, a = net.encoder(x), net.encoder.head(net.encoder.trunk(x))
    assert a.abs().max() > 1 and codes.abs().max() < 1
    torch.testing.assert_close(codes, 2 * torch.sigmoid(a) - 1)
    unbounded = tiny_net()
    with torch.no_grad():
        unbounded.encoder.head.weight.mul_(10)
        assert unbounded.encoder(x).abs().max() > 1  # the normal prior's E: the head's outputs as they are
    config = bigan_training.Config(latent_dim=4, prior="uniform")
    z = bigan_training.draw_noise(net, config, 20_000, torch.Generator().manual_seed(0))["z"]
    assert z.shape == (20_000, 4) and z.min() >= -1 and z.max() <= 1
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1 / 3) < 0.01
    normal = bigan_training.draw_noise(net, bigan_training.Config(latent_dim=4), 20_000, torch.Generator())["z"]
    assert normal.abs().max() > 1 and abs(normal.var() - 1) < 0.03
    samples = bigan_training.generate(net, 6, torch.Generator().manual_seed(1), "uniform")
    expected = net(2 * torch.rand((6, 4), generator=torch.Generator().manual_seed(1)) - 1)
    torch.testing.assert_close(samples, expected.detach())
    assert "prior" in bigan_training.ARCHITECTURE
    with pytest.raises(ConfigError, match="expected one of normal, uniform"):
        apply_overrides(bigan_training.default_config("quick"), ["model.prior=laplace"])


def test_the_players_losses_are_bigan_losses_on_the_pairs():
    net, x, z = tiny_net(), torch.rand(8, 1, 8, 8), torch.randn(8, 4)
    disc = net.discriminator
    losses, terms = player_losses(net, x, z, phase=(True, False))
    real, fake = disc(x, net.encoder(x).detach()), disc(net(z).detach(), z)
    torch.testing.assert_close(losses["discriminator"], functions.discriminator_loss(real, fake))  # real 1, fake 0
    torch.testing.assert_close(terms["encoder_generator_loss"], functions.discriminator_loss(fake, real))
    losses, _ = player_losses(net, x, z, phase=(False, True))
    assert set(losses) == {"encoder_generator"}
    net.zero_grad(set_to_none=True)
    losses["encoder_generator"].backward(inputs=net.encoder_generator_parameters())  # as the engine's run.update
    # E and G descend the flipped cross-entropy with D held fixed
    flipped = functions.discriminator_loss(disc(net(z), z), disc(x, net.encoder(x)))
    players = [*net.encoder.parameters(), *net.generator.parameters()]
    for p, g in zip(players, torch.autograd.grad(flipped, players)):
        torch.testing.assert_close(p.grad, g)
    assert all(p.grad is None for p in disc.parameters())
    player_losses(net, x, z, phase=(False, True))[0]["encoder_generator"].backward()  # negative control: a plain
    assert any(p.grad is not None for p in disc.parameters())  # backward would move D too


def test_r1_on_pairs_is_half_the_mean_squared_gradient_in_x_and_z():
    a, b = torch.randn(1, 1, 8, 8), torch.randn(1, 4)
    x, z = torch.rand(5, 1, 8, 8, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    logits = (x * a).sum((1, 2, 3)) + (z * b).sum(1) + (x**2).sum((1, 2, 3))  # grad_x = a + 2x, grad_z = b
    expected = 0.5 * torch.mean(((a + 2 * x) ** 2).sum((1, 2, 3)) + (b**2).sum(1))
    torch.testing.assert_close(pair_r1_penalty(logits, x, z), expected.detach())
    net = tiny_net()
    _, terms = player_losses(net, torch.rand(8, 1, 8, 8), torch.randn(8, 4), phase=(True, False), r1=1.0)
    assert terms["r1_penalty"] > 0


def test_the_linear_probe_reads_labels_off_informative_features_and_not_off_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(200)
    centres = 3 * torch.randn(3, 5, generator=g)
    features = centres[labels] + 0.3 * torch.randn(600, 5, generator=g)
    assert linear_probe(features[:300], labels[:300], features[300:], labels[300:]) > 0.99
    noise = torch.randn(600, 5, generator=g)  # the control: features that carry no label
    assert linear_probe(noise[:300], labels[:300], noise[300:], labels[300:]) < 0.5


def test_reconstruction_errors_compare_g_of_e_with_the_example_and_a_mismatched_one():
    net = tiny_net().eval()
    x = torch.rand(10, 1, 8, 8)
    errors = bigan_training.reconstruction_errors(net, x)
    with torch.no_grad():
        x_hat = net(net.encoder(x))
    assert errors["reconstruction_mse"] == pytest.approx(float(torch.mean((x_hat - x) ** 2)), rel=1e-6)
    assert errors["reconstruction_mse_mismatched"] == pytest.approx(
        float(torch.mean((x_hat - x.roll(1, 0)) ** 2)), rel=1e-6)


def test_a_resumed_run_is_bit_identical(tmp_path):
    cfg = apply_overrides(bigan_training.default_config("quick", "gaussians"), [
        "model.hidden=8", "model.width=8", "model.joint=8", "train.batch_size=16", "train.steps=6",
        "train.checkpoint_every=3", "train.log_every=3", "train.samples=10", "train.device=cpu", "data.limit=64"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=3)  # both players' optimizers resume


def test_cli_trains_samples_and_evaluates_a_tiny_image_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "bigan", "--steps", "6", "--out", str(run), *TINY_IMAGES]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/reconstructions.png").is_file()
    net, cfg = _open(run)
    examples = (torch.rand(20, 1, 8, 8), torch.zeros(20, dtype=torch.int64))
    artefacts = bigan_training.sample(net, cfg, 16, torch.Generator().manual_seed(0), examples)
    pairs = artefacts[1].data  # 2 rows of 8 held-out images, each above a row of their reconstructions
    assert [a.name for a in artefacts] == ["samples", "reconstructions"] and pairs.shape == (32, 1, 8, 8)
    torch.testing.assert_close(pairs[:8], examples[0][:8])
    torch.testing.assert_close(pairs[8:16], net(net.encoder(examples[0][:8])))
    assert main(["eval", str(run), "--no-sample-metrics", "--set", "model.eval_references=false"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["probe_examples"] == 300 and metrics["probe_accuracy_inputs"] > 0.8, metrics
    assert 0 <= metrics["probe_accuracy"] <= 1 and 0 <= metrics["probe_accuracy_untrained"] <= 1
    assert metrics["reconstruction_mse"] > 0 and metrics["discriminator_loss"] > 0
    capsys.readouterr()


def test_cli_trains_and_evaluates_a_tiny_2d_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "bigan", "--steps", "10", "--out", str(run), *TINY_2D]) == 0
    assert (run / "samples/reconstructions.png").is_file()
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["modes"] == 8 and metrics["probe_accuracy_inputs"] > 0.9, metrics
    capsys.readouterr()


def _open(run):
    from practice_torch.models import open_run

    _, cfg, net = open_run(run, torch.device("cpu"))
    return net, cfg.model


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.r1=-1"], "model.r1 must be at least 0, got -1.0"),
    (["--set", "model.discriminator_steps=-1"], "model.discriminator_steps must be at least 0, got -1"),
    (["--set", "model.channels=4"], "needs two model.channels"),
    (["--set", "model.latent_dim=0"], "must be positive"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "bigan", "--steps", "2", "--out", str(tmp_path / "run"), *TINY_IMAGES, *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_data_of_another_kind_and_images_the_trunk_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="vectors or images; shakespeare is text"):
        tiny_net(get_info("shakespeare"))
    with pytest.raises(ValueError, match="need H and W divisible by 4"):
        FeatureTrunk((1, 6, 6), 8, channels=(4, 8))


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_learns_features_a_linear_probe_reads(tmp_path):
    assert main(["train", "bigan", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["probe_accuracy"] > metrics["probe_accuracy_untrained"] + 0.03, metrics
    assert metrics["fid_samples"] < metrics["fid_untrained"] / 2, metrics
    assert metrics["reconstruction_mse"] < metrics["reconstruction_mse_mismatched"], metrics


# The joint discriminator's flax twin (shared_specs/bigan.py's module cases) --------------------------------------
def test_a_twin_whose_discriminator_ignores_z_is_caught(both):
    from shared_specs.runner import Perturbation, caught

    cases = {case.id: case for case in topics.spec_cases("bigan")}
    for name in ("bigan/joint_discriminator", "bigan/joint_discriminator/vectors"):
        assert "output" in caught(cases[name], Perturbation("z ignored", inputs=lambda x: {**x, "z": 0 * x["z"]}))


def test_a_twin_with_spatially_transposed_conv_kernels_is_caught(both):
    from shared_specs.runner import Perturbation, caught

    def transposed(params):
        kernel = params["x_path"]["convs_0"]["kernel"]  # HWIO
        return {**params, "x_path": {**params["x_path"], "convs_0": {**params["x_path"]["convs_0"],
                                                                     "kernel": kernel.transpose(1, 0, 2, 3)}}}

    cases = {case.id: case for case in topics.spec_cases("bigan")}
    assert "output" in caught(cases["bigan/joint_discriminator"], Perturbation("kernel transposed", params=transposed))
