"""PixelCNN: negative controls of its specs (a type-B mask where type A is needed), causality of the torch networks
by autograd (and its control: an all-B stack leaks), the torch networks against their JAX twins on the same weights
(outputs and gradients w.r.t. every weight, float64),
the cropped sampler against the full-image one, and the training interface through the engine (binarised, 8-bit,
conditional). The quick preset on 8-bit Fashion-MNIST is a slow test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from practice_torch import pixelcnn as pc
from practice_torch.data import DatasetMissing, get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import new_trainer
from practice_torch.pixelcnn import training as pc_training
from shared_specs.pixelcnn import CASES, ref_causal_mask
from shared_specs.runner import Perturbation, caught

BY_ID = {c.id: c for c in CASES}
DIGITS = get_info("digits")
# A net that trains in a second: the engine tests here and test_distributed's.
TINY = ["model.channels=8", "model.layers=2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# Negative controls: a wrong JAX twin must be caught. ---------------------------------------------------------------
def test_a_type_b_mask_where_type_a_is_needed_is_caught(both):
    wrong = Perturbation("mask B for A", inputs=lambda d: {**d, "mask": ref_causal_mask(3, "B")})
    assert "max |a-b|" in caught(BY_ID["pixelcnn/masked_conv2d_A"], wrong)
    swapped = Perturbation("type B", fn=lambda f: lambda **kw: f(**{**kw, "mask_type": "B"}))
    caught(BY_ID["pixelcnn/causal_mask_A"], swapped)


def test_the_flax_twins_are_caught_with_type_b_masks_or_a_swapped_condition(both, monkeypatch):
    """The module cases (torch networks vs their flax twins under the converter) fail when the flax first layer sees
    its own pixel, or when the gated layer adds the horizontal stack's label embedding to the vertical stack."""
    import theory_jax.pixelcnn as jax_pixelcnn

    def halves_swapped(params):
        table = params["layers_1"]["condition"]["embedding"]
        half = table.shape[-1] // 2
        swapped = np.concatenate([table[:, half:], table[:, :half]], axis=-1)
        return {**params, "layers_1": {**params["layers_1"], "condition": {"embedding": swapped}}}

    assert "output" in caught(BY_ID["pixelcnn/GatedPixelCNN"], Perturbation("c_v <-> c_h", params=halves_swapped))
    causal, stack = jax_pixelcnn._causal_keep, jax_pixelcnn._stack_keep
    monkeypatch.setattr(jax_pixelcnn, "_causal_keep", lambda k, mask_type: causal(k, "B"))
    monkeypatch.setattr(jax_pixelcnn, "_stack_keep", lambda k, stack_name, mask_type: stack(k, stack_name, "B"))
    for case in ("pixelcnn/PlainPixelCNN", "pixelcnn/GatedPixelCNN"):
        assert "output" in caught(BY_ID[case], Perturbation("type B first layer"))


def test_a_shifted_uniform_is_caught(both):
    caught(BY_ID["pixelcnn/sample_pixel"], Perturbation("other u", inputs=lambda d: {**d, "u": (d["u"] + 0.3) % 1}))


# Causality of the torch networks -----------------------------------------------------------------------------------
def jacobian(net: torch.nn.Module, size: int = 6) -> torch.Tensor:
    """|d logits_i / d x_j| summed over channels: (size^2, size^2) in raster order."""
    x = torch.rand(1, 1, size, size, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda x: net(x), x)  # (1, K, H, W, 1, 1, H, W)
    return jac.abs().sum(dim=(0, 1, 4, 5)).reshape(size * size, size * size)


@pytest.mark.parametrize("cls", [pc.GatedPixelCNN, pc.PlainPixelCNN])
def test_every_output_ignores_its_own_and_later_pixels(cls):
    torch.manual_seed(0)
    net = cls(4, 3, 3, 5).double()
    jac = jacobian(net)
    assert jac.triu().abs().max() == 0, "output i depends on some x_j with j >= i"
    assert jac.tril(-1).sum() > 0


def test_the_control_an_all_b_stack_sees_its_own_pixel():
    torch.manual_seed(0)
    net = pc.PlainPixelCNN(4, 3, 3, 5).double()
    for conv in net.convs:
        conv.mask = pc.causal_mask(3, "B").float()
    assert jacobian(net).diagonal().min() > 0


# The torch networks are the JAX functions ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gated", "plain"])
def test_the_torch_networks_match_their_jax_twins(name, both):
    import jax
    import jax.numpy as jnp

    from theory_jax import pixelcnn as tj

    torch.manual_seed(1)
    cls, fn = {"gated": (pc.GatedPixelCNN, tj.gated_pixelcnn), "plain": (pc.PlainPixelCNN, tj.plain_pixelcnn)}[name]
    net = cls(4, 3, 3, 7, first_kernel=5).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, 0, 0.5)
    x = torch.rand(2, 1, 6, 5, dtype=torch.float64)
    params = {k: jnp.asarray(v.numpy()) for k, v in net.state_dict().items()}
    out = net(x)
    got = np.asarray(fn(params, jnp.asarray(x.numpy()), 3))
    np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert out.std() > 0.1
    cot = torch.randn_like(out)
    grads = torch.autograd.grad((out * cot).sum(), list(net.parameters()))
    jax_grads = jax.jit(jax.grad(lambda p: jnp.sum(fn(p, jnp.asarray(x.numpy()), 3) * jnp.asarray(cot.numpy()))))(params)
    for (name, _), g in zip(net.named_parameters(), grads):
        np.testing.assert_allclose(np.asarray(jax_grads[name]), g.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


# Sampling ----------------------------------------------------------------------------------------------------------
def test_the_cropped_sampler_draws_what_the_full_image_sampler_draws():
    torch.manual_seed(0)
    net = pc_training.build(pc_training.Config(channels=8, layers=3, categories=4), DIGITS)
    u = torch.rand(3, 8, 8, dtype=torch.float64)
    fast = pc_training.generate(net, u)
    full = torch.zeros(3, 8, 8, dtype=torch.long)
    with torch.no_grad():
        for r in range(8):
            for c in range(8):
                full[:, r, c] = pc.sample_pixel(net(full)[:, :, r, c], u[:, r, c].float())
    assert torch.equal(fast, full) and fast.unique().numel() > 1


def test_the_bernoulli_model_is_the_two_way_softmax():
    torch.manual_seed(0)
    net = pc_training.build(pc_training.Config(channels=8, layers=2, categories=2), DIGITS)
    q = net.quantise(torch.rand(4, 1, 8, 8))
    logits = net(q)
    two_way = torch.stack([torch.zeros_like(logits), logits], dim=1)
    torch.testing.assert_close(net.log_prob(q), pc.categorical_log_likelihood(two_way, q))
    assert set(q.unique().tolist()) <= {0, 1}


def test_the_registry_serves_pixelcnn():
    from practice_torch import models

    assert models.get_model("pixelcnn") is pc_training and all(hasattr(pc_training, name) for name in models.INTERFACE)


def test_build_rejects_what_it_cannot_model():
    with pytest.raises(ValueError, match=r"\(1, H, W\) grey images"):
        pc_training.build(pc_training.Config(), get_info("moons"))
    with pytest.raises(ValueError, match="first_kernel odd"):
        pc_training.build(pc_training.Config(kernel=4), DIGITS)
    with pytest.raises(ValueError, match="first_kernel odd"):
        pc_training.build(pc_training.Config(first_kernel=6), DIGITS)
    with pytest.raises(ValueError, match="categories must be >= 2"):
        pc_training.build(pc_training.Config(categories=1), DIGITS)
    with pytest.raises(ConfigError, match="unknown preset"):
        pc_training.default_config("huge")


# Through the engine ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [["model.categories=2"], ["model.categories=256", "model.conditional=true"],
                                     ["model.architecture=plain", "model.categories=16"],
                                     ["model.categories=256", "train.precision=bf16"]])  # the full preset's autocast
def test_train_sample_and_evaluate_through_the_engine(variant, tmp_path):
    cfg = apply_overrides(pc_training.default_config("quick", "digits"), [
        *TINY, "train.batch_size=16", "train.steps=6", "train.log_every=2",
        "train.warmup_steps=1", "train.samples=4", "model.eval_images=50", *variant])
    outcome = new_trainer(cfg, tmp_path / "run").run()
    records = read_metrics(tmp_path / "run")
    assert len(records) == 3 and records[-1]["loss"] < records[0]["loss"], records
    assert {"samples.png", "completions.png"} <= {p.name for p in outcome.files}
    from practice_torch.models import open_run

    net = open_run(tmp_path / "run", torch.device("cpu"))[2]
    metrics = pc_training.evaluate(net, cfg.model, DIGITS.load("test"), torch.Generator())
    assert metrics["images"] == 50 and metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / 64 / np.log(2))
    x, y = DIGITS.load("test")[:50]
    with torch.no_grad():
        nll = -net.log_prob(net.quantise(x), y if cfg.model.conditional else None).mean().item()
    assert metrics["nll_nats"] == pytest.approx(nll, rel=1e-5) and nll > 0


@pytest.mark.slow
def test_the_quick_preset_reports_test_bits_per_dim_on_8_bit_fashion_mnist(tmp_path):
    from practice_torch.cli import main

    try:
        get_info("fashion_mnist").load("test", limit=1)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    assert main(["train", "pixelcnn", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["bits_per_dim"] < 5.0, metrics
