"""The Gaussian mixture as a module: parameters as buffers, fitted by EM, initialised from the data.

EM updates the parameters in closed form, so they are buffers (no gradients, no optimizer); they live
in the ``state_dict`` and therefore in every checkpoint. Images are modelled through low-dimensional
features: ``PCAFeatures`` (a projection fitted on the training images, invertible up to the discarded
components, so samples can be drawn as images) or a frozen feature network followed by PCA.
Randomness is an argument: the k-means++ seeding takes exponential draws, sampling uniform and normal ones.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from practice_torch.mixture_em.functions import Reduce, _no_reduce, e_step, log_likelihood, moments_m_step, sample_gmm


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of a torchrun (every rank gets it); the tensor itself in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def smallest_rows(keys: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The rows of x (N, D) with the k smallest keys (N,), over the data of every rank -> (k, D), by key."""
    order = torch.topk(keys, min(k, len(keys)), largest=False).indices
    keys, rows = keys[order], x[order]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world = dist.get_world_size()
        all_keys, all_rows = [torch.empty_like(keys) for _ in range(world)], [torch.empty_like(rows) for _ in range(world)]
        dist.all_gather(all_keys, keys.contiguous())
        dist.all_gather(all_rows, rows.contiguous())
        keys, rows = torch.cat(all_keys), torch.cat(all_rows)
    return rows[torch.topk(keys, k, largest=False).indices]


def check_reg_covar(reg_covar: float) -> None:
    """EM's regulariser must be >= 0 (it is added to every covariance's diagonal)."""
    if not reg_covar >= 0:
        raise ValueError(f"need reg_covar >= 0, got {reg_covar}")


def check_init(init: str) -> None:
    """The seeding of the starting means: 'kmeans++' or 'random'."""
    if init not in ("kmeans++", "random"):
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")


def seed_means(x: torch.Tensor, k: int, race: torch.Tensor, method: str = "kmeans++") -> torch.Tensor:
    """k starting means among the data x (N, D), with the randomness passed in: ``race`` (N, k) ~ Exp(1).

    'random': the k points with the smallest race[:, 0], a uniformly random k-subset. 'kmeans++' (Arthur &
    Vassilvitskii 2007): pick j draws point n with probability w_n / sum w, w_n = 1 for the first pick and
    the squared distance to the nearest mean chosen so far after it; drawn as argmin_n race[n, j] / w_n
    (an exponential race), so each pick needs one global argmin and works on sharded data."""
    if method == "random":
        return smallest_rows(race[:, 0], x, k)
    check_init(method)
    weight = torch.ones(len(x), dtype=x.dtype, device=x.device)
    means = []
    for j in range(k):
        means.append(smallest_rows(race[:, j] / weight, x, 1)[0])
        dist2 = torch.sum((x - means[-1]) ** 2, dim=-1)
        weight = dist2 if j == 0 else torch.minimum(weight, dist2)
    return torch.stack(means)


class PCAFeatures(nn.Module):
    """z = (flatten(x) - m) V: the top ``dim`` principal directions V (P, dim) of the training images.
    x: (N, C, H, W) -> z: (N, dim); ``decode`` maps back to images (the discarded directions set to 0)."""

    def __init__(self, shape: tuple[int, ...], dim: int, backbone: nn.Module | None = None):
        super().__init__()
        self.shape, self.backbone = tuple(shape), backbone
        width = math.prod(shape) if backbone is None else self.inputs(torch.zeros(1, *shape)).shape[1]
        if dim > width:
            raise ValueError(f"model.feature_dim={dim} is larger than the {width} input features")
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("basis", torch.eye(width, dim))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the projection sees: the flattened images, or the feature network's features. -> (N, P)."""
        return x.flatten(1) if self.backbone is None else self.backbone(x)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, reduce: Reduce = _no_reduce) -> None:
        """Mean and top eigenvectors of the covariance of ``inputs(x)`` over every rank's share (float64 eigh;
        each direction's sign fixed so its largest entry is positive: the same basis on every machine)."""
        h = self.inputs(x).double()
        n = reduce(torch.tensor(float(len(h)), dtype=h.dtype, device=h.device))
        mean = reduce(h.sum(0)) / n
        cov = reduce((h - mean).T @ (h - mean)) / n
        _, vectors = torch.linalg.eigh(cov)
        basis = vectors[:, -self.basis.shape[1]:].flip(-1)
        basis = basis * torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
        self.mean.copy_(mean)
        self.basis.copy_(basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.inputs(x) - self.mean) @ self.basis

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (M, C, H, W) from features z (M, dim); only for PCA on the pixels."""
        if self.backbone is not None:
            raise ValueError("features from a feature network cannot be decoded into images")
        return (z @ self.basis.T + self.mean).view(-1, *self.shape)


class GMM(nn.Module):
    """p(x) = sum_k pi_k N(f(x); mu_k, Sigma_k), f the identity or ``features``. Buffers: weights (K,), means
    (K, D), covariances (K, D, D) or (K, D), ``initialised`` (set by the first EM step). The module holds the
    model only; EM's settings are arguments of the methods that use them (the adapter passes the run's config):
    ``reg_covar`` of ``initialise`` and ``em_update`` is added to every covariance's diagonal in the M-step
    (eq. 6), which keeps Sigma_k positive definite; ``init`` of ``initialise`` names how it seeds the means
    ('kmeans++' or 'random')."""

    def __init__(self, components: int, dim: int, covariance_type: str = "full",
                 features: PCAFeatures | None = None):
        super().__init__()
        if covariance_type not in ("full", "diag"):
            raise ValueError(f"model.covariance_type must be full or diag, got {covariance_type!r}")
        if components < 1:
            raise ValueError(f"need components >= 1, got {components}")
        self.components, self.dim, self.covariance_type, self.features = components, dim, covariance_type, features
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        covs = torch.eye(dim).repeat(components, 1, 1) if covariance_type == "full" else torch.ones(components, dim)
        self.register_buffer("covariances", covs)
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def theta(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.weights, self.means, self.covariances

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The modelled vectors: features(x) (N, D), or x itself for vector data."""
        return x if self.features is None else self.features(x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n) per example (N,) (of the features, for images)."""
        return log_likelihood(self.embed(x), *self.theta)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(z = k | x_n) -> (N, K)."""
        return e_step(self.embed(x), *self.theta)[0]

    def sample(self, uniform: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Draws (M, D) in the modelled space, from noise uniform (M,) in [0, 1) and eps (M, D) ~ N(0, I)."""
        return sample_gmm(*self.theta, uniform, eps)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor, race: torch.Tensor, reduce: Reduce = _no_reduce, *, init: str = "kmeans++",
                   reg_covar: float = 1e-6) -> None:
        """Fit the features, seed K means from the data (``seed_means`` by ``init``: 'kmeans++' or 'random'),
        then one M-step (``reg_covar`` added to each covariance's diagonal) from the hard assignment of each
        point to its nearest seed (the k-means start of scikit-learn's GaussianMixture)."""
        check_reg_covar(reg_covar)
        if self.features is not None:
            self.features.fit(x, reduce)
        z = self.embed(x)
        seeds = seed_means(z, self.components, race, init)
        hard = nn.functional.one_hot(torch.cdist(z, seeds).argmin(1), self.components).to(z.dtype)
        for buffer, value in zip(self.theta, moments_m_step(z, hard, self.covariance_type, reg_covar, reduce)):
            buffer.copy_(value)
        self.initialised.fill_(True)

    @torch.no_grad()
    def em_update(self, x: torch.Tensor, reduce: Reduce = _no_reduce, *, reg_covar: float = 1e-6) -> torch.Tensor:
        """One EM iteration on the batch x in place (sufficient statistics summed by ``reduce`` over ranks;
        ``reg_covar`` added to each covariance's diagonal). -> log p(x_n) (N,) at the parameters before the step."""
        check_reg_covar(reg_covar)
        z = self.embed(x)
        resp, log_px = e_step(z, *self.theta)
        for buffer, value in zip(self.theta, moments_m_step(z, resp, self.covariance_type, reg_covar, reduce)):
            buffer.copy_(value)
        return log_px
