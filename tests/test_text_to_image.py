"""Text guidance's math (``practice_torch.text_to_image`` and its JAX twin, run in full by tests/test_specs.py):
negative controls on its spec cases: a mask that lets padding through, guidance with its branches swapped."""

from __future__ import annotations

import numpy as np

from shared_specs.runner import Perturbation, caught, run_case
from shared_specs.text_to_image import CASES

BY_ID = {case.id: case for case in CASES}


def test_a_mask_that_lets_the_padding_through_is_caught(both):
    case = BY_ID["text_to_image/cross_attention"]
    assert run_case(case).passed
    leak = Perturbation("padding let through", inputs=lambda d: {**d, "mask": np.ones_like(d["mask"])})
    message = caught(case, leak)
    assert "output" in message and "reference" in message  # the JAX side alone now averages over the padding


def test_guidance_with_the_branches_swapped_is_caught(both):
    import theory_jax.text_to_image as T

    def swapped(fn):
        return lambda eps_cond, eps_uncond, w: T.guided_eps(eps_uncond, eps_cond, w)

    assert "output" in caught(BY_ID["text_to_image/guided_eps"], Perturbation("branches swapped", fn=swapped))
