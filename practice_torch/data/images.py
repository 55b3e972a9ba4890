"""Image data sets: Fashion-MNIST (Debian package), MNIST and CIFAR-10 (torchvision), 8x8 digits.

x: float32 (C, H, W) in [0, 1]; y: int64 class label.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from practice_torch.data import DatasetInfo, DatasetMissing, cache_dir, register
from practice_torch.data.splits import split_indices, three_way

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@functools.lru_cache(maxsize=4)
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic (2 zero bytes, dtype code 0x08 = uint8, ndim), big-endian dims.
    Read once a process (the four files of Fashion-MNIST: the train and val splits both index the official train
    file, and unzipping its images takes about 0.3 s), read-only: each split copies what it indexes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem, folder / "FashionMNIST" / "raw" / stem,
                      folder / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _as_dataset(images: np.ndarray, labels: np.ndarray, idx: np.ndarray | None = None) -> TensorDataset:
    if idx is not None:
        images, labels = images[idx], labels[idx]
    x = torch.from_numpy(np.array(images)).float().div_(255.0)  # a copy: IDX buffers are read-only
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def load_fashion_mnist(split: str, data_dir: Path | None = None, limit: int | None = None) -> Dataset:
    """70 000 28x28 grey images in 10 classes. train: 51 000 and val: 9 000 of the official 60 000 (fixed
    permutation, seed 0); test: the official 10 000. ``limit`` keeps the first N of the split. The IDX files are
    read from ``data_dir``, else $GENERATIVE_TWINS_DATA/fashion-mnist, else the Debian package's folder."""
    folders = [f for f in (data_dir, cache_dir() / "fashion-mnist", DEBIAN_FASHION) if f is not None]
    prefix = "t10k" if split == "test" else "train"
    for folder in folders:
        images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images_path and labels_path:
            images, labels = read_idx(images_path), read_idx(labels_path)
            idx = None if split == "test" else split_indices(len(labels), split)
            if limit is not None:
                idx = (np.arange(len(labels)) if idx is None else idx)[:limit]
            return _as_dataset(images, labels, idx)
    raise DatasetMissing("fashion_mnist is not on this machine: `sudo apt-get install dataset-fashion-mnist` "
                         "(or `make data`), put the IDX files in $GENERATIVE_TWINS_DATA/fashion-mnist, or pass "
                         "--data-dir with them")


def _torchvision(cls_name: str, name: str, split: str, data_dir: Path | None, download: bool,
                 limit: int | None) -> Dataset:
    import torchvision

    if data_dir is None and not download:
        raise DatasetMissing(f"{name} loads through torchvision: pass --data-dir DIR holding it "
                             f"(or add --set data.download=true to download it there)")
    root = data_dir or Path.home() / ".cache" / "generative-twins" / "torchvision"
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=str(root), train=split != "test", download=download)
    except RuntimeError as exc:
        raise DatasetMissing(f"{name} not found under {root} ({exc}); add --set data.download=true to fetch it") from None
    images = np.asarray(ds.data)
    if images.ndim == 4:  # CIFAR: (N, H, W, C) -> (N, C, H, W)
        images = images.transpose(0, 3, 1, 2)
    labels = np.asarray(ds.targets)
    idx = None if split == "test" else split_indices(len(labels), split)
    if limit is not None:
        idx = (np.arange(len(labels)) if idx is None else idx)[:limit]
    return _as_dataset(images, labels, idx)


def _torchvision_loader(cls_name: str, name: str):
    """A registry ``load`` for a torchvision data set (MNIST, CIFAR10) read from --data-dir or downloaded."""
    def load(split: str, data_dir: Path | None = None, download: bool = False, limit: int | None = None) -> Dataset:
        return _torchvision(cls_name, name, split, data_dir, download, limit)
    return load


@functools.cache
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's copy of the UCI 8x8 digits, read from the file its ``load_digits`` reads (``digits.csv.gz``:
    64 pixel counts 0..16 and the label, one row per image), without importing scikit-learn, which takes seconds
    and most runs on digits need nothing else of. Read once a process (each split indexes it), read-only.
    -> (images (1797, 8, 8) float64, labels (1797,) int64)."""
    spec = importlib.util.find_spec("sklearn")  # the installed package's folder; finding it runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissing("the digits data set ships with scikit-learn: pip install scikit-learn")
    with gzip.open(Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    images, labels = rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_digits_8x8(split: str, data_dir: Path | None = None, limit: int | None = None) -> Dataset:
    """scikit-learn's 1 797 8x8 handwritten digits (UCI), values 0..16 scaled to [0, 1]; 70/15/15 split."""
    images, labels = sklearn_digits()
    idx = three_way(len(labels), split)[:limit]
    x = torch.from_numpy(images[idx] / 16.0).float().unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels[idx]))


register(DatasetInfo(
    "fashion_mnist", "image", (1, 28, 28), "float32", "[0, 1]", "class label 0-9 (T-shirt/top ... Ankle boot)",
    "train 51 000 / val 9 000 from the official train set (seed 0); test: the official 10 000",
    "Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or --data-dir",
    load_fashion_mnist, num_classes=10))
register(DatasetInfo(
    "mnist", "image", (1, 28, 28), "float32", "[0, 1]", "digit 0-9",
    "train 51 000 / val 9 000 from the official train set (seed 0); test: the official 10 000",
    "torchvision MNIST from --data-dir (or downloaded with data.download=true)",
    _torchvision_loader("MNIST", "mnist"), num_classes=10))
register(DatasetInfo(
    "cifar10", "image", (3, 32, 32), "float32", "[0, 1]", "class label 0-9",
    "train 42 500 / val 7 500 from the official train set (seed 0); test: the official 10 000",
    "torchvision CIFAR10 from --data-dir (or downloaded with data.download=true)",
    _torchvision_loader("CIFAR10", "cifar10"), num_classes=10))
register(DatasetInfo(
    "digits", "image", (1, 8, 8), "float32", "[0, 1]", "digit 0-9",
    "70/15/15 of the 1 797 images (fixed permutation, seed 0)", "scikit-learn's digits.csv.gz (load_digits' file)",
    load_digits_8x8, num_classes=10))
