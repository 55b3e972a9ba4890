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
import sympy as sp
from flax import linen as nn
from scipy import integrate, linalg, special

from theory_jax.derivation import Derivation, full_precision, new_figure

TITLE = "state-space models: discretisation, the convolution kernel, HiPPO-LegS, S4D and the selective scan"
LECTURES = "state-space models"


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


# 3. The derivation -----------------------------------------------------------------------------------------------
def _legendre_coefficients(f, t, n, nodes=200):
    """c_n(t) = int_0^t f(s) sqrt(2n+1) P_n(2s/t - 1) ds / t: f's scaled Legendre coefficients on [0, t]."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    s = (x + 1) * t / 2
    basis = np.stack([np.sqrt(2 * k + 1) * special.eval_legendre(k, x) for k in range(n)])
    return basis @ (w * f(s)) / 2


def _section_scalar_discretisation(d: Derivation) -> None:
    """Zero-order hold and the bilinear transform derived symbolically for a scalar SSM."""
    t, a, b, u, x0, dl = sp.symbols("t a b u x_0 Delta", real=True)
    x = sp.Function("x")
    solution = sp.dsolve(sp.Eq(x(t).diff(t), a * x(t) + b * u), x(t), ics={x(0): x0}).rhs
    d.symbolic("Zero-order hold, scalar case (SymPy's `dsolve` with $u$ constant over the step): "
               "$x(\\Delta) = e^{a\\Delta} x_0 + \\frac{e^{a\\Delta} - 1}{a} b u$", solution.subs(t, dl),
               sp.exp(a * dl) * x0 + (sp.exp(a * dl) - 1) / a * b * u)
    x1 = sp.symbols("x_1")
    trapezoid = sp.solve(sp.Eq(x1 - x0, dl / 2 * ((a * x0 + b * u) + (a * x1 + b * u))), x1)[0]
    d.symbolic("Bilinear, scalar case: the trapezoid rule $x_1 - x_0 = \\frac\\Delta2 (f(x_0) + f(x_1))$ solved for "
               "$x_1$ is $\\frac{1 + a\\Delta/2}{1 - a\\Delta/2} x_0 + \\frac{\\Delta b}{1 - a\\Delta/2} u$",
               trapezoid, (1 + a * dl / 2) / (1 - a * dl / 2) * x0 + dl * b / (1 - a * dl / 2) * u)


def _section_matrix_discretisation(d: Derivation, rng: np.random.Generator) -> None:
    """Matrix zero-order hold is exact for piecewise-constant input; the bilinear transform is third order."""
    n, m = 4, 2
    a_mat = rng.standard_normal((n, n)) - 2 * np.eye(n)
    b_mat = rng.standard_normal((n, m))
    delta = 0.3
    a_bar, b_bar = discretize_zoh(jnp.asarray(a_mat), jnp.asarray(b_mat), delta)
    block = linalg.expm(delta * np.block([[a_mat, b_mat], [np.zeros((m, n + m))]]))
    d.numeric("Matrix zero-order hold against Van Loan's block exponential, $\\exp(\\Delta [[A, B], [0, 0]]) = "
              "[[\\bar A, \\bar B], [0, I]]$ (SciPy's `expm`, no inverse of $A$)",
              jnp.concatenate([a_bar, b_bar], 1), block[:n], rtol=1e-10, atol=1e-12)
    u_steps = rng.standard_normal((5, m))
    state = np.zeros(n)
    for u_k in u_steps:  # the exact solution for piecewise-constant input, by an ODE solver
        state = integrate.solve_ivp(lambda _, z, uu=u_k: a_mat @ z + b_mat @ uu, (0, delta), state, rtol=1e-12,
                                    atol=1e-14, method="DOP853").y[:, -1]
    zoh_state = np.zeros(n)
    for u_k in u_steps:
        zoh_state = np.asarray(a_bar) @ zoh_state + np.asarray(b_bar) @ u_k
    d.numeric("...and it is exact for inputs constant over each step: 5 steps against SciPy's DOP853 at rtol 1e-12 "
              "(its own error sets the tolerance)", zoh_state, state, rtol=1e-9, atol=1e-11)

    def one_step_error(step):
        exact = discretize_zoh(jnp.asarray(a_mat), jnp.asarray(b_mat), step)
        approx = discretize_bilinear(jnp.asarray(a_mat), jnp.asarray(b_mat), step)
        return float(jnp.linalg.norm(exact[0] - approx[0]))

    ratios = np.array([one_step_error(s) / one_step_error(s / 2) for s in (0.005, 0.0025)])
    d.numeric("The bilinear transform approximates $e^{\\Delta A}$ to third order per step: halving $\\Delta$ "
              "divides its error by 8 (at $\\Delta$ = 0.005 and 0.0025; the next order's correction is under 1% "
              "there, which sets the tolerance)", ratios, np.full(2, 8.0), rtol=0.01)


def _section_convolution(d: Derivation, rng: np.random.Generator) -> None:
    """The diagonal SSM as a convolution with its Vandermonde kernel, equal to the recurrence."""
    d.say("The convolution view: a diagonal SSM with $N = 8$ states, discretised by zero-order hold.")
    n_diag, length = 8, 64
    lam = -np.exp(rng.standard_normal(n_diag) * 0.5)  # stable real eigenvalues (S4D-Real)
    step = 0.1
    a_bar_d = np.exp(step * lam)
    b_bar_d = (a_bar_d - 1) / lam  # B = 1
    c_vec = rng.standard_normal(n_diag)
    u_seq = rng.standard_normal(length)
    kernel = diagonal_kernel(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec), length)
    d.numeric("The S4D kernel by the Vandermonde product equals $K_j = C \\bar A^j \\bar B$ by repeated "
              "multiplication", kernel, np.array([c_vec @ (a_bar_d**j * b_bar_d) for j in range(length)]))
    d.numeric("The convolution $y = K * u$ equals the recurrence unrolled from $x_{-1} = 0$ (64 steps): training "
              "in parallel, generating one state update per token",
              causal_convolution(kernel, jnp.asarray(u_seq)),
              diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec), jnp.asarray(u_seq)))
    d.numeric("...and NumPy's full convolution, truncated to the causal part, is the third witness",
              causal_convolution(kernel, jnp.asarray(u_seq)), np.convolve(np.asarray(kernel), u_seq)[:length])
    fig, (ax_k, ax_y) = new_figure(columns=2)
    lags = np.arange(length)
    ax_k.plot(lags, ((c_vec * b_bar_d)[:, None] * a_bar_d[:, None] ** lags).T, lw=0.6, color="0.7")
    ax_k.plot(lags, kernel, "C0", lw=2, label="$K_j = C \\bar A^j \\bar B$")
    ax_k.plot([], [], lw=0.6, color="0.7", label="its 8 modes $C_n \\bar B_n \\bar A_n^j$")
    ax_k.set(xlabel="lag $j$", ylabel="kernel")
    ax_k.legend(fontsize="small")
    ax_y.plot(lags, causal_convolution(kernel, jnp.asarray(u_seq)), "C0", label="convolution $K * u$")
    ax_y.plot(lags, diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d), jnp.asarray(c_vec),
                                        jnp.asarray(u_seq)), "C3.", ms=4, label="recurrence")
    ax_y.set(xlabel="step $k$", ylabel="output $y_k$")
    ax_y.legend(fontsize="small")
    d.figure(fig, "Left: the SSM's convolution kernel, a sum of decaying exponentials; right: convolving the input "
                  "with it gives the recurrence's outputs, point for point.")

    paths = 20_000
    noise = rng.standard_normal((paths, length))
    finals = np.asarray(jax.vmap(lambda v: diagonal_recurrence(jnp.asarray(a_bar_d), jnp.asarray(b_bar_d),
                                                               jnp.asarray(c_vec), v)[-1])(jnp.asarray(noise)))
    d.monte_carlo("Driven by white noise, the output's variance is the kernel's energy $\\sum_j K_j^2$ (the "
                  "convolution view again): the last of 64 outputs over 20 000 noise sequences", finals**2,
                  float(np.sum(np.asarray(kernel) ** 2)))


def _section_hippo_legs(d: Derivation) -> None:
    """HiPPO-LegS: the state is the input's Legendre coefficients, from which its history is rebuilt."""
    d.say("HiPPO-LegS: the state holds the coefficients of the input's history in scaled Legendre polynomials, "
          "$c_n(t) = \\frac1t \\int_0^t f(s) \\sqrt{2n+1} P_n(2s/t - 1)\\,ds$, and Theorem 1 says they obey "
          "$c'(t) = \\frac1t A c(t) + \\frac1t B f(t)$ with the LegS matrices ($A$ here with the minus sign inside).")
    n_legs = 12
    a_legs, b_legs = hippo_legs(n_legs)

    def signal(s):
        return np.sin(3 * s) + 0.5 * np.cos(7 * s) * np.exp(-s / 2)

    t0, h = 1.7, 1e-4
    derivative = (_legendre_coefficients(signal, t0 + h, n_legs) - _legendre_coefficients(signal, t0 - h, n_legs)) / (2 * h)
    c_t = _legendre_coefficients(signal, t0, n_legs)
    d.numeric("The exact coefficients (Gauss-Legendre quadrature) satisfy the LegS ODE at $t = 1.7$ (the derivative "
              "by central differences, step $10^{-4}$: tolerance $10^{-6}$)", derivative,
              (a_legs @ c_t + b_legs * signal(t0)) / t0, rtol=1e-6, atol=1e-7)
    n_steps = 4000
    dt = 2.0 / n_steps
    state = np.zeros(n_legs)
    eye = np.eye(n_legs)
    for k in range(1, n_steps + 1):  # the bilinear transform of the time-varying LegS system, step k
        tk = k * dt
        mid = tk - dt / 2
        left, right = eye - dt / (2 * mid) * a_legs, eye + dt / (2 * mid) * a_legs
        state = np.linalg.solve(left, right @ state + dt / mid * b_legs * signal(mid))
    d.numeric("Run as a recurrence (bilinear steps, 4000 over $[0, 2]$), the state is the input's Legendre "
              "coefficients at $t = 2$: the SSM has memorised its history", state,
              _legendre_coefficients(signal, 2.0, n_legs), rtol=0, atol=1e-5)
    grid = np.linspace(0.0, 2.0, 401)
    basis = np.stack([np.sqrt(2 * k + 1) * special.eval_legendre(k, grid - 1.0) for k in range(n_legs)], 1)
    recon = basis @ state
    d.inequality("...from which the whole history $f(s)$, $s \\in [0, 2]$, is reconstructed to within 0.01 "
                 "(12 coefficients)", np.abs(recon - signal(grid)), np.full(401, 0.01))
    fig, ax = new_figure()
    ax.plot(grid, signal(grid), "k", lw=2.5, alpha=0.4, label="input history $f(s)$")
    ax.plot(grid, recon, "C1", lw=1, label="rebuilt from the 12-dim state at $t = 2$")
    ax.set(xlabel="time $s$", ylabel="$f(s)$")
    ax.legend(fontsize="small")
    d.figure(fig, "The LegS state after reading $f$ up to $t = 2$ holds its whole history: the 12 Legendre "
                  "coefficients redraw it.")


def _section_s4d_inv(d: Derivation) -> None:
    """S4D-Inv's frequencies follow the eigenvalues of LegS's normal part."""
    d.say("S4D's diagonal starts come from LegS: with $P_n = \\sqrt{n + 1/2}$, the normal part $A + P P^T = "
          "-\\frac12 I + S$ ($S$ skew-symmetric) has eigenvalues $-\\frac12 + i \\omega$. S4D-Inv keeps the real part "
          "and the inverse law $\\mathrm{Im}\\,A_n = \\frac N\\pi (\\frac N{2n+1} - 1)$, $n < N/2$, for the "
          "frequencies, $N$ the real state size (one value per conjugate pair); $N = 64$ here.")
    n_inv = 64
    a_normal = hippo_legs(n_inv)[0] + np.outer(np.sqrt(np.arange(n_inv) + 0.5), np.sqrt(np.arange(n_inv) + 0.5))
    eig = np.linalg.eigvals(a_normal)
    d.numeric("The normal part's eigenvalues all have real part $-1/2$ (S4D's $\\mathrm{Re}\\,A$)", eig.real,
              np.full(n_inv, -0.5), atol=1e-12)
    legs_freq = np.sort(eig.imag[eig.imag > 0])[::-1]
    inv_freq = np.asarray(s4d_imag_init(n_inv, "inv", jnp.float64))
    d.inequality("S4D-Inv's 32 frequencies follow LegS's positive ones, largest first, within 30% "
                 "($|\\log(\\omega_{\\mathrm{Inv}} / \\omega_{\\mathrm{LegS}})| \\le 0.3$; with $N/2$ in place of $N$ "
                 "the law is 4 times too small at the top and negative for half the pairs)",
                 np.abs(np.log(inv_freq / legs_freq)), np.full(n_inv // 2, 0.3))
    d.inequality("...and are all positive, one per conjugate pair (the smallest is "
                 f"{inv_freq[-1]:.3f}, LegS's {legs_freq[-1]:.3f})", -inv_freq, np.zeros(n_inv // 2))
    fig, ax = new_figure()
    pairs = np.arange(n_inv // 2)
    ax.semilogy(pairs, legs_freq, "o", ms=4, label="LegS normal part, $\\mathrm{Im}\\,\\lambda > 0$")
    ax.semilogy(pairs, inv_freq, "-", label="S4D-Inv $\\frac{N}{\\pi}(\\frac{N}{2n+1} - 1)$")
    ax.set(xlabel="pair $n$ (largest frequency first)", ylabel="frequency $\\mathrm{Im}\\,A_n$")
    ax.legend(fontsize="small")
    d.figure(fig, "S4D-Inv's closed-form frequencies trace the eigenvalues of LegS's normal part across nearly "
                  "four decades.")


def _section_selective_scan(d: Derivation, rng: np.random.Generator) -> None:
    """The selective scan: parallel equals sequential, and Euler's B against the zero-order hold's."""
    d.say("The selective SSM (Mamba): $\\Delta_t$, $B_t$, $C_t$ depend on the input; $A$ by zero-order hold, $B$ by "
          "Euler, $\\bar B_t = \\Delta_t B_t$ (the convention of Algorithm 2).")
    steps, channels, n_sel = 32, 3, 4
    u_sel = rng.standard_normal((steps, channels))
    delta_sel = np.log1p(np.exp(rng.standard_normal((steps, channels))))  # softplus: positive steps
    a_sel = -np.exp(rng.standard_normal((channels, n_sel)) * 0.5)
    b_sel, c_sel = rng.standard_normal((steps, n_sel)), rng.standard_normal((steps, n_sel))
    args = tuple(jnp.asarray(v) for v in (u_sel, delta_sel, a_sel, b_sel, c_sel))
    parallel, sequential = jax.jit(selective_scan), jax.jit(selective_scan_sequential)
    d.numeric("The parallel associative scan equals the sequential loop (32 steps, 3 channels, 4 states)",
              parallel(*args), sequential(*args))
    cot = jnp.asarray(rng.standard_normal((steps, channels)))
    grads = jax.jit(jax.grad(lambda *v: jnp.sum(parallel(*v) * cot), argnums=(0, 1, 2, 3, 4)))(*args)
    grads_seq = jax.jit(jax.grad(lambda *v: jnp.sum(sequential(*v) * cot), argnums=(0, 1, 2, 3, 4)))(*args)
    d.gradient("...and so do their gradients in $u$, $\\Delta$, $A$, $B$ and $C$",
               jnp.concatenate([g.ravel() for g in grads]), jnp.concatenate([g.ravel() for g in grads_seq]))

    def b_gap(step_size):
        zoh_b = (np.exp(step_size * a_sel) - 1) / a_sel
        return np.max(np.abs(zoh_b - step_size))

    d.numeric("Euler's $\\Delta B$ and the zero-order hold's $A^{-1}(e^{\\Delta A} - 1) B$ differ at second order: "
              "halving $\\Delta$ divides the gap by 4 (from $\\Delta$ = 0.02 and 0.01; the next order's correction, "
              "under 2%, sets the tolerance), so the convention must be stated and both backends must follow it",
              np.array([b_gap(0.02) / b_gap(0.01), b_gap(0.01) / b_gap(0.005)]), np.full(2, 4.0), rtol=0.02)
    d.inequality("...and at the steps a trained Mamba uses ($\\Delta \\approx 1$) the two differ by more than 0.1",
                 np.array(0.1), np.array(b_gap(1.0)))


def derive(echo=None) -> Derivation:
    full_precision()
    d = Derivation("ssm", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)

    _section_scalar_discretisation(d)
    _section_matrix_discretisation(d, rng)
    _section_convolution(d, rng)
    _section_hippo_legs(d)
    _section_s4d_inv(d)
    _section_selective_scan(d, rng)
    return d
