"""CNF: the log-likelihood by the instantaneous change of variables against closed forms (a linear field pushes
N(0, I) to N(0, e^A e^A^T)), exact vs Hutchinson trace, torchdiffeq odeint vs odeint_adjoint gradients, the
divergence and solver steps against brute force; training through the engine, eval and plots; bad input; and wrong
formulas caught by the spec runner. The quick preset on moons is a slow test."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time

import numpy as np
import pytest
import torch

from practice_torch import cnf
from practice_torch.cli import main
from practice_torch.cnf import training as cnf_training
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {c.id: c for c in topics.spec_cases("cnf")}
MOONS = get_info("moons")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def linear_problem(d=3, b=7, seed=0):
    """dx/dt = A x pushes z ~ N(0, I) at t = 0 to x_1 = e^A z ~ N(0, e^A e^{A^T}) at t = 1 (closed form)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.5 * torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    m = torch.linalg.matrix_exp(a)
    exact = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), m @ m.T)
    return (lambda t, y: y @ a.T), a, x, exact


class TimeMLP(torch.nn.Module):
    """A small field f(t, x) = MLP([x, t]) for gradient checks."""

    def __init__(self, d=2, hidden=8):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, d))

    def forward(self, t, x):
        return self.net(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))


# log_likelihood: the instantaneous change of variables against closed forms -------------------------------------
@pytest.mark.parametrize("method,kw,tol", [("dopri5", {"atol": 1e-10, "rtol": 1e-10}, 1e-7),
                                           ("rk4", {"steps": 40}, 1e-7), ("euler", {"steps": 400}, 2e-2)])
def test_log_likelihood_of_a_linear_field_is_the_pushed_forward_gaussian(method, kw, tol):
    field, a, x, exact = linear_problem()
    with torch.no_grad():
        counted = cnf.CountingField(field)
        got = cnf.log_likelihood(counted, x, method=method, **kw)
    assert got.shape == (7,) and got.dtype == torch.float64
    err = (got - exact.log_prob(x)).abs().max().item()
    assert err < tol, f"{method}: max |log p - closed form| = {err:.3g}"
    assert counted.nfe > 0
    if method == "euler":  # first order: 400 steps leave a visible error, more steps shrink it
        assert err > 1e-5


def test_hutchinson_log_likelihood_is_unbiased_and_exact_is_its_mean():
    field, a, x, exact = linear_problem(b=4, seed=1)
    g = torch.Generator().manual_seed(0)
    n, solver = 300, {"method": "rk4", "steps": 8}  # the same solve for both: only the trace differs
    with torch.no_grad():
        draws = torch.stack([cnf.log_likelihood(field, x, trace="hutchinson", generator=g, **solver)
                             for _ in range(n)])
        exact_trace = cnf.log_likelihood(field, x, **solver)
    se = draws.std(0) / math.sqrt(n)
    assert ((draws.mean(0) - exact_trace).abs() < 4 * se).all()
    assert ((exact_trace - exact.log_prob(x)).abs() < 1e-4).all()
    # a constant field over t: the estimate is log N(z) - v^T A v; Rademacher variance 1/2 ||A + A^T||_F^2 - 2 sum A_ii^2
    sym = (a + a.T) / 2
    var = 2 * (sym**2).sum() - 2 * (torch.diagonal(a) ** 2).sum()
    assert abs(draws.var(0).mean().item() / var.item() - 1) < 0.25


def test_log_likelihood_gradients_reach_x_and_agree_with_the_closed_form():
    field, a, x, exact = linear_problem(b=3)
    xg = x.clone().requires_grad_(True)
    cnf.log_likelihood(field, xg, atol=1e-10, rtol=1e-10).sum().backward()
    xr = x.clone().requires_grad_(True)
    exact.log_prob(xr).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-7, atol=1e-8)


def test_odeint_and_odeint_adjoint_give_the_same_gradients():
    torch.manual_seed(0)
    field = TimeMLP().double()
    x = torch.randn(5, 2, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        cnf.log_likelihood(field, x, atol=1e-10, rtol=1e-10, adjoint=adjoint).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in field.parameters()]))
    assert grads[0].abs().max() > 1e-3
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)


def test_log_likelihood_bad_input_is_one_line():
    field, _, x, _ = linear_problem()
    with pytest.raises(ValueError, match="trace must be one of"):
        cnf.log_likelihood(field, x, trace="skilling")
    with pytest.raises(ValueError, match="needs steps"):
        cnf.log_likelihood(field, x, method="rk4")


# The pieces: divergence, steps ------------------------------------------------------------------------------------
def test_divergence_exact_is_the_trace_of_the_autograd_jacobian_and_hutchinson_averages_to_it():
    torch.manual_seed(0)
    net = TimeMLP(d=4, hidden=16).double()
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda y: net(t, y[None])[0], xi) for xi in x])
    trace = torch.diagonal(jac, dim1=1, dim2=2).sum(1)
    with torch.no_grad():  # autograd is switched on inside, results come back detached
        exact = cnf.divergence_exact(lambda y: net(t, y), x)
        signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=4)), dtype=torch.float64)
        every_probe = torch.stack([cnf.divergence_hutchinson(lambda y: net(t, y), x, v.expand(3, 4)) for v in signs])
    assert not exact.requires_grad
    torch.testing.assert_close(exact, trace, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(every_probe.mean(0), trace, rtol=1e-12, atol=1e-12)
    assert every_probe.var(0, unbiased=False).min() > 1e-3  # a single probe is noisy


def test_divergence_keeps_the_graph_for_a_loss_on_it():
    torch.manual_seed(0)
    net = TimeMLP().double()
    x = torch.randn(4, 2, dtype=torch.float64)
    div = cnf.divergence_exact(lambda y: net(torch.tensor(0.5, dtype=torch.float64), y), x)
    div.sum().backward()
    assert all(p.grad is not None for p in net.net[0].parameters())


def test_classic_rk4_is_fourth_order_and_euler_first_order():
    field, a, _, _ = linear_problem(d=2, b=3)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(a).T

    def error(step, n):
        x, h = x0, torch.tensor(1.0 / n, dtype=torch.float64)
        for i in range(n):
            x = step(field, i * h, x, h)
        return (x - exact).abs().max().item()

    assert 3.8 < math.log2(error(cnf.rk4_step, 8) / error(cnf.rk4_step, 16)) < 4.2
    assert 0.9 < math.log2(error(cnf.euler_step, 64) / error(cnf.euler_step, 128)) < 1.1


# Training through the engine ------------------------------------------------------------------------------------
def _moons(*extra):
    return apply_overrides(cnf_training.default_config("quick", "moons"), [
        "model.hidden=16,16", "model.atol=1e-3", "model.rtol=1e-3", "model.grid=12", "model.eval_examples=200",
        "model.nll_examples=50", "train.batch_size=64", "train.steps=30", "train.log_every=10", "train.warmup_steps=2",
        "train.samples=100", "train.checkpoint_every=30", "train.threads=1", *extra])


def test_a_tiny_cnf_trains_on_moons_writes_its_plots_and_evaluates(tmp_path):
    run = tmp_path / "run"
    trainer = new_trainer(_moons(), run)
    trainer.run()
    losses = [r["loss"] for r in read_metrics(run)]
    assert losses[-1] < losses[0], losses
    assert (run / "samples/density.png").is_file() and (run / "samples/trajectories.png").is_file()
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["nll_examples"] == 50 and math.isfinite(metrics["nll"]) and metrics["nfe_likelihood"] > 0
    assert 0 < metrics["w2"] < 3 and metrics["w2_samples"] == 100 and metrics["nfe_per_solve"] > 0


def test_adjoint_and_backprop_training_steps_agree():
    """One loss and its gradient with odeint and with odeint_adjoint, from the same weights and probes."""
    cfg = _moons()
    torch.manual_seed(0)
    grads = []
    for adjoint in (False, True):
        cfg.model.adjoint, cfg.model.atol, cfg.model.rtol = adjoint, 1e-8, 1e-8
        torch.manual_seed(0)
        net = cnf_training.build(cfg.model, MOONS).double()
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 2)))
        noise = cnf_training.draw_noise(net, cfg.model, 16, torch.Generator().manual_seed(1))
        loss, terms = cnf_training.loss(net, cfg.model, (x, None), noise, 0)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
        assert terms["nfe"] > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_a_fixed_step_sampler_costs_its_steps():
    cfg = _moons("model.sample_method=euler", "model.sample_steps=5")
    torch.manual_seed(0)
    net = cnf_training.build(cfg.model, MOONS)
    xs, times, nfe = cnf_training.draw_samples(net, cfg.model, 10, torch.Generator().manual_seed(0), frames=3)
    assert xs.shape == (3, 10, 2) and times.tolist() == [0.0, 0.5, 1.0] and nfe == 5


def test_bad_configs_are_one_line_errors():
    cfg = cnf_training.default_config("quick")
    with pytest.raises(ValueError, match="takes vectors"):
        cnf_training.build(cfg.model, get_info("digits"))
    for change, match in (({"trace": "skilling"}, "model.trace"), ({"time_input": "film"}, "model.time_input"),
                          ({"method": "rk4"}, "needs steps"), ({"sample_method": "euler"}, "needs steps")):
        with pytest.raises(ValueError, match=match):
            cnf_training.build(dataclasses.replace(cfg.model, **change), MOONS)
    with pytest.raises(ConfigError, match="unknown preset"):
        cnf_training.default_config("huge")


# Wrong formulas are caught by the spec runner (negative controls, docs/ARCHITECTURE.md rule 5) --------------------------
def outputs_only(case_id):
    """The case without its gradient check (the second derivatives are slow to compile): the outputs must differ."""
    return dataclasses.replace(CASES[case_id], grad_wrt=())


def test_the_spec_cases_pass_and_torchdiffeqs_rk4_is_not_the_classic_one(both):
    from theory_jax import cnf as jcnf

    assert run_case(CASES["cnf/mlp_rk4_step"]).passed

    def three_eighths(fn):  # torchdiffeq's 'rk4' (Kutta's 3/8 rule) in place of classic RK4
        return lambda t, x, h, w1, b1, w2, b2, w3, b3: jcnf.rk4_38_step(jcnf._mlp(w1, b1, w2, b2, w3, b3), t, x, h)

    assert "output" in caught(outputs_only("cnf/mlp_rk4_step"), Perturbation("3/8 rule", fn=three_eighths))


def test_a_flipped_divergence_sign_and_a_transposed_kernel_are_caught(both):
    def plus_trace(fn):  # d log p / dt = +tr(df/dx): the change of variables run the wrong way
        def wrong(*args, **kw):
            dx, dlogp = fn(*args, **kw)
            return dx, -dlogp
        return wrong

    assert "output" in caught(outputs_only("cnf/mlp_cnf_dynamics_exact"), Perturbation("+tr", fn=plus_trace))
    square = outputs_only("cnf/mlp_divergence_exact")
    assert "output" in caught(square, Perturbation("w2 transposed", inputs=lambda i: {**i, "w2": i["w2"].T}))


def test_a_probe_from_another_draw_is_caught(both):
    case = outputs_only("cnf/mlp_divergence_hutchinson_rademacher")
    assert "output" in caught(case, Perturbation("v rolled", inputs=lambda i: {**i, "v": np.roll(i["v"], 1, axis=0)}))


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_on_moons_reaches_the_held_out_w2_floor(tmp_path):
    start = time.perf_counter()
    assert main(["train", "cnf", "--dataset", "moons", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 900  # about 2 min of CPU; 10 min wall on a heavily shared machine
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["nll"] < 1.5 and metrics["w2"] < 1.5 * metrics["w2_held_out_halves"], metrics
