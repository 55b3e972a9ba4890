"""``seeds``: several seeds of one model trained at once in one process (``torch.func.vmap`` over their stacked
parameters), against the same seeds trained one after another through the engine's step.

On a GPU a small model's step is bound by the host, not by the arithmetic: on an H200 the GPU was busy 14-28% of the
MLPs' steps on moons (docs/gpu.md). A sweep over seeds then pays that cost once per seed (on a 2-core CPU the
arithmetic counts as much: there five seeds at once ran 1.0-2.0 times as fast, docs/gpu.md). Stacking the seeds'
parameters along a new first dimension and taking every seed's gradient in one ``vmap(grad(loss))`` pays it once per
step for all of them.

Per model (``--seeds-models``; the default step only: no custom step, closed-form update, control task or unpaired
domains), ``--seeds`` runs of its preset (``train.seed`` 0 .. N - 1; ``--preset``: quick on a CPU, full on a GPU,
compile off), ``--seeds-steps`` steps each, two ways:

- ``one at a time``: each seed's trainer takes its steps by the engine's ``_train_step`` (the loss, backward,
  global-norm clipping, AdamW, the schedule, the EMA, the logged values), the seeds in turn;
- ``at once``: the same seeds' networks stacked (``torch.func.stack_module_state``); a step draws every seed's batch
  and noise from that seed's own trainer (the batches the first way sees), takes every seed's gradient in one
  ``vmap(grad(loss))``, clips each seed's gradient by its own global norm (``clip_grad_norm_``'s rule), and updates
  the stack with one AdamW, one schedule and one EMA: elementwise, so each seed's update is its own (it logs
  nothing: the host work of the first way's logged values is not done here).

A row: examples/s both ways and the speed-up; ``weights_gap``: how far the two ways' weights end apart, the largest
over the seeds of ||w_at_once - w_one_at_a_time|| / ||w_one_at_a_time|| (a batched matrix product sums in another
order, so the two agree to rounding, not to the bit, and rounding grows over the steps); ``seeds_gap``, the control:
the same distance between seed 0's and seed 1's weights trained one at a time, what two different runs look like.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from benchmarks.timing import sync

__all__ = ["seeds", "seeds_row", "StackedSeeds"]


class StackedSeeds:
    """The default training step of several trainers (one seed each, built alike) as one step over their stacked
    parameters: ``step()`` takes every trainer's next batch and noise and updates every seed's weights in one
    ``vmap``. The trainers' own networks are not touched; ``weights(k)`` gives seed k's."""

    def __init__(self, trainers: list):
        unsupported = [why for why, found in (
            ("its own training step", trainers[0].custom is not None),
            ("a closed-form update", trainers[0].update is not None),
            ("a control task's episodes", trainers[0].environments is not None),
            ("unpaired domains beside its batches", bool(trainers[0].domains)),
            ("train.compile (vmap runs the loss eagerly here)", trainers[0].cfg.train.compile),
            ("torchrun", trainers[0].procs.is_distributed)) if found]
        if unsupported:
            raise ValueError(f"{trainers[0].cfg.model_name} trains with {unsupported[0]}: "
                             "only the engine's default step is stacked")
        from practice_torch.engine.ema import EMA
        from practice_torch.engine.players import new_optimizer, new_schedule

        self.trainers, t = trainers, trainers[0].cfg.train
        self.train, self.step_number = t, 0
        params, self.buffers = stack_module_state([tr.loss for tr in trainers])  # names as LossOf's: "net.<name>"
        learns = {name for name, p in trainers[0].loss.named_parameters() if p.requires_grad}
        self.params = {k: v.detach() for k, v in params.items() if k in learns}  # (N, ...) each
        self.frozen = {k: v.detach() for k, v in params.items() if k not in learns}
        self.base = copy.deepcopy(trainers[0].loss).to("meta")  # the structure; the weights come with each call
        self.optimizer = new_optimizer(list(self.params.values()), t, t.lr, t.betas,
                                       fused=trainers[0].device.type == "cuda")
        self.scheduler = new_schedule(self.optimizer, t)
        self.ema = EMA(self, t.ema_decay) if t.ema_decay > 0 else None  # the engine's, over the stack (elementwise)

        def seed_loss(params, frozen, buffers, batch, noise, step):
            loss, terms = functional_call(self.base, ({**params, **frozen}, buffers), (batch, noise, step))
            return loss, terms

        self.gradients = vmap(grad(seed_loss, has_aux=True), in_dims=(0, 0, 0, 0, 0, None))

    def step(self) -> dict[str, torch.Tensor]:
        """One step of every seed; returns the seeds' terms, each (N, ...)."""
        drawn = [tr._next_batch() for tr in self.trainers]
        batch = tuple(torch.stack(parts) for parts in zip(*(b for b, _ in drawn)))
        noise = {k: torch.stack([n[k] for _, n in drawn]) for k in drawn[0][1]}
        with self.trainers[0]._autocast():
            grads, terms = self.gradients(self.params, self.frozen, self.buffers, batch, noise, self.step_number)
        # each seed's gradient clipped by its own global norm: clip_grad_norm_'s coefficient, seed by seed
        norms = torch.stack([g.flatten(1).float().norm(dim=1) for g in grads.values()], 1).norm(dim=1)  # (N,)
        scale = ((self.train.grad_clip or math.inf) / (norms + 1e-6)).clamp(max=1.0)
        for name, g in grads.items():
            self.params[name].grad = g * scale.reshape(-1, *[1] * (g.ndim - 1)).to(g.dtype)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self)
        self.step_number += 1
        return terms

    def named_parameters(self):
        """The stacked trainable weights by name, as a module lists its own (what the engine's ``EMA`` reads)."""
        return self.params.items()

    def weights(self, k: int) -> dict[str, torch.Tensor]:
        """Seed k's trainable weights, named as its network names them."""
        return {name.removeprefix("net."): p[k].detach() for name, p in self.params.items()}


def gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||b|| over every tensor of ``b`` (by name)."""
    diff = sum(float(torch.sum((a[k].double() - v.double()) ** 2)) for k, v in b.items())
    size = sum(float(torch.sum(v.double() ** 2)) for v in b.values())
    return math.sqrt(diff / size)


def trainable(trainer) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in trainer.net.named_parameters() if p.requires_grad}


def seeds_row(name: str, preset: str, device: str, n: int, steps: int, overrides=()) -> dict:
    """One model's row (see the module's docstring); ``overrides``: ``--set``-style changes to its preset."""
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    base = apply_overrides(get_model(name).default_config(preset),
                           [f"train.device={device}", "train.compile=false", *overrides])
    row = {"model": name, "dataset": base.data.name, "preset": preset, "seeds": n, "steps": steps,
           "batch": base.train.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        def built(kind):
            return [new_trainer(apply_overrides(copy.deepcopy(base), [f"train.seed={k}"]), Path(tmp) / f"{kind}{k}")
                    for k in range(n)]

        try:
            alone, together = built("alone"), built("together")
            stacked = StackedSeeds(together)
        except ValueError as exc:
            return {**row, "note": f"skipped: {exc}"}
        try:
            on = alone[0].device
            for tr in alone:  # the first steps untimed: allocations, the dispatcher's caches
                tr._train_step()
            stacked.step()
            sync(on)
            start = time.perf_counter()
            for tr in alone:
                for _ in range(steps - 1):
                    tr._train_step()
            sync(on)
            one = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(steps - 1):
                stacked.step()
            sync(on)
            many = time.perf_counter() - start
            examples = n * (steps - 1) * alone[0].batch_size
            weights_gap = max(gap(stacked.weights(k), trainable(tr)) for k, tr in enumerate(alone))
            seeds_gap = gap(trainable(alone[1]), trainable(alone[0]))
        finally:
            for tr in alone + together:
                tr.close()
    return {**row, "one_at_a_time_examples_per_s": examples / one, "at_once_examples_per_s": examples / many,
            "speedup": one / many, "weights_gap": weights_gap, "seeds_gap": seeds_gap, "note": ""}


def seeds(args) -> list[dict]:
    """Rows of ``seeds_row`` for ``--seeds-models``, each handed to ``args.save`` as it is measured."""
    if args.seeds < 2 or args.seeds_steps < 2:
        raise SystemExit(f"error: --seeds and --seeds-steps are 2 or more, got {args.seeds} and {args.seeds_steps}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = args.preset or ("full" if device == "cuda" else "quick")
    rows = []
    from practice_torch.engine.config import ConfigError
    from practice_torch.models import UnknownModel

    for name in args.seeds_models.split(","):
        try:
            row = seeds_row(name, preset, device, args.seeds, args.seeds_steps, args.seeds_set)
        except (UnknownModel, ConfigError) as exc:
            raise SystemExit(f"error: {exc}") from None
        print(f"  {name}: " + (row["note"] or f"{row['at_once_examples_per_s']:.0f} examples/s at once against "
                                             f"{row['one_at_a_time_examples_per_s']:.0f} one at a time "
                                             f"({row['speedup']:.2f}x); weights {row['weights_gap']:.1e} apart "
                                             f"(two seeds: {row['seeds_gap']:.2f})"), flush=True)
        rows.append(row)
        if getattr(args, "save", None):
            args.save(rows)
    return rows
