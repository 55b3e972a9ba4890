"""Between the JAX trainer and the PyTorch engine's files: arrays, weights and the optimizer's state in torch's layout.

A JAX run is a run PyTorch reads (``practice_torch sample``, ``eval``, ``train --resume``): its checkpoints hold the
weights as the network's ``state_dict`` and AdamW's moments and the LR schedule as torch's optimizer and LambdaLR
write them; this module converts both ways (``shared_specs.interop`` maps the weights' names and axes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from practice_jax.twins import JaxTrainError
from practice_torch.engine.bookkeeping import lr_factor
from shared_specs.backends import _nchw_to_nhwc
from shared_specs.interop import flax_to_torch


def to_jax(arrays, dtype=None):
    """Torch tensors (a tuple or a dict) as NumPy arrays, images (N, C, H, W) channels last; floats as ``dtype``."""

    def one(t):
        a = t.detach().cpu().numpy()
        if a.ndim == 4:
            a = _nchw_to_nhwc(a)
        return a.astype(dtype) if dtype is not None and np.issubdtype(a.dtype, np.floating) else a

    return {k: one(v) for k, v in arrays.items()} if isinstance(arrays, dict) else tuple(one(t) for t in arrays)


def numpy_tree(tree):
    return jax.tree.map(np.asarray, tree)


def to_torch_state(params, template: dict) -> dict:
    """Flax params as torch tensors named and shaped as ``template`` (a state_dict), in its dtypes."""
    weights = flax_to_torch(numpy_tree(params), template)
    return {k: torch.from_numpy(np.array(v, copy=True)).to(template[k].dtype) for k, v in weights.items()}


def batches_tracked(state: dict) -> int:
    """The BatchNorms' ``num_batches_tracked`` in a state_dict (all of a net's count alike); 0 without any."""
    return next((int(v) for k, v in state.items() if k.endswith("num_batches_tracked")), 0)


# AdamW's state and the schedule, as torch writes them -----------------------------------------------------------------
def adam_moments(opt_state):
    """The ``ScaleByAdamState`` (count, mu, nu) inside an optax state."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    if len(found) != 1:
        raise JaxTrainError(f"expected one Adam state in the optimizer state, found {len(found)}")
    return found[0]


def saved_moments(saved: dict, names: list[str], state: dict) -> list[dict]:
    """AdamW's exp_avg and exp_avg_sq of a saved optimizer state_dict over the parameters ``names`` (in its order),
    each as ``state`` (a state_dict) with those parameters replaced by it: zeros for one that never had a gradient,
    as optax keeps them."""
    out = []
    for key in ("exp_avg", "exp_avg_sq"):
        given = {names[int(i)]: s[key] for i, s in saved["state"].items()}
        out.append({**state, **{k: given.get(k, torch.zeros_like(state[k])) for k in names}})
    return out


def with_torch_moments(opt_state, moments: tuple[dict, dict], step: int, updates: int | None = None):
    """An optax state of ``optimizer`` after ``step`` steps of the run with Adam's (mu, nu) = ``moments``: the inverse
    of ``torch_optimizer_state``. ``updates``: Adam's count, the updates it made (None: ``step``; a discriminator
    updated k times a step made k ``step``); the schedule's count is ``step``."""

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


def schedule_state(optimizer: torch.optim.Optimizer, train, step: int) -> dict:
    """The state_dict of the engine's LambdaLR (warmup, then cosine: ``lr_factor``) of ``optimizer`` after ``step``
    steps, the schedule made there at once (``last_epoch``) rather than stepped ``step`` times; the optimizer is left
    at the learning rate of ``step``, as the engine's is. The state is the engine's to the last entry: its count of
    calls, ``_step_count``, is the one a schedule made at 0 and stepped ``step`` times keeps."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, train.warmup_steps, train.steps, train.min_lr_ratio), last_epoch=step - 1)
    return {**schedule.state_dict(), "_step_count": step + 1}


def torch_optimizer_state(net, train, opt_state, step: int, names: list[str] | None = None, to_torch=None) -> dict:
    """{"optimizer": AdamW's state_dict, "scheduler": LambdaLR's} as the engine checkpoints them after ``step``
    updates: AdamW's exp_avg and exp_avg_sq are optax's mu and nu in the torch layout. ``names``: the parameters of
    the optimizer, in its order (None: all the net's); ``to_torch``: flax params -> the state_dict's tensors
    (default ``to_torch_state`` against the net's state_dict)."""
    adam = adam_moments(opt_state)
    template = net.state_dict()
    names = names if names is not None else [n for n, _ in net.named_parameters()]
    to_torch = to_torch or (lambda tree: to_torch_state(tree, template))
    mu, nu = to_torch(adam.mu), to_torch(adam.nu)
    params = dict(net.named_parameters())
    torch_opt = torch.optim.AdamW([params[n] for n in names], lr=train.lr, betas=tuple(train.betas),
                                  weight_decay=train.weight_decay)
    schedule = schedule_state(torch_opt, train, step)
    for n in names:
        torch_opt.state[params[n]] = {"step": torch.tensor(float(adam.count)), "exp_avg": mu[n].clone(),
                                      "exp_avg_sq": nu[n].clone()}
    return {"optimizer": torch_opt.state_dict(), "scheduler": schedule}
