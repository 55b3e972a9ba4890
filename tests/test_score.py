"""Score models in PyTorch: eps <-> score, DSM, annealed Langevin on a known Gaussian, the NCSN and its training
interface, the CLI on tiny runs, bad input; and wrong twins (a flipped score sign, a DSM target without its
1/sigma^2, a Langevin step without its 1/2) caught by the spec runner."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from practice_torch import models
from practice_torch import score as sc
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError
from practice_torch.evaluation.metrics import wasserstein2
from practice_torch.score import training as sc_training
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {case.id: case for case in topics.spec_cases("score")}
MOONS = get_info("moons")
TINY = ["--device", "cpu", "--set", "model.hidden=16", "--set", "model.depth=1", "--set", "model.num_levels=4",
        "--set", "model.steps_per_level=2", "--set", "model.eval_examples=100", "--set", "train.batch_size=32",
        "--set", "train.warmup_steps=2", "--set", "train.log_every=5", "--set", "train.samples=100"]


# The functions --------------------------------------------------------------------------------------------------
def test_eps_and_score_are_inverse_and_dsm_vanishes_at_its_target():
    g = torch.Generator().manual_seed(0)
    eps, abar = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sc.score_to_eps(sc.eps_to_score(eps, abar), abar), eps)
    z, sigma = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.1
    assert sc.dsm_loss(-z / sigma[:, None], z, sigma) == 0  # the target -(x~ - x)/sigma^2 = -z/sigma
    # sigma^2-weighted DSM = 1/2 ||eps-prediction - z||^2 with eps-prediction -sigma s (NCSNv2 technique 3)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sc.dsm_loss(s, z, sigma), 0.5 * ((-sigma[:, None] * s - z) ** 2).sum(1).mean())


def test_a_wrong_score_sign_is_caught_by_the_spec(both):
    assert run_case(CASES["score/eps_to_score"]).passed
    message = caught(CASES["score/eps_to_score"],
                     Perturbation("s = +eps / sqrt(1 - abar)", fn=lambda fn: lambda eps, alpha_bar_t: -fn(eps, alpha_bar_t)))
    assert "output" in message and "reference" in message


def test_a_dsm_target_without_its_one_over_sigma_squared_is_caught_by_the_spec(both):
    import jax.numpy as jnp

    def target_without_scaling(fn):  # -(x~ - x) instead of -(x~ - x) / sigma^2: target -sigma z
        def wrong(score, z, sigma):
            s = sigma.reshape(sigma.shape + (1,) * (z.ndim - 1))
            return jnp.mean(jnp.sum((0.5 * s**2 * (score + s * z) ** 2).reshape(len(z), -1), axis=1))
        return wrong

    for case in ("score/dsm_loss", "score/dsm_loss_vectors"):
        assert "output" in caught(CASES[case], Perturbation("target -sigma z", fn=target_without_scaling))


def test_a_langevin_step_without_its_half_is_caught_by_the_spec(both):
    def full_drift(fn):
        return lambda x, score, step_size, z: fn(x, 2 * score, step_size, z)

    assert "output" in caught(CASES["score/langevin_step"], Perturbation("x + alpha s + sqrt(alpha) z", fn=full_drift))


# Annealed Langevin with the exact score of a Gaussian --------------------------------------------------------------
def _gaussian_score(mean: float, var: float):
    return lambda x, sigma: -(x - mean) / (var + sigma[:, None] ** 2)


def test_annealed_langevin_with_the_exact_score_samples_the_target():
    sigmas = sc.geometric_sigmas(torch.tensor(5.0, dtype=torch.float64), 0.01, 10)
    g = torch.Generator().manual_seed(0)
    x0 = sc.initial_state(4000, (2,), 5.0, g).double()
    x, trail = sc.annealed_langevin_sampling(_gaussian_score(1.5, 0.25), sigmas, x0, 50, 2e-4, g, snapshots=3)
    assert trail.shape == (11, 3, 2)  # after each of the 10 levels, and after the denoising step
    assert abs(x.mean().item() - 1.5) < 4 * math.sqrt(0.25 / 8000)
    assert abs(x.var().item() - 0.256) < 0.02  # 0.256: the leftover of finite annealing (ULA recursion)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the control, whose draws never changed
def test_annealed_langevin_draws_its_noise_in_the_chains_dtype(dtype):
    # with a zero score the chain is x0 + sum sqrt(alpha_i) z: it must equal the sum of the generator's draws in dtype
    sigmas, shape = torch.tensor([2.0, 1.0], dtype=torch.float64), (64, 2)
    x, _ = sc.annealed_langevin_sampling(lambda y, sigma: torch.zeros_like(y), sigmas, torch.zeros(shape, dtype=dtype),
                                         2, 0.1, torch.Generator().manual_seed(3), final_denoise=False)
    g, expected = torch.Generator().manual_seed(3), torch.zeros(shape, dtype=dtype)
    for alpha in sc.annealed_step_sizes(sigmas, 0.1).tolist():
        for _ in range(2):
            expected = sc.langevin_step(expected, 0.0, alpha, torch.randn(shape, generator=g, dtype=dtype))
    assert x.dtype == dtype
    torch.testing.assert_close(x, expected)


def test_the_final_denoising_step_is_tweedie():
    sigma_l, var = 0.5, 0.25  # q_sigma = N(0, var + sigma^2); E[x | x~] = x~ var / (var + sigma^2)
    x = torch.randn(10_000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * math.sqrt(var + sigma_l**2)
    out = sc.denoise(x, _gaussian_score(0.0, var)(x, torch.full((len(x),), sigma_l)), sigma_l)
    torch.testing.assert_close(out, x * var / (var + sigma_l**2))


def test_level_subsets_and_the_wasserstein_distance():
    assert sc.level_subset(10, 0).tolist() == list(range(10))
    assert sc.level_subset(10, 4).tolist() == [0, 3, 6, 9]
    a = torch.randn(300, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert wasserstein2(a, a.flip(0)) == pytest.approx(0.0, abs=1e-6)  # sqrt of rounding in the costs
    assert wasserstein2(a, a + torch.tensor([3.0, 4.0], dtype=torch.float64)) == pytest.approx(5.0, rel=1e-9)  # |c|


# The NCSN and its training interface -------------------------------------------------------------------------------
def tiny_net(**kw) -> sc.NCSN:
    torch.manual_seed(0)
    return sc_training.build(sc_training.Config(**{"hidden": 16, "depth": 1, "num_levels": 4, **kw}), MOONS)


def test_the_score_net_is_conditioned_on_the_noise_level_and_divided_by_sigma():
    net = tiny_net(sigma_max=2.0, sigma_min=0.02)
    torch.testing.assert_close(net.sigmas, torch.tensor([2.0, 2.0 * 0.01 ** (1 / 3), 2.0 * 0.01 ** (2 / 3), 0.02]))
    torch.testing.assert_close(net.noise_input(net.sigmas), torch.tensor([999.0, 666.0, 333.0, 0.0]))
    torch.nn.init.normal_(net.denoiser.out.weight)
    x, sigma = torch.randn(5, 2), net.sigmas[torch.tensor([0, 1, 2, 3, 3])]
    torch.testing.assert_close(net(x, sigma) * sigma[:, None], net.denoiser(x, net.noise_input(sigma)))


def test_the_training_loss_is_dsm_at_the_drawn_levels():
    net = tiny_net()
    torch.nn.init.normal_(net.denoiser.out.weight)
    noise = sc_training.draw_noise(net, sc_training.Config(), 8, torch.Generator().manual_seed(0))
    assert noise["levels"].shape == (8,) and noise["z"].shape == (8, 2) and noise["levels"].max() < 4
    x = torch.randn(8, 2)
    value, terms = sc_training.loss(net, sc_training.Config(), (x, None), noise, 0)
    sigma = net.sigmas[noise["levels"]]
    torch.testing.assert_close(value, sc.dsm_loss(net(x + sigma[:, None] * noise["z"], sigma), noise["z"], sigma))
    fine = noise["levels"] >= 2  # the lower half of the 4 levels: the mean of DSM over those rows only
    assert set(terms) == {"dsm_fine"} and 0 < fine.sum() < 8
    score = net(x + sigma[:, None] * noise["z"], sigma)
    torch.testing.assert_close(terms["dsm_fine"], sc.dsm_loss(score[fine], noise["z"][fine], sigma[fine]))
    coarse = {**noise, "levels": torch.zeros_like(noise["levels"])}  # no fine level drawn: 0, not a NaN
    assert float(sc_training.loss(net, sc_training.Config(), (x, None), coarse, 0)[1]["dsm_fine"]) == 0.0


def test_registry_presets_and_build_errors():
    assert models.get_model("score") is sc_training and all(hasattr(sc_training, name) for name in models.INTERFACE)
    quick, images = sc_training.default_config("quick"), sc_training.default_config("quick", "fashion_mnist")
    assert quick.data.name == "moons" and quick.model.architecture == "mlp" and images.model.architecture == "unet"
    assert sc_training.default_config("full", "fashion_mnist").model.num_levels > images.model.num_levels
    with pytest.raises(ConfigError, match="unknown preset"):
        sc_training.default_config("huge")
    with pytest.raises(ValueError, match="vectors or images; names is text"):
        sc_training.build(sc_training.Config(), get_info("names"))
    with pytest.raises(ValueError, match="architecture=unet needs images"):
        sc_training.build(sc_training.Config(architecture="unet"), MOONS)
    with pytest.raises(ValueError, match="0 < model.sigma_min < model.sigma_max"):
        sc_training.build(sc_training.Config(sigma_min=3.0, sigma_max=1.0), MOONS)


def test_cli_trains_samples_and_evaluates_a_tiny_2d_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "score", "--steps", "20", "--out", str(run), *TINY]) == 0
    assert (run / "samples/samples.png").is_file()
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png"), "--set", "model.sample_levels=2"]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["examples"] == 1000 and metrics["w2_samples"] == 50
    assert all(math.isfinite(metrics[k]) for k in ("dsm", "dsm_sigma_max", "dsm_sigma_min", "w2", "w2_held_out_halves"))
    capsys.readouterr()


def test_cli_trains_the_unet_score_model_on_images(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "score", "--dataset", "digits", "--steps", "3", "--out", str(run), "--device", "cpu",
                 "--set", "model.channels=8", "--set", "model.channel_mults=1,2", "--set", "model.attention_levels=1",
                 "--set", "model.num_levels=3", "--set", "model.steps_per_level=1", "--set", "train.batch_size=8",
                 "--set", "train.samples=9"]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/annealing.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "names"], "vectors or images; names is text"),
    (["--set", "model.architecture=unet"], "architecture=unet needs images"),
    (["--set", "model.sigma_min=9"], "0 < model.sigma_min < model.sigma_max"),
    (["--set", "model.architecture=cnn"], "expected one of mlp, unet"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "score", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_on_moons_samples_close_to_the_data(tmp_path):
    start = time.perf_counter()
    assert main(["train", "score", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 180
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["w2"] < 3 * metrics["w2_held_out_halves"], metrics


@pytest.mark.slow
def test_the_quick_preset_trains_on_fashion_mnist_within_fifteen_minutes(tmp_path):
    start = time.perf_counter()
    assert main(["train", "score", "--dataset", "fashion_mnist", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 900
    assert (tmp_path / "run/samples/samples.png").is_file()
