"""Spec cases for ``vae`` at three levels: functions, modules under the converter, training steps.

* functions: the reparameterisation, the Bernoulli log-likelihood and the KL's three parts of beta-TCVAE (SciPy as
  third witness);
* modules: MLP and convolutional encoders and decoders (GroupNorm eps, explicit conv padding,
  ConvTranspose output padding and NCHW flattening are the convention traps they pin down), and
  the whole VAE's ELBO and importance-sampled NLL, with gradients w.r.t. every weight;
* steps: three Adam / AdamW steps in torch.optim and optax from the same weights and batches.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from shared_specs.case import FunctionCase, ModuleCase, StepCase, gaussian, uniform

B, LATENT, CLASSES, K = 3, 4, 3, 5
IMAGE = (1, 8, 8)
MLP = {"image_shape": IMAGE, "latent_dim": LATENT, "hidden": (16, 12)}
CONV = {"image_shape": IMAGE, "latent_dim": LATENT, "channels": (4, 8), "groups": 2}
HIERARCHICAL = {"image_shape": IMAGE, "latent_dim": LATENT, "top_dim": 2, "channels": (4, 8), "hidden": 6, "groups": 2}


def _hierarchical_batch(r):
    return {"x": _images(r), "eps": gaussian(r, B, 2 + LATENT, dtype="float32")}


def ref_bernoulli_log_prob(x, logits):
    """x log sigmoid(l) + (1 - x) log sigmoid(-l), by SciPy's log-sigmoid (log_expit)."""
    from scipy.special import log_expit

    return (x * log_expit(logits) + (1 - x) * log_expit(-logits)).sum(-1)


def ref_total_correlation_terms(z, mean, logvar, dataset_size):
    """The KL's three parts by SciPy: weighted logsumexp (``b=``) of scipy.stats.norm densities, weights built here."""
    from scipy.special import logsumexp

    m = len(z)
    w = np.full((m, m), (dataset_size - 1) / (dataset_size * (m - 1)))
    np.fill_diagonal(w, 1 / dataset_size)
    dens = stats.norm.logpdf(z[:, None], mean[None], np.exp(0.5 * logvar[None]))  # [i, j, k]
    log_qzx = np.array([dens[i, i].sum() for i in range(m)])
    log_qz = logsumexp(dens.sum(-1), b=w, axis=1)
    log_prod = logsumexp(dens, b=w[..., None], axis=1).sum(-1)
    log_pz = stats.norm.logpdf(z).sum(-1)
    return log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz


def ref_tc_discriminator_loss(logits_q, logits_permuted):
    """Binary cross-entropy by SciPy's log-sigmoid: -log D(z) on q's codes, -log(1 - D(z)) on the permuted ones."""
    from scipy.special import log_expit

    return 0.5 * (-np.mean(log_expit(logits_q)) - np.mean(log_expit(-logits_permuted)))


def ref_feature_reconstruction_nll(features_x, features_recon):
    """-log N(Dis_l(x) | Dis_l(x~), I) by scipy.stats.norm, less the (F/2) log 2 pi the loss leaves out."""
    f = features_x.shape[-1]
    return -stats.norm.logpdf(features_x, features_recon).sum(-1) - 0.5 * f * np.log(2 * np.pi)


def ref_vaegan_losses(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta):
    """The three losses by SciPy's log-sigmoid: -log D on what a network wants called real, -log(1 - D) on fakes."""
    from scipy.special import log_expit

    encoder = np.mean(beta * kl + feature_nll)
    decoder = gamma * np.mean(feature_nll) - np.mean(log_expit(logits_recon)) - np.mean(log_expit(logits_prior))
    discriminator = -np.mean(log_expit(logits_real)) - np.mean(log_expit(-logits_recon)) - np.mean(log_expit(-logits_prior))
    return encoder, decoder, discriminator


def _vaegan_logits(r):
    return {"kl": np.abs(gaussian(r, B, scale=5.0)), "feature_nll": np.abs(gaussian(r, B, scale=40.0)),
            "logits_real": gaussian(r, B, scale=3.0), "logits_recon": gaussian(r, B, scale=3.0),
            "logits_prior": gaussian(r, B, scale=3.0)}


def _two_levels(r):
    """Each level's posterior and the lower level's prior at the sampled z2: (B, 3) for z2, (B, LATENT) for z1."""
    return {"mean_q2": gaussian(r, B, 3), "logvar_q2": gaussian(r, B, 3, scale=0.5), "mean_q1": gaussian(r, B, LATENT),
            "logvar_q1": gaussian(r, B, LATENT, scale=0.5), "mean_p1": gaussian(r, B, LATENT),
            "logvar_p1": gaussian(r, B, LATENT, scale=0.5)}


def ref_hierarchical_kl(mean_q2, logvar_q2, mean_q1, logvar_q1, mean_p1, logvar_p1):
    """Each level's KL as SciPy's Monte Carlo-free route: the differential entropy of q and the cross-entropy of p
    under q, by scipy.stats.norm's closed forms per coordinate."""
    def kl(mq, lq, mp, lp):
        sq, sp = np.exp(0.5 * lq), np.exp(0.5 * lp)
        cross = -stats.norm.logpdf(mq, mp, sp) + sq**2 / (2 * sp**2)  # E_q[-log p] for a Gaussian q
        return np.sum(cross - stats.norm(mq, sq).entropy(), axis=-1)

    return kl(mean_q2, logvar_q2, 0 * mean_q2, 0 * logvar_q2), kl(mean_q1, logvar_q1, mean_p1, logvar_p1)


def _posterior_batch(r, m=6):
    return {"z": gaussian(r, m, LATENT), "mean": gaussian(r, m, LATENT), "logvar": gaussian(r, m, LATENT, scale=0.5)}


def _images(r, n=B, dtype="float32"):
    return uniform(r, n, *IMAGE, dtype=dtype)


def _labels(r, n=B):
    return r.integers(0, CLASSES, size=n).astype(np.int64)


def _latents(r, n=B):
    return gaussian(r, n, LATENT, dtype="float32")


def _vae_batch(conditional=False):
    def make(r):
        batch = {"x": _images(r), "eps": _latents(r)}
        return {**batch, "y": _labels(r)} if conditional else batch
    return make


def _batches(conditional=False, steps=3):
    return lambda r: [_vae_batch(conditional)(r) for _ in range(steps)]


ADAM = {"name": "adam", "lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8}
ADAMW = {"name": "adamw", "lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}

CASES = (
    # functions ----------------------------------------------------------------------------------
    FunctionCase("vae/reparameterize", "reparameterize",
                 lambda r: {"mean": gaussian(r, B, LATENT), "logvar": gaussian(r, B, LATENT, scale=0.5),
                            "eps": gaussian(r, B, LATENT)},
                 grad_wrt=("mean", "logvar"),
                 reference=lambda mean, logvar, eps: stats.norm(mean, np.exp(0.5 * logvar)).ppf(stats.norm.cdf(eps))),
    FunctionCase("vae/bernoulli_log_prob", "bernoulli_log_prob",
                 lambda r: {"x": uniform(r, B, 20), "logits": gaussian(r, B, 20, scale=4.0)},
                 grad_wrt=("x", "logits"), reference=ref_bernoulli_log_prob),
    FunctionCase("vae/bernoulli_log_prob/float32-extreme-logits", "bernoulli_log_prob",
                 lambda r: {"x": (r.uniform(size=(B, 20)) < 0.5).astype("float32"),
                            "logits": gaussian(r, B, 20, scale=60.0, dtype="float32")},
                 dtype="float32", grad_wrt=("logits",), reference=ref_bernoulli_log_prob),
    FunctionCase("vae/total_correlation_terms", "total_correlation_terms", _posterior_batch,
                 grad_wrt=("z", "mean", "logvar"), static={"dataset_size": 1000}, reference=ref_total_correlation_terms),
    FunctionCase("vae/total_correlation_terms/the-batch-is-the-data-set", "total_correlation_terms", _posterior_batch,
                 grad_wrt=("mean",), static={"dataset_size": 6}, reference=ref_total_correlation_terms),
    # FactorVAE: each dimension shuffled across the batch on its own; the loss with the TC discriminator's logits
    FunctionCase("vae/permute_dims", "permute_dims",
                 lambda r: {"z": gaussian(r, B, LATENT), "perms": np.stack([r.permutation(B) for _ in range(LATENT)])},
                 grad_wrt=("z",), reference=lambda z, perms: np.stack([z[p, k] for k, p in enumerate(perms)], axis=1)),
    FunctionCase("vae/factor_vae_loss", "factor_vae_loss",
                 lambda r: {"recon": gaussian(r, B, scale=30.0), "kl": np.abs(gaussian(r, B, scale=5.0)),
                            "tc_logits": gaussian(r, B)},
                 static={"gamma": 6.4}, grad_wrt=("recon", "kl", "tc_logits"),
                 reference=lambda recon, kl, tc_logits, gamma: np.mean(kl - recon) + gamma * np.mean(tc_logits)),
    FunctionCase("vae/hierarchical_kl", "hierarchical_kl", _two_levels, grad_wrt=tuple(_two_levels(
                 np.random.default_rng(0))), reference=ref_hierarchical_kl),
    FunctionCase("vae/latent_activity", "latent_activity",
                 lambda r: {"means": gaussian(r, 40, LATENT) * np.array([2.0, 0.05, 1.0, 0.001])}, grad_wrt=("means",),
                 reference=lambda means: np.var(means, axis=0)),
    FunctionCase("vae/tc_discriminator_loss", "tc_discriminator_loss",
                 lambda r: {"logits_q": gaussian(r, B + 2, scale=3.0), "logits_permuted": gaussian(r, B, scale=3.0)},
                 grad_wrt=("logits_q", "logits_permuted"), reference=ref_tc_discriminator_loss),
    # VAE-GAN: the reconstruction in the discriminator's features; the three networks' losses
    FunctionCase("vae/feature_reconstruction_nll", "feature_reconstruction_nll",
                 lambda r: {"features_x": gaussian(r, B, 7), "features_recon": gaussian(r, B, 7)},
                 grad_wrt=("features_x", "features_recon"), reference=ref_feature_reconstruction_nll),
    FunctionCase("vae/vaegan_losses", "vaegan_losses", _vaegan_logits, static={"gamma": 0.3, "beta": 2.0},
                 grad_wrt=tuple(_vaegan_logits(np.random.default_rng(0))), reference=ref_vaegan_losses),
    # modules --------------------------------------------------------------------------------------
    ModuleCase("vae/feature_discriminator", "FeatureDiscriminator", {"image_shape": IMAGE, "channels": (4, 8), "fc": 6},
               lambda r: {"x": _images(r)}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/vaegan_terms", "VAE",
               {**CONV, "architecture": "conv", "discriminator_channels": (4, 8), "discriminator_fc": 6},
               lambda r: {"x": _images(r), "eps": _latents(r), "z_prior": _latents(r)}, method="vaegan_terms",
               level="loglik", grad_wrt=("x", "eps", "z_prior"), image_inputs=("x",)),
    ModuleCase("vae/hierarchical_vae/level_terms", "HierarchicalVAE", HIERARCHICAL, _hierarchical_batch,
               method="level_terms", grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/hierarchical_vae/importance_nll-gaussian", "HierarchicalVAE",
               {**HIERARCHICAL, "likelihood": "gaussian"},
               lambda r: {"x": _images(r), "eps": gaussian(r, B, K, LATENT + 2, dtype="float32")},
               method="importance_nll", grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/tc_discriminator", "TCDiscriminator", {"latent_dim": LATENT, "hidden": (16, 12)},
               lambda r: {"z": _latents(r)}, grad_wrt=("z",)),
    ModuleCase("vae/mlp_encoder", "MLPEncoder", MLP, lambda r: {"x": _images(r)},
               grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/mlp_decoder", "MLPDecoder", MLP, lambda r: {"z": _latents(r)},
               grad_wrt=("z",), image_outputs=("<root>",)),
    ModuleCase("vae/conv_encoder", "ConvEncoder", CONV, lambda r: {"x": _images(r)},
               grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/conv_decoder", "ConvDecoder", CONV, lambda r: {"z": _latents(r)},
               grad_wrt=("z",), image_outputs=("<root>",)),
    ModuleCase("vae/conv_encoder/conditional", "ConvEncoder", {**CONV, "num_classes": CLASSES},
               lambda r: {"x": _images(r), "y": _labels(r)}, grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/conv_decoder/conditional", "ConvDecoder", {**CONV, "num_classes": CLASSES},
               lambda r: {"z": _latents(r), "y": _labels(r)}, grad_wrt=("z",), image_outputs=("<root>",)),
    ModuleCase("vae/vae_elbo/mlp-bernoulli", "VAE", {**MLP, "architecture": "mlp"}, _vae_batch(),
               method="elbo", level="loglik", grad_wrt=("x",), image_inputs=("x",)),
    ModuleCase("vae/vae_elbo/conv-gaussian-conditional", "VAE",
               {**CONV, "architecture": "conv", "likelihood": "gaussian", "num_classes": CLASSES},
               _vae_batch(conditional=True), method="elbo", level="loglik", grad_wrt=("x", "eps"),
               image_inputs=("x",)),
    ModuleCase("vae/vae_loss/beta", "VAE", {**CONV, "architecture": "conv"}, _vae_batch(),
               method="loss", level="loglik", image_inputs=("x",), static={"beta": 4.0}),
    ModuleCase("vae/vae_tc_terms/conv-gaussian", "VAE", {**CONV, "architecture": "conv", "likelihood": "gaussian"},
               _vae_batch(), method="tc_terms", level="loglik", image_inputs=("x",), static={"dataset_size": 100}),
    ModuleCase("vae/vae_importance_nll", "VAE", {**CONV, "architecture": "conv"},
               lambda r: {"x": _images(r), "eps": gaussian(r, B, K, LATENT, dtype="float32")},
               method="importance_nll", level="loglik", image_inputs=("x",)),
    # one training step (three, so Adam's bias correction is exercised) -----------------------------
    StepCase("vae/adam_steps/mlp", "VAE", {**MLP, "architecture": "mlp"}, _batches(), ADAM, image_inputs=("x",)),
    StepCase("vae/adamw_steps/conv-conditional", "VAE", {**CONV, "architecture": "conv", "num_classes": CLASSES},
             _batches(conditional=True), ADAMW, image_inputs=("x",)),
    StepCase("vae/adam_steps/conv-gaussian-beta", "VAE",
             {**CONV, "architecture": "conv", "likelihood": "gaussian"}, _batches(), ADAM,
             image_inputs=("x",), static={"beta": 2.0}),
)
