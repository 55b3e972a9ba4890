"""The WaveNet network: embedded mu-law classes, gated residual blocks with skip connections, conditioned on a label.

One forward pass scores every position of a clip in parallel (teacher forcing): logits[:, :, t] is the 256-way
softmax over the mu-law class of sample t + 1 given samples 0..t and the label (WaveNet eq. 1, section 2.2), each
block computing ``functions.gated_residual_block`` (fig. 4, eq. 3 with the label's one-hot as the global condition
h). ``generate`` samples one step at a time with per-block queues of past activations (the "fast WaveNet" cache,
Paine et al. 2016): each step costs one column per layer instead of a receptive field's worth of convolutions.

Two inputs beyond the paper's one-hot, both off by default here and on in the training presets: the decoded amplitude
of each sample, and a clock (sinusoidal features of the time since the clip start, local conditioning in the sense
of section 2.5) that tells every position where in the word it is; training crops pass their start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from practice_torch.wavenet.functions import clock_features, gated_residual_block, mu_law_decode, receptive_field


class GatedResidualBlock(nn.Module):
    """Dilated causal filter and gate convolutions (kernel K), label projections V_f and V_g, 1x1 residual and skip."""

    def __init__(self, channels: int, skip: int, num_classes: int, kernel: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.filter = nn.Conv1d(channels, channels, kernel)
        self.gate = nn.Conv1d(channels, channels, kernel)
        self.cond_filter = nn.Linear(num_classes, channels, bias=False)
        self.cond_gate = nn.Linear(num_classes, channels, bias=False)
        self.res = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, T), h: (B, L) -> (residual output (B, C, T), skip (B, S, T))."""
        return gated_residual_block(x, h, self.filter.weight, self.gate.weight, self.filter.bias, self.gate.bias,
                                    self.cond_filter.weight, self.cond_gate.weight, self.res.weight[..., 0],
                                    self.res.bias, self.skip.weight[..., 0], self.skip.bias, self.dilation)

    def step(self, x: torch.Tensor, h: torch.Tensor, queue: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step from cached inputs. x: (B, C) this block's input at time t; queue: (B, C, (K - 1) d + 1)
        a ring buffer of its past inputs (updated in place) -> (output (B, C), skip (B, S))."""
        kernel, size = self.filter.kernel_size[0], queue.shape[-1]
        queue[:, :, t % size] = x
        taps = queue[:, :, [(t - (kernel - 1 - k) * self.dilation) % size for k in range(kernel)]]  # (B, C, K)
        filter_pre = torch.einsum("ock,bck->bo", self.filter.weight, taps) + self.filter.bias + self.cond_filter(h)
        gate_pre = torch.einsum("ock,bck->bo", self.gate.weight, taps) + self.gate.bias + self.cond_gate(h)
        z = torch.tanh(filter_pre) * torch.sigmoid(gate_pre)
        return x + F.linear(z, self.res.weight[..., 0], self.res.bias), F.linear(z, self.skip.weight[..., 0],
                                                                                   self.skip.bias)


class WaveNet(nn.Module):
    """p(q_{t+1} | q_{<=t}, y): embedding -> gated residual blocks (dilations 1..2^k, r times) -> sum of skips ->
    ReLU, 1x1, ReLU, 1x1 -> logits over ``levels`` classes."""

    def __init__(self, levels: int = 256, channels: int = 32, skip: int = 64, num_classes: int = 10,
                 kernel: int = 2, dilations: Sequence[int] = (1, 2, 4, 8), clock: int = 0, sample_rate: int = 8000,
                 amplitude: bool = False):
        super().__init__()
        self.levels, self.num_classes, self.dilations = levels, num_classes, tuple(dilations)
        self.clock_pairs, self.sample_rate = clock, sample_rate
        self.amplitude = nn.Linear(1, channels, bias=False) if amplitude else None
        self.clock = nn.Linear(2 * clock, channels, bias=False) if clock else None
        self.receptive_field = receptive_field(kernel, self.dilations)
        self.embed = nn.Embedding(levels, channels)
        self.blocks = nn.ModuleList(GatedResidualBlock(channels, skip, num_classes, kernel, d) for d in self.dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, levels, 1))
        # The last block's residual output feeds nothing (only its skip reaches the head), so its 1x1 residual weights
        # never get a gradient: frozen, they stay out of the optimizer and out of DistributedDataParallel's buckets
        # (DDP stops with an error at a trainable parameter that received no gradient).
        self.blocks[-1].res.requires_grad_(False)

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        """The global condition h: the label's one-hot. y: (B,) int64 -> (B, L)."""
        return F.one_hot(y, self.num_classes).to(self.embed.weight.dtype)

    def inputs(self, q: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream's input: the classes' embedding, plus (when the net has them) a 1x1 projection of each
        sample's decoded amplitude (the value itself, so linear prediction across a pitch period is one convolution
        away instead of 256 embeddings to learn) and of the clock code of its position start + 0..T-1 (local
        conditioning on the time since the clip began). q: (B, T), start: (B,) or None (0) -> (B, C, T)."""
        x = self.embed(q).transpose(1, 2)
        if self.amplitude is not None:
            wave = mu_law_decode(q, self.levels).to(x.dtype)
            x = x + self.amplitude.weight[None] * wave[:, None, :]
        if self.clock is None:
            return x
        offset = torch.zeros(len(q), dtype=torch.long, device=q.device) if start is None else start
        positions = offset[:, None] + torch.arange(q.shape[1], device=q.device)
        code = clock_features(positions, self.sample_rate, self.clock_pairs).to(x.dtype)
        return x + torch.einsum("cf,bft->bct", self.clock.weight, code)

    def forward(self, q: torch.Tensor, y: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """q: (B, T) mu-law classes, y: (B,) labels, start: (B,) the clip position of q[:, 0] (used by the clock)
        -> logits (B, levels, T); column t predicts q[:, t + 1]."""
        x, h = self.inputs(q, start), self.condition(y)
        total = 0.0
        for block in self.blocks:
            x, skip = block(x, h)
            total = total + skip
        return self.head(total)

    @torch.no_grad()
    def generate(self, y: torch.Tensor, uniforms: torch.Tensor, first: int | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
        """Ancestral sampling with cached queues: q_0 = ``first`` (default: the silence class), then q_{t+1} by the
        inverse CDF of softmax(logits / temperature) at ``uniforms[:, t]``. y: (B,), uniforms: (B, T) -> (B, T + 1)."""
        batch, length = uniforms.shape
        first = self.levels // 2 if first is None else first
        q = torch.full((batch, length + 1), first, dtype=torch.long, device=uniforms.device)
        h, columns = self.condition(y), uniforms.double().T.contiguous()
        queues = [torch.zeros(batch, self.embed.embedding_dim, (b.filter.kernel_size[0] - 1) * b.dilation + 1,
                              device=uniforms.device, dtype=self.embed.weight.dtype) for b in self.blocks]
        for t in range(length):
            x, total = self.inputs(q[:, t, None], torch.full((batch,), t, device=q.device))[..., 0], 0.0
            for block, queue in zip(self.blocks, queues):
                x, skip = block.step(x, h, queue, t)
                total = total + skip
            logits = self.head(total[..., None])[..., 0] / temperature
            cdf = torch.softmax(logits.double(), -1).cumsum(-1)
            q[:, t + 1] = torch.searchsorted(cdf, columns[t, :, None])[:, 0].clamp_max(self.levels - 1)
        return q
