"""Spec cases for ``vq_vae``: the quantiser's math, the EMA codebook, usage and restarts, and the two grid networks.

* functions: the expanded squared distances (SciPy's ``cdist`` as third witness), the nearest code and the
  quantiser (a brute-force loop over the codes), the straight-through estimator, the codebook and commitment losses,
  the assignment statistics, one EMA step
  with fixed inputs, the codebook from an EMA state (with and without codes that lost every vector), the usage counts
  (NumPy's ``bincount``), the perplexity (``scipy.stats.entropy``) and the dead-code restarts with a given choice;
* modules: ``GridEncoder`` and ``GridDecoder`` under the converter (float32), gradients w.r.t. every weight.

Gradients are taken w.r.t. the inputs each output depends on (the torch runner differentiates no detached input):
a stop-gradient on the wrong side shows as a gradient where the case expects one (``codebook_loss`` for ``z_q``,
``commitment_loss`` and ``straight_through`` for ``z``); the zeros the stop-gradients put elsewhere are checked by
``vector_quantise``, whose outputs together reach both z and the codebook.

Inputs that go through an argmin are drawn so that the nearest code wins by a margin: no ties, and no flip from the
rounding of either backend.
"""

from __future__ import annotations

import numpy as np
import scipy.spatial.distance
import scipy.stats

from shared_specs.case import FunctionCase, ModuleCase, gaussian, uniform

N, D, K = 12, 3, 5
IMAGE = (1, 8, 8)
ENCODER = {"image_shape": IMAGE, "code_dim": D, "channels": (4, 8), "groups": 2}
RGB = {"image_shape": (3, 16, 16), "code_dim": 4, "channels": (4, 8, 8), "groups": 4}


def separated(r: np.random.Generator, n: int, codebook: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """n Gaussian rows whose nearest code beats the second nearest by ``margin`` in squared distance."""
    rows: list[np.ndarray] = []
    while len(rows) < n:
        z = 1.3 * r.standard_normal((4 * n, codebook.shape[1]))
        dist = np.sort(scipy.spatial.distance.cdist(z, codebook, "sqeuclidean"), axis=1)
        rows += list(z[dist[:, 1] - dist[:, 0] > margin])
    return np.asarray(rows[:n])


def _rows_and_codes(r, n=N, k=K):
    codebook = gaussian(r, k, D)
    return {"z": separated(r, n, codebook), "codebook": codebook}


def ref_nearest_code(z, codebook):
    """argmin by a Python loop over the codes, the distance computed directly as sum (z - e)^2."""
    best, index = np.full(len(z), np.inf), np.zeros(len(z), dtype=np.int64)
    for k, e in enumerate(codebook):
        dist = np.sum((z - e) ** 2, axis=1)
        index = np.where(dist < best, k, index)
        best = np.minimum(dist, best)
    return index


def ref_quantise(z, codebook):
    indices = ref_nearest_code(z, codebook)
    return codebook[indices], indices


def ref_vector_quantise(z, codebook):
    """(z_q, ||z - z_q||^2, ||z - z_q||^2): the forward values; stop-gradients change only the gradients."""
    z_q = codebook[ref_nearest_code(z, codebook)]
    loss = np.sum((z - z_q) ** 2, axis=-1)
    return z_q, loss, loss


def ref_assignment_stats(z, indices, num_codes):
    """Counts and sums by a loop over the codes."""
    return (np.array([np.sum(indices == k) for k in range(num_codes)], dtype=z.dtype),
            np.stack([z[indices == k].sum(0) for k in range(num_codes)]))


def ref_ema_update(cluster_size, embed_sum, z, indices, decay):
    counts, sums = ref_assignment_stats(z, indices, len(cluster_size))
    return decay * cluster_size + (1 - decay) * counts, decay * embed_sum + (1 - decay) * sums


def ref_ema_codebook(cluster_size, embed_sum, eps):
    """m_k / N~_k, the smoothed counts written as n (N_k + eps) / (n + K eps), code by code."""
    n, k = cluster_size.sum(), len(cluster_size)
    return np.stack([embed_sum[i] * (n + k * eps) / (n * (cluster_size[i] + eps)) for i in range(k)])


def ref_perplexity(counts):
    return np.exp(scipy.stats.entropy(counts))


def ref_restart_dead_codes(codebook, cluster_size, embed_sum, z, usage, threshold, choice):
    """Copies of the state with each dead code replaced, one by one."""
    codebook, cluster_size, embed_sum = codebook.copy(), cluster_size.copy(), embed_sum.copy()
    for k in range(len(codebook)):
        if usage[k] < threshold:
            codebook[k], cluster_size[k], embed_sum[k] = z[choice[k]], 1.0, z[choice[k]]
    return codebook, cluster_size, embed_sum


def _ema_inputs(r):
    indices = r.integers(0, K - 1, size=N)  # the last code gets no row
    return {"cluster_size": uniform(r, K, low=0.5, high=4.0), "embed_sum": gaussian(r, K, D), "z": gaussian(r, N, D),
            "indices": indices}


def _restart_inputs(r):
    usage = np.array([0.0, 5.0, 1.0, 0.0, 9.0])  # threshold 2: codes 0, 2 and 3 are dead
    return {"codebook": gaussian(r, K, D), "cluster_size": uniform(r, K, low=0.5, high=4.0),
            "embed_sum": gaussian(r, K, D), "z": gaussian(r, N, D), "usage": usage,
            "choice": r.choice(N, size=K, replace=False)}


def _lost_codes(r):
    """An EMA state in which codes 1 and 3 have lost every vector: N_k = m_k = 0."""
    size, total = uniform(r, K, low=0.5, high=4.0), gaussian(r, K, D)
    size[[1, 3]], total[[1, 3]] = 0.0, 0.0
    return {"cluster_size": size, "embed_sum": total}


def _images(r, shape=IMAGE, n=2):
    return uniform(r, n, *shape, dtype="float32")


CASES = (
    # 1. nearest-codebook assignment -------------------------------------------------------------------
    FunctionCase("vq_vae/squared_distances", "squared_distances", lambda r: {"z": gaussian(r, N, D),
                                                                             "codebook": gaussian(r, K, D)},
                 grad_wrt=("z", "codebook"),
                 reference=lambda z, codebook: scipy.spatial.distance.cdist(z, codebook, "sqeuclidean")),
    FunctionCase("vq_vae/nearest_code", "nearest_code", lambda r: _rows_and_codes(r, n=40, k=8),
                 reference=ref_nearest_code),
    FunctionCase("vq_vae/quantise", "quantise", _rows_and_codes, reference=ref_quantise),
    # 2. the straight-through estimator --------------------------------------------------------------
    FunctionCase("vq_vae/straight_through", "straight_through", lambda r: {"z": gaussian(r, N, D),
                                                                           "z_q": gaussian(r, N, D)},
                 grad_wrt=("z",), reference=lambda z, z_q: z_q),
    # 3. the codebook and commitment losses, and the layer that combines them --------------------------
    FunctionCase("vq_vae/codebook_loss", "codebook_loss", lambda r: {"z": gaussian(r, N, D), "z_q": gaussian(r, N, D)},
                 grad_wrt=("z_q",), reference=lambda z, z_q: np.sum((z - z_q) ** 2, axis=-1)),
    FunctionCase("vq_vae/commitment_loss", "commitment_loss",
                 lambda r: {"z": gaussian(r, N, D), "z_q": gaussian(r, N, D)},
                 grad_wrt=("z",), reference=lambda z, z_q: np.sum((z - z_q) ** 2, axis=-1)),
    # the quantisation layer as one function: quantise + straight_through + both losses, gradients for z and codebook
    FunctionCase("vq_vae/vector_quantise", "vector_quantise", lambda r: _rows_and_codes(r, n=20, k=6),
                 grad_wrt=("z", "codebook"), reference=ref_vector_quantise),
    # 4. the EMA codebook ----------------------------------------------------------------------------------
    FunctionCase("vq_vae/assignment_stats", "assignment_stats",
                 lambda r: {"z": gaussian(r, N, D), "indices": r.integers(0, K - 1, size=N)}, static={"num_codes": K},
                 reference=ref_assignment_stats),
    FunctionCase("vq_vae/ema_update", "ema_update", _ema_inputs, static={"decay": 0.8},
                 grad_wrt=("cluster_size", "embed_sum", "z"), reference=ref_ema_update),
    FunctionCase("vq_vae/ema_codebook", "ema_codebook",
                 lambda r: {"cluster_size": uniform(r, K, low=0.5, high=4.0), "embed_sum": gaussian(r, K, D)},
                 static={"eps": 1e-3}, grad_wrt=("cluster_size", "embed_sum"), reference=ref_ema_codebook),
    FunctionCase("vq_vae/ema_codebook/lost-codes", "ema_codebook", _lost_codes, static={"eps": 1e-5},
                 grad_wrt=("cluster_size", "embed_sum"), reference=ref_ema_codebook),
    # 5. codebook usage ------------------------------------------------------------------------------------
    FunctionCase("vq_vae/code_usage", "code_usage", lambda r: {"indices": r.integers(0, K - 1, size=(2, 3, 4))},
                 static={"num_codes": K},
                 reference=lambda indices, num_codes: np.bincount(indices.ravel(), minlength=num_codes)),
    FunctionCase("vq_vae/perplexity", "perplexity", lambda r: {"counts": uniform(r, K, low=0.5, high=10.0)},
                 grad_wrt=("counts",), reference=ref_perplexity),
    FunctionCase("vq_vae/perplexity/unused-codes", "perplexity",
                 lambda r: {"counts": np.array([0.0, 7.0, 0.0, 3.0, 1.0])}, reference=ref_perplexity),
    # 6. dead-code restarts -----------------------------------------------------------------------------------
    FunctionCase("vq_vae/restart_dead_codes", "restart_dead_codes", _restart_inputs, static={"threshold": 2.0},
                 grad_wrt=("codebook", "cluster_size", "embed_sum", "z"), reference=ref_restart_dead_codes),
    # 7. the networks ---------------------------------------------------------------------------------------
    ModuleCase("vq_vae/grid_encoder", "GridEncoder", ENCODER, lambda r: {"x": _images(r)}, grad_wrt=("x",),
               image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("vq_vae/grid_decoder", "GridDecoder", ENCODER, lambda r: {"z_q": gaussian(r, 2, D, 2, 2, dtype="float32")},
               grad_wrt=("z_q",), image_inputs=("z_q",), image_outputs=("<root>",)),
    ModuleCase("vq_vae/grid_encoder/rgb-three-levels", "GridEncoder", RGB, lambda r: {"x": _images(r, (3, 16, 16))},
               grad_wrt=("x",), image_inputs=("x",), image_outputs=("<root>",)),
    ModuleCase("vq_vae/grid_decoder/rgb-three-levels", "GridDecoder", RGB,
               lambda r: {"z_q": gaussian(r, 2, 4, 2, 2, dtype="float32")}, grad_wrt=("z_q",), image_inputs=("z_q",),
               image_outputs=("<root>",)),
)
