"""How good a generator's samples are, for the GAN and the WGAN (``practice_torch.wgan`` imports this).

* ``mode_statistics``: on a labelled mixture of Gaussians (``gaussians``), the share of samples within 3 standard
  deviations of a mode (``near_modes``) and the modes that receive them (the usual mode-collapse figures, Srivastava
  et al. 2017).
* ``image_references``: on images, what an FID of the samples is to be read against, through the project's
  feature network: the FID of an untrained generator of the same architecture (the ceiling) and of as many
  training images (the floor: the FID the test set itself would get); and the classifier's class shares of
  the samples (mode collapse shows as classes that get almost none).
"""

from __future__ import annotations

import copy

import torch

from practice_torch.data import stacked
from practice_torch.evaluation.features import embed, feature_network
from practice_torch.evaluation.metrics import fid_from_features

COVERED_SHARE = 0.5  # a class counts as covered when it gets at least this share of a fair one (1/classes)
REFERENCE_SAMPLES = 10_000  # at most: as many as ``eval``'s sample metrics compare
# What ``eval`` prints beside ``image_references``' FIDs (the METRIC_NOTES of the models that report them)
REFERENCE_NOTES = {
    "fid_samples": "the model's own evaluation: the same FID of another {reference_examples} samples, measured beside "
                   "fid_untrained and fid_floor; its distance from fid is the sampling noise",
    "fid_untrained": "{reference_examples} samples of an untrained copy of the generator: the ceiling",
    "fid_floor": "{reference_examples} training images: the floor, what a perfect generator would score",
}


def mode_statistics(samples, data, labels, within: float = 3.0, min_share: float = 0.25) -> dict[str, float]:
    """samples (M, D) against labelled held-out data (N, D), labels (N,): each mode's centre is its data's mean and
    its scale the pooled per-coordinate standard deviation of the data about their centres. A sample belongs to its
    nearest centre when it lies within ``within`` standard deviations of it (``near_modes``).

    high_quality: the share of samples that belong to a mode;
    modes_covered: the modes that receive at least ``min_share`` of an equal share (M / K) of the samples;
    modes_captured: the modes that receive at least one (VEEGAN's and PacGAN's count, Srivastava et al. 2017, sec. 5.1);
    reverse_kl: KL(q || p) in nats from the modes' shares q of the high-quality samples to the data's (uniform) p
    (PacGAN, Lin et al. 2018, Table 1); NaN when no sample is of high quality.
    """
    good, nearest, centres, std = near_modes(samples, data, labels, within)
    counts = torch.bincount(nearest[good], minlength=len(centres)).double()
    return {"modes_covered": int((counts >= min_share * len(samples) / len(centres)).sum()), "modes": len(centres),
            "modes_captured": int((counts > 0).sum()), "high_quality": float(good.double().mean()),
            "reverse_kl": reverse_kl(counts), "mode_std": float(std)}


def near_modes(samples, data, labels, within: float = 3.0):
    """Which samples (M, D) lie within ``within`` standard deviations of their nearest mode of the labelled data
    (N, D), labels (N,): (good (M,) bool, nearest (M,) the mode's index, centres (K, D) the modes' data means, std
    the pooled per-coordinate standard deviation of the data about their centres), in float64."""
    data, samples = data.double(), samples.double()
    classes = labels.unique()
    centres = torch.stack([data[labels == c].mean(0) for c in classes])
    std = torch.sqrt(torch.mean((data - centres[torch.searchsorted(classes, labels)]) ** 2))
    dist, nearest = torch.cdist(samples, centres).min(dim=1)
    return dist <= within * std, nearest, centres, std


def reverse_kl(counts) -> float:
    """KL(q || uniform) = sum_k q_k log(K q_k) of the shares q = counts / sum(counts), 0 log 0 = 0; NaN for no counts.
    counts: (K,)."""
    if counts.sum() == 0:
        return float("nan")
    q = counts / counts.sum()
    return float(torch.sum(torch.xlogy(q, q * len(q))))


def untrained_copy(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The net with freshly initialised weights (``reset_parameters`` of each layer, BatchNorm statistics too), drawn
    from ``seed`` without touching the global generator; in eval mode."""
    fresh = copy.deepcopy(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh.eval()


@torch.no_grad()
def image_references(draw, draw_untrained, dataset, train, dataset_name: str, labels=None,
                     n: int | None = None, picture=None) -> dict[str, float]:
    """FIDs through ``dataset_name``'s feature network of n samples (``draw(n) -> (n, C, H, W)`` in [0, 1]) against
    n held-out images of ``dataset``: ``fid_untrained`` (``draw_untrained``) and ``fid_floor`` (n images spread evenly
    over the ``train`` split, which may be sorted by class or speaker); the classifier's ``class_share_k`` of the
    samples and their min and max, ``classes_covered``: the classes given at least half a fair share
    (``COVERED_SHARE``; the images' counterpart of modes covered); with the ``labels`` (n,) the samples were drawn
    for, ``class_accuracy``: how often the classifier names that class.
    ``picture``: what turns an example into the feature network's input (log-mels: ``mel_picture``); default the
    example clamped to [0, 1]."""
    n = n or min(len(dataset), REFERENCE_SAMPLES)
    picture = picture or (lambda x: x.clamp(0, 1))
    features = feature_network(dataset_name)
    real = picture(stacked(dataset, n)[0])
    real_feats, _ = embed(features, real, desc="features (held out)")
    spread = torch.arange(min(n, len(train))) * len(train) // min(n, len(train))  # across the split: some are sorted
    floor_feats, _ = embed(features, picture(torch.stack([train[int(i)][0] for i in spread])),
                           desc="features (training images)")
    fake_feats, probs = embed(features, picture(draw(n)), desc="features (samples)")
    untrained_feats, _ = embed(features, picture(draw_untrained(n)), desc="features (untrained)")
    shares = torch.bincount(probs.argmax(-1), minlength=probs.shape[1]).double() / n
    covered = int((shares >= COVERED_SHARE / len(shares)).sum())
    metrics = {"fid_samples": fid_from_features(real_feats, fake_feats),
               "fid_untrained": fid_from_features(real_feats, untrained_feats),
               "fid_floor": fid_from_features(real_feats, floor_feats), "reference_examples": n,
               "classes_covered": covered, "class_share_min": float(shares.min()), "class_share_max": float(shares.max()),
               **{f"class_share_{k}": float(s) for k, s in enumerate(shares)}}
    if labels is not None:
        metrics["class_accuracy"] = float((probs.argmax(-1) == labels[:n].to(probs.device)).double().mean())
    return metrics
