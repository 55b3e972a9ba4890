"""The VQ-VAE's networks in PyTorch (van den Oord et al. 2017): a conv encoder to a grid of D-dimensional vectors, the
vector quantiser with its EMA codebook and dead-code restarts, a conv decoder back, and the autoregressive prior over
the grid of code indices (the project's transformer trunk, ``practice_torch.nets``). Class and attribute names match
the flax twin (``theory_jax/vq_vae.py``) so ``shared_specs.interop`` maps the weights.

The quantiser's math is ``functions.py``; here it is applied to (B, D, h, w) grids as (B h w, D) rows, and under
torchrun to the rows of every rank (``gather_rows``), so that the EMA codebook and the restarts agree across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from practice_torch.autoencoder.functions import reconstruction_bce, reconstruction_mse
from practice_torch.autoencoder.networks import check_objective
from practice_torch.language_model.functions import temperature_step
from practice_torch.nets import Transformer, TransformerConfig
from practice_torch.vae.networks import check_divisible, downsample, downsampling_convs
from practice_torch.vq_vae.functions import (
    code_usage,
    commitment_loss,
    ema_codebook,
    ema_update,
    quantise,
    restart_dead_codes,
    straight_through,
)


# 1. Grids of vectors and rows ----------------------------------------------------------------------------------
def grid_to_rows(z):
    """(B, D, h, w) -> (B h w, D), rows in raster order per example."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def rows_to_grid(rows, shape):
    """The inverse of ``grid_to_rows`` for a grid of ``shape`` (B, D, h, w)."""
    b, d, h, w = shape
    return rows.reshape(b, h, w, d).permute(0, 3, 1, 2)


def gather_rows(t):
    """The rows of every rank of a torchrun, concatenated in rank order (the global batch, as one process sees it);
    ``t`` itself in one process. The engine's shards are equal, as all_gather needs. t: (N, ...) -> (world N, ...)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


# 2. Encoder and decoder --------------------------------------------------------------------------------------
class GridEncoder(nn.Module):
    """Strided 3x3 convs (stride 2, padding 1), GroupNorm and SiLU after each, then a 1x1 conv ``head`` to the code
    dimension (no norm, no activation). x: (B, C, H, W), H and W divisible by 2^L -> z_e (B, D, H / 2^L, W / 2^L)."""

    def __init__(self, image_shape: Sequence[int], code_dim: int, channels: Sequence[int] = (32, 64), groups: int = 8):
        super().__init__()
        check_divisible(image_shape, len(channels))
        self.convs, self.norms = downsampling_convs(image_shape[0], channels, groups)
        self.head = nn.Conv2d(channels[-1], code_dim, 1)

    def forward(self, x):
        return self.head(downsample(self.convs, self.norms, x))


class GridDecoder(nn.Module):
    """A 1x1 conv ``project`` (D -> channels[-1]) and SiLU, then ConvTranspose 3x3 (stride 2, padding 1, output
    padding 1) doubling the size, GroupNorm and SiLU after all but the last, which outputs C channels (raw: logits or
    values). z_q: (B, D, h, w) -> (B, C, 2^L h, 2^L w)."""

    def __init__(self, image_shape: Sequence[int], code_dim: int, channels: Sequence[int] = (32, 64), groups: int = 8):
        super().__init__()
        check_divisible(image_shape, len(channels))
        ins = list(reversed(channels))
        outs = [*reversed(channels[:-1]), image_shape[0]]
        self.project = nn.Conv2d(code_dim, channels[-1], 1)
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1)
                                     for i, o in zip(ins, outs))
        self.norms = nn.ModuleList(nn.GroupNorm(min(groups, o), o, eps=1e-5) for o in outs[:-1])

    def forward(self, z_q):
        h = F.silu(self.project(z_q))
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h)
            if i < len(self.norms):
                h = F.silu(self.norms[i](h))
        return h


# 3. The vector quantiser ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodebookUpdate:
    """How a training step updates the quantiser's buffers (the run's ``model.decay``, ``model.eps``,
    ``model.restart_every``, ``model.threshold``): the EMA's ``decay`` (``ema_update``), the Laplace smoothing ``eps``
    of its counts (``ema_codebook``), a restart of dead codes after every ``restart_every``-th step (0: none after
    the first step's initialisation) and the ``threshold`` below which a code's usage since the last restart makes
    it dead. A training setting, not the network's: the training step builds it from the config and hands it down
    the loss."""

    decay: float = 0.99
    eps: float = 1e-5
    restart_every: int = 100
    threshold: float = 1.0

    def __post_init__(self):
        if not 0 <= self.decay < 1 or self.eps < 0 or self.restart_every < 0 or self.threshold < 0:
            raise ValueError(f"quantiser settings out of range: decay={self.decay} (in [0, 1)), eps={self.eps}, "
                             f"restart_every={self.restart_every}, threshold={self.threshold} (not negative)")


class VectorQuantiser(nn.Module):
    """Nearest-code quantisation of a grid z: (B, D, h, w) with K codes, an EMA codebook (appendix A.1) and dead-code
    restarts (Dhariwal et al. 2020).

    Everything here is a buffer, none a parameter, so the optimiser never touches the codebook: ``codebook`` (K, D),
    its EMA state ``cluster_size`` N_k (K,) and ``embed_sum`` m_k (K, D) and ``usage`` (K,) (assignments since the
    last restart); the training step's number is an argument (the engine's ``step``), not a buffer. With an EMA
    codebook the codebook loss ||sg(z) - e||^2 of eq. 3 is not needed: the codebook follows the encoder by the
    closed-form update instead of by gradients, and only the commitment loss beta ||z - sg(e)||^2 trains the encoder
    towards its codes.

    A forward in training mode (once per training step, ``step`` the steps taken before it, ``update`` the
    ``CodebookUpdate`` rule), under torch.no_grad(), after quantising with the current codebook: at step 0 every code
    restarts at encoder outputs (no code has been used: a data-dependent initialisation), then the EMA update
    N, m <- ``ema_update`` and e <- ``ema_codebook`` on the global batch; after every ``restart_every``-th step the
    codes used fewer than ``threshold`` times since the last restart start again at encoder outputs
    (``restart_dead_codes``). The rows they restart at are the ones with
    the smallest ``keys`` (uniforms, one per row, drawn by the caller: randomness is an argument), a random choice
    without replacement.
    Under torchrun the rows, indices and keys of every rank are gathered first (``gather_rows``), so every rank makes
    the update one process would make on the global batch. In eval mode nothing changes (``update`` may be None)."""

    def __init__(self, num_codes: int, code_dim: int):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"the quantiser needs at least one code of dimension >= 1, got num_codes={num_codes}, "
                             f"code_dim={code_dim}")
        self.num_codes, self.code_dim = num_codes, code_dim
        codebook = torch.randn(num_codes, code_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("usage", torch.zeros(num_codes))

    def lookup(self, indices):
        """The codes of a grid of indices: (B, h, w) int -> z_q (B, D, h, w)."""
        return self.codebook[indices].permute(0, 3, 1, 2)

    def assign(self, z):
        """The nearest codes, without any update: z (B, D, h, w) -> indices (B, h, w)."""
        b, _, h, w = z.shape
        return quantise(grid_to_rows(z.detach().float()), self.codebook)[1].reshape(b, h, w)

    def forward(self, z, keys=None, step: int | None = None, update: CodebookUpdate | None = None):
        """z (B, D, h, w) -> (z_q through ``straight_through`` (B, D, h, w), indices (B, h, w), the commitment loss per
        example: ||z - sg(e)||^2 averaged over the h w positions and the D dimensions (B,)). ``keys`` (B, h w):
        uniforms choosing the rows of restarts, ``step``, the training steps before this one, and ``update``, the
        ``CodebookUpdate`` rule: all three needed in training mode."""
        b, d, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):  # distances and the EMA in float32 under bf16 autocast
            rows = grid_to_rows(z.float())
            if self.training:
                if keys is None or keys.shape != (b, h * w):
                    raise ValueError(f"the quantiser in training mode needs keys (B, h w) = {(b, h * w)} of uniforms "
                                     "for its restarts (draw_noise); got "
                                     f"{None if keys is None else tuple(keys.shape)}")
                if step is None:
                    raise ValueError("the quantiser in training mode needs the step number (its restarts' schedule)")
                if update is None:
                    raise ValueError("the quantiser in training mode needs its update rule: update=CodebookUpdate(...) "
                                     "(the config's decay, eps, restart_every, threshold)")
                if step == 0:
                    self.restart(rows.detach(), keys, update.threshold, everything=True)
            z_q, indices = quantise(rows.detach(), self.codebook)
            commitment = commitment_loss(rows, z_q).reshape(b, h * w).mean(-1) / d
            z_st = straight_through(rows, z_q)
            if self.training:
                self.update(rows.detach(), indices, keys, step, update)
        return rows_to_grid(z_st, (b, d, h, w)), indices.reshape(b, h, w), commitment

    @torch.no_grad()
    def update(self, rows, indices, keys, step: int, update: CodebookUpdate):
        """Training step ``step``'s EMA update by the rule ``update`` and, after every ``update.restart_every``-th
        step, restarts: rows (N, D), indices (N,), keys (N / (h w), h w)."""
        rows, indices = gather_rows(rows), gather_rows(indices)
        self.usage += code_usage(indices, self.num_codes).to(self.usage)
        cluster_size, embed_sum = ema_update(self.cluster_size, self.embed_sum, rows, indices, update.decay)
        self.set_state(ema_codebook(cluster_size, embed_sum, update.eps), cluster_size, embed_sum)
        if update.restart_every and (step + 1) % update.restart_every == 0:
            self.restart(rows, keys, update.threshold, gathered=True)

    @torch.no_grad()
    def restart(self, rows, keys, threshold: float, everything: bool = False, gathered: bool = False):
        """Codes used fewer than ``threshold`` times since the last restart (every code when ``everything``) restart at
        the rows with the smallest keys (cycling through them if there are fewer rows than codes); usage starts over."""
        if not gathered:
            rows = gather_rows(rows)
        order = torch.argsort(gather_rows(keys.reshape(-1).to(rows.device)))
        choice = order[torch.arange(self.num_codes, device=rows.device) % len(order)]
        usage = torch.zeros_like(self.usage) if everything else self.usage
        threshold = max(threshold, 1.0) if everything else threshold
        self.set_state(*restart_dead_codes(self.codebook, self.cluster_size, self.embed_sum, rows, usage, threshold,
                                           choice))
        self.usage.zero_()

    def set_state(self, codebook, cluster_size, embed_sum):
        """Copy into the buffers in place (the tensors DDP and the optimizer-free checkpoint hold stay the same)."""
        self.codebook.copy_(codebook)
        self.cluster_size.copy_(cluster_size)
        self.embed_sum.copy_(embed_sum)


# 4. The VQ-VAE ---------------------------------------------------------------------------------------------------
def check_loss_settings(beta: float, objective: str, bounded: bool) -> None:
    """ValueError, one line, for an objective other than 'mse' or 'bce' (or 'bce' of unbounded outputs), or a
    negative commitment weight ``beta``."""
    check_objective(objective, bounded)
    if beta < 0:
        raise ValueError(f"beta must not be negative, got {beta}")


class VQVAE(nn.Module):
    """Encoder to a grid of vectors, the vector quantiser, decoder back (van den Oord et al. 2017).

    ``loss`` per example = reconstruction + beta * commitment (eq. 3 without its codebook term, which the EMA codebook
    replaces): reconstruction is ``reconstruction_mse`` of the output (sigmoid when ``bounded``: [0, 1] images;
    linear: log-mels) or ``reconstruction_bce`` of the logits, a mean over pixels; commitment a mean over positions
    and code dimensions. The decoder's gradient reaches the encoder by the straight-through estimator.

    The network holds the architecture (``bounded`` included: what its outputs mean); the training settings are the
    loss's arguments: the commitment weight ``beta``, the ``objective`` and the codebook's ``CodebookUpdate`` rule."""

    def __init__(self, image_shape: Sequence[int], num_codes: int = 64, code_dim: int = 16,
                 channels: Sequence[int] = (32, 64), groups: int = 8, bounded: bool = True):
        super().__init__()
        self.image_shape, self.num_codes, self.code_dim = tuple(image_shape), num_codes, code_dim
        self.bounded = bounded
        scale = 2 ** len(channels)
        self.grid_shape = (image_shape[1] // scale, image_shape[2] // scale)
        self.encoder = GridEncoder(image_shape, code_dim, channels, groups)
        self.quantiser = VectorQuantiser(num_codes, code_dim)
        self.decoder = GridDecoder(image_shape, code_dim, channels, groups)

    @property
    def length(self) -> int:
        """Codes per example: h w."""
        return math.prod(self.grid_shape)

    def encode(self, x):
        """The code grid of x, the nearest code at each position (no update): (B, C, H, W) -> (B, h, w) int64."""
        return self.quantiser.assign(self.encoder(x))

    def output(self, raw):
        return torch.sigmoid(raw) if self.bounded else raw

    def decode(self, codes):
        """Images (decoder outputs, sigmoid when bounded) of a code grid: (B, h, w) int -> (B, C, H, W)."""
        return self.output(self.decoder(self.quantiser.lookup(codes)))

    def reconstruct(self, x):
        """decode(encode(x)): (B, C, H, W) -> (B, C, H, W)."""
        return self.decode(self.encode(x))

    def per_example_loss(self, x, keys=None, step: int | None = None, beta: float = 0.25, objective: str = "mse",
                         update: CodebookUpdate | None = None):
        """(reconstruction + beta commitment (B,), terms: reconstruction (B,), commitment (B,), indices (B, h, w)):
        reconstruction by ``objective`` 'mse' of the output or 'bce' of the logits (``bounded`` only). In training
        mode the quantiser updates its codebook by the rule ``update`` (``keys`` (B, h w) choose the rows of
        restarts, ``step`` is the training step's number, which schedules them); in eval mode none of the three is
        needed."""
        check_loss_settings(beta, objective, self.bounded)
        z_q, indices, commitment = self.quantiser(self.encoder(x), keys, step, update)
        raw = self.decoder(z_q)
        recon = reconstruction_bce(x, raw) if objective == "bce" else reconstruction_mse(x, self.output(raw))
        return recon + beta * commitment, {"reconstruction": recon, "commitment": commitment, "indices": indices}

    def loss(self, x, keys=None, step: int | None = None, beta: float = 0.25, objective: str = "mse",
             update: CodebookUpdate | None = None):
        return self.per_example_loss(x, keys, step, beta, objective, update)[0].mean()

    def forward(self, x):
        return self.reconstruct(x)


# 5. The prior over code grids ----------------------------------------------------------------------------------
class CodePrior(nn.Module):
    """p(c) = prod_t p(c_t | c_<t) over the h w codes of a grid in raster order: token ``embedding`` (K + 1 entries,
    K the start token), the transformer ``trunk`` (causal, learned positions, max_len h w) and a Linear ``head`` to K
    logits. codes (B, L) int -> logits (B, L, K), row t predicting c_t from the start token and c_0 .. c_{t-1}."""

    def __init__(self, num_codes: int, length: int, dim: int = 128, heads: int = 4, layers: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.embedding = nn.Embedding(num_codes + 1, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.trunk = Transformer(TransformerConfig(dim=dim, heads=heads, layers=layers, dropout=dropout,
                                                   max_len=length))
        self.head = nn.Linear(dim, num_codes)

    def forward(self, codes):
        start = torch.full((codes.shape[0], 1), self.num_codes, dtype=torch.long, device=codes.device)
        inputs = torch.cat([start, codes[:, :-1]], dim=1)
        return self.head(self.trunk(self.embedding(inputs)))

    def nll(self, codes):
        """-log p(c) per example in nats, summed over the L codes: codes (B, L) -> (B,)."""
        logits = self(codes).float()
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(-1)

    @torch.no_grad()
    def generate(self, uniforms, temperature: float = 1.0):
        """Code sequences drawn one position at a time with a key-value cache, each by the inverse CDF of
        softmax(logits / temperature) at ``uniforms`` (n, L) in [0, 1) -> (n, L) int64."""
        n = uniforms.shape[0]
        device = self.head.weight.device
        cache = self.trunk.init_cache(n, self.length)
        token = torch.full((n,), self.num_codes, dtype=torch.long, device=device)
        out = torch.empty(n, self.length, dtype=torch.long, device=device)
        for t in range(self.length):
            logits = self.head(self.trunk(self.embedding(token[:, None]), cache=cache))[:, -1].float()
            token = temperature_step(logits, uniforms[:, t].to(device), temperature)
            out[:, t] = token
        return out


class VQVAEWithPrior(nn.Module):
    """Stage two: a trained VQ-VAE, frozen (requires_grad off, always in eval mode, so its codebook never updates), and
    the ``prior`` over its code grids; the prior trains on the codes of the data, ``vq_vae.encode(x)``."""

    def __init__(self, vq_vae: VQVAE, prior: CodePrior):
        super().__init__()
        self.vq_vae = vq_vae.requires_grad_(False).eval()
        self.prior = prior

    def train(self, mode: bool = True) -> VQVAEWithPrior:
        super().train(mode)
        self.vq_vae.eval()
        return self

    @torch.no_grad()
    def codes(self, x):
        """The code sequence of x in raster order: (B, C, H, W) -> (B, h w) int64."""
        return self.vq_vae.encode(x).flatten(1)

    def bits_per_code(self, x):
        """-log2 p(codes of x) / (h w) per example: (B, C, H, W) -> (B,)."""
        return self.prior.nll(self.codes(x)) / (self.prior.length * math.log(2))

    @torch.no_grad()
    def generate(self, uniforms, temperature: float = 1.0):
        """(images decoded from prior samples (n, C, H, W), their code grids (n, h, w)); uniforms (n, h w)."""
        codes = self.prior.generate(uniforms, temperature).reshape(-1, *self.vq_vae.grid_shape)
        return self.vq_vae.decode(codes), codes
