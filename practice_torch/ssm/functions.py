"""SSM discretisation, kernels and scans (S4 eq. 3-5; S4D; HiPPO-LegS; Mamba Algorithm 2). Twins of
``theory_jax/ssm.py``, same names and arguments.

The selective scan runs as a Hillis-Steele parallel prefix scan over the affine maps x -> a_t x + b_t (log2 L rounds
of elementwise products over the whole sequence); ``selective_scan_sequential`` is the loop it must equal.
``selective_scan_chunked`` is the batched training path of the Mamba layer: a chunked scan (sequential inside chunks
of T steps, all chunks at once; then the carries from chunk to chunk; then one correction), about 2 L D N products
where the log-depth scan makes 6 log2(L) of them.
"""

from __future__ import annotations

import math

import torch


def discretize_zoh(a, b, delta):
    """Abar = exp(Delta A), Bbar = A^-1 (exp(Delta A) - I) B. a: (N, N), b: (N, M), delta: () -> ((N, N), (N, M))."""
    a_bar = torch.linalg.matrix_exp(delta * a)
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    return a_bar, torch.linalg.solve(a, (a_bar - eye) @ b)


def discretize_bilinear(a, b, delta):
    """Abar = (I - D/2 A)^-1 (I + D/2 A), Bbar = (I - D/2 A)^-1 D B. a: (N, N), b: (N, M) -> ((N, N), (N, M))."""
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    left = eye - delta / 2 * a
    return torch.linalg.solve(left, eye + delta / 2 * a), torch.linalg.solve(left, delta * b)


def diagonal_kernel(a_bar, b_bar, c, length: int):
    """K_j = sum_n C_n Abar_n^j Bbar_n, j = 0..L-1: a diagonal SSM's convolution kernel, as the Vandermonde product
    (C * Bbar) @ V, V_nj = Abar_n^j (S4D). a_bar, b_bar: (N,) the discretised diagonal A and B; c: (N,) C;
    length: L, an int -> (L,)."""
    powers = torch.arange(length, dtype=a_bar.dtype, device=a_bar.device)
    return (c * b_bar) @ (a_bar[:, None] ** powers[None, :])


def causal_convolution(kernel, u):
    """y_k = sum_{j <= k} K_j u_{k-j}, by FFT (zero-padded to 2L: no wrap-around). kernel, u: (L,) -> (L,)."""
    length = u.shape[0]
    n = 2 * length
    return torch.fft.irfft(torch.fft.rfft(kernel, n=n) * torch.fft.rfft(u, n=n), n=n)[:length]


def diagonal_recurrence(a_bar, b_bar, c, u):
    """x_k = Abar x_{k-1} + Bbar u_k, y_k = C . x_k from x_{-1} = 0, one step per token. (N,) x 3, (L,) -> (L,)."""
    x, out = torch.zeros_like(a_bar), []
    for u_k in u:
        x = a_bar * x + b_bar * u_k
        out.append(torch.dot(c, x))
    return torch.stack(out)


def selective_scan(u, delta, a, b, c):
    """Mamba's selective SSM (A by zero-order hold, B by Euler) by a parallel prefix scan.
    u, delta: (L, D), a: (D, N), b, c: (L, N) -> (L, D)."""
    a_bar = torch.exp(delta[:, :, None] * a[None])  # (L, D, N)
    states = delta[:, :, None] * b[:, None, :] * u[:, :, None]  # (L, D, N): Bbar_t u_t
    length, shift = u.shape[0], 1
    for _ in range(math.ceil(math.log2(max(length, 1)))):  # after round r, each t holds the composition of 2^r maps
        prev_a = torch.cat([torch.ones_like(a_bar[:shift]), a_bar[:-shift]])
        prev_b = torch.cat([torch.zeros_like(states[:shift]), states[:-shift]])
        a_bar, states = a_bar * prev_a, a_bar * prev_b + states
        shift *= 2
    return torch.einsum("ldn,ln->ld", states, c)


def selective_scan_chunked(u, delta, a, b, c, chunk: int = 8, return_state: bool = False):
    """``selective_scan`` for a batch, as a chunked scan. Cut the L steps into chunks of T; inside every chunk at once
    run x_t = Abar_t x_{t-1} + Bbar_t u_t from zero and the products P_t = Abar_t ... Abar_1 of the chunk (T steps);
    carry the chunks' end states, s_k = P_end(k) s_{k-1} + x_end(k) (L / T steps); then x_t += P_t s_{k-1}, the
    earlier chunks' state decayed through this one's (the affine maps compose). u, delta: (B, L, D), a: (D, N),
    b, c: (B, L, N) -> (B, L, D); with ``return_state`` also the state after the last step, x_{L-1}: (B, D, N)."""
    batch, length, d = u.shape
    n = a.shape[1]
    a_bar = torch.exp(delta[..., None] * a)  # (B, L, D, N): A by zero-order hold
    bu = (delta * u)[..., None] * b[:, :, None, :]  # (B, L, D, N): B by Euler, times u
    pad = (-length) % chunk
    if pad:  # identity maps after the end
        a_bar = torch.cat([a_bar, a_bar.new_ones(batch, pad, d, n)], 1)
        bu = torch.cat([bu, bu.new_zeros(batch, pad, d, n)], 1)
    chunks = (length + pad) // chunk
    a_bar, bu = a_bar.view(batch, chunks, chunk, d, n), bu.view(batch, chunks, chunk, d, n)
    steps_a, steps_b = a_bar.unbind(2), bu.unbind(2)  # unbind, not indexing: its backward is one stack
    states, products = [steps_b[0]], [steps_a[0]]
    for j in range(1, chunk):  # inside every chunk at once, from a zero state
        states.append(steps_a[j] * states[-1] + steps_b[j])
        products.append(steps_a[j] * products[-1])
    x, p = torch.stack(states, 2), torch.stack(products, 2)  # (B, chunks, T, D, N)
    carry, carries = bu.new_zeros(batch, d, n), []
    for p_end, x_end in zip(products[-1].unbind(1), states[-1].unbind(1), strict=True):  # the state entering chunk k
        carries.append(carry)
        carry = p_end * carry + x_end
    x = x + p * torch.stack(carries, 1)[:, :, None]
    y = torch.einsum("bldn,bln->bld", x.reshape(batch, chunks * chunk, d, n)[:, :length], c)
    return (y, carry) if return_state else y  # the padding's identity maps leave the last carry x_{L-1}


def selective_scan_sequential(u, delta, a, b, c):
    """Mamba's selective SSM (Gu & Dao 2023, Algorithm 2), one step t at a time from the state x_{-1} = 0, each
    channel d on its own: A discretised by zero-order hold, B by Euler, the output read after the update,

        x_t[d, n] = exp(delta[t, d] a[d, n]) x_{t-1}[d, n] + delta[t, d] b[t, n] u[t, d]
        y[t, d]   = sum_n x_t[d, n] c[t, n]

    u: (L, D) the input; delta: (L, D) its step sizes (positive); a: (D, N) each channel's diagonal A; b, c: (L, N)
    B_t and C_t, shared by the channels; the state x_t: (D, N). -> y: (L, D). (The reference the parallel scan
    is checked against.)"""
    x, out = torch.zeros(a.shape, dtype=u.dtype, device=u.device), []
    for t in range(u.shape[0]):
        x = torch.exp(delta[t][:, None] * a) * x + (delta[t][:, None] * b[t][None, :]) * u[t][:, None]
        out.append(x @ c[t])
    return torch.stack(out)


def hippo_legs(n: int):
    """HiPPO-LegS matrices with the minus sign inside: A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0
    above; B_n = sqrt(2n+1). -> ((N, N), (N,)), float64."""
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    return -torch.tril(torch.outer(q, q), -1) - torch.diag(torch.arange(n, dtype=torch.float64) + 1), q
