"""DDIM in PyTorch: eta = 1 is DDPM's step (and sampler), eta = 0 ignores the noise and inverts, respacing agrees with
``Schedule.respace``, encode-then-decode converges like Euler's method and matches the JAX twin, the trained-run path
(``sample --set model.sampler=ddim``) and the benchmark on a tiny run; wrong DDIM formulas caught by the spec runner."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from practice_torch import ddim
from practice_torch.ddpm import MLPDenoiser, Schedule, ddpm_step, sample_loop
from practice_torch.diffusion import predict_x0
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("ddim")}
TINY = ["--device", "cpu", "--set", "model.channels=8", "--set", "model.channel_mults=1,2", "--set",
        "model.attention_levels=1", "--set", "model.T=100", "--set", "model.sample_steps=5", "--set",
        "train.batch_size=16", "--set", "train.samples=4", "--set", "model.nll_examples=8", "--set",
        "train.warmup_steps=1", "--set", "train.log_every=1", "--set", "model.chain_frames=3"]


def _coefficients(b: int, generator: torch.Generator):
    """Per-example (alpha_bar_t, alpha_bar_prev) in float64 with 0 < a_t < a_prev <= 1; the first example at t = 0."""
    a_prev = 0.05 + 0.94 * torch.rand(b, generator=generator, dtype=torch.float64)
    a_t = a_prev * (0.5 + 0.499 * torch.rand(b, generator=generator, dtype=torch.float64))
    a_prev[0] = 1.0
    return a_t, a_prev


def _random_mlp(dim: int = 2, seed: int = 0) -> MLPDenoiser:
    """An MLP denoiser with random weights everywhere (its output layer is zero-initialised: eps would be 0)."""
    torch.manual_seed(seed)
    net = MLPDenoiser(dim, hidden=32, depth=2).eval()  # float32 (its time embedding is)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


# The step ---------------------------------------------------------------------------------------------------------
def test_eta_one_is_the_ddpm_step_and_eta_zero_ignores_the_noise():
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    a_t, a_prev = _coefficients(6, g)
    torch.testing.assert_close(ddim.ddim_step(x, eps, a_t, a_prev, 1.0, z), ddpm_step(x, eps, a_t, a_prev, z),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ddim.ddim_step(x[:1], eps[:1], a_t[:1], a_prev[:1], 0.7, z[:1]),
                               predict_x0(x[:1], a_t[:1], eps[:1]), rtol=1e-10, atol=1e-12)  # t = 0: x0_hat
    deterministic = ddim.ddim_step(x, eps, a_t, a_prev, 0.0, z)
    torch.testing.assert_close(deterministic, ddim.ddim_step(x, eps, a_t, a_prev, 0.0, torch.zeros_like(z)))
    assert not torch.allclose(deterministic, ddim.ddim_step(x, eps, a_t, a_prev, 0.5, z))
    x32 = x.float()  # float32 images with scalar coefficients: the result stays float32
    out = ddim.ddim_step(x32, eps.float(), 0.3, 0.4, 1.0, z.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ddpm_step(x32, eps.float(), torch.tensor(0.3), torch.tensor(0.4), z.float()))


def test_the_reverse_step_inverts_the_deterministic_step():
    g = torch.Generator().manual_seed(1)
    x, eps = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(2))
    a_t, a_prev = _coefficients(5, g)
    back = ddim.ddim_reverse_step(ddim.ddim_step(x, eps, a_t, a_prev, 0.0, torch.zeros_like(x)), eps, a_t, a_prev)
    torch.testing.assert_close(back, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_respace_alpha_bars_is_what_the_schedule_keeps(kind):
    full = Schedule.make(kind, 1000)
    for steps in (1, 10, 50, 1000):
        respaced = full.respace(steps)
        kept, prev, betas = ddim.respace_alpha_bars(full.alpha_bars, respaced.timesteps)
        for mine, theirs in ((kept, respaced.alpha_bars), (prev, respaced.alpha_bars_prev), (betas, respaced.betas)):
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(torch.cumprod(1 - betas, 0), full.alpha_bars[respaced.timesteps])
        assert int(respaced.timesteps[-1]) == 999


# The samplers over a schedule -----------------------------------------------------------------------------------------
def test_the_ddim_sampler_at_eta_one_is_the_ddpm_sampler():
    net, schedule = _random_mlp(), Schedule.make("cosine", 1000).respace(20)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    runs = {sampler: sample_loop(net, schedule, x_T, sampler=sampler, eta=1.0, progress=False,
                                 generator=torch.Generator().manual_seed(3)) for sampler in ("ddpm", "ddim")}
    torch.testing.assert_close(runs["ddim"], runs["ddpm"], rtol=1e-4, atol=1e-4)  # float32 sampler policy


def _gaussian_eps(schedule: Schedule, mu: torch.Tensor, s0: torch.Tensor):
    """The optimal eps for N(mu, diag s0^2) data: sqrt(1 - a) (x - sqrt(a) mu) / (a s0^2 + 1 - a) (theory_jax.ddim)."""
    table = torch.zeros(int(schedule.timesteps.max()) + 1, dtype=torch.float64)
    table[schedule.timesteps] = schedule.alpha_bars

    def eps_fn(x, t):
        a = table[t][:, None]
        return torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s0**2 + 1 - a)
    return eps_fn


def test_encode_decode_on_gaussian_data_converges_and_matches_the_jax_twin():
    import jax
    import jax.numpy as jnp

    import theory_jax.ddim as jd

    jax.config.update("jax_enable_x64", True)
    g = torch.Generator().manual_seed(4)
    mu, s0 = torch.randn(4, generator=g, dtype=torch.float64), 0.2 + 0.8 * torch.rand(4, generator=g, dtype=torch.float64)
    x0 = mu + s0 * torch.randn(32, 4, generator=g, dtype=torch.float64)
    full = Schedule.make("linear", 1000)
    errors = []
    for steps in (10, 100):
        schedule = full.respace(steps)
        eps_fn = _gaussian_eps(full, mu, s0)
        x_T = ddim.ddim_encode(eps_fn, schedule, x0)
        errors.append(float((ddim.ddim_decode(eps_fn, schedule, x_T) - x0).abs().max()))
        twin = jd.ddim_encode(lambda x, t: jd.gaussian_eps(x, jnp.asarray(full.alpha_bars.numpy())[t], mu.numpy(),
                                                           s0.numpy()),
                              jd.Schedule(*(c.numpy() for c in (schedule.timesteps, schedule.alpha_bars,
                                                                 schedule.alpha_bars_prev))), jnp.asarray(x0.numpy()))
        np.testing.assert_allclose(x_T.numpy(), np.asarray(twin), rtol=1e-10, atol=1e-12)
        exact = jd.gaussian_flow(jnp.asarray(x0.numpy()), float(full.alpha_bars[-1]), mu.numpy(), s0.numpy())
        assert np.abs(x_T.numpy() - np.asarray(exact)).max() < 5 * errors[-1] + 1e-3  # the ODE error, no more
    assert errors[1] < errors[0] / 5 and errors[1] < 0.1, errors  # first order: 10x the steps, ~10x smaller


def test_encode_decode_with_a_network_converges():
    net = _random_mlp(seed=5)
    full = Schedule.make("cosine", 1000)
    x0 = torch.randn(128, 2, generator=torch.Generator().manual_seed(6))
    errors = [float((ddim.ddim_decode(net, full.respace(s), ddim.ddim_encode(net, full.respace(s), x0)) - x0).abs()
                    .max()) for s in (20, 200)]
    assert errors[1] < errors[0] / 4, errors


# The trained-run path and the benchmark, on a tiny digits run ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from practice_torch.cli import main

    run = tmp_path_factory.mktemp("ddim") / "run"
    assert main(["train", "ddpm", "--dataset", "digits", "--steps", "2", "--out", str(run), *TINY]) == 0
    return run


def test_a_trained_run_samples_with_ddim(tiny_run, tmp_path):
    from practice_torch.cli import main

    for eta in ("0", "1"):
        out = tmp_path / f"ddim_{eta}.png"
        assert main(["sample", str(tiny_run), "--n", "4", "--out", str(out), "--device", "cpu", "--set",
                     "model.sampler=ddim", "--set", "model.sample_steps=4", "--set", f"model.eta={eta}"]) == 0
        assert out.stat().st_size > 0


@pytest.mark.slow  # trains the digits feature network in a fresh cache
def test_the_benchmark_table_on_a_tiny_run(tiny_run, tmp_path, monkeypatch):
    from benchmarks.ddim import ddim_steps, find_run

    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(tmp_path))
    args = argparse.Namespace(run=str(tiny_run), ddim_samples=6, ddim_budget=12, ddim_steps="2,4",
                              ddim_reconstruct=2, data_dir=None, results=tmp_path)
    rows = ddim_steps(args)
    assert [(r["sampler"], r["steps"], r["n"]) for r in rows] == [
        ("ddim eta=0", 2, 6), ("ddpm", 2, 6), ("ddim eta=0", 4, 3), ("ddpm", 4, 3), ("test images", 0, 3),
        ("test images", 0, 6)]
    assert all(math.isfinite(r["fid"]) and r["s_per_sample"] >= 0 for r in rows)
    assert all(math.isfinite(r["rec_rmse"]) == math.isfinite(r["rec_rmse_a0.01"]) == (r["sampler"] == "ddim eta=0")
               for r in rows)
    assert (tmp_path / "ddim_steps.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="outside 1..T=100"):
        ddim_steps(argparse.Namespace(**{**vars(args), "ddim_steps": "200"}))
    assert find_run(str(tiny_run)) == tiny_run


# Negative controls: the spec runner catches wrong DDIM formulas (docs/ARCHITECTURE.md rule 5) -----------------------------
def _wrong_step(sigma_fn=None, x0_alpha=False):
    import jax.numpy as jnp

    def step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
        a_t, a_p = alpha_bar_t[:, None], alpha_bar_prev[:, None]
        sigma = sigma_fn(a_t, a_p, eta) if sigma_fn else eta * jnp.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
        a_x0 = a_t / a_p if x0_alpha else a_t
        x0_hat = (x_t - jnp.sqrt(1 - a_x0) * eps) / jnp.sqrt(a_x0)
        return jnp.sqrt(a_p) * x0_hat + jnp.sqrt(jnp.maximum(1 - a_p - sigma**2, 0)) * eps + sigma * z
    return lambda fn: step


def test_the_spec_passes_the_right_step_written_here(both):
    from shared_specs.runner import run_case

    assert run_case(CASES["ddim/ddim_step/eta_0.5"], Perturbation("the same formula", fn=_wrong_step())).passed


def test_sigma_without_its_second_factor_is_caught(both):
    import jax.numpy as jnp

    def missing_factor(a_t, a_p, eta):  # eta * sqrt((1 - a_prev) / (1 - a_t)), without sqrt(1 - a_t / a_prev)
        return eta * jnp.sqrt((1 - a_p) / (1 - a_t))

    assert "output" in caught(CASES["ddim/ddim_step/eta_0.5"], Perturbation("sigma without sqrt(1 - a_t/a_prev)",
                                                                           fn=_wrong_step(missing_factor)))


def test_x0_from_alpha_instead_of_alpha_bar_is_caught(both):
    assert "output" in caught(CASES["ddim/ddim_step/eta_0"], Perturbation("x0_hat with alpha_t = a_t / a_prev",
                                                                         fn=_wrong_step(x0_alpha=True)))
