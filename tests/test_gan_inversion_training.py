"""GAN inversion's training form: the encoder learns, the generator stays frozen (weights and BatchNorm statistics
bit-identical to the gan run's, with a control that a generator left in training mode is caught), the losses are
the functions of the derivation's twin, optimisation lowers eq. 1, the CLI on a tiny DCGAN trained on digits here
(train, an exactly resumed run, sample and eval without the gan run), one-line errors; the quick preset on a
Fashion-MNIST DCGAN is a slow test."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.checkpoint import load_checkpoint
from practice_torch.engine.config import apply_overrides
from practice_torch.gan_inversion import functions
from practice_torch.gan_inversion import training as inv_training
from practice_torch.gan_inversion.networks import (
    Encoder,
    Inverter,
    encoder_loss,
    feature_distance,
    inversion_objective,
    invert,
    latent_error,
)
from practice_torch.models import open_run
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DIGITS = get_info("digits")
TINY_GAN = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.fc=16",
            "--set", "model.latent_dim=4", "--set", "train.batch_size=16", "--set", "train.samples=20",
            "--set", "train.log_every=2", "--set", "data.limit=200"]
TINY = ["--dataset", "digits", "--device", "cpu", "--set", "model.encoder_channels=4,8", "--set",
        "model.encoder_fc=16", "--set", "train.batch_size=16", "--set", "train.log_every=2", "--set",
        "train.val_batch=16", "--set", "train.samples=16", "--set", "data.limit=200", "--set",
        "model.inversion_steps=6", "--set", "model.eval_examples=16"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A tiny unconditional DCGAN on digits (BatchNorm in its generator), trained for 12 steps."""
    run = tmp_path_factory.mktemp("gan") / "run"
    assert main(["train", "gan", "--steps", "12", "--out", str(run), *TINY_GAN]) == 0
    return run


@pytest.fixture(scope="module")
def inversion_run(gan_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("inversion") / "run"
    assert main(["train", "gan_inversion", "--steps", "8", "--out", str(run), "--set", f"model.generator={gan_run}",
                 *TINY]) == 0
    return run


def tiny_inverter(seed: int = 0) -> Inverter:
    from practice_torch.gan.training import Config as GanConfig
    from practice_torch.gan.training import build as build_gan

    torch.manual_seed(seed)
    gan = build_gan(GanConfig(architecture="conv", latent_dim=4, channels=(4, 8), fc=16), DIGITS)
    gan.generator.train()(torch.randn(32, 4))  # BatchNorm statistics away from their initial values
    return Inverter(gan.generator, Encoder(DIGITS.shape, 4, (4, 8), 16), 4, DIGITS.shape)


def generator_state(net: Inverter) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.generator.state_dict().items()}


# The networks and losses -----------------------------------------------------------------------------------------
def test_the_encoder_learns_and_the_generator_stays_frozen_in_eval_mode():
    net = tiny_inverter()
    before = generator_state(net)
    net.train()
    assert net.encoder.training and not net.generator.training
    x = torch.rand(8, *DIGITS.shape)
    loss, terms = encoder_loss(net, x, torch.randn(8, 4), reconstruction_weight=1.0)
    loss.backward()
    assert all(p.grad is None for p in net.generator.parameters())
    assert all(p.grad is not None for p in net.encoder.parameters())
    assert net.encode(x).shape == (8, 4) and net(torch.randn(3, 4)).shape == (3, *DIGITS.shape)
    for name, value in net.generator.state_dict().items():  # BatchNorm's running statistics too
        assert torch.equal(value, before[name]), name


def test_a_generator_left_in_training_mode_is_caught():
    """The negative control of the check above: one forward pass in training mode moves BatchNorm's statistics."""
    net = tiny_inverter()
    before = generator_state(net)
    torch.nn.Module.train(net, True)  # what Inverter.train prevents
    encoder_loss(net, torch.rand(8, *DIGITS.shape), torch.randn(8, 4))
    assert any(not torch.equal(v, before[k]) for k, v in net.generator.state_dict().items())


def test_the_encoder_loss_is_latent_regression_plus_the_weighted_pixel_term():
    net = tiny_inverter()
    x, z = torch.rand(8, *DIGITS.shape), torch.randn(8, 4)
    loss, terms = encoder_loss(net, x, z)
    torch.testing.assert_close(loss, functions.latent_regression_loss(z, net.encode(net(z))))
    pixel = torch.mean((net(net.encode(x)) - x) ** 2)
    torch.testing.assert_close(terms["reconstruction"], pixel)
    weighted, _ = encoder_loss(net, x, z, reconstruction_weight=3.0)
    torch.testing.assert_close(weighted, loss + 3.0 * pixel)
    # with weight 0 the real images send no gradient: the loss is the same for any x
    net.zero_grad()
    loss.backward()
    first = [p.grad.clone() for p in net.encoder.parameters()]
    net.zero_grad()
    encoder_loss(net, torch.rand(8, *DIGITS.shape), z)[0].backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(first, net.encoder.parameters()))


def test_the_inversion_objective_is_the_derivations_inversion_loss_per_example():
    g = torch.Generator().manual_seed(0)
    w1, b1 = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    w2, b2 = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    z, x = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 8, generator=g, dtype=torch.float64)
    per_example = inversion_objective(lambda c: functions.mlp_generator(c, w1, b1, w2, b2), z, x, 0.1)
    assert per_example.shape == (5,)
    torch.testing.assert_close(per_example.mean(), functions.inversion_loss(z, x, w1, b1, w2, b2, 0.1))


def test_optimisation_lowers_eq_1_from_its_start_and_leaves_the_generator_alone():
    net = tiny_inverter()
    with torch.no_grad():
        net.generator.up2.weight *= 30  # an untrained generator hardly depends on z; this one does
    before = generator_state(net)
    x = net(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)))
    z0 = torch.zeros(6, 4)
    z, trace = invert(net, x, z0, 40, 0.05, 1e-3, record=(10, 40))
    start, end = inversion_objective(net, z0, x, 1e-3), inversion_objective(net, z, x, 1e-3)
    assert torch.all(end < start) and set(trace) == {10, 40} and trace[40].shape == (6,)
    assert torch.equal(z0, torch.zeros(6, 4))  # the start is not modified in place
    torch.testing.assert_close(invert(net, x, z0, 0, 0.05, 1e-3)[0], z0)  # no step: the start itself
    assert all(torch.equal(v, before[k]) for k, v in net.generator.state_dict().items())
    assert all(p.grad is None for p in net.generator.parameters())


def test_the_latent_error_and_the_feature_distance_measure_what_they_say():
    z = torch.randn(1000, 16, generator=torch.Generator().manual_seed(0))
    assert abs(float(latent_error(torch.zeros_like(z), z).mean()) - 1) < 0.05
    assert abs(float(latent_error(z.roll(1, 0), z).mean()) - 2) < 0.1  # an independent draw: twice the variance
    assert torch.equal(latent_error(z, z), torch.zeros(1000))
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(feature_distance(lambda t: t.flatten(1), x, x), torch.zeros(4))
    assert torch.all(feature_distance(lambda t: t.flatten(1), x, x.roll(1, 0)) > 0)


def test_the_encoders_spec_catches_a_transposed_kernel_and_nhwc_flattening(both):
    """Negative controls of the module case ``gan_inversion/encoder`` (torch vs its flax twin, weights converted)."""
    case = {c.id: c for c in topics.spec_cases("gan_inversion")}["gan_inversion/encoder"]

    def transposed(params):  # (H, W, I, O): the spatial axes swapped
        return {**params, "convs_0": {**params["convs_0"], "kernel": np.swapaxes(params["convs_0"]["kernel"], 0, 1)}}

    def nhwc_rows(params):  # the Dense kernel's rows in (h, w, c) order instead of torch's (c, h, w)
        kernel = params["fc"]["kernel"]
        rows = kernel.reshape(8, 2, 2, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
        return {**params, "fc": {**params["fc"], "kernel": rows}}

    assert "output" in caught(case, Perturbation("transposed kernel", params=transposed))
    assert "output" in caught(case, Perturbation("NHWC flattening", params=nhwc_rows))


# The command line ------------------------------------------------------------------------------------------------
def test_cli_trains_records_the_generator_and_keeps_it_bit_identical(gan_run, inversion_run):
    config = json.loads((inversion_run / "config.json").read_text())["model"]
    assert config["latent_dim"] == 4 and config["channels"] == [4, 8]  # inherited from the gan run
    builds_on = json.loads((inversion_run / "builds_on.json").read_text())["generator"]
    assert builds_on["model"] == "gan" and builds_on["step"] == 12 and builds_on["run"] == str(gan_run)
    gan_weights, _ = load_checkpoint(gan_run / "checkpoints", "gan", with_state=False)
    weights, _ = load_checkpoint(inversion_run / "checkpoints", "gan_inversion", with_state=False)
    frozen = {k: v for k, v in gan_weights.items() if k.startswith("generator.")}
    assert frozen and all(torch.equal(weights[k], v) for k, v in frozen.items())
    metrics = [json.loads(line) for line in (inversion_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_reconstruction" in m for m in metrics) and any("latent_regression" in m for m in metrics)
    for name in ("samples", "inversions", "sample_inversions"):
        assert (inversion_run / f"samples/{name}.png").is_file()


def test_a_resumed_run_is_bit_identical(gan_run, tmp_path):
    cfg = apply_overrides(inv_training.default_config("quick", "digits"), [
        f"model.generator={gan_run}", "model.encoder_channels=4,8", "model.encoder_fc=16", "train.batch_size=16",
        "train.steps=6", "train.checkpoint_every=3", "train.log_every=3", "train.samples=4", "train.device=cpu",
        "data.limit=64", "model.inversion_steps=2", "model.eval_examples=4", "train.val_batch=0"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=3)


def test_cli_samples_and_evaluates_without_the_gan_run(gan_run, inversion_run, tmp_path, capsys):
    moved = tmp_path / "gan-moved"
    shutil.move(str(gan_run), moved)
    try:
        assert main(["sample", str(inversion_run), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0
        assert main(["eval", str(inversion_run), "--no-sample-metrics"]) == 0
    finally:
        shutil.move(str(moved), gan_run)
    metrics = json.loads((inversion_run / "eval_test.json").read_text())
    for method in ("optimisation", "encoder", "hybrid"):
        assert 0 <= metrics[f"mse_{method}"] < 1 and metrics[f"seconds_per_image_{method}"] > 0
        assert metrics[f"latent_error_{method}"] >= 0 and 0 <= metrics[f"class_kept_{method}"] <= 1
    assert metrics["examples"] == 16 and {"mse_hybrid_at_3", "feature_distance_other_image"} <= set(metrics)
    net, config = open_run(inversion_run, torch.device("cpu"))[2], inv_training.default_config("quick", "digits").model
    rows = inv_training.inversion_rows(net, config, torch.rand(5, *DIGITS.shape), torch.Generator().manual_seed(0))
    assert rows.shape == (20, *DIGITS.shape) and 0 <= rows.min() and rows.max() <= 1
    capsys.readouterr()


def _conditional_gan(run):
    """A tiny class-conditional DCGAN on digits, trained for 2 steps."""
    assert main(["train", "gan", "--steps", "2", "--out", str(run), *TINY_GAN, "--set", "model.conditional=true"]) == 0
    return run


@pytest.mark.parametrize("generator, argv, message", [
    (None, [], "needs the trained GAN to invert: --set model.generator=RUN_DIR"),
    ("missing", [], "not a trained gan run"),
    ("inversion", [], "is a gan_inversion run; name a trained gan run"),
    ("conditional", [], "is a conditional GAN; inversion needs an unconditional one"),
    ("gan", ["--dataset", "fashion_mnist"], "was trained on digits; this run is on fashion_mnist"),
    ("gan", ["--dataset", "gaussians"], "inverts image generators; gaussians is 2-D data"),
    ("gan", ["--set", "model.prior_weight=-1"], "model.prior_weight must be at least 0, got -1.0"),
])
def test_bad_input_is_one_line_and_writes_nothing(gan_run, inversion_run, tmp_path, capsys, generator, argv,
                                                   message):
    paths = {"missing": tmp_path / "nowhere", "inversion": inversion_run, "gan": gan_run,
             "conditional": lambda: _conditional_gan(tmp_path / "cgan")}
    path = paths.get(generator)
    path = path() if callable(path) else path
    capsys.readouterr()  # what making the run printed
    extra = [] if path is None else ["--set", f"model.generator={path}"]
    tiny = [a for a in TINY if a not in ("--dataset", "digits")] if "--dataset" in argv else TINY
    code = main(["train", "gan_inversion", "--steps", "2", "--out", str(tmp_path / "run"), *tiny, *extra, *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_hybrid_beats_both_and_the_encoder_is_fastest(tmp_path):
    gan = tmp_path / "gan"
    assert main(["train", "gan", "--dataset", "fashion_mnist", "--out", str(gan)]) == 0
    start = time.perf_counter()
    assert main(["train", "gan_inversion", "--out", str(tmp_path / "run"), "--set", f"model.generator={gan}"]) == 0
    assert time.perf_counter() - start < 600
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    m = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert m["mse_hybrid"] <= min(m["mse_optimisation"], m["mse_encoder"]) * 1.02, m
    assert m["mse_encoder"] < m["mse_random_code"] and m["latent_error_encoder"] < m["latent_error_zero"], m
    assert m["seconds_per_image_encoder"] * 100 < m["seconds_per_image_optimisation"], m
