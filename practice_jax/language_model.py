"""The character transformer trained in JAX (``python -m practice_jax train language_model``): its flax twin, the
training loss of ``training.loss`` as a pure function of (params, batch, noise, step): the next-character
cross-entropy of each window's crop at ``noise["offset"]`` (x, y: (B, 256) int, offset: (B,)), and its step. Each
function takes the ``Setup`` it trains first; ``jax_twin`` binds it once."""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from practice_jax import state
from practice_jax.twins import JaxTrainError, JaxTwin
from practice_torch.data.text import WINDOW
from theory_jax.language_model import CharTransformer, crop, cross_entropy
from theory_jax.nets.transformer import Transformer


@dataclasses.dataclass(frozen=True)
class Setup:
    """The flax ``CharTransformer`` and the context it reads."""

    twin: Any
    context: int


def loss(setup: Setup, params, batch, noise, step):
    x, y = (crop(t, noise["offset"], setup.context) for t in batch)
    nll = cross_entropy(setup.twin.apply({"params": params}, x), y)
    return nll, {"bits_per_char": nll / math.log(2)}


def train_step(setup: Setup, train_state: state.TrainState, batch, noise):
    """One AdamW step on the cross-entropy (the engine's default step) -> (the new state, the logged values)."""
    return state.train_step(partial(loss, setup), train_state, batch, noise)


def draw_noise(setup: Setup, key, n: int) -> dict:
    """Each example's crop start, (n,) int in 0..256 - context (``training.draw_noise``, with ``jax.random``)."""
    return {"offset": jax.random.randint(key, (n,), 0, WINDOW - setup.context + 1)}


def init_args(setup: Setup, batch, noise):
    return (jnp.asarray(batch[0])[:, :setup.context],)


def jax_twin(net, cfg):
    """The character transformer's ``JaxTwin`` (JaxTrainError, one line, for what its twin lacks)."""
    if net.architecture != "transformer":
        raise JaxTrainError(f"language_model with model.architecture={net.architecture} has no JAX twin network "
                            "(only the transformer has one)")
    if cfg.model.dropout:
        raise JaxTrainError(f"model.dropout={cfg.model.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    setup = Setup(CharTransformer(net.vocab_size, Transformer(**dataclasses.asdict(net.trunk.config)), net.tie),
                  net.context)
    return JaxTwin(setup.twin, partial(loss, setup), partial(train_step, setup), partial(init_args, setup),
                   partial(draw_noise, setup))
