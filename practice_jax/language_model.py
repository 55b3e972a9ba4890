"""The character transformer trained in JAX: ``jax_twin``, what ``practice_jax/loop.py`` trains (``python -m
practice_jax train language_model``)."""

from __future__ import annotations

import dataclasses
import math


def jax_twin(net, cfg):
    """The character transformer trained in JAX (``python -m practice_jax train language_model``): its flax twin, and
    the training loss of ``training.loss`` as a pure function (params, batch, noise, step) -> (loss, terms): the
    next-character cross-entropy of each window's crop at ``noise["offset"]``. x, y: (B, 256) int, offset: (B,)."""
    import jax.numpy as jnp

    from practice_jax.loop import JaxTrainError, JaxTwin
    from theory_jax.language_model import CharTransformer, crop, cross_entropy
    from theory_jax.nets.transformer import Transformer

    if net.architecture != "transformer":
        raise JaxTrainError(f"language_model with model.architecture={net.architecture} has no JAX twin network "
                            "(only the transformer has one)")
    if cfg.model.dropout:
        raise JaxTrainError(f"model.dropout={cfg.model.dropout}: the JAX trainer draws no dropout masks (set it to 0)")
    twin = CharTransformer(net.vocab_size, Transformer(**dataclasses.asdict(net.trunk.config)), net.tie)

    def loss(params, batch, noise, step):
        x, y = (crop(t, noise["offset"], net.context) for t in batch)
        nll = cross_entropy(twin.apply({"params": params}, x), y)
        return nll, {"bits_per_char": nll / math.log(2)}

    return JaxTwin(twin, loss, lambda batch, noise: (jnp.asarray(batch[0])[:, :net.context],))
