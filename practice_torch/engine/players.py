"""A step of more than one loss: the model's own ``train_step``, its players, and the utilities the engine lends it.

Most models give the engine one ``loss`` and the engine takes the step (``loop.py``). A model whose step is more
than one loss and one optimizer, a GAN's two players say, writes the step itself, top to bottom, and defines beside
the interface:

    players(net, config) -> dict[str, Player]        the parameters each optimizer updates (and its own lr, betas)
    train_step(net, config, step, run) -> (loss, terms)

The engine builds one optimizer per player (``train.optimizer``: AdamW with ``train.lr``, ``train.betas`` and
``train.weight_decay`` unless the player names its own, or SGD with momentum), each with the run's warmup and
schedule over ``train.steps``, which then counts ``train_step`` calls (a GAN's generator updates). ``run`` is this
module's ``StepRun``, the engine's utilities for one step:

    run.next_batch()           (batch, noise): the next global batch's rows for this process, on the device, and
                               their rows of ``draw_noise``; every call takes the next batch (a critic's inner loop
                               sees a fresh batch at each update), in an order a resumed run repeats exactly
    run.next_noise()           the model's noise for a global batch (``draw_noise``) and no batch: what a control
                               task's step draws its actions from
    run.environments           the task's environments (``data/control.py``: ``train.batch_size`` of them stepped in
                               lockstep, their episodes in progress checkpointed and replayed on resume); None for a
                               data set
    run.autocast()             the run's autocast (bf16 with ``train.precision=bf16``), around the losses
    run.adam_state(name)       the player's AdamW as it stands (``AdamState``: its scheduled lr, betas, eps, decay,
                               steps taken and each parameter's moments): what a look-ahead that takes the
                               player's own next steps reads (the unrolled GAN's)
    run.update(name=loss, ...) one update of each named player: the gradient of its loss with respect to its own
                               parameters only (``backward(inputs=...)``, so one player's loss never moves another),
                               averaged over the processes under torchrun, clipped to ``train.grad_clip``, and its
                               AdamW step; several players at once take their gradients before any of them steps
                               (simultaneous updates, as the f-GAN's)

``loss`` is the figure logged as the run's loss (a GAN: the discriminator's plus the generator's), ``terms`` named
scalars logged beside it; the engine adds each player's mean gradient norm over the step (``grad_norm_<player>``),
stops the run on a non-finite one as on a non-finite loss, logs each player's learning rate (``lr_<player>``) and
checkpoints every optimizer and schedule. ``train.compile`` compiles the default step's loss only: a custom step runs
eager.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.engine import distributed
from practice_torch.engine.bookkeeping import lr_factor


@dataclass(frozen=True)
class Player:
    """One optimizer's share of the net: its parameters, and its own learning rate and Adam betas (None: the run's
    ``train.lr`` and ``train.betas``), so that two players may learn on two timescales (Heusel et al. 2017)."""

    parameters: list[nn.Parameter]
    lr: float | None = None
    betas: tuple[float, float] | None = None


@dataclass(frozen=True)
class AdamState:
    """An AdamW as it stands: its learning rate now (as scheduled), betas, eps and decoupled decay, the steps it has
    taken, and each parameter's first and second moments by ``id`` (``moments`` gives zeros before its first step)."""

    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    step: int
    exp_avg: dict[int, torch.Tensor]
    exp_avg_sq: dict[int, torch.Tensor]

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> AdamState:
        """The state of a one-group AdamW (or an Adam without weight decay, the same update), read without copying
        (the look-ahead does not write it). ValueError (one line) for an update a look-ahead of AdamW's steps would
        not repeat: an Adam whose ``weight_decay`` is an L2 term added to the gradient, AMSGrad, ``maximize``."""
        if len(optimizer.param_groups) != 1:
            raise ValueError(f"AdamState reads an optimizer of one parameter group, got {len(optimizer.param_groups)}")
        group = optimizer.param_groups[0]
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            raise ValueError(f"AdamState reads Adam or AdamW, got {type(optimizer).__name__}")
        decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
        if group["weight_decay"] and not decoupled:
            raise ValueError(f"AdamState reads AdamW's decoupled decay; this Adam adds weight_decay={group['weight_decay']} "
                             "to the gradient (L2), which the look-ahead would not: use AdamW, or weight_decay=0")
        if group.get("amsgrad") or group.get("maximize"):
            raise ValueError("AdamState reads plain AdamW steps: amsgrad and maximize change the update")
        states = [optimizer.state[p] for p in group["params"] if optimizer.state.get(p)]
        return cls(float(group["lr"]), tuple(group["betas"]), float(group["eps"]), float(group["weight_decay"]),
                   int(states[0]["step"]) if states else 0,
                   {id(p): optimizer.state[p]["exp_avg"] for p in group["params"] if optimizer.state.get(p)},
                   {id(p): optimizer.state[p]["exp_avg_sq"] for p in group["params"] if optimizer.state.get(p)})

    def moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, v) of parameter ``p``, detached: the optimizer's, or zeros where it has not stepped ``p`` yet."""
        if id(p) not in self.exp_avg:
            return torch.zeros_like(p).detach(), torch.zeros_like(p).detach()
        return self.exp_avg[id(p)].detach(), self.exp_avg_sq[id(p)].detach()


class StepRun:
    """The engine's utilities for one custom step (module docstring). ``next_batch`` and ``autocast`` are the
    trainer's; the players' optimizers, clipping and the gradient averaging live here."""

    def __init__(self, players: dict[str, Player], optimizers: dict[str, torch.optim.Optimizer],
                 next_batch: Callable[[], tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]],
                 autocast: Callable[[], AbstractContextManager], grad_clip: float, procs: distributed.Processes,
                 next_noise: Callable[[], dict[str, torch.Tensor]] | None = None, environments=None):
        self.players, self.optimizers, self.grad_clip, self.procs = players, optimizers, grad_clip, procs
        self.next_batch, self.autocast, self.next_noise = next_batch, autocast, next_noise
        self.environments = environments
        self.norms: dict[str, list[torch.Tensor]] = {name: [] for name in players}

    def update(self, **losses: torch.Tensor) -> None:
        """One update of each named player (``run.update(discriminator=d_loss)``): gradients of every loss first,
        each with respect to its own player's parameters only, then the steps."""
        unknown = sorted(set(losses) - set(self.players))
        if unknown:
            raise KeyError(f"no player {', '.join(unknown)}; the players are {', '.join(self.players)}")
        names = list(losses)
        for i, name in enumerate(names):
            params = self._trainable(name)
            self.optimizers[name].zero_grad(set_to_none=True)
            losses[name].backward(inputs=params, retain_graph=i < len(names) - 1)
        for name in names:
            params = [p for p in self._trainable(name) if p.grad is not None]
            if self.procs.is_distributed:
                for p in params:  # the mean gradient of the global batch, as DDP's
                    torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
                    p.grad.div_(self.procs.world_size)
            self.norms[name].append(torch.nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf))
            self.optimizers[name].step()

    def adam_state(self, name: str) -> AdamState:
        """The player's AdamW as it stands (``AdamState``), for a look-ahead that takes its next steps."""
        return AdamState.of(self.optimizers[name])

    def take_norms(self) -> dict[str, torch.Tensor]:
        """{grad_norm_<player>: the mean of its gradient norms over the step's updates} of the players that stepped,
        and forget them (the next step starts afresh)."""
        norms = {f"grad_norm_{name}": torch.stack(values).mean() for name, values in self.norms.items() if values}
        self.norms = {name: [] for name in self.players}
        return norms

    def _trainable(self, name: str) -> list[nn.Parameter]:
        return [p for p in self.players[name].parameters if p.requires_grad]


def new_optimizer(params, train, lr: float, betas, fused: bool) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``params``: AdamW (``betas``, decoupled ``train.weight_decay``), or SGD with
    ``train.momentum`` (``train.weight_decay`` as an L2 term, as Ganin et al. train DANN)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=train.weight_decay, fused=fused)


def new_schedule(optimizer: torch.optim.Optimizer, train) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's learning-rate schedule on ``optimizer``: ``train.warmup_steps`` of warmup, then ``train.schedule``
    over ``train.steps`` (``bookkeeping.lr_factor``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, train.warmup_steps, train.steps, train.min_lr_ratio, train.schedule))


def player_optimizers(players: dict[str, Player], train, fused: bool) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per player (``new_optimizer``), with the run's settings where the player names none."""
    return {name: new_optimizer(p.parameters, train, p.lr if p.lr is not None else train.lr,
                                p.betas if p.betas is not None else train.betas, fused)
            for name, p in players.items()}


def check_players(players: dict[str, Player]) -> None:
    """ValueError (one line) unless the players are non-empty and share no parameter."""
    seen: dict[int, str] = {}
    for name, player in players.items():
        if not player.parameters:
            raise ValueError(f"player {name!r} has no parameters")
        for p in player.parameters:
            if id(p) in seen:
                raise ValueError(f"a parameter belongs to two players, {seen[id(p)]!r} and {name!r}")
            seen[id(p)] = name
