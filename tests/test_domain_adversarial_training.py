"""DANN's training form: the three players and their shapes, the reversed gradient that reaches the extractor (and
none in the source-only baseline), lambda_p read off the engine's step number, the deterministic target domains, the
target batch the engine draws from the shifted training split, the proxy A-distance, an exactly resumed run, the CLI
on a tiny run, one-line errors; the quick preset against its source-only baseline is a slow test."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import DatasetMissing, get_dataset, get_info
from practice_torch.domain_adversarial import functions
from practice_torch.domain_adversarial import training as dann_training
from practice_torch.domain_adversarial.domains import shift_images, target_domain
from practice_torch.domain_adversarial.networks import dann_loss
from practice_torch.engine.config import DataConfig, apply_overrides
from practice_torch.engine.runs import load_split
from practice_torch.models import new_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DIGITS = get_info("digits")
TINY = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.hidden=16",
        "--set", "model.domain_hidden=16", "--set", "model.groups=2", "--set", "model.target=inverted",
        "--set", "model.ramp_steps=8", "--set", "model.pad_examples=100", "--set", "train.batch_size=16",
        "--set", "train.samples=16", "--set", "train.log_every=2", "--set", "data.limit=200"]


def tiny_net(**kw):
    torch.manual_seed(0)
    small = {"channels": (4, 8), "hidden": (16,), "domain_hidden": (16,), "groups": 2, "target": "inverted",
             "ramp_steps": 10}
    return dann_training.build(dann_training.Config(**{**small, **kw}), DIGITS)


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g), torch.rand(n, 1, 8, 8, generator=g)


def test_shapes_of_the_three_players_and_the_target_domain_beside_the_net():
    net = tiny_net()
    x, _, _ = batch()
    assert net(x).shape == (8, 10) and net.features(x).shape == (8, 8 * 2 * 2)
    assert net.domain_logits(net.features(x)).shape == (8,)
    train = load_split(DataConfig("digits"), "train")
    target = dann_training.domains(dann_training.Config(target="inverted"), train)["target"]
    torch.testing.assert_close(target, 1 - train.tensors[0])  # the split's images, shifted
    assert "steps" not in net.state_dict()  # no step counter: the schedule reads the engine's step number


def test_the_extractor_gets_the_label_gradient_minus_lambda_times_the_domain_gradient():
    """Through the reversal (eq. 13-14): G_d descends L_d, G_y descends L_y, G_f follows grad L_y - lambda grad L_d,
    all from one backward pass of L_y + L_d."""
    net, (xs, ys, xt) = tiny_net(), batch()
    loss, terms = dann_loss(net, xs, ys, xt, 0.7)
    trunk = list(net.convs.parameters())
    got = torch.autograd.grad(loss, trunk + list(net.discriminator.parameters()))
    fs, ft = net.features(xs), net.features(xt)
    l_y = functions.label_loss(net.classifier(fs), ys)
    l_d = functions.domain_loss(net.discriminator(fs)[:, 0], net.discriminator(ft)[:, 0])  # no reversal
    g_y = torch.autograd.grad(l_y, trunk, retain_graph=True)
    g_d = torch.autograd.grad(l_d, trunk + list(net.discriminator.parameters()))
    for a, b, c in zip(got, g_y, g_d):
        torch.testing.assert_close(a, b - 0.7 * c)
    for a, c in zip(got[len(trunk):], g_d[len(trunk):]):
        torch.testing.assert_close(a, c)
    torch.testing.assert_close(loss, l_y + l_d)
    assert 0 <= float(terms["domain_accuracy"]) <= 1
    # negative control: without the reversal the extractor would get grad L_y + grad L_d, another gradient
    assert not torch.allclose(got[0], g_y[0] + g_d[0])


def test_every_logged_term_lives_on_the_loss_device():
    """The terms are summed on the device for the log: a lambda made on the host cost an H200 one synchronisation a
    step (its copy to the GPU). The meta device stands in for the GPU; the control is a term made on the host."""
    net, (xs, ys, xt) = tiny_net().to("meta"), batch()
    loss, terms = dann_loss(net, xs.to("meta"), ys.to("meta"), xt.to("meta"), 0.5)
    assert loss.device.type == "meta" and {t.device.type for t in terms.values()} == {"meta"}
    assert torch.tensor(0.5).device.type == "cpu"  # the control: what the term was made with before


def test_the_source_only_baseline_sends_no_domain_gradient_into_the_extractor():
    (xs, ys, xt), config = batch(), dann_training.Config(adversarial=False, ramp_steps=10)
    net = tiny_net(adversarial=False)
    assert [dann_training.scheduled_lambda(config, step) for step in range(3)] == [0.0] * 3
    loss, _ = dann_loss(net, xs, ys, xt, 0.0)
    trunk = list(net.convs.parameters())
    got = torch.autograd.grad(loss, trunk + [net.discriminator[0].weight])
    expected = torch.autograd.grad(functions.label_loss(net(xs), ys), trunk)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    assert got[-1].abs().sum() > 0  # the domain classifier still learns


def test_lambda_follows_the_schedule_over_the_step_number_and_stays_at_its_ceiling():
    config = dann_training.Config(ramp_steps=10, lam=0.5)
    seen = [dann_training.scheduled_lambda(config, step) for step in range(14)]
    expected = [0.5 * float(functions.lambda_schedule(torch.tensor(min(k / 10, 1.0), dtype=torch.float64)))
                for k in range(14)]
    assert seen[0] == 0.0 and seen == pytest.approx(expected, abs=1e-12) and seen[10:] == [seen[10]] * 4
    assert dann_training.scheduled_lambda(config, 3) != dann_training.scheduled_lambda(config, 4)  # it moves


def test_the_target_domains_are_deterministic_shifts_within_the_unit_interval():
    x, y = get_dataset("digits", "test").tensors
    torch.testing.assert_close(shift_images(x, "inverted", "test"), 1 - x)
    patches = shift_images(x, "patches", "test")
    assert torch.equal(patches, shift_images(x, "patches", "test")) and 0 <= patches.min() and patches.max() <= 1
    assert not torch.equal(patches, shift_images(x, "patches", "train"))  # each split its own crops
    assert torch.equal(target_domain(x, y, "patches", "test").tensors[1], y)
    with pytest.raises(ValueError, match="unknown model.target 'rotated'"):
        shift_images(x, "rotated", "test")


def test_the_galaxy_blend_inverts_the_image_over_a_stretched_galaxy():
    try:
        galaxies = get_dataset("galaxies", "test").tensors[0]
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    x = get_dataset("fashion_mnist", "test", limit=64).tensors[0]
    shifted = shift_images(x, "galaxies", "test", galaxies)
    assert shifted.shape == x.shape and torch.equal(shifted, shift_images(x, "galaxies", "test", galaxies))
    assert 0 <= shifted.min() and shifted.max() <= 1 and (shifted - x).abs().mean() > 0.05
    zero = shift_images(torch.zeros_like(x), "galaxies", "test", galaxies)  # |0 - b| = b: the background itself
    assert zero.max() == 1.0 and 0.05 < zero.mean() < 0.5


def test_the_engine_appends_a_target_batch_of_the_shifted_training_split_drawn_from_its_generator(tmp_path):
    cfg = apply_overrides(dann_training.default_config("quick", "digits"), [
        "model.channels=4,8", "model.hidden=8", "model.domain_hidden=8", "model.groups=2", "model.target=inverted",
        "train.batch_size=16", "train.device=cpu", "data.limit=64"])
    first, again = new_trainer(cfg, tmp_path / "a"), new_trainer(cfg, tmp_path / "b")
    source = load_split(DataConfig("digits"), "train").tensors[0][:64]
    torch.testing.assert_close(first.domains["target"][0], 1 - source)  # data.limit holds for the target domain too
    (x, y, x_target), noise = first._next_batch()
    assert noise == {} and x_target.shape == x.shape == (16, 1, 8, 8)
    assert torch.equal(x_target, again._next_batch()[0][2])  # the same seed, the same target batch
    assert all((row == first.domains["target"][0]).flatten(1).all(1).any() for row in x_target)
    # negative control: the next step draws other rows
    assert not torch.equal(x_target, first._next_batch()[0][2])


def test_the_train_on_target_bound_draws_target_images_with_their_own_labels(tmp_path):
    """model.train_on=target: the engine hands (x_target, y_target) drawn with shared rows, the very rows and so the
    very target images DANN would get (the labels ride along), and the label loss reads them; lambda is 0."""
    sets = ["model.channels=4,8", "model.hidden=8", "model.domain_hidden=8", "model.groups=2",
            "model.target=inverted", "train.batch_size=16", "train.device=cpu", "data.limit=64"]
    base = dann_training.default_config("quick", "digits")
    bound = new_trainer(apply_overrides(base, [*sets, "model.train_on=target"]), tmp_path / "bound")
    dann = new_trainer(apply_overrides(base, sets), tmp_path / "dann")
    source, labels = load_split(DataConfig("digits"), "train").tensors
    (x, y, (x_target, y_target)), _ = bound._next_batch()
    assert torch.equal(x_target, dann._next_batch()[0][2])  # the same rows as DANN's target batch
    rows = [int(torch.nonzero((1 - source[:64] == row).flatten(1).all(1))[0]) for row in x_target]
    assert torch.equal(y_target, labels[:64][rows])  # each image's own label (control: the source batch's are not)
    assert not torch.equal(y_target, y)
    config = bound.cfg.model
    assert dann_training.scheduled_lambda(config, 5000) == 0.0
    net = tiny_net(target="inverted")
    loss, terms = dann_training.loss(net, config, (x, y, (x_target, y_target)), {}, 0)
    expected = functions.label_loss(net(x_target), y_target)
    torch.testing.assert_close(terms["label_loss"], expected.detach())
    assert not torch.allclose(terms["label_loss"], functions.label_loss(net(x), y).detach())


def test_the_proxy_a_distance_is_two_for_separable_features_and_near_zero_for_one_distribution():
    g = torch.Generator().manual_seed(0)
    same = dann_training.proxy_a_distance(torch.randn(400, 5, generator=g), torch.randn(400, 5, generator=g), g)
    apart = dann_training.proxy_a_distance(torch.randn(400, 5, generator=g), torch.randn(400, 5, generator=g) + 5, g)
    assert apart == 2.0 and abs(same) < 0.4


def test_a_resumed_run_is_bit_identical(tmp_path):
    cfg = apply_overrides(dann_training.default_config("quick", "digits"), [
        "model.channels=4,8", "model.hidden=8", "model.domain_hidden=8", "model.groups=2", "model.target=inverted",
        "model.ramp_steps=6", "train.batch_size=16", "train.steps=6", "train.checkpoint_every=3",
        "train.log_every=3", "train.samples=8", "train.device=cpu", "data.limit=64"])
    assert_resumes_exactly(cfg, tmp_path, stop_at=3)  # lambda follows the resumed step number


def test_cli_trains_samples_and_evaluates_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "domain_adversarial", "--steps", "8", "--out", str(run), *TINY]) == 0
    assert (run / "samples/predictions.png").is_file() and (run / "samples/predicted_labels.txt").is_file()
    assert main(["sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert {"source_accuracy", "target_accuracy", "domain_accuracy", "proxy_a_distance"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("source_accuracy", "target_accuracy", "domain_accuracy"))
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["lambda"] > 0.99 and {"label_loss", "domain_loss", "domain_accuracy"} <= set(logged)
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.target=rotated"], "unknown model.target 'rotated'"),
    (["--dataset", "moons"], "no quick preset for data set 'moons'"),
    (["--set", "model.channels=4,4,8,8"], "H and W divisible by 16"),
    (["--set", "model.ramp_steps=0"], "model.ramp_steps must be positive"),
    (["--set", "model.lam=-1"], "model.lam must be at least 0, got -1.0"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "domain_adversarial", "--steps", "2", "--out", str(tmp_path / "run"), *TINY, *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_an_unlabelled_source_is_refused():
    with pytest.raises(ValueError, match="DANN needs a labelled source domain"):
        dann_training.build(dann_training.Config(), dataclasses.replace(DIGITS, num_classes=0))


# The network's flax twin (shared_specs/domain_adversarial.py's module case) -------------------------------------
def _dann_case():
    from shared_specs import topics

    return {case.id: case for case in topics.spec_cases("domain_adversarial")}["domain_adversarial/dann"]


def test_the_flax_twin_agrees_and_a_twin_without_the_reversal_is_caught(both, monkeypatch):
    import theory_jax.domain_adversarial as T
    from shared_specs.runner import Perturbation, caught, run_case

    assert run_case(_dann_case()).passed
    monkeypatch.setattr(T, "gradient_reversal", lambda x, lam: x)  # the domain gradient reaches G_f unreversed
    message = caught(_dann_case(), Perturbation("no reversal"))
    assert message.startswith("gradient:"), message  # the forward pass is the same; G_f's gradient is not


def test_a_twin_that_flattens_the_features_in_nhwc_order_is_caught(both):
    from shared_specs.runner import Perturbation, caught

    def nhwc_rows(params):  # the first Dense layers read (h, w, c) where the torch twin flattens (c, h, w)
        def permute(kernel):
            return kernel.reshape(8, 2, 2, -1).transpose(1, 2, 0, 3).reshape(32, -1)

        return {**params, **{name: {**params[name], "kernel": permute(params[name]["kernel"])}
                             for name in ("classifier_0", "discriminator_0")}}

    assert "output" in caught(_dann_case(), Perturbation("NHWC flattening", params=nhwc_rows))


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_beats_its_source_only_baseline_on_the_target(tmp_path):
    figures = {}
    for name, argv in (("dann", []), ("source_only", ["--set", "model.adversarial=false"])):
        assert main(["train", "domain_adversarial", "--out", str(tmp_path / name), *argv]) == 0
        assert main(["eval", str(tmp_path / name), "--no-sample-metrics"]) == 0
        figures[name] = json.loads((tmp_path / name / "eval_test.json").read_text())
    dann, source_only = figures["dann"], figures["source_only"]
    assert source_only["source_accuracy"] - source_only["target_accuracy"] > 0.2, figures  # the shift hurts
    assert dann["target_accuracy"] > source_only["target_accuracy"] + 0.03, figures  # and DANN wins some back
    assert dann["domain_accuracy"] < source_only["domain_accuracy"], figures  # with features less separable
