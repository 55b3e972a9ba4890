"""Flow matching in PyTorch: the conditional path and its target, the CFM loss, minibatch OT, the ODE sampler on fields
with known flows, the training interface (2-D MLP, class-conditional U-Net, galaxies U-Net), the CLI on tiny runs, bad
input; and wrong twins (a path with t and 1 - t swapped, a target without its (1 - sigma_min), the identity instead of
the optimal assignment, straightness with the displacement's sign flipped) caught by the spec runner; reflow: its
student and frozen teacher, the loss on the teacher's pairs, the teacher trained first with the run's seed, a
resumed reflow run bit-identical to a straight one; consistency distillation: its three networks, the loss and the
target's EMA, one- and two-step sampling, a resumed run bit-identical, its samplers and the teacher's scored on
images from one noise, the skip parameterisation with c_skip and c_out swapped and an Euler step run backwards caught
by the spec runner."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time

import pytest
import torch

from practice_torch import flow_matching as fm
from practice_torch import models
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import ConfigError
from practice_torch.flow_matching import training as fm_training
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {case.id: case for case in topics.spec_cases("flow_matching")}
MOONS = get_info("moons")
TINY = ["--device", "cpu", "--set", "model.hidden=16", "--set", "model.depth=1", "--set", "model.ode_steps=4",
        "--set", "model.eval_examples=100", "--set", "model.nll_examples=20", "--set", "model.density_grid=8",
        "--set", "train.batch_size=32", "--set", "model.straightness_steps=4",
        "--set", "train.warmup_steps=2", "--set", "train.log_every=5", "--set", "train.samples=100"]
TINY_UNET = ["--device", "cpu", "--set", "model.channels=8", "--set", "model.channel_mults=1,2",
             "--set", "model.attention_levels=1", "--set", "model.ode_steps=2", "--set", "model.method=euler",
             "--set", "train.batch_size=8", "--set", "train.warmup_steps=1"]


# The functions --------------------------------------------------------------------------------------------------
def test_the_path_runs_from_noise_to_data_at_the_target_velocity():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    for sigma_min in (0.0, 0.1):
        ones, zeros = torch.ones(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
        torch.testing.assert_close(fm.conditional_path(x0, x1, zeros, sigma_min), x0)
        torch.testing.assert_close(fm.conditional_path(x0, x1, ones, sigma_min), x1 + sigma_min * x0)
        t, h = torch.rand(6, generator=g, dtype=torch.float64) * 0.8 + 0.1, 1e-6
        slope = (fm.conditional_path(x0, x1, t + h, sigma_min) - fm.conditional_path(x0, x1, t - h, sigma_min)) / (2 * h)
        x_t, u = fm.path_sample_and_target(x1, x0, t, sigma_min)
        torch.testing.assert_close(u, slope, rtol=1e-7, atol=1e-7)
        assert fm.cfm_loss(u, u) == 0 and torch.equal(x_t, fm.conditional_path(x0, x1, t, sigma_min))


def test_the_ot_assignment_is_the_brute_force_optimum_and_lowers_the_transport_cost():
    g = torch.Generator().manual_seed(1)
    lowered = 0
    for _ in range(20):
        x0, x1 = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g) .double() + 2
        cost = fm.squared_cost(x1, x0)
        best = min(sum(cost[i, p[i]].item() for i in range(6)) for p in itertools.permutations(range(6)))
        sigma = fm.ot_assignment(cost)
        assert sorted(sigma.tolist()) == list(range(6))
        assert math.isclose(fm.transport_cost(cost, sigma).item() * 6, best, rel_tol=1e-12)
        paired = fm.ot_coupling(x0, x1)  # row j of paired goes with x1[j]
        assert math.isclose(((paired - x1) ** 2).sum().item(), best, rel_tol=1e-12)
        lowered += best < ((x0 - x1) ** 2).sum().item()
    assert lowered >= 18
    with pytest.raises(ValueError, match="square"):
        fm.ot_assignment(torch.zeros(3, 4))


def test_the_ode_sampler_counts_evaluations_and_converges_at_its_order():
    x0 = torch.ones(4, 2, dtype=torch.float64)
    exact = math.exp(-1.0)
    errors = {}
    for method, stages in fm.sampling.FIXED.items():
        for steps in (10, 20):
            tr = fm.integrate(lambda t, x: -x, x0, method, steps, frames=3)
            assert tr.nfe == stages * steps and tr.x.shape == (3, 4, 2) and tr.times.tolist() == [0.0, 0.5, 1.0]
            errors[method, steps] = abs(tr.x[-1, 0, 0].item() - exact)
    assert math.isclose(fm.integrate(lambda t, x: -x, x0, "euler", 10).x[-1, 0, 0].item(), 0.9**10, rel_tol=1e-12)
    for method, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        assert 0.8 * order < math.log2(errors[method, 10] / errors[method, 20]) < 1.2 * order + 0.3
    adaptive = fm.integrate(lambda t, x: -x, x0, "dopri5", atol=1e-9, rtol=1e-9)
    assert abs(adaptive.x[-1, 0, 0].item() - exact) < 1e-8 and adaptive.nfe > 6
    with pytest.raises(ValueError, match="method must be one of"):
        fm.integrate(lambda t, x: x, x0, "rk45")


def test_the_exact_marginal_field_of_gaussian_data_transports_noise_to_the_data():
    """v_t(x) = m + K Sigma_t^-1 (x - t m), K = t S - (1 - t) I, Sigma_t = (1 - t)^2 I + t^2 S (theory_jax section 2)."""
    m, low = torch.tensor([1.5, -0.5], dtype=torch.float64), torch.tensor([[0.8, 0.0], [0.5, 0.4]], dtype=torch.float64)
    s, eye = low @ low.T, torch.eye(2, dtype=torch.float64)

    def field(t, x):
        sigma_t, k = (1 - t) ** 2 * eye + t**2 * s, t * s - (1 - t) * eye
        return m + (x - t * m) @ torch.linalg.solve(sigma_t, k)

    x0 = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x1 = fm.integrate(field, x0, "rk4", 20).x[-1]  # standard errors: about 0.01 (mean), 0.01 (covariance)
    torch.testing.assert_close(x1.mean(0), m, atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(x1.T), s, atol=0.04, rtol=0)


# The model -------------------------------------------------------------------------------------------------------
def test_the_loss_is_cfm_on_the_drawn_noise_with_label_dropout_and_ot_within_classes():
    config = fm_training.Config(hidden=16, depth=1, conditional=True, label_dropout=0.5)
    net = fm_training.build(config, MOONS)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g)
    noise = fm_training.draw_noise(net, config, 8, g)
    assert set(noise) == {"t", "x0", "drop"} and noise["t"].min() >= 0 and noise["t"].max() <= 1
    x_t = (1 - noise["t"][:, None]) * noise["x0"] + noise["t"][:, None] * x
    labels = torch.where(noise["drop"], torch.full_like(y, 2), y)
    expected = ((net(x_t, noise["t"], labels) - (x - noise["x0"])) ** 2).mean()
    torch.testing.assert_close(fm_training.loss(net, config, (x, y), noise, 0)[0], expected)
    paired = fm.training.couple(noise["x0"], x, y)
    for label in (0, 1):  # a permutation of each class's own noise, with a cost no higher than the original pairing
        rows = y == label
        assert sorted(paired[rows].sum(1).tolist()) == pytest.approx(sorted(noise["x0"][rows].sum(1).tolist()))
        assert ((paired[rows] - x[rows]) ** 2).sum() <= ((noise["x0"][rows] - x[rows]) ** 2).sum() + 1e-6
    assert torch.isfinite(fm_training.loss(net, dataclasses.replace(config, coupling="ot"), (x, y), noise, 0)[0])


def test_classifier_free_guidance_combines_the_conditional_and_null_fields():
    net = fm_training.build(fm_training.Config(hidden=16, depth=1, conditional=True), MOONS)
    torch.nn.init.normal_(net.net.out.weight)
    x, t, y = torch.randn(5, 2), torch.tensor(0.3), torch.tensor([0, 1, 0, 1, 1])
    guided = net.field(y, 2.0)(t, x)
    torch.testing.assert_close(guided, 3 * net(x, t, y) - 2 * net(x, t, torch.full_like(y, 2)))
    torch.testing.assert_close(net.field(y, 0.0)(t, x), net(x, t, y))


def test_registry_presets_and_build_errors():
    assert models.get_model("flow_matching") is fm_training and all(hasattr(fm_training, name) for name in models.INTERFACE)
    quick, images = fm_training.default_config("quick"), fm_training.default_config("quick", "fashion_mnist")
    galaxies = fm_training.default_config("quick", "galaxies")
    assert quick.data.name == "moons" and quick.model.architecture == "mlp" and images.model.conditional
    assert galaxies.model.cond_dim == 5 and galaxies.model.architecture == "unet"
    assert fm_training.default_config("full", "fashion_mnist").model.channels > images.model.channels
    with pytest.raises(ConfigError, match="unknown preset"):
        fm_training.default_config("huge")
    with pytest.raises(ValueError, match="U-Net field models"):
        fm_training.build(fm_training.Config(architecture="unet"), MOONS)
    with pytest.raises(ValueError, match="needs labels"):
        fm_training.build(fm_training.Config(conditional=True), get_info("galaxies"))
    with pytest.raises(ValueError, match="breaks conditioning"):
        fm_training.build(fm_training.Config(architecture="unet", cond_dim=5, coupling="ot"), get_info("galaxies"))
    with pytest.raises(ValueError, match="steps >= 1"):
        fm_training.build(fm_training.Config(ode_steps=0), MOONS)


def test_cli_trains_samples_and_evaluates_a_tiny_2d_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "flow_matching", "--steps", "20", "--out", str(run), "--set", "model.coupling=ot", *TINY]) == 0
    assert all((run / f"samples/{name}.png").is_file() for name in ("samples", "trajectories", "field", "density"))
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png"), "--set", "model.method=rk4"]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(run), "--set", "model.method=euler"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["examples"] == 100 and metrics["w2_samples"] == 50 and metrics["nfe_per_solve"] == 4
    assert all(math.isfinite(metrics[k]) for k in ("cfm_loss", "w2", "w2_held_out_halves", "nll", "nll_stderr"))
    capsys.readouterr()


def test_the_benchmarks_are_registered_run_only_when_named_and_ode_nfe_reads_a_run(tmp_path, capsys):
    from argparse import Namespace

    from benchmarks.__main__ import BENCHMARKS, DEFAULT
    from benchmarks.flow_matching import ode_nfe

    assert {"fm_vs_cnf", "ode_nfe"} <= set(BENCHMARKS) and not {"fm_vs_cnf", "ode_nfe"} & set(DEFAULT)
    run = tmp_path / "run"
    assert main(["train", "flow_matching", "--steps", "5", "--out", str(run), *TINY, "--set", "model.density_grid=0",
                 "--set", "train.samples=10"]) == 0
    rows = ode_nfe(Namespace(run=str(run), nfe_steps="1,2", fm_samples=100))
    assert [(r["method"], r["nfe"]) for r in rows[:6]] == [("euler", 1), ("euler", 2), ("midpoint", 2),
                                                           ("midpoint", 4), ("rk4", 4), ("rk4", 8)]
    assert len(rows) == 9 and all(math.isfinite(r["w2"]) and r["w2"] > 0 for r in rows)
    capsys.readouterr()


def test_cli_trains_the_class_conditional_unet_on_images(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "flow_matching", "--dataset", "digits", "--steps", "3", "--out", str(run), *TINY_UNET,
                 "--set", "model.channels=16", "--set", "model.channel_mults=1", "--set", "model.attention_levels=",
                 "--set", "train.samples=20",
                 "--set", "model.guidance_scale=1.5"]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/trajectories.png").is_file()


def test_the_galaxy_model_is_conditioned_on_the_parameters_and_draws_the_sweep(tmp_path):
    pytest.importorskip("galsim")
    try:
        get_info("galaxies").load("val", None, limit=8)
    except Exception as exc:  # not rendered on this machine
        pytest.skip(str(exc))
    config = fm_training.Config(architecture="unet", cond_dim=5, channels=8, channel_mults=(1, 2), attention_levels=())
    net = fm_training.build(config, get_info("galaxies"))
    for p in net.parameters():  # zero-initialised output convs would hide the condition at initialisation
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.zeros(2, 1, 32, 32), torch.tensor(0.5)
    y = torch.tensor([[-1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]])
    assert not torch.allclose(*net(x, t, y))  # the condition reaches the field
    run = tmp_path / "run"
    assert main(["train", "flow_matching", "--dataset", "galaxies", "--steps", "2", "--out", str(run), *TINY_UNET,
                 "--set", "data.limit=16", "--set", "train.samples=4"]) == 0
    assert (run / "samples/samples.png").is_file()
    assert (run / "samples/parameter_sweep.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "names"], "real vectors or images; names is text"),
    (["--set", "model.architecture=unet"], "U-Net field models"),
    (["--set", "model.guidance_scale=2"], "needs a class-conditional model"),
    (["--set", "model.method=rk45"], "expected one of euler, midpoint, rk4, dopri5"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "flow_matching", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# Negative controls ------------------------------------------------------------------------------------------------
def test_a_path_with_t_and_one_minus_t_swapped_is_caught_by_the_spec(both):
    assert run_case(CASES["flow_matching/conditional_path"]).passed
    swapped = Perturbation("x_t = t x0 + (1 - t) x1", fn=lambda fn: lambda x0, x1, t, sigma_min=0.0: fn(x1, x0, t))
    for case in ("flow_matching/conditional_path", "flow_matching/path_sample_and_target"):
        message = caught(CASES[case], swapped if "conditional" in case else
                         Perturbation("swapped", fn=lambda fn: lambda x1, x0, t, sigma_min=0.0: fn(x0, x1, t)))
        assert "output" in message and "reference" in message


def test_a_target_without_its_one_minus_sigma_min_is_caught_by_the_spec(both):
    message = caught(CASES["flow_matching/target_velocity"],
                     Perturbation("u = x1 - x0", fn=lambda fn: lambda x0, x1, sigma_min=0.0: fn(x0, x1, 0.0)))
    assert "output" in message and "reference" in message


def test_the_identity_instead_of_the_optimal_assignment_is_caught_by_the_spec(both):
    import jax.numpy as jnp

    message = caught(CASES["flow_matching/ot_assignment"],
                     Perturbation("independent coupling", fn=lambda fn: lambda cost: jnp.arange(cost.shape[0])))
    assert "output" in message
    assert "output" in caught(CASES["flow_matching/ot_coupling"],
                              Perturbation("x0 unpaired", fn=lambda fn: lambda x0, x1: x0))


def test_straightness_with_the_displacement_reversed_is_caught_by_the_spec(both):
    assert run_case(CASES["flow_matching/straightness"]).passed
    message = caught(CASES["flow_matching/straightness"],
                     Perturbation("x0 - x1", fn=lambda fn: lambda x0, x1, velocities: fn(x1, x0, velocities)))
    assert "output" in message and "reference" in message


# Reflow ----------------------------------------------------------------------------------------------------------
def test_straightness_is_zero_on_straight_paths_at_constant_speed_and_the_speeds_variance_otherwise():
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    steady = (x1 - x0).expand(5, 8, 2)
    assert fm.straightness(x0, x1, steady) == 0
    wobble = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64)[:, None, None] * torch.randn(
        1, 8, 2, generator=g, dtype=torch.float64)  # the same displacement, reached at varying speed
    expected = (wobble**2).sum(-1).mean()
    torch.testing.assert_close(fm.straightness(x0, x1, steady + wobble), expected)
    assert expected > 0


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "flow_matching", "--steps", "10", "--out", str(run), *TINY, "--set", "train.samples=0"]) == 0
    return run


def reflow_student(teacher_run, mode="reflow", **changes):
    """A reflow (or consistency) network built on ``teacher_run`` as a new run builds it (the teacher handed in)."""
    from practice_torch.engine.runs import Parent

    _, cfg, net = models.open_run(teacher_run, torch.device("cpu"))
    config = dataclasses.replace(cfg.model, teacher=str(teacher_run), **{mode: True}, **changes)
    parents = {"teacher": Parent(str(teacher_run), "flow_matching", 10, cfg, net)}
    return fm_training.build(config, MOONS, parents), config, net, parents


def test_reflow_starts_from_the_teachers_weights_and_fits_the_teachers_pairs(teacher_run):
    net, config, teacher, _ = reflow_student(teacher_run)
    assert isinstance(net, fm.model.RectifiedFlow) and not any(p.requires_grad for p in net.teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(net.net.parameters(), teacher.net.parameters()))
    g = torch.Generator().manual_seed(5)
    noise = fm_training.draw_noise(net, config, 16, g)
    x0, t = noise["x0"], noise["t"]
    z1 = fm.integrate(teacher.field(), x0, config.method, config.ode_steps).x[-1]
    for distill, times in ((False, t), (True, torch.zeros_like(t))):
        x_t = (1 - times[:, None]) * x0 + times[:, None] * z1
        expected = ((net(x_t, times) - (z1 - x0)) ** 2).mean()
        run_config = dataclasses.replace(config, distill=distill)
        for data in (torch.randn(16, 2, generator=g), torch.zeros(16, 2)):  # the data's points play no part
            torch.testing.assert_close(fm_training.loss(net, run_config, (data, torch.zeros(16)), noise, 0)[0],
                                       expected)


@pytest.mark.parametrize("changes, message", [
    ({"coupling": "ot"}, "leave model.coupling=independent"),
    ({"sigma_min": 0.1}, "model.sigma_min=0"),
])
def test_reflow_refuses_settings_it_does_not_take(teacher_run, changes, message):
    with pytest.raises(ValueError, match=message):
        reflow_student(teacher_run, **changes)
    with pytest.raises(ValueError, match="add model.reflow=true"):
        fm_training.build(fm_training.Config(distill=True), MOONS)
    with pytest.raises(ValueError, match="builds on a trained flow_matching run"):
        fm_training.build(fm_training.Config(reflow=True), MOONS, {})
    _, config, _, parents = reflow_student(teacher_run)
    other = dataclasses.replace(parents["teacher"], config=dataclasses.replace(
        parents["teacher"].config, data=dataclasses.replace(parents["teacher"].config.data, name="circles")))
    with pytest.raises(ValueError, match="was trained on circles"):
        fm_training.build(config, MOONS, {"teacher": other})


def test_an_empty_teacher_is_trained_first_with_the_runs_seed(tmp_path, monkeypatch):
    assert fm_training.prerequisite_runs(fm_training.Config(), MOONS) == {}
    assert fm_training.prerequisite_runs(fm_training.Config(reflow=True, teacher="a/run"), MOONS) == {}
    need = fm_training.prerequisite_runs(fm_training.Config(reflow=True, distill=True), MOONS)["teacher"]
    assert (need.model, need.preset, need.same_seed) == ("flow_matching", "quick", True)
    cfg = fm_training.default_config("quick")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, reflow=True, distill=True),
                              train=dataclasses.replace(cfg.train, seed=7))
    trained = []

    class Trainer:
        def run(self):
            return type("Outcome", (), {"signal": None})()

        def close(self):
            pass

    monkeypatch.setattr(models, "new_trainer", lambda run_cfg, where, resume=False: trained.append(run_cfg) or Trainer())
    resolved = models.with_prerequisites(fm_training, cfg, tmp_path / "run")
    assert [c.train.seed for c in trained] == [7] and not trained[0].model.reflow and not trained[0].model.distill
    assert resolved.model.teacher == str(tmp_path / "run" / "teacher")
    default = fm_training.default_config("quick")
    assert trained[0].train == dataclasses.replace(default.train, seed=7)  # the preset's, but for the seed


def straight_and_resumed(teacher_run, tmp_path, mode: str) -> tuple[dict, dict]:
    """The state dicts of a tiny ``mode`` run (reflow or consistency) of 6 steps straight and of one stopped at 3
    and resumed, both on ``teacher_run``."""
    from practice_torch.engine.config import apply_overrides

    sets = [a for a in TINY if a.startswith(("model.", "train."))]
    cfg = apply_overrides(fm_training.default_config("quick"), [
        *sets, f"model.{mode}=true", f"model.teacher={teacher_run}", "train.samples=0", "train.steps=6",
        "train.checkpoint_every=2", "train.device=cpu"])
    models.new_trainer(cfg, tmp_path / "straight").run()
    assert models.new_trainer(cfg, tmp_path / "resumed").run(stop_at=3).step == 3
    models.new_trainer(cfg, tmp_path / "resumed", resume=True).run()
    a, b = (models.open_run(tmp_path / r, torch.device("cpu"))[2].state_dict() for r in ("straight", "resumed"))
    return a, b


def test_a_reflow_run_resumes_bit_identically_and_eval_puts_the_teacher_beside_it(teacher_run, tmp_path, capsys):
    a, b = straight_and_resumed(teacher_run, tmp_path, "reflow")
    assert any(k.startswith("teacher.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)
    assert main(["eval", str(tmp_path / "resumed")]) == 0
    metrics = json.loads((tmp_path / "resumed" / "eval_test.json").read_text())
    keys = ("straightness", "w2_one_step")
    assert all(math.isfinite(metrics[k]) and math.isfinite(metrics[f"teacher_{k}"]) for k in keys)
    capsys.readouterr()


def test_consistency_distillation_pulls_f_toward_the_targets_f_one_teacher_step_later(teacher_run):
    from practice_torch.flow_matching import consistency

    net, config, teacher, _ = reflow_student(teacher_run, "consistency", consistency_steps=4, target_decay=0.9)
    assert isinstance(net, consistency.ConsistencyModel)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [n for n, _ in net.net.named_parameters(
        prefix="net")]
    for copy in (net.net, net.target.net, net.teacher.net):
        assert all(torch.equal(a, b) for a, b in zip(copy.parameters(), teacher.net.parameters()))
    torch.nn.init.normal_(net.net.out.weight)  # the student moves away from its target
    g = torch.Generator().manual_seed(6)
    noise = fm_training.draw_noise(net, config, 16, g)
    assert set(noise) >= {"x0", "n"} and noise["n"].max() < 4
    x1 = torch.randn(16, 2, generator=g)
    t = noise["n"].float() / 4
    x_t = (1 - t[:, None]) * noise["x0"] + t[:, None] * x1
    x_hat = x_t + 0.25 * teacher(x_t, t)
    target = fm.consistency_function(x_hat, t + 0.25, net.target(x_hat, t + 0.25), config.sigma_data)
    expected = ((fm.consistency_function(x_t, t, net(x_t, t), config.sigma_data) - target) ** 2).mean()
    torch.testing.assert_close(consistency.distillation_loss(net, config, x1, None, noise), expected)
    before = [p.clone() for p in net.target.net.parameters()]
    consistency.update_target(net, 0.9)
    for old, new, online in zip(before, net.target.net.parameters(), net.net.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online)
    x0 = torch.randn(8, 2, generator=g)
    one = consistency.consistency_sample(net, x0, None, (0.0,), config.sigma_data, g)
    torch.testing.assert_close(one.x[-1], net.consistency(x0, torch.zeros(8), None, config.sigma_data))
    assert one.nfe == 1 and consistency.consistency_sample(net, x0, None, (0.0, 0.5), 0.5, g).x.shape == (3, 8, 2)


def test_the_guided_field_takes_one_time_per_example_as_consistency_distillation_steps_it():
    """Consistency distillation steps the teacher's CFG field at each example's own t_n (t: (B,)): the guided field
    is (1 + w) v(x_i, t_i, y_i) - w v(x_i, t_i, null) row by row, as at a shared 0-d t. Control: the unguided field
    differs."""
    torch.manual_seed(0)
    net = fm_training.build(fm_training.Config(architecture="unet", conditional=True, channels=16, channel_mults=(1,),
                                               attention_levels=()), get_info("digits")).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 4, 9])
        guided = net.field(y, 2.0)(t, x)
        for i in range(3):
            v, v_null = (net(x[i:i + 1], t[i], labels) for labels in (y[i:i + 1], torch.tensor([10])))
            torch.testing.assert_close(guided[i:i + 1], 3 * v - 2 * v_null)
            torch.testing.assert_close(net.field(y[i:i + 1], 2.0)(t[i], x[i:i + 1]), guided[i:i + 1])
        assert (guided - net.field(y)(t, x)).abs().max() > 0.01


def test_consistency_refuses_what_it_does_not_take(teacher_run):
    with pytest.raises(ValueError, match="choose one"):
        reflow_student(teacher_run, "consistency", reflow=True)
    with pytest.raises(ValueError, match="must start at 0"):
        reflow_student(teacher_run, "consistency", consistency_times=(0.5,))
    with pytest.raises(ValueError, match="leave model.coupling=independent"):
        reflow_student(teacher_run, "consistency", coupling="ot")
    _, config, _, parents = reflow_student(teacher_run, "consistency")
    distilled = dataclasses.replace(parents["teacher"], config=dataclasses.replace(
        parents["teacher"].config, model=dataclasses.replace(parents["teacher"].config.model, consistency=True)))
    with pytest.raises(ValueError, match="has no ODE field to distil"):
        fm_training.build(config, MOONS, {"teacher": distilled})


def test_a_consistency_run_resumes_bit_identically_and_eval_puts_the_teachers_euler_beside_it(teacher_run, tmp_path,
                                                                                              capsys):
    a, b = straight_and_resumed(teacher_run, tmp_path, "consistency")
    assert any(k.startswith("target.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[f"target.{k}"], a[k]) for k in a if k.startswith("net."))  # theta- lags theta
    assert main(["eval", str(tmp_path / "resumed"), "--set", "model.consistency_times=0,0.6"]) == 0
    metrics = json.loads((tmp_path / "resumed" / "eval_test.json").read_text())
    assert metrics["nfe_per_solve"] == 2 and all(math.isfinite(metrics[f"teacher_w2_euler_{k}"]) for k in (1, 2, 4, 20))
    assert all(math.isfinite(metrics[k]) for k in ("w2", "w2_one_step", "w2_two_step"))
    capsys.readouterr()


def test_the_skip_scalings_swapped_and_a_backward_euler_step_are_caught_by_the_spec(both):
    swapped = Perturbation("c_skip <-> c_out", fn=lambda fn: lambda t, sigma_data=0.5: fn(t, sigma_data)[::-1])
    assert "output" in caught(CASES["flow_matching/consistency_scalings"], swapped)
    backward = Perturbation("x + (t - t_next) v", fn=lambda fn: lambda x_t, v, t, t_next: fn(x_t, v, t_next, t))
    assert "output" in caught(CASES["flow_matching/ode_step"], backward)


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_on_moons_samples_close_to_the_data(tmp_path):
    start = time.perf_counter()
    assert main(["train", "flow_matching", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 240
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["w2"] < 3 * metrics["w2_held_out_halves"] and metrics["nll"] < 1.6, metrics


@pytest.mark.slow
def test_the_quick_preset_trains_on_fashion_mnist_within_fifteen_minutes(tmp_path):
    start = time.perf_counter()
    assert main(["train", "flow_matching", "--dataset", "fashion_mnist", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 900
    assert (tmp_path / "run/samples/samples.png").is_file()


def test_consistency_on_images_scores_each_sampler_from_one_noise_and_the_classes_in_turn(monkeypatch):
    """On images ``evaluate_consistency`` scores the consistency model in one step and two and the teacher's guided
    Euler sampler at 1, 2, 4 and 20 steps, each on the same noise and classes, in chunks: the images scored are what
    each sampler draws from them (the features are a fixed projection here: no feature network is trained).
    Controls: another noise, the teacher without its guidance and 20 steps in place of 1 draw other images."""
    from types import SimpleNamespace

    from torch.utils.data import TensorDataset

    from practice_torch.engine.runs import Parent
    from practice_torch.evaluation import features as F
    from practice_torch.evaluation.metrics import fid_from_features
    from practice_torch.flow_matching.consistency import ConsistencyModel

    digits = get_info("digits")
    net_config = fm_training.Config(architecture="unet", conditional=True, channels=16, channel_mults=(1,),
                                    attention_levels=(), guidance_scale=1.5)
    torch.manual_seed(0)
    teacher = fm_training.build(net_config, digits).eval()
    with torch.no_grad():  # a teacher whose field is not zero (the U-Net's output layer starts at zero)
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    config = dataclasses.replace(net_config, consistency=True, teacher="teacher")
    net = fm_training.build(config, digits, {"teacher": Parent("teacher", "flow_matching", 1, None, teacher)}).eval()
    assert isinstance(net, ConsistencyModel)
    with torch.no_grad():  # the student away from its teacher
        for p in net.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    real = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    dataset = TensorDataset(real, torch.zeros(12, dtype=torch.long))
    dataset.run_data = SimpleNamespace(name="digits")
    projection = torch.randn(64, 5, generator=torch.Generator().manual_seed(2))
    stub = torch.nn.Linear(64, 10)
    stub.features = lambda x: x.flatten(1) @ projection
    scored = {}

    def embed(features, images, desc="features"):
        scored[desc] = images
        return features.features(images), None

    monkeypatch.setattr(F, "feature_network", lambda name, device=None: stub)
    monkeypatch.setattr(F, "embed", embed)
    monkeypatch.setattr(fm_training, "FID_CHUNK", 5)
    metrics = fm_training.evaluate(net, config, dataset, torch.Generator().manual_seed(3), samples=12)

    samplers = ["fid_one_step", "fid_two_step", *(f"teacher_fid_euler_{k}" for k in (1, 2, 4, 20))]
    assert metrics["sampler_fid_samples"] == 12 and metrics["nfe_per_solve"] == 1
    for key in samplers:
        assert metrics[key] == pytest.approx(fid_from_features(real.flatten(1) @ projection,
                                                               scored[f"features ({key})"].flatten(1) @ projection))
    x0, y = torch.randn((12, 1, 8, 8), generator=torch.Generator().manual_seed(3)), torch.arange(12) % 10
    with torch.no_grad():
        one_step = net.from_model(net.consistency(x0, torch.zeros(12), y, config.sigma_data))
        guided = net.from_model(x0 + teacher.field(y, 1.5)(torch.zeros(()), x0))
        unguided = net.from_model(x0 + teacher.field(y, 0.0)(torch.zeros(()), x0))
        elsewhere = torch.randn((12, 1, 8, 8), generator=torch.Generator().manual_seed(4))
        other_noise = net.from_model(net.consistency(elsewhere, torch.zeros(12), y, config.sigma_data))
    torch.testing.assert_close(scored["features (fid_one_step)"], one_step)
    torch.testing.assert_close(scored["features (teacher_fid_euler_1)"], guided)
    for control, drawn in ((unguided, "teacher_fid_euler_1"), (other_noise, "fid_one_step"),
                           (guided, "teacher_fid_euler_20")):  # each a hundred times the chunks' rounding, or more
        assert (scored[f"features ({drawn})"] - control).abs().max() > 1e-3, drawn
