"""The GMM fitted by EM in PyTorch: monotone EM, agreement with scikit-learn over several iterations, log-sum-exp
stability far away, negative controls for the spec cases, the module and its seeding, a CLI run on 2-D data and
one on image features, and bad input as one-line errors. torchrun and the feature network are slow tests."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from practice_torch import mixture_em as M
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.data.toy2d import moons
from practice_torch.engine import RunError
from practice_torch.mixture_em import training as M_training
from shared_specs.mixture_em import CASES
from shared_specs.runner import Perturbation, caught, run_case

ROOT = Path(__file__).parents[1]
BY_ID = {case.id: case for case in CASES}


def moons64(n: int = 400, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(moons(n, np.random.default_rng(seed))[0])  # float64


def start(x: torch.Tensor, k: int, kind: str = "full"):
    """K data points as means, the data covariance for every component, equal weights (float64)."""
    means = x[torch.linspace(0, len(x) - 1, k).long()]
    cov = torch.cov(x.T)
    covs = cov.repeat(k, 1, 1) if kind == "full" else torch.diagonal(cov).repeat(k, 1)
    return torch.full((k,), 1.0 / k, dtype=x.dtype), means, covs


def held_out_metrics(run: Path) -> dict:
    from practice_torch.engine.runs import load_split
    from practice_torch.models import open_run

    module, cfg, net = open_run(run, torch.device("cpu"))
    return module.evaluate(net, cfg.model, load_split(cfg.data, "test"), torch.Generator().manual_seed(0))


# EM itself (float64 twins) -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "diag"])
def test_em_never_decreases_the_log_likelihood(kind):
    """Every one of 60 iterations on the moons: l(theta_{t+1}) >= l(theta_t) (reg_covar = 0: the exact M-step)."""
    x = moons64()
    theta = start(x, 6, kind)
    lls = []
    for _ in range(60):
        *theta, ll = M.em_step(x, *theta, reg_covar=0.0)
        lls.append(float(ll))
    gains = np.diff(lls)
    assert gains.min() > -1e-12, f"EM decreased the log-likelihood by {-gains.min():.2e} at step {gains.argmin() + 1}"
    assert lls[-1] - lls[0] > 0.3, "the run must climb (a flat run would check nothing)"


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_agrees_with_scikit_learn_after_ten_iterations_from_the_same_start(kind):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = moons64(300, seed=1)
    w, m, c = start(x, 5, kind)
    precisions = 1.0 / c if kind == "diag" else torch.linalg.inv(c)
    gm = GaussianMixture(5, covariance_type=kind, reg_covar=1e-6, max_iter=10, tol=0.0, weights_init=w.numpy(),
                         means_init=m.numpy(), precisions_init=precisions.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(x.numpy())
    theta = (w, m, c)
    for _ in range(10):
        *theta, _ = M.em_step(x, *theta, reg_covar=1e-6)
    for ours, theirs in zip(theta, (gm.weights_, gm.means_, gm.covariances_)):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-8, atol=1e-8)  # policy: 1e-8 for f64 steps
    assert not np.allclose(theta[1].numpy(), m.numpy(), atol=1e-2), "ten iterations must move the means"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_sum_exp_keeps_points_far_from_every_component_finite(dtype):
    w, m, c = (t.to(dtype) for t in start(moons64(), 4))
    far = torch.tensor([[1e4, -1e4], [3e3, 5e3]], dtype=dtype)
    resp, log_px = M.e_step(far, w, m, c)
    assert torch.isfinite(resp).all() and torch.isfinite(log_px).all() and (log_px < -1e5).all()
    torch.testing.assert_close(resp.sum(1), torch.ones(2, dtype=dtype))
    naive = torch.exp(M.log_joint(far, w, m, c))  # p(x, k) underflows to 0 for every k
    assert (naive == 0).all() and torch.isnan(naive / naive.sum(1, keepdim=True)).all()
    expected = M.log_joint(far, w, m, c).argmax(1)
    assert torch.equal(resp.argmax(1), expected)


# Negative controls: faults in the twin must fail the spec cases ----------------------------------------------
def _fails(case_id: str, perturbation: Perturbation) -> str:
    """The case's outputs (not its gradients: faster, and the outputs already differ) under the fault."""
    return caught(dataclasses.replace(BY_ID[case_id], grad_wrt=()), perturbation)


def test_covariances_about_the_old_means_are_caught(both):
    """A classic M-step slip: Sigma_k centred on the previous means instead of the new ones."""
    import jax.numpy as jnp

    import theory_jax.mixture_em as T

    def stale(fn):
        def em_step(x, weights, means, covariances, reg_covar):
            resp, log_px = T.e_step(x, weights, means, covariances)
            new_w, new_m, _ = T.m_step(x, resp, "full", reg_covar)
            diff = x[:, None, :] - means[None]
            nk = resp.sum(0)
            cov = jnp.einsum("nk,nkd,nke->kde", resp, diff, diff) / nk[:, None, None] + reg_covar * jnp.eye(x.shape[1])
            return new_w, new_m, cov, jnp.mean(log_px)
        return em_step

    assert "output" in _fails("mixture_em/em_step/full", Perturbation("stale means", fn=stale))


def test_a_naive_e_step_is_caught_far_from_the_components(both):
    import jax.numpy as jnp

    import theory_jax.mixture_em as T

    def naive(fn):
        def e_step(x, weights, means, covariances):
            dens = weights * jnp.exp(T.component_log_prob(x, means, covariances))
            return dens / dens.sum(1, keepdims=True), jnp.log(dens.sum(1))
        return e_step

    near = dataclasses.replace(BY_ID["mixture_em/e_step/full"], grad_wrt=())
    assert run_case(near, Perturbation("naive", fn=naive)).passed, "harmless near the data"
    _fails("mixture_em/e_step/far_away", Perturbation("naive", fn=naive))


def test_a_variance_floor_instead_of_scikit_learns_added_regulariser_is_caught(both):
    import jax.numpy as jnp

    import theory_jax.mixture_em as T

    def floor(fn):
        def m_step(x, responsibilities, covariance_type, reg_covar):
            w, m, c = T.m_step(x, responsibilities, covariance_type, 0.0)
            return w, m, jnp.maximum(c, reg_covar)
        return m_step

    _fails("mixture_em/m_step/diag", Perturbation("floor", fn=floor))


# The module, its features and its seeding ------------------------------------------------------------------
def test_the_gmm_holds_buffers_only_and_its_methods_are_the_twins():
    net = M_training.build(M_training.Config(components=3), get_info("moons"))
    assert list(net.parameters()) == [] and {"weights", "means", "covariances", "initialised"} <= set(net.state_dict())
    assert not hasattr(net, "reg_covar") and not hasattr(net, "init"), "EM's settings are the config's, not the net's"
    x = moons64(200).float()
    race = torch.empty(200, 3).exponential_(generator=torch.Generator().manual_seed(0))
    net.initialise(x, race)
    assert net.initialised and torch.allclose(net.weights.sum(), torch.tensor(1.0))
    torch.testing.assert_close(net.log_prob(x), M.log_likelihood(x, *net.theta))
    uniform, eps = torch.rand(500, generator=torch.Generator().manual_seed(1)), torch.randn(500, 2)
    draws = net.sample(uniform, eps)
    assert draws.shape == (500, 2) and torch.equal(draws, M.sample_gmm(*net.theta, uniform, eps))
    before = net.log_prob(x).mean()
    log_px = net.em_update(x)
    assert torch.allclose(log_px.mean(), before) and net.log_prob(x).mean() > before


def test_kmeans_plus_plus_seeds_one_mean_per_separated_cluster_and_random_seeds_are_data_points():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = (centres.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0)))
    race = torch.empty(200, 4).exponential_(generator=torch.Generator().manual_seed(1))
    seeds = M.seed_means(x, 4, race, "kmeans++")
    assert sorted(torch.cdist(seeds, centres).argmin(1).tolist()) == [0, 1, 2, 3]
    chosen = M.seed_means(x, 4, race, "random")
    assert torch.equal(chosen, x[torch.topk(race[:, 0], 4, largest=False).indices])
    with pytest.raises(ValueError, match="init must be"):
        M.seed_means(x, 4, race, "forgy")


def test_initialise_and_em_update_take_init_and_reg_covar_as_arguments():
    """The seeding and the regulariser come with the call (the adapter passes the config's): 'random' seeds
    other means than k-means++, and reg_covar lifts every covariance's diagonal by exactly that much."""
    x = moons64(200)
    race = torch.empty(200, 3, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(0))
    nets = {}
    for init, reg_covar in (("kmeans++", 0.0), ("random", 0.0), ("random", 0.5)):
        net = M.GMM(3, 2).double()
        net.initialise(x, race, init=init, reg_covar=reg_covar)
        nets[init, reg_covar] = net
    assert not torch.equal(nets["kmeans++", 0.0].means, nets["random", 0.0].means)
    plain, lifted = nets["random", 0.0], nets["random", 0.5]
    torch.testing.assert_close(lifted.covariances - plain.covariances, 0.5 * torch.eye(2, dtype=x.dtype).expand(3, 2, 2))
    plain.em_update(x, reg_covar=0.0)
    lifted.em_update(x, reg_covar=0.0)
    assert not torch.equal(plain.means, lifted.means)  # a different start, then the same exact M-step
    theta = tuple(t.clone() for t in plain.theta)
    plain.em_update(x, reg_covar=0.25)
    *expected, _ = M.em_step(x, *theta, reg_covar=0.25)
    for ours, theirs in zip(plain.theta, expected):
        torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="reg_covar >= 0"):
        plain.em_update(x, reg_covar=-1.0)


def test_pca_features_are_the_top_principal_directions():
    x = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 1, 16).view(1, 1, 4, 4)
    pca = M.PCAFeatures((1, 4, 4), 5)
    pca.fit(x)
    torch.testing.assert_close(pca.basis.T @ pca.basis, torch.eye(5), atol=1e-5, rtol=0)
    z = pca(x)
    variances = z.var(0, unbiased=False)
    assert (variances[:-1] >= variances[1:] - 1e-6).all(), "directions in order of explained variance"
    flat = x.flatten(1)
    top = torch.linalg.eigvalsh(torch.cov(flat.T, correction=0))[-5:].flip(0)
    torch.testing.assert_close(variances, top, rtol=1e-4, atol=1e-6)
    assert pca.decode(z).shape == x.shape


# Bad input: one line ------------------------------------------------------------------------------------------
def test_bad_input_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"real vectors \(D,\) or images .* text of shape \(256,\)"):
        M_training.build(M_training.Config(), get_info("shakespeare"))
    with pytest.raises(ValueError, match="audio of shape"):
        M_training.build(M_training.Config(), get_info("spoken_digits"))
    with pytest.raises(ValueError, match="feature_dim=100 is larger than the 64"):
        M_training.build(M_training.Config(feature_dim=100), get_info("digits"))
    with pytest.raises(ValueError, match="covariance_type must be"):
        M_training.build(M_training.Config(covariance_type="spherical"), get_info("moons"))
    with pytest.raises(ValueError, match=r"reg_covar >= 0, got 8 and -0.1$"):
        M_training.build(M_training.Config(reg_covar=-0.1), get_info("moons"))
    with pytest.raises(ValueError, match=r"init must be 'kmeans\+\+' or 'random', got 'forgy'$"):
        M_training.build(M_training.Config(init="forgy"), get_info("moons"))
    with pytest.raises(ValueError, match="covariance_type must be"):
        M.m_step(torch.zeros(4, 2), torch.ones(4, 2) / 2, "tied")
    net = M_training.build(M_training.Config(components=50), get_info("moons"))
    x = moons64(20).float()
    with pytest.raises(RunError, match="model.components=50 is more than the 20 training examples") as info:
        noise = M_training.draw_noise(net, M_training.Config(), 20, torch.Generator())
        M_training.update(net, M_training.Config(), (x, torch.zeros(20)), noise, 0)
    assert "\n" not in str(info.value)


# Training from the command line -------------------------------------------------------------------------------
def test_cli_trains_on_moons_writes_the_plots_and_reports_held_out_likelihood(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "mixture_em", "--dataset", "moons", "--device", "cpu", "--steps", "40", "--out", str(run),
            "--set", "data.limit=2000", "--set", "train.samples=500"]
    assert main(args) == 0
    for name in ("samples", "density", "components"):
        with Image.open(run / "samples" / f"{name}.png") as image:
            assert image.size[0] >= 400 and len(np.unique(np.asarray(image.convert("L")))) > 20, name
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(b <= a + 1e-5 for a, b in zip(losses, losses[1:])), f"the logged -log p(x) must not rise: {losses}"
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert -1.4 < metrics["log_likelihood"] < -0.9, metrics  # one 2-D Gaussian fitted to the moons: -2.70
    assert metrics["purity"] > 0.95 and metrics["examples"] == 2000
    assert "log_likelihood" in capsys.readouterr().out


def test_image_features_cluster_the_digits(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "mixture_em", "--dataset", "digits", "--device", "cpu", "--steps", "15", "--out", str(run),
                 "--set", "model.feature_dim=16", "--set", "train.samples=60"]) == 0
    assert {p.name for p in (run / "samples").iterdir()} == {"samples.png", "components.png", "clusters.png"}
    metrics = held_out_metrics(run)  # the model's own metrics (``eval`` adds FID & co. from a feature network)
    assert metrics["nmi"] > 0.5 and math.isfinite(metrics["feature_log_likelihood"]), metrics


@pytest.mark.slow
def test_two_processes_all_reduce_the_statistics_and_match_one(tmp_path):
    from safetensors.numpy import load_file

    args = ["practice_torch", "train", "mixture_em", "--dataset", "moons", "--device", "cpu", "--steps", "6",
            "--set", "data.limit=2000", "--set", "train.samples=100"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for prefix, out in (([ "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"], "ddp"),
                        (["-m"], "single")):
        proc = subprocess.run([sys.executable, *prefix, *args, "--out", str(tmp_path / out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (load_file(str(tmp_path / r / "checkpoints" / "step_0000006.safetensors")) for r in ("ddp", "single"))
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-4)  # float32 sums in another order


@pytest.mark.slow
def test_network_features(tmp_path, monkeypatch):
    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(tmp_path / "cache"))  # trains its own digits feature network
    run = tmp_path / "run"
    assert main(["train", "mixture_em", "--dataset", "digits", "--device", "cpu", "--steps", "15", "--out", str(run),
                 "--set", "model.features=network", "--set", "model.feature_dim=16", "--set", "train.samples=60"]) == 0
    assert held_out_metrics(run)["nmi"] > 0.7
