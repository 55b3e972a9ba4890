"""What a training loop keeps besides the step, written once for both loops: the PyTorch engine's (``loop.py``) and
the JAX trainer's (``practice_jax/loop.py``). Plain Python, no framework: the schedule's factor, the EMA's decay, which
steps log and checkpoint, the validation rows a log step scores, and the stop that SIGINT or SIGTERM asks for.

The JAX step computes the schedule and the EMA's decay inside its compiled function too: ``ema_decay`` takes the
``minimum`` to use (``jnp.minimum`` there), and ``practice_jax.loop.lr_schedule`` is ``lr_factor``'s cosine written with
``jnp`` for optax (tests/test_jax_train.py holds the two to each other).
"""

from __future__ import annotations

import math
import signal
import threading

# Ganin et al. 2016 (DANN), sec. 5.2.2: mu_p = mu_0 / (1 + alpha p)^beta, p the training progress from 0 to 1
ANNEALING_ALPHA, ANNEALING_BETA = 10.0, 0.75


def lr_factor(step: int, warmup: int, total: int, min_ratio: float, schedule: str = "cosine") -> float:
    """Linear warmup over ``warmup`` steps, then ``schedule``: ``cosine`` decay from 1 to ``min_ratio`` at ``total``,
    Ganin et al.'s ``annealing``, 1 / (1 + 10 p)^0.75 at progress p (0.19 at the end), or Donahue et al.'s
    ``exponential``: 1 for the first half, then min_ratio^(2p - 1), down to ``min_ratio`` at the end (BiGAN's
    MNIST runs: 200 epochs at the peak, 200 decaying to a hundredth)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "annealing":
        return (1.0 + ANNEALING_ALPHA * progress) ** -ANNEALING_BETA
    if schedule == "exponential":
        return min_ratio ** max(0.0, 2.0 * progress - 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay(decay: float, updates, minimum=min):
    """The EMA's decay after ``updates`` updates, min(decay, (1 + u) / (10 + u)): a short memory at first (so the
    average is not the initial weights), ``decay`` later."""
    return minimum(decay, (1.0 + updates) / (10.0 + updates))


def is_log_step(step: int, log_every: int, end: int) -> bool:
    """Whether ``step`` (the steps done) writes a log line: every ``log_every`` steps and at the last."""
    return step % log_every == 0 or step == end


def is_checkpoint_step(step: int, checkpoint_every: int, end: int) -> bool:
    """Whether ``step`` writes a checkpoint on the way (the last step's is written after the loop)."""
    return step % checkpoint_every == 0 and step < end


def validation_start(step: int, log_every: int, val_batch: int) -> int:
    """The first validation row a log step at ``step`` scores: rows taken in order from (step // log_every) *
    val_batch, cycling through the split, so a resumed run scores the same rows (no state to save)."""
    return step // log_every * val_batch


def validation_rows(step: int, log_every: int, val_batch: int, n: int) -> list[int]:
    """The ``val_batch`` validation rows (of ``n``) a log step at ``step`` scores: in order from
    ``validation_start``, cycling through the split."""
    start = validation_start(step, log_every, val_batch)
    return [(start + i) % n for i in range(val_batch)]


class StopOnSignals:
    """SIGINT or SIGTERM (in the main thread) sets ``signal``: the step finishes, a checkpoint is written and the
    loop returns; a second SIGINT interrupts at once. Elsewhere (a thread) the handlers are left alone."""

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def request(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}
