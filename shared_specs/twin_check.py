"""A trained run checked in the other backend: ``python -m theory_jax check RUN_DIR [--examples N] [--split test]``
(``RUN_DIR/config.json`` names the same run).

The driver: it loads the run through the engine and hands the network to its topic's twin check,
``shared_specs/twins/<topic>.py`` (``CHECKERS``: the catalogue's topics with a ``checks`` line).

Reads the run's config and its newest checkpoint (EMA weights where the run keeps them), builds the JAX twin of the
network through the weight converter (``shared_specs.interop.torch_to_flax``), and recomputes the run's held-out
metric on N examples in both backends from the same inputs and the same noise, both in float64 (the trained float32
weights cast exactly): a difference is then a difference of the math, held to the project's float64 likelihood
tolerance. Prints metric, PyTorch value, JAX value, difference, tolerance and PASS/FAIL; exit 0 when all pass, 1 on a
failure, 2 on bad input (no run, a model without a twin, a checkpoint that does not match its config, an unknown
split), with a one-line error.

Supported models are those in ``CHECKERS`` (an unsupported one is refused with the list): ``vae`` (the single-sample
ELBO and the importance-sampled NLL, nats and bits/dim), ``language_model`` with the transformer (held-out
cross-entropy, nats and bits/char), ``pixelcnn`` (the exact NLL, nats per image and bits/dim), ``wavenet`` (NLL per
sample of whole clips, nats and bits), ``ddpm`` (the variational bound with 4 shared timesteps per
example), ``coupling_flows`` on images (the exact NLL of the dequantised images over ``eval_draws`` shared draws of
the uniform noise, nats and bits/dim, and the importance-weighted bound), ``ssm`` (the held-out cross-entropy in nats
and bits per character or per sample, the twin in its parallel mode: Mamba's associative scan, S4D's FFT
convolution) and ``flow_matching`` (the CFM loss, and the ODE NLL by 8 fixed RK4 steps, ``ODE_STEPS``, with one
shared Rademacher probe per example); ddpm and flow_matching with the U-Net on images or the MLP
(``theory_jax.nets.MLPDenoiser``) on 2-D data. The 2-D network of ``coupling_flows`` has no JAX twin: a one-line
error, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared_specs.twin_rows import CheckError, Row

__all__ = ["CHECKERS", "CheckError", "Row", "check_run", "format_rows", "main", "run_folder"]


# The models ------------------------------------------------------------------------------------------------------
def checkers() -> dict[str, str]:
    """{topic: the module of its twin check}: every catalogue topic with a ``checks`` line provides
    ``shared_specs/twins/<topic>.py`` with ``check(net, cfg, batch, rng, perturb) -> list[Row]``."""
    from project.catalogue import TOPICS

    return {t.name: f"shared_specs.twins.{t.name}" for t in TOPICS if t.checks}


CHECKERS = checkers()


# The command -----------------------------------------------------------------------------------------------------
def check_run(run_dir: Path, examples: int = 64, split: str = "test", seed: int = 0,
              perturb: Callable[[dict], dict] = lambda params: params) -> list[Row]:
    """The rows for one run; ``perturb`` alters the converted JAX parameters (for negative controls).
    CheckError on bad input."""
    import jax

    from practice_torch.data import SPLITS
    from practice_torch.engine.checkpoint import CheckpointError
    from practice_torch.engine.config import ConfigError
    from practice_torch.engine.runs import load_split, run_model_name
    from practice_torch.models import open_run

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    if not (run_dir / "config.json").is_file():
        raise CheckError(f"{run_dir} is not a run directory (no config.json); give the folder `train --out` wrote")
    if split not in SPLITS:
        raise CheckError(f"unknown split {split!r}; every data set has {', '.join(SPLITS)}")
    if examples < 1:
        raise CheckError(f"--examples must be at least 1, got {examples}")
    try:
        name = run_model_name(run_dir)
        if name not in CHECKERS:
            raise CheckError(f"{name} has no JAX twin network to check against; supported: {', '.join(CHECKERS)}")
        # through the registry, which hands a model the runs it builds on (text_to_image's VQ-VAE)
        module, cfg, net = open_run(run_dir, __import__("torch").device("cpu"))
        check = importlib.import_module(CHECKERS[name]).check
        data = load_split(cfg.data, split)  # whole (a text set's limit counts characters), the first N used
    except CheckError:
        raise
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckError(f"cannot load {run_dir}: {str(exc).splitlines()[0]}") from None
    import torch

    n = min(examples, len(data))
    if n == 0:
        raise CheckError(f"the {split} split of {cfg.data.name} is empty here")
    batch = tuple(torch.stack(column) for column in zip(*(data[i] for i in range(n)), strict=True))
    return check(net, cfg, batch, np.random.default_rng(seed), perturb)


def run_folder(path: Path) -> Path:
    """The run ``path`` names: the folder itself, or the folder of its ``config.json``; CheckError (one line) for
    another file."""
    if path.is_file() and path.name == "config.json":
        return path.parent
    if path.is_file():
        raise CheckError(f"{path} is a file; give the run's folder, the one that holds config.json")
    return path


def format_rows(rows: list[Row]) -> str:
    lines = [f"{'metric':<22} {'units':<13} {'PyTorch':>16} {'JAX':>16} {'|difference|':>12} {'tolerance':>20}  result"]
    for r in rows:
        tol = f"rtol {r.tol.rtol:.0e} atol {r.tol.atol:.0e}"
        lines.append(f"{r.metric:<22} {r.units:<13} {r.torch_value:>16.10f} {r.jax_value:>16.10f} {r.difference:>12.2e} "
                     f"{tol:>20}  {'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m theory_jax check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the folder `train --out` wrote (or its config.json)")
    parser.add_argument("--examples", type=int, default=64, help="held-out examples to recompute on (default 64)")
    parser.add_argument("--split", default="test", help="train | val | test (default test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise both backends share")
    args = parser.parse_args(argv)
    try:
        run_dir = run_folder(args.run_dir)
        rows = check_run(run_dir, args.examples, args.split, args.seed)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{run_dir}: {len(rows)} metrics on {args.examples} {args.split} examples, float64 in both backends")
    print(format_rows(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} of {len(rows)} agree within the float64 likelihood tolerance")
    return 1 if failed else 0
