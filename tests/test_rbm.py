"""The RBM in PyTorch: negative controls for the spec cases (CD with its phases swapped, a Gibbs sweep with the wrong
bias, AIS weighting after its transition, ...), the contrastive loss's gradient is minus the CD-k estimate, AIS
against the exact log Z, persistent chains, bad input as one-line errors, and a CLI run on the 8x8 digits whose AIS
log Z is checked against enumeration. The quick preset on Fashion-MNIST is a slow test."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from practice_torch import rbm as R
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine import RunError
from practice_torch.rbm import training as R_training
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

pytestmark = pytest.mark.usefixtures("one_thread")
CASES = {case.id: case for case in topics.spec_cases("rbm")}


def _fails(case_id: str, perturbation: Perturbation) -> str:
    """The case's outputs (not its gradients: faster, and the outputs already differ) under the fault."""
    return caught(dataclasses.replace(CASES[case_id], grad_wrt=()), perturbation)


# Negative controls: faults in the twin must fail the spec cases ----------------------------------------------
def test_a_free_energy_without_its_visible_term_is_caught_by_the_spec(both):
    drop = Perturbation("no a.v term", inputs=lambda x: {**x, "visible_bias": 0 * x["visible_bias"]})
    assert "output" in caught(CASES["rbm/free_energy"], drop)


def test_cd_with_its_positive_and_negative_phases_swapped_is_caught(both):
    import theory_jax.rbm as T

    def swapped(fn):
        def cd_gradient(v, chain_start, u_h, u_v, weight, visible_bias, hidden_bias):
            v_k = T.gibbs_chain(chain_start, u_h, u_v, weight, visible_bias, hidden_bias)
            data, model = T.sufficient_statistics(v, weight, hidden_bias), T.sufficient_statistics(v_k, weight, hidden_bias)
            return {k: model[k] - data[k] for k in data}, v_k
        return cd_gradient

    for case in ("rbm/cd_gradient", "rbm/cd_gradient/persistent"):
        assert "output" in _fails(case, Perturbation("phases swapped", fn=swapped))


def test_a_gibbs_step_that_samples_h_with_the_visible_bias_is_caught(both):
    import theory_jax.rbm as T

    def wrong_bias(fn):
        def gibbs_step(v, u_h, u_v, weight, visible_bias, hidden_bias):
            h = T.bernoulli_sample(T.hidden_probs(v, weight, visible_bias[: weight.shape[1]]), u_h)
            return h, T.bernoulli_sample(T.visible_probs(h, weight, visible_bias), u_v)
        return gibbs_step

    assert "output" in _fails("rbm/gibbs_step", Perturbation("h with v's bias", fn=wrong_bias))


def test_ais_weighting_after_its_transition_is_caught(both):
    """The log-weight must be taken at the state the transition starts from (Neal 2001), not the one it ends at."""
    import theory_jax.rbm as T

    def late(fn):
        def ais_step(v, log_weight, beta_prev, beta, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias):
            v, _ = T.ais_step(v, log_weight, beta, beta, u_h, u_v, base_visible_bias, weight, visible_bias, hidden_bias)
            f = [T.annealed_free_energy(v, b, base_visible_bias, weight, visible_bias, hidden_bias)
                 for b in (beta_prev, beta)]
            return v, log_weight + f[0] - f[1]
        return ais_step

    assert "output" in _fails("rbm/ais_step", Perturbation("weight after the move", fn=late))


def test_an_annealed_free_energy_that_leaves_the_hidden_bias_unscaled_is_caught(both):
    import jax.numpy as jnp
    from jax.nn import softplus

    def unscaled(fn):
        def annealed_free_energy(v, beta, base_visible_bias, weight, visible_bias, hidden_bias):
            return (-(1 - beta) * (v @ base_visible_bias) - beta * (v @ visible_bias)
                    - jnp.sum(softplus(hidden_bias + beta[:, None] * (v @ weight)), axis=-1))
        return annealed_free_energy

    assert "output" in _fails("rbm/annealed_free_energy", Perturbation("b not annealed", fn=unscaled))


def test_a_negated_weight_in_the_network_is_caught(both):
    flip = Perturbation("negated weight", params=lambda p: {**p, "weight": -p["weight"]})
    assert "output" in caught(CASES["rbm/RBM"], flip)


# The twins' math in PyTorch ----------------------------------------------------------------------------------
def _random_rbm(d: int, h: int, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(s * torch.randn(*shape, generator=g, dtype=torch.float64)
                 for s, shape in ((scale, (d, h)), (0.5, (d,)), (0.5, (h,))))


def test_the_contrastive_loss_gradient_is_minus_the_cd_estimate():
    weight, a, b = (p.requires_grad_() for p in _random_rbm(7, 4))
    g = torch.Generator().manual_seed(1)
    v = (torch.rand(9, 7, generator=g) < 0.5).double()
    u_h, u_v = torch.rand(9, 3, 4, generator=g, dtype=torch.float64), torch.rand(9, 3, 7, generator=g, dtype=torch.float64)
    net = R.RBM(7, 4).double()
    with torch.no_grad():
        net.weight.copy_(weight), net.visible_bias.copy_(a), net.hidden_bias.copy_(b)
    grads = torch.autograd.grad(net.contrastive_loss(v, v, u_h, u_v), [net.weight, net.visible_bias, net.hidden_bias])
    cd, _ = R.cd_gradient(v, v, u_h, u_v, weight.detach(), a.detach(), b.detach())
    for got, name in zip(grads, ("weight", "visible_bias", "hidden_bias")):
        torch.testing.assert_close(-got, cd[name], rtol=1e-12, atol=1e-12)


def test_ais_estimates_log_z_of_an_enumerable_image_rbm_within_half_a_nat():
    net = R.ImageRBM((1, 8, 8), 12).double()
    weight, a, b = _random_rbm(64, 12, seed=2, scale=0.3)
    with torch.no_grad():
        net.rbm.weight.copy_(weight), net.rbm.visible_bias.copy_(a), net.rbm.hidden_bias.copy_(b)
    exact = R.log_partition_by_enumeration(weight, a, b).item()
    log_w = R_training.ais(net, 50, 300, torch.zeros(64, dtype=torch.float64), torch.Generator().manual_seed(0))
    estimate = R.ais_log_partition(log_w, R.base_log_partition(torch.zeros(64, dtype=torch.float64), 12)).item()
    assert abs(estimate - exact) < 0.5, (estimate, exact)


def test_ais_betas_run_from_zero_to_one_finer_near_one():
    betas = R_training.ais_betas(14_500)
    assert len(betas) == 14_501 and betas[0] == 0 and betas[-1] == 1 and bool(torch.all(torch.diff(betas) > 0))
    steps = torch.diff(betas)
    assert steps[0] == pytest.approx(1e-3) and steps[-1] == pytest.approx(1e-5)


def test_pcd_chains_persist_and_start_at_the_data_while_cd_leaves_them_alone():
    info = get_info("digits")
    config = R_training.Config(hidden=6, persistent=True, chains=5, cd_steps=2)
    pcd = R_training.build(config, info)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=g)
    noise = R_training.draw_noise(pcd, config, 5, g)
    assert noise["u_h"].shape == (5, 2, 6) and noise["u_v"].shape == (5, 2, 64)  # k = 2 sweeps, from the config
    R_training.loss(pcd, config, (x, None), noise, 0)
    v_k = R.gibbs_chain(R_training.binarise(x), noise["u_h"], noise["u_v"], *pcd.params())
    assert bool(pcd.chains_started) and torch.equal(pcd.chains, v_k), "the first step runs from the data"
    noise = R_training.draw_noise(pcd, config, 5, g)
    R_training.loss(pcd, config, (x, None), noise, 0)
    torch.testing.assert_close(pcd.chains, R.gibbs_chain(v_k, noise["u_h"], noise["u_v"], *pcd.params()))
    assert pcd.examples_seen == 10 and pcd.pixel_counts.sum() == 2 * R_training.binarise(x).sum()
    cd = R_training.build(R_training.Config(hidden=6), info)
    assert cd.chains.shape == (0, 64)
    cd.eval()
    R_training.loss(cd, R_training.Config(), (x, None), R_training.draw_noise(cd, R_training.Config(), 5, g), 0)
    assert cd.examples_seen == 0, "evaluation counts no pixels"


def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match="binarised"):
        R_training.build(R_training.Config(), get_info("moons"))
    net = R_training.build(R_training.Config(hidden=4, persistent=True, chains=3), get_info("digits"))
    x = torch.rand(5, 1, 8, 8)
    with pytest.raises(RunError, match="model.chains=3 persistent chains.*set model.chains=5") as info:
        noise = R_training.draw_noise(net, R_training.Config(), 5, torch.Generator())
        R_training.loss(net, R_training.Config(), (x, None), noise, 0)
    assert "\n" not in str(info.value)


# Training from the command line -------------------------------------------------------------------------------
def test_cli_trains_and_samples_a_tiny_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "rbm", "--dataset", "digits", "--steps", "60", "--device", "cpu", "--out", str(run),
                 "--set", "model.hidden=8", "--set", "model.gibbs_steps=50", "--set", "train.samples=16"]) == 0
    for name in ("samples", "chains", "filters"):
        with Image.open(run / "samples" / f"{name}.png") as image:
            assert len(np.unique(np.asarray(image.convert("L")))) > 10, name
    assert main(["eval", str(run), "--device", "cpu", "--no-sample-metrics", "--set", "model.ais_steps=500",
                 "--set", "model.ais_runs=50"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert abs(metrics["log_partition_ais"] - metrics["log_partition_exact"]) < 0.5, metrics
    assert 0 < metrics["log_partition_ais_se"] < 0.5 and 1 <= metrics["ais_effective_runs"] <= 50
    assert metrics["nll_ais"] == pytest.approx(-metrics["log_likelihood_ais"])
    assert math.isfinite(metrics["nll_baseline"]) and metrics["examples"] > 0


@pytest.mark.slow
def test_quick_preset_beats_the_independent_bernoulli_baseline(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "rbm", "--preset", "quick", "--device", "cpu", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["nll_ais"] < metrics["nll_baseline"], metrics
