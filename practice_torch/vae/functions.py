"""The pieces of the VAE's ELBO in PyTorch: twins of ``theory_jax/vae.py`` (same names and arguments).

Noise is an argument (``eps``); ``draw_eps`` is the convenience wrapper that draws it.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from practice_torch.elbo import gaussian_kl, standard_normal_kl

LOG_2PI = math.log(2 * math.pi)


# 1. The pieces of the ELBO -----------------------------------------------------------------------
def reparameterize(mean, logvar, eps):
    """z = mean + exp(logvar / 2) * eps, a draw of N(mean, diag exp(logvar)) with eps ~ N(0, I) passed in (Kingma &
    Welling, eq. 10). mean, logvar: (..., d) the encoder's mean and log-variance; eps: (..., d) -> z: (..., d)."""
    return mean + torch.exp(0.5 * logvar) * eps


def bernoulli_log_prob(x, logits):
    """log Bernoulli(x; sigmoid(logits)) = x l - softplus(l), summed over the last axis. (..., D) -> (...)."""
    return torch.sum(x * logits - F.softplus(logits), dim=-1)


def with_condition(h, y, num_classes: int):
    """Concatenate one-hot labels to features for the conditional VAE. h: (B, F), y: (B,) int -> (B, F + n)."""
    if num_classes == 0:
        return h
    if y is None:
        raise ValueError(f"this VAE is conditional on {num_classes} classes: pass labels y")
    return torch.cat([h, F.one_hot(y.long(), num_classes).to(h.dtype)], dim=-1)


def draw_eps(shape, generator: torch.Generator | None = None, device=None, dtype=None):
    """Standard normal noise for ``elbo``/``loss`` (B, d) or ``importance_nll`` (B, K, d)."""
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


# 2. Total correlation: the KL's three parts (Chen et al. 2018, beta-TCVAE) ------------------------------------
def log_density_matrix(z, mean, logvar):
    """log q(z_ik | x_j) for every pair of a batch: z, mean, logvar (M, d) -> (M, M, d), indexed [i, j, k]."""
    return -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mean[None]) ** 2 * torch.exp(-logvar[None]))


def stratified_log_weights(batch: int, dataset_size: int, dtype=torch.float64):
    """log w (M, M) of q(z_i) ~ sum_j w_ij q(z_i | x_j) for z_i ~ q(z | x_i): w_ii = 1/N for the example that drew
    z_i, w_ij = (N - 1) / (N (M - 1)) for the M - 1 others (a uniform draw from the rest of the data set), so the
    sum's expectation is q(z_i) = (1/N) sum_n q(z_i | x_n) exactly; N = M makes it the batch's own mixture."""
    if not 2 <= batch <= dataset_size:
        raise ValueError(f"the estimator needs 2 <= batch size <= data set size, got {batch} and {dataset_size}")
    others = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch - 1)
    eye = torch.eye(batch, dtype=torch.bool)
    return torch.where(eye, torch.tensor(-math.log(dataset_size), dtype=dtype), torch.tensor(others, dtype=dtype))


def total_correlation_terms(z, mean, logvar, dataset_size: int):
    """(index-code MI, total correlation, dimension-wise KL), each (M,), for z_i ~ q(z | x_i) of a batch (M, d):
    log q(z_i|x_i) - log q(z_i),  log q(z_i) - sum_k log q(z_ik),  sum_k log q(z_ik) - log p(z_ik),
    with q(z) and its marginals q(z_k) estimated over the batch by ``stratified_log_weights``. Their sum is
    log q(z_i|x_i) - log p(z_i), the one-sample estimate of KL(q(z|x_i) || p(z)) (Chen et al. 2018, eq. 2)."""
    log_q = log_density_matrix(z, mean, logvar)
    log_w = stratified_log_weights(z.shape[0], dataset_size, z.dtype).to(z.device)
    log_qz_given_x = torch.diagonal(log_q.sum(-1))
    log_qz = torch.logsumexp(log_q.sum(-1) + log_w, dim=1)
    log_qz_marginals = torch.logsumexp(log_q + log_w[..., None], dim=1).sum(-1)
    log_pz = -0.5 * torch.sum(LOG_2PI + z**2, dim=-1)
    return log_qz_given_x - log_qz, log_qz - log_qz_marginals, log_qz_marginals - log_pz


# Hierarchical VAEs (Sonderby et al. 2016; Vahdat & Kautz 2020): two levels of latents, inferred top-down ------------
def hierarchical_kl(mean_q2, logvar_q2, mean_q1, logvar_q1, mean_p1, logvar_p1):
    """The two KLs of a two-level VAE's ELBO, E_q log p(x|z1) - KL(q(z2|x) || N(0, I)) - KL(q(z1|x, z2) || p(z1|z2)),
    the second at the z2 drawn from q(z2|x). Every argument (B, d) of its level -> (kl_top (B,), kl_bottom (B,))."""
    return standard_normal_kl(mean_q2, logvar_q2), gaussian_kl(mean_q1, logvar_q1, mean_p1, logvar_p1)


def latent_activity(means):
    """Each latent's activity, Cov_x(E_q[z_k | x]) (Burda et al. 2016, sec. 5.2): the population variance of its
    posterior mean over the examples; below 0.01, inactive (collapsed onto the prior). means: (N, d) -> (d,)."""
    return torch.var(means, dim=0, correction=0)


# FactorVAE (Kim & Mnih 2018): the total correlation by the density-ratio trick ---------------------------------------
def permute_dims(z, perms):
    """Each latent dimension shuffled across the batch on its own (Kim & Mnih 2018, Algorithm 1): column k is
    z[perms[k], k]. z: (B, d), perms: (d, B) int, each row a permutation of 0..B-1 -> (B, d)."""
    return torch.gather(z, 0, perms.T)


def factor_vae_loss(recon, kl, tc_logits, gamma):
    """FactorVAE's VAE loss (Kim & Mnih 2018, eq. 2, negated): mean_b (KL_b - recon_b) + gamma mean_b logit D(z_b),
    the logit estimating log q(z) - log prod_k q(z_k). recon, kl, tc_logits: (B,) -> ()."""
    return torch.mean(kl - recon) + gamma * torch.mean(tc_logits)


def tc_discriminator_loss(logits_q, logits_permuted):
    """The TC discriminator's loss (Kim & Mnih 2018, Algorithm 2): codes of q(z) labelled 1, permuted codes (samples
    of prod_k q(z_k)) labelled 0, half weight each: 1/2 mean softplus(-logit D(z)) + 1/2 mean softplus(logit
    D(z_perm)), minimised by logit D(z) = log q(z) - log prod_k q(z_k). logits_q: (B,), logits_permuted: (B',) -> ()."""
    return 0.5 * (torch.mean(F.softplus(-logits_q)) + torch.mean(F.softplus(logits_permuted)))


def permutations(keys):
    """A uniformly random permutation of the batch for each latent dimension, from uniform keys drawn as noise: the
    ranks of each column. keys: (B, d) -> perms (d, B), row k a permutation of 0..B-1 (``permute_dims``'s)."""
    return torch.argsort(keys, dim=0).T


# VAE-GAN (Larsen et al. 2016): the reconstruction measured in a discriminator's features -------------------------------
def feature_reconstruction_nll(features_x, features_recon):
    """L_llike^{Dis_l} (Larsen et al. 2016, eq. 8): -log N(Dis_l(x) | Dis_l(x~), I) of the discriminator's features at
    layer l, summed over them, less its constant (F/2) log 2 pi: 1/2 sum_f (Dis_l(x)_f - Dis_l(x~)_f)^2.
    features_x, features_recon: (B, F) -> (B,)."""
    return 0.5 * torch.sum((features_x - features_recon) ** 2, dim=-1)


def vaegan_losses(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta=1.0):
    """VAE-GAN's three losses, one a network (Larsen et al. 2016, Algorithm 1), each a batch mean:
    the encoder's, L_prior + L_llike: mean(beta KL + feature_nll);
    the decoder's, gamma L_llike + the generator's side of L_GAN on both of its fakes, the reconstructions x~ and
    the prior's samples x_p (the non-saturating form, -log D): gamma mean(feature_nll) + mean softplus(-logit x~) +
    mean softplus(-logit x_p);
    the discriminator's, -L_GAN: mean softplus(-logit x) + mean softplus(logit x~) + mean softplus(logit x_p).
    kl, feature_nll: (B,); logits_*: (B,) -> (encoder_loss, decoder_loss, discriminator_loss)."""
    encoder = torch.mean(beta * kl + feature_nll)
    decoder = gamma * torch.mean(feature_nll) + torch.mean(F.softplus(-logits_recon)) + torch.mean(F.softplus(-logits_prior))
    discriminator = (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_recon))
                     + torch.mean(F.softplus(logits_prior)))
    return encoder, decoder, discriminator
