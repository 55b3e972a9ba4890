"""The JAX trainer's optimizer and training state, as the flax examples keep them (``examples/vae/train.py``).

``TrainState`` holds the parameters, the optimizer's state, the EMA of the parameters and the step; its
``apply_gradients`` is the PyTorch engine's update (``engine/loop.py``): the global-norm clipping of
``torch.nn.utils.clip_grad_norm_`` (``max_norm / (norm + 1e-6)``, at most 1), AdamW with the run's betas and
decoupled weight decay on the engine's linear warmup and cosine decay (``engine.bookkeeping.lr_factor``), then the
engine's EMA. ``train_step`` is a model's step on that state: its loss, the gradient, the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from practice_torch.engine.bookkeeping import ema_decay as decay_at
from practice_torch.engine.bookkeeping import lr_factor


def lr_schedule(train) -> Callable:
    """``train.lr`` times the engine's ``lr_factor`` of the update count, in ``jnp`` for optax: linear warmup over
    ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps`` (torch's LambdaLR at the optimizer's n-th
    step)."""
    warmup, total, floor = train.warmup_steps, train.steps, train.min_lr_ratio

    def schedule(count):
        count = jnp.asarray(count, dtype=jnp.result_type(float))
        progress = jnp.clip((count - warmup) / max(1, total - warmup), 0.0, 1.0)
        cosine = floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        return train.lr * (jnp.where(count < warmup, (count + 1) / max(warmup, 1), cosine))

    return schedule


def learning_rate(train, step: int) -> float:
    """The run's learning rate at ``step``, on the host (what the engine logs): ``lr_schedule`` in Python."""
    return train.lr * lr_factor(step, train.warmup_steps, train.steps, train.min_lr_ratio)


def clip_like_torch(max_norm: float) -> optax.GradientTransformation:
    """optax transform of ``torch.nn.utils.clip_grad_norm_``: gradients times min(1, max_norm / (|g| + 1e-6)), |g|
    the global 2-norm (0: no clipping, as the engine's ``train.grad_clip = 0``)."""

    def update(updates, state, params=None):
        if not max_norm:
            return updates, state
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + 1e-6))
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def optimizer(train, betas: tuple[float, float] | None = None) -> optax.GradientTransformation:
    """The engine's optimizer: clipping, then AdamW (eps 1e-8, torch's default) on the schedule."""
    b1, b2 = betas or tuple(train.betas)
    return optax.chain(clip_like_torch(train.grad_clip),
                       optax.adamw(lr_schedule(train), b1=b1, b2=b2, eps=1e-8, weight_decay=train.weight_decay))


def player_optimizer(train, betas: tuple[float, float] | None = None) -> optax.GradientTransformation:
    """A player's optimizer: clipping, then AdamW at learning rate 1; its update is scaled by the run's learning rate
    at the run's step (``game.update``), as torch's LambdaLR is stepped once a round of the game, however many
    updates a player makes in it (AdamW's decay, lr wd p, scales with it as in torch)."""
    b1, b2 = betas or tuple(train.betas)
    return optax.chain(clip_like_torch(train.grad_clip),
                       optax.adamw(1.0, b1=b1, b2=b2, eps=1e-8, weight_decay=train.weight_decay))


def ema_decay(decay: float, updates):
    """The engine's EMA decay after ``updates`` updates, traced: ``bookkeeping.ema_decay`` with ``jnp.minimum``."""
    return decay_at(decay, updates, jnp.minimum)


def ema_update(shadow, params, decay: float, updates):
    """The engine's EMA after an update: shadow <- shadow + (1 - d) (params - shadow), d = ``ema_decay(decay,
    updates)`` (``engine/ema.py``)."""
    d = ema_decay(decay, updates)
    return jax.tree.map(lambda s, p: s + (1.0 - d) * (p - s), shadow, params)


class TrainState(struct.PyTreeNode):
    """params, the optimizer's state, the parameters' EMA (None without ``train.ema_decay``) and the optimizer steps
    taken; ``tx`` (the optimizer) and ``ema`` (the EMA's decay, 0: none) are fixed for the run."""

    params: Any
    opt_state: Any
    shadow: Any
    step: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    ema: float = struct.field(pytree_node=False, default=0.0)

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, ema: float = 0.0, step: int = 0) -> TrainState:
        return cls(params, tx.init(params), params if ema > 0 else None, jnp.asarray(step), tx, ema)

    def apply_gradients(self, grads) -> TrainState:
        """One update: the optimizer's step on ``grads``, then the EMA of the new parameters (the engine's order)."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        shadow = None if self.shadow is None else ema_update(self.shadow, params, self.ema, self.step + 1)
        return self.replace(params=params, opt_state=opt_state, shadow=shadow, step=self.step + 1)


def train_step(loss: Callable, state: TrainState, batch, noise) -> tuple[TrainState, dict]:
    """The engine's default step (``engine/loop.py``), pure: the loss of the batch and its noise, its gradient, the
    update -> (the new state, {loss, grad_norm, the loss's terms}). ``loss(params, batch, noise, step) -> (loss,
    terms)``: a model's, bound to its setup."""
    (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.params, batch, noise, state.step)
    return state.apply_gradients(grads), {"loss": value, "grad_norm": optax.tree.norm(grads), **terms}
