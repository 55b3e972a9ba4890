"""The vq_vae topic's math: negative controls of its spec cases (each harness must catch a deliberate fault on the
JAX side, docs/ARCHITECTURE.md rule 5), and the PyTorch math as a user meets it (the straight-through gradient, the
EMA step as k-means, restarts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from practice_torch.vq_vae import functions as vq
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CASES = {case.id: case for case in topics.spec_cases("vq_vae")}


# Negative controls: each harness must catch a deliberate fault. -----------------------------------
def test_argmax_instead_of_argmin_is_caught(both):
    import jax.numpy as jnp

    from theory_jax import vq_vae

    def farthest(fn):
        return lambda z, codebook: jnp.argmax(vq_vae.squared_distances(z, codebook), axis=-1)

    assert "output" in caught(CASES["vq_vae/nearest_code"], Perturbation("argmax", fn=farthest))


def test_a_distance_without_the_code_norms_is_caught(both):
    """||z||^2 - 2 z.e alone ranks codes wrongly and is no distance: the gradient case sees it."""
    def no_code_norm(fn):
        return lambda z, codebook: (z**2).sum(-1, keepdims=True) - 2.0 * z @ codebook.T

    assert "output" in caught(CASES["vq_vae/squared_distances"], Perturbation("no ||e||^2", fn=no_code_norm))


def test_a_straight_through_that_passes_no_gradient_is_caught(both):
    """z_q itself instead of z + sg(z_q - z): the same forward, so only the gradient sees it."""
    no_gradient = Perturbation("z_q for the estimator", fn=lambda fn: lambda z, z_q: z_q)
    message = caught(CASES["vq_vae/straight_through"], no_gradient)
    assert "gradient" in message and "output" not in message


def test_the_quantisation_layer_case_passes(both):
    result = run_case(CASES["vq_vae/vector_quantise"])
    assert result.passed and result.gradient.leaves, result.message()


def test_a_quantisation_layer_without_the_straight_through_is_caught(both):
    from theory_jax import vq_vae

    def plain(fn):
        def layer(z, codebook):
            z_q = vq_vae.quantise(z, codebook)[0]
            return z_q, vq_vae.codebook_loss(z, z_q), vq_vae.commitment_loss(z, z_q)
        return layer

    message = caught(CASES["vq_vae/vector_quantise"], Perturbation("no straight-through", fn=plain))
    assert "gradient" in message and "output" not in message


def test_the_codebook_and_commitment_losses_swapped_are_caught(both):
    """Stop-gradient on the wrong side: the same values, the gradients on the other parameters."""
    from theory_jax import vq_vae

    message = caught(CASES["vq_vae/codebook_loss"], Perturbation("commitment for codebook",
                                                                  fn=lambda fn: vq_vae.commitment_loss))
    assert "gradient" in message and "output" not in message


def test_the_losses_swapped_in_the_quantisation_layer_are_caught(both):
    from theory_jax import vq_vae

    def swapped(fn):
        def layer(z, codebook):
            z_q = vq_vae.quantise(z, codebook)[0]
            return vq_vae.straight_through(z, z_q), vq_vae.commitment_loss(z, z_q), vq_vae.codebook_loss(z, z_q)
        return layer

    message = caught(CASES["vq_vae/vector_quantise"], Perturbation("losses swapped", fn=swapped))
    assert "gradient" in message and "output" not in message


def test_an_ema_step_applied_twice_is_caught(both):
    def twice(fn):
        return lambda cluster_size, embed_sum, z, indices, decay: fn(*fn(cluster_size, embed_sum, z, indices, decay),
                                                                     z, indices, decay)

    assert "output" in caught(CASES["vq_vae/ema_update"], Perturbation("two EMA steps", fn=twice))


def test_a_codebook_without_laplace_smoothing_is_caught_on_lost_codes(both):
    unsmoothed = Perturbation("eps ignored", fn=lambda fn: lambda cluster_size, embed_sum, eps: fn(cluster_size,
                                                                                                  embed_sum, 0.0))
    assert "output" in caught(CASES["vq_vae/ema_codebook/lost-codes"], unsmoothed)


def test_a_perplexity_without_its_exp_is_caught(both):
    import jax.numpy as jnp

    def entropy(fn):
        return lambda counts: jnp.log(fn(counts))

    assert "output" in caught(CASES["vq_vae/perplexity/unused-codes"], Perturbation("entropy", fn=entropy))


def test_a_restart_that_keeps_the_old_ema_state_is_caught(both):
    def stale(fn):
        def restart(codebook, cluster_size, embed_sum, z, usage, threshold, choice):
            return fn(codebook, cluster_size, embed_sum, z, usage, threshold, choice)[0], cluster_size, embed_sum
        return restart

    assert "output" in caught(CASES["vq_vae/restart_dead_codes"], Perturbation("state not reset", fn=stale))


def test_a_transposed_deconv_kernel_is_caught(both):
    def transpose(params):
        kernel = params["deconvs_0"]["kernel"]  # (H, W, O, I): swap the spatial axes
        return {**params, "deconvs_0": {**params["deconvs_0"], "kernel": np.swapaxes(kernel, 0, 1)}}

    assert "output" in caught(CASES["vq_vae/grid_decoder"], Perturbation("HW swapped", params=transpose))


def test_an_encoder_head_without_its_bias_is_caught(both):
    def no_bias(params):
        return {**params, "head": {**params["head"], "bias": 0 * params["head"]["bias"]}}

    assert "output" in caught(CASES["vq_vae/grid_encoder"], Perturbation("head bias dropped", params=no_bias))


# The PyTorch math as a user meets it. -----------------------------------------------------------------
def _separated(gen: np.random.Generator, n: int, codebook: np.ndarray) -> torch.Tensor:
    from shared_specs.vq_vae import separated

    return torch.tensor(separated(gen, n, codebook))


def test_the_straight_through_gradient_reaches_the_encoder_and_the_losses_their_own_parameters():
    gen = np.random.default_rng(0)
    codebook = torch.tensor(gen.standard_normal((6, 3)), requires_grad=True)
    z = _separated(gen, 20, codebook.detach().numpy()).requires_grad_()
    z_q, indices = vq.quantise(z, codebook)
    out = vq.straight_through(z, z_q)
    torch.testing.assert_close(out, z_q)
    c = torch.randn_like(z, dtype=torch.float64)
    g_z, g_e = torch.autograd.grad(out, (z, codebook), c, allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(g_z, c)
    assert not g_e.any()
    g_e = torch.autograd.grad(vq.codebook_loss(z, z_q).sum(), codebook)[0]
    expected = torch.zeros_like(codebook).index_add_(0, indices, 2 * (z_q - z)).detach()
    torch.testing.assert_close(g_e, expected)
    g_z = torch.autograd.grad(vq.commitment_loss(z, z_q).sum(), z)[0]
    torch.testing.assert_close(g_z, 2 * (z - z_q).detach())


def test_an_ema_step_with_decay_zero_is_a_kmeans_step():
    gen = np.random.default_rng(1)
    codebook = gen.standard_normal((5, 2))
    z = _separated(gen, 200, codebook)
    indices = vq.nearest_code(z, torch.tensor(codebook))
    size, total = vq.ema_update(torch.rand(5, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64), z, indices,
                                0.0)
    book = vq.ema_codebook(size, total, 0.0)
    for k in range(5):
        rows = z[indices == k]
        if len(rows):
            torch.testing.assert_close(book[k], rows.mean(0))
    assert int(vq.code_usage(indices, 5).sum()) == 200 and vq.code_usage(indices, 5).dtype == torch.int64
    assert torch.equal(vq.code_usage(indices, 5), torch.bincount(indices, minlength=5))
    assert vq.code_usage(torch.tensor([[1, 1], [3, 1]]), 6).tolist() == [0, 3, 0, 1, 0, 0]  # unused codes count 0


def test_perplexity_counts_codes_in_use_and_restarts_replace_only_dead_codes():
    assert float(vq.perplexity(torch.full((8,), 3.0))) == pytest.approx(8.0)
    assert float(vq.perplexity(torch.tensor([0.0, 5.0, 0.0]))) == pytest.approx(1.0)
    codebook, size, total = torch.randn(4, 2), torch.rand(4), torch.randn(4, 2)
    z, usage = torch.randn(10, 2), torch.tensor([0.0, 3.0, 1.0, 8.0])
    new = vq.restart_dead_codes(codebook, size, total, z, usage, 2.0, torch.tensor([7, 1, 4, 2]))
    dead = usage < 2
    torch.testing.assert_close(new[0][dead], z[[7, 4]])
    torch.testing.assert_close(new[0][~dead], codebook[~dead])
    assert new[1][dead].eq(1).all() and torch.equal(new[1][~dead], size[~dead])
