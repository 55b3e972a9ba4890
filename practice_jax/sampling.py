"""Sampling in JAX: ``python -m practice_jax sample RUN [--n N] [--seed S] [--out FILE] [--set model.KEY=VALUE]``.

What ``python -m practice_torch sample`` draws, computed in JAX, from a run trained by either backend (both write the
same run): the run opens as the engine opens it (``practice_torch.models.open_run``: its config, the ``--set``
overrides checked as PyTorch checks them, the newest weights, the EMA's where the run keeps one), the network's flax
twin is the trainer's (``practice_jax/<model>.py``: ``jax_twin``) and its weights cross by
``shared_specs.interop.torch_to_flax``. Each model's sampler is ``practice_jax/samplers/<model>.py``: the reverse
process as pure JAX functions of their noise, the noise drawn from the engine's generator
(``derive_seed(seed, "samples")``) in the PyTorch sampler's order, so that on the same weights and seed the samples
agree with PyTorch's to float32 rounding (dopri5: to its tolerances, diffrax's steps not torchdiffeq's;
``tests/test_jax_sample.py``):

* vae: decoder means of z ~ N(0, I) (a cVAE one row per class; the hierarchical VAE's two levels);
* gan: G(z[, y]) with the generator's running statistics;
* ddpm: the ancestral or DDIM chain (``model.sampler``, ``model.sample_steps``, ``model.eta``, ``model.clip_x0``),
  classifier-free guided (``model.guidance_scale``) when the run is conditional;
* language_model: continuations of ``model.prompt`` by ``model.strategy`` (greedy, temperature, top_k, top_p, beam);
* flow_matching: the ODE from noise (``model.method``: euler, midpoint, rk4 or dopri5, ``model.ode_steps``);
* cnf: the ODE from noise (``model.sample_method``, ``model.sample_steps``) and the exact-trace density.

The artefacts are PyTorch's (``practice_torch.engine.artefacts``), samples first, written into
RUN/samples-jax-<k>/ (the first k not taken), or only the samples to ``--out``. The artefacts that picture held-out
examples rather than samples (the VAE's reconstructions, interpolations and traversals; DDPM's restorations, a
language model's answers on a synthetic task) are ``practice_torch sample``'s. Bad input (no run, a corrupt one, a
model without a JAX sampler, an unknown or fixed setting) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

from practice_jax.samplers import SAMPLERS, SampleError, Twin

JAX_SAMPLES = "samples-jax"  # RUN/samples-jax-<k>: beside PyTorch's samples-<k> and training's samples/


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m practice_jax sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN", help="a run trained by practice_jax train or practice_torch train")
    parser.add_argument("--n", type=int, help="number of samples (default: the run's train.samples, or 64 where it "
                                              "is 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples' noise (PyTorch's sample draws the "
                                                            "same noise from the same seed)")
    parser.add_argument("--out", help="write only the samples, to this file (.png / .wav / .txt); without it, every "
                                      "artefact goes to RUN/samples-jax-<k>/")
    parser.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                        help="use the trained net differently, e.g. --set model.sampler=ddim (repeatable)")
    return parser


# The run in JAX -------------------------------------------------------------------------------------------------------
def variables_of(shapes: dict, state: dict, unused: tuple[str, ...] = ()) -> dict:
    """The flax variables of a torch ``state`` (name -> tensor) shaped as ``shapes`` ({"params": ...[,
    "batch_stats": ...]}, ``jax.eval_shape`` of ``init``): the parameters and the running statistics, each converted
    by ``torch_to_flax`` (ConversionError, naming the tensor, for one without a counterpart), except those of the
    top-level modules ``unused`` (what only training reads)."""
    import jax

    from shared_specs.interop import split_statistics, torch_to_flax

    arrays = {k: v.detach().cpu().numpy() for k, v in state.items() if k.split(".")[0] not in unused}
    weights, stats = split_statistics(arrays)
    variables = {"params": torch_to_flax(weights, shapes["params"])}
    if shapes.get("batch_stats"):
        variables["batch_stats"] = torch_to_flax(stats, shapes["batch_stats"])
    return jax.tree.map(jax.numpy.asarray, variables)


def open_twin(run_dir: Path, overrides: list[str]):
    """(the model's sampler module, the run's config with ``overrides``, its ``Twin``): the run opened as
    ``practice_torch sample`` opens it, its network's flax twin and weights. RunError, SampleError or ValueError
    (one line) for bad input."""
    import torch

    from practice_jax.twins import twin_of
    from practice_torch.engine.runs import run_model_name
    from practice_torch.models import open_run

    name = run_model_name(run_dir)
    if name not in SAMPLERS:
        raise SampleError(f"{name} has no JAX sampler; choose from {', '.join(SAMPLERS)} (or sample with "
                          "python -m practice_torch sample)")
    sampler = importlib.import_module(f"practice_jax.samplers.{name}")
    _, cfg, net = open_run(run_dir, torch.device("cpu"), overrides)
    sampler.check(cfg.model, net)
    module = twin_of(name)(net, dataclasses.replace(cfg, model=sampler.twin_settings(cfg.model))).module
    shapes = sampler.variable_shapes(module, net, cfg.model)
    variables = variables_of(shapes, net.state_dict(), getattr(sampler, "TRAINING_MODULES", ()))
    return sampler, cfg, Twin(module, variables, net)


def draw_samples(sampler, cfg, twin: Twin, n: int, seed: int, examples) -> list:
    """The sampler's artefacts for n samples, their noise drawn from the generator ``engine.runs.write_samples``
    hands PyTorch's ``sample`` for this seed."""
    import torch

    from practice_torch.engine.config import derive_seed

    return sampler.sample(twin, cfg.model, n, torch.Generator().manual_seed(derive_seed(seed, "samples")), examples)


def new_samples_dir(run_dir: Path) -> Path:
    """RUN/samples-jax-<k>, the first k not taken."""
    k = 1
    while (run_dir / f"{JAX_SAMPLES}-{k}").exists():
        k += 1
    return run_dir / f"{JAX_SAMPLES}-{k}"


# The command ----------------------------------------------------------------------------------------------------------
def sample(args) -> list[Path]:
    """Draw and write the samples of ``args``; the files written."""
    from practice_torch.engine import RunError
    from practice_torch.engine.artefacts import write_artefact, write_artefacts
    from practice_torch.engine.config import TrainConfig
    from practice_torch.engine.runs import held_out_examples

    if args.n is not None and args.n < 1:
        raise RunError(f"--n must be positive, got {args.n} (leave it out for the run's train.samples)")
    run_dir = Path(args.run_dir)
    sampler, cfg, twin = open_twin(run_dir, args.set)
    n = args.n or cfg.train.samples or TrainConfig.samples  # a run that wrote none at its end (train.samples=0)
    artefacts = draw_samples(sampler, cfg, twin, n, args.seed, held_out_examples(cfg.data, n))
    if args.out:
        return write_artefact(artefacts[0], Path(args.out))
    return write_artefacts(artefacts, new_samples_dir(run_dir))


def main(argv: list[str] | None = None) -> int:
    from practice_jax.twins import JaxTrainError
    from practice_torch.cli import report
    from practice_torch.data import DatasetMissing
    from practice_torch.engine import RunError

    args = build_parser().parse_args(argv)
    try:
        report(sample(args))
    except (SampleError, JaxTrainError, RunError, DatasetMissing, ValueError) as exc:  # ValueError: a refused build
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
