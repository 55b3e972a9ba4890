"""The VAE's networks in PyTorch: encoders, decoders and the VAE with its ELBO, beta-VAE objective and
importance-sampled likelihood. Class and attribute names match the flax twin (``theory_jax/vae.py``) so
``shared_specs.interop`` maps the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.elbo import gaussian_log_prob, iwae_bound, standard_normal_kl
from practice_torch.vae.functions import (
    bernoulli_log_prob,
    feature_reconstruction_nll,
    hierarchical_kl,
    reparameterize,
    total_correlation_terms,
    with_condition,
)


# 2. Encoders and decoders --------------------------------------------------------------------------
class MLPEncoder(nn.Module):
    """q(z|x[, y]) = N(mean, diag e^logvar). x: (B, C, H, W) or (B, D), y: (B,) -> (mean, logvar), each (B, d)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (256,),
                 num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        widths = [math.prod(image_shape) + num_classes, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mean = nn.Linear(widths[-1], latent_dim)
        self.logvar = nn.Linear(widths[-1], latent_dim)

    def forward(self, x, y=None):
        h = with_condition(torch.flatten(x, 1), y, self.num_classes)
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.mean(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """p(x|z[, y]): z (B, d), y (B,) -> decoder output (B, C, H, W): Bernoulli logits or Gaussian means."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (256,),
                 num_classes: int = 0):
        super().__init__()
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        widths = [latent_dim + num_classes, *reversed(hidden)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], math.prod(image_shape))

    def forward(self, z, y=None):
        h = with_condition(z, y, self.num_classes)
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.out(h).view(-1, *self.image_shape)


class ConvEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, padding 1), GroupNorm, SiLU, then linear heads.
    x: (B, C, H, W), H and W divisible by 2^len(channels) -> (mean, logvar), each (B, d)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (32, 64),
                 num_classes: int = 0, groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        check_divisible(image_shape, len(channels))
        self.num_classes = num_classes
        self.convs, self.norms = downsampling_convs(c, channels, groups)
        scale = 2 ** len(channels)
        features = channels[-1] * (hgt // scale) * (wid // scale) + num_classes
        self.mean = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, x, y=None):
        h = with_condition(torch.flatten(downsample(self.convs, self.norms, x), 1), y, self.num_classes)
        return self.mean(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """Linear to a (channels[-1], H/2^n, W/2^n) map, then ConvTranspose 3x3 (stride 2, padding 1,
    output padding 1) doubling the size, GroupNorm and SiLU between; the last outputs C channels.
    z: (B, d), y: (B,) -> (B, C, H, W)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (32, 64),
                 num_classes: int = 0, groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        check_divisible(image_shape, len(channels))
        self.num_classes = num_classes
        scale = 2 ** len(channels)
        self.base_shape = (channels[-1], hgt // scale, wid // scale)
        ins = list(reversed(channels))
        outs = ins[1:] + [c]
        self.project = nn.Linear(latent_dim + num_classes, math.prod(self.base_shape))
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1)
                                     for i, o in zip(ins, outs))
        self.norms = nn.ModuleList(nn.GroupNorm(min(groups, o), o, eps=1e-5) for o in outs[:-1])

    def forward(self, z, y=None):
        h = F.silu(self.project(with_condition(z, y, self.num_classes))).view(-1, *self.base_shape)
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h)
            if i < len(self.norms):
                h = F.silu(self.norms[i](h))
        return h


def downsampling_convs(in_channels: int, channels: Sequence[int], groups: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The conv encoders' trunk (the VAE's, the autoencoder's, the VQ-VAE's): a strided 3x3 conv (stride 2, padding
    1) per entry of ``channels``, each followed by GroupNorm(min(groups, o), eps 1e-5). -> (convs, norms)."""
    ins = [in_channels, *channels[:-1]]
    return (nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in zip(ins, channels)),
            nn.ModuleList(nn.GroupNorm(min(groups, o), o, eps=1e-5) for o in channels))


def downsample(convs: nn.ModuleList, norms: nn.ModuleList, h):
    """h through that trunk, SiLU(norm(conv(h))) per level. (B, C, H, W) -> (B, channels[-1], H / 2^L, W / 2^L)."""
    for conv, norm in zip(convs, norms):
        h = F.silu(norm(conv(h)))
    return h


def check_divisible(image_shape: Sequence[int], downsamplings: int) -> None:
    scale = 2**downsamplings
    if image_shape[1] % scale or image_shape[2] % scale:
        raise ValueError(f"the conv VAE halves the image {downsamplings} times: height and width must be "
                         f"divisible by {scale}, got {tuple(image_shape[1:])}; pad the images or use fewer channels")


class TCDiscriminator(nn.Module):
    """FactorVAE's discriminator (Kim & Mnih 2018, Appendix A: an MLP of 6 layers of 1000, leaky ReLU 0.2):
    z (B, d) -> logit D(z) (B,), the log-odds that z came from q(z) rather than from prod_k q(z_k)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (1000,) * 6):
        super().__init__()
        widths = [latent_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, z):
        h = z
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
        return self.out(h)[..., 0]


class FeatureDiscriminator(nn.Module):
    """VAE-GAN's discriminator (Larsen et al. 2016): strided 3x3 convs (stride 2, padding 1), each normalised and
    through leaky ReLU 0.2, a fully connected layer of ``fc``, the logit. x: (B, C, H, W) -> (Dis_l(x) (B, F), logit
    (B,)): the features Dis_l are the last conv's activations, flattened in NCHW order, the layer whose likeness
    measures the reconstruction. GroupNorm(min(groups, c), eps 1e-5) where the paper has batch norm: it keeps the
    features near unit scale, so that their Gaussian likelihood weighs against the KL as the paper's did, and it
    normalises each image alone (the discriminator sees the data and two fakes in one batch)."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int] = (32, 64), fc: int = 512, groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        self.convs, self.norms = downsampling_convs(c, channels, groups)
        for _ in channels:
            hgt, wid = (hgt + 1) // 2, (wid + 1) // 2
        self.hidden = nn.Linear(channels[-1] * hgt * wid, fc)
        self.out = nn.Linear(fc, 1)

    def forward(self, x):
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = F.leaky_relu(norm(conv(h)), 0.2)
        features = torch.flatten(h, 1)
        return features, self.out(F.leaky_relu(self.hidden(features), 0.2))[..., 0]


# 3. The VAE: ELBO, beta-VAE objective, importance-sampled likelihood -------------------------------
class VAE(nn.Module):
    """Encoder q(z|x[,y]), prior N(0, I), decoder p(x|z[,y]) (Bernoulli logits or Gaussian mean with a
    learned scalar log-std ``log_sigma``). ``num_classes > 0`` makes it a conditional VAE;
    ``loss(..., beta=...)`` weighs the KL (beta-VAE; beta is the training step's setting, not the network's);
    ``elbo`` is always the beta = 1 bound. ``tc_hidden`` (FactorVAE's) adds ``tc_discriminator``, a second player
    on the codes (``TCDiscriminator``) that no bound uses; ``discriminator_channels`` (VAE-GAN's) adds
    ``discriminator``, a third on the images (``FeatureDiscriminator``), whose features measure the reconstruction
    (``vaegan_terms``)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int = 16, architecture: str = "mlp",
                 likelihood: str = "bernoulli", hidden: Sequence[int] = (256,), channels: Sequence[int] = (32, 64),
                 num_classes: int = 0, groups: int = 8, tc_hidden: Sequence[int] = (),
                 discriminator_channels: Sequence[int] = (), discriminator_fc: int = 512):
        super().__init__()
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        self.likelihood, self.num_classes = likelihood, num_classes
        if architecture == "mlp":
            kw = dict(image_shape=image_shape, latent_dim=latent_dim, hidden=hidden, num_classes=num_classes)
            self.encoder, self.decoder = MLPEncoder(**kw), MLPDecoder(**kw)
        elif architecture == "conv":
            kw = dict(image_shape=image_shape, latent_dim=latent_dim, channels=channels, num_classes=num_classes,
                      groups=groups)
            self.encoder, self.decoder = ConvEncoder(**kw), ConvDecoder(**kw)
        else:
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {architecture!r}")
        if likelihood == "gaussian":
            self.log_sigma = nn.Parameter(torch.zeros(1))
        elif likelihood != "bernoulli":
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if tc_hidden:
            self.tc_discriminator = TCDiscriminator(latent_dim, tc_hidden)
        if discriminator_channels:
            self.discriminator = FeatureDiscriminator(image_shape, discriminator_channels, discriminator_fc)

    def vae_parameters(self) -> list[nn.Parameter]:
        """The encoder's and the decoder's (and the decoder's scale's) parameters: all but the discriminators'."""
        return [p for name, p in self.named_parameters() if not name.startswith(("tc_discriminator.", "discriminator."))]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The decoder's parameters and, with a Gaussian decoder, its scale's: what VAE-GAN's decoder loss trains."""
        return [p for name, p in self.named_parameters() if name.startswith(("decoder.", "log_sigma"))]

    def encode(self, x, y=None):
        return self.encoder(x, y)

    def decode(self, z, y=None):
        return self.decoder(z, y)

    def log_likelihood(self, x, out):
        """log p(x|z) summed over pixels. x, out: (N, C, H, W) -> (N,)."""
        x, out = torch.flatten(x, 1), torch.flatten(out, 1)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(x, out)
        return gaussian_log_prob(x, out, torch.broadcast_to(2.0 * self.log_sigma, out.shape))

    def terms(self, x, eps, y=None):
        """(E_q log p(x|z) by one reparameterised sample, KL(q(z|x) || N(0, I))), each (B,)."""
        return self.sample_terms(x, eps, y)[:2]

    def sample_terms(self, x, eps, y=None):
        """``terms`` and the code they used: (E_q log p(x|z), KL(q(z|x) || N(0, I)), z ~ q(z|x)), (B,), (B,), (B, d)."""
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean, logvar, eps)
        return self.log_likelihood(x, self.decode(z, y)), standard_normal_kl(mean, logvar), z

    def tc_terms(self, x, eps, y=None, dataset_size: int = 0):
        """``terms`` and the KL's three parts (index-code MI, total correlation, dimension-wise KL), each (B,):
        ``total_correlation_terms`` of the batch's samples (dataset_size 0: the batch is the data set)."""
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean, logvar, eps)
        parts = total_correlation_terms(z, mean, logvar, dataset_size or len(z))
        return (self.log_likelihood(x, self.decode(z, y)), standard_normal_kl(mean, logvar), *parts)

    def elbo(self, x, eps, y=None):
        """Single-sample ELBO estimate per example, eq. (7) of Kingma & Welling. x: (B, C, H, W), eps: (B, d) -> (B,)."""
        recon, kl = self.terms(x, eps, y)
        return recon - kl

    def loss(self, x, eps, y=None, beta: float = 1.0):
        """The training objective: mean over the batch of -(E log p(x|z) - beta KL) (beta-VAE), a scalar;
        beta = 1 (the default) is the negative ELBO."""
        recon, kl = self.terms(x, eps, y)
        return torch.mean(beta * kl - recon)

    def importance_nll(self, x, eps, y=None):
        """-log p(x) estimated with K importance samples from q(z|x) (Burda et al. 2016).

        x: (B, C, H, W), eps: (B, K, d), y: (B,) -> (B,).
        """
        b, k, d = eps.shape
        mean, logvar = self.encode(x, y)
        z = reparameterize(mean[:, None], logvar[:, None], eps)
        y_rep = None if y is None else torch.repeat_interleave(y, k)
        out = self.decode(z.reshape(b * k, d), y_rep)
        recon = self.log_likelihood(torch.repeat_interleave(x, k, dim=0), out).reshape(b, k)
        log_w = recon + gaussian_log_prob(z, 0.0 * z, 0.0 * z) - gaussian_log_prob(z, mean[:, None], logvar[:, None])
        return -iwae_bound(log_w)

    def sample(self, z, y=None):
        """Decoder mean for latents z (B, d): Bernoulli probabilities or Gaussian means, (B, C, H, W)."""
        out = self.decode(z, y)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def vaegan_terms(self, x, eps, z_prior):
        """VAE-GAN's terms of a batch (Larsen et al. 2016): KL(q(z|x) || N(0, I)), the reconstruction's L_llike in the
        discriminator's features (``feature_reconstruction_nll``) and the discriminator's logits of the data x, of
        the reconstructions x~ = Dec(z), z ~ q(z|x), and of the prior's samples x_p = Dec(z_p), decoder means all
        (one discriminator pass over the three). x: (B, C, H, W), eps, z_prior: (B, d) ->
        (kl, feature_nll, logits_real, logits_recon, logits_prior), each (B,)."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, eps)
        features, logits = self.discriminator(torch.cat([x, self.sample(z), self.sample(z_prior)]))
        b = len(x)
        return (standard_normal_kl(mean, logvar), feature_reconstruction_nll(features[:b], features[b:2 * b]),
                logits[:b], logits[b:2 * b], logits[2 * b:])

    def forward(self, x, eps, y=None):
        return self.elbo(x, eps, y)


# 4. Latent traversals -------------------------------------------------------------------------------------------------
def most_used_latents(net: VAE, x, y, rows: int) -> torch.Tensor:
    """The ``rows`` latents with the largest mean KL(q(z_k|x) || N(0, 1)) over x (N, C, H, W): (rows,), largest first."""
    mean, logvar = net.encode(x, y if net.num_classes else None)
    used = standard_normal_kl(mean.unsqueeze(-1), logvar.unsqueeze(-1)).mean(0)  # each latent's own KL, (d,)
    return torch.argsort(used, descending=True)[:rows]


def traverse(net: VAE, x, y, latents, steps: int = 9, span: float = 2.5) -> torch.Tensor:
    """Decoder means as each of ``latents`` (R,) in turn moves through [-span, span] in ``steps`` values, the others at
    the posterior mean of the first example of x (N, C, H, W): (R * steps, C, H, W), one row of ``steps`` per latent
    (a latent the encoder ignores decodes to one picture along its row)."""
    y = y if net.num_classes else None
    mean = net.encode(x[:1], None if y is None else y[:1])[0]
    z = mean.repeat(len(latents) * steps, 1).view(len(latents), steps, -1)
    z[torch.arange(len(latents)), :, latents] = torch.linspace(-span, span, steps, device=x.device)
    return net.sample(z.view(len(latents) * steps, -1), None if y is None else y[:1].repeat(len(latents) * steps))


# 5. A hierarchical VAE: two levels of latents, inferred top-down (Sonderby et al. 2016; Vahdat & Kautz 2020) ---------
class HierarchicalVAE(nn.Module):
    """p(z2) p(z1|z2) p(x|z1) with z2 ~ N(0, I) (``top_dim``), p(z1|z2) = N(mu_p(z2), diag e^logvar_p(z2))
    (``latent_dim``) and the conv decoder on z1; inferred top-down, q(z2|x) q(z1|x, z2), from one bottom-up conv trunk
    (``ConvEncoder``'s): q(z2|x) from its features, q(z1|x, z2) from them and the drawn z2. The ELBO is the
    reconstruction less one KL a level (``hierarchical_kl``).

    Its noise and codes live in the prior's standard coordinates, u = (z2, (z1 - mu_p(z2)) / sigma_p(z2)) ~ N(0, I) of
    ``latent_dim + top_dim`` (``self.latent_dim``): ``eps`` (B, top_dim + latent_dim) draws q's sample, z2 from its
    first ``top_dim`` columns; ``sample(u)`` decodes a prior draw; ``encode`` gives q's mean and log-variance in those
    coordinates (z1's at z2 = q(z2|x)'s mean), so that the one-level VAE's pictures (reconstructions, interpolations,
    traversals) and probes read it unchanged."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int = 16, top_dim: int = 8, likelihood: str = "bernoulli",
                 channels: Sequence[int] = (32, 64), hidden: int = 256, groups: int = 8):
        super().__init__()
        c, hgt, wid = image_shape
        check_divisible(image_shape, len(channels))
        self.image_shape, self.likelihood, self.num_classes = tuple(image_shape), likelihood, 0
        self.lower_dim, self.top_dim, self.latent_dim = latent_dim, top_dim, latent_dim + top_dim
        self.convs, self.norms = downsampling_convs(c, channels, groups)
        features = channels[-1] * (hgt // 2 ** len(channels)) * (wid // 2 ** len(channels))
        self.q_top = nn.Linear(features, 2 * top_dim)
        self.q_hidden, self.q_lower = nn.Linear(features + top_dim, hidden), nn.Linear(hidden, 2 * latent_dim)
        self.prior_hidden, self.prior = nn.Linear(top_dim, hidden), nn.Linear(hidden, 2 * latent_dim)
        self.decoder = ConvDecoder(image_shape, latent_dim, channels, groups=groups)
        if likelihood == "gaussian":
            self.log_sigma = nn.Parameter(torch.zeros(1))
        elif likelihood != "bernoulli":
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")

    log_likelihood = VAE.log_likelihood

    def features(self, x):
        """The bottom-up trunk's features of x (B, C, H, W) -> (B, F), flattened in (C, H, W) order."""
        return torch.flatten(downsample(self.convs, self.norms, x), 1)

    def lower_posterior(self, h, z2):
        """q(z1 | x, z2): (mean, logvar), each (B, latent_dim), from the features and the top level's draw."""
        return self.q_lower(F.silu(self.q_hidden(torch.cat([h, z2], dim=-1)))).chunk(2, dim=-1)

    def lower_prior(self, z2):
        """p(z1 | z2): (mean, logvar), each (B, latent_dim)."""
        return self.prior(F.silu(self.prior_hidden(z2))).chunk(2, dim=-1)

    def posterior(self, x, eps):
        """Both levels top-down on the noise eps (B, top_dim + latent_dim): (z2, z1, q2 (mean, logvar), q1 (mean,
        logvar), p1 (mean, logvar)), each (B, its level's dim)."""
        h = self.features(x)
        q2 = self.q_top(h).chunk(2, dim=-1)
        z2 = reparameterize(*q2, eps[..., :self.top_dim])
        q1 = self.lower_posterior(h, z2)
        z1 = reparameterize(*q1, eps[..., self.top_dim:])
        return z2, z1, q2, q1, self.lower_prior(z2)

    def level_terms(self, x, eps, y=None):
        """(E_q log p(x|z1) by one sample, KL(q(z2|x) || N(0, I)), KL(q(z1|x, z2) || p(z1|z2))), each (B,)."""
        _, z1, q2, q1, p1 = self.posterior(x, eps)
        kl_top, kl_lower = hierarchical_kl(*q2, *q1, *p1)
        return self.log_likelihood(x, self.decoder(z1)), kl_top, kl_lower

    def terms(self, x, eps, y=None):
        """(E_q log p(x|z1), the two levels' KL summed), each (B,): the one-level VAE's terms."""
        recon, kl_top, kl_lower = self.level_terms(x, eps)
        return recon, kl_top + kl_lower

    def elbo(self, x, eps, y=None):
        recon, kl = self.terms(x, eps)
        return recon - kl

    def importance_nll(self, x, eps, y=None):
        """-log p(x) by K importance samples of q(z2|x) q(z1|x, z2) (Burda et al. 2016): log w = log p(x|z1) +
        log p(z1|z2) + log p(z2) - log q(z2|x) - log q(z1|x, z2). x: (B, C, H, W), eps: (B, K, d) -> (B,)."""
        b, k, _ = eps.shape
        z2, z1, q2, q1, p1 = self.posterior(torch.repeat_interleave(x, k, dim=0), eps.reshape(b * k, -1))
        recon = self.log_likelihood(torch.repeat_interleave(x, k, dim=0), self.decoder(z1))
        log_w = (recon + gaussian_log_prob(z1, *p1) + gaussian_log_prob(z2, 0.0 * z2, 0.0 * z2)
                 - gaussian_log_prob(z2, *q2) - gaussian_log_prob(z1, *q1))
        return -iwae_bound(log_w.reshape(b, k))

    def lower(self, u):
        """z1 of the prior's standard coordinates u (B, top_dim + latent_dim): mu_p(z2) + sigma_p(z2) u1."""
        mean, logvar = self.lower_prior(u[..., :self.top_dim])
        return mean + torch.exp(0.5 * logvar) * u[..., self.top_dim:]

    def sample(self, u, y=None):
        """Decoder means of prior draws in standard coordinates u (B, top_dim + latent_dim) -> (B, C, H, W)."""
        out = self.decoder(self.lower(u))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def encode(self, x, y=None):
        """q's mean and log-variance in the prior's standard coordinates (z1's at z2 = q(z2|x)'s mean): (B, d), (B, d)."""
        h = self.features(x)
        mean2, logvar2 = self.q_top(h).chunk(2, dim=-1)
        mean1, logvar1 = self.lower_posterior(h, mean2)
        prior_mean, prior_logvar = self.lower_prior(mean2)
        return (torch.cat([mean2, (mean1 - prior_mean) * torch.exp(-0.5 * prior_logvar)], dim=-1),
                torch.cat([logvar2, logvar1 - prior_logvar], dim=-1))

    def forward(self, x, eps, y=None):
        return self.elbo(x, eps)
