"""The VAE's training interface (``practice_torch.models``): presets, build, loss, samples, evaluation,
every variant trained a few steps by the engine; the quick preset on Fashion-MNIST is a slow test."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import torch

from practice_torch import models, vae
from practice_torch.data import DatasetMissing, get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.engine.runs import dataset_info
from practice_torch.models import new_trainer
from practice_torch.vae import training as vae_training

DIGITS = get_info("digits")


def tiny_net(**kw) -> vae.VAE:
    torch.manual_seed(0)
    return vae_training.build(vae_training.Config(**{"channels": (4, 8), "latent_dim": 3, "hidden": (16,), **kw}), DIGITS)


def test_the_registry_serves_the_vae_and_names_unknown_models():
    module = models.get_model("vae")
    assert module is vae_training and all(hasattr(vae_training, name) for name in models.INTERFACE)
    with pytest.raises(models.UnknownModel, match="unknown model 'vqgan'; choose from .*vae"):
        models.get_model("vqgan")


def test_presets():
    quick, full = vae_training.default_config("quick"), vae_training.default_config("full")
    assert quick.data.name == full.data.name == "fashion_mnist" and quick.train.device == "auto"
    assert quick.train.steps < full.train.steps and full.train.precision == "bf16" and full.train.compile
    audio = vae_training.default_config("quick", "spoken_digits")
    assert audio.data.view == "mel" and audio.model.likelihood == "gaussian" and audio.model.mel
    galaxies = vae_training.default_config("quick", "galaxies").model
    assert galaxies.likelihood == "gaussian" and galaxies.dataset_size == 12_000 and galaxies.tc_beta == 1
    with pytest.raises(ConfigError, match="unknown preset"):
        vae_training.default_config("huge")


def test_build_rejects_what_it_cannot_model():
    with pytest.raises(ValueError, match=r"\(C, H, W\) images"):
        vae_training.build(vae_training.Config(), get_info("moons"))
    with pytest.raises(ValueError, match="needs labels"):
        vae_training.build(vae_training.Config(conditional=True, likelihood="gaussian"), get_info("galaxies"))
    with pytest.raises(ValueError, match="model.likelihood=gaussian"):
        vae_training.build(vae_training.Config(), dataclasses.replace(get_info("spoken_digits"), shape=(1, 64, 64)))
    with pytest.raises(ValueError, match="for galaxies use model.likelihood=gaussian"):  # real-valued, not [0, 1]
        vae_training.build(vae_training.Config(), get_info("galaxies"))
    with pytest.raises(ValueError, match="model.dataset_size"):
        vae_training.build(vae_training.Config(dataset_size=1), DIGITS)
    with pytest.raises(ValueError, match="choose one"):  # FactorVAE's TC penalty and beta-TCVAE's, both
        vae_training.build(vae_training.Config(factor_gamma=10, tc_beta=4), DIGITS)
    with pytest.raises(ValueError, match="not with model.conditional"):  # VAE-GAN's discriminator reads no label
        vae_training.build(vae_training.Config(vaegan_gamma=0.1, conditional=True), DIGITS)
    with pytest.raises(ValueError, match="without model.vaegan_gamma"):  # nor is it a hierarchy's
        vae_training.build(vae_training.Config(vaegan_gamma=0.1, levels=2), DIGITS)
    assert tiny_net(conditional=True).num_classes == 10 and tiny_net().num_classes == 0


def test_the_loss_is_the_modules_beta_objective_with_its_terms():
    net, config = tiny_net(conditional=True), vae_training.Config(beta=4.0)
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    noise = vae_training.draw_noise(net, vae_training.Config(), 5, torch.Generator().manual_seed(0))
    assert noise["eps"].shape == (5, 3)
    again = vae_training.draw_noise(net, vae_training.Config(), 5, torch.Generator().manual_seed(0))
    assert torch.equal(noise["eps"], again["eps"])
    loss, terms = vae_training.loss(net, config, (x, y), noise, 0)
    torch.testing.assert_close(loss, net.loss(x, noise["eps"], y, beta=4.0))
    torch.testing.assert_close(loss, 4.0 * terms["kl"] + terms["recon_nll"])


def test_beta_tcvae_adds_the_total_correlation_and_logs_the_kls_three_parts():
    from practice_torch.elbo import gaussian_log_prob

    net, x, y = tiny_net(), torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)
    noise = vae_training.draw_noise(net, vae_training.Config(), 6, torch.Generator().manual_seed(0))
    plain = vae_training.loss(net, vae_training.Config(beta=2.0), (x, y), noise, 0)
    assert set(plain[1]) == {"recon_nll", "kl"}
    loss, terms = vae_training.loss(net, vae_training.Config(beta=2.0, tc_beta=5.0, dataset_size=100), (x, y), noise, 0)
    torch.testing.assert_close(loss, plain[0] + 4.0 * terms["tc"])  # beta KL + (tc_beta - 1) TC - E log p(x|z)
    mean, logvar = net.encode(x)
    z = mean + torch.exp(0.5 * logvar) * noise["eps"]
    one_sample_kl = gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z)
    torch.testing.assert_close(terms["mi"] + terms["tc"] + terms["dim_kl"], one_sample_kl.mean())
    assert terms["tc"] != 0 and terms["mi"] > 0
    with pytest.raises(ConfigError, match=r"model.dataset_size \(4\) is smaller than a batch \(6\)"):
        vae_training.loss(net, vae_training.Config(tc_beta=5.0, dataset_size=4), (x, y), noise, 0)


def test_conditional_samples_have_one_row_per_class_and_figures_their_layout():
    net = tiny_net(conditional=True).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    figures = vae_training.sample(net, vae_training.Config(), 25, torch.Generator().manual_seed(1), (x, y))
    assert [f.name for f in figures] == ["samples", "reconstructions", "interpolation", "traversals"]
    samples = figures[0]
    assert samples.nrow == 3 and samples.data.shape == (30, 1, 8, 8)  # 10 classes x ceil(25 / 10)
    eps = vae.draw_eps((30, 3), torch.Generator().manual_seed(1))
    with torch.no_grad():
        row_of_sevens = net.sample(eps[21:24], torch.full((3,), 7))
    torch.testing.assert_close(samples.data[21:24], row_of_sevens)
    assert torch.equal(samples.labels, torch.arange(10).repeat_interleave(3))  # eval's class accuracy reads them
    assert vae_training.sample(tiny_net().eval(), vae_training.Config(), 4, torch.Generator())[0].labels is None
    recon = figures[1]
    assert recon.nrow == 8 and torch.equal(recon.data[:8], x[:8]) and torch.equal(recon.data[16:24], x[8:16])
    assert figures[2].nrow == 10 and figures[2].data.shape == (80, 1, 8, 8)
    traversal = figures[3]  # 3 latents, 9 values each, around the first example's posterior mean
    assert traversal.nrow == 9 and traversal.data.shape == (27, 1, 8, 8)
    latent = vae.networks.most_used_latents(net, x, y, 3)[1]
    with torch.no_grad():
        z = net.encode(x[:1], y[:1])[0].repeat(9, 1)
        z[:, latent] = torch.linspace(-2.5, 2.5, 9)
        torch.testing.assert_close(traversal.data[9:18], net.sample(z, y[:1].repeat(9)))
    assert all(0 <= f.data.min() and f.data.max() <= 1 for f in figures)


def test_evaluation_reports_the_elbo_and_a_tighter_importance_sampled_nll():
    net = tiny_net().eval()
    dataset = torch.utils.data.TensorDataset(torch.rand(40, 1, 8, 8).round(), torch.zeros(40, dtype=torch.long))
    metrics = vae_training.evaluate(net, vae_training.Config(nll_samples=64, nll_examples=20, probe_examples=0),
                                    dataset,
                                    torch.Generator().manual_seed(0))
    assert metrics["examples"] == 40 and metrics["nll_examples"] == 20 and metrics["importance_samples"] == 64
    assert metrics["elbo"] == pytest.approx(-(metrics["recon_nll"] + metrics["kl"]))
    assert metrics["nll"] < -metrics["elbo"], "the K-sample bound is tighter than the ELBO"
    assert metrics["nll_bits_per_dim"] == pytest.approx(metrics["nll"] / (64 * math.log(2)))
    assert metrics["neg_elbo_bits_per_dim"] == pytest.approx(-metrics["elbo"] / (64 * math.log(2)))
    assert metrics["tc_examples"] == 40 and metrics["tc"] > 0 and "mig" not in metrics  # labels, not factors


def test_on_data_with_generating_factors_eval_scores_the_mutual_information_gap():
    net, x = tiny_net(latent_dim=4).eval(), torch.rand(60, 1, 8, 8)
    factors = torch.rand(60, 5)
    dataset = torch.utils.data.TensorDataset(x, factors)
    metrics = vae_training.evaluate(net, vae_training.Config(nll_samples=2, nll_examples=2, tc_examples=50), dataset,
                                    torch.Generator().manual_seed(0))
    assert metrics["tc_examples"] == 50 and 0 <= metrics["mig"] <= 1
    assert metrics["mig"] == pytest.approx(sum(metrics[f"mig_factor_{k}"] for k in range(5)) / 5)
    assert all(0 <= metrics[f"mig_latent_{k}"] < 4 for k in range(5))


@pytest.mark.parametrize("variant", [
    ["model.architecture=mlp", "model.likelihood=gaussian"],
    ["model.architecture=conv", "model.conditional=true", "model.beta=4", "model.tc_beta=3"],
])
def test_every_variant_trains_through_the_engine(variant, tmp_path):
    cfg = apply_overrides(vae_training.default_config("quick"), [
        "data.name=digits", "model.channels=4,8", "model.hidden=16", "model.latent_dim=4", "train.batch_size=32",
        "train.steps=30", "train.log_every=10", "train.warmup_steps=5", "train.samples=10", *variant])
    new_trainer(cfg, tmp_path / "run").run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert (tmp_path / "run/samples/samples.png").is_file()
    from practice_torch.cli import main

    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics", "--set", "model.nll_samples=2",
                 "--set", "model.probe_examples=300"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    if "model.conditional=true" in variant:  # its posterior mean reads the label: no probe
        assert "probe_accuracy" not in metrics
    else:  # the probe of the posterior mean, beside the pixels'
        assert 0 <= metrics["probe_accuracy"] <= 1 and metrics["probe_accuracy_inputs"] > 0.8
        assert metrics["probe_examples"] == 300


def test_factor_vae_trains_two_players_and_resumes_exactly(tmp_path):
    """FactorVAE (``model.factor_gamma``) trains by its own step, the VAE and the TC discriminator each updated by its
    own Adam (the discriminator's at the paper's betas), two batches a step, and a run stopped half-way resumes to the
    very weights of the uncut run; the plain VAE keeps the engine's step on its loss."""
    from practice_torch.engine.players import AdamState
    from tests.resumption import assert_resumes_exactly

    base = apply_overrides(vae_training.default_config("quick"), [
        "data.name=digits", "model.channels=4,8", "model.latent_dim=3", "train.batch_size=16", "train.steps=8",
        "train.log_every=4", "train.checkpoint_every=4", "train.warmup_steps=0", "train.samples=4"])
    assert new_trainer(base, tmp_path / "plain").custom is None
    cfg = apply_overrides(base, ["model.factor_gamma=10", "model.tc_hidden=16,16"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=4)
    assert sorted(resumed.optimizers) == ["tc_discriminator", "vae"]
    adam = AdamState.of(resumed.optimizers["tc_discriminator"])
    assert adam.betas == (0.5, 0.9) and adam.step == 8 and AdamState.of(resumed.optimizers["vae"]).step == 8
    rows = read_metrics(tmp_path / "whole")
    assert {"tc", "tc_discriminator_loss", "tc_discriminator_accuracy", "grad_norm_vae",
            "grad_norm_tc_discriminator"} <= set(rows[-1])
    assert resumed.batches_taken == 2 * 4  # two batches a step (of the 4 since the resume): the VAE's, D's


def test_vaegan_trains_three_players_each_on_its_own_network_and_resumes_exactly(tmp_path):
    """VAE-GAN (``model.vaegan_gamma``) trains by its own step, one batch a step: the encoder at the run's Adam, the
    decoder and the discriminator at the DCGAN's (``model.gan_lr``, ``model.gan_betas``), each player holding its
    own network's weights and every weight held by one; a run stopped half-way resumes to the uncut run's weights."""
    from practice_torch.engine.players import AdamState
    from tests.resumption import assert_resumes_exactly

    cfg = apply_overrides(vae_training.default_config("quick"), [
        "data.name=digits", "model.channels=4,8", "model.latent_dim=3", "train.batch_size=16", "train.steps=8",
        "train.log_every=4", "train.checkpoint_every=4", "train.warmup_steps=0", "train.samples=4",
        "model.vaegan_gamma=0.1", "model.dis_channels=4,8", "model.dis_fc=8"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=4)
    names = {id(p): name for name, p in resumed.net.named_parameters()}
    held = {player: [names[id(p)] for group in opt.param_groups for p in group["params"]]
            for player, opt in resumed.optimizers.items()}
    assert sorted(held) == ["decoder", "discriminator", "encoder"]
    for player, weights in held.items():
        assert weights and all(name.startswith(f"{player}.") for name in weights), (player, weights)
    assert sorted(sum(held.values(), [])) == sorted(names.values())
    assert AdamState.of(resumed.optimizers["decoder"]).betas == (0.5, 0.999)
    assert AdamState.of(resumed.optimizers["encoder"]).betas == tuple(cfg.train.betas)
    assert resumed.batches_taken == 4
    assert {"feature_nll", "kl", "d_real", "d_recon", "d_prior", "grad_norm_discriminator"} <= set(
        read_metrics(tmp_path / "whole")[-1])


@pytest.mark.parametrize("key", ["model.factor_gamma=10", "model.vaegan_gamma=0.1"])
def test_factor_vae_and_vaegan_are_refused_by_the_jax_trainer(key, tmp_path, capsys):
    from practice_jax.cli import main

    assert main(["vae", "--dataset", "digits", "--out", str(tmp_path / "jax"), "--set", key]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trains in PyTorch only" in err[0] and key.split("=")[0] in err[0]


def test_spoken_digit_log_mels_train_and_write_wavs(tmp_path):
    cfg = apply_overrides(vae_training.default_config("quick", "spoken_digits"), [
        "data.limit=32", "model.channels=4,8", "model.latent_dim=4", "train.batch_size=16", "train.steps=2",
        "train.samples=4", "train.log_every=1", "model.probe_examples=0"])
    try:
        info = dataset_info(cfg.data)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    assert info.shape == (1, 64, 64)
    outcome = new_trainer(cfg, tmp_path / "run").run()
    wavs = sorted(p.name for p in outcome.files if p.suffix == ".wav")
    assert "samples_audio-00.wav" in wavs and "reconstructions_audio-03.wav" in wavs
    import soundfile

    clip, rate = soundfile.read(tmp_path / "run/samples/reconstructions_audio-00.wav")
    assert rate == 16_000 and clip.shape == (16_000,) and abs(clip).max() <= 1


@pytest.mark.slow
def test_the_quick_preset_learns_fashion_mnist_within_five_minutes(tmp_path):
    from practice_torch.cli import main

    start = time.perf_counter()
    assert main(["train", "vae", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 300
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["elbo"] > -250 and metrics["nll"] < 245, metrics


def test_a_hierarchical_vae_trains_in_both_backends_and_reports_each_levels_active_units(tmp_path, both, monkeypatch):
    """``model.levels=2``: the two-level VAE trains through the engine with each level's KL logged, draws its
    multi-scale picture, and eval reports its active units per level; its twin-training case (torch's engine
    against practice_jax, float64) catches a JAX loss that forgets the lower level's KL; what it does not combine
    with is one line."""
    import practice_jax.vae as pv
    from practice_jax.twin_cases import cases_of
    from practice_jax.twin_training import caught
    from practice_torch.cli import main

    run = tmp_path / "run"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(run), "--steps", "6", "--set", "model.levels=2",
                 "--set", "model.top_dim=2", "--set", "model.channels=4,8", "--set", "model.hidden=8",
                 "--set", "train.batch_size=16", "--set", "train.log_every=3", "--set", "train.samples=8"]) == 0
    assert {"kl_top", "kl_lower"} <= set(read_metrics(run)[-1]) and (run / "samples/levels.png").is_file()
    assert main(["eval", str(run), "--no-sample-metrics", "--set", "model.nll_samples=2",
                 "--set", "model.probe_examples=0"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert 0 <= metrics["active_units_top"] <= 2 and 0 <= metrics["active_units_lower"] <= 16 and "tc" not in metrics
    case = next(c for c in cases_of("vae") if c.id == "vae/run/hierarchical")
    right = pv.loss

    def lower_kl_forgotten(setup, params, batch, noise, step):
        value, terms = right(setup, params, batch, noise, step)
        return value - terms["kl_lower"], terms

    monkeypatch.setattr(pv, "loss", lower_kl_forgotten)
    assert "output" in caught(case, "the lower KL forgotten")
    with pytest.raises(ValueError, match="without model.conditional"):
        vae_training.build(vae_training.Config(levels=2, conditional=True), DIGITS)
    with pytest.raises(ValueError, match="model.levels is 1"):
        vae_training.build(vae_training.Config(levels=3), DIGITS)
