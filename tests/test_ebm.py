"""Energy-based models in PyTorch: Langevin chains on known Gaussians (with and without the 2 of sqrt(2 eps)), the
two-phase gradient of the CD loss, the replay buffer, early stopping, the training interface and the CLI on tiny runs,
bad input; and wrong twins (Langevin without its 2, the CD phases swapped, an inverted refresh mask, a flipped
energy) caught by the spec runner."""

from __future__ import annotations

import json
import math

import pytest
import torch

from practice_torch import ebm, models
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.ebm import training as ebm_training
from practice_torch.engine.config import ConfigError
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("ebm")}
MOONS, DIGITS = get_info("moons"), get_info("digits")
TINY = ["--device", "cpu", "--set", "model.mlp_hidden=16", "--set", "model.buffer_size=256", "--set",
        "model.langevin_steps=3", "--set", "model.sample_steps=5", "--set", "model.eval_examples=200", "--set",
        "train.batch_size=32", "--set", "train.warmup_steps=2", "--set", "train.log_every=5", "--set",
        "train.val_batch=64", "--set", "train.samples=100"]


# The functions ------------------------------------------------------------------------------------------------------
def _gaussian_chains(step, noise_scale, steps=200, n=20_000):
    """Chains x' = x - a x + sigma z on E = x^2/2 (float64) -> the final states (n,)."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, dtype=torch.float64)
    for _ in range(steps):
        z = torch.randn(n, 1, generator=g, dtype=torch.float64)
        x = ebm.tempered_langevin_step(x, x, step, noise_scale, z)
    return x[:, 0]


def test_langevin_has_the_variance_of_the_discretised_chain_and_without_its_2_it_samples_at_half_temperature():
    se = math.sqrt(2 / 20_000) * 1.4  # the standard error of a variance estimate near 4/3
    x = torch.zeros(20_000, 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        x = ebm.langevin_step(x, x, 0.5, torch.randn(x.shape, generator=g, dtype=torch.float64))
    assert abs(x.var().item() - 1 / (1 - 0.5 / 2)) < 4 * se  # v = s^2 / (1 - eps / (2 s^2)), not 1
    half = _gaussian_chains(0.5, math.sqrt(0.5)).var().item()  # sigma = sqrt(a): T = 1/2
    assert ebm.langevin_temperature(torch.tensor(0.5), torch.tensor(math.sqrt(0.5))).item() == pytest.approx(0.5)
    assert abs(half - 2 * 0.5 / (2 - 0.5)) < 4 * se  # v = 2T / (2 - a) on E = x^2/2
    assert abs(half - 4 / 3) > 20 * se


def test_the_cd_loss_gradient_is_the_two_phase_estimate_and_the_buffer_refresh_follows_its_mask():
    torch.manual_seed(0)
    energy = ebm.MLPEnergy(2, (8,)).double()
    pos, neg = torch.randn(5, 2, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    grads = torch.autograd.grad(ebm.cd_loss(energy(pos), energy(neg), 0.0), list(energy.parameters()))

    def mean_grad(x):
        per = [torch.autograd.grad(energy(row[None])[0], list(energy.parameters())) for row in x]
        return [torch.stack(g).mean(0) for g in zip(*per)]

    for got, p_phase, n_phase in zip(grads, mean_grad(pos), mean_grad(neg)):
        torch.testing.assert_close(got, p_phase - n_phase)  # E_data[grad E] - E_neg[grad E]
    samples, fresh, mask = torch.zeros(4, 3), torch.ones(4, 3), torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert ebm.refresh_buffer(samples, fresh, mask)[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]


# Negative controls through the spec runner --------------------------------------------------------------------------
def test_the_cd_phases_swapped_are_caught_by_the_spec(both):
    swapped = Perturbation("mean E(x-) - mean E(x+)", fn=lambda fn: lambda energy_pos, energy_neg, alpha:
                           fn(energy_neg, energy_pos, alpha))
    for case in ("ebm/cd_loss", "ebm/cd_loss_unregularised"):
        assert "output" in caught(CASES[case], swapped)


def test_a_flipped_energy_network_is_caught_under_the_converter(both):
    def flip(params):
        out = dict(params)
        out["out"] = {k: -v for k, v in params["out"].items()}
        return out

    assert "output" in caught(CASES["ebm/mlp_energy"], Perturbation("-E", params=flip))


# The EBM, its buffer and its training interface ------------------------------------------------------------------------
def tiny_config(info=MOONS, **kw) -> ebm_training.Config:
    config = {"mlp_hidden": (16,), "buffer_size": 64, "langevin_steps": 3}
    if info.modality == "image":
        config |= {"architecture": "conv", "conv_channels": (4, 8), "conv_hidden": 8}
    return ebm_training.Config(**{**config, **kw})


def tiny_net(info=MOONS, **kw) -> ebm.EBM:
    torch.manual_seed(0)
    return ebm_training.build(tiny_config(info, **kw), info)


def test_the_buffer_is_state_not_a_parameter_and_the_chains_write_back_without_parameter_gradients():
    net = tiny_net()
    assert "replay" in net.state_dict() and all(p.shape != net.replay.shape for p in net.parameters())
    assert net.replay.shape == (64, 2) and float(net.replay.abs().max()) <= 3.0
    noise = ebm_training.draw_noise(net, tiny_config(), 16, torch.Generator().manual_seed(0))
    assert noise["index"].unique().numel() == 16 and noise["z"].shape == (16, 3, 2) and noise["u"].shape == (16, 2)
    before = net.replay.clone()
    value, terms = ebm_training.loss(net, tiny_config(), (torch.randn(16, 2), None), noise, 0)
    changed = (net.replay != before).any(1)
    assert changed[noise["index"]].all() and changed.sum() == 16  # the batch's chains, and only they, went back
    assert set(terms) == {"energy_data", "energy_samples"} and value.requires_grad
    value.backward()
    assert all(p.grad is not None for p in net.parameters())
    config = tiny_config()
    shares = (ebm_training.draw_noise(net, config, 64, torch.Generator().manual_seed(s))["refresh"].mean()
              for s in range(50))
    assert abs(sum(shares) / 50 - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 3200)


def test_val_cd_after_a_resume_uses_the_latest_steps_negatives_saved_with_the_buffer():
    net, config = tiny_net(), tiny_config()
    noise = ebm_training.draw_noise(net, config, 16, torch.Generator().manual_seed(0))
    ebm_training.loss(net, config, (torch.randn(16, 2), None), noise, 0)
    assert net.latest.nonzero().squeeze(1).tolist() == sorted(noise["index"].tolist())
    resumed = tiny_net()
    resumed.load_state_dict(net.state_dict())  # what a resume reads
    held_out = (torch.randn(32, 2), None)
    with torch.no_grad():
        before, after = (ebm_training.validate(n, config, held_out)["val_cd"] for n in (net, resumed))
        assert torch.equal(before, after)
        resumed.latest.zero_()  # negative control: the mark lost, as before version 2
        assert not torch.equal(before, ebm_training.validate(resumed, config, held_out)["val_cd"])
    assert ebm_training.CHECKPOINT_VERSIONS.keys() == {1, 2}


def test_registry_presets_and_build_errors():
    assert models.get_model("ebm") is ebm_training and all(hasattr(ebm_training, n) for n in models.INTERFACE)
    quick, images = ebm_training.default_config("quick"), ebm_training.default_config("quick", "fashion_mnist")
    assert quick.data.name == "moons" and quick.model.architecture == "mlp" and images.model.architecture == "conv"
    assert images.train.early_stop == "val_cd" and quick.train.early_stop == "val_nll"
    assert images.model.temperature == pytest.approx(0.005**2 / (2 * 10))  # the course's sampler, named for what it is
    with pytest.raises(ConfigError, match="unknown preset"):
        ebm_training.default_config("huge")
    with pytest.raises(ValueError, match="points or images; names is text"):
        ebm_training.build(ebm_training.Config(), get_info("names"))
    with pytest.raises(ValueError, match="architecture=conv needs images"):
        ebm_training.build(ebm_training.Config(architecture="conv"), MOONS)


def test_the_validation_nll_is_normalised_by_quadrature():
    net = tiny_net()
    points, area = ebm_training._grid(net, 300)
    with torch.no_grad():
        mass = torch.exp(-net(points) - ebm_training.log_partition(net)).sum() * area
        terms = ebm_training.validate(net, tiny_config(), (torch.randn(10, 2), None))
    assert mass.item() == pytest.approx(1.0, rel=1e-4) and set(terms) == {"val_cd", "val_nll"}


def test_ood_auroc_orders_the_energies():
    low, high = torch.zeros(100), torch.ones(100)
    assert ebm_training.auroc(low, high) == 1.0 and ebm_training.auroc(high, low) == 0.0
    assert ebm_training._as_images(torch.rand(3, 1, 32, 32) * 2 - 0.5, (1, 28, 28)).shape == (3, 1, 28, 28)


# The command line and the engine's early stopping ------------------------------------------------------------------------
def test_cli_trains_samples_and_evaluates_a_tiny_2d_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ebm", "--steps", "10", "--out", str(run), *TINY]) == 0
    assert (run / "samples/samples.png").is_file()
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["examples"] == 200 and all(math.isfinite(metrics[k]) for k in ("nll", "auroc_noise", "energy_test"))
    capsys.readouterr()


def test_cli_trains_and_evaluates_the_conv_energy_on_images(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ebm", "--dataset", "digits", "--steps", "4", "--out", str(run), *TINY,
                 "--set", "data.classes=3", "--set", "model.conv_channels=4,8", "--set", "model.conv_hidden=8",
                 "--set", "train.samples=16", "--set", "model.ood=galaxies"]) == 0
    for name in ("samples", "fresh_chains", "chains", "ood"):
        assert (run / f"samples/{name}.png").is_file(), name
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert {"auroc_noise", "auroc_other_classes"} <= set(metrics) and "nll" not in metrics
    capsys.readouterr()


def test_early_stopping_ends_a_run_whose_criterion_stalls(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ebm", "--steps", "40", "--out", str(run), *TINY, "--set", "train.lr=1e-30",
                 "--set", "train.log_every=2", "--set", "train.early_stop=val_nll", "--set", "train.patience=1"]) == 0
    out, _ = capsys.readouterr()  # frozen weights; the criterion moves only with the validation rows it scores
    steps = int(out.split("trained ebm for ")[1].split()[0])
    assert steps < 40 and steps % 2 == 0 and "early stop: val_nll" in out, out
    assert (run / "samples/samples.png").is_file()  # stopped as a completed run


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "names"], "points or images; names is text"),
    (["--set", "model.architecture=conv"], "architecture=conv needs images"),
    (["--set", "model.refresh=2"], "model.refresh must be in [0, 1]"),
    (["--set", "train.val_batch=0"], "needs train.val_batch > 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "ebm", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_on_moons_learns_a_normalised_density(tmp_path):
    assert main(["train", "ebm", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["nll"] < math.log(36) - 1 and metrics["auroc_noise"] > 0.95, metrics  # uniform on the box: log 36


@pytest.mark.slow
def test_the_quick_preset_on_one_fashion_class_tells_test_images_from_noise_and_other_images(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "ebm", "--dataset", "fashion_mnist", "--set", "data.classes=1", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["auroc_noise"] >= 0.95 and metrics["auroc_galaxies"] > 0.5, metrics
