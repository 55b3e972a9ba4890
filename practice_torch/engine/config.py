"""Run configuration: three sections of plain dataclasses, presets, and typed ``--set key=value`` overrides.

    model.*   the model's own ``Config`` dataclass (``practice_torch.models``)
    data.*    ``DataConfig``: which data set, where, how much of it
    train.*   ``TrainConfig``: optimisation, precision, device, checkpoints and logging

A model's ``default_config(preset)`` returns a whole ``RunConfig``; ``apply_overrides`` then edits it
with strings such as ``model.latent_dim=32`` or ``train.lr=1e-3``, each parsed by the type of its
dataclass field; ``check_train`` and ``check_model`` then hold every number to its range (``TRAIN_RANGES``, and the
``RANGES`` each model declares beside its ``Config``). ``to_dict``/``from_dict`` are the ``config.json`` of a run directory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from practice_torch.engine import RunError

PRESETS = {
    "quick": "minutes on a 2-core CPU (each model's steps and measured time above); recognisable samples (the default)",
    "full": "GPU scale: a bigger network, many more steps, bf16, torch.compile",
}


class ConfigError(RunError):
    """A malformed or unknown override, or a value a section rejects."""


@dataclass
class DataConfig:
    name: str
    limit: int | None = None  # keep the first N training examples
    data_dir: str | None = None  # where standard sets (torchvision, ...) live
    download: bool = False  # let torchvision fetch a standard set into data_dir
    view: str | None = None  # another form of the same data, e.g. spoken_digits view=mel (log-mel spectrograms)
    classes: tuple[int, ...] | None = None  # keep only these labels in every split, e.g. 0 (T-shirts only) or 0,6


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128  # the global batch: split evenly over the ranks of a torchrun; 0 = the whole split (EM)
    lr: float = 1e-3  # peak learning rate
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: SGD with momentum (Ganin et al.'s DANN), weight_decay as L2
    momentum: float = 0.9  # sgd's momentum (AdamW reads betas instead)
    weight_decay: float = 0.0  # AdamW's decoupled decay
    betas: tuple[float, ...] = (0.9, 0.999)  # AdamW's (beta1, beta2); GANs often want beta1 = 0.5 or 0
    warmup_steps: int = 100  # linear warmup from 0 to lr, then the schedule's decay
    # cosine to min_lr_ratio * lr; annealing: (1 + 10 p)^-0.75; exponential: lr for half the steps, then to min_lr_ratio
    schedule: Literal["cosine", "annealing", "exponential"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine's and exponential's floor
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    ema_decay: float = 0.0  # 0 = no EMA weights; else e.g. 0.999 (samples and eval then use the EMA)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = torch.autocast (CPU or CUDA)
    compile: bool = False  # torch.compile the loss
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    channels_last: bool = False  # NHWC memory format for conv models on 4-D batches
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads of this run (0: torch's default, one per core)
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    sync_every: int = 0  # steps between the host's reads of the logged values (0: every step on a CPU, log steps on a GPU)
    val_batch: int = 0  # validation examples scored at each log step by a model's ``validate`` hook; 0 = none
    early_stop: str = ""  # a ``validate`` term (lower is better) that stops the run when it stops improving; "" = none
    patience: int = 10  # early stopping: log steps without a new best of ``early_stop`` before the run stops
    samples: int = 64  # how many samples the run writes at the end (0: none; `practice_torch sample RUN` draws them)
    rng: Literal["torch", "jax"] = "torch"  # what draws a step's noise: the engine's torch generator, or jax.random
    # (practice_jax train only: a JAX run that need not agree with a PyTorch one)


# What each range's name means: the vocabulary of ``TRAIN_RANGES`` and of each model's ``RANGES`` (``check_model``).
RULES = {"positive": lambda v: v > 0, "at least 0": lambda v: v >= 0, "at least -1": lambda v: v >= -1,
         "at least 2": lambda v: v >= 2, "1 or 2": lambda v: v in (1, 2), "in [0, 1)": lambda v: 0 <= v < 1,
         "in [0, 1]": lambda v: 0 <= v <= 1, "in (0, 1)": lambda v: 0 < v < 1, "in (0, 1]": lambda v: 0 < v <= 1,
         "in (0, 0.5)": lambda v: 0 < v < 0.5}
# The range of every numeric train key, checked by ``check_train`` (a key without one is a test failure).
TRAIN_RANGES = {
    **dict.fromkeys(("steps", "lr", "checkpoint_every", "log_every", "patience"), "positive"),
    **dict.fromkeys(("batch_size", "threads", "warmup_steps", "weight_decay", "grad_clip", "val_batch", "sync_every",
                     "seed", "samples"), "at least 0"),
    "betas": "in [0, 1)", "ema_decay": "in [0, 1)", "min_lr_ratio": "in [0, 1]", "momentum": "in [0, 1)",
}


def check_train(train: TrainConfig) -> None:
    """Values a type cannot rule out: every number finite and in its range (``TRAIN_RANGES``); two betas; early
    stopping with something to score (ConfigError, one line: the first problem)."""
    problems = [f"train.{key} must be {rule}, got {getattr(train, key)}" for key, rule in TRAIN_RANGES.items()
                if key != "betas" and not (math.isfinite(getattr(train, key)) and RULES[rule](getattr(train, key)))]
    if len(train.betas) != 2 or not all(math.isfinite(b) and RULES[TRAIN_RANGES["betas"]](b) for b in train.betas):
        problems.append(f"train.betas must be two numbers in [0, 1), e.g. 0.5,0.999; got {train.betas}")
    if train.early_stop and not train.val_batch:
        problems.append(f"train.early_stop={train.early_stop} needs train.val_batch > 0 (the examples it scores)")
    if problems:
        raise ConfigError(problems[0])


def check_model(module: Any, model: Any) -> None:
    """Every number of ``model`` (a model section: the model module's ``Config``) finite and in the range the module
    declares for its key (its ``RANGES``, {key: a name of ``RULES``}; a key without one is a test failure), each
    number of a tuple; None passes where the key is optional (ConfigError, one line: the first problem). Called
    wherever a config is made from overrides: a new run and a resumed one in either trainer (``practice_torch.models``),
    ``sample`` and ``eval`` (``runs.load_trained``)."""
    ranges = getattr(module, "RANGES", {})
    for key in numeric_keys(type(model)):
        value, rule = getattr(model, key), ranges.get(key)
        numbers = value if isinstance(value, tuple) else () if value is None else (value,)
        if rule is not None and not all(math.isfinite(v) and RULES[rule](v) for v in numbers):
            each = " (each number)" if isinstance(value, tuple) else ""
            raise ConfigError(f"model.{key} must be {rule}{each}, got {value}")


def numeric_keys(section: type) -> dict[str, type]:
    """The numeric keys of a config dataclass and their number type, int or float: alone, in a tuple or optional
    (a bool is no number here)."""
    def number(hint: Any) -> type | None:
        if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple):
            inner = {a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)}
            return number(inner.pop()) if len(inner) == 1 else None
        return hint if hint in (int, float) else None

    hints = type_hints(section)
    return {f.name: kind for f in dataclasses.fields(section) if (kind := number(hints[f.name])) is not None}


@dataclass
class RunConfig:
    model_name: str
    model: Any  # the model module's Config dataclass
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def sections(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "train": self.train}


# Overrides, typed by the dataclass field -----------------------------------------------------------
def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """A copy of ``cfg`` with each ``section.key=value`` applied; raises ConfigError with one line."""
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model), data=dataclasses.replace(cfg.data),
                              train=dataclasses.replace(cfg.train))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed override {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        if text and not text.strip():  # not the empty value: a prompt of spaces is not the empty prompt
            raise ConfigError(f"override {item!r}: the value is spaces only; for an empty value write {key.strip()}=")
        section, key = _lookup(cfg, key.strip())
        setattr(section, key, parse_value(text.strip(), _field_types(section)[key], f"override {item!r}"))
    return cfg


def _lookup(cfg: RunConfig, dotted: str) -> tuple[Any, str]:
    name, _, key = dotted.partition(".")
    sections = cfg.sections()
    if name not in sections or not key:
        raise ConfigError(f"unknown config key {dotted!r}: keys look like model.KEY, data.KEY or train.KEY")
    section = sections[name]
    if key not in _field_types(section):
        new = RENAMED.get(dotted, "")
        if new.partition(".")[2] in _field_types(section):
            raise ConfigError(f"{dotted} is now called {new}: --set {new}=...")
        raise ConfigError(f"unknown config key {dotted!r}; {name} keys: {', '.join(_field_types(section))}")
    return section, key


@functools.cache
def type_hints(section: type) -> dict[str, Any]:
    """The resolved annotations of a config dataclass (read once: resolving the string annotations of a module with
    ``from __future__ import annotations`` costs milliseconds, and every override, check and config.json asks)."""
    return typing.get_type_hints(section)


def _field_types(section: Any) -> dict[str, Any]:
    hints = type_hints(type(section))
    return {f.name: hints[f.name] for f in dataclasses.fields(section)}


def parse_value(value: Any, annotation: Any, where: str) -> Any:
    """Convert ``value`` (a command-line string or a JSON value) to ``annotation``: int, float, bool, str,
    Literal[...], tuple[T, ...] ('32,64' or a JSON list) and ``T | None`` ('none')."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return parse_value(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        items = value if isinstance(value, list) else [v for v in str(value).strip("()[] ").split(",") if v.strip()]
        return tuple(parse_value(v.strip() if isinstance(v, str) else v, args[0], where) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, float) or annotation is str and not isinstance(value, str):
                raise ValueError
            parsed = annotation(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is float and not math.isfinite(parsed):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return parsed
    raise TypeError(f"config fields of type {annotation!r} are not supported")


# config.json -----------------------------------------------------------------------------------------
def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return {"model_name": cfg.model_name, **{name: dataclasses.asdict(s) for name, s in cfg.sections().items()}}


def from_dict(raw: dict[str, Any], model_config: type) -> RunConfig:
    """The inverse of ``to_dict``; every value is checked against its field's type."""
    try:
        sections = {name: _section_from_dict(cls, raw[name], name)
                    for name, cls in (("model", model_config), ("data", DataConfig), ("train", TrainConfig))}
        return RunConfig(model_name=raw["model_name"], **sections)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"config is missing or mistypes a section: {exc}") from None


# Keys older runs' config.json files hold and this code no longer reads, with why.
RETIRED = dict.fromkeys(("model.reference_step", "model.generator_step", "model.reward_model_step",
                         "model.vq_vae_step", "model.autoencoder_config"),
                        "a run built on another records it in builds_on.json")
# Keys older runs' config.json files hold under another name: read as the new one (one name per concept).
RENAMED = {"model.n_critic": "model.discriminator_steps",  # a GAN's, a BiGAN's, a CycleGAN's (a WGAN's stays n_critic)
           "model.log_mel": "model.mel"}  # the spoken digits' mel view, as data.view=mel names it


def renamed_key(dotted: str, names: set[str], values: dict[str, Any]) -> str:
    """A saved key's current name in a section with fields ``names``: the key itself, or its ``RENAMED`` name where
    the old one is no field of the section and the new one is (a WGAN keeps its own n_critic) and not also given."""
    key = dotted.partition(".")[2]
    new = RENAMED.get(dotted, "").partition(".")[2]
    return new if key not in names and new in names and new not in values else key


def _section_from_dict(cls: type, values: dict[str, Any], name: str) -> Any:
    hints = type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {renamed_key(f"{name}.{k}", names, values): v for k, v in values.items()}
    unknown = sorted(set(values) - names)
    if unknown:
        key = f"{name}.{unknown[0]}"
        if key in RETIRED:
            raise ConfigError(f"{key} is a key of an older version of this code ({RETIRED[key]}): train the run anew")
        raise ConfigError(f"unknown config key {key} (a run of another version of this code? train it anew)")
    return cls(**{k: parse_value(v, hints[k], f"{name}.{k}") for k, v in values.items()})


def incompatibilities(saved: RunConfig, requested: RunConfig, architecture: Sequence[str] | None = None) -> list[str]:
    """What a resumed run may not change: the model, the data set, the optimizer (its checkpointed state is of that
    kind) and what the checkpoint fixes of the model's keys: those in ``architecture`` (the model's
    ``ARCHITECTURE``), or every one when the model declares none."""
    problems = [] if saved.model_name == requested.model_name else [
        f"model: the run trains {saved.model_name!r}, not {requested.model_name!r}"]
    before, after = dataclasses.asdict(saved.model), dataclasses.asdict(requested.model)
    fixed = before if architecture is None else [k for k in before if k in architecture]
    problems += [f"model.{k}: the run has {before[k]!r}, asked for {after.get(k)!r}"
                 + (" (fixed by the checkpoint: the network and what its weights mean)" if architecture is not None else "")
                 for k in fixed if before[k] != after.get(k)]
    if saved.data.name != requested.data.name:
        problems.append(f"data.name: the run has {saved.data.name!r}, asked for {requested.data.name!r}")
    if saved.train.optimizer != requested.train.optimizer:
        problems.append(f"train.optimizer: the run has {saved.train.optimizer!r}, asked for "
                        f"{requested.train.optimizer!r} (its checkpoint holds that optimizer's state)")
    return problems


def derive_seed(seed: int, purpose: str) -> int:
    """An independent seed for each use of randomness (data order of an epoch, noise, samples, ...)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{purpose}".encode()).digest()[:8], "little") >> 1
