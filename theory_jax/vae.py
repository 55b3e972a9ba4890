"""The variational autoencoder: Gaussian encoder, Bernoulli or Gaussian decoder, beta-VAE, cVAE.

Lectures: VAE; reparameterisation; training and inference; beta-VAE; conditional VAE (Kingma &
Welling 2014; Higgins et al. 2017; Sohn et al. 2015; Burda et al. 2016 for the importance-sampled
likelihood). Builds on ``theory_jax/elbo.py`` (Gaussian KL and log densities, the IWAE bound).

Flax (linen) modules with the same class and attribute names as ``practice_torch/vae/``, so
``shared_specs.interop`` carries weights across. Images are NHWC here (NCHW in torch); flattening
and unflattening go through NCHW order so a Dense layer after a flatten sees the torch ordering.
Randomness is an argument: every method that samples takes its ``eps`` (standard normal) as input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jax.scipy.special import logsumexp

from theory_jax.derivation import Derivation, as_float64, full_precision, new_figure
from theory_jax.elbo import (
    gaussian_kl,
    gaussian_log_prob,
    iwae_bound,
    linear_gaussian_elbo,
    linear_gaussian_evidence,
    linear_gaussian_log_joint,
    linear_gaussian_posterior,
    mvn_kl,
    standard_normal_kl,
)

TITLE = "the variational autoencoder"
LECTURES = ("VAE; reparameterisation; training and inference; beta-VAE; beta-TCVAE; FactorVAE; hierarchical VAEs; "
            "VAE-GAN; conditional VAE")
LOG_2PI = math.log(2 * math.pi)
GROUPNORM_EPS = 1e-5  # torch's default; flax's default is 1e-6 (docs/ARCHITECTURE.md, "Convention traps")


# 1. The pieces of the ELBO -----------------------------------------------------------------------
def reparameterize(mean, logvar, eps):
    """z = mean + exp(logvar / 2) * eps, a draw of N(mean, diag exp(logvar)) with eps ~ N(0, I) passed in (Kingma &
    Welling, eq. 10). mean, logvar: (..., d) the encoder's mean and log-variance; eps: (..., d) -> z: (..., d)."""
    return mean + jnp.exp(0.5 * logvar) * eps


def bernoulli_log_prob(x, logits):
    """log Bernoulli(x; sigmoid(logits)) = x l - softplus(l), summed over the last axis. (..., D) -> (...).

    Valid for x in [0, 1] (the continuous-Bernoulli-free convention of the course: -BCE with logits).
    """
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def flatten_image(x):
    """(B, H, W, C) -> (B, C*H*W) in NCHW order, matching ``torch.flatten`` of the twin's NCHW tensor."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1) if x.ndim == 4 else x


def unflatten_image(h, image_shape):
    """(B, C*H*W) in NCHW order -> (B, H, W, C)."""
    c, hgt, wid = image_shape
    return jnp.transpose(h.reshape(h.shape[0], c, hgt, wid), (0, 2, 3, 1))


def with_condition(h, y, num_classes: int):
    """Concatenate one-hot labels to features for the conditional VAE. h: (B, F), y: (B,) int -> (B, F + n)."""
    if num_classes == 0:
        return h
    if y is None:
        raise ValueError(f"this VAE is conditional on {num_classes} classes: pass labels y")
    return jnp.concatenate([h, jax.nn.one_hot(y, num_classes, dtype=h.dtype)], axis=-1)


def conv_transpose_padding(kernel: int, padding: int, output_padding: int) -> tuple[int, int]:
    """Explicit (low, high) padding of the dilated input that reproduces torch's ConvTranspose2d:
    (k - 1 - p, k - 1 - p + output_padding)."""
    return kernel - 1 - padding, kernel - 1 - padding + output_padding


# The KL's three parts (Chen et al. 2018, beta-TCVAE) ---------------------------------------------------------------
def log_density_matrix(z, mean, logvar):
    """log q(z_ik | x_j) for every pair of a batch: z, mean, logvar (M, d) -> (M, M, d), indexed [i, j, k]."""
    return -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mean[None]) ** 2 * jnp.exp(-logvar[None]))


def stratified_log_weights(batch: int, dataset_size: int, dtype=jnp.float64):
    """log w (M, M) of q(z_i) ~ sum_j w_ij q(z_i | x_j) for z_i ~ q(z | x_i): w_ii = 1/N for the example that drew
    z_i, w_ij = (N - 1) / (N (M - 1)) for the M - 1 others (a uniform draw from the rest of the data set), so the
    sum's expectation is q(z_i) = (1/N) sum_n q(z_i | x_n) exactly; N = M makes it the batch's own mixture."""
    if not 2 <= batch <= dataset_size:
        raise ValueError(f"the estimator needs 2 <= batch size <= data set size, got {batch} and {dataset_size}")
    others = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch - 1)
    return jnp.where(jnp.eye(batch, dtype=bool), -math.log(dataset_size), others).astype(dtype)


def total_correlation_terms(z, mean, logvar, dataset_size: int):
    """(index-code MI, total correlation, dimension-wise KL), each (M,), for z_i ~ q(z | x_i) of a batch (M, d):
    log q(z_i|x_i) - log q(z_i),  log q(z_i) - sum_k log q(z_ik),  sum_k log q(z_ik) - log p(z_ik),
    with q(z) and its marginals q(z_k) estimated over the batch by ``stratified_log_weights``. Their sum is
    log q(z_i|x_i) - log p(z_i), the one-sample estimate of KL(q(z|x_i) || p(z)) (Chen et al. 2018, eq. 2)."""
    log_q = log_density_matrix(z, mean, logvar)
    log_w = stratified_log_weights(z.shape[0], dataset_size, z.dtype)
    log_qz_given_x = jnp.diagonal(log_q.sum(-1))
    log_qz = logsumexp(log_q.sum(-1) + log_w, axis=1)
    log_qz_marginals = logsumexp(log_q + log_w[..., None], axis=1).sum(-1)
    log_pz = -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)
    return log_qz_given_x - log_qz, log_qz - log_qz_marginals, log_qz_marginals - log_pz


# FactorVAE (Kim & Mnih 2018): the total correlation by the density-ratio trick ---------------------------------------
def permute_dims(z, perms):
    """Each latent dimension shuffled across the batch on its own (Kim & Mnih 2018, Algorithm 1): column k of the
    result is z[perms[k], k], so a batch drawn from q(z) becomes one drawn from the product of its marginals
    prod_k q(z_k), the dimensions' dependence broken and each one's values kept. z: (B, d), perms: (d, B) int, each
    row a permutation of 0..B-1 (the noise, passed in) -> (B, d)."""
    return jnp.take_along_axis(z, perms.T, axis=0)


def factor_vae_loss(recon, kl, tc_logits, gamma):
    """FactorVAE's VAE loss (Kim & Mnih 2018, eq. 2, negated): the negative ELBO plus gamma times the TC estimate,
    mean_b (KL_b - recon_b) + gamma mean_b logit D(z_b): at the optimal discriminator (z from q against permuted z)
    the logit is log q(z) - log prod_k q(z_k), whose mean over q is TC(z). recon, kl, tc_logits: (B,) -> ()."""
    return jnp.mean(kl - recon) + gamma * jnp.mean(tc_logits)


def tc_discriminator_loss(logits_q, logits_permuted):
    """The TC discriminator's loss (Kim & Mnih 2018, Algorithm 2): the cross-entropy of telling codes of q(z)
    (label 1) from permuted codes, samples of prod_k q(z_k) (label 0), half weight each,
    1/2 mean softplus(-logit D(z)) + 1/2 mean softplus(logit D(z_perm)); minimised by
    logit D(z) = log q(z) - log prod_k q(z_k). logits_q: (B,), logits_permuted: (B',) -> ()."""
    return 0.5 * (jnp.mean(jax.nn.softplus(-logits_q)) + jnp.mean(jax.nn.softplus(logits_permuted)))


# VAE-GAN (Larsen et al. 2016): the reconstruction measured in a discriminator's features -------------------------------
def feature_reconstruction_nll(features_x, features_recon):
    """L_llike^{Dis_l} (Larsen et al. 2016, eq. 8): -log N(Dis_l(x) | Dis_l(x~), I), a Gaussian of unit variance on the
    discriminator's features at layer l rather than on the pixels, summed over them, less its constant
    (F/2) log 2 pi: 1/2 sum_f (Dis_l(x)_f - Dis_l(x~)_f)^2. features_x, features_recon: (B, F) -> (B,)."""
    return 0.5 * jnp.sum((features_x - features_recon) ** 2, axis=-1)


def vaegan_losses(kl, feature_nll, logits_real, logits_recon, logits_prior, gamma, beta=1.0):
    """VAE-GAN's three losses, one a network (Larsen et al. 2016, Algorithm 1), each a batch mean:
    the encoder's, L_prior + L_llike: mean(beta KL + feature_nll) (no GAN term: the encoder learns to code, not to
    fool);
    the decoder's, gamma L_llike + the generator's side of L_GAN on both of its fakes, the reconstructions x~ and
    the prior's samples x_p, in the non-saturating form -log D (Goodfellow et al. 2014, sec. 3): gamma
    mean(feature_nll) + mean softplus(-logit x~) + mean softplus(-logit x_p);
    the discriminator's, -L_GAN: mean softplus(-logit x) + mean softplus(logit x~) + mean softplus(logit x_p)
    (the features' likeness does not train it: they would learn to agree).
    kl, feature_nll: (B,); logits_*: (B,) -> (encoder_loss, decoder_loss, discriminator_loss)."""
    softplus = jax.nn.softplus
    encoder = jnp.mean(beta * kl + feature_nll)
    decoder = gamma * jnp.mean(feature_nll) + jnp.mean(softplus(-logits_recon)) + jnp.mean(softplus(-logits_prior))
    discriminator = (jnp.mean(softplus(-logits_real)) + jnp.mean(softplus(logits_recon))
                     + jnp.mean(softplus(logits_prior)))
    return encoder, decoder, discriminator


# Hierarchical VAEs (Sonderby et al. 2016; Vahdat & Kautz 2020): two levels of latents, inferred top-down ------------
def hierarchical_kl(mean_q2, logvar_q2, mean_q1, logvar_q1, mean_p1, logvar_p1):
    """The two KLs of a two-level VAE's ELBO, E_q log p(x|z1) - KL(q(z2|x) || N(0, I)) - KL(q(z1|x, z2) || p(z1|z2)),
    the second at the z2 drawn from q(z2|x) (its expectation over z2 by that one sample). Every argument (B, d) of its
    level -> (kl_top (B,), kl_bottom (B,))."""
    return standard_normal_kl(mean_q2, logvar_q2), gaussian_kl(mean_q1, logvar_q1, mean_p1, logvar_p1)


def latent_activity(means):
    """Each latent's activity over a data set, Cov_x(E_q[z_k | x]) (Burda et al. 2016, sec. 5.2): the population
    variance of its posterior mean over the examples. A unit with activity below 0.01 is inactive (collapsed onto the
    prior): the posterior-collapse diagnostic, read per level. means: (N, d) -> (d,)."""
    return jnp.var(means, axis=0)


class TCDiscriminator(nn.Module):
    """FactorVAE's discriminator (Kim & Mnih 2018, Appendix A: an MLP of 6 layers of 1000, leaky ReLU 0.2):
    z (B, d) -> logit D(z) (B,), the log-odds that z came from q(z) rather than from prod_k q(z_k). ``latent_dim``
    is d, as the torch twin takes it (Dense infers it here)."""

    latent_dim: int
    hidden: Sequence[int] = (1000,) * 6

    def setup(self):
        self.layers = [nn.Dense(h) for h in self.hidden]
        self.out = nn.Dense(1)

    def __call__(self, z):
        h = z
        for layer in self.layers:
            h = nn.leaky_relu(layer(h), 0.2)
        return self.out(h)[..., 0]


class FeatureDiscriminator(nn.Module):
    """VAE-GAN's discriminator (Larsen et al. 2016): strided 3x3 convs (stride 2, explicit padding 1), each normalised
    and through leaky ReLU 0.2, a fully connected layer of ``fc``, the logit. x: (B, H, W, C) -> (Dis_l(x) (B, F),
    logit (B,)): the features Dis_l are the last conv's activations, flattened in NCHW order (as the torch twin's),
    the layer whose likeness measures the reconstruction. GroupNorm (torch's eps) where the paper has batch norm:
    features near unit scale, each image normalised alone. ``image_shape`` (C, H, W) as the torch twin takes it (the
    convs infer it here)."""

    image_shape: Sequence[int]
    channels: Sequence[int] = (32, 64)
    fc: int = 512
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.hidden = nn.Dense(self.fc)
        self.out = nn.Dense(1)

    def __call__(self, x):
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = nn.leaky_relu(norm(conv(h)), 0.2)
        features = flatten_image(h)
        return features, self.out(nn.leaky_relu(self.hidden(features), 0.2))[..., 0]


# 2. Encoders and decoders --------------------------------------------------------------------------
class MLPEncoder(nn.Module):
    """q(z|x[, y]) = N(mean, diag e^logvar). x: (B, H, W, C) or (B, D), y: (B,) -> (mean, logvar), each (B, d)."""

    image_shape: Sequence[int]
    latent_dim: int
    hidden: Sequence[int] = (256,)
    num_classes: int = 0

    def setup(self):
        self.layers = [nn.Dense(h) for h in self.hidden]
        self.mean = nn.Dense(self.latent_dim)
        self.logvar = nn.Dense(self.latent_dim)

    def __call__(self, x, y=None):
        h = with_condition(flatten_image(x), y, self.num_classes)
        for layer in self.layers:
            h = nn.silu(layer(h))
        return self.mean(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """p(x|z[, y]): z (B, d), y (B,) -> decoder output (B, H, W, C): Bernoulli logits or Gaussian means."""

    image_shape: Sequence[int]
    latent_dim: int
    hidden: Sequence[int] = (256,)
    num_classes: int = 0

    def setup(self):
        self.layers = [nn.Dense(h) for h in reversed(self.hidden)]
        self.out = nn.Dense(math.prod(self.image_shape))

    def __call__(self, z, y=None):
        h = with_condition(z, y, self.num_classes)
        for layer in self.layers:
            h = nn.silu(layer(h))
        return unflatten_image(self.out(h), self.image_shape)


def downsampling_convs(channels: Sequence[int], groups: int) -> tuple[list, list]:
    """The conv encoders' trunk (the VAE's, the autoencoder's, the VQ-VAE's), called in a ``setup``: a strided 3x3
    conv (stride 2, explicit padding 1, not 'SAME') per entry of ``channels``, each followed by GroupNorm (torch's
    eps, the stable variance). -> (convs, norms), named ``convs_i`` and ``norms_i`` by the attributes they are given."""
    return ([nn.Conv(c, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))) for c in channels],
            [nn.GroupNorm(num_groups=min(groups, c), epsilon=GROUPNORM_EPS, use_fast_variance=False) for c in channels])


def downsample(convs, norms, h):
    """h through that trunk, SiLU(norm(conv(h))) per level. (B, H, W, C) -> (B, H / 2^L, W / 2^L, channels[-1])."""
    for conv, norm in zip(convs, norms):
        h = nn.silu(norm(conv(h)))
    return h


class ConvEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, padding 1 on each side: explicit, not 'SAME'), GroupNorm, SiLU,
    then linear heads. x: (B, H, W, C), H and W divisible by 2^len(channels) -> (mean, logvar) (B, d)."""

    image_shape: Sequence[int]
    latent_dim: int
    channels: Sequence[int] = (32, 64)
    num_classes: int = 0
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.mean = nn.Dense(self.latent_dim)
        self.logvar = nn.Dense(self.latent_dim)

    def __call__(self, x, y=None):
        h = with_condition(flatten_image(downsample(self.convs, self.norms, x)), y, self.num_classes)
        return self.mean(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """Linear to a (channels[-1], H/2^n, W/2^n) map, then ConvTranspose 3x3 (stride 2, padding 1,
    output padding 1) doubling the size, GroupNorm and SiLU between; the last one outputs C channels.
    z: (B, d), y: (B,) -> (B, H, W, C)."""

    image_shape: Sequence[int]
    latent_dim: int
    channels: Sequence[int] = (32, 64)
    num_classes: int = 0
    groups: int = 8

    def setup(self):
        c, hgt, wid = self.image_shape
        scale = 2 ** len(self.channels)
        self.base_shape = (self.channels[-1], hgt // scale, wid // scale)
        outs = list(reversed(self.channels))[1:] + [c]
        pad = conv_transpose_padding(3, 1, 1)
        self.project = nn.Dense(math.prod(self.base_shape))
        self.deconvs = [nn.ConvTranspose(o, (3, 3), strides=(2, 2), padding=(pad, pad), transpose_kernel=True)
                        for o in outs]
        self.norms = [nn.GroupNorm(num_groups=min(self.groups, o), epsilon=GROUPNORM_EPS, use_fast_variance=False)
                      for o in outs[:-1]]

    def __call__(self, z, y=None):
        h = unflatten_image(nn.silu(self.project(with_condition(z, y, self.num_classes))), self.base_shape)
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h)
            if i < len(self.norms):
                h = nn.silu(self.norms[i](h))
        return h


# 3. The VAE: ELBO, beta-VAE objective, importance-sampled likelihood -------------------------------
class VAE(nn.Module):
    """Encoder q(z|x[,y]), prior N(0, I), decoder p(x|z[,y]) (Bernoulli logits or Gaussian mean with a
    learned scalar log-std ``log_sigma``). ``num_classes > 0`` makes it a conditional VAE;
    ``loss(..., beta=...)`` weighs the KL (beta-VAE; beta is the training step's setting, not the network's);
    ``elbo`` is always the beta = 1 bound. ``discriminator_channels`` (VAE-GAN's) adds ``discriminator``, a second
    network on the images (``FeatureDiscriminator``), whose features measure the reconstruction (``vaegan_terms``)."""

    image_shape: Sequence[int]
    latent_dim: int = 16
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    hidden: Sequence[int] = (256,)
    channels: Sequence[int] = (32, 64)
    num_classes: int = 0
    groups: int = 8
    discriminator_channels: Sequence[int] = ()
    discriminator_fc: int = 512

    def setup(self):
        if self.architecture == "mlp":
            kw = dict(image_shape=self.image_shape, latent_dim=self.latent_dim, hidden=self.hidden,
                      num_classes=self.num_classes)
            self.encoder, self.decoder = MLPEncoder(**kw), MLPDecoder(**kw)
        elif self.architecture == "conv":
            kw = dict(image_shape=self.image_shape, latent_dim=self.latent_dim, channels=self.channels,
                      num_classes=self.num_classes, groups=self.groups)
            self.encoder, self.decoder = ConvEncoder(**kw), ConvDecoder(**kw)
        else:
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {self.architecture!r}")
        if self.likelihood == "gaussian":
            self.log_sigma = self.param("log_sigma", nn.initializers.zeros, (1,), jnp.float32)
        elif self.likelihood != "bernoulli":
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        if self.discriminator_channels:
            self.discriminator = FeatureDiscriminator(self.image_shape, self.discriminator_channels,
                                                      self.discriminator_fc)

    def encode(self, x, y=None):
        return self.encoder(x, y)

    def decode(self, z, y=None):
        return self.decoder(z, y)

    def log_likelihood(self, x, out):
        """log p(x|z) summed over pixels. x, out: (N, H, W, C) -> (N,)."""
        x, out = flatten_image(x), flatten_image(out)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(x, out)
        return gaussian_log_prob(x, out, jnp.broadcast_to(2.0 * self.log_sigma, out.shape))

    def terms(self, x, eps, y=None):
        """(E_q log p(x|z) by one reparameterised sample, KL(q(z|x) || N(0, I))), each (B,)."""
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean, logvar, eps)
        return self.log_likelihood(x, self.decode(z, y)), standard_normal_kl(mean, logvar)

    def tc_terms(self, x, eps, y=None, dataset_size: int = 0):
        """``terms`` and the KL's three parts (index-code MI, total correlation, dimension-wise KL), each (B,):
        ``total_correlation_terms`` of the batch's samples (dataset_size 0: the batch is the data set)."""
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean, logvar, eps)
        parts = total_correlation_terms(z, mean, logvar, dataset_size or z.shape[0])
        return (self.log_likelihood(x, self.decode(z, y)), standard_normal_kl(mean, logvar), *parts)

    def elbo(self, x, eps, y=None):
        """Single-sample ELBO estimate per example, eq. (7) of Kingma & Welling. x: (B, H, W, C), eps: (B, d) -> (B,)."""
        recon, kl = self.terms(x, eps, y)
        return recon - kl

    def loss(self, x, eps, y=None, beta: float = 1.0):
        """The training objective: mean over the batch of -(E log p(x|z) - beta KL) (beta-VAE), a scalar;
        beta = 1 (the default) is the negative ELBO."""
        recon, kl = self.terms(x, eps, y)
        return jnp.mean(beta * kl - recon)

    def importance_nll(self, x, eps, y=None):
        """-log p(x) estimated with K importance samples from q(z|x) (Burda et al. 2016).

        x: (B, H, W, C), eps: (B, K, d), y: (B,) -> (B,). Uses log w = log p(x|z) + log p(z) - log q(z|x).
        """
        b, k, d = eps.shape
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean[:, None], logvar[:, None], eps)
        y_rep = None if y is None else jnp.repeat(y, k)
        out = self.decode(z.reshape(b * k, d), y_rep)
        recon = self.log_likelihood(jnp.repeat(x, k, axis=0), out).reshape(b, k)
        log_w = recon + gaussian_log_prob(z, 0.0 * z, 0.0 * z) - gaussian_log_prob(z, mean[:, None], logvar[:, None])
        return -iwae_bound(log_w)

    def sample(self, z, y=None):
        """Decoder mean for latents z (B, d): Bernoulli probabilities or Gaussian means, (B, H, W, C)."""
        out = self.decode(z, y)
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def vaegan_terms(self, x, eps, z_prior):
        """VAE-GAN's terms of a batch (Larsen et al. 2016): KL(q(z|x) || N(0, I)), the reconstruction's L_llike in the
        discriminator's features (``feature_reconstruction_nll``) and the discriminator's logits of the data x, of
        the reconstructions x~ = Dec(z), z ~ q(z|x), and of the prior's samples x_p = Dec(z_p), decoder means all
        (one discriminator pass over the three). x: (B, H, W, C), eps, z_prior: (B, d) ->
        (kl, feature_nll, logits_real, logits_recon, logits_prior), each (B,)."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, eps)
        features, logits = self.discriminator(jnp.concatenate([x, self.sample(z), self.sample(z_prior)]))
        b = x.shape[0]
        return (standard_normal_kl(mean, logvar), feature_reconstruction_nll(features[:b], features[b:2 * b]),
                logits[:b], logits[b:2 * b], logits[2 * b:])

    def __call__(self, x, eps, y=None):
        return self.elbo(x, eps, y)


class HierarchicalVAE(nn.Module):
    """The two-level VAE, as torch's (``practice_torch/vae/networks.py``): p(z2) p(z1|z2) p(x|z1), inferred top-down,
    q(z2|x) q(z1|x, z2), from one bottom-up conv trunk; noise and codes in the prior's standard coordinates
    u = (z2, (z1 - mu_p(z2)) / sigma_p(z2)). Images channels last; names as torch's, so the converter maps the
    weights."""

    image_shape: Sequence[int]
    latent_dim: int = 16
    top_dim: int = 8
    likelihood: str = "bernoulli"
    channels: Sequence[int] = (32, 64)
    hidden: int = 256
    groups: int = 8

    def setup(self):
        self.convs, self.norms = downsampling_convs(self.channels, self.groups)
        self.q_top = nn.Dense(2 * self.top_dim)
        self.q_hidden, self.q_lower = nn.Dense(self.hidden), nn.Dense(2 * self.latent_dim)
        self.prior_hidden, self.prior = nn.Dense(self.hidden), nn.Dense(2 * self.latent_dim)
        self.decoder = ConvDecoder(self.image_shape, self.latent_dim, self.channels, groups=self.groups)
        if self.likelihood == "gaussian":
            self.log_sigma = self.param("log_sigma", nn.initializers.zeros, (1,), jnp.float32)

    log_likelihood = VAE.log_likelihood

    def features(self, x):
        return flatten_image(downsample(self.convs, self.norms, x))

    def lower_posterior(self, h, z2):
        return jnp.split(self.q_lower(nn.silu(self.q_hidden(jnp.concatenate([h, z2], axis=-1)))), 2, axis=-1)

    def lower_prior(self, z2):
        return jnp.split(self.prior(nn.silu(self.prior_hidden(z2))), 2, axis=-1)

    def posterior(self, x, eps):
        """(z2, z1, q2, q1, p1) on the noise eps (B, top_dim + latent_dim), as torch's."""
        h = self.features(x)
        q2 = jnp.split(self.q_top(h), 2, axis=-1)
        z2 = reparameterize(*q2, eps[..., :self.top_dim])
        q1 = self.lower_posterior(h, z2)
        return z2, reparameterize(*q1, eps[..., self.top_dim:]), q2, q1, self.lower_prior(z2)

    def level_terms(self, x, eps, y=None):
        """(E_q log p(x|z1) by one sample, KL(q(z2|x) || N(0, I)), KL(q(z1|x, z2) || p(z1|z2))), each (B,)."""
        _, z1, q2, q1, p1 = self.posterior(x, eps)
        kl_top, kl_lower = hierarchical_kl(*q2, *q1, *p1)
        return self.log_likelihood(x, self.decoder(z1)), kl_top, kl_lower

    def terms(self, x, eps, y=None):
        recon, kl_top, kl_lower = self.level_terms(x, eps)
        return recon, kl_top + kl_lower

    def elbo(self, x, eps, y=None):
        recon, kl = self.terms(x, eps)
        return recon - kl

    def importance_nll(self, x, eps, y=None):
        """-log p(x) by K importance samples of q(z2|x) q(z1|x, z2). x: (B, H, W, C), eps: (B, K, d) -> (B,)."""
        b, k, _ = eps.shape
        xs = jnp.repeat(x, k, axis=0)
        z2, z1, q2, q1, p1 = self.posterior(xs, eps.reshape(b * k, -1))
        log_w = (self.log_likelihood(xs, self.decoder(z1)) + gaussian_log_prob(z1, *p1)
                 + gaussian_log_prob(z2, 0.0 * z2, 0.0 * z2) - gaussian_log_prob(z2, *q2) - gaussian_log_prob(z1, *q1))
        return -iwae_bound(log_w.reshape(b, k))

    def sample(self, u, y=None):
        """Decoder means of prior draws in standard coordinates u (B, top_dim + latent_dim) -> (B, H, W, C)."""
        mean, logvar = self.lower_prior(u[..., :self.top_dim])
        out = self.decoder(mean + jnp.exp(0.5 * logvar) * u[..., self.top_dim:])
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def init_all(self, x, eps):
        """Every variable (for ``init``): the bound and the prior's sampler."""
        return self.elbo(x, eps), self.sample(eps)

    def __call__(self, x, eps, y=None):
        return self.elbo(x, eps)


# 4. The derivation -------------------------------------------------------------------------------
def _model(seed: int = 0, big_d: int = 5, d: int = 3, classes: int = 3):
    """Linear-Gaussian decoder x|z,y ~ N(W z + b + V onehot(y), sigma^2 I), z ~ N(0, I), and one x (float64)."""
    rng = np.random.default_rng(seed)
    weight = jnp.asarray(rng.standard_normal((big_d, d)) / np.sqrt(d))
    bias, v = jnp.asarray(0.5 * rng.standard_normal(big_d)), jnp.asarray(rng.standard_normal((big_d, classes)))
    x = weight @ jnp.asarray(rng.standard_normal(d)) + bias + 0.7 * jnp.asarray(rng.standard_normal(big_d))
    return x, weight, bias, jnp.asarray(0.7), v


def _random_qs(rng: np.random.Generator, n: int, d: int):
    """n random full-covariance Gaussians: means (n, d), lower-triangular scales (n, d, d)."""
    diag = np.exp(0.3 * rng.standard_normal((n, d)))[:, None] * np.eye(d)
    low = np.tril(0.3 * rng.standard_normal((n, d, d)), -1) + diag
    return jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(low)


def _expected_recon(x, weight, bias, sigma, mean, scale_tril):
    """E_q log N(x; W z + b, sigma^2 I) for q = N(m, L L^T), in closed form:
    -D/2 log(2 pi sigma^2) - (|x - W m - b|^2 + |W L|_F^2) / (2 sigma^2)."""
    resid = x - mean @ weight.T - bias
    return -0.5 * x.shape[-1] * (LOG_2PI + 2 * jnp.log(sigma)) - 0.5 * (
        jnp.sum(resid**2, axis=-1) + jnp.sum((weight @ scale_tril) ** 2)) / sigma**2


def _beta_objective(x, weight, bias, sigma, mean, scale_tril, beta):
    """The beta-VAE objective E_q log p(x|z) - beta KL(q || N(0, I)) in closed form (Higgins et al. 2017)."""
    d = mean.shape[-1]
    return _expected_recon(x, weight, bias, sigma, mean, scale_tril) - beta * mvn_kl(
        mean, scale_tril, jnp.zeros(d), jnp.eye(d))


def _beta_optimum(x, weight, bias, sigma, beta):
    """S* = (I + W^T W / (beta sigma^2))^-1, m* = S* W^T (x - b) / (beta sigma^2) -> (m*, chol S*)."""
    s2 = beta * sigma**2
    cov = jnp.linalg.inv(jnp.eye(weight.shape[1]) + weight.T @ weight / s2)
    return cov @ weight.T @ (x - bias) / s2, jnp.linalg.cholesky(cov)


@jax.jit
def _elbo_terms(x, weight, bias, sigma, mean, logvar, eps):
    """Closed forms and per-sample terms for one diagonal q = N(mean, diag e^logvar), z = reparameterize(eps)."""
    z, tril = reparameterize(mean, logvar, eps), jnp.diag(jnp.exp(0.5 * logvar))
    return {"z": z, "kl": standard_normal_kl(mean, logvar),
            "kl_samples": gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z),
            "recon": _expected_recon(x, weight, bias, sigma, mean, tril),
            "recon_samples": gaussian_log_prob(x, z @ weight.T + bias, jnp.full(x.shape, 2 * jnp.log(sigma))),
            "elbo": linear_gaussian_elbo(x, weight, bias, sigma, mean, tril)}


@jax.jit
def _beta_study(x, weight, bias, sigma, means, trils, betas):
    """F_beta for each beta and q (B, Q); ELBO (Q,); grad_(m, tril L) F_beta at the beta optimum (B, d + d^2);
    KL(q*_beta || N(0, I)) (B,); the beta = 1 optimum and the posterior, flattened; log p(x)."""
    per_q = jax.vmap(_beta_objective, in_axes=(None,) * 4 + (0, 0, None))
    objective = jax.vmap(lambda b: per_q(x, weight, bias, sigma, means, trils, b))(betas)
    elbos = jax.vmap(linear_gaussian_elbo, in_axes=(None,) * 4 + (0, 0))(x, weight, bias, sigma, means, trils)

    def at_optimum(b):
        m, t = _beta_optimum(x, weight, bias, sigma, b)
        gm, gl = jax.grad(_beta_objective, argnums=(4, 5))(x, weight, bias, sigma, m, t, b)
        return jnp.concatenate([gm, jnp.tril(gl).ravel()]), mvn_kl(m, t, 0 * m, jnp.eye(m.shape[0]))

    def flat(m, t):
        return jnp.concatenate([m, t.ravel()])

    grads, kls = jax.vmap(at_optimum)(betas)
    return {"objective": objective, "elbos": elbos, "grads": grads, "kl_star": kls,
            "optimum": flat(*_beta_optimum(x, weight, bias, sigma, 1.0)),
            "posterior": flat(*linear_gaussian_posterior(x, weight, bias, sigma)),
            "log_px": linear_gaussian_evidence(x, weight, bias, sigma)}


@jax.jit
def _cvae_terms(x, weight, bias, sigma, v, means, trils):
    """For y = 0..n-1, the model with bias b + V e_y and q_y = N(means[y], trils[y] trils[y]^T):
    cELBO, KL(q_y || p(z|x, y)) and log p(x|y), each (n,)."""
    def one(y, m, t):
        b_y = bias + v @ jax.nn.one_hot(y, v.shape[1])
        return (linear_gaussian_elbo(x, weight, b_y, sigma, m, t),
                mvn_kl(m, t, *linear_gaussian_posterior(x, weight, b_y, sigma)),
                linear_gaussian_evidence(x, weight, b_y, sigma))

    return jax.vmap(one)(jnp.arange(v.shape[1]), means, trils)


@jax.jit
def _gradient_samples(x, weight, bias, sigma, mean, logvar, eps):
    """Per-sample estimators of grad_(m, logvar) E_q f(z), f(z) = log p(x|z): reparameterised and score function."""
    def f(z):
        return gaussian_log_prob(x, z @ weight.T + bias, jnp.full(x.shape, 2 * jnp.log(sigma)))

    def reparam(e):
        return jnp.concatenate(jax.grad(lambda m, lv: f(reparameterize(m, lv, e)), argnums=(0, 1))(mean, logvar))

    def score(e):
        z = reparameterize(mean, logvar, e)  # held fixed: only log q(z) is differentiated
        return f(z) * jnp.concatenate(jax.grad(gaussian_log_prob, argnums=(1, 2))(z, mean, logvar))

    exact = jax.grad(lambda m, lv: _expected_recon(x, weight, bias, sigma, m, jnp.diag(jnp.exp(0.5 * lv))),
                     argnums=(0, 1))(mean, logvar)
    return jax.vmap(reparam)(eps), jax.vmap(score)(eps), jnp.concatenate(exact)


@jax.jit
def _iwae_samples(x, weight, bias, sigma, eps):
    """log (1/K) sum_k w_k, w_k = p(x, z_k) / q(z_k|x), z_k = reparameterize(q, eps_k), for a mis-fitted diagonal
    q(z|x): mean 0.8 of the posterior's plus 0.1, variances 1.3x its marginals. eps: (R, K, d) -> (R,), ELBO(q)."""
    post_mean, post_tril = linear_gaussian_posterior(x, weight, bias, sigma)
    mean, logvar = 0.8 * post_mean + 0.1, jnp.log(1.3 * jnp.diag(post_tril @ post_tril.T))
    z = reparameterize(mean, logvar, eps)
    log_w = linear_gaussian_log_joint(x, z, weight, bias, sigma) - gaussian_log_prob(z, mean, logvar)
    return iwae_bound(log_w), linear_gaussian_elbo(x, weight, bias, sigma, mean, jnp.diag(jnp.exp(0.5 * logvar)))


@jax.jit
def _small_vae_terms(x, eps):
    """A small flax VAE at init (key 0) on x (B, 4, 4, 1), eps (B, 2): -importance_nll with K = 1, elbo, the
    closed-form KL and its one-sample estimate log q(z|x) - log p(z) at the same z, each (B,)."""
    model = VAE(image_shape=(1, 4, 4), latent_dim=2, architecture="mlp", likelihood="bernoulli", hidden=(8,))
    params = as_float64(model.init(jax.random.key(0), x, eps))
    mean, logvar = model.apply(params, x, method=VAE.encode)
    z = reparameterize(mean, logvar, eps)
    kl_sample = gaussian_log_prob(z, mean, logvar) - gaussian_log_prob(z, 0 * z, 0 * z)
    return (-model.apply(params, x, eps[:, None, :], method=VAE.importance_nll),
            model.apply(params, x, eps, method=VAE.elbo), standard_normal_kl(mean, logvar), kl_sample)


def _sympy_reparameterisation():
    """Density of z = mu + sigma eps by change of variables, and the Gaussian density it should be."""
    z, mu = sp.symbols("z mu", real=True)
    sigma = sp.symbols("sigma", positive=True)
    eps = (z - mu) / sigma  # the inverse map
    pushed = sp.exp(-eps**2 / 2) / sp.sqrt(2 * sp.pi) * sp.Abs(sp.diff(eps, z))
    return pushed, sp.exp(-(z - mu) ** 2 / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2)


def _section_gaussian_elbo(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma):
    """The Gaussian VAE's ELBO = E_q log p(x|z) - KL(q || N(0, I)), each term in closed form and by sampling."""
    latent = weight.shape[1]
    mean, logvar = jnp.asarray(rng.standard_normal(latent)), jnp.asarray(0.5 * rng.standard_normal(latent))
    terms = _elbo_terms(x, weight, bias, sigma, mean, logvar, jnp.asarray(rng.standard_normal((20000, latent))))
    d.monte_carlo("$\\mathrm{KL}(q\\,\\|\\,\\mathcal N(0,I)) = "
                  "-\\frac12\\sum_j(1 + \\log\\sigma_j^2 - \\mu_j^2 - \\sigma_j^2)$ (`standard_normal_kl`) "
                  "$= \\mathbb E_q[\\log q(z) - \\log p(z)]$ (20 000 samples)",
                  terms["kl_samples"], terms["kl"])
    ms, lvs = jnp.asarray(rng.standard_normal((50, latent))), jnp.asarray(rng.standard_normal((50, latent)))
    d.numeric("...and it is `gaussian_kl` with $p = \\mathcal N(0, I)$ (50 random encoders)",
              standard_normal_kl(ms, lvs), gaussian_kl(ms, lvs, 0 * ms, 0 * lvs))
    d.monte_carlo("$\\mathbb E_q[\\log p(x\\mid z)] = -\\frac D2\\log 2\\pi\\sigma^2 - "
                  "\\frac{|x - W\\mu - b|^2 + \\|W\\,\\mathrm{diag}\\,\\sigma_q\\|_F^2}{2\\sigma^2}$ (20 000 samples)",
                  terms["recon_samples"], terms["recon"])
    d.numeric("ELBO $= \\mathbb E_q[\\log p(x\\mid z)] - \\mathrm{KL}(q\\,\\|\\,p(z))$: the VAE's form equals the "
              "`linear_gaussian_elbo` form $\\mathbb E_q[\\log p(x, z)] + H[q]$",
              terms["recon"] - terms["kl"], terms["elbo"])
    return mean, logvar, terms


def _section_reparameterisation(d: Derivation, terms, mean, logvar):
    """Reparameterisation: z = mu + sigma eps, eps ~ N(0, 1), has density N(mu, sigma^2)."""
    pushed, gauss = _sympy_reparameterisation()
    d.symbolic("Change of variables: "
               "$\\varphi\\big(\\frac{z-\\mu}{\\sigma}\\big)\\,\\big|\\frac{d\\epsilon}{dz}\\big| = "
               "\\mathcal N(z; \\mu, \\sigma^2)$, so $z = \\mu + \\sigma\\epsilon$ samples $q$", pushed, gauss)
    z, mean, logvar = np.asarray(terms["z"]), np.asarray(mean), np.asarray(logvar)
    d.monte_carlo("`reparameterize` draws have mean $\\mu$ and variance $\\sigma^2$ (20 000 draws, per coordinate)",
                  np.concatenate([z, (z - mean) ** 2], axis=1), np.concatenate([mean, np.exp(logvar)]))
    fig, ax = new_figure()
    for j in range(z.shape[1]):
        grid = mean[j] + np.exp(0.5 * logvar[j]) * np.linspace(-4, 4, 200)
        ax.hist(z[:, j], bins=60, density=True, histtype="stepfilled", alpha=0.35, color=f"C{j}")
        ax.plot(grid, np.exp(-0.5 * (grid - mean[j]) ** 2 / np.exp(logvar[j])) / np.sqrt(2 * np.pi * np.exp(logvar[j])),
                color=f"C{j}", label=f"$z_{j + 1}$: $N(\\mu_{j + 1}, \\sigma_{j + 1}^2)$")
    ax.set(xlabel="$z = \\mu + \\sigma\\epsilon$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, "Histograms of 20 000 reparameterised draws per coordinate lie on the Gaussian densities "
                  "$N(\\mu_j, \\sigma_j^2)$ of the encoder.")
    return mean, logvar


def _section_gradient_estimators(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, mean, logvar):
    """Reparameterised and score-function gradients: both unbiased, the first with far smaller variance."""
    latent = weight.shape[1]
    g_rep, g_score, exact = _gradient_samples(x, weight, bias, sigma, mean, logvar,
                                              jnp.asarray(rng.standard_normal((50000, latent))))
    d.say("Two unbiased estimators of $\\nabla_\\phi \\mathbb E_{q_\\phi}[f(z)]$: reparameterised "
          "$\\nabla_\\phi f(\\mu + \\sigma\\epsilon)$ and score function $f(z)\\nabla_\\phi \\log q_\\phi(z)$; "
          "$\\phi = (\\mu, \\log\\sigma^2)$, exact gradient by `jax.grad` of the closed form above.")
    d.monte_carlo("Reparameterisation gradient is unbiased (50 000 samples, all 6 coordinates)", g_rep, exact)
    d.monte_carlo("Score-function (REINFORCE) gradient is unbiased (same samples)", g_score, exact)
    var_rep, var_score = np.var(g_rep, axis=0, ddof=1), np.var(g_score, axis=0, ddof=1)
    d.inequality(f"Per-sample variance: reparameterised below score function in every coordinate, by a factor "
                 f"{np.min(var_score / var_rep):.0f} to {np.max(var_score / var_rep):.0f}", var_rep, var_score)
    g_rep, g_score = np.asarray(g_rep[:, 0]), np.asarray(g_score[:, 0])
    window = (np.percentile(g_score, 1), np.percentile(g_score, 99))
    fig, ax = new_figure()
    ax.hist(g_score, bins=80, range=window, density=True, alpha=0.5, label="score function")
    ax.hist(g_rep, bins=80, range=window, density=True, alpha=0.7, label="reparameterised")
    ax.axvline(float(exact[0]), color="k", ls="--", lw=1, label="exact gradient")
    ax.set(yscale="log", xlabel="per-sample estimate of $\\partial_{\\mu_1} E_q \\log p(x|z)$", ylabel="density")
    ax.legend(fontsize=8)
    d.figure(fig, "Both estimators are centred on the exact gradient, but one reparameterised sample is far more "
                  "precise than one score-function sample (50 000 samples, first coordinate, 1-99% range).")


def _section_beta_vae(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma):
    """beta-VAE: E log p(x|z) - beta KL; its optimum is the posterior of a noisier model."""
    latent = weight.shape[1]
    betas = jnp.array([1.0, 1.5, 2.0, 4.0, 8.0, 0.5])
    study = _beta_study(x, weight, bias, sigma, *_random_qs(rng, 20, latent), betas)
    objective, elbos, kl_star = (np.asarray(study[k]) for k in ("objective", "elbos", "kl_star"))
    d.numeric("At $\\beta = 1$ the $\\beta$-VAE objective $\\mathbb E_q\\log p(x\\mid z) - \\beta\\,\\mathrm{KL}$ "
              "is the ELBO (20 random full-covariance $q$)", objective[0], elbos)
    d.inequality("For $\\beta > 1$ ($\\beta$ = 1.5, 2, 4, 8) it lower-bounds the ELBO, which lower-bounds $\\log p(x)$",
                 np.concatenate([objective[1:5].ravel(), elbos]),
                 np.concatenate([np.tile(elbos, 4), np.full(20, study["log_px"])]))
    d.say("Maximising over $q = \\mathcal N(m, LL^\\top)$: $\\beta$ scales the prior and entropy terms, which is "
          "the ELBO of a model with noise variance $\\beta\\sigma^2$, so "
          "$\\Sigma^* = (I + W^\\top W/\\beta\\sigma^2)^{-1}$, $m^* = \\Sigma^* W^\\top (x - b)/\\beta\\sigma^2$.")
    d.gradient("$\\nabla_{m, L}$ of the $\\beta$ objective vanishes at $(m^*, \\mathrm{chol}\\,\\Sigma^*)$ for "
               "$\\beta$ = 1, 1.5, 2, 4, 8, 0.5 (jax.grad)", study["grads"], np.zeros(study["grads"].shape))
    d.numeric("At $\\beta = 1$ the optimum is the true posterior `linear_gaussian_posterior`",
              study["optimum"], study["posterior"])
    d.inequality(f"Larger $\\beta$ pulls $q^*$ to the prior: $\\mathrm{{KL}}(q^*\\|p(z))$ falls from {kl_star[0]:.3f} "
                 f"to {kl_star[4]:.3f} nats as $\\beta$ goes 1, 1.5, 2, 4, 8", kl_star[1:5], kl_star[:4])
    order = np.argsort(np.asarray(betas))
    fig, ax = new_figure()
    ax.plot(np.asarray(betas)[order], kl_star[order], "o-", label="$\\mathrm{KL}(q^*_\\beta \\| p(z))$")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="$\\beta = 1$: the posterior")
    ax.set(xscale="log", xlabel="$\\beta$", ylabel="nats")
    ax.set_xticks(np.asarray(betas)[order], [f"{b:g}" for b in np.asarray(betas)[order]])
    ax.set_xticks([], minor=True)
    ax.legend()
    d.figure(fig, "The optimal encoder of the $\\beta$-VAE objective moves towards the prior as $\\beta$ grows: "
                  "its KL to $N(0, I)$, the rate, falls monotonically.")
    return study


def _section_conditional_vae(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, v) -> None:
    """Conditional VAE: x | z, y ~ N(W z + b + V onehot(y), sigma^2 I), z ~ N(0, I)."""
    latent = weight.shape[1]
    zs, ys = rng.standard_normal((6, latent)), np.array([0, 1, 2, 0, 1, 2])
    d.numeric("A linear decoder on `with_condition(z, y)` $= [z, e_y]$ is $Wz + b + Ve_y$: a class-dependent bias",
              np.asarray(with_condition(jnp.asarray(zs), jnp.asarray(ys), 3)) @ np.concatenate([weight, v], axis=1).T
              + bias, zs @ np.asarray(weight).T + bias + np.asarray(v)[:, ys].T)
    celbo, ckl, log_pxy = _cvae_terms(x, weight, bias, sigma, v, *_random_qs(rng, 3, latent))
    d.numeric("$\\log p(x\\mid y) = \\mathrm{cELBO} + \\mathrm{KL}(q(z\\mid x, y)\\,\\|\\,p(z\\mid x, y))$ "
              "for $y$ = 0, 1, 2, every term closed form", np.asarray(celbo) + np.asarray(ckl), log_pxy)


def _section_bernoulli_decoder(d: Derivation, rng: np.random.Generator) -> None:
    """Bernoulli decoder: log p(x|z) = x l - softplus(l), stable for any logit l."""
    xb, logits = rng.uniform(size=(40, 8)), rng.uniform(-8, 8, size=(40, 8))
    p = 1 / (1 + np.exp(-logits))
    d.numeric("`bernoulli_log_prob`$(x, l) = \\sum x\\log s(l) + (1-x)\\log(1 - s(l))$, $s$ the sigmoid ($|l| \\le 8$)",
              bernoulli_log_prob(jnp.asarray(xb), jnp.asarray(logits)),
              np.sum(xb * np.log(p) + (1 - xb) * np.log(1 - p), axis=-1))
    xe, le = np.array([[1.0], [0.0], [1.0], [0.0]]), np.array([[1000.0], [1000.0], [-1000.0], [-1000.0]])
    with np.errstate(all="ignore"):
        pe = 1 / (1 + np.exp(-le))
        naive = np.sum(xe * np.log(pe) + (1 - xe) * np.log(1 - pe), axis=-1)
    d.numeric(f"At $|l| = 1000$ the naive formula gives {np.sum(~np.isfinite(naive))} of 4 non-finite values; "
              "`bernoulli_log_prob` gives the exact $0, -1000, -1000, 0$",
              bernoulli_log_prob(jnp.asarray(xe), jnp.asarray(le)), np.array([0.0, -1000.0, -1000.0, 0.0]))


def _section_importance_sampling(d: Derivation, rng: np.random.Generator, x, weight, bias, sigma, study) -> None:
    """Importance-sampled likelihood (Burda et al. 2016) with a mis-fitted diagonal encoder."""
    latent = weight.shape[1]
    est = {k: _iwae_samples(x, weight, bias, sigma, jnp.asarray(rng.standard_normal((r, k, latent))))
           for k, r in ((1, 20000), (1000, 400))}
    q_elbo = float(est[1][1])
    d.say("$q(z\\mid x)$: a diagonal encoder, mean 0.8 of the posterior's plus 0.1, variances 1.3x its marginals; "
          "$-\\log p(x) \\approx -\\log \\frac1K\\sum_k p(x, z_k)/q(z_k\\mid x)$, $z_k \\sim q$.")
    d.monte_carlo("With $K = 1$ the estimate's mean is the ELBO of $q$ (20 000 replicates)", est[1][0], q_elbo)
    log_px = float(study["log_px"])
    gap1, gap_k = log_px - q_elbo, log_px - float(np.mean(est[1000][0]))
    d.inequality(f"With $K = 1000$ the importance-sampled NLL approaches $-\\log p(x)$: the gap falls from "
                 f"{gap1:.3f} nats (K = 1) to {gap_k:.5f} (mean of 400 replicates), below 1% of the K = 1 gap",
                 abs(gap_k), 0.01 * gap1)


def _gaussian_kl_parts(cov_x, weight, offset, noise_var):
    """The KL's three parts, closed form, for x ~ N(0, cov_x) and the linear encoder q(z|x) = N(W x + c, diag(s^2)):
    q(z) = N(c, C), C = W cov_x W^T + diag(s^2). Returns (E_x KL(q(z|x) || N(0, I)), I(x; z), TC, dimension-wise KL)."""
    cov_z = weight @ cov_x @ weight.T + np.diag(noise_var)
    diag, k = np.diag(cov_z), len(offset)
    average_kl = 0.5 * (noise_var.sum() + np.trace(weight @ cov_x @ weight.T) + offset @ offset - k
                        - np.log(noise_var).sum())
    mutual_information = 0.5 * (np.linalg.slogdet(cov_z)[1] - np.log(noise_var).sum())
    total_correlation = 0.5 * (np.log(diag).sum() - np.linalg.slogdet(cov_z)[1])
    dimension_wise_kl = 0.5 * np.sum(diag + offset**2 - 1 - np.log(diag))
    return average_kl, mutual_information, total_correlation, dimension_wise_kl


def _rotation(angle: float) -> np.ndarray:
    """The 3 x 3 rotation by ``angle`` in the plane of the first two latents."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _mixture_log_density(z, means, logvar):
    """log q(z) of the equal-weight mixture (1/N) sum_n N(means_n, diag e^logvar_n), by SciPy: z (M, d) -> (M,)."""
    from scipy import special, stats

    parts = stats.norm.logpdf(z[:, None], means[None], np.exp(0.5 * logvar[None])).sum(-1)
    return special.logsumexp(parts, axis=-1) - math.log(len(means))


def _section_total_correlation(d: Derivation, rng: np.random.Generator) -> None:
    """beta-TCVAE: E_x KL(q(z|x) || p(z)) = I(x; z) + TC(q(z)) + sum_k KL(q(z_k) || p(z_k)) (Chen et al. 2018)."""
    d.say(r"The $\beta$-VAE weighs the whole KL. Averaged over the data, it splits in three (Hoffman & Johnson's "
          r"ELBO surgery; Chen et al. 2018): $\mathbb E_{p(x)}\mathrm{KL}(q(z\mid x)\|p(z)) = I_q(x; z) + "
          r"\mathrm{KL}(q(z)\|\prod_k q(z_k)) + \sum_k \mathrm{KL}(q(z_k)\|p(z_k))$, with $q(z) = \mathbb E_{p(x)} "
          r"q(z\mid x)$ the aggregate posterior: the index-code mutual information, the total correlation (TC) and the "
          r"dimension-wise KL. Only the TC measures how far the latents are from independent; $\beta$-TCVAE weighs it "
          r"alone.")
    c11, c12, c22, s1, s2, m1, m2 = sp.symbols("C_11 C_12 C_22 s_1 s_2 c_1 c_2", positive=True)
    det_c = c11 * c22 - c12**2
    average_kl = (s1 + s2 + (c11 - s1) + (c22 - s2) + m1**2 + m2**2 - 2 - sp.log(s1) - sp.log(s2)) / 2
    parts = ((sp.log(det_c) - sp.log(s1) - sp.log(s2)) / 2, (sp.log(c11) + sp.log(c22) - sp.log(det_c)) / 2,
             (c11 + m1**2 - 1 - sp.log(c11) + c22 + m2**2 - 1 - sp.log(c22)) / 2)
    d.symbolic(r"For Gaussian data and a linear encoder $q(z\mid x) = \mathcal N(Wx + c, \mathrm{diag}\,s^2)$, "
               r"$q(z) = \mathcal N(c, C)$ with $C = W\Sigma_x W^\top + \mathrm{diag}\,s^2$, and the three parts "
               r"$\frac12\log\frac{|C|}{\prod s_k^2}$, $\frac12(\sum_k\log C_{kk} - \log|C|)$, "
               r"$\frac12\sum_k(C_{kk} + c_k^2 - 1 - \log C_{kk})$ add up to the average KL "
               r"$\frac12(\mathrm{tr}\,C + |c|^2 - d - \sum_k \log s_k^2)$ ($d = 2$, every entry a symbol)",
               sum(parts), average_kl)
    big_d, latent = 5, 3
    root = rng.standard_normal((big_d, big_d))
    cov_x = root @ root.T / big_d + 0.5 * np.eye(big_d)
    # W = B cov_x^(-1/2), the rows of B orthogonal: W cov_x W^T = B B^T is diagonal, so q(z) factorises
    whiten = np.linalg.inv(np.linalg.cholesky(cov_x))
    basis = np.linalg.qr(rng.standard_normal((big_d, big_d)))[0][:latent] * np.array([[2.0], [0.7], [0.5]])
    weight, offset, noise_var = basis @ whiten, np.array([0.3, -0.2, 0.1]), np.full(latent, 0.3)
    angles = np.linspace(0, np.pi / 2, 13)
    table = np.array([_gaussian_kl_parts(cov_x, _rotation(a) @ weight, _rotation(a) @ offset, noise_var)
                      for a in angles])
    d.numeric(f"Numerically, $d = {latent}$, $D = {big_d}$, encoders rotated in the plane of $z_1, z_2$ by 13 "
              r"angles in $[0, \pi/2]$: mutual information + TC + dimension-wise KL = the average KL",
              table[:, 1:].sum(1), table[:, 0])
    d.numeric(r"A rotation of an isotropic-noise encoder changes neither the average KL nor $I(x; z)$: the $\beta$-VAE's "
              r"penalty cannot tell the rotations apart", table[:, :2], np.broadcast_to(table[:1, :2], table[:, :2].shape))
    d.numeric(r"The encoder whose $W\Sigma_xW^\top$ is diagonal has a factorised $q(z)$: TC = 0", table[0, 2], 0.0)
    d.inequality(f"Rotating it mixes its latents: TC rises to {table[6, 2]:.3f} nats at $\\pi/4$, and the "
                 "dimension-wise KL falls (by as much: the total and the MI stay)",
                 np.array([1e-3, table[6, 3]]), np.array([table[6, 2], table[0, 3]]))
    fig, ax = new_figure()
    degrees = np.degrees(angles)
    ax.stackplot(degrees, table[:, 1], table[:, 2], table[:, 3],
                 labels=["index-code MI $I(x; z)$", "total correlation", "dimension-wise KL"], alpha=0.8)
    ax.plot(degrees, table[:, 0], "k--", lw=1.5, label=r"$\mathbb{E}_x\,\mathrm{KL}(q(z|x)\,\|\,p(z))$")
    ax.set(xlabel="rotation of the encoder in the $(z_1, z_2)$ plane (degrees)", ylabel="nats", xlim=(0, 90))
    ax.legend(fontsize=8, loc="lower right")
    d.figure(fig, "The same average KL, split three ways: rotating the encoder moves nats from the dimension-wise "
                  "KL into the total correlation and back, while the beta-VAE's penalty (the dashed total) stays put.")


def _section_tc_estimator(d: Derivation, rng: np.random.Generator) -> None:
    """The minibatch estimate of q(z) that beta-TCVAE trains on: exact on the whole data set, unbiased on a batch."""
    from scipy import stats

    d.say(r"Training needs the TC of the aggregate posterior $q(z) = \frac1N\sum_n q(z\mid x_n)$, a mixture over the "
          r"whole training set, from a batch of $M \ll N$: beta-TCVAE estimates $q(z_i)$ by a weighted sum over the "
          r"batch, and the TC and MI from its log.")
    latent, n, m = 3, 40, 8
    means, logvar = rng.standard_normal((n, latent)), rng.uniform(-1.5, 0.0, (n, latent))
    z = means + np.exp(0.5 * logvar) * rng.standard_normal((n, latent))  # z_i ~ q(z | x_i), one per example
    exact = {"qz": _mixture_log_density(z, means, logvar),
             "marginals": sum(_mixture_log_density(z[:, k:k + 1], means[:, k:k + 1], logvar[:, k:k + 1])
                              for k in range(latent))}
    terms = jax.jit(total_correlation_terms, static_argnums=3)  # one compiled call rather than op by op
    mi, tc, dim_kl = (np.asarray(t) for t in terms(jnp.asarray(z), jnp.asarray(means), jnp.asarray(logvar), n))
    log_qzx = stats.norm.logpdf(z, means, np.exp(0.5 * logvar)).sum(-1)
    d.numeric(f"`total_correlation_terms` over a batch that is the whole data set ($M = N = {n}$) is exact: its TC is "
              r"$\log q(z_i) - \sum_k \log q(z_{ik})$ of the mixture $q(z) = \frac1N\sum_n q(z\mid x_n)$, its MI "
              r"$\log q(z_i\mid x_i) - \log q(z_i)$", np.stack([tc, mi]),
              np.stack([exact["qz"] - exact["marginals"], log_qzx - exact["qz"]]))
    d.numeric(r"Its three parts add up to $\log q(z_i\mid x_i) - \log p(z_i)$, the one-sample KL estimate the "
              r"ELBO's KL is the mean of", mi + tc + dim_kl,
              log_qzx - stats.norm.logpdf(z).sum(-1))
    draws = 20_000  # batches of z_0's example and M - 1 others drawn uniformly from the rest of the data set
    others = 1 + (rng.integers(0, n - 1, (draws, m - 1)))
    batch = np.concatenate([np.zeros((draws, 1), int), others], axis=1)
    densities = np.exp(np.asarray(jax.jit(log_density_matrix)(z[:1], means, logvar)).sum(-1))[0]  # q(z_0 | x_j), all j
    weights = np.exp(np.asarray(stratified_log_weights(m, n)))[0]
    estimates = (densities[batch] * weights).sum(1)
    d.monte_carlo(f"Over a minibatch of $M = {m}$ of the $N = {n}$, `stratified_log_weights` ($1/N$ for the example "
                  r"that drew $z_i$, $(N-1)/(N(M-1))$ for each other) make $\sum_j w_{ij}\, q(z_i\mid x_j)$ an unbiased "
                  f"estimate of $q(z_i)$ ({draws} batches)", estimates, np.exp(exact["qz"][0]))


def _section_factor_vae(d: Derivation, rng: np.random.Generator) -> None:
    """FactorVAE's estimate of the TC: permuted codes sample the product of marginals; the optimal discriminator's
    mean logit is the TC."""
    d.say(r"FactorVAE (Kim & Mnih 2018) penalises the TC without estimating $q(z)$: a discriminator tells codes of the "
          r"batch from codes whose dimensions were each shuffled across the batch (`permute_dims`), and its logit "
          r"$\log \frac{D(z)}{1 - D(z)}$ estimates the density ratio $\log \frac{q(z)}{\prod_k q(z_k)}$.")
    cov = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
    batches, b = 400, 256
    z = rng.multivariate_normal(np.zeros(3), cov, size=(batches, b))
    perms = np.stack([[rng.permutation(b) for _ in range(3)] for _ in range(batches)])
    shuffled = np.asarray(jax.vmap(permute_dims)(jnp.asarray(z), jnp.asarray(perms)))
    d.numeric("`permute_dims` keeps each dimension's values: every column of the shuffled batch, sorted, is the "
              "column it came from, sorted", np.sort(shuffled, axis=1), np.sort(z, axis=1))
    corr = np.stack([np.corrcoef(x.T)[np.triu_indices(3, 1)] for x in shuffled])
    d.monte_carlo(f"...and breaks their dependence: the shuffled codes' correlations (0.8, 0.3, 0.5 before) have "
                  f"mean 0 over {batches} batches of {b}", corr, np.zeros(3))
    draws = rng.multivariate_normal(np.zeros(3), cov, size=200_000)
    log_q = -0.5 * (3 * math.log(2 * math.pi) + np.log(np.linalg.det(cov))
                    + np.einsum("ni,ij,nj->n", draws, np.linalg.inv(cov), draws))
    log_marginals = -0.5 * (math.log(2 * math.pi) + draws**2).sum(1)  # unit variances
    d.monte_carlo(r"At the optimal discriminator the logit is $\log q(z) - \sum_k \log q(z_k)$, and its mean over "
                  r"$q(z) = N(0, \Sigma)$ is the TC, $-\frac12 \log\det R$ with $R$ the correlation matrix "
                  "(200 000 draws)", log_q - log_marginals, -0.5 * math.log(np.linalg.det(cov)))
    # the discriminator's loss is minimised there: two binary codes, q(z) on 10 codes (4 + 1 + 1 + 4 of 00, 01, 10,
    # 11), whose permuted batches sample prod_k q(z_k) = 1/4 each; a logit per code
    atoms_q, atoms_p = np.repeat(np.arange(4), [4, 1, 1, 4]), np.arange(4)
    q, p = np.array([4, 1, 1, 4]) / 10, np.full(4, 0.25)
    optimum = jnp.log(q / p)
    grad = jax.grad(lambda logit: tc_discriminator_loss(logit[atoms_q], logit[atoms_p]))(optimum)
    d.gradient(r"`tc_discriminator_loss` is stationary at $\log \frac{q(z)}{\prod_k q(z_k)}$: on two binary codes "
               r"with $q$ = (0.4, 0.1, 0.1, 0.4) on 00, 01, 10, 11 (its permuted batches: 1/4 each), the gradient "
               "with respect to each code's logit vanishes there (jax.grad; the loss is convex in the logits)",
               np.asarray(grad), np.zeros(4))


def _two_level_model(rng: np.random.Generator):
    """A linear-Gaussian two-level model, one latent a level: z2 ~ N(0, 1), z1 | z2 ~ N(a z2 + c, s1^2),
    x | z1 ~ N(w z1 + b, s0^2 I) in 3-D, and one observed x. -> (params, x)."""
    params = {"a": 1.5, "c": 0.3, "s1": 0.6, "w": np.array([1.2, -0.7, 0.4]), "b": np.array([0.1, 0.2, -0.3]),
              "s0": 0.5}
    return params, np.array([1.4, -0.9, 0.2])


def _two_level_posterior(m, x):
    """The exact posterior p(z1, z2 | x) of ``_two_level_model``: (mean (2,), precision (2, 2)) over (z1, z2), and
    log p(x), from the joint Gaussian's precision."""
    w, s0, s1, a = m["w"], m["s0"], m["s1"], m["a"]
    # -log p(x, z) is quadratic in (z1, z2): z2^2 / 2 + (z1 - a z2 - c)^2 / (2 s1^2) + |x - w z1 - b|^2 / (2 s0^2)
    precision = np.array([[1 / s1**2 + w @ w / s0**2, -a / s1**2], [-a / s1**2, 1 + a**2 / s1**2]])
    linear = np.array([m["c"] / s1**2 + w @ (x - m["b"]) / s0**2, -a * m["c"] / s1**2])
    mean = np.linalg.solve(precision, linear)
    cov_x = s0**2 * np.eye(3) + np.outer(w, w) * (s1**2 + a**2)  # x's marginal covariance
    diff = x - (w * m["c"] + m["b"])
    log_px = -0.5 * (3 * LOG_2PI + np.linalg.slogdet(cov_x)[1] + diff @ np.linalg.solve(cov_x, diff))
    return mean, precision, log_px


def _section_hierarchical(d: Derivation, rng: np.random.Generator) -> None:
    """The two-level ELBO as a sum of per-level KLs; top-down inference is exact where a mean-field q is not."""
    d.say(r"A hierarchical VAE (Sonderby et al. 2016, the ladder VAE; Vahdat & Kautz 2020, NVAE) stacks latents, "
          r"$p(z_2)\,p(z_1\mid z_2)\,p(x\mid z_1)$, and infers them top-down, $q(z_2\mid x)\,q(z_1\mid x, z_2)$, so that "
          r"the ELBO is the reconstruction less one KL a level: $\mathbb E_q\log p(x\mid z_1) - \mathrm{KL}(q(z_2\mid x)"
          r"\,\|\,p(z_2)) - \mathbb E_{q(z_2\mid x)}\mathrm{KL}(q(z_1\mid x, z_2)\,\|\,p(z_1\mid z_2))$ "
          r"(`hierarchical_kl`). On a linear-Gaussian two-level model, one latent a level, whose posterior is exact:")
    m, x = _two_level_model(rng)
    mean, precision, log_px = _two_level_posterior(m, x)
    cov = np.linalg.inv(precision)
    # top-down q: z2's exact marginal, then z1's exact conditional given z2 (a Gaussian whose mean is linear in z2)
    q2_mean, q2_var = mean[1], cov[1, 1]
    q1_var = 1 / precision[0, 0]
    draws = 20_000
    z2 = q2_mean + np.sqrt(q2_var) * rng.standard_normal(draws)
    q1_mean = mean[0] - precision[0, 1] / precision[0, 0] * (z2 - mean[1])
    z1 = q1_mean + np.sqrt(q1_var) * rng.standard_normal(draws)
    log_joint = (np.asarray(gaussian_log_prob(jnp.asarray(np.broadcast_to(x, (draws, 3))), jnp.asarray(
                     m["w"] * z1[:, None] + m["b"]), jnp.full((draws, 3), 2 * np.log(m["s0"])))) +
                 np.asarray(gaussian_log_prob(jnp.asarray(z1[:, None]), jnp.asarray((m["a"] * z2 + m["c"])[:, None]),
                                              jnp.full((draws, 1), 2 * np.log(m["s1"])))) +
                 np.asarray(gaussian_log_prob(jnp.asarray(z2[:, None]), jnp.zeros((draws, 1)), jnp.zeros((draws, 1)))))
    log_q = (np.asarray(gaussian_log_prob(jnp.asarray(z2[:, None]), jnp.full((draws, 1), q2_mean),
                                          jnp.full((draws, 1), np.log(q2_var)))) +
             np.asarray(gaussian_log_prob(jnp.asarray(z1[:, None]), jnp.asarray(q1_mean[:, None]),
                                          jnp.full((draws, 1), np.log(q1_var)))))
    d.numeric(r"Top-down inference is exact here: with $q(z_2\mid x)$ the posterior's marginal and $q(z_1\mid x, z_2)$ "
              r"its conditional (a Gaussian whose mean is linear in $z_2$), $\log p(x, z) - \log q(z) = \log p(x)$ at "
              f"every one of {draws} draws: the hierarchical bound is tight", log_joint - log_q,
              np.full(draws, log_px))
    kl_top, kl_bottom = hierarchical_kl(jnp.full((draws, 1), q2_mean), jnp.full((draws, 1), np.log(q2_var)),
                                        jnp.asarray(q1_mean[:, None]), jnp.full((draws, 1), np.log(q1_var)),
                                        jnp.asarray((m["a"] * z2 + m["c"])[:, None]),
                                        jnp.full((draws, 1), 2 * np.log(m["s1"])))
    recon = np.asarray(gaussian_log_prob(jnp.asarray(np.broadcast_to(x, (draws, 3))),
                                         jnp.asarray(m["w"] * z1[:, None] + m["b"]),
                                         jnp.full((draws, 3), 2 * np.log(m["s0"]))))
    d.monte_carlo(r"...and the form a network trains on, one reconstruction sample less the two KLs in closed form "
                  r"(`hierarchical_kl`, the lower level's at the sampled $z_2$), has mean $\log p(x)$ "
                  f"({draws} draws)", recon - np.asarray(kl_top) - np.asarray(kl_bottom), log_px)
    # the best mean-field q(z1) q(z2): the posterior's mean, variances 1 / Lambda_kk; its gap is KL(q || posterior)
    tril_post, tril_mf = np.linalg.cholesky(cov), np.diag(1 / np.sqrt(np.diag(precision)))
    gap = float(mvn_kl(jnp.asarray(mean), jnp.asarray(tril_mf), jnp.asarray(mean), jnp.asarray(tril_post)))
    formula = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    d.numeric(r"A mean-field $q(z_1)\,q(z_2)$, the one-level VAE's factorised posterior over the same latents, misses "
              r"the levels' dependence: at its optimum (the posterior's mean, variances $1/\Lambda_{kk}$) its gap "
              r"$\mathrm{KL}(q\,\|\,p(z\mid x))$ (`mvn_kl`) is $\frac12(\sum_k\log\Lambda_{kk} - \log\det\Lambda)$ = "
              f"{gap:.4f} nats, with $\\Lambda$ the posterior precision", gap, formula)
    d.inequality(f"...so the top-down bound is tighter than the best mean-field one on this model by more than 0.01 "
                 f"nats (posterior correlation {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):.2f})", 0.01, gap)


def _shift_features(x, kernels):
    """Translation-invariant features of 1-D signals: the energy of each kernel's circular correlation with x, its
    square summed over the positions. x: (..., n), kernels: (k, w) -> (..., k). A circular shift of x leaves them
    unchanged."""
    windows = jnp.stack([jnp.roll(x, -j, axis=-1) for j in range(kernels.shape[1])], axis=-1)  # (..., n, w)
    return jnp.sum((windows @ kernels.T) ** 2, axis=-2)


def _section_vaegan(d: Derivation) -> None:
    """VAE-GAN: why a pixel likelihood blurs and a feature one need not; the discriminator's optimum with two fakes."""
    _section_vaegan_likelihood(d)
    _section_vaegan_discriminator(d)


def _section_vaegan_likelihood(d: Derivation) -> None:
    """Two images a pixel apart: the pixels' Gaussian loss prefers their blur, shift-blind features either one."""
    d.say(r"VAE-GAN (Larsen et al. 2016) keeps the VAE's encoder and prior but measures the reconstruction in the "
          r"features $\mathrm{Dis}_l$ of a GAN's discriminator, $-\log \mathcal N(\mathrm{Dis}_l(x) \mid "
          r"\mathrm{Dis}_l(\tilde x), I)$, rather than in the pixels. Why: a Gaussian likelihood on pixels is "
          r"maximised, when the code leaves the data uncertain, by the pixels' mean, a blur. Two equally likely "
          r"images, one and the same shifted by a pixel (circularly, 1-D here):")
    sharp = np.zeros(16)
    sharp[5:9] = (0.6, 1.0, 0.8, 0.9)
    data = jnp.asarray(np.stack([sharp, np.roll(sharp, 1)]))
    blur = data.mean(0)

    def pixel_loss(out):  # the expected unit-variance Gaussian NLL over the two images, less its constant
        return jnp.mean(0.5 * jnp.sum((data - out) ** 2, axis=-1))

    gap = float(jnp.sum((data[0] - data[1]) ** 2))
    d.gradient(r"The expected pixel loss $\frac12 \mathbb E \|x - \tilde x\|^2$ is stationary at the blur "
               r"$\tilde x = \frac12 (x_a + x_b)$ (jax.grad; it is convex, so that is its minimum)",
               np.asarray(jax.grad(pixel_loss)(blur)), np.zeros(16))
    d.numeric(r"...where it is $\frac18 \|x_a - x_b\|^2$, half the $\frac14 \|x_a - x_b\|^2$ of either sharp "
              r"image: the pixel likelihood prefers the blur", np.array([pixel_loss(blur), pixel_loss(data[0])]),
              np.array([gap / 8, gap / 4]))
    kernels = jnp.asarray([[-1.0, 1.0, 0.0], [1.0, -2.0, 1.0], [1.0, 1.0, 1.0]])  # edges, curvature, local mass
    feats = _shift_features(data, kernels)

    def feature_loss(out):
        return jnp.mean(feature_reconstruction_nll(feats, _shift_features(out, kernels)[None]))

    d.numeric(r"In features that do not see a shift (the energies of a first difference, a second difference and a "
              r"local sum, each summed over the positions), `feature_reconstruction_nll` is the Gaussian "
              r"$-\log \mathcal N(\mathrm{Dis}_l(x) \mid \mathrm{Dis}_l(\tilde x), I)$ less $\frac F2 \log 2\pi$ "
              r"(jax.scipy.stats.norm)",
              feature_reconstruction_nll(feats, _shift_features(blur, kernels)[None]),
              -jax.scipy.stats.norm.logpdf(feats, _shift_features(blur, kernels)).sum(-1) - 1.5 * LOG_2PI)
    d.numeric(r"...and there the sharp image costs nothing, $x_a$ and $x_b$ having the same features",
              feature_loss(data[0]), 0.0)
    d.inequality(r"...while the blur, whose edges are softer, costs more than a tenth: the feature likelihood "
                 r"prefers the sharp image", 0.1, feature_loss(blur))
    fig, (ax_pix, ax_bar) = new_figure(columns=2)
    for k, (signal, name) in enumerate(((data[0], "$x_a$"), (data[1], "$x_b$ (shifted)"), (blur, "the blur"))):
        ax_pix.step(np.arange(16), np.asarray(signal) + 0.02 * k, where="mid", label=name, lw=1.5,
                    ls="-" if k < 2 else "--")
    ax_pix.set(xlabel="pixel", ylabel="value")
    ax_pix.legend(fontsize=8)
    width, at = 0.35, np.arange(2)
    ax_bar.bar(at - width / 2, [pixel_loss(data[0]), pixel_loss(blur)], width, label="pixel loss")
    ax_bar.bar(at + width / 2, [feature_loss(data[0]), feature_loss(blur)], width, label="feature loss")
    ax_bar.set(xticks=at, xticklabels=["sharp $x_a$", "blur"], ylabel="expected loss over $\\{x_a, x_b\\}$")
    ax_bar.legend(fontsize=8)
    d.figure(fig, "Two equally likely images a pixel apart: the pixels' Gaussian loss is smaller for their blur, the "
                  "shift-blind features' loss is zero for either sharp image.")


def _section_vaegan_discriminator(d: Derivation) -> None:
    """The discriminator's loss facing the data and two fakes is least at p_data / (p_data + p_recon + p_prior)."""
    d.say(r"The discriminator sees the data against two fakes, the reconstructions $\tilde x$ and the prior's samples "
          r"$x_p$, each term of $L_\mathrm{GAN}$ of weight one; pointwise its loss $-p_\mathrm{data} \log D - "
          r"(p_{\tilde x} + p_{x_p}) \log (1 - D)$ is least at $D = \frac{p_\mathrm{data}}{p_\mathrm{data} + "
          r"p_{\tilde x} + p_{x_p}}$, so a decoder whose both fakes match the data leaves it at 1/3, not 1/2.")
    p_data, p_recon, p_prior = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.2, 0.7])
    counts = 10
    atoms = [np.repeat(np.arange(3), np.round(p * counts).astype(int)) for p in (p_data, p_recon, p_prior)]

    def discriminator_loss(logits):
        zeros = jnp.zeros(len(atoms[0]))
        return vaegan_losses(zeros, zeros, logits[atoms[0]], logits[atoms[1]], logits[atoms[2]], 1.0)[2]

    optimum = jnp.log(p_data / (p_recon + p_prior))
    d.gradient(r"The discriminator's loss of `vaegan_losses` is stationary at logit $\log \frac{p_\mathrm{data}}"
               r"{p_{\tilde x} + p_{x_p}}$: three atoms, the data, the reconstructions and the prior's samples on "
               r"them with (0.5, 0.3, 0.2), (0.2, 0.5, 0.3) and (0.1, 0.2, 0.7) (jax.grad)",
               np.asarray(jax.grad(discriminator_loss)(optimum)), np.zeros(3))


def _section_flax_vae(d: Derivation, rng: np.random.Generator) -> None:
    """The flax VAE's importance-sampled NLL at K = 1 is its ELBO with the KL estimated by one sample."""
    n = 2000  # the flax VAE on 3 images, each with n draws of eps
    xv, ev = np.tile(rng.uniform(size=(3, 4, 4, 1)), (n, 1, 1, 1)), rng.standard_normal((3 * n, 2))
    neg_nll, elbo, kl, kl_sample = map(np.asarray, _small_vae_terms(jnp.asarray(xv), jnp.asarray(ev)))
    d.numeric("The flax `VAE` (MLP, Bernoulli, $4\\times 4$ images): $-$`importance_nll` with $K = 1$ is `elbo` with "
              "its closed-form KL swapped for the one-sample $\\log q(z\\mid x) - \\log p(z)$, same $\\epsilon$ "
              "(float64 params)", neg_nll, elbo + kl - kl_sample)
    d.monte_carlo(f"...so they agree in expectation over $\\epsilon$: $-$`importance_nll` ($K = 1$) minus `elbo` "
                  f"has mean 0 ({n} draws of $\\epsilon$ for each of 3 images)",
                  (neg_nll - elbo).reshape(n, 3), np.zeros(3))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("vae", TITLE, LECTURES, echo=echo)
    x, weight, bias, sigma, v = _model()
    rng = np.random.default_rng(1)
    d.say("A VAE pairs a decoder $p_\\theta(x\\mid z)$, prior $p(z) = \\mathcal N(0, I)$ and a diagonal Gaussian "
          "encoder $q_\\phi(z\\mid x) = \\mathcal N(\\mu, \\mathrm{diag}\\,\\sigma^2)$. Checks use the linear "
          "decoder $x\\mid z \\sim \\mathcal N(Wz + b, \\sigma^2 I)$ ($d = 3$, $D = 5$, $\\sigma = 0.7$), "
          "where every term has a closed form.")

    mean, logvar, terms = _section_gaussian_elbo(d, rng, x, weight, bias, sigma)
    mean, logvar = _section_reparameterisation(d, terms, mean, logvar)
    _section_gradient_estimators(d, rng, x, weight, bias, sigma, mean, logvar)
    study = _section_beta_vae(d, rng, x, weight, bias, sigma)
    _section_conditional_vae(d, rng, x, weight, bias, sigma, v)
    _section_bernoulli_decoder(d, rng)
    _section_importance_sampling(d, rng, x, weight, bias, sigma, study)
    _section_total_correlation(d, rng)
    _section_tc_estimator(d, rng)
    _section_factor_vae(d, rng)
    _section_hierarchical(d, rng)
    _section_vaegan(d)
    _section_flax_vae(d, rng)
    return d
