"""The SSM's functions: both backends agree, and the conventions' slips (B by zero-order hold where Mamba uses Euler,
a kernel off by one step, a scan that drops its carry) are caught."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import practice_torch.ssm as SSM
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("ssm")}


def test_b_by_zero_order_hold_where_the_convention_says_euler_is_caught(both):
    def zoh_b(fn):
        def scan(u, delta, a, b, c):
            def step(x, inputs):
                u_t, d_t, b_t, c_t = inputs
                a_bar = jnp.exp(d_t[:, None] * a)
                x = a_bar * x + ((a_bar - 1) / a * b_t[None, :]) * u_t[:, None]
                return x, x @ c_t
            return jax.lax.scan(step, jnp.zeros(a.shape, u.dtype), (u, delta, b, c))[1]
        return scan

    caught(CASES["ssm/selective_scan"], Perturbation("B by ZOH", fn=zoh_b))


def test_a_scan_that_drops_its_carry_is_caught(both):
    def no_carry(fn):
        return lambda u, delta, a, b, c: jnp.einsum(
            "ldn,ln->ld", delta[:, :, None] * b[:, None, :] * u[:, :, None], c)  # x_t = Bbar_t u_t only

    caught(CASES["ssm/selective_scan"], Perturbation("no carry", fn=no_carry))


def test_the_torch_parallel_scan_equals_its_loop_at_every_length():
    rng = np.random.default_rng(0)
    for length in (1, 2, 3, 7, 16, 33):
        args = [torch.tensor(v) for v in (rng.standard_normal((length, 2)), np.log1p(np.exp(rng.standard_normal(
            (length, 2)))), -np.exp(rng.standard_normal((2, 3))), rng.standard_normal((length, 3)),
            rng.standard_normal((length, 3)))]
        assert torch.allclose(SSM.selective_scan(*args), SSM.selective_scan_sequential(*args), rtol=1e-12, atol=1e-12)


def test_s4d_inv_with_half_the_state_size_is_caught(both):
    """S4D-Inv's law with N/2 where the paper and the authors' code put N (the bug both backends once shared): a
    duplicated spectrum, half of it negative. The spec's reference is the law with N the real state size."""
    def half_n(fn):
        def law(state, init):
            n, half = jnp.arange(state // 2, dtype=jnp.float32), state // 2
            return half / jnp.pi * (half / (2 * n + 1) - 1)
        return law

    assert "reference" in caught(CASES["ssm/s4d_imag_init/inv"], Perturbation("N/2 for N", fn=half_n))


def test_s4d_inv_starts_with_positive_frequencies_in_both_backends():
    import theory_jax.ssm as T

    for net in (SSM.S4D(2, 64, imag_init="inv"), SSM.S4D(2, 8, imag_init="inv")):
        assert net.A_im.shape == (2, net.half) and bool(torch.all(net.A_im > 0))
    torch_inv = SSM.s4d_imag_init(64, "inv")
    assert torch_inv[0].item() == pytest.approx(64 / math.pi * 63, rel=1e-6)  # n = 0: N/pi (N - 1), 1283.4
    assert np.array_equal(np.asarray(T.s4d_imag_init(64, "inv")), torch_inv.numpy())
