"""StyleGAN2's spec cases catch the mistakes its math invites: demodulation without its eps or over the wrong axes
(in the function and inside a synthesis layer), a mixing cut-off off by one, and a path-length penalty whose running
mean is never updated. Each control first runs the case unperturbed (it must pass), then with the fault planted in
the JAX side (it must fail, on the check named)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import theory_jax.stylegan as T
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {case.id: case for case in topics.spec_cases("stylegan")}


def _caught(case_id: str, perturbation: Perturbation) -> str:
    """The failure message of the case under the fault, after checking that the case passes without it."""
    case = CASES[case_id]
    assert run_case(case).passed, f"{case_id} fails unperturbed: the control would prove nothing"
    return caught(case, perturbation)


def _demodulate_without_eps(weight, eps=1e-8):
    return weight * jax.lax.rsqrt(jnp.sum(weight**2, axis=(2, 3, 4), keepdims=True))


def _demodulate_over_output_channels(weight, eps=1e-8):
    """The norm over (O, k, k) for each input channel, not over (I, k, k) for each output channel."""
    return weight * jax.lax.rsqrt(jnp.sum(weight**2, axis=(1, 3, 4), keepdims=True) + eps)


def test_demodulation_without_its_eps_is_caught(both):
    """Kernels of scale 1e-4 (sum w'^2 ~ 4e-7) make eq. 3's eps move each output channel by ~1%."""
    message = _caught("stylegan/demodulate/small_weights",
                      Perturbation("no eps", fn=lambda fn: _demodulate_without_eps))
    assert "output" in message


def test_demodulation_over_the_wrong_axes_is_caught(both):
    assert "output" in _caught("stylegan/demodulate",
                               Perturbation("norm over output channels", fn=lambda fn: _demodulate_over_output_channels))


def test_demodulation_over_the_wrong_axes_inside_a_synthesis_layer_is_caught(both, monkeypatch):
    """The same fault planted where the flax ``SynthesisLayer`` reaches it (``modulated_conv2d``'s ``_demodulate``):
    the network's case, under the converter, catches it too."""
    case = CASES["stylegan/synthesis_layer"]
    assert run_case(case).passed
    monkeypatch.setattr(T, "_demodulate", _demodulate_over_output_channels)
    result = run_case(case)
    assert not result.passed and "output" in result.message()


def test_a_mixing_cutoff_off_by_one_is_caught(both):
    def off_by_one(fn):
        def mixing(w1, w2, cutoff, num_ws):
            first = (jnp.arange(num_ws)[None, :] <= cutoff[:, None])[..., None]  # l <= cutoff: one layer too many
            return jnp.where(first, w1[:, None, :], w2[:, None, :])
        return mixing

    assert "output" in _caught("stylegan/mixing_ws", Perturbation("l <= cutoff", fn=off_by_one))


def test_a_path_length_penalty_whose_running_mean_is_not_updated_is_caught(both):
    def frozen(fn):
        def penalty(lengths, pl_mean, decay=0.01):
            return jnp.mean((lengths - pl_mean) ** 2), pl_mean  # a never moves from its first value
        return penalty

    assert "output" in _caught("stylegan/path_length_penalty", Perturbation("pl_mean not updated", fn=frozen))


@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_the_flax_generator_truncates_toward_its_w_avg(psi):
    """The flax ``Generator.ws``: psi 1 leaves every layer's w = mapping(z); psi < 1 shrinks it toward the mapping's
    ``w_avg`` (its ``batch_stats``), which the torch buffer crosses into. Control: another w_avg moves the styles."""
    import numpy as np

    gen = T.Generator(z_dim=4, w_dim=4, mapping_layers=1, img_shape=(1, 8, 8), channels=(2, 2), base=4)
    z = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), dtype=jnp.float32)
    variables = gen.init(jax.random.key(0), z, method=T.Generator.ws)
    w_avg = jnp.full((4,), 0.25, jnp.float32)
    variables = {**variables, "batch_stats": {"mapping": {"w_avg": w_avg}}}
    w = gen.apply(variables, z, method=lambda m, z: m.mapping(z))
    ws = gen.apply(variables, z, psi=psi, method=T.Generator.ws)
    assert ws.shape == (3, 4, 4)
    np.testing.assert_allclose(ws, np.broadcast_to((w_avg + psi * (w - w_avg))[:, None], ws.shape), rtol=1e-6)
    moved = {**variables, "batch_stats": {"mapping": {"w_avg": -w_avg}}}
    assert (psi == 1) == bool(np.allclose(gen.apply(moved, z, psi=psi, method=T.Generator.ws), ws))
