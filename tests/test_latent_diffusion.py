"""Latent diffusion in PyTorch: the latent loss in both backends, the frozen autoencoder, the recorded scale and
autoencoder, sampling through the decoder, the CLI on a tiny digits run, bad input; and negative controls (a scale on
the wrong axis, a biased std, forgetting to unscale before decoding) caught by the spec runner and the model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from practice_torch import latent_diffusion as ld
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError
from practice_torch.latent_diffusion import training as ld_training
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

DIGITS = get_info("digits")
CASES = {case.id: case for case in topics.spec_cases("latent_diffusion")}
TINY = ["--device", "cpu", "--set", "model.hidden=32", "--set", "model.depth=1", "--set", "model.T=50",
        "--set", "model.sample_steps=10", "--set", "model.autoencoder_steps=15", "--set", "model.autoencoder_latent_dim=4",
        "--set", "model.scale_examples=300", "--set", "model.eval_examples=100", "--set", "model.chain_frames=4",
        "--set", "train.batch_size=32", "--set", "train.warmup_steps=2", "--set", "train.log_every=5",
        "--set", "train.samples=20"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A digits run: an in-process autoencoder (15 vae steps) and 12 latent DDPM steps."""
    root = tmp_path_factory.mktemp("latent_diffusion")
    run = root / "run"
    assert main(["train", "latent_diffusion", "--dataset", "digits", "--steps", "12", "--out", str(run),
                 "--set", f"model.autoencoder_root={root / 'autoencoders'}", *TINY]) == 0
    return run


def _net(run):
    from practice_torch.models import open_run

    return open_run(run, torch.device("cpu"))


# The latent epsilon loss: both backends, the labels the denoiser sees -------------------------------------------
def test_the_latent_eps_loss_agrees_across_backends_with_a_linear_denoiser(both):
    import jax.numpy as jnp

    import theory_jax.latent_diffusion as jl

    rng = np.random.default_rng(0)
    b, d, k, big_t = 6, 3, 4, 20
    z, eps = rng.standard_normal((b, d)) * 5, rng.standard_normal((b, d))
    y, t, drop = rng.integers(0, k, b), rng.integers(0, big_t, b), np.array([True, False] * 3)
    alpha_bars = np.cumprod(1 - np.linspace(1e-3, 0.3, big_t))
    w, emb = rng.standard_normal((d, d)), rng.standard_normal((k + 1, d))
    seen = {}

    def torch_fn(u, tt, lab):
        seen["torch"] = lab.numpy()
        return u @ torch.from_numpy(w) + torch.from_numpy(emb)[lab] * torch.sqrt(tt.double())[:, None]

    def jax_fn(u, tt, lab):
        seen["jax"] = np.asarray(lab)
        return u @ jnp.asarray(w) + jnp.asarray(emb)[lab] * jnp.sqrt(tt)[:, None]

    got = ld.latent_eps_loss(torch_fn, torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(t),
                             torch.from_numpy(eps), torch.from_numpy(drop), torch.from_numpy(alpha_bars), 0.2, k)
    want = jl.latent_eps_loss(jax_fn, jnp.asarray(z), jnp.asarray(y), jnp.asarray(t), jnp.asarray(eps),
                              jnp.asarray(drop), jnp.asarray(alpha_bars), 0.2, k)
    np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=1e-10, atol=1e-12)
    a = alpha_bars[t][:, None]
    u_t = np.sqrt(a) * 0.2 * z + np.sqrt(1 - a) * eps
    labels = np.where(drop, k, y)
    manual = np.mean((eps - (u_t @ w + emb[labels] * np.sqrt(t)[:, None])) ** 2, axis=1)
    np.testing.assert_allclose(got.numpy(), manual, rtol=1e-10)
    assert (seen["torch"] == labels).all() and (seen["jax"] == labels).all() and (labels[drop] == k).all()


# Negative controls: a wrong scale or a forgotten unscale is caught ----------------------------------------------
def test_a_latent_scale_on_the_wrong_axis_or_with_a_biased_std_is_caught(both):
    import jax.numpy as jnp

    case = CASES["latent_diffusion/latent_scale"]
    assert run_case(case).passed
    per_channel = Perturbation("std per example, not over all entries",
                               fn=lambda fn: lambda z: 1 / jnp.std(z.reshape(z.shape[0], -1), axis=1, ddof=1))
    assert "output" in caught(case, per_channel)
    biased = Perturbation("ddof = 0", fn=lambda fn: lambda z: 1 / jnp.std(z))
    assert "output" in caught(case, biased)


def test_forgetting_to_unscale_is_caught_by_the_spec_and_by_the_decoder(both, tiny_run):
    assert "output" in caught(CASES["latent_diffusion/unscale_latents"],
                              Perturbation("no unscale", fn=lambda fn: lambda u, scale: u))
    _, _, net = _net(tiny_run)
    u = torch.randn(5, net.diffusion.shape[0], generator=torch.Generator().manual_seed(0))
    right = net.decode(u)
    torch.testing.assert_close(right, net.autoencoder.sample(u / net.scale))
    assert (right - net.autoencoder.sample(u)).abs().max() > 1e-3  # s != 1, so forgetting it changes the images


# The tiny run: frozen autoencoder, recorded config, samples, evaluation, CLI --------------------------------------
def test_the_run_records_its_autoencoder_and_scale_and_keeps_the_autoencoder_frozen(tiny_run):
    from practice_torch.models import open_run

    cfg = json.loads((tiny_run / "config.json").read_text())["model"]
    ae_run = cfg["autoencoder"]  # the run the engine trained first, named here
    builds_on = json.loads((tiny_run / "builds_on.json").read_text())["autoencoder"]
    assert ae_run and builds_on["run"] == ae_run and builds_on["model"] == "vae" and builds_on["step"] == 15
    assert cfg["latent_scale"] == 0  # estimated at the first build, kept in the checkpoint, not in the config
    _, _, vae = open_run(__import__("pathlib").Path(ae_run), torch.device("cpu"))
    _, run_cfg, net = _net(tiny_run)
    for name, value in vae.state_dict().items():  # the diffusion optimizer never touched the autoencoder
        torch.testing.assert_close(net.autoencoder.state_dict()[name], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in net.autoencoder.parameters())
    assert net.scale.item() > 0
    x = torch.stack([DIGITS.load("train")[i][0] for i in range(300)])
    assert torch.std(net.encode(x) * net.scale).item() == pytest.approx(1.0, rel=1e-5)  # the same 300 examples


def test_the_run_rebuilds_its_autoencoder_from_the_record_when_the_autoencoder_run_is_gone(tiny_run, tmp_path):
    """builds_on.json records the vae's config; sample/eval/resume need only the run's own files."""
    import shutil

    cfg = json.loads((tiny_run / "config.json").read_text())["model"]
    assert json.loads((tiny_run / "builds_on.json").read_text())["autoencoder"]["config"]["model"]["latent_dim"] == 4
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    for name in ("config.json", "builds_on.json"):
        (copy / name).write_text((copy / name).read_text().replace(cfg["autoencoder"], str(tmp_path / "deleted")))
    _, _, original = _net(tiny_run)
    _, _, rebuilt = _net(copy)
    for name, value in original.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value), name


def test_a_training_step_moves_the_denoiser_only(tiny_run):
    _, _, net = _net(tiny_run)
    net.train()
    assert not net.autoencoder.training
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    data = DIGITS.load("train")
    batch = (torch.stack([data[i][0] for i in range(16)]), torch.tensor([data[i][1] for i in range(16)]))
    config = ld_training.Config()
    noise = ld_training.draw_noise(net, config, 16, torch.Generator().manual_seed(0))
    value, _ = ld_training.loss(net, config, batch, noise, 0)
    value.backward()
    optimizer.step()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("autoencoder.") or k == "scale")
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("diffusion."))


def test_samples_are_a_class_grid_of_decoded_images(tiny_run):
    module, cfg, net = _net(tiny_run)
    artefacts = module.sample(net, cfg.model, 20, torch.Generator().manual_seed(0), None)
    samples = artefacts[0]
    assert samples.name == "samples" and samples.nrow == 2 and samples.data.shape == (20, *DIGITS.shape)
    assert 0 <= samples.data.min() and samples.data.max() <= 1
    assert artefacts[1].name == "chain" and artefacts[1].data.shape[0] == 8 * 5


def test_cli_samples_and_evaluates_without_training_again(tiny_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["sample", str(tiny_run), "--n", "10", "--out", str(tmp_path / "s.png"), "--device", "cpu",
                 "--set", "model.guidance_scale=3", "--set", "model.sampler=ddim"]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(tiny_run), "--device", "cpu", "--samples", "100"]) == 0
    assert "training its autoencoder" not in capsys.readouterr().out
    metrics = json.loads((tiny_run / "eval_test.json").read_text())
    assert metrics["examples"] == 100 and math.isfinite(metrics["latent_loss"]) and math.isfinite(metrics["fid"])
    assert metrics["scaled_latent_std"] == pytest.approx(1.0, rel=0.3)
    # the scale shrinks or grows the prior term L_T per dimension by about s^2 (alpha_bar_T is tiny here)
    assert metrics["prior_kl_per_dim"] != pytest.approx(metrics["prior_kl_per_dim_unscaled"], rel=1e-3)


@pytest.mark.parametrize("overrides, message", [
    ([], "latent diffusion builds on a vae run"),
    (["model.sample_steps=5000"], "model.sample_steps must be in 0..T=1000"),
    (["model.conditional=false"], "model.guidance_scale needs a class-conditional model"),
])
def test_bad_input_is_one_line(overrides, message):
    from practice_torch.engine.config import apply_overrides
    from practice_torch.engine.runs import build_net

    cfg = apply_overrides(ld_training.default_config("quick", "digits"), overrides)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_net(ld_training, cfg, DIGITS)  # without the runs it builds on


@pytest.mark.parametrize("which, message", [
    ("nowhere", "model.autoencoder=.*nowhere: not a trained vae run"),
    ("itself", "is a latent_diffusion run; name a trained vae run"),
    ("vae", "was trained on digits; this run is on fashion_mnist"),
])
def test_an_autoencoder_of_another_kind_or_data_set_is_refused(tiny_run, tmp_path, capsys, which, message):
    ae_run = json.loads((tiny_run / "config.json").read_text())["model"]["autoencoder"]
    path = {"nowhere": tmp_path / "nowhere", "itself": tiny_run, "vae": ae_run}[which]
    dataset = "fashion_mnist" if which == "vae" else "digits"
    capsys.readouterr()
    assert main(["train", "latent_diffusion", "--dataset", dataset, "--steps", "1", "--out", str(tmp_path / "run"),
                 "--set", f"model.autoencoder={path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and __import__("re").search(message, err[0]), err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_quick_preset_trains_on_fashion_mnist_and_reports_a_fid(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "latent_diffusion", "--out", str(run), "--device", "cpu",
                 "--set", f"model.autoencoder_root={tmp_path / 'ae'}"]) == 0
    assert main(["eval", str(run), "--samples", "2000"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["fid"] < 35 and metrics["scaled_latent_std"] == pytest.approx(1.0, rel=0.1)
