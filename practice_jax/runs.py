"""A run's training state in JAX, set up as the PyTorch engine sets up a run (``engine/loop.py``, ``Trainer``).

``engine_start`` makes what both backends share, in the engine's order: the seed, the training split, the network
(its initial weights, which the flax twin takes converted), the batch order and the noise generator. ``JaxRun``
holds a model's ``TrainState`` and steps it with the model's ``train_step``; ``JaxGameRun`` holds a game's players
(one optimizer each) and steps the round of the game, each update ``game.update`` of the players it names. Both
take their batches and noise as the engine does (``next_batch``): the engine's batch order, and the model's noise
from the engine's generator (``train.rng=torch``, so that a twin run agrees with PyTorch's) or from ``jax.random``
(``train.rng=jax``). Both write and read the engine's checkpoints (``training_state``, ``restore``).

``--devices N`` trains data-parallel: each batch split along its examples over a mesh of N devices, the state
replicated, the gradient averaged by the compiled step as DDP averages it (``data_mesh``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import numpy as np
import torch
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from practice_jax import game, hosts  # hosts.place read at each call: a test's fault may stand in for it
from practice_jax.state import TrainState, ema_update, learning_rate, optimizer, player_optimizer
from practice_jax.torch_layout import (
    batches_tracked,
    numpy_tree,
    saved_moments,
    to_jax,
    to_torch_state,
    torch_optimizer_state,
    with_torch_moments,
)
from practice_jax.twins import JaxTrainError, twin_of
from practice_torch.engine.batches import GlobalBatches, fetch, in_memory
from practice_torch.engine.config import derive_seed
from practice_torch.engine.runs import build_net, dataset_info, load_split, validation_terms
from practice_torch.engine.training_state import reopen, restore_position, training_state
from practice_torch.models import get_model, writes_own_step
from shared_specs.interop import flax_to_torch, split_statistics, statistic_name, torch_to_flax


def engine_start(cfg, dtype: str | None = None):
    """(model module, training split in memory, network, batch order, noise generator) of a run, made as the engine
    makes them and in its order, so that both backends start from the same weights and see the same batches and
    noise. ``dtype``: the network's floating type (None: its own, float32)."""
    t, module = cfg.train, get_model(cfg.model_name)
    torch.manual_seed(t.seed)
    train_set = in_memory(load_split(cfg.data, "train", cfg.data.limit))
    net = build_net(module, cfg, dataset_info(cfg.data))
    if dtype is not None:
        net = net.to(getattr(torch, dtype))
    return (module, train_set, net, GlobalBatches(len(train_set), t.batch_size, t.seed),
            torch.Generator().manual_seed(derive_seed(t.seed, "noise")))


def data_mesh(devices: int, batch_size: int) -> Mesh | None:
    """The mesh a run trains data-parallel on: the first ``devices`` local devices of every process (one process:
    this machine's; several hosts: ``practice_jax/hosts.py``) along one axis, ``data`` (None for one device).
    JaxTrainError (one line) for more devices than there are, or a batch that does not split evenly."""
    local = jax.local_devices()
    if devices < 1 or devices > len(local):
        raise JaxTrainError(f"--devices {devices}: this machine has {len(local)} JAX device"
                            f"{'s' if len(local) > 1 else ''} ({local[0].platform}); choose 1 to {len(local)}")
    total = devices * jax.process_count()
    if batch_size % total:
        raise JaxTrainError(f"train.batch_size={batch_size} does not split over {total} devices: choose a multiple "
                            f"of {total}")
    return Mesh(np.array(hosts.mesh_devices(devices)), ("data",)) if total > 1 else None


class EngineRun:
    """What both JAX runs share with the engine: the run set up in its order (``engine_start``), the model's twin
    (``jax_twin``), the engine's next batch and its noise (the engine's generator's, or ``jax.random``'s with
    ``train.rng=jax``), placed on the run's mesh."""

    def __init__(self, cfg, dtype: str | None = None, devices: int = 1):
        self.cfg, self.dtype = cfg, dtype
        self.mesh = data_mesh(devices, cfg.train.batch_size)
        self.module, self.train_set, self.net, self.batches, self.noise = engine_start(cfg, dtype)
        self.twin = twin_of(cfg.model_name)(self.net, cfg)
        self.key = jax.random.key(derive_seed(cfg.train.seed, "jax-noise") % 2**32) if cfg.train.rng == "jax" else None
        self.step, self.batches_taken, self.val_set = 0, 0, None

    def replicated(self, tree):
        """``tree`` (a state) on every device of the run's mesh; as it is on one."""
        if self.mesh is None:
            return tree
        everywhere = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda a: hosts.place(a, everywhere), tree)

    def sharded(self, arrays):
        """A batch's or its noise's arrays split along their first (example) axis over the mesh's devices, the
        others replicated; as they are on one device."""
        if self.mesh is None:
            return arrays
        n = self.cfg.train.batch_size

        def rows(a):
            split = np.ndim(a) >= 1 and np.shape(a)[0] == n
            return hosts.place(a, NamedSharding(self.mesh, PartitionSpec("data" if split else None)))

        return jax.tree.map(rows, arrays)

    def example_inputs(self) -> tuple[tuple, dict]:
        """A batch and its noise of the run's shapes (the first rows; no generator is advanced): what ``init``
        traces the twin with."""
        n = self.cfg.train.batch_size
        return (to_jax(fetch(self.train_set, torch.arange(n)), self.dtype),
                to_jax(self.module.draw_noise(self.net, self.cfg.model, n, torch.Generator()), self.dtype))

    def next_batch(self) -> tuple[tuple, dict]:
        """The engine's next batch and its noise, as arrays (images channels last)."""
        batch = to_jax(fetch(self.train_set, self.batches.next()), self.dtype)
        self.batches_taken += 1  # a game's round takes several
        return self.sharded(batch), self.sharded(self.next_noise())

    def next_noise(self) -> dict:
        """A batch's noise: the model's ``draw_noise`` from the engine's generator, or with ``train.rng=jax`` from
        the run's key (split once a batch)."""
        n = self.cfg.train.batch_size
        if self.key is None:
            return to_jax(self.module.draw_noise(self.net, self.cfg.model, n, self.noise), self.dtype)
        self.key, key = jax.random.split(self.key)
        return self.twin.draw_noise(key, n)

    def validate(self) -> dict[str, float]:
        """The model's ``validate`` terms at this step, scored as the engine scores them (``validation_terms``):
        by the PyTorch network with the JAX-trained weights."""
        if self.val_set is None:
            self.val_set = in_memory(load_split(self.cfg.data, "val"))
        self.net.load_state_dict(self.weights())
        return validation_terms(self.module, self.net, self.cfg, self.val_set, self.step)

    def position(self) -> dict:
        """What of the run's place the checkpoint keeps beside the optimizers: the batch order, the noise generator
        (and the key of ``train.rng=jax``)."""
        key = {} if self.key is None else {"jax_key": torch.from_numpy(np.array(jax.random.key_data(self.key)))}
        return {"batches": self.batches.state_dict(), **key}

    def restore_position(self, state: dict) -> None:
        """The batch order, the noise generator, the JAX key and every global RNG of a checkpoint; the step."""
        if self.key is not None:
            self.key = jax.random.wrap_key_data(jax.numpy.asarray(state["jax_key"].numpy()))
        self.step = restore_position(state, self.batches, self.noise)


class JaxRun(EngineRun):
    """A model's run whose step is one loss, in JAX: its ``TrainState`` (params, optimizer state, EMA, step) from
    the PyTorch network's initial weights, stepped by the model's ``train_step``, jitted here. ``dtype``: the
    floating type of weights, batches and noise (None: float32); ``parts``: {"optimizer": train -> optax transform,
    "step": (loss, state, batch, noise) -> (state, logged)}, replaced for negative controls."""

    def __init__(self, cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1):
        super().__init__(cfg, dtype, devices)
        t, shapes = cfg.train, self.example_inputs()
        self.template = jax.eval_shape(lambda: self.twin.module.init(jax.random.key(0),
                                                                     *self.twin.init_args(*shapes)))["params"]
        parts = parts or {}
        self.state = self.replicated(TrainState.create(self.params_of(self.net.state_dict()),
                                                       parts.get("optimizer", optimizer)(t), t.ema_decay))
        step = partial(parts["step"], self.twin.loss) if "step" in parts else self.twin.train_step
        self.train_step = jax.jit(step)

    def params_of(self, state: dict) -> dict:
        """Flax params (JAX arrays) of a state_dict in the torch layout (tensors named as the network's)."""
        weights = {k: v.detach().cpu().numpy() for k, v in state.items()}
        return jax.tree.map(jax.numpy.asarray, torch_to_flax(weights, self.template))

    def advance(self) -> dict:
        """One step on the next batch; -> the logged values (JAX arrays: nothing waits for the device)."""
        batch, noise = self.next_batch()
        self.state, logged = self.train_step(self.state, batch, noise)
        self.step += 1
        return logged

    def learning_rates(self, step: int) -> dict[str, float]:
        return {"lr": learning_rate(self.cfg.train, step)}

    @property
    def params(self) -> dict:
        """The trained params (the train state's), where a game's run keeps its players' (placed on the mesh)."""
        return self.state.params

    @property
    def averaged(self) -> bool:
        """Whether the run keeps an EMA of its weights (``train.ema_decay``), which its samples are drawn with."""
        return self.state.shadow is not None

    def weights(self, average: bool = False) -> dict:
        """The network's state_dict (torch tensors) with the trained params (``average``: the EMA's)."""
        return to_torch_state(self.state.shadow if average else self.state.params, self.net.state_dict())

    def checkpoint_state(self) -> dict:
        """The training state as the engine checkpoints it (``engine.training_state``)."""
        self.net.load_state_dict(self.weights())
        names = dict(self.net.named_parameters())
        ema = None if self.state.shadow is None else {
            "updates": self.step, "shadow": {k: v for k, v in self.weights(average=True).items() if k in names}}
        optimizers = torch_optimizer_state(self.net, self.cfg.train, self.state.opt_state, self.step)
        return training_state(optimizers, ema, self.position(), self.noise)

    def restore(self, run_dir: Path) -> None:
        """Continue from the run's newest checkpoint, as the engine's ``--resume`` does (``engine.reopen``): the
        weights, AdamW's moments and counts and the schedule's, the EMA, then the run's place."""
        state = reopen(run_dir, self.cfg.model_name, self.net, getattr(self.module, "CHECKPOINT_VERSIONS", None))
        with restoring(run_dir):
            step = int(state["step"])
            current = self.net.state_dict()
            names = [n for n, _ in self.net.named_parameters()]
            mu, nu = (self.params_of(m) for m in saved_moments(state["optimizer"], names, current))
            opt_state = with_torch_moments(self.state.opt_state, (mu, nu), step)
            shadow = None if self.state.shadow is None else self.params_of({**current, **state["ema"]["shadow"]})
            self.state = self.replicated(self.state.replace(params=self.params_of(current), opt_state=opt_state,
                                                            shadow=shadow, step=jax.numpy.asarray(step)))
            self.restore_position(state)


class JaxGameRun(EngineRun):
    """A run of a ``JaxGame`` (a GAN's players) in JAX, stepped as the engine steps a model that writes its own step
    (``engine/players.py``): one optax AdamW per player, each on the run's schedule; ``update(name, objective,
    batch, noise)`` and ``update_together({name: objective}, batch, noise)`` are ``game.update`` of those players,
    compiled once for each set of objectives. The generator's running statistics and the discriminator's
    spectral-norm vectors (``batch_stats``) pass from each objective to the next."""

    def __init__(self, cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1):
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
        self.compiled: dict[tuple[str, ...], object] = {}  # game.update of a set of players, jitted once
        self.norms: dict[str, list] = {name: [] for name in self.twin.players}

    # The layouts
    def part(self, params: dict, player: str) -> dict:
        """A player's share of the params: its top-level collections."""
        return {k: v for k, v in params.items() if k in self.twin.players[player]}

    def variables_of(self, state: dict) -> tuple[dict, dict]:
        """(params, batch_stats) of a state_dict in the torch layout."""
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
        state = self.net.state_dict()
        out = {**state, **self.to_torch(self.shadow if average else self.params)}
        if self.stats:
            torch_name = {statistic_name(name): name for name in state if statistic_name(name)}
            for name, value in flax_to_torch(numpy_tree(self.stats), self.torch_stats).items():
                out[torch_name[name]] = torch.from_numpy(np.array(value, copy=True)).to(state[torch_name[name]].dtype)
        for name in state:
            if name.endswith("num_batches_tracked"):
                out[name] = torch.tensor(self.tracked, dtype=state[name].dtype)
        return out

    # The step's utilities
    def update(self, player: str, objective, batch, noise):
        """One update of ``player`` (the engine's ``run.update(player=loss)``) -> (its loss, its terms)."""
        return self.update_together({player: objective}, batch, noise)[player]

    def update_together(self, objectives: dict, batch, noise) -> dict[str, tuple]:
        """One update of each player in ``objectives`` on one batch (``game.update``: every gradient at the current
        params, then every step) -> {player: (its loss, its terms)}."""
        names = tuple(objectives)
        if names not in self.compiled:
            self.compiled[names] = jax.jit(partial(game.update, self.twin.players, self.tx, objectives))
        states = {name: self.opt_state[name] for name in objectives}
        self.params, states, self.stats, out = self.compiled[names](self.params, states, self.stats, batch, noise,
                                                                    self.lr)
        self.opt_state.update(states)
        for name, (_, _, norm) in out.items():
            self.norms[name].append(norm)
        self.forwards += 1  # one training-mode pass of the generator, however many players step on it
        return {name: (loss, terms) for name, (loss, terms, _) in out.items()}

    def advance(self) -> dict:
        """One round of the game, then the EMA; -> the logged values (JAX arrays): the loss, the terms and each
        player's mean gradient norm over the round (``grad_norm_<player>``)."""
        self.forwards = 0
        self.lr = np.asarray(learning_rate(self.cfg.train, self.step), dtype=self.dtype or "float32")
        loss, terms = self.train_step(self, self.cfg.model)
        self.tracked += self.forwards if self.stats else 0
        if self.shadow is not None:
            self.shadow = ema_update(self.shadow, self.params, self.cfg.train.ema_decay, self.step + 1)
        norms = {f"grad_norm_{name}": sum(v) / len(v) for name, v in self.norms.items() if v}
        self.norms = {name: [] for name in self.twin.players}
        self.step += 1
        return {"loss": loss, **norms, **terms}

    def learning_rates(self, step: int) -> dict[str, float]:
        """Each player's learning rate at ``step`` (the engine logs ``lr_<player>``)."""
        return {f"lr_{name}": learning_rate(self.cfg.train, step) for name in self.twin.players}

    @property
    def averaged(self) -> bool:
        """Whether the run keeps an EMA of its weights (``train.ema_decay``), which its samples are drawn with."""
        return self.shadow is not None

    # Checkpoints
    def checkpoint_state(self) -> dict:
        """The training state as the engine checkpoints a custom step's (``engine.training_state``)."""
        self.net.load_state_dict(self.weights())
        names = dict(self.net.named_parameters())

        def to_torch(tree):  # a player's moments, the other players' entries filled in (and dropped)
            return self.to_torch({**self.params, **tree})

        players = {name: torch_optimizer_state(self.net, self.cfg.train, self.opt_state[name], self.step,
                                               self.player_names[name], to_torch)
                   for name in self.twin.players}
        ema = None if self.shadow is None else {
            "updates": self.step, "shadow": {k: v for k, v in self.weights(average=True).items() if k in names}}
        return training_state({"players": players}, ema, self.position(), self.noise)

    def restore(self, run_dir: Path) -> None:
        """Continue from the run's newest checkpoint, as the engine's ``--resume`` does for a custom step: the weights
        and statistics, each player's AdamW moments and counts, the EMA, then the run's place."""
        state = reopen(run_dir, self.cfg.model_name, self.net, getattr(self.module, "CHECKPOINT_VERSIONS", None))
        with restoring(run_dir):
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
            self.restore_position(state)


def restoring(run_dir: Path):
    """The context in which a run reads its checkpoint's training state: a state that does not fit is one line
    (``engine.training_state.unfit``)."""
    from practice_torch.engine.training_state import unfit

    return unfit(run_dir)


def new_run(cfg, dtype: str | None = None, parts: dict | None = None, devices: int = 1) -> JaxRun | JaxGameRun:
    """The model's run in JAX: a ``JaxGameRun`` for a model whose twin is a ``JaxGame``, else a ``JaxRun``; on
    ``devices`` local devices, data-parallel (``data_mesh``)."""
    if writes_own_step(get_model(cfg.model_name), cfg.model):
        return JaxGameRun(cfg, dtype, parts, devices)
    return JaxRun(cfg, dtype, parts, devices)

