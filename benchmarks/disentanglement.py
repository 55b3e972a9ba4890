"""``python -m benchmarks disentanglement``: beta-VAE, beta-TCVAE and FactorVAE on the galaxies, scored against the
five factors that rendered them.

Each variant is a ``--set`` of the vae's galaxies quick preset (``--dis-variants``, default ``beta=1`` (the plain
VAE), ``beta=4``, ``beta=10``, ``tc_beta=4``, ``tc_beta=10``, ``factor_gamma=10``: ``model.beta`` weighs the whole
KL, ``model.tc_beta`` the total correlation alone, ``model.factor_gamma`` FactorVAE's discriminator's estimate of
it), trained with each ``train.seed`` of ``--dis-seeds`` and then ``eval``'d on the 1000 test
galaxies: the mutual information gap of the posterior means against (Sersic index, half-light radius, e1, e2,
log flux), each factor's gap, the ELBO, and the KL's three parts over the test split's aggregate posterior (index-code
MI, total correlation, dimension-wise KL). A row per run, saved as each finishes, and ``disentanglement.png`` beside
the JSON: each run's latent traversals of one test galaxy (the five latents with the largest KL, in rows, each labelled
with the factor it carries most and that factor's gap). ``--dis-steps N`` trains N steps instead of the preset's;
``--dis-runs DIR`` keeps the trained runs there (default: a temporary folder), and reads the runs it finds there
evaluated already: ``benchmarks reproduce --rows disentanglement`` trains the same variants over its seeds, side by
side, into ``<reproduce-runs>/disentanglement``, whose seed 0 this draws with ``--dis-seeds 0 --dis-runs`` that folder.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = "beta=1,beta=4,beta=10,tc_beta=4,tc_beta=10,factor_gamma=10"
KEYS_OF_VARIANTS = ("beta", "tc_beta", "factor_gamma")
FACTORS = ("Sersic n", "radius", "e1", "e2", "log flux")
KEYS = ("mig", *(f"mig_factor_{k}" for k in range(5)), "elbo", "kl", "mi", "tc", "dim_kl")


def variant_set(variant: str) -> str:
    """``beta=4`` -> ``model.beta=4``: a variant is one model key of the vae and its value."""
    key, _, value = variant.partition("=")
    if key not in KEYS_OF_VARIANTS or not value:
        raise SystemExit(f"error: a variant is beta=VALUE, tc_beta=VALUE or factor_gamma=VALUE, got {variant!r}")
    return f"model.{key}={value}"


def run_name(variant: str) -> str:
    """The folder of a variant's runs: ``tc_beta=4`` -> ``tc_beta4`` (then ``-<seed>``)."""
    return variant.replace("=", "")


def one_run(variant: str, seed: int, out: Path, steps: int = 0) -> dict:
    """Train and evaluate one run of ``variant`` into ``out``: its row. A run already evaluated there (``benchmarks
    reproduce --rows disentanglement`` trains the same runs, named alike) is read, not trained again."""
    from practice_torch.cli import main

    started = time.perf_counter()
    if not (out / "eval_test.json").is_file():
        argv = ["train", "vae", "--dataset", "galaxies", "--out", str(out), "--set", variant_set(variant),
                "--set", f"train.seed={seed}", *(["--steps", str(steps)] if steps else [])]
        if main(argv) != 0:
            raise RuntimeError(f"{variant} seed {seed}: training failed")
        if main(["eval", str(out), "--set", "model.nll_examples=100"]) != 0:
            raise RuntimeError(f"{variant} seed {seed}: eval failed")
    evaluation = json.loads((out / "eval_test.json").read_text())
    row = {"variant": variant, "seed": seed, **{k: evaluation[k] for k in KEYS}}
    row["latents"] = [evaluation[f"mig_latent_{k}"] for k in range(5)]
    recorded = out / "reproduce_wall_s.json"
    row["wall_s"] = json.loads(recorded.read_text()) if recorded.is_file() else time.perf_counter() - started
    return row


@torch.no_grad()
def traversal_grid(run: Path, x: torch.Tensor, y: torch.Tensor, rows: int = 5, steps: int = 9
                   ) -> tuple[torch.Tensor, list[int]]:
    """The run's traversals of the first of the test galaxies x (N, 1, H, W) along its ``rows`` most used latents over
    them: (rows * steps, 1, H, W), and those latents."""
    from practice_torch.models import open_run
    from practice_torch.vae.networks import most_used_latents, traverse

    net = open_run(run, torch.device("cpu"))[2]
    latents = most_used_latents(net, x, y, rows)
    return traverse(net, x, y, latents, steps), latents.tolist()


def figure(rows: list[dict], runs: dict[tuple[str, int], Path], path: Path) -> None:
    """One panel per run: its traversals, each row labelled with the factor its latent carries most (if it is the
    best latent of one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    from practice_torch.data import get_dataset, stacked

    x, y = (t[:500] for t in stacked(get_dataset("galaxies", "test"))[:2])  # read once for every panel

    columns = min(3, len(rows))
    lines = -(-len(rows) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.6 * columns, 3.0 * lines + 0.4), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        grid, latents = traversal_grid(runs[row["variant"], row["seed"]], x, y)
        ax.imshow(make_grid(grid.clamp(0, 1), nrow=9, padding=1, pad_value=1.0)[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{row['variant']} (seed {row['seed']}): MIG {row['mig']:.2f}", fontsize=9)
        names = [" / ".join(f"{FACTORS[k]} {row[f'mig_factor_{k}']:.2f}" for k, j in enumerate(row["latents"]) if j == z)
                 or f"z{z}" for z in latents]
        height = grid.shape[-1] + 1
        ax.set_yticks([1 + height * (i + 0.5) for i in range(len(latents))], names, fontsize=7)
        ax.set_xticks([])
    fig.suptitle("one test galaxy's traversals, -2.5 to 2.5, of the 5 most used latents (named: the factor each "
                 "carries best, its gap)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def disentanglement(args) -> list[dict]:
    variants = [v for v in args.dis_variants.split(",") if v]
    for variant in variants:
        variant_set(variant)
    seeds = [int(s) for s in args.dis_seeds.split(",")]
    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dis_runs) if args.dis_runs else Path(tmp)
        for seed in seeds:
            for variant in variants:
                out = runs[variant, seed] = folder / f"{run_name(variant)}-{seed}"
                row = one_run(variant, seed, out, args.dis_steps)
                rows.append(row)
                gaps = ", ".join(f"{name} {row[f'mig_factor_{k}']:.2f}" for k, name in enumerate(FACTORS))
                print(f"  {variant} seed {seed}: MIG {row['mig']:.3f} ({gaps}), TC {row['tc']:.2f}, "
                      f"ELBO {row['elbo']:.1f}, {row['wall_s']:.0f} s", flush=True)
                if hasattr(args, "save"):
                    args.save(rows)
        figure(rows, runs, Path(args.results) / "disentanglement.png")
    return rows
