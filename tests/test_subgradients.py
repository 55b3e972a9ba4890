"""The JAX twins' kinks take torch's subgradients (theory_jax/subgradients.py): values and slopes equal to
torch.clamp's, torch.abs's and F.leaky_relu's on inputs placed on every tie, where jax.numpy's own functions differ
(the negative control: without these, the twins' gradients disagree exactly there)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from theory_jax import subgradients as S

pytestmark = pytest.mark.usefixtures("both")  # float64 in both backends

X = np.array([-1.5, -0.5, -0.2, 0.0, 0.2, 0.5, 1.5])  # 0, -0.5 and 0.5 are the ties below


def slopes_jax(fn):
    """d fn(x_i) / d x_i for every entry (fn elementwise)."""
    return np.asarray(jax.grad(lambda x: jnp.sum(fn(x)))(jnp.asarray(X)))


def slopes_torch(fn):
    x = torch.tensor(X, requires_grad=True)
    fn(x).sum().backward()
    return x.grad.numpy()


CONVENTIONS = {  # name: (ours, jax.numpy's, torch's)
    "clamp": (lambda x: S.clamp(x, -0.5, 0.5), lambda x: jnp.clip(x, -0.5, 0.5), lambda x: torch.clamp(x, -0.5, 0.5)),
    "clamp_min": (lambda x: S.clamp(x, 0.0), lambda x: jnp.maximum(x, 0.0), lambda x: x.clamp_min(0.0)),
    "abs": (S.absolute, jnp.abs, torch.abs),
    "leaky_relu": (lambda x: S.leaky_relu(x, 0.2), lambda x: jax.nn.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2)),
}


@pytest.mark.parametrize("name", CONVENTIONS)
def test_torchs_slope_on_the_ties(name):
    ours, jax_numpy, torchs = CONVENTIONS[name]
    assert np.array_equal(np.asarray(ours(jnp.asarray(X))), torchs(torch.tensor(X)).numpy())
    assert np.array_equal(slopes_jax(ours), slopes_torch(torchs))
    assert not np.array_equal(slopes_jax(jax_numpy), slopes_torch(torchs))  # what the twins used to disagree on


def test_the_slopes_off_the_ties_are_the_derivative():
    away = jnp.asarray([-1.5, -0.2, 0.2, 1.5])
    for fn, slopes in ((lambda x: S.clamp(x, -0.5, 0.5), [0, 1, 1, 0]), (S.absolute, [-1, -1, 1, 1]),
                       (lambda x: S.leaky_relu(x, 0.2), [0.2, 0.2, 1, 1])):
        assert np.array_equal(np.asarray(jax.vmap(jax.grad(fn))(away)), np.array(slopes, dtype=np.float64))


def test_absolute_has_second_derivative_zero():
    """custom_jvp's rule sign(x) dx differentiates again to 0 (away from 0), as |x|'' does."""
    assert float(jax.grad(jax.grad(S.absolute))(0.7)) == 0.0
