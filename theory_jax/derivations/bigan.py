"""The ``bigan`` derivation (``python -m theory_jax bigan``): its claims, step by step.

``derive()`` runs the steps below in order; each ``_section_*`` records the claims and figures of one idea about the
functions and networks of ``theory_jax/bigan.py``. ``--markdown FILE`` writes it as a document, ``--notebook FILE`` as
a notebook.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.distance import jensenshannon

from theory_jax.bigan import (
    encoder_joint,
    generator_joint,
    pair_logits,
)
from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "BiGAN / ALI: the optimal discriminator over (x, z) pairs, and encoder and generator as inverses"
LECTURES = "BiGAN / ALI"
LOG4 = math.log(4.0)


# 3. The derivation -----------------------------------------------------------------------------------------------
def _one_hot_map(assignment, size):
    """A deterministic map on finite sets as a (len, size) matrix of rows with a single 1."""
    return np.eye(size)[list(assignment)]


def _section_finite_joints(d: Derivation, rng: np.random.Generator) -> None:
    """On finite sets with stochastic maps: the optimal pair discriminator and V(D*) = 2 JS(p_E || p_G) - log 4."""
    d.say("Finite sets first: $x$ takes 4 values, $z$ 3, with stochastic encoders and generators, so every "
          "expectation is a sum.")
    n_x, n_z = 4, 3
    p_x, p_z = rng.dirichlet(np.ones(n_x)), rng.dirichlet(np.ones(n_z))
    enc, gen = rng.dirichlet(np.ones(n_z), size=n_x), rng.dirichlet(np.ones(n_x), size=n_z)
    pe, pg = encoder_joint(p_x, enc), generator_joint(p_z, gen)
    d.numeric("Both joints are distributions over the 12 pairs, and their marginals are the data's and the prior's: "
              "$\\sum_z p_E(x, z) = p_X(x)$, $\\sum_x p_G(x, z) = p_Z(z)$", np.concatenate(
                  [pe.sum(1), pg.sum(0), [pe.sum(), pg.sum()]]), np.concatenate([p_x, p_z, [1.0, 1.0]]))
    d_star = pe / (pe + pg)

    def value(dd):
        return jnp.sum(pe * jnp.log(dd) + pg * jnp.log1p(-dd))

    d.gradient("The discriminator over pairs is best at $D^* = p_E/(p_E + p_G)$: $\\partial V/\\partial D = 0$ "
               "there (`jax.grad`)", jax.grad(value)(d_star), np.zeros_like(d_star))
    others = np.clip(d_star[None] + 0.1 * rng.standard_normal((100, n_x, n_z)), 1e-3, 1 - 1e-3)
    d.inequality("...and 100 perturbed discriminators score lower", jax.vmap(value)(others),
                 np.full(100, value(d_star)))
    d.numeric("$V(D^*, E, G) = 2\\,\\mathrm{JS}(p_E \\| p_G) - \\log 4$ (SciPy's `jensenshannon` as the witness)",
              value(d_star), 2 * jensenshannon(pe.ravel(), pg.ravel()) ** 2 - LOG4)


def _section_deterministic_maps(d: Derivation) -> None:
    """All 729 deterministic (encoder, generator) pairs on 3 values: JS = 0 exactly for the 6 mutually inverse ones."""
    d.say("Deterministic maps: $x$ and $z$ take 3 values each, both uniform. An encoder is one of the $3^3 = 27$ "
          "maps $x \\mapsto z$, a generator one of the 27 maps $z \\mapsto x$; enumerate all 729 pairs.")
    n = 3
    uniform = np.full(n, 1 / n)
    maps = list(itertools.product(range(n), repeat=n))
    js = np.array([[jensenshannon(encoder_joint(uniform, _one_hot_map(e, n)).ravel(),
                                  generator_joint(uniform, _one_hot_map(g, n)).ravel()) ** 2
                    for g in maps] for e in maps])
    inverse = np.array([[all(g[e[x]] == x for x in range(n)) and all(e[g[z]] == z for z in range(n))
                         for g in maps] for e in maps])
    d.numeric("$\\mathrm{JS}(p_E \\| p_G) = 0$, the global optimum, for exactly the 6 pairs with "
              "$G(E(x)) = x$ and $E(G(z)) = z$ (the bijections and their inverses)...", np.array(
                  [js[inverse].max(), inverse.sum()]), np.array([0.0, 6.0]), atol=1e-15)
    d.inequality("...and is positive for the other 723: no non-inverse pair reaches the optimum (Theorem 2)",
                 np.full(int((~inverse).sum()), 1e-3), js[~inverse])
    fig, ax = new_figure()
    image = ax.imshow(js, cmap="viridis")
    rows, cols = np.nonzero(inverse)
    ax.plot(cols, rows, "o", mfc="none", mec="w", mew=1.5, ms=8)
    ax.set(xlabel="generator $G$ (27 maps $z \\to x$)", ylabel="encoder $E$ (27 maps $x \\to z$)")
    fig.colorbar(image, ax=ax, label="JS$(p_E \\| p_G)$ (nats)")
    d.figure(fig, "JS between the two joints for all 729 deterministic (encoder, generator) pairs: it is zero only at "
                  "the 6 circled pairs (dark), where encoder and generator invert each other.")
    best_non_inverse = js[~inverse].min()
    d.numeric("The closest non-inverse pair (one of the three values mismatched) is still $\\log 2 / 3$ nats of JS "
              "away: the two joints then differ in one pair in three", best_non_inverse, math.log(2) / 3)


def _section_continuous_pairs(d: Derivation, rng: np.random.Generator) -> None:
    """Linear G with its exact inverse as E: no pair discriminator beats chance; a swapped encoder is caught."""
    d.say("Continuous pairs. The discriminator sees $x$ and $z$ together; with $E = G^{-1}$, real pairs "
          "$(x, E(x))$ and generated pairs $(G(z), z)$ have the same law, so any discriminator does "
          "no better than chance: a linear generator $G(z) = Az + c$ with its exact inverse as encoder.")
    dx = dz = 2
    a_mat, c_vec = rng.standard_normal((dx, dz)) + 2 * np.eye(2), rng.standard_normal(dx)
    count = 100_000
    x_data = rng.standard_normal((count, dz)) @ a_mat.T + c_vec  # p_X is the generator's own law here
    z_enc = (x_data - c_vec) @ np.linalg.inv(a_mat).T
    z_prior = rng.standard_normal((count, dz))
    x_gen = z_prior @ a_mat.T + c_vec
    params = (rng.standard_normal((8, dx)), rng.standard_normal((8, dz)), rng.standard_normal((1, 8)),
              rng.standard_normal(8))
    real, fake = pair_logits(x_data, z_enc, *params), pair_logits(x_gen, z_prior, *params)
    d.monte_carlo("Any joint discriminator, here a random one, scores real and generated pairs alike at the optimum: "
                  "its logit has the same mean on both (100 000 pairs each), so it cannot beat chance",
                  np.asarray(real - fake), 0.0)
    d.inequality("...and its loss is at least $\\log 4$, the loss of $D = 1/2$: $\\mathrm{softplus}(-\\ell) + "
                 "\\mathrm{softplus}(\\ell) \\ge \\log 4$ for every logit (up to rounding)",
                 np.full(count, LOG4), np.asarray(jax.nn.softplus(-real) + jax.nn.softplus(real)), slack=1e-14)
    z_wrong = z_enc @ np.array([[0.0, 1.0], [1.0, 0.0]])  # an encoder that swaps the latent coordinates
    u_real = (x_data - c_vec) @ np.linalg.inv(a_mat).T
    d.monte_carlo("An encoder that swaps the two latent coordinates still has the prior's marginal, "
                  "$\\mathbb E\\|E(x)\\|^2 = 2$...", np.sum(z_wrong**2, axis=1), 2.0)
    d.monte_carlo("...but the pair statistic $z \\cdot A^{-1}(x - c)$ has mean $\\mathbb E[2 u_1 u_2] = 0$ over its "
                  "real pairs, against $\\mathbb E\\|z\\|^2 = 2$ over generated pairs: a discriminator of pairs "
                  "sees the mismatch that neither marginal shows", np.sum(z_wrong * u_real, axis=1), 0.0)
    d.monte_carlo("...and with the right encoder it is 2 over real pairs as well",
                  np.sum(z_enc * u_real, axis=1), 2.0)
    fig, axes = new_figure(columns=2)
    bins = np.linspace(-4, 4, 81)
    axes[0].hist(np.asarray(real), bins=bins, density=True, histtype="step", label="real $(x, E(x))$")
    axes[0].hist(np.asarray(fake), bins=bins, density=True, histtype="step", ls="--", label="generated $(G(z), z)$")
    axes[0].set(xlabel="logit $\\ell(x, z)$ of a random $D$", ylabel="density", title="$E = G^{-1}$")
    bins = np.linspace(-6, 10, 81)
    axes[1].hist(np.sum(z_enc * u_real, axis=1), bins=bins, density=True, histtype="step", label="right encoder")
    axes[1].hist(np.sum(z_wrong * u_real, axis=1), bins=bins, density=True, histtype="step", label="swapping encoder")
    axes[1].set(xlabel="$z \\cdot A^{-1}(x - c)$ on real pairs", title="a pair statistic")
    for ax in axes:
        ax.legend(fontsize="small")
    d.figure(fig, "Left: with $E = G^{-1}$ a discriminator's logits on real and generated pairs have the same law. "
                  "Right: an encoder that swaps the latents keeps the prior's marginal but shifts the pair statistic "
                  "from mean 2 (as on generated pairs) to mean 0.")


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("bigan", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    _section_finite_joints(d, rng)
    _section_deterministic_maps(d)
    _section_continuous_pairs(d, rng)
    return d
