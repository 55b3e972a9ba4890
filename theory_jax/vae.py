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
from jax.scipy.special import logsumexp

from theory_jax.elbo import (
    gaussian_kl,
    gaussian_log_prob,
    iwae_bound,
    standard_normal_kl,
)
from theory_jax.nets.conv import ConvTranspose, GroupNorm, UnflattenDense

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
            [GroupNorm(num_groups=min(groups, c), epsilon=GROUPNORM_EPS) for c in channels])


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
        self.project = UnflattenDense(self.base_shape)
        self.deconvs = [ConvTranspose(o, (3, 3), strides=(2, 2), padding=(pad, pad)) for o in outs]
        self.norms = [GroupNorm(num_groups=min(self.groups, o), epsilon=GROUPNORM_EPS) for o in outs[:-1]]

    def __call__(self, z, y=None):
        h = nn.silu(self.project(with_condition(z, y, self.num_classes)))
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
