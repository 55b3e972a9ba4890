"""The VQ-VAE's math in PyTorch: twins of ``theory_jax/vq_vae.py`` (same names and arguments).

Vectors are rows: an encoder output ``z: (B, D, H, W)`` is quantised as ``(B H W, D)`` rows (the network
reshapes). ``stop_gradient`` is ``.detach()``. Randomness is an argument: ``restart_dead_codes`` takes the rows
that replace the dead codes as ``choice``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


# 1. Nearest-codebook assignment (van den Oord et al. 2017, eq. 1-2) ------------------------------
def squared_distances(z, codebook):
    """||z_n - e_k||^2 for every row and code, expanded as ||z||^2 - 2 z.e + ||e||^2.
    z: (N, D), codebook: (K, D) -> (N, K)."""
    return (z**2).sum(-1, keepdim=True) - 2.0 * z @ codebook.T + (codebook**2).sum(-1)


def nearest_code(z, codebook):
    """k_n = argmin_k ||z_n - e_k||^2 (eq. 1; ties go to the lowest index). z: (N, D), codebook: (K, D) -> (N,) int64."""
    return squared_distances(z, codebook).argmin(-1)


def quantise(z, codebook):
    """z_q = e_{k(z)} (eq. 2) and the indices. z: (N, D), codebook: (K, D) -> (z_q (N, D), indices (N,))."""
    indices = nearest_code(z, codebook)
    return codebook[indices], indices


# 2. The straight-through estimator -------------------------------------------------------------------
def straight_through(z, z_q):
    """z + sg(z_q - z): equals z_q forward, and its backward is the identity on z (the decoder's gradient is
    copied to the encoder output), with no gradient to the codebook. z, z_q: (N, D) -> (N, D)."""
    return z + (z_q - z).detach()


# 3. The codebook and commitment losses (eq. 3) --------------------------------------------------------
def codebook_loss(z, z_q):
    """||sg(z) - z_q||^2 per row: moves the codebook towards the encoder outputs, not the encoder.
    z, z_q: (N, D) -> (N,)."""
    return ((z.detach() - z_q) ** 2).sum(-1)


def commitment_loss(z, z_q):
    """||z - sg(z_q)||^2 per row (weighted by beta in the loss): moves the encoder towards its codes, not the
    codebook. z, z_q: (N, D) -> (N,)."""
    return ((z - z_q.detach()) ** 2).sum(-1)


def vector_quantise(z, codebook):
    """The quantisation layer of eq. 3 in one call: (straight_through(z, z_q), codebook_loss(z, z_q),
    commitment_loss(z, z_q)) with z_q = quantise(z, codebook). Its gradients are the VQ-VAE's: the decoder's
    gradient reaches z unchanged, the codebook loss moves only the codebook, the commitment loss only z.
    z: (N, D), codebook: (K, D) -> ((N, D), (N,), (N,))."""
    z_q, _ = quantise(z, codebook)
    return straight_through(z, z_q), codebook_loss(z, z_q), commitment_loss(z, z_q)


# 4. The EMA codebook (van den Oord et al. 2017, appendix A.1) ---------------------------------------
def assignment_stats(z, indices, num_codes: int):
    """The batch's counts n_k and sums sum_{n: k_n = k} z_n. z: (N, D), indices: (N,) -> ((K,), (K, D))."""
    one_hot = F.one_hot(indices, num_codes).to(z.dtype)  # (N, K)
    return one_hot.sum(0), one_hot.T @ z


def ema_update(cluster_size, embed_sum, z, indices, decay):
    """N_k <- decay N_k + (1 - decay) n_k and m_k <- decay m_k + (1 - decay) sum_{k_n = k} z_n.
    cluster_size: (K,), embed_sum: (K, D), z: (N, D), indices: (N,) -> ((K,), (K, D))."""
    counts, sums = assignment_stats(z, indices, cluster_size.shape[0])
    return decay * cluster_size + (1.0 - decay) * counts, decay * embed_sum + (1.0 - decay) * sums


def ema_codebook(cluster_size, embed_sum, eps):
    """e_k = m_k / N~_k with Laplace-smoothed counts N~_k = (N_k + eps) / (n + K eps) n, n = sum_k N_k, so a code
    that has lost its vectors does not divide by zero. With decay 0 and eps 0 this is one k-means step: each used
    code moves to the mean of the vectors assigned to it. cluster_size: (K,), embed_sum: (K, D) -> (K, D)."""
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + cluster_size.shape[0] * eps) * n
    return embed_sum / smoothed[:, None]


# 5. Codebook usage -----------------------------------------------------------------------------------
def code_usage(indices, num_codes: int):
    """How often each code was chosen. indices: (N,) or any shape -> (K,) int64 counts (exact; the JAX twin's
    integers are the same, where a float result would take each framework's own default float dtype). A scatter-add
    into K bins rather than ``torch.bincount``, whose size depends on the largest index: on a GPU it reads that
    from the device, a synchronisation every training step."""
    flat = indices.reshape(-1)
    counts = torch.zeros(num_codes, dtype=torch.int64, device=flat.device)
    return counts.scatter_add_(0, flat.long(), torch.ones_like(flat, dtype=torch.int64))


def perplexity(counts):
    """exp(H(p)) of the usage distribution p = counts / sum, with 0 log 0 = 0: the effective number of codes
    (K when all are used equally, 1 when one is). counts: (K,) -> ()."""
    p = counts / counts.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum())


# 6. Dead-code restarts --------------------------------------------------------------------------------
def restart_dead_codes(codebook, cluster_size, embed_sum, z, usage, threshold, choice):
    """Codes used fewer than ``threshold`` times (``usage``, e.g. over the last epoch) restart at encoder outputs
    ``z[choice]`` (Dhariwal et al. 2020, Jukebox), their EMA state reset to one vector each: N_k = 1, m_k = e_k.
    codebook: (K, D), cluster_size: (K,), embed_sum: (K, D), z: (N, D), usage: (K,), choice: (K,) row indices
    of z drawn by the caller -> (codebook, cluster_size, embed_sum)."""
    dead = (usage < threshold)[:, None]
    fresh = z[choice]
    new_codebook = torch.where(dead, fresh, codebook)
    new_cluster = torch.where(dead[:, 0], torch.ones_like(cluster_size), cluster_size)
    new_sum = torch.where(dead, fresh, embed_sum)
    return new_codebook, new_cluster, new_sum
