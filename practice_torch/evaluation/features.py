"""The project's feature network: a small CNN classifier per image data set, trained here and cached.

FID, KID and precision/recall compare sets of images through features; the Inception Score through class
probabilities. The standard network (Inception-v3 on ImageNet) is a poor judge of 28x28 grey images and its
weights are not on an offline machine, so each labelled image data set gets its own classifier: its
penultimate layer gives the features, its softmax p(y|x).

    python -m practice_torch features fashion_mnist          # train (about 2 minutes on 2 cores) and cache
    net = feature_network("fashion_mnist")                    # the cached net (trained first when missing)
    net.features(x), net.probabilities(x)                     # x: (N, C, H, W) in [0, 1]

Audio: ``spoken_digits`` gets a classifier of log-mel spectrograms seen as pictures (``mel_picture(log_mel(wave))``,
(1, 64, 64) in [0, 1]), so a waveform model's samples are judged as a listener's ear would bin them: by word.
``feature_pictures(name, x)`` turns waveforms (N, T) at any rate into those pictures (images pass through).

Cache: ``practice_torch.data.cache_dir()/features/<data set>.safetensors`` and ``<data set>.json`` (the
configuration and the measured test accuracy), each written atomically, the JSON last.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from practice_torch.data import cache_dir, get_dataset, get_info, stacked
from practice_torch.engine import RunError
from practice_torch.engine.checkpoint import atomic_write
from practice_torch.engine.threads import ThreadCount
from practice_torch.progress import progress

FORMAT = "generative-twins/feature-network-1"


class FeatureNetworkError(RunError):
    """No feature network for this data set, or a corrupt cache: one line, and the CLI exits with 2."""


@dataclass(frozen=True)
class FeatureConfig:
    """The classifier and its training. Each block: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool (halving the image)."""

    channels: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128  # width of the penultimate layer: the features
    dropout: float = 0.2
    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


CONFIGS = {
    "fashion_mnist": FeatureConfig(),
    "mnist": FeatureConfig(epochs=2),
    "cifar10": FeatureConfig(channels=(64, 128, 256), feature_dim=256, epochs=15),
    "digits": FeatureConfig(channels=(16, 32), feature_dim=64, dropout=0.1, epochs=15, batch_size=64),
    "spoken_digits": FeatureConfig(epochs=6, batch_size=64),  # 1 900 log-mel pictures of 64 x 64: 100% by epoch 4
}


# Audio data sets whose classifier reads log-mel pictures: name -> the data view that gives them (normalised log-mel)
AUDIO_VIEWS = {"spoken_digits": "mel"}


def feature_shape(info) -> tuple[int, ...]:
    """The feature network's input shape for a data set: its image shape, or (1, 64, 64) log-mel pictures."""
    if info.name in AUDIO_VIEWS:
        from practice_torch.data.audio import FRAMES, N_MELS

        return (1, N_MELS, FRAMES)
    return tuple(info.shape)


def feature_pictures(name: str, x: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
    """What data set ``name``'s feature network reads: images unchanged; for an audio set, waveforms (N, T) or
    (N, 1, T) at ``sample_rate`` (default the data's rate) -> log-mel pictures (N, 1, 64, 64) in [0, 1], padded
    or cut to one second at 16 kHz as the data's clips are."""
    if name not in AUDIO_VIEWS:
        return x
    import torchaudio

    from practice_torch.data.audio import SAMPLE_RATE, log_mel, mel_picture

    wave = x.reshape(len(x), -1).float()
    if sample_rate and sample_rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, sample_rate, SAMPLE_RATE)
    wave = F.pad(wave, (0, max(0, SAMPLE_RATE - wave.shape[-1])))[:, :SAMPLE_RATE]
    return mel_picture(log_mel(wave))[:, None]


class FeatureNetwork(nn.Module):
    """x: (N, C, H, W) in [0, 1] -> logits (N, classes); ``features`` the penultimate ReLU layer (N, feature_dim)."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, channels=(16, 32, 64),
                 feature_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        c, h, w = image_shape
        blocks = []
        for width in channels:
            blocks += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"{len(channels)} pooling blocks do not fit {image_shape[1]}x{image_shape[2]} images")
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"the feature network takes images of shape {self.image_shape}, got {tuple(x.shape[1:])}")
        return self.embed(self.blocks(x - 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(y|x) (N, classes): the softmax of the logits."""
        return F.softmax(self(x), dim=-1)


@torch.no_grad()
def embed(net: FeatureNetwork, images: torch.Tensor, batch_size: int = 500, desc: str = "features"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, d), probabilities (N, classes)) of images (N, C, H, W) in [0, 1], in batches, on the net's device."""
    device = next(net.parameters()).device
    feats, probs = [], []
    for batch in progress(images.split(batch_size), desc=desc, leave=False, disable=len(images) <= batch_size):
        h = net.features(batch.to(device))
        feats.append(h.cpu())
        probs.append(F.softmax(net.head(h), dim=-1).cpu())
    return torch.cat(feats), torch.cat(probs)


# Training and the cache --------------------------------------------------------------------------------------
def check_dataset(name: str):
    """The registry entry of a labelled image data set (or an audio set of ``AUDIO_VIEWS``); FeatureNetworkError (one
    line) for anything else."""
    try:
        info = get_info(name)
    except KeyError as exc:
        raise FeatureNetworkError(exc.args[0]) from None
    if name not in AUDIO_VIEWS and (info.modality != "image" or len(info.shape) != 3):
        extra = f" and the audio sets {', '.join(sorted(AUDIO_VIEWS))}"
        raise FeatureNetworkError(f"feature networks are for image data sets{extra}; {name} is {info.modality} data")
    if not info.num_classes:
        raise FeatureNetworkError(f"a feature network is a classifier and {name} has no class labels")
    return info


def cache_paths(name: str) -> tuple[Path, Path]:
    folder = cache_dir() / "features"
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def _split(name: str, split: str, data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs of the feature network, labels) of a split: images, or an audio set's log-mel pictures."""
    if name not in AUDIO_VIEWS:
        return stacked(get_dataset(name, split, data_dir))[:2]
    from practice_torch.data.audio import mel_picture

    x, y = stacked(get_dataset(name, split, data_dir, view=AUDIO_VIEWS[name]))[:2]
    return mel_picture(x), y


@torch.no_grad()
def accuracy(net: FeatureNetwork, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    device = next(net.parameters()).device
    correct = sum((net(xb.to(device)).argmax(-1).cpu() == yb).sum().item()
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    return correct / len(y)


@torch.enable_grad()  # called from evaluations that run under torch.no_grad() when the cache lacks the network
def train_feature_network(name: str, data_dir: str | Path | None = None, device: str | torch.device = "cpu",
                          config: FeatureConfig | None = None, notice: str | None = None) -> tuple[FeatureNetwork, dict]:
    """Train the classifier of data set ``name`` on its train split (AdamW, one-cycle LR, a progress bar), measure it
    on the test split and cache it. Returns (net in eval mode, its record: config, test accuracy, seconds).
    ``notice``: a line printed on stderr once the data are loaded, before training."""
    info = check_dataset(name)
    config = config or CONFIGS.get(name, FeatureConfig())
    x, y = _split(name, "train", data_dir)
    x_test, y_test = _split(name, "test", data_dir)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    torch.manual_seed(config.seed)
    shape = feature_shape(info)
    net = FeatureNetwork(shape, info.num_classes, config.channels, config.feature_dim, config.dropout).to(device)
    order = torch.Generator().manual_seed(config.seed)
    batches = [rows for _ in range(config.epochs)
               for rows in torch.randperm(len(x), generator=order).split(config.batch_size)]
    start = time.perf_counter()
    threads = ThreadCount(adaptive=torch.device(device).type == "cpu")  # the cores other processes leave free
    with progress(total=len(batches), desc=f"feature network ({name})", unit="step") as bar:

        def report(loss: torch.Tensor) -> None:
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if resized := threads.update():
                bar.write(f"feature network: {resized}", file=sys.stderr)

        fit_classifier(net, x, y, batches, config, device, report)
    threads.restore()
    record = {"format": FORMAT, "dataset": name, "test_accuracy": accuracy(net, x_test, y_test),
              "test_examples": len(y_test), "train_examples": len(y), "seconds": time.perf_counter() - start,
              "image_shape": list(shape), "num_classes": info.num_classes, "config": dataclasses.asdict(config)}
    save_feature_network(net, record)
    return net, record


def fit_classifier(net: FeatureNetwork, x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor],
                   config: FeatureConfig, device: str | torch.device = "cpu", report=None) -> FeatureNetwork:
    """Train ``net`` on (x (N, C, H, W), y (N,)) by cross-entropy, one AdamW step per batch of row indices in
    ``batches`` under a one-cycle learning rate over them all (``config``'s lr and weight decay); ``report(loss)``
    after each step. Returns it in eval mode: the feature networks' training, and the augmentation benchmark's."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=len(batches))
    net.train()
    for rows in batches:
        loss = F.cross_entropy(net(x[rows].to(device)), y[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if report is not None:
            report(loss)
    return net.eval()


def save_feature_network(net: FeatureNetwork, record: dict) -> None:
    weights_path, record_path = cache_paths(record["dataset"])
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}
    metadata = {"format": FORMAT, "dataset": record["dataset"]}
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def load_feature_network(name: str, device: str | torch.device = "cpu") -> tuple[FeatureNetwork, dict] | None:
    """The cached (net, record) of data set ``name``; None when there is none; FeatureNetworkError when corrupt."""
    weights_path, record_path = cache_paths(name)
    if not record_path.is_file() or not weights_path.is_file():
        return None
    retrain = f"retrain it with `python -m practice_torch features {name} --retrain`"
    try:
        record = json.loads(record_path.read_text())
        config = FeatureConfig(**{**record["config"], "channels": tuple(record["config"]["channels"])})
        net = FeatureNetwork(tuple(record["image_shape"]), record["num_classes"], config.channels, config.feature_dim,
                             config.dropout)
        with safe_open(str(weights_path), framework="pt") as f:
            if (f.metadata() or {}).get("format") != FORMAT:
                raise ValueError("not a feature network")
            weights = {k: f.get_tensor(k) for k in f.keys()}
        net.load_state_dict(weights)
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError, OSError):
        raise FeatureNetworkError(f"the cached feature network for {name} ({weights_path.parent}) is corrupt: "
                                  f"{retrain}") from None
    return net.to(device).eval(), record


def feature_network(dataset: str, data_dir: str | Path | None = None, device: str | torch.device = "cpu",
                    retrain: bool = False) -> FeatureNetwork:
    """The cached feature network of ``dataset`` on ``device``, in eval mode; trained first (with a one-line
    notice on stderr) when there is none or ``retrain``. Its ``test_accuracy`` attribute is the measured one."""
    check_dataset(dataset)
    loaded = None if retrain else load_feature_network(dataset, device)
    folder = cache_paths(dataset)[0].parent
    ahead = f"(`python -m practice_torch features {dataset}` does this ahead of time)"
    notice = None if retrain else f"no feature network for {dataset} in {folder}: training one now {ahead}"
    current = json.loads(json.dumps(dataclasses.asdict(CONFIGS.get(dataset, FeatureConfig()))))  # tuples as lists
    if loaded is not None and loaded[1]["config"] != current:
        # metrics are only comparable under one feature network: a cache from another configuration is replaced
        loaded, notice = None, f"the cached feature network for {dataset} has another configuration: retraining {ahead}"
    if loaded is None:
        loaded = train_feature_network(dataset, data_dir, device, notice=notice)
    net, record = loaded
    net.test_accuracy = record["test_accuracy"]
    return net
