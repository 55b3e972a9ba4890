"""SSM layers: S4D (Gu et al. 2022) and Mamba's selective SSM block (Gu & Dao 2023, Algorithm 2), each with a
parallel mode for training and a recurrent ``step`` for generation; pre-norm residual blocks and a character-LM stack.

Shapes: B batch, L length, H model channels, N state size, E = expand * H inner channels, R = rank of Delta's
projection, K the causal conv's width. Every layer maps (B, L, H) -> (B, L, H).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from practice_torch.ssm.functions import selective_scan_chunked


def s4d_imag_init(state: int, init: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Im(A_n), n < N/2, of S4D-Lin (pi n) or S4D-Inv (N/pi (N/(2n+1) - 1)) with N = ``state``, the real state size
    (S4D sec. 4.1, eq. 9-10, and the authors' ``dplr(init='inv')``): one value per conjugate pair. -> (N/2,)."""
    idx = torch.arange(state // 2, dtype=dtype)
    if init == "lin":
        return math.pi * idx
    if init == "inv":
        return state / math.pi * (state / (2 * idx + 1) - 1)
    raise ValueError(f"S4D init {init!r} is unknown: use 'lin' or 'inv'.")


def complex_diagonal_kernel(dta: torch.Tensor, b_bar: torch.Tensor, c: torch.Tensor, length: int) -> torch.Tensor:
    """K_{h,j} = sum_n C_n Abar_n^j Bbar_n with Abar^j = exp(j Delta A) (S4 eq. 5, Vandermonde; the complex twin of
    ``diagonal_kernel``, whose real ``arange`` powers refuse complex Abar). dta, b_bar, c: (H, N) -> (H, L)."""
    powers = torch.arange(length, dtype=dta.real.dtype, device=dta.device)
    # exp(j Delta A) = exp(j Re) (cos(j Im) + i sin(j Im)), in real arithmetic: several times faster than the complex
    # exp on a CPU, forward and backward
    magnitude, angle = torch.exp(dta.real[..., None] * powers), dta.imag[..., None] * powers  # (H, N/2, L)
    cos, sin, w = magnitude * torch.cos(angle), magnitude * torch.sin(angle), c * b_bar
    real = torch.einsum("hn,hnl->hl", w.real, cos) - torch.einsum("hn,hnl->hl", w.imag, sin)
    imag = torch.einsum("hn,hnl->hl", w.real, sin) + torch.einsum("hn,hnl->hl", w.imag, cos)
    return torch.complex(real, imag)


def fft_causal_convolution(kernel: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``causal_convolution`` along the last axis: y_k = sum_{j<=k} K_j u_{k-j}, FFT zero-padded to the power of two
    at or above 2L (any n >= 2L - 1 gives the linear convolution; powers of two are the fast lengths).
    kernel: (..., L), u: (..., L) broadcastable -> (..., L)."""
    length = u.shape[-1]
    n = 1 << (2 * length - 1).bit_length()
    return torch.fft.irfft(torch.fft.rfft(kernel, n=n) * torch.fft.rfft(u, n=n), n=n)[..., :length]


class Recurrent:
    """``recurrent(u)``: the layer token by token through ``step`` from ``init_state`` (generation's path), to set
    against the parallel ``forward``. u: (B, L, H) -> (B, L, H)."""

    def recurrent(self, u: torch.Tensor) -> torch.Tensor:
        state, out = self.init_state(u.shape[0]), []
        for t in range(u.shape[1]):
            y, state = self.step(u[:, t], state)
            out.append(y)
        return torch.stack(out, dim=1)


class S4D(Recurrent, nn.Module):
    """Diagonal complex SSM per channel (S4D): x' = A x + B u, y = 2 Re(C x) + D u with N/2 complex states standing
    for N real ones (conjugate pairs, S4D sec. 3.2), B = 1, A = -exp(A_log_re) + i A_im, ZOH with a learnable
    Delta = exp(log_dt). Complex parameters stored as real and imaginary parts. (B, L, H) -> (B, L, H)."""

    def __init__(self, channels: int, state: int = 64, imag_init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        if state % 2:
            raise ValueError(f"S4D state size {state} is odd: use an even N (N/2 complex conjugate pairs).")
        half = state // 2
        self.channels, self.half = channels, half
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.A_log_re = nn.Parameter(torch.full((channels, half), math.log(0.5)))  # Re A = -1/2 (S4D-Lin/Inv)
        self.A_im = nn.Parameter(s4d_imag_init(state, imag_init).repeat(channels, 1))  # (H, N/2)
        self.C_re = nn.Parameter(torch.randn(channels, half) * 0.5 ** 0.5)  # C ~ CN(0, 1)
        self.C_im = nn.Parameter(torch.randn(channels, half) * 0.5 ** 0.5)
        self.D = nn.Parameter(torch.randn(channels))

    def discretize(self):
        """ZOH of the diagonal: Abar = exp(Delta A), Bbar = (exp(Delta A) - 1) / A * B (S4 eq. 4, diagonal). ->
        (Abar, Bbar, C, Delta A) each (H, N/2) complex."""
        a = torch.complex(-torch.exp(self.A_log_re), self.A_im)
        dta = torch.exp(self.log_dt)[:, None] * a
        a_bar = torch.exp(dta)
        return a_bar, (a_bar - 1) / a, torch.complex(self.C_re, self.C_im), dta

    def kernel(self, length: int) -> torch.Tensor:
        """K_{h,j} = 2 Re sum_n C_n Abar_n^j Bbar_n (S4 eq. 5; conjugate pairs give the 2 Re). -> (H, L)."""
        _, b_bar, c, dta = self.discretize()
        return 2 * complex_diagonal_kernel(dta, b_bar, c, length).real

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolutional mode: y = K * u + D u, in float32 under autocast (no bf16 FFT or complex numbers).
        u: (B, L, H) -> (B, L, H)."""
        with torch.autocast(u.device.type, enabled=False):
            u_t = u.transpose(1, 2).to(self.D.dtype)  # (B, H, L)
            y = fft_causal_convolution(self.kernel(u.shape[1]), u_t) + self.D[:, None] * u_t
        return y.transpose(1, 2).to(u.dtype)

    def prefill(self, u: torch.Tensor):
        """The parallel forward and the state after the last token, x_{L-1} = sum_j Abar^(L-1-j) Bbar u_j (the
        recurrence unrolled; what ``step`` would have reached token by token). u: (B, L, H) -> ((B, L, H),
        (B, H, N/2) complex)."""
        _, b_bar, _, dta = self.discretize()
        back = torch.arange(u.shape[1] - 1, -1, -1, dtype=dta.real.dtype, device=u.device)  # L-1-j
        decay = torch.exp(dta[..., None] * back)  # (H, N/2, L)
        state = b_bar * torch.einsum("bhl,hnl->bhn", u.transpose(1, 2).to(decay.dtype), decay)
        return self(u), state

    def init_state(self, batch: int) -> torch.Tensor:
        """x_{-1} = 0. -> (B, H, N/2) complex."""
        dtype = torch.complex64 if self.log_dt.dtype == torch.float32 else torch.complex128
        return torch.zeros(batch, self.channels, self.half, dtype=dtype, device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor):
        """Recurrent mode, one token: x_k = Abar x_{k-1} + Bbar u_k, y_k = 2 Re(C x_k) + D u_k (S4 eq. 3).
        u_t: (B, H), state: (B, H, N/2) -> ((B, H), (B, H, N/2))."""
        a_bar, b_bar, c, _ = self.discretize()
        state = a_bar * state + b_bar * u_t[..., None]
        return 2 * (state * c).sum(-1).real + self.D * u_t, state


class Mamba(Recurrent, nn.Module):
    """Mamba's selective SSM block (Gu & Dao 2023, Algorithm 2 and fig. 3): in_proj to (x, z) of E each, a causal
    depthwise conv of width K and SiLU on x, input-dependent Delta = softplus(dt_proj(x_proj(x)[:R])), B, C (N each),
    A = -exp(A_log) (E, N), the selective scan (A by ZOH, B by Euler), + D x, gated by SiLU(z), out_proj.
    (B, L, H) -> (B, L, H)."""

    def __init__(self, channels: int, state: int = 16, expand: int = 2, conv_width: int = 4, rank: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        inner = expand * channels
        self.inner, self.state_size, self.rank = inner, state, rank or math.ceil(channels / 16)
        self.in_proj = nn.Linear(channels, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, conv_width, groups=inner, padding=conv_width - 1)
        self.x_proj = nn.Linear(inner, self.rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():  # softplus(bias) = dt in [dt_min, dt_max] (Mamba sec. 3.6)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, channels, bias=False)

    def selection(self, x: torch.Tensor):
        """Delta = softplus(dt_proj(x W_R)), B = x W_B, C = x W_C (Algorithm 2 lines 3-5). x: (..., E) ->
        ((..., E), (..., N), (..., N))."""
        dbc = self.x_proj(x)
        dt, b, c = torch.split(dbc, [self.rank, self.state_size, self.state_size], dim=-1)
        return F.softplus(self.dt_proj(dt)), b, c

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Parallel mode (the chunked scan ``selective_scan_chunked``, chunks of about sqrt(L) steps).
        u: (B, L, H) -> (B, L, H)."""
        return self.prefill(u, return_state=False)

    def prefill(self, u: torch.Tensor, return_state: bool = True):
        """The parallel forward and, with ``return_state``, the state ``step`` would have reached after the last
        token: the last K - 1 conv inputs (zeros before the start) and the scan's last state.
        u: (B, L, H) -> ((B, L, H), state as ``init_state``)."""
        x_in, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, E) each
        x = F.silu(self.conv(x_in.transpose(1, 2))[..., :u.shape[1]].transpose(1, 2))  # causal: keep the first L
        delta, b, c = self.selection(x)
        a = -torch.exp(self.A_log)
        chunk = max(1, math.isqrt(u.shape[1]))
        with torch.autocast(u.device.type, enabled=False):  # the scan in float32 under autocast, as Mamba's kernel
            x32, delta, b, c = (t.to(a.dtype) for t in (x, delta, b, c))
            scanned = selective_scan_chunked(x32, delta, a, b, c, chunk, return_state=return_state)
            y, h = scanned if return_state else (scanned, None)
            y = y + self.D * x32
        out = self.out_proj(y.to(x.dtype) * F.silu(z))
        if not return_state:
            return out
        width = self.conv.kernel_size[0] - 1
        window = F.pad(x_in.transpose(1, 2), (width, 0))[..., -width:] if width else x_in.new_zeros(
            u.shape[0], self.inner, 0)
        return out, (window.to(a.dtype), h)

    def init_state(self, batch: int):
        """(conv state: the last K - 1 conv inputs (B, E, K - 1), SSM state (B, E, N)), both zero."""
        weight = self.A_log
        return (torch.zeros(batch, self.inner, self.conv.kernel_size[0] - 1, dtype=weight.dtype, device=weight.device),
                torch.zeros(batch, self.inner, self.state_size, dtype=weight.dtype, device=weight.device))

    def step(self, u_t: torch.Tensor, state):
        """Recurrent mode, one token: the conv over the window, x = exp(Delta A) x + Delta B u (ZOH A, Euler B),
        y = C x + D u. u_t: (B, H), state as ``init_state`` -> ((B, H), state)."""
        conv_state, h = state
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, E)
        window = torch.cat([conv_state, x[..., None]], dim=-1)  # (B, E, K)
        x = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)
        delta, b, c = self.selection(x)
        a = -torch.exp(self.A_log)
        h = torch.exp(delta[..., None] * a) * h + delta[..., None] * b[:, None, :] * x[..., None]
        y = torch.einsum("ben,bn->be", h, c) + self.D * x
        return self.out_proj(y * F.silu(z)), (window[..., 1:], h)


class SSMBlock(Recurrent, nn.Module):
    """Pre-norm residual: u + layer(LayerNorm(u)). kind: 's4d' (with a GELU and a Linear after the SSM, S4D's
    channel mixing) or 'mamba'. (B, L, H) -> (B, L, H)."""

    def __init__(self, channels: int, kind: str = "mamba", state: int = 16, imag_init: str = "lin", expand: int = 2,
                 conv_width: int = 4, rank: int | None = None):
        super().__init__()
        if kind not in ("s4d", "mamba"):
            raise ValueError(f"SSM layer kind {kind!r} is unknown: use 's4d' or 'mamba'.")
        self.kind = kind
        self.norm = nn.LayerNorm(channels)
        self.layer = (S4D(channels, state, imag_init) if kind == "s4d"
                      else Mamba(channels, state, expand, conv_width, rank))
        self.mix = nn.Linear(channels, channels) if kind == "s4d" else nn.Identity()

    def _out(self, y):
        return self.mix(F.gelu(y)) if self.kind == "s4d" else y

    def forward(self, u):
        """(B, L, H) -> (B, L, H)."""
        return u + self._out(self.layer(self.norm(u)))

    def init_state(self, batch: int):
        return self.layer.init_state(batch)

    def prefill(self, u):
        """(B, L, H) -> ((B, L, H), the state after the last token)."""
        y, state = self.layer.prefill(self.norm(u))
        return u + self._out(y), state

    def step(self, u_t, state):
        """(B, H), state -> ((B, H), state)."""
        y, state = self.layer.step(self.norm(u_t), state)
        return u_t + self._out(y), state


class SSMStack(nn.Module):
    """Sequence model over tokens: embedding (V -> H) (+ a class embedding when ``classes``: the digit of a spoken
    digit, added at every position) -> ``layers`` SSMBlocks (``blocks``) -> LayerNorm -> Linear (H -> V).
    x: (B, L) int64, y: (B,) int64 or None -> (B, L, V). ``start``/``advance`` as ``language_model.networks``
    decodes (O(1) per token, whatever the length so far)."""

    architecture = "ssm"
    modality = "text"

    def __init__(self, vocab_size: int, channels: int = 128, layers: int = 2, kind: str = "mamba", state: int = 16,
                 imag_init: str = "lin", expand: int = 2, conv_width: int = 4, rank: int | None = None,
                 context: int = 256, classes: int = 0):
        super().__init__()
        self.vocab_size, self.context, self.num_classes = vocab_size, context, classes
        self.embedding = nn.Embedding(vocab_size, channels)
        self.label = nn.Embedding(classes, channels) if classes else None
        self.blocks = nn.ModuleList(SSMBlock(channels, kind, state, imag_init, expand, conv_width, rank)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, vocab_size)

    def embed(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Token (+ class) embeddings. x: (B, L) or (B,), y: (B,) -> (B, L, H) or (B, H)."""
        h = self.embedding(x)
        if self.label is None:
            return h
        if y is None:
            raise ValueError("this SSM is class-conditional: pass the class y (B,)")
        label = self.label(y)
        return h + (label[:, None] if x.dim() == 2 else label)

    def forward(self, x, y=None):
        h = self.embed(x, y)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def init_state(self, batch: int):
        return [block.init_state(batch) for block in self.blocks]

    def step(self, token, state, y=None):
        """token: (B,) int64, y: (B,) or None -> (logits (B, V), state)."""
        h, new = self.embed(token, y), []
        for block, s in zip(self.blocks, state):
            h, s = block.step(h, s)
            new.append(s)
        return self.head(self.norm(h)), new

    def recurrent(self, x, y=None):
        """Logits of every position, token by token (the generation path). x: (B, L) -> (B, L, V)."""
        state, out = self.init_state(x.shape[0]), []
        for t in range(x.shape[1]):
            logits, state = self.step(x[:, t], state, y)
            out.append(logits)
        return torch.stack(out, dim=1)

    def start(self, prompt, y=None):
        """Read the prompt (B, t0) in parallel (each block's ``prefill``): the logits of the next token and the state
        the recurrence would have reached token by token. -> (logits (B, V), state)."""
        h, state = self.embed(prompt, y), []
        for block in self.blocks:
            h, s = block.prefill(h)
            state.append(s)
        return self.head(self.norm(h))[:, -1], state

    def advance(self, token, state, y=None):
        """The next token's logits after ``token`` (B,): ``step``. -> (logits (B, V), state)."""
        return self.step(token, state, y)


class AudioSSM(SSMStack):
    """The SSM over mu-law waveforms, class-conditional: its tokens are ``levels`` mu-law classes and its context a
    whole clip at ``sample_rate`` (the names ``wavenet.clips`` reads a waveform model by). Weights as SSMStack's."""

    modality = "audio"

    def __init__(self, levels: int, sample_rate: int, classes: int, **options):
        super().__init__(levels, context=sample_rate, classes=classes, **options)

    @property
    def levels(self) -> int:
        return self.vocab_size

    @property
    def sample_rate(self) -> int:
        return self.context
