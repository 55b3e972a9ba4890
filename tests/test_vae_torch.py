"""The PyTorch VAE as a user meets it: shapes, clear errors, bounds, mixed precision, devices."""

import pytest
import torch

from practice_torch.vae import VAE, draw_eps
from shared_specs import topics

IMAGE = (1, 8, 8)


def make(architecture="conv", **kw):
    torch.manual_seed(0)
    defaults = {"channels": (8, 16), "hidden": (32,), "latent_dim": 4}
    return VAE(image_shape=IMAGE, architecture=architecture, **{**defaults, **kw})


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes(architecture, likelihood):
    model = make(architecture, likelihood=likelihood, num_classes=3)
    x, y = torch.rand(5, *IMAGE), torch.randint(0, 3, (5,))
    assert model.elbo(x, draw_eps((5, 4)), y).shape == (5,)
    assert model.loss(x, draw_eps((5, 4)), y).shape == ()
    assert model.importance_nll(x, draw_eps((5, 7, 4)), y).shape == (5,)
    assert model.sample(draw_eps((5, 4)), y).shape == (5, *IMAGE)


def test_importance_nll_with_one_sample_is_minus_the_sampled_elbo():
    """K = 1: -log w with the one-sample KL (log q - log p at z), which the closed-form ELBO averages."""
    from practice_torch.elbo import gaussian_log_prob
    from practice_torch.vae import reparameterize

    model = make()
    x, eps = torch.rand(4, *IMAGE), draw_eps((4, 4))
    with torch.no_grad():
        mean, logvar = model.encode(x)
        z = reparameterize(mean, logvar, eps)
        log_w = (model.log_likelihood(x, model.decode(z)) + gaussian_log_prob(z, 0 * z, 0 * z)
                 - gaussian_log_prob(z, mean, logvar))
        torch.testing.assert_close(model.importance_nll(x, eps[:, None]), -log_w)


def test_more_importance_samples_tighten_the_bound():
    model = make()
    x = torch.rand(4, *IMAGE)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        nll_1 = torch.stack([model.importance_nll(x, draw_eps((4, 1, 4), gen)) for _ in range(200)]).mean(0)
        nll_64 = torch.stack([model.importance_nll(x, draw_eps((4, 64, 4), gen)) for _ in range(20)]).mean(0)
    assert torch.all(nll_64 < nll_1)


def test_beta_weighs_only_the_kl():
    x, eps = torch.rand(4, *IMAGE), draw_eps((4, 4))
    model = make()
    recon, kl = model.terms(x, eps)
    torch.testing.assert_close(model.loss(x, eps, beta=4.0), torch.mean(4.0 * kl - recon))
    torch.testing.assert_close(model.loss(x, eps), -model.elbo(x, eps).mean())
    assert not hasattr(model, "beta")  # a setting of the loss call, not of the network


def test_clear_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        VAE(image_shape=(1, 10, 10), architecture="conv")
    with pytest.raises(ValueError, match="architecture must be"):
        VAE(image_shape=IMAGE, architecture="transformer")
    with pytest.raises(ValueError, match="likelihood must be"):
        VAE(image_shape=IMAGE, likelihood="poisson")
    with pytest.raises(ValueError, match="pass labels y"):
        make(num_classes=3).loss(torch.rand(2, *IMAGE), draw_eps((2, 4)))


def test_a_few_adam_steps_raise_the_elbo():
    model = make("mlp")
    x = (torch.rand(64, *IMAGE) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        before = model.elbo(x, draw_eps((64, 4), gen)).mean()
    for _ in range(60):
        opt.zero_grad()
        model.loss(x, draw_eps((64, 4), gen)).backward()
        opt.step()
    with torch.no_grad():
        after = model.elbo(x, draw_eps((64, 4), gen)).mean()
    assert after > before + 1.0


def test_bf16_autocast_on_cpu_runs_and_stays_close():
    model = make()
    x, eps = torch.rand(4, *IMAGE), draw_eps((4, 4))
    with torch.no_grad():
        exact = model.elbo(x, eps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.elbo(x, eps)
    assert torch.all(torch.isfinite(mixed))
    torch.testing.assert_close(mixed.float(), exact, rtol=0.05, atol=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = make()
    x, eps = torch.rand(4, *IMAGE), draw_eps((4, 4))
    with torch.no_grad():
        cpu = model.elbo(x, eps)
        gpu = model.cuda().elbo(x.cuda(), eps.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = make()
    x, eps = torch.rand(4, *IMAGE), draw_eps((4, 4))
    compiled = torch.compile(model.elbo)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, eps), model.elbo(x, eps), rtol=1e-5, atol=1e-4)


def test_a_total_correlation_with_the_wrong_sign_fails_the_derivation(monkeypatch):
    """The negative control of the KL's decomposition (the derivation passes with the right sign: test_derivations)."""
    import numpy as np

    import theory_jax.vae as jv
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import vae as vae_derivation

    full_precision()
    right = jv.total_correlation_terms

    def wrong(*args):
        mi, tc, dim_kl = right(*args)
        return mi, -tc, dim_kl

    for module in (jv, vae_derivation):  # the math and the derivation's steps that call it
        monkeypatch.setattr(module, "total_correlation_terms", wrong)
    d = Derivation("vae", "the KL's three parts")
    vae_derivation._section_tc_estimator(d, np.random.default_rng(1))
    failed = [c.statement for c in d.claims if not c.passed]
    assert len(failed) == 2 and "`total_correlation_terms` over a batch" in failed[0] and "three parts" in failed[1]


def test_a_discriminator_with_its_labels_swapped_fails_the_derivation(monkeypatch):
    """The negative control of the claim that the TC discriminator's loss is stationary at the log density ratio."""
    import numpy as np

    import theory_jax.vae as jv
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import vae as vae_derivation

    full_precision()
    right = jv.tc_discriminator_loss
    for module in (jv, vae_derivation):
        monkeypatch.setattr(module, "tc_discriminator_loss",
                            lambda logits_q, logits_permuted: right(logits_permuted, logits_q))
    d = Derivation("vae", "FactorVAE")
    vae_derivation._section_factor_vae(d, np.random.default_rng(1))
    failed = [c.statement for c in d.claims if not c.passed]
    assert len(failed) == 1 and "is stationary at" in failed[0]


def test_factor_vae_permutation_and_loss_mistakes_are_caught(both):
    """FactorVAE's spec cases catch the slips that leave a batch looking shuffled: one permutation for every dimension
    (rows moved together, so the dependence survives) and the permutation applied as its inverse; and a TC term with
    the wrong sign."""
    import jax.numpy as jnp

    from shared_specs.runner import Perturbation, caught

    cases = {case.id: case for case in topics.spec_cases("vae")}

    def rows_together(fn):
        return lambda z, perms: z[perms[0]]

    def inverse(fn):
        return lambda z, perms: jnp.stack([z[jnp.argsort(p), k] for k, p in enumerate(perms)], axis=1)

    def tc_rewarded(fn):
        return lambda recon, kl, tc_logits, gamma: jnp.mean(kl - recon) - gamma * jnp.mean(tc_logits)

    assert "output" in caught(cases["vae/permute_dims"], Perturbation("rows together", fn=rows_together))
    assert "output" in caught(cases["vae/permute_dims"], Perturbation("inverse permutation", fn=inverse))
    assert "output" in caught(cases["vae/factor_vae_loss"], Perturbation("TC rewarded", fn=tc_rewarded))


def test_tc_discriminator_mistakes_are_caught(both, monkeypatch):
    """The discriminator's spec cases catch the labels swapped (q's codes called the permuted ones: its logit then
    estimates minus the TC), the two halves summed rather than averaged, and the leaky ReLU's slope of flax's
    default (0.01) where the paper's is 0.2."""
    import jax

    from shared_specs.runner import Perturbation, caught, run_case

    cases = {case.id: case for case in topics.spec_cases("vae")}

    def swapped(fn):
        return lambda logits_q, logits_permuted: fn(logits_permuted, logits_q)

    def summed(fn):
        return lambda logits_q, logits_permuted: 2 * fn(logits_q, logits_permuted)

    loss = cases["vae/tc_discriminator_loss"]
    assert "output" in caught(loss, Perturbation("labels swapped", fn=swapped))
    assert "output" in caught(loss, Perturbation("halves summed", fn=summed))
    assert run_case(cases["vae/tc_discriminator"]).passed
    import theory_jax.vae as jv

    monkeypatch.setattr(jv.nn, "leaky_relu", lambda x, negative_slope=0.2: jax.nn.leaky_relu(x))  # slope ignored
    assert "output" in caught(cases["vae/tc_discriminator"], Perturbation("leaky slope 0.01"))


def test_hierarchical_vae_slips_are_caught(both, monkeypatch):
    """The two-level KLs' case catches the lower level's KL taken against N(0, I) rather than p(z1 | z2) (the
    one-level VAE's habit), and the activity's the sample variance where Burda et al. take the population one; the
    derivation's claim that the training form averages to log p(x) fails with the first slip too."""
    import jax.numpy as jnp
    import numpy as np

    import theory_jax.vae as jv
    from shared_specs.runner import Perturbation, caught
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import vae as vae_derivation

    cases = {case.id: case for case in topics.spec_cases("vae")}

    def prior_of_one_level(fn):
        return lambda mean_q2, logvar_q2, mean_q1, logvar_q1, mean_p1, logvar_p1: (
            fn(mean_q2, logvar_q2, mean_q1, logvar_q1, 0 * mean_p1, 0 * logvar_p1))

    def sample_variance(fn):
        return lambda means: jnp.var(means, axis=0, ddof=1)

    assert "output" in caught(cases["vae/hierarchical_kl"], Perturbation("KL against N(0, I)", fn=prior_of_one_level))
    assert "output" in caught(cases["vae/latent_activity"], Perturbation("sample variance", fn=sample_variance))
    full_precision()
    for module in (jv, vae_derivation):
        monkeypatch.setattr(module, "hierarchical_kl", prior_of_one_level(jv.hierarchical_kl))
    d = Derivation("vae", "hierarchical")
    vae_derivation._section_hierarchical(d, np.random.default_rng(1))
    failed = [c.statement for c in d.claims if not c.passed]
    assert len(failed) == 1 and "the form a network trains on" in failed[0]


def test_vaegan_slips_are_caught(both, monkeypatch):
    """VAE-GAN's spec cases catch the feature likelihood without its 1/2, the decoder's GAN term in the saturating
    form (log(1 - D), whose loss is not -log D), the discriminator taking the reconstructions for real, and its
    features flattened in NHWC order; the derivation's claims fail with the 1/2 dropped (the Gaussian claim) and
    with the discriminator's labels swapped (its optimum)."""
    import jax
    import jax.numpy as jnp

    import theory_jax.vae as jv
    from shared_specs.runner import Perturbation, caught
    from theory_jax.derivation import Derivation, full_precision
    from theory_jax.derivations import vae as vae_derivation

    cases = {case.id: case for case in topics.spec_cases("vae")}

    def no_half(fn):
        return lambda features_x, features_recon: 2 * fn(features_x, features_recon)

    def saturating(fn):
        def losses(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta=1.0):
            enc, _, dis = fn(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta)
            sat = -jnp.mean(jax.nn.softplus(logits_recon)) - jnp.mean(jax.nn.softplus(logits_prior))
            return enc, gamma * jnp.mean(feature_nll) + sat, dis
        return losses

    def recon_real(fn):
        def losses(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta=1.0):
            enc, dec, dis = fn(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta)
            swap = jnp.mean(jax.nn.softplus(-logits_recon)) - jnp.mean(jax.nn.softplus(logits_recon))
            return enc, dec, dis + swap
        return losses

    assert "output" in caught(cases["vae/feature_reconstruction_nll"], Perturbation("no 1/2", fn=no_half))
    assert "output" in caught(cases["vae/vaegan_losses"], Perturbation("saturating decoder", fn=saturating))
    assert "output" in caught(cases["vae/vaegan_losses"], Perturbation("reconstructions real", fn=recon_real))
    with monkeypatch.context() as patch:
        patch.setattr(jv, "flatten_image", lambda h: h.reshape(h.shape[0], -1))  # NHWC order
        assert "output" in caught(cases["vae/feature_discriminator"], Perturbation("NHWC features"))
    full_precision()
    for name, slip, claim in (("feature_reconstruction_nll", no_half, "less $\\frac F2"),
                              ("vaegan_losses", recon_real, "stationary at logit")):
        with monkeypatch.context() as patch:
            for module in (jv, vae_derivation):
                patch.setattr(module, name, slip(getattr(jv, name)))
            d = Derivation("vae", "VAE-GAN")
            vae_derivation._section_vaegan(d)
        failed = [c.statement for c in d.claims if not c.passed]
        assert len(failed) == 1 and claim in failed[0], (name, failed)
