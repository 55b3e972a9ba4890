"""The GMM's training interface (``practice_torch.models``): EM through the engine's ``update`` hook.

``python -m practice_torch train mixture_em`` fits a full-covariance GMM to a 2-D set (moons by default)
by full-batch EM: each engine step is one EM iteration over the whole training split (``train.batch_size=0``
means the whole split). ``--dataset fashion_mnist`` fits the GMM to low-dimensional features of the images: PCA of
the pixels (``model.features=pca``, samples decode back to images) or PCA of the project's feature network
(``model.features=network``, a classifier: its clusters follow the labels it was trained on). ``eval``
reports the held-out log-likelihood per example and, against the labels, cluster purity and NMI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from practice_torch.engine import RunError
from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.mixture_em.functions import cholesky, e_step
from practice_torch.mixture_em.networks import GMM, PCAFeatures, all_reduce_sum, check_init
from practice_torch.models import Artefact
from practice_torch.plots import density_figure_1d, density_figure_2d, figure_artefact, scatter_figure_2d


@dataclass
class Config:
    """The mixture's hyperparameters: the run's ``model.*`` keys (``--set model.components=12``)."""

    components: int = 8  # K
    covariance_type: Literal["full", "diag"] = "full"
    reg_covar: float = 1e-6  # added to the diagonal of every covariance in the M-step (scikit-learn's reg_covar)
    init: Literal["kmeans++", "random"] = "kmeans++"  # starting means: k-means++ seeding or K random data points
    features: Literal["pca", "network"] = "pca"  # images only: PCA of the pixels, or of the feature network's features
    feature_dim: int = 32  # images only: the dimension D of the modelled features


# Full-batch EM: ``train.batch_size=0`` makes each batch the whole training split (after data.limit), each step one EM
# iteration. quick: 2-D moons, K = 12 full covariances, 150 iterations (seconds); images: K = 10 on 32 PCA features, 60
# iterations (about a minute on 2 cores). full: more iterations; images K = 20 on 64 features. The optimizer's keys (lr,
# warmup, clipping) are unused: EM needs none.
# K per toy set: moons 12, gaussians 8 (its 8 modes), rings 24, mixture1d 4; any other data set 8.
EM_TRAINING = {"batch_size": 0, "lr": 1.0, "warmup_steps": 0, "grad_clip": 0.0, "log_every": 5}
QUICK_TOY_TRAINING = TrainConfig(steps=150, checkpoint_every=50, samples=2000, **EM_TRAINING)
FULL_TOY_TRAINING = TrainConfig(steps=1000, checkpoint_every=250, samples=2000, **EM_TRAINING)
# The results table's figure: the first of these (eval key, label, units) the evaluation reports.
HEADLINE = (("log_likelihood", "test log-likelihood", "nats/example"),
            ("feature_log_likelihood", "test log-likelihood of the features", "nats/example"))

PRESETS = {
    "quick": {
        "moons": Preset(Config(components=12), QUICK_TOY_TRAINING),
        "gaussians": Preset(Config(components=8), QUICK_TOY_TRAINING),
        "rings": Preset(Config(components=24), QUICK_TOY_TRAINING),
        "mixture1d": Preset(Config(components=4), QUICK_TOY_TRAINING),
        "image": Preset(Config(components=10),
                        TrainConfig(steps=60, checkpoint_every=20, samples=144, **EM_TRAINING)),
        "*": Preset(Config(components=8), QUICK_TOY_TRAINING),
    },
    "full": {
        "moons": Preset(Config(components=12), FULL_TOY_TRAINING),
        "gaussians": Preset(Config(components=8), FULL_TOY_TRAINING),
        "rings": Preset(Config(components=24), FULL_TOY_TRAINING),
        "mixture1d": Preset(Config(components=4), FULL_TOY_TRAINING),
        "image": Preset(Config(components=20, feature_dim=64),
                        TrainConfig(steps=300, checkpoint_every=100, samples=144, **EM_TRAINING)),
        "*": Preset(Config(components=8), FULL_TOY_TRAINING),
    },
}
default_config = preset_config("mixture_em", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = ("components", "covariance_type", "features", "feature_dim")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ()
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**dict.fromkeys(("components", "feature_dim"), "positive"), "reg_covar": "at least 0"}


class FrozenFeatures(nn.Module):
    """A trained feature network's ``features`` (N, C, H, W) -> (N, F): no gradients, always in eval mode."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def build(config: Config, data) -> GMM:
    """A GMM on real vectors (D,) as they are, or on ``feature_dim`` features of images (C, H, W). EM's settings
    (``reg_covar``, ``init``) are not the network's: ``update`` passes them from the config, and they are checked
    here, so a bad config fails in one line before training."""
    if config.components < 1 or not config.reg_covar >= 0:
        raise ValueError(f"need components >= 1 and reg_covar >= 0, got {config.components} and {config.reg_covar}")
    check_init(config.init)
    features = None
    if data.modality == "image" and len(data.shape) == 3:
        backbone = None
        if config.features == "network":
            from practice_torch.evaluation.features import feature_network

            backbone = FrozenFeatures(feature_network(data.name).cpu())
        features = PCAFeatures(data.shape, config.feature_dim, backbone)
        dim = config.feature_dim
    elif data.modality != "text" and len(data.shape) == 1:
        dim = data.shape[0]
    else:
        raise ValueError(f"a GMM models real vectors (D,) or images (C, H, W); {data.name} examples are "
                         f"{data.modality} of shape {data.shape}")
    return GMM(config.components, dim, config.covariance_type, features)


def draw_noise(net: GMM, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """race (n, K) ~ Exp(1): the k-means++ (or random) choice of starting means, used by the first step only."""
    return {"race": torch.empty(n, net.components).exponential_(generator=generator)}


def loss(net: GMM, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """The negative log-likelihood per example, the quantity EM decreases (the engine calls ``update``)."""
    return -net.log_prob(batch[0]).mean(), {}


def update(net: GMM, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """One EM iteration on the batch, in place, with ``config.reg_covar``: on the first call the features and the
    starting mixture are fitted (``GMM.initialise``, the means seeded by ``config.init``). Under torchrun the
    sufficient statistics are all-reduced (summed over the ranks), so every rank computes the update of the whole
    global batch. -> (-mean log p(x) at the parameters before the step, {'min_weight'}); a failed Cholesky
    factorisation gives a NaN loss."""
    x = batch[0]
    if not bool(net.initialised):
        n = int(all_reduce_sum(torch.tensor(len(x), device=x.device)))
        if net.components > n:
            raise RunError(f"model.components={net.components} is more than the {n} training examples")
        net.initialise(x, noise["race"], all_reduce_sum, init=config.init, reg_covar=config.reg_covar)
    try:
        log_px = net.em_update(x, all_reduce_sum, reg_covar=config.reg_covar)
    except torch.linalg.LinAlgError:
        return torch.full((), math.nan, device=x.device), {"min_weight": net.weights.min()}
    return -log_px.mean(), {"min_weight": net.weights.min()}


# Samples and evaluation ------------------------------------------------------------------------------
def _device(net: GMM) -> torch.device:
    return net.weights.device


def component_draws(net: GMM, k: int, eps: torch.Tensor) -> torch.Tensor:
    """mu_k + L_k eps: draws (M, D) of component k alone, from eps (M, D)."""
    if net.covariance_type == "diag":
        return net.means[k] + torch.sqrt(net.covariances[k]) * eps
    return net.means[k] + eps @ cholesky(net.covariances[k : k + 1])[0].T


@torch.no_grad()
def sample(net: GMM, config: Config, n: int, generator: torch.Generator, examples=None) -> list[Artefact]:
    """2-D: samples beside the data, the density, and the components (2-sigma ellipses over the data coloured
    by their most probable component); 1-D: the density over histograms of samples and of the data. Images:
    decoded samples, one row per component (its mean, then its own draws), and the held-out ``examples``
    with the highest responsibility for each component (what each cluster means); features from a network
    cannot be decoded, so only the clusters are shown."""
    device = _device(net)
    uniform, eps = torch.rand(n, generator=generator), torch.randn(n, net.dim, generator=generator)
    z = net.sample(uniform.to(device), eps.to(device)).cpu()
    if net.features is None:
        data = z if examples is None else examples[0]
        log_prob = lambda p: net.log_prob(p.to(device)).cpu()  # noqa: E731
        if net.dim == 1:
            title = f"GMM density (K = {net.components})"
            return [density_figure_1d("samples", log_prob, z, title=f"{title} over {n} of its samples"),
                    density_figure_1d("density", log_prob, data, title=title)]
        if net.dim != 2:
            return [Artefact("samples", "text", [" ".join(f"{v:.4f}" for v in row) for row in z.tolist()])]
        return [scatter_figure_2d("samples", z, data, title="GMM samples"),
                density_figure_2d("density", log_prob, data, title=f"GMM density (K = {net.components})"),
                components_figure_2d("components", net, data)]
    order = torch.argsort(net.weights, descending=True).tolist()
    figures = []
    if net.features.backbone is None:
        cols = 10
        rows = [torch.cat([net.means[k : k + 1], component_draws(net, k, eps[: cols - 1].to(device))]) for k in order]
        figures += [Artefact("samples", "images", net.features.decode(z.to(device)).clamp(0, 1).cpu(),
                             nrow=math.ceil(math.sqrt(n))),
                    Artefact("components", "images", net.features.decode(torch.cat(rows)).clamp(0, 1).cpu(), nrow=cols)]
    if examples is not None:
        x = examples[0].to(device)
        resp, cols = net.responsibilities(x), 10
        top = [x[torch.topk(resp[:, k], min(cols, len(x))).indices] for k in order]
        figures.append(Artefact("samples" if not figures else "clusters", "images", torch.cat(top).cpu(), nrow=cols))
    return figures or [Artefact("samples", "text", [f"component {k}: weight {net.weights[k]:.4f}" for k in order])]


def components_figure_2d(name: str, net: GMM, data: torch.Tensor) -> Artefact:
    """The data (N, 2) coloured by most probable component, each component's mean and its 1- and 2-sigma
    ellipses (eigenvectors of Sigma_k), labelled with its weight."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    device = _device(net)
    labels = net.responsibilities(data.to(device)).argmax(1).cpu().numpy()
    covs = net.covariances if net.covariance_type == "full" else torch.diag_embed(net.covariances)
    points = data.cpu().numpy()
    lo, hi = np.quantile(points, 0.001, axis=0), np.quantile(points, 0.999, axis=0)
    pad = 0.15 * (hi - lo)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    colours = plt.get_cmap("tab20")(np.arange(net.components) % 20)
    ax.scatter(points[:, 0], points[:, 1], s=2, c=colours[labels], alpha=0.4)
    for k in range(net.components):
        values, vectors = np.linalg.eigh(covs[k].double().cpu().numpy())
        angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1]))
        mean = net.means[k].cpu().numpy()
        for scale in (1.0, 2.0):
            width, height = 2 * scale * np.sqrt(np.maximum(values[::-1], 0))
            ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False, lw=1.5, color=colours[k] * 0.7))
        ax.plot(*mean, "k+", ms=8)
        ax.annotate(f"{net.weights[k]:.2f}", mean, textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]),
           title=f"{net.components} components (1 and 2 sigma)")
    return figure_artefact(name, fig)


@torch.no_grad()
def evaluate(net: GMM, config: Config, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
    """Held-out mean log p(x) per example in nats (of the features, for images) and, when the examples carry
    labels (classes, moons, modes), how the most probable components match them: purity (the fraction of
    examples in their cluster's majority label) and normalised mutual information (scikit-learn, arithmetic)."""
    device, total, clusters, labels = _device(net), 0.0, [], []
    for x, y in DataLoader(dataset, batch_size=2000):
        resp, log_px = e_step(net.embed(x.to(device)), *net.theta)
        total += log_px.sum().item()
        clusters.append(resp.argmax(1).cpu())
        labels.append(y)
    n, key = len(dataset), "log_likelihood" if net.features is None else "feature_log_likelihood"
    metrics: dict[str, float] = {key: total / n, "examples": n, "components": net.components}
    c, y = torch.cat(clusters).numpy(), torch.cat(labels).numpy()
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and len(np.unique(y)) > 1:
        from sklearn.metrics import normalized_mutual_info_score

        majority = sum(np.bincount(y[c == k]).max() for k in np.unique(c))
        metrics.update(purity=float(majority / n), nmi=float(normalized_mutual_info_score(y, c)))
    return metrics
