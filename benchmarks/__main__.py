"""``python -m benchmarks [name ...] [--threads N] [--repeats R]``.

Speed is measured here, never asserted in tests. Each benchmark prints a table and writes
``benchmarks/results/<name>.json``. The machine's fp32 GEMM peak is measured first so model
throughput can be read as model FLOP utilisation (MFU = achieved FLOP/s / GEMM peak).

``metrics`` is the sanity table of the sample metrics (FID, IS, KID, precision, recall through the project's
feature network): held-out images against themselves, the train set, blurred images and noise. Its expected
order is checked, and the command exits with 1 if it does not hold.

``unet_step`` times our U-Net against diffusers' UNet2DModel of the same size (when diffusers is installed).
The diffusion benchmarks run only when named, since they train or sample for tens of minutes on a CPU:
``ddim_steps`` (sampler steps vs wall time and FID of a ddpm run), ``guidance_sweep`` (guidance scale vs FID
and class accuracy of a conditional ddpm run) and ``latent_vs_pixel`` (latent vs pixel diffusion at equal
training CPU time). ``galaxy_conditioning`` (also only when named) measures the physical parameters of galaxies a
flow_matching run generates against the requested ones, beside the same measurement on real test galaxies.
``ssm_generation`` (tokens/s of the SSM's recurrent step and of the Transformer's key-value cache against the length
generated so far) and ``ssm_step`` (training step time and MFU at the quick sizes) run when named.
``gpu_steps`` (only when named) times every model's training step through the engine: the full presets on a GPU
(examples/s, counted FLOPs, MFU against the bf16 GEMM peak, the GPU's busy share, synchronisations per step, the time
to the first step), the quick presets on a CPU. ``shared_cpu`` (only when named, about 20 minutes on 2 cores) times a
training run beside busy processes under each thread setting (benchmarks/shared_cpu.py). ``control`` (only when
named, about 4 minutes on 2 cores) trains PPO's and TRPO's quick presets on CartPole-v1 over seeds and draws their
returns against environment steps (benchmarks/control.py). ``jax_train`` (only when named) times each quick preset's
step in JAX (``practice_jax train``) and PyTorch, and with ``--jax-quality`` trains both to their held-out figures
(benchmarks/jax_train.py). ``restoration`` (only when named) scores a ddpm run's inpainting and super-resolution
against mean fill, nearest and bicubic upsampling (benchmarks/restoration.py); ``gan_stability`` (only when named,
about 40 minutes) trains the plain GAN, R1, spectral normalisation, minibatch std, the unrolled discriminator and
WGAN-GP over seeds (benchmarks/gan_stability.py). ``augmentation`` (only when named) trains the project's classifier on
few real images, on them plus class-conditional samples, on samples alone and on an imbalanced split rebalanced with
samples, and reports real test accuracy over seeds (benchmarks/augmentation.py). ``disentanglement`` (only when named,
about 7 minutes a run on one core) trains beta-VAEs and beta-TCVAEs on the galaxies and scores their mutual information
gap against the five factors that rendered them (benchmarks/disentanglement.py). ``reproduce`` (only when named) trains
each algorithm's own paper's experiment over seeds, beside the paper's figure, into ``docs/reproduce.json``
(benchmarks/reproduce.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.augmentation import augmentation
from benchmarks.control import control
from benchmarks.coupling_flows import flow_bpd
from benchmarks.ddim import ddim_steps
from benchmarks.disentanglement import VARIANTS as DIS_VARIANTS
from benchmarks.disentanglement import disentanglement
from benchmarks.flow_matching import fm_vs_cnf, ode_nfe
from benchmarks.galaxies import galaxy_conditioning
from benchmarks.gan_stability import gan_stability
from benchmarks.gpu_steps import gpu_steps
from benchmarks.guidance import guidance_sweep
from benchmarks.jax_train import jax_train
from benchmarks.language_model import kv_cache, lm_curves
from benchmarks.latent_diffusion import latent_vs_pixel
from benchmarks.reproduce import ROWS as REPRODUCE_ROWS
from benchmarks.reproduce import reproduce
from benchmarks.restoration import TASKS, restoration
from benchmarks.shared_cpu import shared_cpu
from benchmarks.ssm import ssm_generation, ssm_step
from benchmarks.timing import best_of, gemm_peaks
from benchmarks.transformer import transformer_step
from benchmarks.unet import unet_step
from shared_specs.environment import commit, cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def vae_step(args) -> list[dict]:
    """The VAE's loss + gradient on a batch of 28x28 images: PyTorch eager, compiled and a whole AdamW training
    step, vs JAX jit (MLP and conv)."""
    import jax
    import jax.numpy as jnp
    from torch.utils.flop_counter import FlopCounterMode

    import practice_torch.vae as tv
    import theory_jax.vae as jv
    from shared_specs.interop import torch_to_flax

    batch, latent, image = 128, 16, (1, 28, 28)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, *image)).astype("float32")
    eps = rng.standard_normal((batch, latent)).astype("float32")
    peaks = gemm_peaks(repeats=args.repeats)
    peak = peaks["machine"]
    rows = []
    for arch in ("mlp", "conv"):
        config = {"image_shape": image, "latent_dim": latent, "architecture": arch, "hidden": (512, 256),
                  "channels": (32, 64)}
        tmodel = tv.VAE(**config)
        tx, teps = torch.from_numpy(x), torch.from_numpy(eps)

        def torch_step():
            tmodel.zero_grad(set_to_none=True)
            tmodel.loss(tx, teps).backward()

        with FlopCounterMode(display=False) as counter:
            torch_step()
        flops = counter.get_total_flops()

        def row(backend: str, seconds: float) -> dict:
            return {"model": f"vae-{arch}", "backend": backend, "ms_per_step": 1e3 * seconds,
                    "examples_per_s": batch / seconds, "gflop_per_step": flops / 1e9, "mfu": flops / seconds / peak}

        rows.append(row("torch eager", best_of(torch_step, args.repeats)))
        optimizer = torch.optim.AdamW(tmodel.parameters(), lr=1e-3)

        def train_step():  # what the engine does per step: loss, backward, AdamW update
            torch_step()
            optimizer.step()

        rows.append(row("torch train step", best_of(train_step, args.repeats)))
        if args.compile:
            compiled_loss = torch.compile(tmodel.loss)

            def compiled_step():
                tmodel.zero_grad(set_to_none=True)
                compiled_loss(tx, teps).backward()

            rows.append(row("torch compiled", best_of(compiled_step, args.repeats, warmup=3)))

        jmodel = jv.VAE(**config)
        xj = jnp.asarray(x.transpose(0, 2, 3, 1))
        template = jax.eval_shape(lambda: jmodel.init(jax.random.key(0), xj, jnp.asarray(eps)))["params"]
        params = torch_to_flax({k: v.numpy() for k, v in tmodel.state_dict().items()}, template)
        grad_fn = jax.jit(jax.value_and_grad(lambda p: jmodel.apply({"params": p}, xj, eps, method=jv.VAE.loss)))
        rows.append(row("jax jit", best_of(lambda: jax.block_until_ready(grad_fn(params)), args.repeats)))
    for row in rows:
        row["gemm_peak_gflops"] = peak / 1e9
        row["torch_gemm_gflops"] = peaks["torch"] / 1e9
    return rows


def metrics(args) -> list[dict]:
    """The sample metrics of image sets against half of the test set (the reference): the reference itself, the
    other half, train images, the other half blurred (torchvision gaussian_blur) and uniform noise, ``args.per_set``
    images each. The other half is the noise floor at this size; the order is checked on the other rows."""
    import torchvision.transforms.functional as TF

    from practice_torch.data import get_dataset
    from practice_torch.evaluation.features import feature_network
    from practice_torch.evaluation.samples import image_set_metrics

    net = feature_network(args.dataset, args.data_dir)
    test = get_dataset(args.dataset, "test", args.data_dir)[:][0]
    n = min(args.per_set, len(test) // 2)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    reference, other = test[order[:n]], test[order[n:2 * n]]
    sets = {"test (itself)": reference, "test (other half)": other,
            "train": get_dataset(args.dataset, "train", args.data_dir, limit=n)[:][0],
            f"blurred (sigma {args.blur:g})": TF.gaussian_blur(other, 2 * math.ceil(3 * args.blur) + 1, args.blur),
            "uniform noise": torch.rand(other.shape, generator=torch.Generator().manual_seed(1))}
    rows = []
    for name, images in sets.items():
        m = image_set_metrics(reference, images, net)
        rows.append({"images": name, "n": len(images), "fid": m["fid"], "inception_score": m["inception_score"],
                     "kid": m["kid"], "precision": m["precision"], "recall": m["recall"]})
    return rows


ORDERED = ("test (itself)", "train", "blurred", "uniform noise")  # the rows whose order is expected


def metric_order_problems(rows: list[dict]) -> list[str]:
    """Where the sanity table breaks its expected order (the rows itself, train, blurred, noise, in this order):
    FID and KID must rise down the table, precision and recall fall. [] when the order holds."""
    rows = [row for row in rows if row["images"].startswith(ORDERED)]
    problems = []
    for key, rising in (("fid", True), ("kid", True), ("precision", False), ("recall", False)):
        values = [row[key] for row in rows]
        for a, b, row_a, row_b in zip(values, values[1:], rows, rows[1:]):
            if (a >= b) if rising else (a <= b):
                problems.append(f"{key}: {row_a['images']} {a:.4g} {'>=' if rising else '<='} {row_b['images']} {b:.4g}")
    return problems


BENCHMARKS = {"vae_step": vae_step, "metrics": metrics, "ddim_steps": ddim_steps, "guidance_sweep": guidance_sweep,
              "latent_vs_pixel": latent_vs_pixel, "unet_step": unet_step, "flow_bpd": flow_bpd,
              "fm_vs_cnf": fm_vs_cnf, "ode_nfe": ode_nfe, "galaxy_conditioning": galaxy_conditioning,
              "transformer_step": transformer_step,
              "lm_curves": lm_curves, "kv_cache": kv_cache, "gpu_steps": gpu_steps,
              "ssm_generation": ssm_generation, "ssm_step": ssm_step, "shared_cpu": shared_cpu, "control": control,
              "jax_train": jax_train, "restoration": restoration,
              "gan_stability": gan_stability, "augmentation": augmentation, "disentanglement": disentanglement,
              "reproduce": reproduce}
CHECKS = {"metrics": metric_order_problems}
# run when no name is given; the others train or sample trained runs for tens of minutes, so they are asked for
DEFAULT = ("vae_step", "metrics", "unet_step")


def print_table(name: str, rows: list[dict]) -> None:
    keys = list(rows[0])
    print(f"\n{name}")
    print("  ".join(f"{k:>16}" for k in keys))
    for row in rows:
        print("  ".join(f"{v:>16.3g}" if isinstance(v, float) else f"{v!s:>16}" for v in row.values()))


def default_threads(names, cuda: bool, cores: int) -> int:
    """Threads when ``--threads`` is not given: one (CPU timings comparable across machines), except for
    ``gpu_steps`` on a GPU, which gets every core as ``train`` does (the host feeds the GPU, inductor compiles in
    parallel), ``shared_cpu``, whose training runs are measured on the whole machine, and ``reproduce``, whose
    ``--jobs`` runs (one thread each) share the machine's cores."""
    return cores if (cuda and "gpu_steps" in names) or {"shared_cpu", "reproduce"} & set(names) else 1


def write_result(path: Path, result: dict) -> None:
    """``result`` as JSON at ``path``, written atomically (the engine's ``atomic_write``: never a half-written file)."""
    from practice_torch.engine.checkpoint import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*",
                        help=f"benchmarks to run (default: {', '.join(DEFAULT)}): {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default 1; gpu_steps on a "
                        "GPU: every core, as train has, for the host that feeds the GPU and inductor's compiling)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile rows (compilation takes about a minute on a CPU)")
    parser.add_argument("--dataset", default="fashion_mnist", help="image data set of the metrics table")
    parser.add_argument("--data-dir", help="where standard data sets live (metrics)")
    parser.add_argument("--per-set", type=int, default=5000, help="images per set in the metrics table")
    parser.add_argument("--blur", type=float, default=1.0, help="Gaussian blur sigma in the metrics table (pixels)")
    parser.add_argument("--run", help="a trained run directory (ddim_steps: a ddpm run; default the newest runs/ddpm-*)")
    parser.add_argument("--ddim-samples", type=int, default=1000, help="ddim_steps: samples per row (at most)")
    parser.add_argument("--ddim-budget", type=int, default=100_000, help="ddim_steps: network evaluations per row")
    parser.add_argument("--ddim-steps", default="10,20,50,100,1000", help="ddim_steps: comma-separated step counts")
    parser.add_argument("--ddim-reconstruct", type=int, default=64, help="ddim_steps: test images encoded and decoded")
    parser.add_argument("--classifier", help="guidance_sweep: a `train guidance` run (adds classifier-guidance rows)")
    parser.add_argument("--scales", default="0,0.5,1,2,4", help="guidance_sweep: comma-separated guidance scales w")
    parser.add_argument("--guidance-samples", type=int, default=1000, help="guidance_sweep: samples per scale")
    parser.add_argument("--guidance-steps", type=int, default=20, help="guidance_sweep: DDIM steps per sample")
    parser.add_argument("--seconds", type=float, default=0, help="latent_vs_pixel (default 600), lm_curves (default 300): "
                        "CPU seconds of training per arm")
    parser.add_argument("--lm-arms", default="", help="lm_curves: comma-separated arms (default all: transformer, "
                                                      "lstm, ssm)")
    parser.add_argument("--lm-every", type=int, default=100, help="lm_curves: steps between validation points")
    parser.add_argument("--tokens", type=int, default=256, help="kv_cache: tokens generated per sequence")
    parser.add_argument("--gen-length", type=int, default=4096, help="ssm_generation: tokens generated per sequence")
    parser.add_argument("--gen-window", type=int, default=64, help="ssm_generation: tokens per timed window")
    parser.add_argument("--gen-batch", type=int, default=1, help="ssm_generation: sequences generated at once")
    parser.add_argument("--ae-fraction", type=float, default=0.3, help="latent_vs_pixel: share of the latent arm's "
                                                                        "budget spent on the autoencoder")
    parser.add_argument("--ld-samples", type=int, default=1000, help="latent_vs_pixel: samples per arm for FID/KID")
    parser.add_argument("--ld-sample-steps", type=int, default=20, help="latent_vs_pixel: DDIM steps of both arms")
    parser.add_argument("--ld-arms", default="latent,pixel", help="latent_vs_pixel: which arms to run")
    parser.add_argument("--restore-images", type=int, default=100, help="restoration: test images restored per row")
    parser.add_argument("--restore-steps", type=int, default=50, help="restoration: respaced steps of the chain")
    parser.add_argument("--restore-resample", type=int, default=5, help="restoration: RePaint's r of the resampled rows")
    parser.add_argument("--restore-tasks", default=TASKS, help="restoration: comma-separated inpaint:MASK and "
                                                               "super_resolution:FACTOR")
    parser.add_argument("--stability-variants", default="plain,r1,spectral_norm,minibatch_std,unrolled,wgan_gp",
                        help="gan_stability: comma-separated variants")
    parser.add_argument("--stability-seeds", default="0,1,2", help="gan_stability: comma-separated train.seed values")
    parser.add_argument("--stability-dataset", default="gaussians", help="gan_stability: gaussians or fashion_mnist")
    parser.add_argument("--stability-steps", type=int, default=0, help="gan_stability: steps per run (default: the "
                        "preset's)")
    parser.add_argument("--stability-jobs", type=int, default=1, help="gan_stability: runs trained at once, one process "
                        "each (a GPU)")
    parser.add_argument("--stability-done", default="", help="gan_stability: comma-separated earlier results files "
                        "whose runs count as done (not trained again)")
    parser.add_argument("--aug-runs", default="", help="augmentation: comma-separated NAME=RUN of class-conditional runs")
    parser.add_argument("--aug-real", type=int, default=20, help="augmentation: real images per class of the few-shot "
                        "sets (and of the imbalanced split's minority classes)")
    parser.add_argument("--aug-samples", type=int, default=500, help="augmentation: samples (and real images) per class "
                        "of the larger sets")
    parser.add_argument("--aug-steps", type=int, default=600, help="augmentation: classifier steps of batch 128 per set")
    parser.add_argument("--aug-seeds", default="0,1,2", help="augmentation: comma-separated seeds")
    parser.add_argument("--dis-variants", default=DIS_VARIANTS, help="disentanglement: comma-separated beta=V and "
                        "tc_beta=V")
    parser.add_argument("--dis-seeds", default="0", help="disentanglement: comma-separated train.seed values")
    parser.add_argument("--dis-steps", type=int, default=0, help="disentanglement: steps per run (default: the preset's)")
    parser.add_argument("--dis-runs", default="", help="disentanglement: keep the trained runs in this folder")
    parser.add_argument("--galaxy-samples", type=int, default=500, help="galaxy_conditioning: test conditions sampled")
    parser.add_argument("--fm-seconds", type=float, default=300, help="fm_vs_cnf: wall seconds of training per model")
    parser.add_argument("--fm-chunk", type=int, default=100, help="fm_vs_cnf: steps between W2 measurements")
    parser.add_argument("--w2-target", type=float, default=0.0, help="fm_vs_cnf: W2 to reach (0: 1.5x the floor)")
    parser.add_argument("--nfe-steps", default="1,2,4,8,16,32", help="ode_nfe: comma-separated fixed-step counts")
    parser.add_argument("--fm-samples", type=int, default=1000, help="ode_nfe: samples per row (W2 or FID/KID)")
    parser.add_argument("--flow-steps", type=int, default=0, help="flow_bpd: training steps (default: the quick preset's)")
    parser.add_argument("--flow-every", type=int, default=100, help="flow_bpd: steps between test evaluations")
    parser.add_argument("--flow-test", type=int, default=1000, help="flow_bpd: test images per evaluation")
    parser.add_argument("--preset", default="", help="gpu_steps: quick | full (default: full on a GPU, quick on a CPU)")
    parser.add_argument("--gpu-models", default="", help="gpu_steps: comma-separated models (default: every model "
                                                         "with a full preset)")
    parser.add_argument("--gpu-steps", type=int, default=0, help="gpu_steps: timed steps per model (default: 20 on a "
                                                                 "GPU, 3 on a CPU)")
    parser.add_argument("--gpu-set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                        help="gpu_steps: a change to every preset (or to MODEL's only), as train's --set (repeatable)")
    parser.add_argument("--gpu-merge", action="store_true", help="gpu_steps: keep the rows already in the results "
                        "file from the same device and preset, replacing those of the models timed again")
    parser.add_argument("--control-seeds", default="0,1,2", help="control: comma-separated train.seed values")
    parser.add_argument("--cpu-steps", type=int, default=300, help="shared_cpu: training steps per run")
    parser.add_argument("--cpu-loads", default="0,1,2", help="shared_cpu: comma-separated numbers of busy processes")
    parser.add_argument("--cpu-repeats", type=int, default=3, help="shared_cpu: runs of each setting under each load")
    parser.add_argument("--jax-models", default="", help="jax_train: comma-separated models (default: every model "
                                                         "practice_jax train trains)")
    parser.add_argument("--jax-steps", type=int, default=20, help="jax_train: timed steps per backend")
    parser.add_argument("--jax-quality", action="store_true", help="jax_train: also train each quick preset to the "
                        "end in both backends and evaluate it (tens of minutes a model)")
    parser.add_argument("--jax-seeds", default="0,1", help="jax_train: comma-separated train.seed values (quality)")
    parser.add_argument("--rows", default="", help=f"reproduce: comma-separated rows (default all: "
                                                    f"{', '.join(REPRODUCE_ROWS)})")
    parser.add_argument("--presets", nargs="?", const="all", default="", metavar="MODEL,...",
                        help="reproduce: the README's results table instead: every front-page quick preset as it comes "
                             "(or those named) over the seeds, each row replaced by the mean")
    parser.add_argument("--seeds", type=int, default=5, help="reproduce: train.seed 0 .. N-1 of every arm")
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))),
                        help="reproduce: runs trained at once, one thread each (default: one per core)")
    parser.add_argument("--reproduce-runs", default=str(RESULTS / "reproduce-runs"),
                        help="reproduce: where the runs are kept (a stopped sweep resumes from them)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where the JSON files go (default {RESULTS})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    names = args.names or DEFAULT
    # Both libraries, and the GEMM peak, get the same cores: XLA's CPU client ignores thread-count flags.
    available = sorted(os.sched_getaffinity(0))
    cores = available[: args.threads or default_threads(names, torch.cuda.is_available(), len(available))]
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    args.results.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in names:
        load_before = round(os.getloadavg()[0], 2)  # the machine's load as the benchmark starts (1-minute average)
        meta = {"benchmark": name, "threads": len(cores), "torch": torch.__version__,
                "machine": platform.machine(), "processor": platform.processor(), "time": time.time(),
                "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "load_before": load_before, "commit": commit()}
        out = args.results / f"{name}.json"
        # a benchmark that measures row by row hands each new set of rows here: a stopped run keeps what it measured
        args.save = lambda rows, meta=meta, out=out: write_result(out, {"meta": meta, "rows": rows})
        rows = BENCHMARKS[name](args)
        print_table(name, rows)
        result = {"meta": meta, "rows": rows}
        if name in CHECKS:
            problems = CHECKS[name](rows)
            result["order_holds"] = not problems
            print("expected order holds: " + ("yes" if not problems else "NO\n  " + "\n  ".join(problems)))
            status = status or (1 if problems else 0)
        write_result(out, result)
        print(f"wrote {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
