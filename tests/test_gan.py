"""The GAN's losses: both backends agree with each other and with SciPy, and the comparisons catch wrong twins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import practice_torch.gan as G
from shared_specs import topics
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in topics.spec_cases("gan")}


def test_naive_log_of_one_minus_sigmoid_is_caught(both):
    """log(1 - sigmoid(l)) rounds to log(0) = -inf at l = 40: the reason the losses take logits."""
    def naive(fn):
        return lambda fake_logits: jnp.mean(jnp.log1p(-jax.nn.sigmoid(fake_logits)))

    assert "output" in caught(CASES["gan/generator_loss_saturating"], Perturbation("naive log(1 - D)", fn=naive))


def test_saturating_and_non_saturating_losses_swapped_are_caught(both):
    import theory_jax.gan as T

    def swapped(fn):
        return lambda fake_logits: -T.generator_loss_nonsaturating(fake_logits)

    caught(CASES["gan/generator_loss_saturating"], Perturbation("losses swapped", fn=swapped))


def test_inverted_density_ratio_is_caught(both):
    def inverted(fn):
        return lambda log_p, log_q: fn(log_q, log_p)

    caught(CASES["gan/optimal_logit"], Perturbation("log q - log p", fn=inverted))


def test_torch_softplus_is_exact_where_the_library_one_thresholds():
    x = torch.tensor([20.5, 30.0, -40.0, 0.0], dtype=torch.float64)
    exact = np.logaddexp(x.numpy(), 0.0)
    assert np.allclose(G.softplus(x).numpy(), exact, rtol=1e-15, atol=0)
    assert not np.allclose(torch.nn.functional.softplus(x).numpy(), exact, rtol=1e-12, atol=0)  # the trap it avoids


def test_the_discriminator_at_d_star_beats_the_others_in_torch():
    """The PyTorch twin shows Proposition 1 too: value_discrete is largest at D* = p / (p + q)."""
    rng = np.random.default_rng(0)
    p, q = (torch.tensor(rng.dirichlet(np.ones(6), size=4)) for _ in range(2))
    d_star = torch.sigmoid(G.optimal_logit(torch.log(p), torch.log(q)))
    best = G.value_discrete(d_star, p, q)
    others = (d_star + 0.05 * torch.tensor(rng.standard_normal((30, 4, 6)))).clamp(1e-3, 1 - 1e-3)
    assert torch.all(G.value_discrete(others, p, q) < best)
    assert torch.allclose(best, 2 * G.js_discrete(p, q) - np.log(4.0), rtol=1e-12, atol=0)


def test_spectral_norm_without_the_power_iterations_update_is_caught(both):
    """The witness is torch's own parametrization, which iterates: a twin that leaves u and v where they were
    (n_iter = 0) divides by a stale u^T W v and is caught."""
    def frozen(fn):
        return lambda w, u, v, n_iter: fn(w, u, v, 0)

    case = CASES["gan/spectral_normalize"]
    assert "reference" in caught(case, Perturbation("no power iteration", fn=frozen))


def test_packing_that_mixes_coordinates_of_different_examples_is_caught(both):
    """A packed row is m whole examples; reading the batch column-major (x.T reshaped) gives the right shape but rows
    made of one coordinate of several examples: caught by the reference."""
    def column_major(fn):
        return lambda x, m, axis: jnp.reshape(jnp.transpose(x), (x.shape[0] // m, m * x.shape[1]))

    assert "reference" in caught(CASES["gan/pack"], Perturbation("column-major packing", fn=column_major))


def test_maxout_over_strided_pieces_is_caught(both):
    """A unit's pieces are consecutive outputs (Blocks' ``Maxout``, PacGAN's); taking every units-th output as a
    unit's pieces gives the right shape and the wrong units: caught by the reference, and in the maxout
    discriminator, whose converted weights then feed other pieces to each unit, by its output."""
    import theory_jax.gan as T

    def strided(h, pieces):
        return jnp.max(jnp.reshape(h, (*h.shape[:-1], pieces, -1)), axis=-2)

    assert "reference" in caught(CASES["gan/maxout"], Perturbation("strided pieces", fn=lambda fn: strided))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(T, "maxout", strided)
        assert "output" in caught(CASES["gan/maxout_discriminator"], Perturbation("strided pieces"))


def test_packing_along_the_wrong_axis_is_caught(both):
    """Images pack along their channels; packing along the width instead makes (B/m, H, m W, C): caught by its shape."""
    import theory_jax.gan as T

    def along_width(fn):
        return lambda x, m, axis: T.pack(x, m, axis=2)

    assert "shape" in caught(CASES["gan/pack_channels_last"], Perturbation("packed along the width", fn=along_width))


def test_an_unroll_that_does_not_differentiate_through_the_fakes_is_caught(both):
    """The unrolled discriminator's steps taken on detached fakes give the same loss but drop the second-order
    term of eq. 6 from the generator's gradient: caught by the gradients, as the value stays right."""
    import theory_jax.gan as T

    def detached(fn):
        def unrolled(fake, real, w, b, steps, lr):
            held = jax.lax.stop_gradient(fake)
            p = T.unroll(lambda p: T.discriminator_loss(real @ p["w"] + p["b"], held @ p["w"] + p["b"]),
                         {"w": w, "b": b}, steps, lr)
            return T.generator_loss_nonsaturating(fake @ p["w"] + p["b"])
        return unrolled

    message = caught(CASES["gan/unrolled_generator_loss"], Perturbation("detached unroll", fn=detached))
    assert "gradient" in message and "reference" not in message


@pytest.mark.parametrize("mistake", ["plain gradient steps", "moments restarted", "no bias correction"])
def test_an_adam_look_ahead_without_adams_own_state_is_caught(both, mistake):
    """The look-ahead that takes the discriminator's Adam steps: plain gradient steps at its lr, Adam restarted from
    zero moments at step 0, or Adam without its bias corrections, each land elsewhere: caught by the loss."""
    import theory_jax.gan as T

    def wrong(fn):
        def unrolled(fake, real, w, b, m_w, v_w, m_b, v_b, t, steps, lr):
            def d_loss(p):
                return T.discriminator_loss(real @ p["w"] + p["b"], fake @ p["w"] + p["b"])
            start, m, v = {"w": w, "b": b}, {"w": m_w, "b": m_b}, {"w": v_w, "b": v_b}
            if mistake == "plain gradient steps":
                p = T.unroll(d_loss, start, steps, lr)
            elif mistake == "moments restarted":
                p = T.adam_unroll(d_loss, start, jax.tree.map(jnp.zeros_like, m), jax.tree.map(jnp.zeros_like, v),
                                  0, steps, lr, (0.5, 0.999))
            else:  # b1^(t+k) -> 0: no correction of the moments' start at zero
                p = T.adam_unroll(d_loss, start, m, v, 10_000, steps, lr, (0.5, 0.999))
            return T.generator_loss_nonsaturating(fake @ p["w"] + p["b"])
        return unrolled

    assert "output" in caught(CASES["gan/adam_unrolled_generator_loss"], Perturbation(mistake, fn=wrong))


def test_the_unroll_moves_the_logistic_discriminator_as_written_by_hand():
    """``unroll`` with zero steps is the plain loss; with steps, torch's generator loss rises or falls with what
    the discriminator learnt (against the NumPy reference's hand-written gradients)."""
    from shared_specs.gan import ref_unrolled_generator_loss

    rng = np.random.default_rng(3)
    fake, real, w = rng.standard_normal((6, 3)), rng.standard_normal((7, 3)) + 1.0, rng.standard_normal(3)
    b = np.array(0.2)
    plain = G.generator_loss_nonsaturating(torch.tensor(fake @ w + b))
    assert float(G.unrolled_generator_loss(*map(torch.tensor, (fake, real, w, b)), steps=0).detach()) == float(plain)
    for steps in (1, 4):
        got = G.unrolled_generator_loss(*map(torch.tensor, (fake, real, w, b)), steps=steps, lr=0.5).detach()
        assert abs(float(got) - ref_unrolled_generator_loss(fake, real, w, b, steps, 0.5)) < 1e-12
        assert float(got) != float(plain)


def test_progressive_growing_slips_are_caught(both, monkeypatch):
    """The progressive players' cases catch the fade-in weighted the wrong way round (the new resolution at full
    weight from the start), bilinear doubling where the paper repeats pixels, and pixel norm taken over the pixels
    rather than the channels; pixel norm's own case catches a missing square root."""
    import theory_jax.gan as jg

    generator, discriminator = CASES["gan/progressive_generator/fading-in"], CASES["gan/progressive_discriminator/fading-in"]
    right_fade, right_norm = jg.fade_in, jg.pixel_norm
    monkeypatch.setattr(jg, "fade_in", lambda alpha, old, new: right_fade(1 - alpha, old, new))
    assert "output" in caught(generator, Perturbation("fade reversed"))
    assert "output" in caught(discriminator, Perturbation("fade reversed"))
    monkeypatch.setattr(jg, "fade_in", right_fade)
    monkeypatch.setattr(jg, "upsample", lambda x: jax.image.resize(x, (x.shape[0], 2 * x.shape[1], 2 * x.shape[2],
                                                                       x.shape[3]), "bilinear"))
    assert "output" in caught(generator, Perturbation("bilinear doubling"))
    monkeypatch.undo()
    monkeypatch.setattr(jg, "pixel_norm", lambda x, axis=-1, eps=1e-8: right_norm(x, (1, 2) if x.ndim == 4 else axis))
    assert "output" in caught(generator, Perturbation("normalised over the pixels"))
    monkeypatch.undo()

    def no_sqrt(fn):
        return lambda x: x / (jnp.mean(x**2, axis=-1, keepdims=True) + 1e-8)

    assert "output" in caught(CASES["gan/pixel_norm"], Perturbation("no square root", fn=no_sqrt))


def test_the_growth_schedule_fades_each_resolution_in_linearly_and_holds_it():
    """growth: stage 0 alone for a phase, then each doubling faded in over a phase (alpha 0 at its first step) and
    held for one; the last stage at alpha 1 from then on; both backends' schedules agree step for step."""
    import theory_jax.gan as jg

    schedule = [G.growth(step, 10, 3) for step in range(60)]
    assert schedule[0] == (0, 1.0) and schedule[9] == (0, 1.0) and schedule[10] == (1, 0.0)
    assert schedule[15] == (1, 0.5) and schedule[20] == (1, 1.0) and schedule[30] == (2, 0.0)
    assert schedule[40:] == [(2, 1.0)] * 20
    assert schedule == [jg.growth(step, 10, 3) for step in range(60)]


def test_a_fade_in_weighted_the_wrong_way_breaks_the_derivations_continuity(monkeypatch):
    """The negative control of the claims that each player at alpha = 0 computes what the stage before computed."""
    import theory_jax.gan as jg
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import gan as gan_derivation

    full_precision()
    right = jg.fade_in
    for module in (jg, gan_derivation):  # the networks and the derivation's steps that call it
        monkeypatch.setattr(module, "fade_in", lambda alpha, old, new: right(1 - alpha, old, new))
    d = Derivation("gan", "progressive growing")
    gan_derivation._section_progressive(d, np.random.default_rng(0))
    failed = [c.statement for c in d.claims if not c.passed]
    assert len(failed) == 2 and "generator at stage" in failed[0] and "discriminator at stage" in failed[1]


def test_a_generator_that_fades_before_its_sigmoid_breaks_the_claim_that_fakes_fade_as_reals(monkeypatch):
    """The negative control of the claim that the generator's fade-in is the reals' (in pixels): it holds of the
    generator as it is, and the to_rgb outputs blended before the sigmoid, as this code once did, fail it alone."""
    import theory_jax.gan as jg
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import gan as gan_derivation

    full_precision()
    right = jg.ProgressiveGenerator.__call__

    def before_the_sigmoid(self, z, stage, alpha=1.0):
        if stage == 0 or alpha >= 1:
            return right(self, z, stage, alpha)
        logit = jax.scipy.special.logit  # each stage's to_rgb output, from its picture
        old, new = jg.upsample(logit(right(self, z, stage - 1))), logit(right(self, z, stage))
        return jax.nn.sigmoid(jg.fade_in(alpha, old, new))

    rng = np.random.default_rng(0)
    g = jg.ProgressiveGenerator(latent_dim=6, image_shape=(1, 16, 16), channels=4, stages=3, unit_interval=True)
    z = jnp.asarray(rng.standard_normal((5, 6)))
    shapes = jax.eval_shape(lambda: g.init(jax.random.key(0), z, method=jg.ProgressiveGenerator.init_all))
    pg = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), shapes)
    for fault, fails in ((None, []), (before_the_sigmoid, ["pictures blended in pixels"])):
        if fault is not None:
            monkeypatch.setattr(jg.ProgressiveGenerator, "__call__", fault)
        d = Derivation("gan", "progressive growing")
        gan_derivation._fakes_fade_as_reals(d, jax.jit(g.apply, static_argnums=(2, 3)), pg, z)
        failed = [c.statement for c in d.claims if not c.passed]
        assert len(failed) == len(fails) and all(f in s for f, s in zip(fails, failed)), failed


def test_the_discriminator_learns_at_its_own_rate_only_when_asked():
    """``model.discriminator_lr`` (Metz et al.'s toy: the discriminator at 1e-4, the generator at 1e-3) reaches the
    discriminator's AdamW and not the generator's; unset, both players take the run's lr (the control); a rate <= 0
    is a one-line error, and the JAX trainer, whose loop steps both players at one rate, refuses it."""
    from practice_jax.gan import check_settings
    from practice_torch.engine.config import TrainConfig
    from practice_torch.engine.players import player_optimizers
    from practice_torch.gan.networks import Adversarial
    from practice_torch.gan.training import Config, build, players

    net = Adversarial((2,), "mlp", 4, (8,))

    def rates(config):
        optimizers = player_optimizers(players(net, config), TrainConfig(lr=1e-3, betas=(0.5, 0.999)), fused=False)
        return {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}

    assert rates(Config(discriminator_lr=1e-4)) == {"discriminator": 1e-4, "generator": 1e-3}
    assert rates(Config()) == {"discriminator": 1e-3, "generator": 1e-3}
    with pytest.raises(ValueError, match="discriminator_lr must be > 0"):
        build(Config(discriminator_lr=0.0), type("Info", (), {"modality": "2-D", "shape": (2,), "name": "ring8",
                                                               "num_classes": 8, "unit_images": False})())
    with pytest.raises(ValueError, match="model.discriminator_lr=none"):
        check_settings(Config(discriminator_lr=1e-4))
    check_settings(Config())
