"""change_of_variables in torch: Box-Muller and inverse-CDF samplers (KS tests), the flow's invertibility and log-det
against autograd Jacobians, the mixture1d data set, training through the CLI, bad input, and negative controls
for the spec cases. The quick presets on moons and mixture1d are slow tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from practice_torch import change_of_variables as cov
from practice_torch.change_of_variables import training as cov_training
from practice_torch.cli import main
from practice_torch.data import get_dataset, get_info
from practice_torch.data.toy2d import MIXTURE1D_WEIGHTS, mixture1d_log_density
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

F64 = torch.float64
CASES = {case.id: case for case in topics.spec_cases("change_of_variables")}


def random_flow(dim=2, components=5, layers=3, seed=0, dtype=F64) -> cov.GaussianizationFlow:
    """A flow with random (not initial) parameters, so no layer is the identity."""
    torch.manual_seed(seed)
    net = cov.GaussianizationFlow(dim, components, layers).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.4 * torch.randn_like(p))
    return net


# Box-Muller and the inverse-CDF samplers ----------------------------------------------------------------
def test_box_muller_round_trips_and_its_log_det_is_the_autograd_one():
    g = torch.Generator().manual_seed(0)
    u = cov.draw_uniform((200, 2), g, F64)
    u[:, 0] = 1 - u[:, 0]
    torch.testing.assert_close(cov.box_muller_inverse(cov.box_muller(u)), u, rtol=1e-12, atol=1e-12)
    z = 2 * torch.randn(200, 2, generator=g, dtype=F64)
    torch.testing.assert_close(cov.box_muller(cov.box_muller_inverse(z)), z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cov.box_muller_log_det(u), cov.log_abs_det_jacobian(cov.box_muller, u))
    # eq. 1: the uniform density times |det d u / d z| is the standard normal density
    torch.testing.assert_close(cov.log_abs_det_jacobian(cov.box_muller_inverse, z), cov.standard_normal_log_prob(z))


def test_box_muller_samples_pass_ks_tests_and_a_wrong_transform_does_not():
    u = cov.draw_uniform((50_000, 2), torch.Generator().manual_seed(1), F64)
    u[:, 0] = 1 - u[:, 0]
    z = cov.box_muller(u).numpy()
    for column in (z[:, 0], z[:, 1], (z[:, 0] + z[:, 1]) / math.sqrt(2)):
        assert stats.kstest(column, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z.T)[0, 1]) < 4 / math.sqrt(len(z))
    wrong = np.sqrt(-np.log(u[:, 0].numpy())) * np.cos(2 * np.pi * u[:, 1].numpy())  # the 2 dropped
    assert stats.kstest(wrong, "norm").pvalue < 1e-10


@pytest.mark.parametrize("sampler, args, dist", [
    (cov.exponential_icdf, (2.5,), stats.expon(scale=0.4)),
    (cov.logistic_icdf, (-1.0, 0.6), stats.logistic(-1.0, 0.6)),
    (cov.gaussian_icdf, (0.3, 1.7), stats.norm(0.3, 1.7)),
])
def test_inverse_cdf_samplers_pass_ks_tests_and_detect_a_wrong_parameter(sampler, args, dist):
    u = cov.draw_uniform((20_000,), torch.Generator().manual_seed(2), F64)
    x = sampler(u, *args).numpy()
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3
    off = sampler(u, *[a * 1.1 for a in args]).numpy()
    assert stats.kstest(off, dist.cdf).pvalue < 1e-6


def test_box_muller_rejects_inputs_that_are_not_pairs():
    with pytest.raises(ValueError, match="last axis of size 2"):
        cov.box_muller(torch.rand(4, 3))
    with pytest.raises(ValueError, match="last axis of size 2"):
        cov.box_muller_inverse(torch.tensor(1.0))


# The flow ---------------------------------------------------------------------------------------------------
def test_the_flow_inverts_and_its_log_det_is_the_autograd_jacobians():
    net = random_flow()
    x = 2 * torch.randn(6, 2, dtype=F64)
    with torch.no_grad():
        z, log_det = net(x)
        torch.testing.assert_close(net.inverse(z), x, rtol=1e-10, atol=1e-10)
    for xi, ld in zip(x, log_det):
        jac = torch.autograd.functional.jacobian(lambda p: net(p[None])[0][0], xi)
        torch.testing.assert_close(torch.linalg.slogdet(jac)[1], ld)
    # each elementwise layer alone has a diagonal Jacobian
    layer = tuple(p[0] for p in net.flow_params()[:3])
    jac = torch.autograd.functional.jacobian(lambda p: cov.gaussianize(p[None], *layer)[0][0], x[0])
    assert jac[0, 1] == 0 and jac[1, 0] == 0


def test_the_flow_inverts_in_float32_too():
    net = random_flow(dtype=torch.float32)
    x = 2 * torch.randn(500, 2)
    with torch.no_grad():
        torch.testing.assert_close(net.inverse(net(x)[0]), x, rtol=1e-4, atol=1e-4)


def test_gradients_through_the_inverse_follow_the_implicit_function_theorem():
    net = random_flow(dim=1, layers=1)
    z = torch.randn(8, 1, dtype=F64, requires_grad=True)
    x = net.inverse(z)
    (grad,) = torch.autograd.grad(x.sum(), z)
    with torch.no_grad():
        _, log_dz = net(x.detach())
    torch.testing.assert_close(grad[:, 0], torch.exp(-log_dz))


def test_interval_probabilities_of_a_1d_flow_two_ways():
    """Eq. 1 integrated: the integral of p over [a, b] equals Phi(T(b)) - Phi(T(a))."""
    net = random_flow(dim=1, layers=2)
    a, b = -3.0, 2.0
    xs = torch.linspace(a, b, 20_001, dtype=F64)[:, None]
    with torch.no_grad():
        integral = torch.trapezoid(torch.exp(net.log_prob(xs)), xs[:, 0])
        ends = net(torch.tensor([[a], [b]], dtype=F64))[0][:, 0]
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), 1.0)
    torch.testing.assert_close(integral, normal.cdf(ends[1]) - normal.cdf(ends[0]), rtol=1e-7, atol=1e-8)


# The mixture1d data set --------------------------------------------------------------------------------------
def test_mixture1d_is_deterministic_and_follows_its_documented_density():
    x, y = get_dataset("mixture1d", "train")[:]
    assert x.shape == (20_000, 1) and x.dtype == torch.float32 and set(y.tolist()) == {0, 1, 2}
    assert get_info("mixture1d").shape == (1,) and get_info("mixture1d").num_classes == 3
    assert torch.equal(x[:500], get_dataset("mixture1d", "train", limit=500)[:][0])
    assert not torch.equal(x[:500], get_dataset("mixture1d", "val", limit=500)[:][0])
    assert [len(get_dataset("mixture1d", s)) for s in ("val", "test")] == [2_000, 2_000]
    grid = np.linspace(-6, 10, 40_001)
    density = np.exp(mixture1d_log_density(grid))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)  # trapezoid error at the kink x = 1
    cdf_grid = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    assert stats.kstest(x[:, 0].numpy(), lambda t: np.interp(t, grid, cdf_grid)).pvalue > 1e-3
    assert np.bincount(y.numpy()) / len(y) == pytest.approx(MIXTURE1D_WEIGHTS, abs=0.01)


# Training interface and CLI ------------------------------------------------------------------------------------
def test_presets():
    quick, full = cov_training.default_config("quick"), cov_training.default_config("full")
    assert quick.data.name == "moons" and cov_training.default_config("quick", "mixture1d").data.name == "mixture1d"
    assert quick.train.steps < full.train.steps and quick.model.layers < full.model.layers
    with pytest.raises(ConfigError, match="unknown preset"):
        cov_training.default_config("huge")


def test_build_rejects_what_it_cannot_model():
    with pytest.raises(ValueError, match="1-D or 2-D vectors"):
        cov_training.build(cov_training.Config(), get_info("digits"))
    with pytest.raises(ValueError, match="must be positive"):
        cov_training.build(cov_training.Config(layers=0), get_info("moons"))
    assert cov_training.build(cov_training.Config(layers=2), get_info("mixture1d")).dim == 1


def test_the_loss_is_the_exact_nll_with_its_two_terms():
    net = random_flow(dtype=torch.float32)
    x = torch.randn(7, 2)
    config = cov_training.Config()
    assert cov_training.draw_noise(net, config, 7, torch.Generator()) == {}
    loss, terms = cov_training.loss(net, config, (x, torch.zeros(7)), {}, 0)
    torch.testing.assert_close(loss, net.loss(x))
    torch.testing.assert_close(loss, terms["base_nll"] + terms["neg_log_det"])
    metrics = cov_training.evaluate(net, cov_training.Config(), torch.utils.data.TensorDataset(x, torch.zeros(7)),
                                    torch.Generator())
    assert metrics["examples"] == 7 and metrics["nll"] == pytest.approx(loss.item(), rel=1e-5)
    assert metrics["nll_per_dim"] == pytest.approx(metrics["nll"] / 2)


SMALL = ["--device", "cpu", "--set", "model.layers=2", "--set", "model.components=4", "--set", "train.steps=40",
         "--set", "train.batch_size=256", "--set", "train.log_every=20", "--set", "train.warmup_steps=5",
         "--set", "train.samples=300"]


@pytest.mark.parametrize("dataset, figure", [("moons", "density.png"), ("mixture1d", "density.png")])
def test_trains_from_the_cli_then_samples_and_evaluates(dataset, figure, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "change_of_variables", "--dataset", dataset, "--out", str(run), *SMALL]) == 0
    written = {p.name for p in (run / "samples").iterdir()}
    assert {"samples.png", figure, "sample_values.txt"} <= written
    values = np.loadtxt(run / "samples" / "sample_values.txt", ndmin=2)
    assert values.shape == (300, 2 if dataset == "moons" else 1) and np.isfinite(values).all()
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    assert "nll" in capsys.readouterr().out
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["examples"] == 2000 and math.isfinite(metrics["nll"])
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_the_cli_refuses_image_data_in_one_line(tmp_path, capsys):
    code = main(["train", "change_of_variables", "--dataset", "digits", "--out", str(tmp_path / "r"), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "1-D or 2-D vectors" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("dataset, bound", [("moons", 1.25), ("mixture1d", None)])
def test_quick_preset_fits_the_data(dataset, bound, tmp_path):
    cfg = apply_overrides(cov_training.default_config("quick", dataset), ["train.device=cpu"])
    trainer = new_trainer(cfg, tmp_path / "run")
    trainer.run()
    test = get_dataset(dataset, "test")
    nll = cov_training.evaluate(trainer.net.eval(), cfg.model, test, torch.Generator())["nll"]
    if bound is None:  # the exact density is known: the gap is KL(data || model) plus sampling noise
        bound = -mixture1d_log_density(test[:][0].numpy()).mean() + 0.02
    assert nll < bound


# Negative controls for the spec cases (rule 5) -----------------------------------------------------------------
def _caught(case_id: str, perturbation: Perturbation) -> str:
    """The case fails under the fault (tests/test_specs.py shows that it passes without it)."""
    return caught(CASES[case_id], perturbation)


def test_a_flipped_log_det_sign_is_caught(both):
    def flip(fn):
        def wrong(**kw):
            z, log_det = fn(**kw)
            return z, -log_det
        return wrong

    assert "1: max" in _caught("change_of_variables/gaussianize", Perturbation("log-det sign", fn=flip))


def test_box_muller_without_its_factor_two_is_caught(both):
    import jax.numpy as jnp

    def wrong(fn):
        return lambda u: jnp.stack([jnp.sqrt(-jnp.log(u[..., 0])) * jnp.cos(2 * jnp.pi * u[..., 1]),
                                    jnp.sqrt(-jnp.log(u[..., 0])) * jnp.sin(2 * jnp.pi * u[..., 1])], axis=-1)

    _caught("change_of_variables/box_muller", Perturbation("sqrt(-ln u1)", fn=wrong))


def test_an_inverse_without_implicit_gradients_is_caught(both):
    """Bisection alone gives the right x but no gradient: only the gradient comparison can catch it."""
    import jax

    def detached(fn):
        return lambda **kw: jax.lax.stop_gradient(fn(**kw))

    message = _caught("change_of_variables/gaussianize_inverse", Perturbation("no Newton step", fn=detached))
    assert message.startswith("gradient")


def test_a_transposed_mixing_factor_is_caught(both):
    """L^T in place of L: still triangular-looking input, but the strict upper part is ignored, so W changes."""
    message = _caught("change_of_variables/lu_linear", Perturbation(
        "L^T for L", inputs=lambda d: {**d, "lower": np.ascontiguousarray(d["lower"].T)}))
    assert message.startswith("output: 0:")  # y differs; the log-det does not depend on L
