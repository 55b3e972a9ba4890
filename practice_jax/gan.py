"""The GAN trained in JAX (``python -m practice_jax train gan``): its flax twin, the two players' objectives as pure
functions and the round of the game written as ``training.train_step`` is, top to bottom, on the run's
``update`` (``practice_jax.game.update`` of the players it names, jitted once for each).

The players' parameters are the flax twin's top-level collections: the discriminator's (with the projection's class
vectors, ``embed``) and the generator's, in the order of ``training.players``. The generator's batch normalisation
(the DCGAN's) keeps its running statistics in ``batch_stats``, moved at every forward pass in training mode, as
torch's are, and handed from one loss to the next. ``model.spectral_norm``: the discriminator's power-iteration
vectors live in ``batch_stats`` too, and every logit taken in training steps them, as every training-mode forward
pass of torch's ``SpectralNorm`` does, so the statistics also pass from one logit to the next.
``model.minibatch_std`` and ``model.pack`` are the twin's own fields (its ``out`` reads one more feature; its
discriminator reads m samples at once); ``model.unrolled_steps`` is ``theory_jax.gan.unroll`` of the discriminator's
share of the params inside the generator's objective, differentiated through by the update's ``jax.value_and_grad``.

Every function takes the game it plays, a ``twins.Setup`` (the twin, the run's model settings, whether it is
conditional), first; ``jax_twin`` binds it once, so that the loop compiles each player's update once.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

import theory_jax.gan as jg
from practice_jax.twins import JaxGame, Setup

PLAYERS = {"discriminator": ("discriminator", "embed"), "generator": ("generator",)}  # training.players' order
GENERATOR_LOSSES = {"non_saturating": jg.generator_loss_nonsaturating, "saturating": jg.generator_loss_saturating}


def generate(game: Setup, params, stats, z, y):
    """G(z, y) in training mode: (samples, the moved batch statistics)."""
    fake, moved = game.twin.apply({"params": params, "batch_stats": stats}, z, y, mutable=["batch_stats"])
    return fake, moved.get("batch_stats", stats)


def logit(game: Setup, params, stats, x, y):
    """D's logit (B,) in training mode: (logits, the statistics; with spectral normalisation, its vectors one power
    iteration on)."""
    if not game.model.spectral_norm:
        return game.twin.apply({"params": params}, x, y, method=jg.Adversarial.logit), stats
    logits, moved = game.twin.apply({"params": params, "batch_stats": stats}, x, y, method=jg.Adversarial.logit,
                                    mutable=["batch_stats"])
    return logits, moved["batch_stats"]


def discriminator_objective(game: Setup, params, stats, batch, noise):
    """The discriminator's loss (eq. 1, negated) on a batch and G's samples taken as data, plus r1 times
    R1 = 1/2 E_P |grad_x logit(x)|^2 (Mescheder et al. 2018) -> (loss, (terms, statistics))."""
    x, y = batch[0], game.labels(batch)
    fake, stats = generate(game, params, stats, noise["z"], y)
    real_logits, moved = logit(game, params, stats, x, y)
    fake_logits, moved = logit(game, params, moved, jax.lax.stop_gradient(fake), y)
    loss = jg.discriminator_loss(real_logits, fake_logits)
    terms = {"discriminator_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
             "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
    if game.model.r1 > 0:  # the gradient of the real logits' own pass: from the same statistics
        grad = jax.grad(lambda v: jnp.sum(logit(game, params, stats, v, y)[0]))(x)
        penalty = 0.5 * jnp.mean(jnp.sum(jnp.reshape(grad, (grad.shape[0], -1)) ** 2, axis=1))
        loss = loss + game.model.r1 * penalty
        terms["r1_penalty"] = penalty
    return loss, (terms, moved)


def generator_objective(game: Setup, params, stats, batch, noise):
    """The generator's loss on the discriminator's logits of its samples; ``model.unrolled_steps = k > 0``: on those
    of the discriminator k plain gradient steps (lr ``model.unroll_lr``) on from its params, on this batch's real x
    and these fakes, the steps in the graph (Metz et al. 2017, eqs. 4-6) -> (loss, ({}, statistics))."""
    m, x, y = game.model, batch[0], game.labels(batch)
    fake, stats = generate(game, params, stats, noise["z"], y)
    if m.unrolled_steps:
        def look_ahead_loss(judge):  # the discriminator's plain loss, its share of the params moved
            both = {**params, **judge}  # (spectral normalisation, whose vectors it would move, is refused)
            return jg.discriminator_loss(logit(game, both, stats, x, y)[0], logit(game, both, stats, fake, y)[0])

        judge = {k: v for k, v in params.items() if k in PLAYERS["discriminator"]}
        params = {**params, **jg.unroll(look_ahead_loss, judge, m.unrolled_steps, m.unroll_lr)}
    fake_logits, stats = logit(game, params, stats, fake, y)
    return GENERATOR_LOSSES[m.generator_loss](fake_logits), ({}, stats)


def train_step(objectives: dict, run, config):
    """One round of the game (Goodfellow et al. 2014, Algorithm 1 with k = ``model.discriminator_steps``): k updates
    of the discriminator, each on a fresh batch and fresh z, then one of the generator on fresh z; k = 0: both players
    at once on one batch and one z (simultaneous gradient steps). ``objectives``: each player's, bound to its game.
    -> (the discriminator's loss + the generator's, the players' terms)."""
    for _ in range(config.discriminator_steps):
        batch, noise = run.next_batch()
        _, terms = run.update("discriminator", objectives["discriminator"], batch, noise)
    batch, noise = run.next_batch()
    if config.discriminator_steps == 0:
        both = run.update_together(objectives, batch, noise)
        (_, terms), (g_loss, _) = both["discriminator"], both["generator"]
    else:
        g_loss, _ = run.update("generator", objectives["generator"], batch, noise)
    return terms["discriminator_loss"] + g_loss, {**terms, "generator_loss": g_loss}


def draw_noise(game: Setup, key, n: int) -> dict:
    """z ~ N(0, I), (n, d): the generator's latents for one batch (``training.draw_noise``, with ``jax.random``)."""
    return {"z": jax.random.normal(key, (n, game.model.latent_dim))}


def init_args(game: Setup, batch, noise):
    return noise["z"], batch[0], game.labels(batch)


def check_settings(m) -> None:
    """One line (ValueError) for what this trainer does not train."""
    if m.progressive:
        raise ValueError("practice_jax train gan does not grow the players (model.progressive=true): train progressive "
                         "growing with practice_torch")
    if m.spectral_norm and m.discriminator_steps == 0:  # the players' logits would step the vectors in torch's order
        raise ValueError("practice_jax train gan runs model.spectral_norm=true with model.discriminator_steps >= 1 "
                         "only (simultaneous updates take every gradient from the same statistics): train with "
                         "practice_torch, or set model.discriminator_steps=1")
    if m.discriminator_lr is not None:  # the game's loop steps every player at the run's one learning rate
        raise ValueError("practice_jax train gan trains both players at train.lr (model.discriminator_lr=none): train "
                         "a discriminator on its own learning rate with practice_torch")
    if m.unrolled_steps and m.unroll_optimizer == "adam":  # the look-ahead would read the optimizer's moments
        raise ValueError("practice_jax train gan unrolls plain gradient steps only (model.unroll_optimizer=sgd): train "
                         "the Adam look-ahead with practice_torch")


def jax_twin(net, cfg):
    """The GAN's ``JaxGame``: the flax ``Adversarial`` of ``net``'s architecture, its players and ``train_step``,
    each player's objective bound to the game once."""
    m = cfg.model
    check_settings(m)
    twin = jg.Adversarial(net.shape, m.architecture, tuple(m.hidden), tuple(m.channels), m.fc, net.num_classes,
                          unit_interval=net.generator.unit_interval, minibatch_std=m.minibatch_std,
                          spectral_norm=m.spectral_norm, pack=m.pack,
                          discriminator_hidden=tuple(m.discriminator_hidden), pieces=m.pieces)
    game = Setup(twin, m, bool(net.num_classes))
    objectives = {"discriminator": partial(discriminator_objective, game),
                  "generator": partial(generator_objective, game)}
    return JaxGame(twin, PLAYERS, partial(train_step, objectives), partial(init_args, game),
                   jg.Adversarial.init_all, objectives, partial(draw_noise, game))
