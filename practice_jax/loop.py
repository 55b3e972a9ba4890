"""Training in JAX: ``python -m practice_jax train MODEL [--dataset D] [--preset quick] [--steps N] [--set KEY=VALUE]
[--out RUN] [--devices N]``, or ``python -m practice_jax train MODEL --resume RUN [--steps N]``.

The same model as ``python -m practice_torch train MODEL``, trained the functional way: the flax twin of the
network (``practice_jax/<model>.py``: ``jax_twin(net, cfg)``), optax, and one ``jax.jit``-compiled step

    step(params, opt_state, batch, noise, step) -> (params, opt_state, logged terms)

that is the PyTorch engine's default step written as a pure function: the loss, its gradient, the global-norm
clipping of ``torch.nn.utils.clip_grad_norm_`` (``max_norm / (norm + 1e-6)``, at most 1), AdamW with the run's
betas and decoupled weight decay, the engine's linear warmup and cosine decay (``engine.loop.lr_factor``) and,
with ``train.ema_decay``, the engine's EMA after the update. Everything around the step is the engine's, so that
a JAX run is a run:

* the config is the PyTorch preset's (``default_config``, ``--set``), written to ``config.json``;
* the initial weights are the PyTorch network's, built with the run's seed and converted with
  ``shared_specs.interop.torch_to_flax``; the batches are the engine's (``GlobalBatches``: the same order from the
  same seed) and the noise its ``draw_noise`` from the same generator, handed to JAX as NumPy arrays (images
  channels last);
* ``metrics.jsonl``, TensorBoard events and ``loss.png`` as the engine writes them, progress in a log;
* checkpoints in the PyTorch layout (``flax_to_torch``, safetensors), with AdamW's moments and the schedule in
  torch's format, so ``practice_torch sample``, ``eval``, ``train --resume`` and ``theory_jax check`` read the run
  unchanged; the samples at the end are the run's PyTorch sampler's, drawn from the JAX-trained weights;
* ``--devices N`` (default: every local JAX device) trains data-parallel: each batch split along its examples over a
  mesh of N devices, the parameters and optimizer state replicated, the gradient averaged by the compiled step as
  DDP averages it (``data_mesh``); on one device nothing changes;
* ``--resume RUN`` continues a run, JAX's or PyTorch's, from its newest checkpoint (weights, AdamW's moments, the
  schedule, the EMA, the batch order and the noise generator), exactly where an uninterrupted JAX run would be;
  SIGINT or SIGTERM finishes the step, writes a checkpoint and exits with 128 + the signal number.

A model whose step is more than one loss (the GAN) gives a ``JaxGame`` instead: its players and its
``train_step``, written top to bottom on ``JaxGameRun``'s ``next_batch`` and ``update`` as its PyTorch step is on
the engine's ``StepRun`` (one AdamW per player, the learning rate of the run's step, the players' optimizers in the
checkpoint as the engine writes them).

Supported models: ``TRAINERS``. Bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from practice_torch.engine.bookkeeping import StopOnSignals, is_checkpoint_step, is_log_step, validation_start

# the models with a practice_jax/<model>.py (jax_twin)
TRAINERS = ("vae", "gan", "ddpm", "language_model", "flow_matching", "cnf")


@dataclass(frozen=True)
class JaxTwin:
    """A model's training in JAX: its flax ``module``; ``loss(params, batch, noise, step) -> (loss, {term: value})``
    (batch and noise as the PyTorch loss gets them, NumPy/JAX arrays, images (B, H, W, C)); ``init_args(batch,
    noise)``: the positional arguments of ``module.init`` (only their shapes matter)."""

    module: Any
    loss: Callable
    init_args: Callable


@dataclass(frozen=True)
class JaxGame:
    """A model whose step is more than one loss (a GAN's two players), trained in JAX: its flax ``module``;
    ``players``: {name: the module's top-level parameter collections it updates}, in the order of the PyTorch
    adapter's ``players``; ``train_step(run, config) -> (loss, terms)``, the step written top to bottom on
    ``JaxGameRun``'s ``next_batch`` and ``update``, as the PyTorch adapter's ``train_step`` is on the engine's
    ``StepRun``; ``init_args(batch, noise)`` and ``init_method``: what ``module.init`` is called with."""

    module: Any
    players: dict[str, tuple[str, ...]]
    train_step: Callable
    init_args: Callable
    init_method: Any = None
    objectives: dict[str, Callable] | None = None  # each player's objective, for negative controls that reorder


@dataclass(frozen=True)
class Setup:
    """What a model's loss reads besides its parameters, batch and noise: its flax ``twin``, the run's ``model``
    settings and whether it is ``conditional`` (the batch's labels, its second part, go to the network). A model's
    functions take it first; its ``jax_twin`` binds it once (``functools.partial``), so each step compiles once."""

    twin: Any
    model: Any
    conditional: bool = False

    def labels(self, batch):
        return batch[1] if self.conditional else None


class JaxTrainError(ValueError):
    """Bad input to the JAX trainer (one line)."""


# The optimizer: the engine's, in optax ------------------------------------------------------------------------------
def lr_schedule(train) -> Callable:
    """``train.lr`` times the engine's ``lr_factor`` of the update count: linear warmup over ``warmup_steps``, then
    cosine decay to ``min_lr_ratio`` at ``steps`` (what torch's LambdaLR gives the optimizer's n-th step)."""
    import jax.numpy as jnp

    warmup, total, floor = train.warmup_steps, train.steps, train.min_lr_ratio

    def schedule(count):
        count = jnp.asarray(count, dtype=jnp.result_type(float))
        progress = jnp.clip((count - warmup) / max(1, total - warmup), 0.0, 1.0)
        cosine = floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        return train.lr * (jnp.where(count < warmup, (count + 1) / max(warmup, 1), cosine))

    return schedule


def learning_rate(train, step: int) -> float:
    """The run's learning rate at ``step`` on the host: ``train.lr`` times the engine's ``lr_factor`` (warmup, then
    cosine decay), as torch's LambdaLR gives it; ``lr_schedule`` is the same inside optax."""
    from practice_torch.engine.bookkeeping import lr_factor

    return train.lr * lr_factor(step, train.warmup_steps, train.steps, train.min_lr_ratio)


def clip_like_torch(max_norm: float):
    """optax transform of ``torch.nn.utils.clip_grad_norm_``: gradients times min(1, max_norm / (|g| + 1e-6)), |g|
    the global 2-norm (0: no clipping, as the engine's ``train.grad_clip = 0``)."""
    import jax
    import jax.numpy as jnp
    import optax

    def update(updates, state, params=None):
        if not max_norm:
            return updates, state
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + 1e-6))
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def optimizer(train, betas: tuple[float, float] | None = None):
    """The engine's optimizer for one player: clipping, then AdamW (eps 1e-8, torch's default) on the schedule."""
    import optax

    b1, b2 = betas or tuple(train.betas)
    return optax.chain(clip_like_torch(train.grad_clip),
                       optax.adamw(lr_schedule(train), b1=b1, b2=b2, eps=1e-8, weight_decay=train.weight_decay))


def player_optimizer(train, betas: tuple[float, float] | None = None):
    """A player's optimizer: clipping, then AdamW at learning rate 1; its update is scaled by the run's learning rate
    at the run's step (``JaxGameRun.update``), as torch's LambdaLR is stepped once a round of the game, however many
    updates a player makes in it (AdamW's decay, lr wd p, scales with it as in torch)."""
    import optax

    b1, b2 = betas or tuple(train.betas)
    return optax.chain(clip_like_torch(train.grad_clip),
                       optax.adamw(1.0, b1=b1, b2=b2, eps=1e-8, weight_decay=train.weight_decay))


def ema_decay(decay: float, updates):
    """The engine's EMA decay after ``updates`` updates, traced: ``bookkeeping.ema_decay`` with ``jnp.minimum``."""
    import jax.numpy as jnp

    from practice_torch.engine.bookkeeping import ema_decay as decay_at

    return decay_at(decay, updates, jnp.minimum)


def default_step(loss: Callable, tx, ema: float = 0.0) -> Callable:
    """The engine's default step as a pure function, compiled:
    (params, opt_state, shadow, batch, noise, step) -> (params, opt_state, shadow, {loss, grad_norm, terms...}).
    ``shadow``: the EMA of the parameters after each update (``ema > 0``), else None."""
    import jax
    import optax

    def step(params, opt_state, shadow, batch, noise, step):
        (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, noise, step)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if shadow is not None:  # after the update, as the engine's EMA: shadow <- shadow + (1 - d) (params - shadow)
            d = ema_decay(ema, step + 1)
            shadow = jax.tree.map(lambda s, p: s + (1.0 - d) * (p - s), shadow, params)
        return params, opt_state, shadow, {"loss": value, "grad_norm": optax.tree.norm(grads), **terms}

    return jax.jit(step)


def adam_moments(opt_state):
    """The ``ScaleByAdamState`` (count, mu, nu) inside an optax state."""
    import jax
    import optax

    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    if len(found) != 1:
        raise JaxTrainError(f"expected one Adam state in the optimizer state, found {len(found)}")
    return found[0]


def saved_moments(saved: dict, names: list[str], state: dict) -> list[dict]:
    """AdamW's exp_avg and exp_avg_sq of a saved optimizer state_dict over the parameters ``names`` (in its order),
    each as ``state`` (a state_dict) with those parameters replaced by it: zeros for one that never had a gradient,
    as optax keeps them."""
    import torch

    out = []
    for key in ("exp_avg", "exp_avg_sq"):
        given = {names[int(i)]: s[key] for i, s in saved["state"].items()}
        out.append({**state, **{k: given.get(k, torch.zeros_like(state[k])) for k in names}})
    return out


def batches_tracked(state: dict) -> int:
    """The BatchNorms' ``num_batches_tracked`` in a state_dict (all of a net's count alike); 0 without any."""
    return next((int(v) for k, v in state.items() if k.endswith("num_batches_tracked")), 0)


def with_torch_moments(opt_state, moments: tuple[dict, dict], step: int, updates: int | None = None):
    """An optax state of ``optimizer`` after ``step`` steps of the run with Adam's (mu, nu) = ``moments``: the inverse
    of ``torch_optimizer_state``. ``updates``: Adam's count, the updates it made (None: ``step``; a discriminator
    updated k times a step made k ``step``); the schedule's count is ``step``."""
    import jax
    import jax.numpy as jnp
    import optax

    def one(s):
        if isinstance(s, optax.ScaleByAdamState):
            count = step if updates is None else updates
            return s._replace(count=jnp.asarray(count, s.count.dtype), mu=moments[0], nu=moments[1])
        if isinstance(s, optax.ScaleByScheduleState):
            return s._replace(count=jnp.asarray(step, s.count.dtype))
        return s

    counted = (optax.ScaleByAdamState, optax.ScaleByScheduleState)
    adam_moments(opt_state)  # exactly one Adam state, or a one-line error
    return jax.tree.map(one, opt_state, is_leaf=lambda s: isinstance(s, counted))


# Between the layouts ------------------------------------------------------------------------------------------------
def to_jax(arrays, dtype=None):
    """Torch tensors (a tuple or a dict) as NumPy arrays, images (N, C, H, W) channels last; floats as ``dtype``."""
    from shared_specs.backends import _nchw_to_nhwc

    def one(t):
        a = t.detach().cpu().numpy()
        if a.ndim == 4:
            a = _nchw_to_nhwc(a)
        return a.astype(dtype) if dtype is not None and np.issubdtype(a.dtype, np.floating) else a

    return {k: one(v) for k, v in arrays.items()} if isinstance(arrays, dict) else tuple(one(t) for t in arrays)


def to_torch_state(params, template: dict) -> dict:
    """Flax params as torch tensors named and shaped as ``template`` (a state_dict), in its dtypes."""
    import torch

    from shared_specs.interop import flax_to_torch

    weights = flax_to_torch(_numpy(params), template)
    return {k: torch.from_numpy(np.array(v, copy=True)).to(template[k].dtype) for k, v in weights.items()}


def _numpy(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


def torch_optimizer_state(net, train, opt_state, step: int, names: list[str] | None = None, to_torch=None) -> dict:
    """{"optimizer": AdamW's state_dict, "scheduler": LambdaLR's} as the engine checkpoints them after ``step``
    updates: AdamW's exp_avg and exp_avg_sq are optax's mu and nu in the torch layout. ``names``: the parameters of
    the optimizer, in its order (None: all the net's); ``to_torch``: flax params -> the state_dict's tensors
    (default ``to_torch_state`` against the net's state_dict)."""
    import torch

    from practice_torch.engine.bookkeeping import lr_factor

    adam = adam_moments(opt_state)
    template = net.state_dict()
    names = names if names is not None else [n for n, _ in net.named_parameters()]
    to_torch = to_torch or (lambda tree: to_torch_state(tree, template))
    mu, nu = to_torch(adam.mu), to_torch(adam.nu)
    params = dict(net.named_parameters())
    torch_opt = torch.optim.AdamW([params[n] for n in names], lr=train.lr, betas=tuple(train.betas),
                                  weight_decay=train.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        torch_opt, lambda s: lr_factor(s, train.warmup_steps, train.steps, train.min_lr_ratio))
    with warnings.catch_warnings():  # the schedule is stepped without the optimizer: only its count matters here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(step):
            schedule.step()
    for n in names:
        torch_opt.state[params[n]] = {"step": torch.tensor(float(adam.count)), "exp_avg": mu[n].clone(),
                                      "exp_avg_sq": nu[n].clone()}
    return {"optimizer": torch_opt.state_dict(), "scheduler": schedule.state_dict()}


# The run --------------------------------------------------------------------------------------------------------------
def twin_of(model: str):
    """The model's ``jax_twin`` (JaxTrainError, one line, for a model without one)."""
    import importlib

    if model not in TRAINERS:
        raise JaxTrainError(f"{model} has no JAX trainer yet; choose from {', '.join(TRAINERS)}")
    return importlib.import_module(f"practice_jax.{model}").jax_twin


def engine_start(cfg, dtype: str | None = None):
    """(model module, training split in memory, network, batch order, noise generator) of a run, made as the engine
    makes them and in its order (the seed, the split, the network, ...: ``engine/loop.py``, ``Trainer``), so that both
    backends start from the same weights and see the same batches and noise. ``dtype``: the network's floating
    type (None: its own, float32)."""
    import torch

    from practice_torch.engine.batches import GlobalBatches, in_memory
    from practice_torch.engine.config import derive_seed
    from practice_torch.engine.runs import build_net, dataset_info, load_split
    from practice_torch.models import get_model

    t, module = cfg.train, get_model(cfg.model_name)
    torch.manual_seed(t.seed)
    train_set = in_memory(load_split(cfg.data, "train", cfg.data.limit))
    net = build_net(module, cfg, dataset_info(cfg.data))
    if dtype is not None:
        net = net.to(getattr(torch, dtype))
    return (module, train_set, net, GlobalBatches(len(train_set), t.batch_size, t.seed),
            torch.Generator().manual_seed(derive_seed(t.seed, "noise")))


class EngineRun:
    """What both JAX runs share with the engine: the run set up in its order (``engine_start``: the seed, the
    training split, the network, the batch order, the noise generator), the model's twin (``jax_twin``), and the
    engine's next batch and noise handed to JAX."""

    def __init__(self, cfg, dtype: str | None = None, devices: int = 1):
        self.cfg, self.dtype = cfg, dtype
        self.mesh = data_mesh(devices, cfg.train.batch_size)
        self.module, self.train_set, self.net, self.batches, self.noise = engine_start(cfg, dtype)
        self.twin = twin_of(cfg.model_name)(self.net, cfg)
        self.step, self.batches_taken = 0, 0

    def replicated(self, tree):
        """``tree`` (params, optimizer state, statistics) on every device of the run's mesh; as it is on one."""
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        from practice_jax.hosts import place

        if self.mesh is None:
            return tree
        everywhere = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda a: place(a, everywhere), tree)

    def sharded(self, arrays):
        """A batch's or its noise's arrays split along their first (example) axis over the mesh's devices, the
        others (a step's scalars) replicated; as they are on one device."""
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        from practice_jax.hosts import place

        if self.mesh is None:
            return arrays
        n = self.cfg.train.batch_size

        def rows(a):
            split = np.ndim(a) >= 1 and np.shape(a)[0] == n
            return place(a, NamedSharding(self.mesh, PartitionSpec("data" if split else None)))

        return jax.tree.map(rows, arrays)

    def example_inputs(self) -> tuple[tuple, dict]:
        """A batch and its noise of the run's shapes (the first rows; no generator is advanced): what ``init``
        traces the twin with."""
        import torch

        from practice_torch.engine.batches import fetch

        n = self.cfg.train.batch_size
        return (to_jax(fetch(self.train_set, torch.arange(n)), self.dtype),
                to_jax(self.module.draw_noise(self.net, self.cfg.model, n, torch.Generator()), self.dtype))

    def next_batch(self) -> tuple[tuple, dict]:
        """The engine's next batch and its noise, as NumPy arrays (images channels last)."""
        from practice_torch.engine.batches import fetch

        batch = to_jax(fetch(self.train_set, self.batches.next()), self.dtype)
        self.batches_taken += 1  # a GAN's round takes several
        noise = to_jax(self.module.draw_noise(self.net, self.cfg.model, self.cfg.train.batch_size, self.noise),
                       self.dtype)
        return self.sharded(batch), self.sharded(noise)


class JaxRun(EngineRun):
    """A run's training state in JAX, set up as the engine sets up a PyTorch run: the seed, the training split, the
    network (its initial weights, converted), the batch order and the noise generator, in that order. ``dtype``:
    the floating type of weights, batches and noise (None: float32, the network's); ``parts``: the optimizer and
    the step ({"optimizer": optimizer, "step": default_step}, replaced for negative controls)."""

    def __init__(self, cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1):
        import jax

        super().__init__(cfg, dtype, devices)
        t, shapes = cfg.train, self.example_inputs()
        self.template = jax.eval_shape(lambda: self.twin.module.init(jax.random.key(0),
                                                                     *self.twin.init_args(*shapes)))["params"]
        self.params = self.params_of(self.net.state_dict())
        parts = parts or {"optimizer": optimizer, "step": default_step}
        self.tx = parts["optimizer"](t)
        self.opt_state = self.tx.init(self.params)
        self.shadow = self.params if t.ema_decay > 0 else None
        self.params, self.opt_state, self.shadow = self.replicated((self.params, self.opt_state, self.shadow))
        self.step_fn = parts["step"](self.twin.loss, self.tx, t.ema_decay)

    def params_of(self, state: dict) -> dict:
        """Flax params (JAX arrays) of a state_dict in the torch layout (tensors named as the network's)."""
        import jax

        from shared_specs.interop import torch_to_flax

        weights = {k: v.detach().cpu().numpy() for k, v in state.items()}
        return jax.tree.map(jax.numpy.asarray, torch_to_flax(weights, self.template))

    def restore(self, run_dir: Path) -> None:
        """Continue from the run's newest checkpoint, as the engine's ``--resume`` does (``engine/loop.py``:
        ``_restore``): the weights, AdamW's moments and step count and the schedule's (optax's mu, nu and counts),
        the EMA, the batch order, the noise generator and the global RNG. CheckpointError (one line) for a
        checkpoint that does not fit."""
        with restoring(self, run_dir) as state:
            step = int(state["step"])
            self.params = self.params_of(self.net.state_dict())
            self.opt_state = with_torch_moments(self.opt_state, self.moments(state["optimizer"]), step)
            if self.shadow is not None:
                self.shadow = self.params_of({**self.net.state_dict(), **state["ema"]["shadow"]})
            self.params, self.opt_state, self.shadow = self.replicated((self.params, self.opt_state, self.shadow))

    def moments(self, saved: dict) -> tuple[dict, dict]:
        """(mu, nu): AdamW's exp_avg and exp_avg_sq of a saved optimizer state_dict as flax params."""
        names = [n for n, _ in self.net.named_parameters()]
        mu, nu = (self.params_of(moment) for moment in saved_moments(saved, names, self.net.state_dict()))
        return mu, nu

    def learning_rates(self, step: int) -> dict[str, float]:
        """The learning rate at ``step`` (the engine logs ``lr``), computed on the host: nothing waits for the
        device."""
        return {"lr": learning_rate(self.cfg.train, step)}

    def advance(self) -> dict:
        """One step on the next batch: the new params, optimizer state and EMA; -> the logged values (JAX arrays)."""
        batch, noise = self.next_batch()
        self.params, self.opt_state, self.shadow, logged = self.step_fn(self.params, self.opt_state, self.shadow,
                                                                        batch, noise, self.step)
        self.step += 1
        return logged

    def weights(self, average: bool = False) -> dict:
        """The network's state_dict (torch tensors) with the trained params (``average``: the EMA's)."""
        state = self.net.state_dict()
        return to_torch_state(self.shadow if average else self.params, state)

    def validate(self) -> dict[str, float]:
        """The model's ``validate`` terms at this step, as the engine computes them (``engine/loop.py``:
        ``_validate``): ``train.val_batch`` validation rows from (step // log_every) * val_batch, cycling, scored by
        the PyTorch network with the JAX-trained weights, in eval mode, without gradients."""
        import torch

        from practice_torch.engine.batches import fetch, in_memory
        from practice_torch.engine.runs import load_split

        t = self.cfg.train
        if getattr(self, "val_set", None) is None:
            self.val_set = in_memory(load_split(self.cfg.data, "val"))
        start = validation_start(self.step, t.log_every, t.val_batch)
        rows = torch.arange(start, start + t.val_batch) % len(self.val_set)
        self.net.load_state_dict(self.weights())
        self.net.eval()
        try:
            with torch.no_grad():
                terms = self.module.validate(self.net, self.cfg.model, fetch(self.val_set, rows))
        finally:
            self.net.train()
        return {k: float(v) for k, v in terms.items()}

    def checkpoint_state(self) -> dict:
        """The training state as the engine checkpoints it (``engine/loop.py``: ``save``)."""
        from practice_torch.engine.checkpoint import rng_state

        self.net.load_state_dict(self.weights())
        names = dict(self.net.named_parameters())
        ema = None if self.shadow is None else {
            "updates": self.step, "shadow": {k: v for k, v in self.weights(average=True).items() if k in names}}
        return {**torch_optimizer_state(self.net, self.cfg.train, self.opt_state, self.step), "ema": ema,
                "batches": self.batches.state_dict(), "noise": self.noise.get_state(), "rng": rng_state(),
                "early_stop": (math.inf, 0, 0)}


class JaxGameRun(EngineRun):
    """A run of a ``JaxGame`` (a GAN's players) in JAX, set up as the engine sets up the PyTorch run and stepped as
    the engine steps a model that writes its own step (``engine/players.py``): one optax AdamW per player, each on
    the run's schedule; ``next_batch`` hands the step the engine's next batch and noise; ``update(name, objective,
    batch, noise)`` takes the gradient of the objective with respect to that player's parameters only, clips it and
    steps its optimizer (compiled once per player and objective); ``update_together({name: objective, ...}, batch,
    noise)`` updates several players at once (simultaneous updates: every gradient first, then every step). The
    generator's running statistics and the discriminator's spectral-norm vectors (``batch_stats``) pass from each
    objective to the next. Same interface as ``JaxRun`` for ``train``."""

    def __init__(self, cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1):
        import functools

        import jax

        from shared_specs.interop import split_statistics

        super().__init__(cfg, dtype, devices)
        t, shapes = cfg.train, self.example_inputs()
        variables = jax.eval_shape(lambda: self.twin.module.init(jax.random.key(0), *self.twin.init_args(*shapes),
                                                                 method=self.twin.init_method))
        self.template = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        self.params, self.stats = self.variables_of(self.net.state_dict())
        self.torch_names, self.torch_stats = split_statistics(self.net.state_dict())
        owner = {id(p): n for n, p in self.net.named_parameters()}
        self.player_names = {name: [owner[id(p)] for p in player.parameters]
                             for name, player in self.module.players(self.net, cfg.model).items()}
        parts = {"player_optimizer": player_optimizer, "train_step": lambda twin: twin.train_step, **(parts or {})}
        self.train_step = parts["train_step"](self.twin)
        self.tx = {name: parts["player_optimizer"](t) for name in self.twin.players}
        self.opt_state = {name: self.tx[name].init(self.part(self.params, name)) for name in self.twin.players}
        self.shadow = self.params if t.ema_decay > 0 else None
        self.params, self.stats, self.opt_state, self.shadow = self.replicated(
            (self.params, self.stats, self.opt_state, self.shadow))
        self.tracked = batches_tracked(self.net.state_dict())  # the BatchNorms' count of training-mode passes
        self.forwards = 0  # this step's training-mode passes of the generator (one per update)
        self._updates = functools.lru_cache(maxsize=None)(self._compiled_update)
        self.norms: dict[str, list] = {name: [] for name in self.twin.players}

    # The layouts
    def part(self, params: dict, player: str) -> dict:
        """A player's share of the params: its top-level collections."""
        return {k: v for k, v in params.items() if k in self.twin.players[player]}

    def variables_of(self, state: dict) -> tuple[dict, dict]:
        """(params, batch_stats) of a state_dict in the torch layout."""
        import jax

        from shared_specs.interop import split_statistics, torch_to_flax

        weights, stats = split_statistics({k: v.detach().cpu().numpy() for k, v in state.items()})
        params = torch_to_flax(weights, self.template["params"])
        stats = torch_to_flax(stats, self.template["batch_stats"]) if self.template["batch_stats"] else {}
        return jax.tree.map(jax.numpy.asarray, params), jax.tree.map(jax.numpy.asarray, stats)

    def to_torch(self, params: dict) -> dict:
        """Flax params as the net's parameters (torch tensors, by name)."""
        return to_torch_state(params, self.torch_names)

    def weights(self, average: bool = False) -> dict:
        """The network's state_dict (torch tensors) with the trained params (``average``: the EMA's), the running
        statistics and their count."""
        import torch

        from shared_specs.interop import flax_to_torch, statistic_name

        state = self.net.state_dict()
        out = {**state, **self.to_torch(self.shadow if average else self.params)}
        if self.stats:
            torch_name = {statistic_name(name): name for name in state if statistic_name(name)}
            for name, value in flax_to_torch(_numpy(self.stats), self.torch_stats).items():
                out[torch_name[name]] = torch.from_numpy(np.array(value, copy=True)).to(state[torch_name[name]].dtype)
        for name in state:
            if name.endswith("num_batches_tracked"):
                out[name] = torch.tensor(self.tracked, dtype=state[name].dtype)
        return out

    # The step's utilities
    def _compiled_update(self, objectives: tuple[tuple[str, Callable], ...]):
        """The compiled update of the players of ``objectives`` ((player, objective(params, stats, batch, noise) ->
        (loss, (terms, stats))), ...), every gradient taken at the same params, then every step, as the engine's
        ``run.update`` does: (params, opt_states, stats, batch, noise, lr) -> (params, opt_states, stats,
        {player: (loss, terms, gradient norm)})."""
        import jax
        import optax

        def update(params, opt_states, stats, batch, noise, lr):
            new_params, opt_states, out, moved = dict(params), dict(opt_states), {}, stats
            for player, objective in objectives:
                keys, tx = self.twin.players[player], self.tx[player]
                own = {k: v for k, v in params.items() if k in keys}

                def of_own(own, objective=objective):
                    return objective({**params, **own}, stats, batch, noise)

                (loss, (terms, moved)), grads = jax.value_and_grad(of_own, has_aux=True)(own)
                updates, opt_states[player] = tx.update(grads, opt_states[player], own)
                updates = jax.tree.map(lambda u: lr * u, updates)  # the run's learning rate at its step
                new_params.update(optax.apply_updates(own, updates))
                out[player] = (loss, terms, optax.tree.norm(grads))
            # each objective runs G once, on the same z from the same statistics: they all move them alike
            return new_params, opt_states, moved, out

        return jax.jit(update)

    def update(self, player: str, objective: Callable, batch, noise):
        """One update of ``player`` (the engine's ``run.update(player=loss)``: the gradient with respect to its own
        parameters only, ``train.grad_clip``, its AdamW step) -> (its loss, its terms)."""
        return self.update_together({player: objective}, batch, noise)[player]

    def update_together(self, objectives: dict[str, Callable], batch, noise) -> dict[str, tuple]:
        """One update of each player in ``objectives`` on one batch (the engine's ``run.update(discriminator=...,
        generator=...)``: simultaneous gradient steps): every gradient at the current params, then every step.
        -> {player: (its loss, its terms)}."""
        step = self._updates(tuple(objectives.items()))
        states = {name: self.opt_state[name] for name in objectives}
        self.params, states, self.stats, out = step(self.params, states, self.stats, batch, noise, self.lr)
        self.opt_state.update(states)
        for name, (_, _, norm) in out.items():
            self.norms[name].append(norm)
        self.forwards += 1  # one training-mode pass of the generator, however many players step on it
        return {name: (loss, terms) for name, (loss, terms, _) in out.items()}

    def advance(self) -> dict:
        """One ``train_step`` of the game, then the EMA; -> the logged values (JAX arrays): the loss, the terms and
        each player's mean gradient norm over the step (``grad_norm_<player>``)."""
        import jax

        self.forwards = 0
        self.lr = np.asarray(self.learning_rates(self.step)["lr_" + next(iter(self.twin.players))],
                             dtype=self.dtype or "float32")
        loss, terms = self.train_step(self, self.cfg.model)
        self.tracked += self.forwards if self.stats else 0
        if self.shadow is not None:
            d = ema_decay(self.cfg.train.ema_decay, self.step + 1)
            self.shadow = jax.tree.map(lambda s, p: s + (1.0 - d) * (p - s), self.shadow, self.params)
        norms = {f"grad_norm_{name}": sum(v) / len(v) for name, v in self.norms.items() if v}
        self.norms = {name: [] for name in self.twin.players}
        self.step += 1
        return {"loss": loss, **norms, **terms}

    def learning_rates(self, step: int) -> dict[str, float]:
        """Each player's learning rate at ``step`` (the engine logs ``lr_<player>``)."""
        return {f"lr_{name}": learning_rate(self.cfg.train, step) for name in self.twin.players}

    # Checkpoints
    def checkpoint_state(self) -> dict:
        """The training state as the engine checkpoints a custom step's (``engine/loop.py``: ``save``)."""
        from practice_torch.engine.checkpoint import rng_state

        self.net.load_state_dict(self.weights())
        names = dict(self.net.named_parameters())

        def to_torch(tree):  # a player's moments, the other players' entries filled in (and dropped)
            return self.to_torch({**self.params, **tree})

        players = {name: torch_optimizer_state(self.net, self.cfg.train, self.opt_state[name], self.step,
                                               self.player_names[name], to_torch)
                   for name in self.twin.players}
        ema = None if self.shadow is None else {
            "updates": self.step, "shadow": {k: v for k, v in self.weights(average=True).items() if k in names}}
        return {"players": players, "ema": ema, "batches": self.batches.state_dict(),
                "noise": self.noise.get_state(), "rng": rng_state(), "early_stop": (math.inf, 0, 0)}

    def restore(self, run_dir: Path) -> None:
        """Continue from the run's newest checkpoint, as the engine's ``--resume`` does for a custom step: the weights
        and statistics, each player's AdamW moments and counts, the EMA, the batch order, the noise, the RNG."""
        with restoring(self, run_dir) as state:
            step = int(state["step"])
            current = self.net.state_dict()
            self.params, self.stats = self.variables_of(current)
            self.tracked = batches_tracked(current)
            for name in self.twin.players:
                saved = state["players"][name]["optimizer"]
                moments = [self.part(self.variables_of(moment)[0], name)
                           for moment in saved_moments(saved, self.player_names[name], current)]
                counts = [int(s["step"]) for s in saved["state"].values()]
                self.opt_state[name] = with_torch_moments(self.opt_state[name], tuple(moments), step,
                                                          max(counts, default=0))
            if self.shadow is not None:
                self.shadow = self.variables_of({**current, **state["ema"]["shadow"]})[0]
            self.params, self.stats, self.opt_state, self.shadow = self.replicated(
                (self.params, self.stats, self.opt_state, self.shadow))


@contextmanager
def restoring(run, run_dir: Path):
    """Load the newest checkpoint of ``run_dir`` into ``run`` (a ``JaxRun`` or ``JaxGameRun``), as the engine's
    ``--resume`` does: the weights into its network, then the body (which restores the optimizers from the state it
    is handed), then the batch order, the noise generator, the global RNG and the step. CheckpointError (one line)
    for a checkpoint that does not fit."""
    from practice_torch.engine.checkpoint import CheckpointError, load_checkpoint, load_weights_into, set_rng_state
    from practice_torch.engine.runs import CHECKPOINTS

    folder = run_dir / CHECKPOINTS
    weights, state = load_checkpoint(folder, run.cfg.model_name,
                                     versions=getattr(run.module, "CHECKPOINT_VERSIONS", None))
    load_weights_into(run.net, weights, folder)
    try:
        yield state
        run.batches.load_state_dict(state["batches"])
        run.noise.set_state(state["noise"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the training state in {folder} does not fit this run: {exc!r}") from None
    set_rng_state(state["rng"])
    run.step = int(state["step"])


def new_run(cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1):
    """The model's run in JAX: a ``JaxGameRun`` for a model whose twin is a ``JaxGame``, else a ``JaxRun``; on
    ``devices`` local devices, data-parallel (``data_mesh``)."""
    from practice_torch.models import get_model, writes_own_step

    if writes_own_step(get_model(cfg.model_name), cfg.model):
        return JaxGameRun(cfg, dtype, parts, devices)
    return JaxRun(cfg, dtype, parts, devices)


def data_mesh(devices: int, batch_size: int):
    """The mesh a run trains data-parallel on: the first ``devices`` local devices of every process (one process:
    this machine's; several hosts: ``practice_jax/hosts.py``) along one axis, ``data`` (None for one device: the
    arrays stay where JAX puts them). Each batch is split along its examples, the parameters and the optimizer state
    are replicated, and the jitted step, compiled for that placement, averages the gradient over the devices as the
    engine's DDP does. JaxTrainError (one line) for more devices than there are, or a batch that does not split
    evenly."""
    import jax
    from jax.sharding import Mesh

    from practice_jax.hosts import mesh_devices

    local = jax.local_devices()
    if devices < 1 or devices > len(local):
        raise JaxTrainError(f"--devices {devices}: this machine has {len(local)} JAX device"
                            f"{'s' if len(local) > 1 else ''} ({local[0].platform}); choose 1 to {len(local)}")
    total = devices * jax.process_count()
    if batch_size % total:
        raise JaxTrainError(f"train.batch_size={batch_size} does not split over {total} devices: choose a multiple "
                            f"of {total}")
    return Mesh(np.array(mesh_devices(devices)), ("data",)) if total > 1 else None


@dataclass(frozen=True)
class Trained:
    """What ``train`` did: the step it reached, the signal that stopped it early (None: it finished) and the files
    the end of the run wrote (samples, loss curves; none after a signal)."""

    step: int
    signal: int | None = None
    files: tuple[Path, ...] = ()
    first: int = 0  # the step this session started from (a resumed run's checkpoint)
    loss: float | None = None  # the mean loss of the last log window


class LogWindow:
    """The steps between two log lines, as the engine keeps them: the logged terms and learning rates summed, then
    written as their means with the examples a second and the time since the start (``flush``)."""

    def __init__(self, cfg, log, bar, validates: bool = True):
        self.cfg, self.log, self.bar, self.validates = cfg, log, bar, validates
        self.sums: dict[str, Any] = {}
        self.window = 0  # the steps summed (a resumed run's first window starts at its checkpoint)
        self.start = self.started = time.perf_counter()
        self.last_loss = None

    def add(self, logged: dict) -> None:
        self.sums = {k: self.sums.get(k, 0.0) + v for k, v in logged.items()}
        self.window += 1

    def flush(self, run) -> None:
        """Write the window's means at ``run.step`` (JaxTrainError, one line, on a non-finite loss)."""
        t = self.cfg.train
        means = {k: float(v) / self.window for k, v in self.sums.items()}
        if not math.isfinite(means["loss"]):
            raise JaxTrainError(f"the loss became {means['loss']} within steps {run.step - self.window + 1}-"
                                f"{run.step}; stopped: try a lower train.lr or a train.grad_clip")
        rate = self.window * t.batch_size / (time.perf_counter() - self.start)
        if t.val_batch and hasattr(run.module, "validate") and self.validates:
            means.update(run.validate())
        self.log.write(run.step, {**means, "examples_per_s": rate, "time_s": time.perf_counter() - self.started})
        self.bar.set_postfix(loss=f"{means['loss']:.4g}", ex_per_s=f"{rate:.0f}", refresh=False)
        self.sums, self.window, self.start, self.last_loss = {}, 0, time.perf_counter(), means["loss"]


def start_run_dir(cfg, run_dir: Path, run) -> None:
    """The run's folder with its config and environment (the torch side, the weights' layout and the sampler, stays
    on the CPU; a GPU JAX computes on is recorded)."""
    import jax
    import torch

    from practice_torch.engine.runs import write_config, write_environment

    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)
    on_gpu = jax.default_backend() == "gpu"
    write_environment(run_dir, torch.device("cpu"), 1, run.step, backend="jax",
                      gpu=jax.devices()[0].device_kind if on_gpu else None)


def finish(cfg, run_dir: Path, run, stop, first: int, last_loss) -> Trained:
    """After the last step (or a signal): the environment marked finished; then, unless stopped, the samples of the
    trained (the EMA's, if kept) weights, none with ``train.samples=0``, and the loss curves."""
    import torch

    from practice_torch.engine.metrics import plot_losses
    from practice_torch.engine.runs import held_out_examples, save_samples, write_environment, write_samples

    t = cfg.train
    write_environment(run_dir, torch.device("cpu"), 1, run.step, finished=True)
    if stop.signal is not None:
        return Trained(run.step, stop.signal, first=first, loss=last_loss)
    written = []
    if t.samples:
        run.net.load_state_dict(run.weights(average=run.shadow is not None))
        artefacts = write_samples(run.module, cfg, run.net, t.samples, t.seed, held_out_examples(cfg.data, t.samples))
        written = save_samples(artefacts, run_dir)
    plot = plot_losses(run_dir, run_dir / "loss.png")
    return Trained(run.step, None, tuple(written + ([plot] if plot else [])), first, last_loss)


def train(cfg, run_dir: Path, resume: bool = False, devices: int = 1) -> Trained:
    """Train ``cfg`` (an ``engine.config.RunConfig``) in JAX into the new run directory ``run_dir`` (``resume``: on
    from its newest checkpoint) on ``devices`` local devices, as the engine trains it in PyTorch: the log, the
    checkpoints, the samples and the loss curves."""
    from practice_jax.hosts import agreed_signal, writes
    from practice_torch.engine.checkpoint import current_version, save_checkpoint
    from practice_torch.engine.runs import CHECKPOINTS

    t, writer = cfg.train, writes()  # several hosts: process 0 writes the run, the others compute (hosts.py)
    run = new_run(cfg, devices=devices)
    if resume:
        run.restore(run_dir)
    version = current_version(getattr(run.module, "CHECKPOINT_VERSIONS", None))

    def save() -> None:
        if writer:
            save_checkpoint(run_dir / CHECKPOINTS, cfg.model_name, run.step, run.weights(), run.checkpoint_state(),
                            version)

    (log, bar), first = open_outputs(cfg, run_dir, run, writer), run.step
    window, stop = LogWindow(cfg, log, bar, validates=writer), StopOnSignals()  # the engine's (engine/bookkeeping.py)
    try:
        with stop:
            while run.step < t.steps and stop.signal is None:
                lrs = run.learning_rates(run.step)
                window.add({**run.advance(), **lrs})  # asynchronous: nothing waits for the step until the log line
                stop.signal = agreed_signal(stop.signal)  # several processes: all stop after the same step
                if is_log_step(run.step, t.log_every, t.steps) or stop.signal is not None:
                    window.flush(run)
                bar.update(1)
                if is_checkpoint_step(run.step, t.checkpoint_every, t.steps):
                    save()
    finally:
        bar.close()
        log.close()
    save()
    if not writer:
        return Trained(run.step, stop.signal, first=first, loss=window.last_loss)
    return finish(cfg, run_dir, run, stop, first, window.last_loss)


def open_outputs(cfg, run_dir: Path, run, writer: bool):
    """(the metrics log, the progress bar) of a run: the run folder started and both written by the process that
    writes the run (``hosts.writes``); on the others, neither."""
    from practice_torch.engine.metrics import MetricsLog
    from practice_torch.progress import progress

    if writer:
        start_run_dir(cfg, run_dir, run)
    bar = progress(total=cfg.train.steps, initial=run.step, desc=f"{cfg.model_name} on {cfg.data.name} (JAX)",
                   unit="step", disable=not writer)
    return (MetricsLog(run_dir, run.step) if writer else Unwritten()), bar


class Unwritten:
    """The metrics log of a process that does not write the run (several hosts: all but process 0)."""

    def write(self, step: int, values: dict) -> None:
        pass

    def close(self) -> None:
        pass


# The command ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m practice_jax train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help=f"one of {', '.join(TRAINERS)}")
    parser.add_argument("--dataset", help="data set (default: the model's)")
    parser.add_argument("--preset", choices=("quick", "full"), help="the model's preset (default: quick)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's; on --resume: extend the "
                                                   "run to this many)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as practice_torch train's --set (repeatable)")
    parser.add_argument("--out", help="run directory (default runs/<model>-<dataset>-jax-<k>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run (JAX's or PyTorch's) from its newest "
                                                            "checkpoint")
    parser.add_argument("--devices", type=int, help="train data-parallel on this many local JAX devices (default: "
                                                    "all of them; each batch split over them)")
    hosts = parser.add_argument_group("several hosts (practice_jax/hosts.py): every process the same command")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, where the processes meet")
    hosts.add_argument("--processes", type=int, help="how many processes train the run")
    hosts.add_argument("--process-id", type=int, help="this process's id, 0 (which writes the run) to processes - 1")
    return parser


def unsupported(train) -> str | None:
    """What of ``train`` (a TrainConfig) the JAX trainer does not do, as a one-line error, or None."""
    if train.precision != "fp32":
        return f"train.precision={train.precision}: the JAX trainer trains in float32 (--set train.precision=fp32)"
    if train.early_stop:
        return f"train.early_stop={train.early_stop}: the JAX trainer does not stop early (set it to '')"
    if train.batch_size < 1:
        return f"train.batch_size={train.batch_size}: the JAX trainer takes minibatches (a positive size)"
    return None


def new_run_dir(cfg, root: Path = Path("runs")) -> Path:
    """runs/<model>-<data set>-jax-<k>, the first k not taken."""
    k = 1
    while (root / f"{cfg.model_name}-{cfg.data.name}-jax-{k}").exists():
        k += 1
    return root / f"{cfg.model_name}-{cfg.data.name}-jax-{k}"


def main(argv: list[str] | None = None) -> int:
    from practice_jax.hosts import initialize
    from practice_torch.data import DatasetMissing
    from practice_torch.engine import RunError
    from practice_torch.engine.runs import has_checkpoint, restart_note

    args = build_parser().parse_args(argv)
    try:
        initialize(args.coordinator, args.processes, args.process_id, bool(args.resume), args.out)
        twin_of(args.model)
        cfg, run_dir = command_config(args)
        problem = unsupported(cfg.train)
        if problem:
            raise JaxTrainError(problem)
        resume = bool(args.resume) and has_checkpoint(run_dir)
        if args.resume and not resume:  # killed or preempted before its first checkpoint: its config.json restarts it
            print(restart_note(run_dir), file=sys.stderr)
        started = time.perf_counter()
        trained = train(cfg, run_dir, resume=resume, devices=devices_of(args))
    except (JaxTrainError, RunError, DatasetMissing, ValueError) as exc:  # ValueError: a build the adapter refuses
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if trained.signal is not None:
        print(f"stopped by {signal.Signals(trained.signal).name} after step {trained.step}; checkpoint saved. Continue "
              f"with: python -m practice_jax train {cfg.model_name} --resume {run_dir}", file=sys.stderr)
        return 128 + trained.signal
    from practice_torch.cli import finished_line

    print(finished_line(f"{cfg.model_name} in JAX", trained.first, trained.step, time.perf_counter() - started,
                        trained.loss, run_dir))
    for path in trained.files:
        print(f"  wrote {path}")
    return 0


def devices_of(args) -> int:
    """--devices, or every local JAX device."""
    import jax

    return args.devices if args.devices is not None else len(jax.local_devices())


def command_config(args) -> tuple[Any, Path]:
    """(the run's config, its directory): a new run's (the preset, --set, --out) or, with --resume, the run's own
    config.json with --steps and --set applied, refused in one line where it changes what the checkpoint fixes."""
    from practice_jax.hosts import writes
    from practice_torch.engine import RunError
    from practice_torch.engine.runs import check_new_run_dir
    from practice_torch.models import new_run_config, resumed_config

    overrides = ([f"train.steps={args.steps}"] if args.steps is not None else []) + args.set
    if not args.resume:
        cfg = new_run_config(args.model, args.preset, args.dataset, overrides)
        run_dir = Path(args.out) if args.out else new_run_dir(cfg)
        if writes():  # several hosts: process 0 makes the folder, the others may find it made
            check_new_run_dir(run_dir)
        return cfg, run_dir
    if args.out or args.preset or args.dataset:
        raise RunError("--resume continues a run in its own directory with its own config: drop "
                       "--out/--preset/--dataset")
    run_dir = Path(args.resume)
    return resumed_config(run_dir, args.model, overrides), run_dir
