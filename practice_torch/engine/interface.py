"""The model interface: what a model module gives the training engine (``practice_torch.models`` looks modules up).

The engine owns every random number: it passes a ``torch.Generator`` (on CPU) to ``draw_noise``,
``sample`` and ``evaluate``, and saves its state in each checkpoint, so a resumed run is exact.
Under torchrun the noise of the whole global batch is drawn on every rank and each rank keeps its
rows, so any number of processes computes the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["INTERFACE", "Artefact", "ModelModule"]


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

    Optional, beside these: ``update(net, config, batch, noise, step) -> (loss, terms)``, a closed-form parameter update (EM)
    in place of the gradient step. When a model module defines it, the engine calls it under torch.no_grad()
    instead of backward, clipping and the optimizer step, and logs its loss and terms as it logs ``loss``'s.
    It changes the net in place (parameters or buffers: all are checkpointed), so the net may have no trainable
    parameters at all. Under torchrun it must all-reduce its sufficient statistics itself
    (torch.distributed.all_reduce), so that every rank makes the same update: there is no DDP around it.
    Instead of ``loss``, a model whose step is more than one loss (a GAN's two players, PPO's iteration) writes the
    step itself, and a model that trains on a control task (``data/control.py``: an environment) must:
    ``players(net, config) -> {name: Player}`` and ``train_step(net, config, step, run) -> (loss, terms)`` on the
    engine's utilities (``engine/players.py``); ``train.steps`` then counts its ``train_step`` calls. A model that
    has both a ``loss`` and its own step says which a run takes by ``own_step(config) -> bool`` (the VAE trains by
    its loss, FactorVAE by its two players; ``writes_own_step``).
    ``BUILDS_ON = {key: model}``: the model keys that name trained runs this model builds on (a fine-tuning run's
    ``reference``, a language_model run); ``build(config, data, parents)`` then receives them as
    ``engine.runs.Parent``s, opened by ``practice_torch.models`` when the run starts (with their networks) and read
    off the run's builds_on.json when it is reopened (without); ``inherit(config, parents) -> config`` gives the
    model keys it takes from them, resolved once and recorded in config.json.
    ``domains(config, train_set) -> {name: examples (N, ...)}``: unpaired sets of training examples a step draws from
    beside the split's batches (CycleGAN's two domains, DANN's unlabelled target domain), built once from the training
    split the engine loaded (a TensorDataset carrying ``run_data``), so the run's data options hold for them too. The
    engine keeps them (on the device when they fit), draws each step's rows of each uniformly with replacement from
    its noise generator, before ``draw_noise``, and appends them to the batch in their order: (x, y, domain 1, ...).
    A domain given as a tuple (examples, labels) is labelled: its tensors share their rows, and the batch holds the
    tuple (DANN's train-on-target bound).
    ``USE: tuple[str, ...]``: the ``model.*`` keys ``sample`` and ``eval`` read, the only ones their ``--set`` accepts
    (the others are fixed by the checkpoint or read by the training step only).
    ``ARCHITECTURE: tuple[str, ...]``: the ``model.*`` keys the checkpoint fixes; ``--resume`` refuses a change to
    these only and ``sample``/``eval --set`` refuse them (without it every model key is fixed on resume).
    ``RANGES: dict[str, str]``: the range of every numeric ``model.*`` key, a name of ``engine.config.RULES``
    ("positive", "at least 0", "in [0, 1)", ...), to which ``engine.config.check_model`` holds every config made from
    overrides (a new run, a resumed one, ``sample``/``eval --set``); a numeric key without one fails the tests.
    ``CHECKPOINT_VERSIONS = {version: what changed}``: a model whose weights or training state changed shape
    counts versions; a checkpoint carries the version it was written at, and one of another version is refused in
    one line (a checkpoint without one is version 1).
    Optional too: ``EVAL_SAMPLES: int``, the default number of samples of ``eval``'s sample metrics for a model
    whose sampler is slow (an autoregressive one draws pixel by pixel); otherwise up to 10 000.
    ``METRIC_NOTES = {metric: note}``: what ``eval`` prints beside a metric of ``evaluate`` (a format string of the
    metrics: what it measured on how many examples), where its name alone would leave a reader guessing. And
    ``validate(net, config, batch) -> dict[str, Tensor]``: held-out terms (e.g. ``val_loss``) on a batch of the validation
    split, which the engine computes at every log step (``train.val_batch`` examples, in eval mode, without
    gradients) and logs beside the training loss.
    """

    HEADLINE: tuple[tuple[str, str, str], ...]
    """The results table's figure: (``evaluate``'s key, its label, its units) in order of preference; a run's row
    (``practice_torch.results``) shows the first one its evaluation reported."""

    Config: type
    """A dataclass of the model's hyperparameters: the run's ``model.*`` keys (``--set model.KEY=VALUE``)."""

    def default_config(self, preset: str, dataset: str | None = None) -> Any:
        """The whole ``engine.config.RunConfig`` (model, data and train sections) of preset 'quick' or 'full',
        on ``dataset`` (None: the model's default data set); may raise ValueError for an unknown preset."""

    def build(self, config: Any, data: Any) -> nn.Module:
        """The network for ``config`` on data set ``data`` (a ``practice_torch.data.DatasetInfo``: shape,
        number of classes). Raises ValueError, with one line, for a combination it cannot build."""

    def draw_noise(self, net: nn.Module, config: Any, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """All the randomness of one ``loss`` on n examples, drawn from ``generator``; each tensor (n, ...)."""

    def loss(self, net: nn.Module, config: Any, batch: tuple[torch.Tensor, ...], noise: dict[str, torch.Tensor],
             step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the training loss, a per-example mean: a scalar; named scalar terms to log). Everything the step needs
        comes in explicitly: ``config`` is the run's model config (``Config``), ``batch`` the data set's (x, y) for b
        examples, ``noise`` the matching b rows of ``draw_noise`` and ``step`` the number of optimizer steps taken
        before this one (0 first; a resumed run continues the count). The network holds weights and buffers only,
        never a copy of the config."""

    def sample(self, net: nn.Module, config: Any, n: int, generator: torch.Generator,
               examples: tuple[torch.Tensor, ...] | None) -> list[Artefact]:
        """About n samples, first of all (named 'samples'), then whatever else shows the model at work
        (reconstructions of ``examples``, held-out (x, y), when given: ``engine.runs.HeldOut``, which loads another
        split as the run loads its data, ``sibling_split(examples, "test")``). A model that draws no samples (an
        autoencoder) pictures ``examples`` only, and returns [] without them."""

    def evaluate(self, net: nn.Module, config: Any, dataset: Dataset, generator: torch.Generator) -> dict[str, float]:
        """The model's held-out metrics on ``dataset`` (likelihoods, bounds, ...) as plain numbers. ``dataset`` is
        the split the engine loaded with the run's data options; an evaluation that needs another split (a GAN's
        training images) loads it the same way, ``engine.runs.sibling_split(dataset, "train")``, never by name. An
        evaluation that draws samples of its own (a GAN's reference FIDs) may take a keyword ``samples``: eval's
        ``--samples``, the most it draws (None: its default)."""


INTERFACE = ("HEADLINE", "Config", "default_config", "build", "draw_noise", "sample", "evaluate")
STEPS = (("loss",), ("players", "train_step"))  # a model gives the engine its loss, or its players and its own step


def writes_own_step(module, config) -> bool:
    """Whether a run of ``module`` with model config ``config`` trains by the model's own ``train_step`` (its players)
    rather than by the engine's step on its ``loss``: always, for a model without a loss; for a model with both (the
    VAE, whose FactorVAE is two players), as its ``own_step(config)`` says."""
    if not hasattr(module, "train_step"):
        return False
    if not hasattr(module, "loss"):
        return True
    return bool(module.own_step(config))


def missing_names(module) -> list[str]:
    """What ``module`` lacks of the interface: the names every model has, and ``loss`` unless it writes its own
    step (``players`` and ``train_step``, ``engine/players.py``)."""
    missing = [name for name in INTERFACE if not hasattr(module, name)]
    if not any(all(hasattr(module, name) for name in step) for step in STEPS):
        missing.append("loss (or players and train_step)")
    return missing
