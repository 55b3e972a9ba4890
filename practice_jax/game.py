"""A game's update in JAX: the engine's ``run.update`` (``engine/players.py``) as a pure function, for a model whose
step is more than one loss (the GAN's two players, ``practice_jax/gan.py``).

``update`` takes one gradient step of each player it is given, every gradient at the same parameters, then every
step (simultaneous updates when it is given two players); ``JaxGameRun`` jits it once for each set of players, with
the players, their optimizers and their objectives bound (``functools.partial``).
"""

from __future__ import annotations

import jax
import optax


def update(players: dict[str, tuple[str, ...]], txs: dict, objectives: dict, params: dict, opt_states: dict, stats,
           batch, noise, lr):
    """One update of each player of ``objectives`` ({player: objective(params, stats, batch, noise) -> (loss, (terms,
    stats))}): the gradient of its objective with respect to its own parameters (``players[player]``: its top-level
    collections) only, clipped, its AdamW step scaled by the run's learning rate ``lr``, every gradient taken at
    ``params`` -> (params, opt_states, the statistics the objectives moved, {player: (loss, terms, gradient norm)}).
    Each objective runs G once, on the same z from the same statistics: they all move them alike."""
    new_params, opt_states, out, moved = dict(params), dict(opt_states), {}, stats
    for player, objective in objectives.items():
        own = {k: v for k, v in params.items() if k in players[player]}

        def of_own(own, objective=objective):
            return objective({**params, **own}, stats, batch, noise)

        (loss, (terms, moved)), grads = jax.value_and_grad(of_own, has_aux=True)(own)
        updates, opt_states[player] = txs[player].update(grads, opt_states[player], own)
        updates = jax.tree.map(lambda u: lr * u, updates)  # the run's learning rate at its step
        new_params.update(optax.apply_updates(own, updates))
        out[player] = (loss, terms, optax.tree.norm(grads))
    return new_params, opt_states, moved, out
