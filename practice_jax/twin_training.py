"""Twin training: a short run of a trainable model in both backends (a ``RunCase``; the cases are
``practice_jax/twin_cases.py``), the PyTorch engine's step against the JAX trainer's (``practice_jax/runs.py``), from
the same weights, batches and noise, compared as the spec cases are (``project.compare``): the loss of every
step, the weights and the EMA's weights after the last. ``run_case`` runs one; ``caught`` runs one under a fault.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from practice_jax.runs import engine_start, new_run
from practice_jax.state import optimizer, player_optimizer
from project.compare import Tolerance, compare_trees, tolerance
from shared_specs.runner import CaseResult, backends


@dataclass(frozen=True)
class RunCase:
    """``steps`` training steps of the trainable ``model`` (its quick preset on ``dataset`` with ``overrides``) in
    both backends: the PyTorch engine's default step on the model's adapter (loss, backward, clipping, AdamW, the
    warmup + cosine schedule, the EMA), or its own step on its players, and ``python -m practice_jax train``'s jitted
    step on its flax twin, from the same weights (the PyTorch network built with the run's seed), batches and noise
    (the engine's), in ``dtype`` on both sides."""

    id: str
    model: str
    overrides: tuple[str, ...] = ()
    dataset: str | None = None
    steps: int = 50
    dtype: str = "float64"
    level: str = "step"
    kind: str = "run"


def run_case(case: RunCase, alter: Callable[[dict], dict] | None = None) -> CaseResult:
    """Both runs of ``case`` compared (``alter``: a fault in the JAX run's parts, see ``jax_run``); a crash in either
    is a failed result naming the error, as a spec case's is."""
    start = time.perf_counter()
    try:
        backends()  # full precision on both sides (float64 in JAX, no TF32 in torch)
        reference, begun, inert = torch_run(case)
        if compare_trees(reference["weights"], begun, Tolerance(0.0, 0.0)).passed:
            raise AssertionError("the training steps left every weight unchanged: the case checks nothing")
        twin = jax_run(case, alter)
        for run in (reference, twin):  # the parameters the loss does not depend on (INERT) are not compared
            run.update({k: {n: v for n, v in run[k].items() if n not in inert} for k in ("weights", "ema") if k in run})
        output, error = compare_trees(twin, reference, tolerance(case.level, case.dtype)), None
    except Exception as exc:  # a crash in either backend is a failed case, reported by name
        output, error = None, f"{type(exc).__name__}: {exc}"
    return CaseResult(case.id, case.kind, case.dtype, case.level, output, seconds=time.perf_counter() - start,
                      error=error)


def caught(case: RunCase, fault: str, alter: Callable[[dict], dict] | None = None) -> str:
    """The failure message of ``case`` run under a deliberate ``fault`` (a negative control: a fault the test has
    put into the JAX side, or ``alter``'s); AssertionError when the fault goes unnoticed."""
    result = run_case(case, alter)
    if result.passed:
        raise AssertionError(f"{fault} on {case.id} went unnoticed")
    return result.message()


def run_config(case):
    """The run of a ``RunCase``: its model's quick preset on its data set, ``case.steps`` steps, its overrides."""
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model

    return apply_overrides(get_model(case.model).default_config("quick", case.dataset),
                           [f"train.steps={case.steps}", "train.device=cpu", *case.overrides])


# A parameter whose gradient never exceeds this share of the largest gradient is one the loss does not depend on
# (a bias before a normalisation, which removes it): its gradient is rounding noise, which Adam divides by its own
# size, so each backend moves it by its own noise. It is not compared; everything it could affect is.
INERT = {"float64": 1e-10, "float32": 1e-4}


_TORCH_RUNS: dict = {}  # case -> torch_run's result: a case's negative controls alter only the JAX side


def torch_run(case) -> tuple[dict, dict, list[str]]:
    """``reference_run(case)``, computed once per case in a process (a copy each time)."""
    import copy

    if case not in _TORCH_RUNS:
        _TORCH_RUNS.clear()  # one case at a time is enough for its controls
        _TORCH_RUNS[case] = reference_run(case)
    return copy.deepcopy(_TORCH_RUNS[case])


def reference_run(case) -> tuple[dict, dict, list[str]]:
    """The PyTorch reference of a ``RunCase``: the default step's (``default_reference_run``) or, for a model that
    writes its own step, the engine's custom step on its players (``game_reference_run``)."""
    from practice_torch.models import get_model, writes_own_step

    if writes_own_step(get_model(case.model), run_config(case).model):
        return game_reference_run(case)
    return default_reference_run(case)


def game_reference_run(case) -> tuple[dict, dict, list[str]]:
    """As ``default_reference_run``, for a model that writes its own step (a GAN): its ``train_step`` on the engine's
    own ``StepRun`` (one AdamW per player, clipping, each player's LambdaLR schedule stepped every step), batches
    and noise as the engine draws them, in ``case.dtype``; the loss is the step's (the players' summed)."""
    import contextlib

    import torch

    from practice_torch.engine.batches import fetch
    from practice_torch.engine.distributed import Processes
    from practice_torch.engine.ema import EMA
    from practice_torch.engine.players import StepRun, new_schedule, player_optimizers

    cfg = run_config(case)
    t, dtype = cfg.train, getattr(torch, case.dtype)
    module, train_set, net, batches, generator = engine_start(cfg, case.dtype)
    start = floating_state(net)
    players = module.players(net, cfg.model)
    optimizers = player_optimizers(players, t, fused=False)
    schedules = [new_schedule(o, t) for o in optimizers.values()]
    ema = EMA(net, t.ema_decay) if t.ema_decay > 0 else None

    def cast(x):
        return x.to(dtype) if x.is_floating_point() else x

    def next_batch():
        batch = tuple(map(cast, fetch(train_set, batches.next())))
        return batch, {k: cast(v) for k, v in module.draw_noise(net, cfg.model, t.batch_size, generator).items()}

    run = StepRun(players, optimizers, next_batch, contextlib.nullcontext, t.grad_clip, Processes())
    losses, largest = [], {}
    for step in range(case.steps):
        loss, _ = module.train_step(net, cfg.model, step, run)
        run.take_norms()
        largest = largest_gradients(largest, net)
        for schedule in schedules:
            schedule.step()
        if ema is not None:
            ema.update(net)
        losses.append(float(loss))
    return reference_outcome(net, losses, largest, ema, start, case.dtype)


def floating_state(net) -> dict[str, np.ndarray]:
    """The net's floating-point state (parameters and statistics such as batch norm's running ones), as NumPy."""
    return {n: v.detach().numpy().copy() for n, v in net.state_dict().items() if v.is_floating_point()}


def largest_gradients(largest: dict[str, float], net) -> dict[str, float]:
    """Each parameter's largest absolute gradient so far, this step's included (those with a gradient)."""
    return {n: max(largest.get(n, 0.0), float(p.grad.abs().max())) for n, p in net.named_parameters()
            if p.grad is not None}


def reference_outcome(net, losses: list[float], largest: dict[str, float], ema, start: dict, dtype: str
                      ) -> tuple[dict, dict, list[str]]:
    """A reference run's result: ({"loss", "weights": the floating state (parameters and running statistics),
    "ema"}, the initial state, the inert parameters: those whose largest gradient stayed at rounding noise,
    ``INERT`` of the largest of all)."""
    out = {"loss": np.array(losses), "weights": floating_state(net)}
    if ema is not None:
        out["ema"] = {n: v.numpy() for n, v in ema.shadow.items()}
    scale = max(largest.values())
    return out, start, sorted(n for n, g in largest.items() if g <= INERT[dtype] * scale)


def default_reference_run(case) -> tuple[dict, dict, list[str]]:
    """({"loss": (steps,), "weights": {name: array}, "ema": ...}, the initial weights, the inert parameters: those
    whose gradient stayed at rounding noise, ``INERT``) of the PyTorch engine's default step (``engine/loop.py``:
    zero_grad, the loss, backward, ``clip_grad_norm_``, AdamW, the LambdaLR schedule, the EMA) in ``case.dtype``, set
    up as the engine sets up a run (``tests/test_jax_train.py`` holds it to the engine's Trainer bit for bit)."""
    import torch

    from practice_torch.engine.batches import fetch
    from practice_torch.engine.ema import EMA
    from practice_torch.engine.players import new_optimizer, new_schedule

    cfg = run_config(case)
    t, dtype = cfg.train, getattr(torch, case.dtype)
    module, train_set, net, batches, generator = engine_start(cfg, case.dtype)
    start = floating_state(net)
    optimizer = new_optimizer([p for p in net.parameters() if p.requires_grad], t, t.lr, t.betas, fused=False)
    schedule = new_schedule(optimizer, t)
    ema = EMA(net, t.ema_decay) if t.ema_decay > 0 else None

    def cast(x):
        return x.to(dtype) if x.is_floating_point() else x

    losses, largest = [], {}
    for step in range(case.steps):
        batch = tuple(map(cast, fetch(train_set, batches.next())))
        noise = {k: cast(v) for k, v in module.draw_noise(net, cfg.model, t.batch_size, generator).items()}
        optimizer.zero_grad(set_to_none=True)
        loss, _ = module.loss(net, cfg.model, batch, noise, step)
        loss.backward()
        largest = largest_gradients(largest, net)
        torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip or math.inf)
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.update(net)
        losses.append(loss.item())
    return reference_outcome(net, losses, largest, ema, start, case.dtype)


def jax_run(case, alter: Callable[[dict], dict] | None = None) -> dict:
    """The same run as ``torch_run`` by ``python -m practice_jax train``'s ``JaxRun`` (``JaxGameRun``) in
    ``case.dtype`` (float64 needs ``jax_enable_x64``); ``alter`` changes its parts, for negative controls:
    {"optimizer": train -> optax transform} of a ``JaxRun`` (and "step": (loss, state, batch, noise) -> (state,
    logged), in place of the model's ``train_step``), {"player_optimizer": ..., "train_step": twin -> step} of a
    ``JaxGameRun``."""
    from practice_torch.models import get_model, writes_own_step

    cfg = run_config(case)
    parts = {"optimizer": optimizer} if not writes_own_step(get_model(cfg.model_name), cfg.model) \
        else {"player_optimizer": player_optimizer, "train_step": lambda twin: twin.train_step}
    run = new_run(cfg, case.dtype, alter(parts) if alter is not None else parts)
    losses = [float(run.advance()["loss"]) for _ in range(case.steps)]
    state = floating_state(run.net)  # the parameters and the running statistics
    out = {"loss": np.array(losses), "weights": {k: v.numpy() for k, v in run.weights().items() if k in state}}
    if run.averaged:  # the EMA keeps the parameters
        params = dict(run.net.named_parameters())
        out["ema"] = {k: v.numpy() for k, v in run.weights(average=True).items() if k in params}
    return out
