"""Sample metrics of an image model: FID, Inception Score, KID and precision/recall of generated images against
held-out ones, through the project's feature network (and the standard Inception FID when its weights are here).
The same for a waveform model of ``spoken_digits``, through the classifier of log-mel pictures; and, for samples
drawn for given classes (``Artefact.labels``), ``class_accuracy``: how often the classifier names the class asked for.

``python -m practice_torch eval RUN`` calls ``model_sample_metrics`` after the model's own ``evaluate``;
``python -m benchmarks metrics`` calls ``image_set_metrics`` on real, blurred and noise images (the sanity table).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from practice_torch.evaluation.features import (
    AUDIO_VIEWS,
    FeatureNetwork,
    FeatureNetworkError,
    check_dataset,
    embed,
    feature_network,
    feature_pictures,
    feature_shape,
)
from practice_torch.evaluation.inception import InceptionFeatures, find_inception_weights, load_inception
from practice_torch.evaluation.metrics import fid_from_features, inception_score_splits, kid_subsets, precision_recall
from practice_torch.progress import progress

DEFAULT_SAMPLES = 10_000  # cap on the default number of samples (and held-out images) compared
# What ``eval`` prints beside the sample metrics (format strings of the metrics; a model adds its own METRIC_NOTES)
METRIC_NOTES = {
    "fid": "eval's sample metrics: {sample_metrics_samples} samples against {sample_metrics_held_out} held-out "
           "examples, in the project's feature network",
    "sample_ms": "wall milliseconds a sample, drawing eval's samples in chunks of up to 1 000 on this run's threads",
}


@torch.no_grad()
def inception_features(net: InceptionFeatures, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """The 2048-d pool features of images (N, C, H, W) in [0, 1], in batches on the net's device -> (N, 2048)."""
    device = next(net.parameters()).device
    batches = progress(images.split(batch_size), desc="Inception features", leave=False)
    return torch.cat([net.features(batch.to(device)).cpu() for batch in batches])


def image_set_metrics(real: torch.Tensor, fake: torch.Tensor, net: FeatureNetwork, k: int = 3,
                      inception: InceptionFeatures | None = None, seed: int = 0,
                      labels: torch.Tensor | None = None) -> dict[str, float]:
    """FID, IS (of ``fake``, 10 splits), KID (100 subsets of up to 1000), precision and recall (k-NN with ``k``)
    of image sets real (N, C, H, W) and fake (M, C, H, W) in [0, 1], in the feature space of ``net``. With the
    classes the samples were drawn for, labels (M,): ``class_accuracy``, how often the classifier names them."""
    real_feats, real_probs = embed(net, real, desc="features (held out)")
    fake_feats, fake_probs = (real_feats, real_probs) if fake is real else embed(net, fake, desc="features (samples)")
    is_mean, is_std = inception_score_splits(fake_probs, splits=min(10, len(fake)),
                                             generator=torch.Generator().manual_seed(0))  # samples may be class-sorted
    kid_mean, kid_std = kid_subsets(real_feats, fake_feats, generator=torch.Generator().manual_seed(seed))
    k = min(k, len(real) - 1, len(fake) - 1)  # a handful of samples: the nearest neighbours there are
    precision, recall = precision_recall(real_feats, fake_feats, k)
    metrics = {"fid": fid_from_features(real_feats, fake_feats), "inception_score": is_mean,
               "inception_score_std": is_std, "kid": kid_mean, "kid_std": kid_std,
               "precision": float(precision), "recall": float(recall), "precision_recall_k": k}
    if labels is not None:  # does the classifier recognise the class each sample was drawn for?
        metrics["class_accuracy"] = (fake_probs.argmax(-1) == labels).float().mean().item()
    if inception is not None:
        metrics["fid_inception"] = fid_from_features(inception_features(inception, real),
                                                     inception_features(inception, fake))
    return metrics


def draw_samples(module, cfg, net, n: int, generator: torch.Generator, kind: str, chunk: int = 1000
                 ) -> tuple[torch.Tensor, torch.Tensor | None, int | None] | None:
    """About n samples of a model, in chunks: the 'samples' artefacts of ``module.sample`` of ``kind`` ('images':
    (N, C, H, W); 'audio': waveforms (N, T)), with the classes they were drawn for (N,) when the sampler says (else
    None) and their sample rate (audio; else None). None when the model's samples are not of that kind."""
    parts, labels, total, rate = [], [], 0, None
    while total < n:
        artefacts = module.sample(net, cfg.model, min(chunk, n - total), generator, None)
        if not artefacts:  # a model that only pictures examples (an autoencoder)
            return None
        artefact = artefacts[0]
        data = artefact.data
        if artefact.name != "samples" or artefact.kind != kind or data.ndim != (2 if kind == "audio" else 4) \
                or not len(data):
            return None
        parts.append(data.detach().float().cpu())
        labels.append(None if artefact.labels is None else torch.as_tensor(artefact.labels).cpu())
        rate = artefact.sample_rate if kind == "audio" else None
        total += len(parts[-1])
    return torch.cat(parts), None if any(y is None for y in labels) else torch.cat(labels), rate


def draw_images(module, cfg, net, n: int, generator: torch.Generator, chunk: int = 1000, dataset: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """About n samples (N, C, H, W) of a model (``draw_samples``), clamped to [0, 1] (a Gaussian decoder's means may
    stray outside), with the classes they were drawn for (N,) or None. With ``dataset`` an audio set of
    ``AUDIO_VIEWS``, the samples are waveforms and come back as that set's log-mel pictures. None when the model's
    samples are not of that kind."""
    audio = dataset in AUDIO_VIEWS
    drawn = draw_samples(module, cfg, net, n, generator, "audio" if audio else "images", chunk)
    if drawn is None:
        return None
    data, labels, rate = drawn
    return feature_pictures(dataset, data, rate).clamp(0.0, 1.0), labels  # images pass feature_pictures unchanged


def voice_metrics(fake: torch.Tensor, real: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """``hnr_db``: the harmonics-to-noise ratio (``harmonicity``) of sample waveforms (M, T) at ``sample_rate``,
    averaged over the clips that are not silent; ``hnr_db_real``: the same of held-out clips (N, T) at the data's
    rate, first resampled to the samples' rate (a model at 8 kHz is judged against the recordings at 8 kHz)."""
    import torchaudio

    from practice_torch.data.audio import SAMPLE_RATE, harmonicity

    if sample_rate != SAMPLE_RATE:
        real = torchaudio.functional.resample(real.float(), SAMPLE_RATE, sample_rate)
    def mean(hnr):  # over the clips that are not silent (NaN when none is)
        return float(np.nanmean(hnr)) if np.isfinite(hnr).any() else float("nan")

    return {"hnr_db": mean(harmonicity(fake, sample_rate)), "hnr_db_real": mean(harmonicity(real, sample_rate))}


def model_sample_metrics(module, cfg, net, info, held_out, n: int | None, generator: torch.Generator,
                         device: torch.device, data_dir: str | Path | None = None,
                         inception_path: str | Path | None = None) -> dict[str, float]:
    """The sample metrics ``eval`` adds for an image model: n samples (default: as many as held-out examples, at
    most the module's ``EVAL_SAMPLES`` or 10 000) against as many held-out examples, and ``sample_ms``, the wall
    milliseconds the model took a sample to draw them (the sampler's cost, for comparing families). Prints one
    line when it skips something; {} if it cannot run (and nothing at all for data that are not images or an audio
    set of ``AUDIO_VIEWS``)."""
    if info.modality != "image" and info.name not in AUDIO_VIEWS:
        return {}
    try:
        check_dataset(info.name)
    except FeatureNetworkError as exc:
        print(f"sample metrics skipped: {exc}", file=sys.stderr)
        return {}
    n = n or min(len(held_out), getattr(module, "EVAL_SAMPLES", DEFAULT_SAMPLES))
    was_training = net.training
    net.eval()
    audio = info.modality == "audio"
    started = time.perf_counter()
    try:
        drawn = draw_samples(module, cfg, net, n, generator, "audio" if audio else "images")
    finally:
        net.train(was_training)
    seconds = time.perf_counter() - started
    shape = feature_shape(info)
    if drawn is not None:
        data, labels, rate = drawn
        fake = feature_pictures(info.name, data, rate).clamp(0.0, 1.0)  # waveforms -> log-mel pictures
    if drawn is None or tuple(fake.shape[1:]) != shape:
        kind = "waveforms" if audio else f"images {shape}"
        print(f"sample metrics skipped: the samples of {cfg.model_name} are not {info.name} {kind}", file=sys.stderr)
        return {}
    rows = range(min(len(fake), len(held_out)))
    real = torch.stack([held_out[i][0] for i in rows])
    voice = voice_metrics(data, real.reshape(len(real), -1), rate) if audio else {}
    if audio:
        real = feature_pictures(info.name, real)
    features = feature_network(info.name, data_dir, device)
    inception = None
    path = Path(inception_path) if inception_path else find_inception_weights(data_dir)
    if info.modality == "audio":
        pass  # an ImageNet network has nothing to say about spectrograms
    elif path is not None:
        inception = load_inception(path, device)
    else:
        where = f"in {data_dir}" if data_dir else "(no --data-dir given)"
        print(f"standard FID skipped: no Inception-v3 weights (pt_inception-2015-12-05-*.pth or "
              f"inception_v3_google-*.pth) {where}", file=sys.stderr)
    metrics = image_set_metrics(real, fake, features, inception=inception, labels=labels)
    return {**metrics, **voice, "sample_metrics_samples": len(fake), "sample_metrics_held_out": len(real),
            "sample_ms": 1000.0 * seconds / len(fake),
            "features_test_accuracy": features.test_accuracy,
            **({"inception_weights": inception.source} if inception is not None else {})}

