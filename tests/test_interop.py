"""The weight converter: explicit rules, both directions, strict on names and shapes, and end to end."""

import jax
import numpy as np
import pytest
import torch

import practice_torch.vae as tv
import theory_jax.vae as jv
from project.compare import assert_trees_close, tolerance
from shared_specs.case import init_weights
from shared_specs.interop import ConversionError, flax_to_torch, torch_to_flax

CONV_VAE = {"image_shape": (1, 8, 8), "latent_dim": 4, "architecture": "conv", "channels": (4, 8), "groups": 2,
            "num_classes": 3, "likelihood": "gaussian"}


def torch_schema(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def flax_template(module, *args):
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args))["params"]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return (rng.uniform(size=(5, 1, 8, 8)).astype("float32"), rng.standard_normal((5, 4)).astype("float32"),
            rng.integers(0, 3, 5))


def test_round_trip_is_exact(both, batch):
    x, eps, y = batch
    schema = torch_schema(tv.VAE(**CONV_VAE))
    weights = init_weights(schema, np.random.default_rng(1))
    template = flax_template(jv.VAE(**CONV_VAE), x.transpose(0, 2, 3, 1), eps, y)
    back = flax_to_torch(torch_to_flax(weights, template), schema)
    assert_trees_close(back, weights, tolerance("function", "float32"))
    assert all(np.array_equal(back[k], weights[k]) for k in weights)


def test_rules_are_explicit(both):
    """Linear transposed, Conv OIHW -> HWIO, norm weight -> scale, bare parameters unchanged."""
    params = torch_to_flax({"lin.weight": np.arange(6.0).reshape(2, 3), "lin.bias": np.zeros(2),
                            "norm.weight": np.ones(4), "conv.weight": np.zeros((5, 4, 3, 2)), "log_sigma": np.ones(1)},
                           {"lin": {"kernel": (3, 2), "bias": (2,)}, "norm": {"scale": (4,)},
                            "conv": {"kernel": (3, 2, 4, 5)}, "log_sigma": (1,)})
    assert np.array_equal(params["lin"]["kernel"], np.arange(6.0).reshape(2, 3).T)
    assert params["conv"]["kernel"].shape == (3, 2, 4, 5) and "scale" in params["norm"]


def test_unknown_name_raises(both):
    with pytest.raises(ConversionError, match="'encoder.extra.weight'"):
        torch_to_flax({"encoder.extra.weight": np.zeros((2, 2))}, {"encoder": {"mean": {"kernel": (2, 2)}}})


def test_shape_mismatch_raises_naming_both_sides():
    with pytest.raises(ConversionError, match=r"'fc.weight' \(3, 2\).*template has \(3, 3\)"):
        torch_to_flax({"fc.weight": np.zeros((3, 2)), "fc.bias": np.zeros(3)}, {"fc": {"kernel": (3, 3), "bias": (3,)}})


def test_unfilled_template_raises():
    with pytest.raises(ConversionError, match="no torch tensor: fc/bias"):
        torch_to_flax({"fc.weight": np.zeros((3, 2))}, {"fc": {"kernel": (2, 3), "bias": (3,)}})


def test_reverse_direction_is_strict_too():
    with pytest.raises(ConversionError, match="no torch counterpart: extra/kernel"):
        flax_to_torch({"fc": {"kernel": np.zeros((2, 3))}, "extra": {"kernel": np.zeros((2, 2))}}, {"fc.weight": (3, 2)})
    with pytest.raises(ConversionError, match="template has"):
        flax_to_torch({"fc": {"kernel": np.zeros((2, 3))}}, {"fc.weight": (2, 3)})


@pytest.mark.parametrize("config", [CONV_VAE, {"image_shape": (1, 8, 8), "latent_dim": 4, "hidden": (16,)}],
                         ids=["conv-gaussian-conditional", "mlp-bernoulli"])
def test_torch_vae_into_jax_and_back_gives_the_same_elbo(both, batch, config):
    """Item 7: a PyTorch VAE's weights moved into the JAX twin give the same ELBO on a batch, and back."""
    x, eps, y = batch
    y = y if config.get("num_classes") else None
    torch.manual_seed(0)
    tmodel = tv.VAE(**config)  # torch's own initialisation: whatever a trained model would hold
    jmodel = jv.VAE(**config)
    x_nhwc = x.transpose(0, 2, 3, 1)
    loglik = tolerance("loglik", "float32")

    state = {k: v.numpy() for k, v in tmodel.state_dict().items()}
    params = torch_to_flax(state, flax_template(jmodel, x_nhwc, eps, y))
    with torch.no_grad():
        elbo_torch = tmodel.elbo(torch.from_numpy(x), torch.from_numpy(eps), None if y is None else torch.from_numpy(y))
    elbo = jax.jit(lambda p: jmodel.apply({"params": p}, x_nhwc, eps, y, method=jv.VAE.elbo))  # one program
    assert_trees_close(np.asarray(elbo(params)), elbo_torch.numpy(), loglik)

    # and back: flax's own initialisation, loaded into torch
    jparams = jax.jit(jmodel.init)(jax.random.key(3), x_nhwc, eps, y)["params"]
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in
                            flax_to_torch(jax.tree.map(np.array, jparams), torch_schema(tmodel)).items()})
    with torch.no_grad():
        elbo_torch = tmodel.elbo(torch.from_numpy(x), torch.from_numpy(eps), None if y is None else torch.from_numpy(y))
    assert_trees_close(elbo_torch.numpy(), np.asarray(elbo(jparams)), loglik)


def test_batch_norm_buffers_go_to_batch_stats_and_the_batch_count_is_dropped(both):
    """BatchNorm's running mean and variance cross to flax's ``batch_stats`` (same module path, flax's leaf names);
    torch's ``num_batches_tracked`` has no counterpart; the parameters are left to the layer rules."""
    from shared_specs.interop import split_statistics

    state = {"norm.weight": np.ones(3), "norm.bias": np.zeros(3), "norm.running_mean": np.arange(3.0),
             "norm.running_var": np.full(3, 2.0), "norm.num_batches_tracked": np.array(7)}
    params, stats = split_statistics(state)
    assert sorted(params) == ["norm.bias", "norm.weight"]
    assert sorted(stats) == ["norm.mean", "norm.var"]
    flax_stats = torch_to_flax(stats, {"norm": {"mean": (3,), "var": (3,)}})
    np.testing.assert_array_equal(flax_stats["norm"]["mean"], np.arange(3.0))
    np.testing.assert_array_equal(flax_stats["norm"]["var"], np.full(3, 2.0))
    with pytest.raises(ConversionError, match="norm.running_mean"):  # unsplit, a buffer has no parameter to go to
        torch_to_flax(state, {"norm": {"scale": (3,), "bias": (3,)}})


def test_a_parametrized_weight_crosses_as_the_weight_and_its_vectors_as_batch_stats():
    """A spectrally normalised layer (``torch.nn.utils.parametrize``): ``parametrizations.weight.original`` is the
    flax kernel, the parametrization's u and v buffers the layer's ``batch_stats`` entries; and back, by name."""
    from practice_torch.gan.networks import spectral_norm_layers
    from shared_specs.interop import split_statistics, statistic_name

    state = {k: v.numpy() for k, v in spectral_norm_layers(torch.nn.Sequential(torch.nn.Linear(3, 2))).state_dict()
             .items()}
    params, stats = split_statistics({f"fc.{k[2:]}": v for k, v in state.items()})  # "0." -> "fc."
    assert sorted(params) == ["fc.bias", "fc.parametrizations.weight.original"]
    assert sorted(stats) == ["fc.u", "fc.v"] and statistic_name("fc.parametrizations.weight.original") is None
    flax = torch_to_flax(params, {"fc": {"kernel": (3, 2), "bias": (2,)}})
    np.testing.assert_array_equal(flax["fc"]["kernel"], state["0.parametrizations.weight.original"].T)
    np.testing.assert_array_equal(torch_to_flax(stats, {"fc": {"u": (2,), "v": (3,)}})["fc"]["v"],
                                  state["0.parametrizations.weight.0.v"])
    back = flax_to_torch(flax, {k: v.shape for k, v in params.items()})
    np.testing.assert_array_equal(back["fc.parametrizations.weight.original"], state["0.parametrizations.weight.original"])
    with pytest.raises(ConversionError, match="fc.parametrizations.weight.0.u"):  # a buffer is not a parameter
        torch_to_flax({**params, "fc.parametrizations.weight.0.u": stats["fc.u"]}, {"fc": {"kernel": (3, 2),
                                                                                            "bias": (2,)}})
