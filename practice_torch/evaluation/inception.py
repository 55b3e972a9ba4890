"""The standard FID network: Inception-v3's 2048-d pool features, from weights the user already has.

Nothing is downloaded: ``find_inception_weights(data_dir)`` looks in ``--data-dir`` (and its ``checkpoints/``
and ``hub/checkpoints/`` folders, torch.hub's layout) for

* ``pt_inception-2015-12-05-*.pth``: pytorch-fid's port of the TensorFlow FID Inception (the numbers papers
  report). Its blocks differ from torchvision's in two places, patched below as pytorch-fid does: the average
  pools of the A, C and first E blocks leave the zero padding out of the mean (TensorFlow's convention), and
  the last E block max-pools;
* ``inception_v3_google-*.pth``: torchvision's ImageNet weights (close to, not equal to, the standard FID).

Images in [0, 1] are replicated to 3 channels, resized to 299x299 (bilinear) and scaled to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv

from practice_torch.evaluation.features import FeatureNetworkError

PATTERNS = ("pt_inception-2015-12-05-*.pth", "inception_v3_google-*.pth")
SUBFOLDERS = (".", "checkpoints", "hub/checkpoints")
FID_CLASSES = 1008  # the 2015 TensorFlow graph's output layer


class FIDInceptionA(tv.InceptionA):
    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return outputs


class FIDInceptionC(tv.InceptionC):
    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return outputs


class FIDInceptionE1(tv.InceptionE):
    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return outputs


class FIDInceptionE2(tv.InceptionE):
    def _forward(self, x):
        outputs = super()._forward(x)
        outputs[-1] = self.branch_pool(F.max_pool2d(x, 3, stride=1, padding=1))
        return outputs


def fid_inception_v3(init_weights: bool = False) -> tv.Inception3:
    """pytorch-fid's FID Inception: torchvision's Inception3 (1008 classes, no auxiliary head), blocks patched."""
    net = tv.Inception3(num_classes=FID_CLASSES, aux_logits=False, init_weights=init_weights)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = FIDInceptionA(192, 32), FIDInceptionA(256, 64), FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = FIDInceptionC(768, channels_7x7=128), FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d, net.Mixed_6e = FIDInceptionC(768, channels_7x7=160), FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b, net.Mixed_7c = FIDInceptionE1(1280), FIDInceptionE2(2048)
    return net


class InceptionFeatures(nn.Module):
    """x: (N, 1 or 3, H, W) in [0, 1] -> the 2048-d average-pool features (N, 2048)."""

    BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
              "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
              "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")

    def __init__(self, net: tv.Inception3, source: str):
        super().__init__()
        self.net, self.source = net, source

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = 2.0 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1.0
        for name in self.BLOCKS:
            x = getattr(self.net, name)(x)
        return torch.flatten(x, 1)


def find_inception_weights(data_dir: str | Path | None) -> Path | None:
    """The first Inception-v3 weight file in ``data_dir`` (pytorch-fid's preferred), or None."""
    if data_dir is None:
        return None
    for pattern in PATTERNS:
        for sub in SUBFOLDERS:
            found = sorted((Path(data_dir) / sub).glob(pattern))
            if found:
                return found[0]
    return None


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionFeatures:
    """Inception-v3 features from a state_dict file: pytorch-fid's FID Inception (1008 classes) or torchvision's
    ImageNet Inception (1000 classes, auxiliary head). FeatureNetworkError (one line) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FeatureNetworkError(f"no Inception-v3 weights at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        classes = state["fc.weight"].shape[0]
        if classes == FID_CLASSES:
            net, source = fid_inception_v3(), "pytorch-fid FID Inception"
        else:
            net = tv.Inception3(num_classes=classes, aux_logits="AuxLogits.fc.weight" in state, init_weights=False)
            source = "torchvision Inception-v3"
        net.load_state_dict(state)
    except Exception as exc:  # a truncated file, a foreign pickle, other keys or shapes: all one message
        raise FeatureNetworkError(f"{path} holds no Inception-v3 state_dict ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:80] if str(exc) else ''})") from None
    return InceptionFeatures(net, f"{source} ({path.name})").to(device).eval()
