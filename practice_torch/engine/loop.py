"""The training loop shared by every model.

One step (every rank, in this order, so that a resumed run repeats it exactly):
  1. the next global batch of indices (``GlobalBatches``), this rank's share fetched to the device;
  2. the model's noise for the whole global batch from the engine's generator, this rank's rows (a model with
     ``domains``, unpaired sets of examples beside the split, gets a global batch of rows of each appended to its
     batch, drawn first from the same generator);
  3. loss = model.loss(net, config, batch, noise, step) under autocast (bf16 if asked), backward (DDP averages);
  4. clip the global gradient norm; all-reduce [loss, grad norm, terms, stop flag] and add them, on the device, to
     the log window's sums;
  5. optimizer step (AdamW, or SGD with momentum), warmup + schedule LR step, EMA update.
The host reads those sums only at a synchronisation point (``sync_every``): every step on a CPU, where a read costs
nothing; on a GPU at the log and checkpoint steps and the last one (``train.sync_every`` overrides), so the host
queues steps ahead of the device. There a non-finite loss or gradient norm anywhere in the window stops the run
(``Diverged``) before anything is saved, so the last checkpoint on disk is a good one, and the stop flag is read.
A model module that defines ``update(net, config, batch, noise, step) -> (loss, terms)`` (a closed-form update, e.g. EM)
replaces 3-6: the engine calls it under ``torch.no_grad()`` in full precision (no autocast, DDP or compile),
logs the norm of the change of the net's floating-point state (``update_norm``) instead of ``grad_norm``,
stops on a non-finite loss or state (the update has already run in place, but nothing is saved after it),
and leaves the optimizer and the LR schedule alone. Under torchrun the model's update must sum its
statistics over the ranks itself (``torch.distributed.all_reduce``) so that every rank makes the same update.
A model module that writes its own step (``players`` and ``train_step``, ``engine/players.py``) replaces 1-5 with
it: the step takes its batches and noise through ``run.next_batch`` (in the same order, so a resumed run repeats it),
updates each player with ``run.update`` (its own optimizer, clipping, the gradient averaged over the ranks: no DDP
wrapper), and the engine steps every player's schedule, the EMA and the logging as for any model.
On a control task (``data/control.py``: an environment, not a data set) such a step plays the engine's
``Environments`` (``run.environments``, ``train.batch_size`` of them) with actions drawn from ``run.next_noise()``;
the engine checkpoints their episodes in progress in place of the data order, replays them on resume, and logs the
environment steps (``env_steps``, and ``examples_per_s`` counts them).
A model module that defines ``validate(net, config, batch) -> terms`` is scored on held-out data at every log step: the next
``train.val_batch`` examples of the validation split (in order, cycling, from the step number: no state to save), in
eval mode, without gradients, under the run's autocast; the terms are logged beside the training loss.
With ``train.early_stop`` naming one of those terms, the run stops, as a completed run (samples and loss curves
written), once the term has not reached a new minimum for ``train.patience`` log steps; the best value and its step
are checkpointed, so a resumed run keeps counting.
SIGINT/SIGTERM set the stop flag: the step finishes, a checkpoint is written and ``run`` returns.
"""

from __future__ import annotations

import gc
import math
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from practice_torch.data.control import Environments
from practice_torch.engine import RunError, distributed
from practice_torch.engine.batches import GlobalBatches, fetch, in_memory, on_device, shard, to_device
from practice_torch.engine.bookkeeping import StopOnSignals, is_checkpoint_step, is_log_step
from practice_torch.engine.checkpoint import CheckpointError, current_version, save_checkpoint
from practice_torch.engine.config import ConfigError, RunConfig, check_train, derive_seed
from practice_torch.engine.ema import EMA
from practice_torch.engine.interface import ModelModule, writes_own_step
from practice_torch.engine.metrics import MetricsLog
from practice_torch.engine.players import StepRun, check_players, new_optimizer, new_schedule, player_optimizers
from practice_torch.engine.runs import (
    CHECKPOINTS,
    Parent,
    build_net,
    dataset_info,
    ema_copy,
    end_of_run,
    load_split,
    reopened_parents,
    start_run,
    validation_terms,
    write_environment,
)
from practice_torch.engine.threads import ThreadCount
from practice_torch.engine.training_state import reopen, restore_position, training_state, unfit
from practice_torch.engine.window import Diverged, LogWindow, Spent, check_finite, check_name  # noqa: F401
from practice_torch.progress import progress

STOP = "_stop"  # the stop flag's place among the summed values (never logged)


@dataclass(frozen=True)
class Outcome:
    step: int
    signal: int | None = None  # the signal that stopped the run early, if any
    files: tuple[Path, ...] = ()  # what the end of the run wrote (samples, loss curves)
    early_stop: tuple[float, int] | None = None  # (best value, its step) when train.early_stop ended the run
    loss: float | None = None  # the mean loss of the last log window (None: nothing logged)
    threads: tuple[int, ...] = ()  # the thread team's sizes in turn, where the load made it change (CPU)


class LossOf(nn.Module):
    """The model's loss as a forward pass, so that DDP and torch.compile see the whole computation. ``config`` (the
    model's) is fixed for the run; ``step`` (an int) costs a compiled loss nothing unless the loss computes with it,
    when each new value is compiled anew."""

    def __init__(self, net: nn.Module, loss, config):
        super().__init__()
        self.net, self.loss, self.config = net, loss, config

    def forward(self, batch, noise, step: int):
        return self.loss(self.net, self.config, batch, noise, step)


def compiled(loss: nn.Module, mode: str) -> nn.Module:
    """``torch.compile`` of the loss (forward and, through AOTAutograd, backward; the sampler and the evaluations
    stay eager). Every step has the same shapes (whole batches, fixed crops), so shapes are static
    (``dynamic=False``): one compilation, no dynamic-shape kernels. ``mode``: inductor's, e.g. ``reduce-overhead``
    (CUDA graphs of the step; on a CPU the same as ``default``) or ``max-autotune-no-cudagraphs``."""
    return torch.compile(loss, mode=None if mode == "default" else mode, dynamic=False)


def logged_values(values: list[torch.Tensor], stop: torch.Tensor) -> torch.Tensor:
    """A step's logged values (loss, checks, terms) and the stop flag as one float32 vector on the stop flag's
    device. A step may report a value it computed on the host (TRPO's line search, a judge's scores, an ODE
    solver's evaluation count): it is copied to the device here, where a CUDA run could not stack it with the rest
    (the failure of cnf, trpo, reward_model and dpo on an H200); a value already there is not copied.
    values: each (), stop: () -> (len(values) + 1,)."""
    return torch.stack([*(v.detach().float().to(stop.device) for v in values), stop])


class Trainer:
    """Everything is checked and loaded here (data, network, checkpoint); nothing is written before ``run``."""

    def __init__(self, model: ModelModule, cfg: RunConfig, run_dir: Path, resume: bool = False,
                 parents: dict[str, Parent] | None = None, leaves_group: bool = False):
        self.cfg, self.run_dir, t = cfg, run_dir, cfg.train
        # the trained runs this one builds on (a model's BUILDS_ON): handed in by practice_torch.models, which opens
        # them through the registry; on resume, without one, those its builds_on.json records
        self.parents = parents if parents is not None else reopened_parents(run_dir) if resume else {}
        check_train(t)
        if t.rng != "torch":
            raise ConfigError(f"train.rng={t.rng}: the PyTorch engine draws a step's noise from its torch generator "
                              "(train.rng=torch); noise drawn with jax.random is python -m practice_jax train's")
        self.model = model
        self.versions = getattr(model, "CHECKPOINT_VERSIONS", None)  # {version: what changed}; None: version 1
        info = dataset_info(cfg.data)
        self.procs, self.device, self.joined_group = distributed.setup(t.device)
        self.joined_group |= leaves_group  # a group its caller joined for it (practice_torch.models, prerequisites)
        # train.threads fixes the team (small-op models, flows and EM, run faster on one); 0 on a CPU: the cores other
        # processes leave free, read as the run goes (engine/threads.py)
        self.threads = ThreadCount(t.threads, adaptive=self.device.type == "cpu")
        # the host reads the device's logged sums every sync_every steps (and at log and checkpoint steps): every step
        # on a CPU (free there, and a SIGTERM is seen at once), only at those steps on a GPU
        self.sync_every = t.sync_every or (1 if self.device.type == "cpu" else t.log_every)
        self.accumulator_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        torch.manual_seed(t.seed)
        # the model writes its own step (engine/players.py)
        self.custom = self.model.train_step if writes_own_step(self.model, cfg.model) else None
        self.environments: Environments | None = None  # a control task's episodes, in place of a split's batches
        if info.environment is not None:
            self.environments = self._environments(info)
            self.train_set = None
        else:
            self.train_set = on_device(in_memory(load_split(cfg.data, "train", cfg.data.limit)), self.device)
            self.train_set.run_data = cfg.data  # in_memory and on_device may make a new data set: the split's own again
        self.net = build_net(self.model, cfg, info, self.parents).to(self.device)
        self.domains = self._domains()  # the unpaired domains a step draws from beside its batch (CycleGAN, DANN)
        if t.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.update = getattr(self.model, "update", None)  # a closed-form update (EM) in place of the gradient step
        self.validate = getattr(self.model, "validate", None) if t.val_batch else None  # held-out terms at log steps
        self.val_set = on_device(in_memory(load_split(cfg.data, "val")), self.device) if self.validate is not None \
            else None
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        if not trainable and self.update is None:
            raise RunError(f"{cfg.model_name} has no trainable parameters and no closed-form update")

        fused = self.device.type == "cuda"
        if self.custom is None:
            # an empty parameter group keeps the optimizer's and the schedule's state (and checkpoints) uniform
            self.optimizer = new_optimizer(trainable or [{"params": []}], t, t.lr, t.betas, fused)
            self.optimizers = {"": self.optimizer}
        else:
            players = self.model.players(self.net, cfg.model)
            check_players(players)
            self.optimizers = player_optimizers(players, t, fused)
            self.optimizer = None
            self.run_step = StepRun(players, self.optimizers, self._next_batch, self._autocast, t.grad_clip, self.procs,
                                    next_noise=self._next_noise, environments=self.environments)
        self.schedulers = {name: new_schedule(o, t) for name, o in self.optimizers.items()}
        self.scheduler = self.schedulers.get("")
        if self.environments is None:
            self.batch_size = t.batch_size or len(self.train_set)  # 0: every step sees the whole split (full-batch EM)
            self.batches = GlobalBatches(len(self.train_set), self.batch_size, t.seed, self.procs.rank,
                                         self.procs.world_size)
        else:
            self.batch_size, self.batches = t.batch_size, None  # the environments stepped in lockstep
        self.noise = torch.Generator().manual_seed(derive_seed(t.seed, "noise"))
        self.step, self.batches_taken = 0, 0  # batches_taken: for the examples/s of the log (this process's run)
        state = self._restore() if resume else {}
        self.best, self.stalled = state.get("early_stop", (math.inf, 0, 0))[:2], state.get("early_stop", (0, 0, 0))[2]
        self.ema = EMA(self.net, t.ema_decay) if t.ema_decay > 0 else None
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.loss: nn.Module | None = None  # the default step's loss (a custom step has none)
        if self.custom is None:
            loss: nn.Module = LossOf(self.net, self.model.loss, cfg.model)
            if self.procs.is_distributed and self.update is None:
                gpus = [self.device] if self.device.type == "cuda" else None
                loss = nn.parallel.DistributedDataParallel(loss, device_ids=gpus)
            self.loss = compiled(loss, t.compile_mode) if t.compile and self.update is None else loss
        self.stop = StopOnSignals()  # SIGINT/SIGTERM: finish the step, checkpoint, return
        self.stop_flags = torch.tensor([0.0, 1.0], device=self.device)  # the stop flag's two values, made once

    def _restore(self) -> dict:
        """The newest checkpoint (``engine.training_state``): the weights, then the optimizers and their schedules,
        then the run's place (data position, noise, every global RNG, the step)."""
        state = reopen(self.run_dir, self.cfg.model_name, self.net, self.versions)
        if self.custom is not None and "players" not in state:
            raise CheckpointError(f"{self.run_dir / CHECKPOINTS} was written by {self.cfg.model_name}'s one-loss step; "
                                  "this code writes its own step with its players' optimizers: it samples and "
                                  "evaluates, but to train further train it anew")
        with unfit(self.run_dir):
            if self.custom is None:
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
            else:
                for name, saved in state["players"].items():
                    self.optimizers[name].load_state_dict(saved["optimizer"])
                    self.schedulers[name].load_state_dict(saved["scheduler"])
            place = self.batches if self.environments is None else self.environments
            self.step = restore_position(state, place, self.noise)
        return state

    # The loop -----------------------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> Outcome:
        """Train to ``train.steps`` (or to ``stop_at``, then checkpoint, as an interruption would)."""
        t, main = self.cfg.train, self.procs.is_main
        end = t.steps if stop_at is None else min(stop_at, t.steps)
        if main:
            start_run(self.run_dir, self.cfg, self.parents, self.device, self.procs.world_size, self.step)
        distributed.barrier(self.procs)
        log = MetricsLog(self.run_dir, self.step) if main else None
        bar = progress(total=t.steps, initial=self.step, disable=not main, unit="step", every=t.log_every,
                       desc=f"{self.cfg.model_name} on {self.cfg.data.name}")
        window = LogWindow(self.examples_seen())  # loss, checks, terms and stop flag summed on the device
        checked = self.step  # the last step a sync found finite
        stop_early, last_loss, teams = False, None, [self.threads.threads]
        spent = Spent()  # the first step (compiling), validation and checkpoints, apart from the steps
        try:
            with self.stop:
                while self.step < end:
                    with spent.on("first_step") if not spent.seconds else nullcontext():
                        names, stats, lrs = self._train_step()
                    resized = self.threads.update()
                    if resized:
                        teams.append(self.threads.threads)
                        if main:
                            bar.write(f"{self.cfg.model_name}: {resized}", file=sys.stderr)
                    window.add(dict(zip(names, stats)), lrs)  # a GAN's players log different terms: each its own
                    log_step = is_log_step(self.step, t.log_every, end)
                    if not (log_step or self.step % t.checkpoint_every == 0 or self.step % self.sync_every == 0):
                        continue
                    host = window.read(lambda sums: torch.stack(sums).tolist())  # the one read per window
                    stop = host.pop(STOP) > 0
                    check_finite(host, window.steps, checked, self.step, self.run_dir / CHECKPOINTS,
                                 "try a lower train.lr or a train.grad_clip" if self.update is None else
                                 "the closed-form update failed")
                    checked = self.step
                    if log_step or stop:
                        means, rate = window.means(host, self.examples_seen())
                        if self.validate is not None:
                            with spent.on("validation"):
                                means.update(validation_terms(self.model, self.net, self.cfg, self.val_set,
                                                              self.step, self._to_device))
                        if t.early_stop and self._stalls(means) and self.step < t.steps:
                            stop_early = True
                        bar.set_postfix(loss=f"{means['loss']:.4g}", ex_per_s=f"{rate:.0f}", refresh=False)
                        last_loss = means["loss"]
                        if self.environments is not None:
                            means["env_steps"] = self.environments.steps
                        if log:
                            log.write(self.step, {**means, "examples_per_s": rate, "threads": self.threads.threads,
                                                  "time_s": window.elapsed()})
                        window.open(self.examples_seen())
                    bar.update(self.step - bar.n)  # after the postfix: in a log, a log step's line shows its loss
                    if is_checkpoint_step(self.step, t.checkpoint_every, end):
                        with spent.on("checkpoints"):
                            self.save()
                    if stop or stop_early:
                        break
        finally:
            bar.close()
            self.threads.restore()
            if log:
                log.close()
        self.save()
        if main:
            write_environment(self.run_dir, self.device, self.procs.world_size, self.step, finished=True,
                              spent=spent.seconds)
        resized = tuple(teams) if len(teams) > 1 else ()
        if self.stop.signal is not None or (self.step < t.steps and not stop_early):
            return Outcome(self.step, self.stop.signal, loss=last_loss, threads=resized)
        return Outcome(self.step, None, tuple(self.finish()) if main else (),
                       early_stop=self.best if stop_early else None, loss=last_loss, threads=resized)

    def examples_seen(self) -> int:
        """What this process has trained on: a data set's examples (a custom step may take several batches a step),
        or a control task's environment steps."""
        return self.batch_size * self.batches_taken if self.environments is None else self.environments.steps

    def _stalls(self, means: dict[str, float]) -> bool:
        """Early stopping: a new minimum of the ``train.early_stop`` term resets the count of log steps without one;
        True once that count reaches ``train.patience``."""
        t = self.cfg.train
        if t.early_stop not in means:
            raise RunError(f"train.early_stop={t.early_stop} is not a validation term of {self.cfg.model_name} "
                           f"(logged: {', '.join(sorted(means))})")
        if means[t.early_stop] < self.best[0]:
            self.best, self.stalled = (means[t.early_stop], self.step), 0
        else:
            self.stalled += 1
        return self.stalled >= t.patience

    def _train_step(self) -> tuple[list[str], torch.Tensor, dict[str, float]]:
        """One step: (the names of the logged values, [loss, checks, terms, stop flag] averaged over the ranks, on the
        device in float64, the step's learning rates by name). Nothing here waits for the device."""
        if self.custom is not None:  # the model's own step: its players updated inside (engine/players.py)
            lrs = {f"lr_{name}": s.get_last_lr()[0] for name, s in self.schedulers.items()}
            loss, terms = self.custom(self.net, self.cfg.model, self.step, self.run_step)
            checks = self.run_step.take_norms()
        else:
            batch, noise = self._next_batch()
            step = self._gradient_step if self.update is None else self._closed_form_step
            loss, checks, terms = step(batch, noise)
            lrs = {"lr": self.scheduler.get_last_lr()[0]} if self.update is None else {}
        names = ["loss", *checks, *sorted(terms), STOP]
        stop = self.stop_flags[int(self.stop.signal is not None)]  # on the device already: no copy per step
        stats = logged_values([loss, *checks.values(), *(terms[k] for k in sorted(terms))], stop)
        stats = distributed.reduce_mean(stats, self.procs).to(self.accumulator_dtype)
        if self.custom is None and self.update is None:
            self.optimizer.step()
        if self.update is None:
            with warnings.catch_warnings():  # a player that did not update this step (a critic-only run's generator)
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                for schedule in self.schedulers.values():
                    schedule.step()  # the schedule follows the run's step, whoever updated
        if self.ema is not None:
            self.ema.update(self.net)
        self.step += 1
        return names, stats, lrs

    def _next_batch(self) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """The next global batch's rows for this rank, on the device, and their rows of the model's noise."""
        if self.environments is not None:
            raise RunError(f"{self.cfg.data.name} is a control task: a step plays run.environments with "
                           "run.next_noise(), it has no batches")
        batch = tuple(self._to_device(x) for x in fetch(self.train_set, self.batches.next()))
        self.batches_taken += 1
        return batch + self._domain_batches(), self._next_noise()

    def _domain_batches(self) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], ...]:
        """This rank's rows of a global batch from each of the model's domains, in their order: rows drawn uniformly
        with replacement from the noise generator (before the model's noise, so a resumed run repeats them); a
        labelled domain's tensors (examples, labels) share their rows and come as a tuple."""
        if not self.domains:
            return ()
        rows = {name: torch.randint(len(parts[0]), (self.batch_size,), generator=self.noise)
                for name, parts in self.domains.items()}
        rows = shard(rows, self.procs.rank, self.procs.world_size)
        drawn = {name: tuple(self._to_device(t[to_device(rows[name], t.device)]) for t in parts)
                 for name, parts in self.domains.items()}
        return tuple(parts if self.labelled_domains[name] else parts[0] for name, parts in drawn.items())

    def _domains(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """The model's ``domains(config, train_set) -> {name: examples (N, ...) or (examples, labels (N, ...))}``,
        built once from the training split the engine loaded (so data.data_dir, data.classes and data.limit hold), on
        the device when they fit there, each as a tuple of tensors (``labelled_domains`` says which the model gave
        as one); {} for a model without them. ConfigError (one line) for a domain the data cannot give."""
        self.labelled_domains: dict[str, bool] = {}
        build = getattr(self.model, "domains", None)
        if build is None or self.train_set is None:  # a control task has no split to draw them from
            return {}
        data = self.cfg.data.name
        try:
            domains = build(self.cfg.model, self.train_set)
        except ValueError as exc:
            raise ConfigError(f"cannot draw {self.cfg.model_name}'s domains from {data}: {exc}") from None
        self.labelled_domains = {name: isinstance(value, tuple) for name, value in domains.items()}
        parts = {name: value if isinstance(value, tuple) else (value,) for name, value in domains.items()}
        empty = [name for name, tensors in parts.items() if not len(tensors[0])]
        if empty:
            raise ConfigError(f"{self.cfg.model_name}'s domain {empty[0]} has no examples in {data}'s training split "
                              "(data.classes or data.limit left none)")
        return {name: on_device(TensorDataset(*tensors), self.device).tensors for name, tensors in parts.items()}

    def _next_noise(self) -> dict[str, torch.Tensor]:
        """This rank's rows of the model's noise for a global batch (``draw_noise``), on the device."""
        noise = self.model.draw_noise(self.net, self.cfg.model, self.batch_size, self.noise)
        noise = shard(noise, self.procs.rank, self.procs.world_size)
        return {k: self._to_device(v) for k, v in noise.items()}

    def _environments(self, info) -> Environments:
        """A control task's environments, ``train.batch_size`` of them, reset with the run's training episodes
        (RunError, one line, for a model that learns from a data set, a batch size of 0 or torchrun)."""
        name, t = self.cfg.model_name, self.cfg.train
        if self.custom is None:
            raise RunError(f"{name} learns from a data set; {info.name} is a control task (an environment): train "
                           "ppo or trpo on it")
        if t.batch_size < 1:
            raise RunError(f"train.batch_size is the number of {info.name} environments stepped in lockstep; give "
                           "a positive one")
        if self.procs.is_distributed:
            raise RunError(f"{info.name} trains in one process: run it without torchrun")
        try:
            return Environments(info.environment, t.batch_size, derive_seed(t.seed, "episodes"))
        except ValueError as exc:
            raise RunError(f"data set {info.name}: {exc}") from None

    def _autocast(self):
        """The run's autocast context: bf16 with train.precision=bf16, else a no-op."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.train.precision == "bf16")

    def _gradient_step(self, batch, noise) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(loss, {'grad_norm'}, terms): the loss under autocast, backward (DDP averages), global-norm clipping."""
        t = self.cfg.train
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, terms = self.loss(batch, noise, self.step)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), t.grad_clip or math.inf)
        return loss, {"grad_norm": grad_norm}, terms

    def _closed_form_step(self, batch, noise) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(loss, {'update_norm'}, terms): the model's ``update`` in place, without autograd, in full precision;
        update_norm = |state after - state before| over the net's floating-point parameters and buffers."""
        before = {k: v.clone() for k, v in self.net.state_dict().items() if v.is_floating_point()}
        with torch.no_grad():
            loss, terms = self.update(self.net, self.cfg.model, batch, noise, self.step)
            after = self.net.state_dict()
            change = sum((torch.sum((after[k].double() - v.double()) ** 2) for k, v in before.items()),
                         torch.zeros((), dtype=torch.float64, device=self.device))
        return loss, {"update_norm": torch.sqrt(change)}, terms

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = to_device(x, self.device)
        if self.cfg.train.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # Checkpoints and the end of a run ----------------------------------------------------------------
    def save(self) -> None:
        if not self.procs.is_main:
            return
        if self.custom is None:
            optimizers = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        else:
            optimizers = {"players": {name: {"optimizer": o.state_dict(), "scheduler": self.schedulers[name].state_dict()}
                                      for name, o in self.optimizers.items()}}
        position = ({"batches": self.batches.state_dict()} if self.environments is None else
                    {"environments": self.environments.state_dict()})
        state = training_state(optimizers, None if self.ema is None else self.ema.state_dict(), position, self.noise,
                               (*self.best, self.stalled))
        save_checkpoint(self.run_dir / CHECKPOINTS, self.cfg.model_name, self.step, self.net.state_dict(), state,
                        current_version(self.versions))

    def finish(self) -> list[Path]:
        """What a completed run writes last (``engine.runs.end_of_run``): its samples, of the EMA's weights where it
        keeps them, and its loss curves."""
        net = self.net if self.ema is None else ema_copy(self.net, self.ema.weights(self.net))
        return end_of_run(self.model, self.cfg, net, self.run_dir)

    def close(self) -> None:
        """Leave the process group if this trainer joined it, after dropping the DDP wrapper that holds it (see
        ``distributed.teardown``); the trainer cannot train after this. A nested run only waits for every rank, so
        that none reads the run's files (rank 0 writes them) before they are there."""
        if self.environments is not None:
            self.environments.close()
        if not self.joined_group:
            distributed.barrier(self.procs)
            return
        self.loss = None
        gc.collect()  # the wrapper and anything else in a reference cycle with the group
        distributed.teardown(self.procs)
