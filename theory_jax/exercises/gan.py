"""The GAN's exercises: the two players' losses on the discriminator's logits, and the minibatch standard deviation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import softplus

from theory_jax.exercises import Exercise, Mistake


def _labels_swapped(real_logits, fake_logits):
    return jnp.mean(softplus(real_logits)) + jnp.mean(softplus(-fake_logits))


def _one_mean(real_logits, fake_logits):
    return jnp.mean(jnp.concatenate([softplus(-real_logits), softplus(fake_logits)]))


def _saturating(fake_logits):
    return -jnp.mean(softplus(fake_logits))


def _sign_flipped(fake_logits):
    return -jnp.mean(softplus(-fake_logits))


def _bessel(h, eps: float = 1e-8):
    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0, ddof=1) + eps))
    return jnp.concatenate([h, jnp.broadcast_to(std, (h.shape[0], 1))], axis=1)


def _eps_outside(h, eps: float = 1e-8):
    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0)) + eps)
    return jnp.concatenate([h, jnp.broadcast_to(std, (h.shape[0], 1))], axis=1)


def _over_features(h, eps: float = 1e-8):
    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=1) + eps))
    return jnp.concatenate([h, jnp.broadcast_to(std, (h.shape[0], 1))], axis=1)


def _detached(h, eps: float = 1e-8):
    std = jax.lax.stop_gradient(jnp.mean(jnp.sqrt(jnp.var(h, axis=0) + eps)))
    return jnp.concatenate([h, jnp.broadcast_to(std, (h.shape[0], 1))], axis=1)


EXERCISES = (
    Exercise(
        "discriminator_loss",
        "the discriminator is a classifier: binary cross-entropy on logits, written so that it never overflows",
        ("Eq. 1 negated: -E_p[log D(x)] - E_q[log(1 - D(x))], one mean over the real batch and one over the fakes.",
         "With D = sigmoid(logit): log D = -softplus(-logit) and log(1 - D) = -softplus(logit), finite for any logit "
         "(log(sigmoid(40)) is fine, but log(1 - sigmoid(40)) rounds to log 0).",
         "mean(softplus(-real_logits)) + mean(softplus(fake_logits)), with jax.nn.softplus (torch: the module's "
         "softplus, torch.logaddexp(x, 0), exact for every x)."),
        (Mistake("your loss labels the real examples 0 and the fakes 1: the discriminator wants D(x) = 1 on data, so "
                 "the real logits enter as softplus(-logit) and the fakes' as softplus(logit)", _labels_swapped),
         Mistake("your loss takes one mean over the real and fake logits together: eq. 1 is the sum of two "
                 "expectations, a mean over each batch (they differ in size here)", _one_mean))),
    Exercise(
        "generator_loss_nonsaturating",
        "why generators train on -log D(G(z)): the same fixed point as the minimax loss, a gradient where it matters",
        ("Sec. 3 of Goodfellow et al.: instead of minimising log(1 - D(G(z))), maximise log D(G(z)).",
         "log D = -softplus(-logit); the loss to minimise is its negated mean.",
         "mean(softplus(-fake_logits))."),
        (Mistake("you wrote the saturating loss, mean log(1 - D(G(z))) = -mean softplus(logit): the non-saturating "
                 "generator minimises -mean log D(G(z)) = mean softplus(-logit)", _saturating),
         Mistake("your loss has the wrong sign: it is -log D(G(z)) that the generator minimises, mean "
                 "softplus(-logit), not its negation", _sign_flipped))),
    Exercise(
        "minibatch_std",
        "a feature that lets the discriminator see a collapsed batch (Karras et al. 2018), and why N, not N - 1",
        ("One number for the whole batch: each feature's standard deviation over the B examples, averaged over the "
         "F features, appended to every example as one more feature.",
         "The population variance over the batch axis (divide by B, as Karras et al.'s code does: jnp.var's default, "
         "torch.var(h, 0, correction=0)), eps inside the square root.",
         "std = mean(sqrt(var(h, axis 0) + eps)); return concatenate([h, std broadcast to (B, 1)], axis 1)."),
        (Mistake("your minibatch std divides by N - 1 (Bessel's correction): the feature is the population std over "
                 "the batch, var with ddof = 0 (torch: correction=0)", _bessel),
         Mistake("your eps is added after the square root: it belongs inside, sqrt(Var + eps), which also keeps the "
                 "gradient finite when a feature does not vary", _eps_outside),
         Mistake("your std is taken across the features of each example: it is each feature's spread across the "
                 "batch (axis 0), then averaged over the features", _over_features),
         Mistake("your feature is right but its gradient is zero (a stop_gradient or detach): the discriminator's "
                 "loss must reach h through the std too", _detached))),
)
