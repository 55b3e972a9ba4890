"""style_transfer's training form: the CycleGAN (translators and the f-GAN's critics, shapes; the schedule: which
networks get gradients; the step's loss as the functions of the derivation's twin), the two unpaired domains drawn
by ``draw_noise``, an exactly resumed run, eval's domain shares against controls, the CLI on tiny digits runs,
one-line errors; and Gatys et al.'s optimisation-based style transfer (the style loss falls, the content is kept,
its command's one-line errors). The quick preset is a slow test."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from adversarial import adam_steps
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import DataConfig, apply_overrides
from practice_torch.engine.runs import held_out_examples, load_split
from practice_torch.evaluation.features import FeatureNetwork
from practice_torch.models import new_trainer
from practice_torch.style_transfer import cycle_loss, identity_loss
from practice_torch.style_transfer import training as st
from practice_torch.style_transfer.__main__ import main as transfer_main
from practice_torch.style_transfer.transfer import TransferConfig, activations, style_transfer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DIGITS = get_info("digits")
TRAIN, TEST = (load_split(DataConfig("digits"), split) for split in ("train", "test"))  # as the engine loads them
SMALL = {"width": 4, "blocks": 1, "channels": (4, 8), "fc": 16, "domain_a": (0,), "domain_b": (1,)}
TINY = ["--dataset", "digits", "--device", "cpu", "--set", "model.width=4", "--set", "model.channels=4,8",
        "--set", "model.fc=16", "--set", "model.blocks=1", "--set", "train.batch_size=8", "--set", "train.samples=12",
        "--set", "train.log_every=2", "--set", "data.limit=50"]


def tiny_net(**kw):
    torch.manual_seed(0)
    return st.build(st.Config(**{**SMALL, **kw}), DIGITS)


def config(**kw) -> st.Config:
    return st.Config(**{**SMALL, **kw})


def grads_of(net) -> set[str]:
    return {name.split(".")[0] for name, p in net.named_parameters() if p.grad is not None}


def batches(n=6, seed=0):
    """(a, b): n training images of each domain, drawn with replacement as the engine draws them."""
    g = torch.Generator().manual_seed(seed)
    return tuple(images[torch.randint(len(images), (n,), generator=g)] for images in st.domains(config(), TRAIN).values())


# The networks and the step --------------------------------------------------------------------------------------
def test_the_translators_keep_the_image_shape_and_the_domains_are_the_asked_for_classes():
    net = tiny_net()
    a, b = batches()
    assert net(a).shape == a.shape == (6, 1, 8, 8) and 0 <= net.f_ba(b).min() and net.f_ba(b).max() <= 1
    assert net.discriminator_a(a).shape == net.discriminator_b(b).shape == (6,)
    x, y = TRAIN.tensors
    domains = st.domains(config(), TRAIN)
    assert torch.equal(domains["a"], x[y == 0]) and torch.equal(domains["b"], x[y == 1])
    assert torch.equal(st.domains(config(domain_limit=7), TRAIN)["b"], x[y == 1][:7])


def test_the_engine_hands_the_step_a_batch_of_each_domain_of_its_own_training_split(tmp_path):
    cfg = apply_overrides(st.default_config("quick", "digits"), [
        "model.width=4", "model.channels=4,8", "model.fc=16", "model.blocks=1", "model.domain_a=0",
        "model.domain_b=1", "train.batch_size=8", "train.device=cpu", "data.limit=60"])
    trainer = new_trainer(cfg, tmp_path / "run")
    x, y = TRAIN.tensors[0][:60], TRAIN.tensors[1][:60]  # data.limit holds for the domains
    assert torch.equal(trainer.domains["a"][0], x[y == 0]) and torch.equal(trainer.domains["b"][0], x[y == 1])
    (_, _, a, b), noise = trainer._next_batch()
    assert noise == {} and a.shape == b.shape == (8, 1, 8, 8)
    assert all((row == x[y == 0]).flatten(1).all(1).any() for row in a)
    assert all((row == x[y == 1]).flatten(1).all(1).any() for row in b)
    assert not any((row == x[y == 0]).flatten(1).all(1).any() for row in b)  # control: b is not from domain A


@pytest.mark.parametrize("discriminator_steps", [1, 0])
def test_each_player_updates_on_its_own_optimizer_alternating_or_at_once(tmp_path, discriminator_steps):
    cfg = apply_overrides(st.default_config("quick", "digits"), [
        "model.width=4", "model.channels=4,8", "model.fc=16", "model.blocks=1",
        f"model.discriminator_steps={discriminator_steps}",
        "model.domain_a=0", "model.domain_b=1", "train.batch_size=8", "train.samples=4", "train.device=cpu"])
    trainer = new_trainer(cfg, tmp_path / "run")
    trainer.run(stop_at=2)
    d, t = trainer.optimizers["discriminators"], trainer.optimizers["translators"]
    assert adam_steps(d) == {2} and adam_steps(t) == {2}  # discriminator_steps = 1: one each a step; 0: both in every step
    net = trainer.net
    assert {id(p) for group in t.param_groups for p in group["params"]} == {id(p) for p in net.translator_parameters()}
    a, b = batches()
    net.zero_grad(set_to_none=True)
    losses, _ = st.player_losses(net, cfg.model, a, b, (False, True))
    losses["translators"].backward(inputs=net.translator_parameters())  # as the engine's run.update does
    assert grads_of(net) == {"g_ab", "f_ba"}


@pytest.mark.parametrize("gan_loss", st.GAN_LOSSES)
def test_the_step_losses_are_eq_3_with_the_functions_of_the_derivations_twin(gan_loss):
    net = tiny_net(gan_loss=gan_loss)
    a, b = batches()
    g, f = net.g_ab, net.f_ba
    losses, terms = st.player_losses(net, config(gan_loss=gan_loss), a, b, (False, True))
    total = losses["translators"]
    adv = (st.translator_adversarial_loss(net.discriminator_b(g(a)), gan_loss)
           + st.translator_adversarial_loss(net.discriminator_a(f(b)), gan_loss))
    expected = adv + 10.0 * cycle_loss(a, f(g(a)), b, g(f(b))) + 5.0 * identity_loss(a, f(a), b, g(b))
    torch.testing.assert_close(total, expected)
    critics = st.player_losses(net, config(gan_loss=gan_loss), a, b, (True, False))[0]["discriminators"]
    d_a, d_b = net.discriminator_a, net.discriminator_b
    torch.testing.assert_close(critics, st.discriminator_adversarial_loss(d_a(a), d_a(f(b)), gan_loss)
                               + st.discriminator_adversarial_loss(d_b(b), d_b(g(a)), gan_loss))
    assert set(terms) == {"discriminator_loss_a", "discriminator_loss_b", "adversarial_loss", "cycle_loss", "identity_loss"}


def test_the_least_squares_losses_vanish_at_their_targets():
    ones, zeros = torch.ones(5), torch.zeros(5)
    assert float(st.discriminator_adversarial_loss(ones, zeros, "least_squares")) == 0.0
    assert float(st.translator_adversarial_loss(ones, "least_squares")) == 0.0
    assert float(st.discriminator_adversarial_loss(zeros, ones, "least_squares")) == 1.0  # the worst critic: 1/2 (1 + 1)


def test_a_resumed_run_is_bit_identical(tmp_path):
    cfg = apply_overrides(st.default_config("quick", "digits"), [
        "model.width=4", "model.channels=4,8", "model.fc=16", "model.blocks=1", "model.discriminator_steps=1",
        "model.domain_limit=30", "train.batch_size=4", "train.steps=6", "train.checkpoint_every=3",
        "train.log_every=3", "train.samples=4", "train.device=cpu", "data.limit=20"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=3)  # both players' optimizers resume


# eval ------------------------------------------------------------------------------------------------------------
def test_eval_counts_translations_into_b_against_the_baseline_and_real_b():
    net = tiny_net()
    test = TEST
    x, y = test.tensors
    identity = lambda v: v.clone()  # noqa: E731
    net.g_ab.forward = net.f_ba.forward = identity  # control 1: translating nothing is the baseline
    metrics = st.evaluate(net, st.Config(**SMALL), test, torch.Generator())
    assert metrics["translated_to_b"] == metrics["untranslated_a_in_b"] < 0.1 and metrics["real_b_in_b"] > 0.9
    assert metrics["cycle_error_a"] == metrics["identity_error_b"] == 0.0
    assert metrics["fid_translated_b"] == pytest.approx(metrics["fid_untranslated_a_b"])
    ones = x[y == 1]  # control 2: a translator that returns real b is scored as real b
    net.g_ab.forward = lambda v: ones[torch.arange(len(v)) % len(ones)]
    metrics = st.evaluate(net, st.Config(**SMALL), test, torch.Generator())
    assert metrics["translated_to_b"] > 0.9 and metrics["fid_translated_b"] < metrics["fid_untranslated_a_b"]


# The command line and errors -----------------------------------------------------------------------------------
def test_cli_trains_samples_and_evaluates_a_tiny_digits_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "style_transfer", "--steps", "4", "--out", str(run), *TINY,
                 "--set", "model.domain_a=3", "--set", "model.domain_b=8"]) == 0
    assert {p.name for p in (run / "samples").iterdir()} >= {"samples.png", "a_to_b.png", "b_to_a.png"}
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert 0 <= metrics["translated_to_b"] <= 1 and metrics["cycle_error_a"] > 0 and metrics["examples_a"] > 10
    capsys.readouterr()


def test_the_sample_grids_stack_a_its_translation_and_its_cycle():
    net = tiny_net()
    assert st.sample(net, st.Config(**SMALL), 5, torch.Generator(), None) == []  # no held-out data, no pictures
    artefacts = st.sample(net, st.Config(**SMALL), 5, torch.Generator().manual_seed(0), held_out_examples(TEST.run_data, 5))
    assert [a.name for a in artefacts] == ["samples", "a_to_b", "b_to_a"]
    assert artefacts[0].data.shape == (5, 1, 8, 8)
    grid = artefacts[1].data
    assert grid.shape == (15, 1, 8, 8) and artefacts[1].nrow == 5
    a = grid[:5]
    torch.testing.assert_close(grid[5:10], st.translate(net, a, "ab"))
    torch.testing.assert_close(grid[10:], st.translate(net, grid[5:10], "ba"))


@pytest.mark.parametrize("override, message", [
    ("model.domain_b=7", "must not share a class"),
    ("model.domain_a=12", "labels 0..9"),
    ("model.channels=4", "two model.channels"),
    ("data.classes=7,2", "domain b has no examples in digits's training split"),
])
def test_bad_configurations_are_one_line_errors(tmp_path, capsys, override, message):
    assert main(["train", "style_transfer", "--steps", "1", "--out", str(tmp_path / "r"), *TINY,
                 "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "r").exists()


def test_data_without_images_or_labels_is_refused_in_one_line(tmp_path, capsys):
    assert main(["train", "style_transfer", "--dataset", "gaussians", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert "no quick preset for data set 'gaussians'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="labelled image data set; digits is image data without labels"):
        st.build(st.Config(**SMALL), dataclasses.replace(DIGITS, num_classes=0))


# Optimisation-based style transfer (Gatys et al.) -----------------------------------------------------------------
def random_feature_net() -> FeatureNetwork:
    torch.manual_seed(0)
    return FeatureNetwork((1, 28, 28), 10).eval()


def test_style_transfer_lowers_the_style_loss_and_keeps_the_content_closer_than_the_style_image():
    net = random_feature_net()
    g = torch.Generator().manual_seed(0)
    content = torch.zeros(1, 1, 28, 28)
    content[..., 6:22, 10:18] = 0.8  # a bar
    style = (torch.rand(1, 1, 28, 28, generator=g) > 0.5).float() * 0.7  # salt-and-pepper texture
    result = style_transfer(net, content, style, TransferConfig(steps=60, log_every=20))
    first, last = result.history[0], result.history[-1]
    assert first["content_loss"] == 0.0 and last["style_loss"] < first["style_loss"] / 3, result.history
    own = torch.mean((activations(net, style, ("relu3",))["relu3"] - activations(net, content, ("relu3",))["relu3"]) ** 2)
    assert last["content_loss"] < float(own) / 2
    assert 0 <= result.image.min() and result.image.max() <= 1
    # negative control: no style weight, nothing to move the content image
    still = style_transfer(net, content, style, TransferConfig(steps=5, style_weight=0.0))
    torch.testing.assert_close(still.image, content)


def test_style_transfer_rejects_unknown_layers():
    with pytest.raises(ValueError, match="unknown layer 'relu9'"):
        style_transfer(random_feature_net(), torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28),
                       TransferConfig(content_layer="relu9"))


@pytest.mark.parametrize("args, message", [
    (["--content-index", "10000"], "index 10000 is out of range; the test split of fashion_mnist has 10000 images"),
    (["--style", "fashion_mnist:-1"], "index -1 is out of range"),
    (["--style", "moons:1"], "moons is 2-D data, not images"),
    (["--style", "galaxies"], "expected DATASET:INDEX"),
])
def test_the_style_transfer_command_names_bad_input_in_one_line(tmp_path, capsys, args, message):
    assert transfer_main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "o").exists()


# The flax twin of the translator (spec case style_transfer/translator) ---------------------------------------------
def test_a_spatially_flipped_transposed_conv_kernel_in_the_twin_is_caught(both):
    from shared_specs import topics
    from shared_specs.runner import Perturbation, caught

    case = {c.id: c for c in topics.spec_cases("style_transfer")}["style_transfer/translator"]

    def flipped(params):  # (H, W, O, I): a correlation where torch's transposed conv has its adjoint
        return {**params, "up": {**params["up"], "kernel": params["up"]["kernel"][::-1, ::-1]}}

    assert "output" in caught(case, Perturbation("up kernel flipped", params=flipped))


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_translates_sneakers_into_ankle_boots(tmp_path):
    assert main(["train", "style_transfer", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["translated_to_b"] > metrics["untranslated_a_in_b"] + 0.3, metrics
    assert metrics["cycle_error_a"] < 0.1 and metrics["cycle_error_b"] < 0.1, metrics
