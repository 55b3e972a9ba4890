"""The model interface and the registry of trainable models.

The training engine (``practice_torch.engine``) knows nothing of any model; a model module knows
nothing of the engine beyond this interface. A module ``practice_torch/<topic>.py`` becomes
trainable with ``python -m practice_torch train <topic>`` by ending with a section that provides
what ``ModelModule`` lists, and one line in ``MODELS`` below.

The engine owns every random number: it passes a ``torch.Generator`` (on CPU) to ``draw_noise``,
``sample`` and ``evaluate``, and saves its state in each checkpoint, so a resumed run is exact.
Under torchrun the noise of the whole global batch is drawn on every rank and each rank keeps its
rows, so any number of processes computes the same step.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from practice_torch.engine import RunError

MODELS = {
    "vae": ("practice_torch.vae", "variational autoencoder: MLP or conv, beta-VAE, conditional (images)"),
    "change_of_variables": ("practice_torch.change_of_variables", "elementwise monotone flow + LU mixing, MLE (1-D, 2-D)"),
    "f_divergence": ("practice_torch.f_divergence",
                     "f-GAN: variational divergence minimisation, six f-divergences (2-D, images)"),
    "mixture_em": ("practice_torch.mixture_em", "Gaussian mixture fitted by EM, full or diagonal covariances (2-D, images)"),
    "ddpm": ("practice_torch.ddpm", "DDPM: U-Net (images, mel spectrograms) or MLP (2-D), DDPM/DDIM samplers, CFG"),
    "guidance": ("practice_torch.guidance", "noise-aware classifier p(y|x_t, t) for classifier guidance (images)"),
    "latent_diffusion": ("practice_torch.latent_diffusion", "class-conditional DDPM on scaled latents of a frozen VAE, CFG"),
    "score": ("practice_torch.score", "NCSN: noise-conditional score net, DSM, annealed Langevin (2-D MLP, image U-Net)"),
    "coupling_flows": ("practice_torch.coupling_flows", "RealNVP/Glow: multi-scale coupling flow, dequantised bits/dim"),
    "flow_matching": ("practice_torch.flow_matching", "CFM on OT paths, minibatch OT, ODE sampler (2-D, images, galaxies)"),
    "cnf": ("practice_torch.cnf", "FFJORD: continuous normalizing flow, Hutchinson trace, dopri5/adjoint (2-D, 1-D)"),
    "language_model": ("practice_torch.language_model", "character Transformer or LSTM, every decoding rule, BPE (text)"),
    "pixelcnn": ("practice_torch.pixelcnn", "gated PixelCNN: masked convs, exact NLL in bits/dim (binarised, 8-bit images)"),
    "wavenet": ("practice_torch.wavenet", "WaveNet: gated dilated causal convs, mu-law softmax, digit-conditioned (audio)"),
}


@dataclass(frozen=True)
class Artefact:
    """Something a person looks at. images: (N, C, H, W) in [0, 1], a grid of ``nrow`` per row;
    audio: (N, T) waveforms in [-1, 1] at ``sample_rate``; text: a list of strings. ``labels``: (N,) int64, the
    class each item was drawn for by a class-conditional sampler (``eval`` then reports the feature network's
    accuracy on them), or None."""

    name: str
    kind: Literal["images", "audio", "text"]
    data: Any
    nrow: int = 8
    sample_rate: int = 16_000
    labels: Any = None


class ModelModule(Protocol):
    """What a model module provides (module-level names).

    Optional, beside these: ``update(net, batch, noise) -> (loss, terms)``, a closed-form parameter update (EM)
    in place of the gradient step. When a model module defines it, the engine calls it under torch.no_grad()
    instead of backward, clipping and the optimizer step, and logs its loss and terms as it logs ``loss``'s.
    It changes the net in place (parameters or buffers: all are checkpointed), so the net may have no trainable
    parameters at all. Under torchrun it must all-reduce its sufficient statistics itself
    (torch.distributed.all_reduce), so that every rank makes the same update: there is no DDP around it.
    Optional too: ``EVAL_SAMPLES: int``, the default number of samples of ``eval``'s sample metrics for a model
    whose sampler is slow (an autoregressive one draws pixel by pixel); otherwise up to 10 000.
    """

    Config: type
    """A dataclass of the model's hyperparameters: the run's ``model.*`` keys (``--set model.KEY=VALUE``)."""

    def default_config(self, preset: str, dataset: str | None = None) -> Any:
        """The whole ``engine.config.RunConfig`` (model, data and train sections) of preset 'quick' or 'full',
        on ``dataset`` (None: the model's default data set); may raise ValueError for an unknown preset."""

    def build(self, config: Any, data: Any) -> nn.Module:
        """The network for ``config`` on data set ``data`` (a ``practice_torch.data.DatasetInfo``: shape,
        number of classes). Raises ValueError, with one line, for a combination it cannot build."""

    def draw_noise(self, net: nn.Module, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """All the randomness of one ``loss`` on n examples, drawn from ``generator``; each tensor (n, ...)."""

    def loss(self, net: nn.Module, batch: tuple[torch.Tensor, ...], noise: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the training loss, a per-example mean: a scalar; named scalar terms to log). ``batch`` is the data
        set's (x, y) for b examples and ``noise`` the matching b rows of ``draw_noise``."""

    def sample(self, net: nn.Module, config: Any, n: int, generator: torch.Generator,
               examples: tuple[torch.Tensor, ...] | None) -> list[Artefact]:
        """About n samples, first of all (named 'samples'), then whatever else shows the model at work
        (reconstructions of ``examples``, held-out (x, y), when given)."""

    def evaluate(self, net: nn.Module, config: Any, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
        """The model's held-out metrics on ``dataset`` (likelihoods, bounds, ...) as plain numbers."""


INTERFACE = ("Config", "default_config", "build", "draw_noise", "loss", "sample", "evaluate")


class UnknownModel(RunError):
    pass


def get_model(name: str) -> ModelModule:
    """The module registered as ``name``; UnknownModel (one line, with the choices) otherwise."""
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    module: ModuleType = importlib.import_module(MODELS[name][0])
    missing = [attr for attr in INTERFACE if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"{module.__name__} does not implement the model interface: no {', '.join(missing)}")
    return module  # type: ignore[return-value]
