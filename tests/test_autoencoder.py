"""The autoencoder topic: negative controls of its specs, the PyTorch networks and math as a user meets them, the
training adapter (held-out class, PCA baseline, denoising PSNR, AUROC), the command line on tiny runs; the quick
preset on Fashion-MNIST is a slow test."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import scipy.linalg
import torch

from practice_torch import autoencoder
from practice_torch.autoencoder import training
from practice_torch.cli import main
from practice_torch.data import DatasetMissing, get_info, stacked
from practice_torch.engine.config import apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.engine.runs import dataset_info
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CASES = {case.id: case for case in topics.spec_cases("autoencoder")}
DIGITS = get_info("digits")
IMAGE = (1, 8, 8)


# Negative controls: each harness must catch a deliberate fault. -----------------------------------
def test_a_bce_without_its_softplus_is_caught(both):
    def no_softplus(fn):
        return lambda x, logits: -(x * logits).reshape(x.shape[0], -1).mean(-1)

    assert "output" in caught(CASES["autoencoder/reconstruction_bce"], Perturbation("no softplus", fn=no_softplus))


def test_a_corruption_with_the_noise_std_squared_is_caught(both):
    def variance(fn):
        return lambda x, eps, noise_std: fn(x, eps, noise_std**2)

    assert "output" in caught(CASES["autoencoder/corrupt"], Perturbation("sigma^2 for sigma", fn=variance))


def test_a_linear_autoencoder_with_a_transposed_product_is_caught(both):
    def swapped(fn):
        return lambda x, encoder_weight, decoder_weight, mean: fn(x, decoder_weight.T, encoder_weight.T, mean)

    assert "output" in caught(CASES["autoencoder/linear_autoencoder"], Perturbation("W_e <-> W_d^T", fn=swapped))


def test_a_projection_that_forgets_the_mean_is_caught(both):
    drop = Perturbation("uncentred", inputs=lambda i: {**i, "mean": 0 * i["mean"]})
    assert "output" in caught(CASES["autoencoder/pca_reconstruct"], drop)


def test_angles_by_arccos_alone_are_caught_on_nearly_equal_subspaces(both):
    """arccos of the cosines loses small angles (~1e-8 resolution): the sine branch is what the case pins down."""
    import jax.numpy as jnp

    def arccos_only(fn):
        def angles(a, b):
            qa, qb = jnp.linalg.qr(a)[0], jnp.linalg.qr(b)[0]
            return jnp.arccos(jnp.clip(jnp.linalg.svd(qa.T @ qb, compute_uv=False), 0, 1))[::-1]
        return angles

    assert "output" in caught(CASES["autoencoder/principal_angles/nearly-equal-subspaces"],
                              Perturbation("arccos only", fn=arccos_only))


def test_a_denoiser_without_the_noise_variance_is_caught(both):
    clean = Perturbation("s = 0", fn=lambda fn: lambda x_noisy, mean, cov, noise_std: fn(x_noisy, mean, cov, 0.0))
    assert "output" in caught(CASES["autoencoder/optimal_denoiser"], clean)


def test_a_transposed_conv_kernel_is_caught(both):
    def transpose(params):
        kernel = params["convs_1"]["kernel"]  # (H, W, I, O): swap the spatial axes
        return {**params, "convs_1": {**params["convs_1"], "kernel": np.swapaxes(kernel, 0, 1)}}

    assert "output" in caught(CASES["autoencoder/conv_encoder"], Perturbation("HW swapped", params=transpose))


def test_a_denoising_loss_on_clean_inputs_is_caught(both):
    no_noise = Perturbation("eps = 0", inputs=lambda i: {**i, "eps": 0 * i["eps"]})
    assert "output" in caught(CASES["autoencoder/autoencoder/conv-denoising-loss"], no_noise)


# The PyTorch math and networks. --------------------------------------------------------------------
def test_principal_angles_match_scipy_and_are_zero_for_the_same_subspace():
    gen = np.random.default_rng(0)
    a, mix = gen.standard_normal((10, 3)), gen.standard_normal((3, 3))
    b = gen.standard_normal((10, 3))
    torch.testing.assert_close(autoencoder.principal_angles(torch.tensor(a), torch.tensor(b)),
                               torch.tensor(scipy.linalg.subspace_angles(a, b)))
    same = autoencoder.principal_angles(torch.tensor(a), torch.tensor(a @ mix))
    assert float(same.abs().max()) < 1e-12


def test_a_linear_autoencoder_trained_by_gradient_descent_finds_pca():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.7, 0.4, 0.2]) + 1.0
    mean, components = autoencoder.pca_components(x, 2)
    w_e = (0.1 * torch.randn(2, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    w_d = (0.1 * torch.randn(5, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.SGD([w_e, w_d], lr=0.05)
    for _ in range(3000):
        opt.zero_grad()
        ((x - autoencoder.linear_autoencoder(x, w_e, w_d, mean)) ** 2).sum(-1).mean().backward()
        opt.step()
    assert float(autoencoder.principal_angles(w_d.detach(), components.T).max()) < 1e-6
    pca = autoencoder.pca_reconstruct(x, mean, components)
    torch.testing.assert_close(autoencoder.linear_autoencoder(x, w_e, w_d, mean).detach(), pca, rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_shapes_and_the_denoising_loss(architecture):
    torch.manual_seed(0)
    net = autoencoder.Autoencoder(IMAGE, 4, architecture, hidden=(16,), channels=(4, 8), groups=2)
    x, eps = torch.rand(5, *IMAGE), torch.randn(5, *IMAGE)
    assert net.encode(x).shape == (5, 4) and net.reconstruct(x).shape == (5, *IMAGE)
    assert 0 <= net(x).min() and net(x).max() <= 1
    expected = autoencoder.reconstruction_mse(x, net.reconstruct(x + 0.3 * eps))
    torch.testing.assert_close(net.per_example_loss(x, eps, noise_std=0.3), expected)
    torch.testing.assert_close(net.per_example_loss(x, eps), autoencoder.reconstruction_mse(x, net.reconstruct(x)))


def test_clear_errors():
    with pytest.raises(ValueError, match="architecture must be"):
        autoencoder.Autoencoder(IMAGE, architecture="transformer")
    with pytest.raises(ValueError, match="divisible by 4"):
        autoencoder.Autoencoder((1, 10, 10), architecture="conv")
    x, eps = torch.rand(2, *IMAGE), torch.randn(2, *IMAGE)  # the objective is the loss's setting, checked there
    with pytest.raises(ValueError, match="needs \\[0, 1\\] outputs"):
        autoencoder.Autoencoder(IMAGE, bounded=False).per_example_loss(x, eps, objective="bce")
    with pytest.raises(ValueError, match="objective must be 'mse' or 'bce'"):
        autoencoder.Autoencoder(IMAGE).loss(x, eps, objective="l1")


# The training adapter. -------------------------------------------------------------------------------
def tiny_net(**kw) -> autoencoder.Autoencoder:
    torch.manual_seed(0)
    config = training.Config(**{"channels": (4, 8), "code_dim": 4, "hidden": (16,), **kw})
    return training.build(config, DIGITS)


def test_the_loss_gives_the_held_out_class_no_weight():
    net, config = tiny_net(holdout_class=3), training.Config(holdout_class=3)
    x, y = torch.rand(6, *IMAGE), torch.tensor([3, 1, 3, 2, 0, 3])
    noise = training.draw_noise(net, config, 6, torch.Generator().manual_seed(0))
    loss, terms = training.loss(net, config, (x, y), noise, 0)
    keep = y != 3
    torch.testing.assert_close(loss, net.per_example_loss(x[keep], noise["eps"][keep]).mean())
    assert float(terms["kept"]) == pytest.approx(0.5)
    x2 = x.clone()
    x2[y == 3] = 100.0  # the held-out examples change nothing
    torch.testing.assert_close(training.loss(net, config, (x2, y), noise, 0)[0], loss)


def test_the_loss_reads_the_objective_and_the_corruption_from_the_config():
    net, config = tiny_net(), training.Config(objective="bce", noise_std=0.3, holdout_class=-1)
    x, y = torch.rand(4, *IMAGE), torch.zeros(4, dtype=torch.long)
    noise = training.draw_noise(net, config, 4, torch.Generator().manual_seed(0))
    loss = training.loss(net, config, (x, y), noise, 0)[0]
    torch.testing.assert_close(loss, net.loss(x, noise["eps"], objective="bce", noise_std=0.3))
    assert not torch.allclose(loss, net.loss(x, noise["eps"]))  # not the defaults: the network holds no setting


def test_build_rejects_what_it_cannot_model():
    with pytest.raises(ValueError, match=r"\(C, H, W\) images"):
        training.build(training.Config(), get_info("moons"))
    with pytest.raises(ValueError, match="holdout_class=12"):
        training.build(training.Config(holdout_class=12), DIGITS)
    with pytest.raises(ValueError, match="objective must be 'mse' or 'bce'"):  # before training, not at its first step
        training.build(training.Config(objective="l1"), DIGITS)


def test_the_autoencoder_and_the_vq_vae_check_their_data_with_one_rule():
    """``networks.bounded_outputs``, which both builds call: a sigmoid for 8-bit images only, (C, H, W) examples only
    (the mel hint for audio), 'bce' only on [0, 1] images; each build's message names its own model."""
    from practice_torch.autoencoder.networks import bounded_outputs
    from practice_torch.vq_vae import training as vq_training

    galaxies, audio = get_info("galaxies"), get_info("spoken_digits")
    assert bounded_outputs(DIGITS, "bce", "the autoencoder") is True
    assert bounded_outputs(galaxies, "mse", "the autoencoder") is False  # control: real values, but mse is allowed
    with pytest.raises(ValueError, match="model.objective=bce needs \\[0, 1\\] images; galaxies needs"):
        bounded_outputs(galaxies, "bce", "the autoencoder")
    for build, name in ((lambda d: training.build(training.Config(), d), "the autoencoder"),
                        (lambda d: vq_training.build_vq_vae(vq_training.Config(), d), "the VQ-VAE")):
        with pytest.raises(ValueError) as raised:
            build(audio)
        assert str(raised.value) == (f"{name} models (C, H, W) images or spectrograms; spoken_digits examples have "
                                     f"shape {audio.shape} (use --set data.view=mel)")
        with pytest.raises(ValueError, match=f"^{name} models .* shape \\(2,\\)$"):  # no hint off audio
            build(get_info("moons"))


def test_auroc_and_psnr_are_what_they_say():
    area, _, _ = training.auroc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.25, 0.4]))
    assert area == pytest.approx(5 / 6)  # 5 of the 6 (normal, anomaly) pairs ordered right
    assert training.auroc(torch.tensor([0.5, 0.6]), torch.tensor([0.1, 0.2]))[0] == 0.0
    assert training.psnr(0.01, 1.0) == pytest.approx(20.0) and training.psnr(0.04, 2.0) == pytest.approx(20.0)


def test_evaluation_reports_pca_psnr_and_auroc():
    net = tiny_net(holdout_class=9).eval()
    x, y = stacked(DIGITS.load("test"))[:2]
    from practice_torch.engine.config import DataConfig
    from practice_torch.engine.runs import load_split

    metrics = training.evaluate(net, training.Config(holdout_class=9, noise_examples=50),
                                load_split(DataConfig("digits"), "test"), torch.Generator().manual_seed(0))
    assert metrics["examples"] == int((y != 9).sum())
    assert metrics["pca_mse"] < metrics["mse"], "an untrained autoencoder loses to PCA"
    assert metrics["psnr_noisy_db"] == pytest.approx(10 * np.log10(1 / 0.25), abs=0.3)  # sigma = 0.5
    assert {"auroc_holdout", "auroc_noise"} <= set(metrics) and 0 <= metrics["auroc_holdout"] <= 1
    assert len(x) > metrics["examples"]


def test_pca_of_the_adapter_is_pca_of_the_kept_training_examples():
    mean, components = training.fit_pca(DIGITS.load("train"), training.Config(holdout_class=0), 5)
    x, y = stacked(DIGITS.load("train"))[:2]
    flat = torch.flatten(x[y != 0], 1).double()
    torch.testing.assert_close(mean, flat.mean(0))
    eigenvalues, vectors = torch.linalg.eigh(torch.cov(flat.T, correction=0))
    assert float(autoencoder.principal_angles(components.T, vectors[:, -5:]).max()) < 1e-6


def test_cli_trains_samples_and_evaluates_a_tiny_denoising_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "autoencoder", "--dataset", "digits", "--steps", "20", "--out", str(run),
                 "--set", "model.channels=4,8", "--set", "model.code_dim=4", "--set", "model.noise_std=0.3",
                 "--set", "train.log_every=10", "--set", "train.samples=16"]) == 0
    losses = [r["loss"] for r in read_metrics(run)]
    assert losses[-1] < losses[0]
    for name in ("reconstructions", "denoising", "roc"):
        assert (run / f"samples/{name}.png").is_file()
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["denoise_noise_std"] == 0.3 and "auroc_holdout" in metrics and "pca_mse" in metrics
    assert 0 <= metrics["probe_accuracy"] <= 1 and metrics["probe_accuracy_inputs"] > 0.8  # digits' pixels: about 0.95
    assert metrics["probe_examples"] == 1258  # every digit of the training split (fewer than the 5000 asked for)


def test_spoken_digit_log_mels_train_and_write_wavs(tmp_path):
    cfg = apply_overrides(training.default_config("quick", "spoken_digits"), [
        "data.limit=32", "model.hidden=16", "model.code_dim=4", "train.batch_size=16", "train.steps=2",
        "train.samples=8", "train.log_every=1", "model.noise_examples=8"])
    try:
        info = dataset_info(cfg.data)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    assert info.shape == (1, 64, 64) and not training.build(cfg.model, info).bounded
    outcome = new_trainer(cfg, tmp_path / "run").run()
    wavs = sorted(p.name for p in outcome.files if p.suffix == ".wav")
    assert "originals_audio-00.wav" in wavs and "reconstructions_audio-07.wav" in wavs


@pytest.mark.slow
def test_the_quick_preset_beats_pca_denoises_and_detects_noise(tmp_path):
    start = time.perf_counter()
    assert main(["train", "autoencoder", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 600
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["mse"] < metrics["pca_mse"] and metrics["auroc_noise"] >= 0.95, metrics
