"""Every spec case of every topic passes, and the runner catches deliberate faults (rule 5)."""

from __future__ import annotations

import numpy as np
import pytest

from project import catalogue
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

ALL_CASES = [case for t in catalogue.TOPICS for case in topics.spec_cases(t.name)]
BY_ID = {case.id: case for case in ALL_CASES}


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_case_passes(case, both):
    result = run_case(case)
    assert result.passed, result.message()
    if case.kind == "module" or (case.kind == "function" and case.grad_wrt):
        assert result.gradient is not None and result.gradient.leaves, "gradients were not compared"


def test_case_ids_are_unique():
    assert len(BY_ID) == len(ALL_CASES)


def _fails(case_id: str, perturbation: Perturbation) -> str:
    return caught(BY_ID[case_id], perturbation)


# Negative controls: each deliberate fault on the JAX side must be caught and named. -------------
def test_transposed_conv_kernel_is_caught(both):
    def transpose_first_kernel(params):
        kernel = params["convs_0"]["kernel"]  # (H, W, I, O): swap the spatial axes
        return {**params, "convs_0": {**params["convs_0"], "kernel": np.swapaxes(kernel, 0, 1)}}

    message = _fails("vae/conv_encoder", Perturbation("transposed kernel", params=transpose_first_kernel))
    assert "max |a-b|" in message


def test_untransposed_linear_kernel_is_caught(both):
    """A Linear weight loaded without the (out, in) -> (in, out) transpose, on a square layer."""
    from shared_specs.case import ModuleCase

    square = ModuleCase("vae/mlp_encoder/square", "MLPEncoder",
                        {"image_shape": (1, 4, 4), "latent_dim": 3, "hidden": (16, 16)},
                        lambda r: {"x": r.uniform(size=(2, 1, 4, 4)).astype("float32")}, image_inputs=("x",))
    assert run_case(square).passed

    def forget_transpose(params):
        return {**params, "layers_1": {**params["layers_1"], "kernel": params["layers_1"]["kernel"].T}}

    message = run_case(square, Perturbation("forgotten transpose", params=forget_transpose)).message()
    assert "layers" in message or "output" in message


def test_flipped_sign_is_caught(both):
    def flip(fn):
        return lambda **kw: -fn(**kw)

    _fails("elbo/gaussian_kl", Perturbation("flipped sign", fn=flip))


def test_flipped_sign_of_one_term_is_caught(both):
    """The KL entering with the wrong sign: ELBO = recon + KL instead of recon - KL."""
    import theory_jax.elbo as E

    def wrong_elbo(fn):
        def f(x, weight, bias, sigma, mean, scale_tril):
            # ELBO = log p(x) - KL(q || p(z|x)); flip the KL's sign
            post = E.linear_gaussian_posterior(x, weight, bias, sigma)
            return E.linear_gaussian_evidence(x, weight, bias, sigma) + E.mvn_kl(mean, scale_tril, *post)
        return f

    _fails("elbo/linear_gaussian_elbo", Perturbation("KL sign flipped", fn=wrong_elbo))


def test_different_noise_is_caught_in_a_module(both):
    def other_eps(inputs):
        return {**inputs, "eps": np.random.default_rng(123).standard_normal(inputs["eps"].shape).astype("float32")}

    message = _fails("vae/vae_elbo/mlp-bernoulli", Perturbation("different noise", inputs=other_eps))
    assert "output" in message


def test_different_noise_is_caught_in_a_training_step(both):
    def other_eps(inputs):
        return {**inputs, "eps": inputs["eps"][::-1].copy()}

    message = _fails("vae/adam_steps/mlp", Perturbation("different noise", inputs=other_eps))
    assert "decoder" in message or "encoder" in message  # the failing weight is named


def test_different_noise_is_caught_in_a_function(both):
    _fails("vae/reparameterize", Perturbation("different noise", inputs=lambda d: {**d, "eps": d["eps"] + 1e-3}))


def test_a_crashing_backend_is_a_failure_not_an_exception(both):
    def boom(fn):
        def f(**kw):
            raise RuntimeError("boom")
        return f

    result = run_case(BY_ID["elbo/gaussian_kl"], Perturbation("crash", fn=boom))
    assert not result.passed and "RuntimeError: boom" in result.message()
