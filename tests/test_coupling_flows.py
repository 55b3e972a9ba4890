"""Coupling flows: the layers and the multi-scale flow are bijections whose summed log-dets are the autograd
log |det J|; actnorm's data-dependent start; a 2-D RealNVP is a density; training through the engine on digits
(bits/dim fall, temperature grids, eval with dequantisation draws, the single-class option) and on moons (density
plot); bad input; wrong formulas caught by the spec runner (negative controls). The quick preset on Fashion-MNIST
(test bits/dim < 4.5) is a slow test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from practice_torch import coupling_flows as cf
from practice_torch.cli import main
from practice_torch.coupling_flows import training as cf_training
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {c.id: c for c in topics.spec_cases("coupling_flows")}
DIGITS, MOONS = get_info("digits"), get_info("moons")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _randomise(net: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every parameter off its identity start (zero last layers, unit actnorm) so the checks see real maps."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _autograd_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    """log |det d fn / dx| per example of x (B, ...) by torch.autograd.functional.jacobian."""
    out = []
    for v in x:
        jac = torch.autograd.functional.jacobian(lambda w: fn(w[None]).reshape(-1), v)
        out.append(torch.linalg.slogdet(jac.reshape(v.numel(), v.numel()))[1])
    return torch.stack(out)


# The layers and the multi-scale flow ------------------------------------------------------------------------------
def test_the_multiscale_flow_is_a_bijection_with_the_autograd_log_det():
    torch.manual_seed(0)
    flow = cf.MultiScaleFlow((1, 4, 4), scales=2, checker_steps=2, channel_steps=2, hidden=8).double()
    flow.train()
    flow(torch.randn(16, 1, 4, 4, dtype=torch.float64))  # actnorm's data-dependent start
    flow.eval()
    _randomise(flow)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    zs, log_det = flow(x)
    assert [tuple(z.shape[1:]) for z in zs] == [(2, 2, 2), (2, 2, 2)] == [tuple(s) for s in flow.latent_shapes]
    torch.testing.assert_close(flow.inverse(zs), x, rtol=1e-10, atol=1e-10)
    auto = _autograd_log_det(lambda v: torch.cat([z.reshape(len(v), -1) for z in flow(v)[0]], 1), x)
    torch.testing.assert_close(log_det, auto, rtol=1e-9, atol=1e-9)


def test_the_vector_flow_is_a_density_and_its_layers_invert():
    torch.manual_seed(0)
    net = cf_training.build(cf_training.Config(layers=4, hidden=16, blocks=1), MOONS).double()
    net.train()
    net.log_prob(torch.randn(64, 2, dtype=torch.float64))
    net.eval()
    _randomise(net, 0.2)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(net.body.inverse(net(x)[0]), x, rtol=1e-10, atol=1e-10)
    axis = torch.linspace(-25, 25, 1201, dtype=torch.float64)  # the tails reach far: [-12, 12] misses 0.4%
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        dens = net.log_prob(grid).exp().reshape(1201, 1201)
    mass = torch.trapezoid(torch.trapezoid(dens, axis, dim=1), axis).item()
    assert abs(mass - 1) < 1e-4, mass


def test_actnorm_starts_from_the_data_and_invconv_keeps_its_lu_log_det():
    norm = cf.ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0])[:, None, None] + 4.0
    y, log_det = norm(x)
    assert norm.initialized.item() == 1
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)
    y2, _ = norm(x * 10)  # initialised once: a second batch does not move it
    torch.testing.assert_close(y2, 10 * y - 9 * norm.bias[None, :, None, None], rtol=1e-4, atol=1e-4)
    conv = cf.InvConv1x1(4, torch.Generator().manual_seed(0))
    _, ld = conv(torch.randn(2, 4, 3, 3))
    torch.testing.assert_close(ld, torch.full((2,), 9 * torch.linalg.slogdet(conv.weight())[1].item()))
    torch.testing.assert_close(ld[0], torch.tensor(0.0), atol=1e-5, rtol=0)  # starts as a rotation


# Training through the engine ------------------------------------------------------------------------------------
def _digits(*extra):
    return apply_overrides(cf_training.default_config("quick", "digits"), [
        "model.hidden=16", "model.eval_examples=40", "model.eval_draws=3", "model.temperatures=0.5,1.0",
        "train.steps=60", "train.log_every=20", "train.samples=16", "train.checkpoint_every=60", "train.threads=1",
        *extra])


def test_a_small_flow_learns_digits_and_evaluates_with_dequantisation_draws(tmp_path):
    run = tmp_path / "run"
    new_trainer(_digits(), run).run()
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert losses[-1] < losses[0] - 0.5 and losses[-1] < 4.5, losses  # 17 levels: a uniform model costs 4.09 + 0
    assert {p.name for p in (run / "samples").iterdir()} >= {"samples.png", "samples_T0.5.png", "samples_T1.png"}
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["eval_examples"] == 40 and metrics["eval_draws"] == 3
    assert math.isfinite(metrics["bits_per_dim"]) and metrics["bits_per_dim_iw"] <= metrics["bits_per_dim"] + 1e-9
    assert metrics["bits_per_dim"] < math.log2(17) + 0.5, metrics


def test_single_class_training_keeps_one_label(tmp_path):
    cfg = _digits("data.classes=0", "train.steps=4", "train.checkpoint_every=4")
    trainer = new_trainer(cfg, tmp_path / "run")
    assert set(trainer.train_set.tensors[1].tolist()) == {0}
    trainer.run()
    assert (tmp_path / "run/samples/samples.png").is_file()


def test_realnvp_learns_moons_with_a_density_plot(tmp_path):
    from practice_torch.data import get_dataset

    train = get_dataset("moons", "train")
    x = torch.stack([train[i][0] for i in range(len(train))]).double()
    gaussian_nll = 0.5 * torch.logdet(2 * math.pi * math.e * torch.cov(x.T)).item()  # the best Gaussian: 2.69 nats
    cfg = apply_overrides(cf_training.default_config("quick", "moons"), [
        "model.hidden=32", "model.layers=4", "train.steps=300", "train.lr=5e-3", "train.log_every=50",
        "train.samples=300", "train.checkpoint_every=300", "train.threads=1"])
    new_trainer(cfg, tmp_path / "run").run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert losses[-1] < gaussian_nll - 0.5, (losses, gaussian_nll)
    assert (tmp_path / "run/samples/density.png").is_file() and (tmp_path / "run/samples/samples.png").is_file()


def test_bad_configurations_are_one_line_errors():
    with pytest.raises(ValueError, match="alpha must be in"):
        cf_training.build(cf_training.Config(alpha=0.5), DIGITS)
    with pytest.raises(ValueError, match="must divide evenly"):
        cf_training.build(cf_training.Config(scales=5), DIGITS)
    with pytest.raises(ValueError, match="'affine' or 'additive'"):
        cf_training.build(cf_training.Config(coupling="spline"), DIGITS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperatures must be positive"):
        cf_training.build(cf_training.Config(temperatures=(0.0,)), DIGITS)
    with pytest.raises(ValueError, match="needs even height"):
        cf.squeeze(torch.zeros(1, 1, 3, 4))


# Negative controls: wrong twins must be caught ---------------------------------------------------------------------
def test_a_flipped_log_det_sign_is_caught():
    def flip(fn):
        return lambda **kw: (lambda out: (out[0], -out[1]))(fn(**kw))

    assert "max |a-b|" in caught(CASES["coupling_flows/coupling_forward/affine-checkerboard"],
                                 Perturbation("log-det sign flipped", fn=flip))


def test_a_spatially_transposed_conditioner_kernel_is_caught():
    def transpose(inputs):
        return {**inputs, "weight": np.ascontiguousarray(np.swapaxes(inputs["weight"], -1, -2))}

    caught(CASES["coupling_flows/coupling_forward/affine-channel"], Perturbation("transposed kernel", inputs=transpose))


def test_a_wrong_squeeze_order_and_a_missing_logit_term_are_caught():
    import theory_jax.coupling_flows as T

    def channels_last_order(fn):  # di, dj outermost instead of the channel: another valid-looking permutation
        def wrong(x):
            b, c, h, w = x.shape
            return x.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return wrong

    caught(CASES["coupling_flows/squeeze"], Perturbation("squeeze order", fn=channels_last_order))

    def without_scale_term(fn):  # forgets log(1 - 2 alpha) in eq. 11
        return lambda x, alpha: (lambda y, ld: (y, ld - x[0].size * math.log(1 - 2 * alpha)))(*T.logit_transform(x, alpha))

    caught(CASES["coupling_flows/logit_transform"], Perturbation("missing log(1 - 2 alpha)", fn=without_scale_term))


def test_a_transposed_kernel_in_the_conditioner_module_is_caught():
    def transpose_first_kernel(params):
        kernel = params["first"]["kernel"]  # (H, W, I, O): swap the spatial axes
        return {**params, "first": {**params["first"], "kernel": np.swapaxes(kernel, 0, 1)}}

    message = caught(CASES["coupling_flows/ConvNet/checkerboard"],
                     Perturbation("transposed kernel", params=transpose_first_kernel))
    assert "output" in message


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_reaches_4_5_bits_per_dim_on_fashion_mnist(tmp_path):
    assert main(["train", "coupling_flows", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics", "--set", "model.eval_examples=2000"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["bits_per_dim"] < 4.5, metrics
    assert (tmp_path / "run/samples/samples_T0.7.png").is_file()
