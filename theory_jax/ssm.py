"""State-space models: discretisation, the convolution kernel, HiPPO-LegS, the diagonal (S4D) kernel and the
selective scan.

Lectures: state-space models (Gu, Goel & Re 2022, "Efficiently modeling long sequences with structured state
spaces" (S4), eq. 1-5; Gu et al. 2020, "HiPPO: recurrent memory with optimal polynomial projections", Theorem 1 and
the LegS matrices; Gu et al. 2022, "On the parameterization and initialization of diagonal state space models"
(S4D), the Vandermonde kernel; Gu & Dao 2023, "Mamba", Algorithm 2 and sec. 3.5; Blelloch 1990 for the scan).

A continuous SSM x'(t) = A x(t) + B u(t), y = C x becomes a recurrence x_k = Abar x_{k-1} + Bbar u_k, y_k = C x_k:

    zero-order hold (u constant over a step):  Abar = exp(Delta A),  Bbar = A^-1 (exp(Delta A) - I) B
    bilinear (trapezoid rule):                 Abar = (I - Delta/2 A)^-1 (I + Delta/2 A),  Bbar = (I - Delta/2 A)^-1 Delta B

Unrolled from x_{-1} = 0 the recurrence is a causal convolution y = K * u with kernel K_j = C Abar^j Bbar (S4 eq. 4-5);
for diagonal A the kernel is a Vandermonde product. The selective SSM (Mamba) makes Delta, B and C functions of the
input; the convention is A by zero-order hold and B by Euler (Bbar_t = Delta_t B_t), and since each step is the
affine map x -> a_t x + b_t, whose composition is associative, the recurrence runs as a parallel scan.
Section 2 holds the layers' flax twins (S4D, Mamba's selective block, the pre-norm block, the character-LM stack),
each with a parallel ``__call__``, a recurrent ``step`` and a parallel ``prefill`` of a prompt that hands ``step`` its
state (the stack's ``start``), under the attribute names of
``practice_torch/ssm/layers.py`` so the weight converter maps them one to one.
Twin: ``practice_torch/ssm`` (same names, same arguments); cases: ``shared_specs/ssm.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


# 1. The pure functions (twins in practice_torch.ssm) ------------------------------------------------------------
def discretize_zoh(a, b, delta):
    """Zero-order hold: Abar = exp(Delta A), Bbar = A^-1 (exp(Delta A) - I) B. a: (N, N), b: (N, M), delta: () ->
    ((N, N), (N, M))."""
    a_bar = jax.scipy.linalg.expm(delta * a)
    return a_bar, jnp.linalg.solve(a, (a_bar - jnp.eye(a.shape[0], dtype=a.dtype)) @ b)


def discretize_bilinear(a, b, delta):
    """The bilinear transform: Abar = (I - D/2 A)^-1 (I + D/2 A), Bbar = (I - D/2 A)^-1 D B (S4 eq. 3).
    a: (N, N), b: (N, M), delta: () -> ((N, N), (N, M))."""
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    left = eye - delta / 2 * a
    return jnp.linalg.solve(left, eye + delta / 2 * a), jnp.linalg.solve(left, delta * b)


def diagonal_kernel(a_bar, b_bar, c, length: int):
    """K_j = sum_n C_n Abar_n^j Bbar_n, j = 0..L-1: a diagonal SSM's convolution kernel, as the Vandermonde product
    (C * Bbar) @ V, V_nj = Abar_n^j (S4D). a_bar, b_bar: (N,) the discretised diagonal A and B; c: (N,) C;
    length: L, an int -> (L,)."""
    vandermonde = a_bar[:, None] ** jnp.arange(length)[None, :]
    return (c * b_bar) @ vandermonde


def causal_convolution(kernel, u):
    """y_k = sum_{j <= k} K_j u_{k-j}. kernel: (L,), u: (L,) -> (L,)."""
    length = u.shape[0]
    index = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]  # k - i
    return jnp.sum(jnp.where(index >= 0, kernel[jnp.clip(index, 0, length - 1)], 0.0) * u[None, :], axis=1)


def diagonal_recurrence(a_bar, b_bar, c, u):
    """x_k = Abar x_{k-1} + Bbar u_k, y_k = C . x_k from x_{-1} = 0, one step per token (generation).
    a_bar, b_bar, c: (N,), u: (L,) -> (L,)."""
    def step(x, u_k):
        x = a_bar * x + b_bar * u_k
        return x, jnp.dot(c, x)
    _, y = jax.lax.scan(step, jnp.zeros_like(a_bar), u)
    return y


def selective_scan(u, delta, a, b, c, return_state: bool = False):
    """The selective SSM (Mamba, Algorithm 2) by a parallel associative scan: Abar_t = exp(Delta_t A) (zero-order
    hold), Bbar_t = Delta_t B_t (Euler), x_t = Abar_t x_{t-1} + Bbar_t u_t, y_t = C_t . x_t per channel.
    u, delta: (L, D), a: (D, N), b, c: (L, N) -> (L, D); with ``return_state`` also the last state x_{L-1} (D, N)."""
    a_bar = jnp.exp(delta[:, :, None] * a[None])  # (L, D, N)
    bu = delta[:, :, None] * b[:, None, :] * u[:, :, None]  # (L, D, N)

    def combine(first, second):  # (a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2
        return second[0] * first[0], second[0] * first[1] + second[1]
    _, states = jax.lax.associative_scan(combine, (a_bar, bu))
    y = jnp.einsum("ldn,ln->ld", states, c)
    return (y, states[-1]) if return_state else y


def selective_scan_sequential(u, delta, a, b, c):
    """Mamba's selective SSM (Gu & Dao 2023, Algorithm 2), one step t at a time from the state x_{-1} = 0, each
    channel d on its own: A discretised by zero-order hold, B by Euler, the output read after the update,

        x_t[d, n] = exp(delta[t, d] a[d, n]) x_{t-1}[d, n] + delta[t, d] b[t, n] u[t, d]
        y[t, d]   = sum_n x_t[d, n] c[t, n]

    u: (L, D) the input; delta: (L, D) its step sizes (positive); a: (D, N) each channel's diagonal A; b, c: (L, N)
    B_t and C_t, shared by the channels; the state x_t: (D, N). -> y: (L, D). (The reference the parallel scan
    is checked against.)"""
    def step(x, inputs):
        u_t, d_t, b_t, c_t = inputs
        x = jnp.exp(d_t[:, None] * a) * x + (d_t[:, None] * b_t[None, :]) * u_t[:, None]
        return x, x @ c_t
    _, y = jax.lax.scan(step, jnp.zeros(a.shape, u.dtype), (u, delta, b, c))
    return y


def hippo_legs(n: int):
    """HiPPO-LegS: A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) on the diagonal, 0 above; B_n = sqrt(2n+1)
    (Gu et al. 2020, sec. 3 and Appendix D.3). -> ((N, N), (N,))."""
    q = np.sqrt(2 * np.arange(n) + 1.0)
    a = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)
    return a, q


# 2. The layers (twins of practice_torch.ssm.layers, same attribute names for the weight converter) ---------------
def s4d_imag_init(state: int, init: str, dtype=jnp.float32):
    """Im(A_n), n < N/2, of S4D-Lin (pi n) or S4D-Inv (N/pi (N/(2n+1) - 1)) with N = ``state``, the real state size
    (S4D sec. 4.1, eq. 9-10, and the authors' ``dplr(init='inv')``): one value per conjugate pair. -> (N/2,)."""
    idx = jnp.arange(state // 2, dtype=dtype)
    if init == "lin":
        return jnp.pi * idx
    if init == "inv":
        return state / jnp.pi * (state / (2 * idx + 1) - 1)
    raise ValueError(f"S4D init {init!r} is unknown: use 'lin' or 'inv'.")


def complex_diagonal_kernel(dta, b_bar, c, length: int):
    """K_{h,j} = sum_n C_n Abar_n^j Bbar_n with Abar^j = exp(j Delta A) (S4 eq. 5, Vandermonde). dta, b_bar, c:
    (H, N) complex -> (H, L) complex."""
    powers = jnp.arange(length, dtype=dta.real.dtype)
    return jnp.einsum("hn,hnl->hl", c * b_bar, jnp.exp(dta[..., None] * powers))


def fft_causal_convolution(kernel, u):
    """``causal_convolution`` along the last axis, FFT zero-padded to 2L. kernel, u: (..., L) -> (..., L)."""
    length = u.shape[-1]
    n = 2 * length
    return jnp.fft.irfft(jnp.fft.rfft(kernel, n=n) * jnp.fft.rfft(u, n=n), n=n)[..., :length]


def _log_uniform(lo: float, hi: float):
    return lambda key, shape: jax.random.uniform(key, shape, minval=np.log(lo), maxval=np.log(hi))


def token_by_token(step, state, xs):
    """Run ``step(x_t, state) -> (out_t, state)`` over the tokens xs (B, L, ...) from ``state``: the first step in
    Python (it fixes the state's dtype, float64 when the weights are), the others as one ``jax.lax.scan`` (one traced
    and compiled step, not L). -> outs (B, L, ...)."""
    first, state = step(xs[:, 0], state)
    _, rest = jax.lax.scan(lambda s, x_t: step(x_t, s)[::-1], state, jnp.swapaxes(xs[:, 1:], 0, 1))
    return jnp.concatenate([first[:, None], jnp.swapaxes(rest, 0, 1)], axis=1)


class Recurrent:
    """``recurrent(u)``: the layer token by token through ``step`` from ``init_state``. u: (B, L, H) -> (B, L, H)."""

    def recurrent(self, u):
        return token_by_token(self.step, self.init_state(u.shape[0]), u)


class S4D(Recurrent, nn.Module):
    """Diagonal complex SSM per channel (S4D): N/2 complex conjugate-pair states, y = 2 Re(C x) + D u, B = 1,
    A = -exp(A_log_re) + i A_im, ZOH with Delta = exp(log_dt); complex parameters as real and imaginary parts.
    (B, L, H) -> (B, L, H)."""

    channels: int
    state: int = 64
    imag_init: str = "lin"
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def setup(self):
        if self.state % 2:
            raise ValueError(f"S4D state size {self.state} is odd: use an even N (N/2 complex conjugate pairs).")
        h, half = self.channels, self.state // 2
        self.log_dt = self.param("log_dt", _log_uniform(self.dt_min, self.dt_max), (h,))
        self.A_log_re = self.param("A_log_re", lambda k, s: jnp.full(s, np.log(0.5)), (h, half))
        self.A_im = self.param("A_im", lambda k, s: jnp.tile(s4d_imag_init(self.state, self.imag_init), (h, 1)),
                               (h, half))
        self.C_re = self.param("C_re", lambda k, s: jax.random.normal(k, s) * 0.5 ** 0.5, (h, half))
        self.C_im = self.param("C_im", lambda k, s: jax.random.normal(k, s) * 0.5 ** 0.5, (h, half))
        self.D = self.param("D", jax.random.normal, (h,))

    def discretize(self):
        """ZOH of the diagonal: Abar = exp(Delta A), Bbar = (exp(Delta A) - 1) / A (S4 eq. 4). -> (Abar, Bbar, C,
        Delta A) each (H, N/2) complex."""
        a = -jnp.exp(self.A_log_re) + 1j * self.A_im
        dta = jnp.exp(self.log_dt)[:, None] * a
        a_bar = jnp.exp(dta)
        return a_bar, (a_bar - 1) / a, self.C_re + 1j * self.C_im, dta

    def kernel(self, length: int):
        """K_{h,j} = 2 Re sum_n C_n Abar_n^j Bbar_n (S4 eq. 5; conjugate pairs give the 2 Re). -> (H, L)."""
        _, b_bar, c, dta = self.discretize()
        return 2 * complex_diagonal_kernel(dta, b_bar, c, length).real

    def __call__(self, u):
        """Convolutional mode: y = K * u + D u. u: (B, L, H) -> (B, L, H)."""
        u_t = jnp.swapaxes(u, 1, 2)
        return jnp.swapaxes(fft_causal_convolution(self.kernel(u.shape[1]), u_t) + self.D[:, None] * u_t, 1, 2)

    def prefill(self, u):
        """The parallel forward and the state after the last token, x_{L-1} = sum_j Abar^(L-1-j) Bbar u_j (the
        recurrence unrolled; what ``step`` would have reached token by token). u: (B, L, H) -> ((B, L, H),
        (B, H, N/2) complex)."""
        _, b_bar, _, dta = self.discretize()
        back = jnp.arange(u.shape[1] - 1, -1, -1, dtype=dta.real.dtype)  # L-1-j
        decay = jnp.exp(dta[..., None] * back)  # (H, N/2, L)
        state = b_bar * jnp.einsum("bhl,hnl->bhn", jnp.swapaxes(u, 1, 2).astype(decay.dtype), decay)
        return self(u), state

    def init_state(self, batch: int):
        """x_{-1} = 0. -> (B, H, N/2) complex."""
        return jnp.zeros((batch, self.channels, self.state // 2), jnp.complex64)

    def step(self, u_t, state):
        """x_k = Abar x_{k-1} + Bbar u_k, y_k = 2 Re(C x_k) + D u_k (S4 eq. 3). u_t: (B, H) -> ((B, H), state)."""
        a_bar, b_bar, c, _ = self.discretize()
        state = a_bar * state + b_bar * u_t[..., None]
        return 2 * (state * c).sum(-1).real + self.D * u_t, state


class Mamba(Recurrent, nn.Module):
    """Mamba's selective SSM block (Gu & Dao 2023, Algorithm 2): in_proj to (x, z), causal depthwise conv + SiLU,
    Delta = softplus(dt_proj(x_proj(x)[:R])), B, C, A = -exp(A_log), the scan (A by ZOH, B by Euler), + D x, gated
    by SiLU(z), out_proj. (B, L, H) -> (B, L, H)."""

    channels: int
    state: int = 16
    expand: int = 2
    conv_width: int = 4
    rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def setup(self):
        inner, n = self.expand * self.channels, self.state
        self.inner, self.r = inner, self.rank or -(-self.channels // 16)
        self.in_proj = nn.Dense(2 * inner, use_bias=False)
        self.conv = nn.Conv(inner, (self.conv_width,), feature_group_count=inner, padding=[(self.conv_width - 1, 0)])
        self.x_proj = nn.Dense(self.r + 2 * n, use_bias=False)

        def dt_bias(key, shape, dtype=jnp.float32):  # softplus(bias) = dt in [dt_min, dt_max] (Mamba sec. 3.6)
            dt = jnp.exp(_log_uniform(self.dt_min, self.dt_max)(key, shape))
            return dt + jnp.log(-jnp.expm1(-dt))
        self.dt_proj = nn.Dense(inner, bias_init=dt_bias)
        self.A_log = self.param("A_log", lambda k, s: jnp.tile(jnp.log(jnp.arange(1, n + 1.0)), (inner, 1)), (inner, n))
        self.D = self.param("D", nn.initializers.ones, (inner,))
        self.out_proj = nn.Dense(self.channels, use_bias=False)

    def selection(self, x):
        """Delta = softplus(dt_proj(x W_R)), B = x W_B, C = x W_C (Algorithm 2 lines 3-5). (..., E) -> ((..., E),
        (..., N), (..., N))."""
        dt, b, c = jnp.split(self.x_proj(x), [self.r, self.r + self.state], axis=-1)
        return jax.nn.softplus(self.dt_proj(dt)), b, c

    def __call__(self, u):
        """Parallel mode (``selective_scan``, lax.associative_scan, per batch row). u: (B, L, H) -> (B, L, H)."""
        x, z = jnp.split(self.in_proj(u), 2, axis=-1)
        x = jax.nn.silu(self.conv(x))
        delta, b, c = self.selection(x)
        y = jax.vmap(selective_scan, in_axes=(0, 0, None, 0, 0))(x, delta, -jnp.exp(self.A_log), b, c) + self.D * x
        return self.out_proj(y * jax.nn.silu(z))

    def prefill(self, u):
        """The parallel forward and the state ``step`` would have reached after the last token: the last K - 1 conv
        inputs (zeros before the start) and the scan's last state. u: (B, L, H) -> ((B, L, H), state as
        ``init_state``)."""
        x_in, z = jnp.split(self.in_proj(u), 2, axis=-1)
        x = jax.nn.silu(self.conv(x_in))
        delta, b, c = self.selection(x)
        scan = jax.vmap(lambda *args: selective_scan(*args, return_state=True), in_axes=(0, 0, None, 0, 0))
        y, h = scan(x, delta, -jnp.exp(self.A_log), b, c)
        window = jnp.pad(x_in, ((0, 0), (self.conv_width - 1, 0), (0, 0)))[:, u.shape[1]:]  # (B, K - 1, E)
        return self.out_proj((y + self.D * x) * jax.nn.silu(z)), (window, h)

    def init_state(self, batch: int):
        """(the last K - 1 conv inputs (B, K - 1, E), the SSM state (B, E, N)), both zero (flax's NLC layout)."""
        return (jnp.zeros((batch, self.conv_width - 1, self.expand * self.channels), jnp.float32),
                jnp.zeros((batch, self.expand * self.channels, self.state), jnp.float32))

    def step(self, u_t, state):
        """One token: the conv over the window of K inputs (its last output), x = exp(Delta A) x + Delta B u,
        y = C x + D u. u_t: (B, H) -> ((B, H), state)."""
        conv_state, h = state
        x, z = jnp.split(self.in_proj(u_t), 2, axis=-1)
        window = jnp.concatenate([conv_state, x[:, None]], axis=1)  # (B, K, E)
        x = jax.nn.silu(self.conv(window)[:, -1])
        delta, b, c = self.selection(x)
        h = jnp.exp(delta[..., None] * -jnp.exp(self.A_log)) * h + delta[..., None] * b[:, None, :] * x[..., None]
        y = jnp.einsum("ben,bn->be", h, c) + self.D * x
        return self.out_proj(y * jax.nn.silu(z)), (window[:, 1:], h)


class SSMBlock(Recurrent, nn.Module):
    """Pre-norm residual: u + layer(LayerNorm(u)); 's4d' adds a GELU and a Linear ``mix``. (B, L, H) -> (B, L, H)."""

    channels: int
    kind: str = "mamba"
    state: int = 16
    imag_init: str = "lin"
    expand: int = 2
    conv_width: int = 4
    rank: int | None = None

    def setup(self):
        if self.kind not in ("s4d", "mamba"):
            raise ValueError(f"SSM layer kind {self.kind!r} is unknown: use 's4d' or 'mamba'.")
        self.norm = nn.LayerNorm(epsilon=1e-5)
        self.layer = (S4D(self.channels, self.state, self.imag_init) if self.kind == "s4d"
                      else Mamba(self.channels, self.state, self.expand, self.conv_width, self.rank))
        if self.kind == "s4d":
            self.mix = nn.Dense(self.channels)

    def _out(self, y):
        return self.mix(jax.nn.gelu(y, approximate=False)) if self.kind == "s4d" else y

    def __call__(self, u):
        return u + self._out(self.layer(self.norm(u)))

    def init_state(self, batch: int):
        return self.layer.init_state(batch)

    def prefill(self, u):
        """(B, L, H) -> ((B, L, H), the state after the last token)."""
        y, state = self.layer.prefill(self.norm(u))
        return u + self._out(y), state

    def step(self, u_t, state):
        y, state = self.layer.step(self.norm(u_t), state)
        return u_t + self._out(y), state


class SSMStack(nn.Module):
    """Sequence model over tokens: Embed (V -> H) (+ a class embedding ``label`` when ``classes``) -> ``layers``
    SSMBlocks -> LayerNorm -> Dense (H -> V). x: (B, L), y: (B,) or None -> (B, L, V)."""

    vocab_size: int
    channels: int = 128
    layers: int = 2
    kind: str = "mamba"
    state: int = 16
    imag_init: str = "lin"
    expand: int = 2
    conv_width: int = 4
    rank: int | None = None
    context: int = 256
    classes: int = 0

    def setup(self):
        self.embedding = nn.Embed(self.vocab_size, self.channels)
        if self.classes:
            self.label = nn.Embed(self.classes, self.channels)
        self.blocks = [SSMBlock(self.channels, self.kind, self.state, self.imag_init, self.expand, self.conv_width,
                                self.rank) for _ in range(self.layers)]
        self.norm = nn.LayerNorm(epsilon=1e-5)
        self.head = nn.Dense(self.vocab_size)

    def embed(self, x, y):
        """Token (+ class) embeddings. x: (B, L) or (B,), y: (B,) -> (B, L, H) or (B, H)."""
        h = self.embedding(x)
        if not self.classes:
            return h
        label = self.label(y)
        return h + (label[:, None] if x.ndim == 2 else label)

    def __call__(self, x, y=None):
        h = self.embed(x, y)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def init_state(self, batch: int):
        return [block.init_state(batch) for block in self.blocks]

    def step(self, token, state, y=None):
        """token: (B,), y: (B,) or None -> (logits (B, V), state)."""
        h, new = self.embed(token, y), []
        for block, s in zip(self.blocks, state):
            h, s = block.step(h, s)
            new.append(s)
        return self.head(self.norm(h)), new

    def recurrent(self, x, y=None):
        """Logits of every position, token by token. x: (B, L) -> (B, L, V)."""
        return token_by_token(lambda token, state: self.step(token, state, y), self.init_state(x.shape[0]), x)

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
