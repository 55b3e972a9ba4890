"""``python -m benchmarks [name ...] [--threads N] [--repeats R]``; ``python -m benchmarks NAME --help``: that
benchmark's own description and options (``--help`` alone: every benchmark's).

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
each algorithm's own paper's experiment over seeds, beside the paper's figure, into ``docs/reproduce.json`` with
``--publish`` (without it a trial, its record and figures in ``--results``, the published ones untouched; ``--list``:
the rows, each with its minutes) (benchmarks/reproduce.py). ``suite`` (only when named, about 10 minutes on 2 idle
cores) times the default test suite from a fresh clone of the commit between two probes of the machine's speed (an
XLA compile, Python, a torch convolution: machines differ by half, and one VM drifts within an hour and within one
run), the figure behind ``make test``'s budget (benchmarks/suite.py). ``seeds`` (only when named) trains several
seeds of a small model at once, ``torch.func.vmap`` over their stacked parameters, against the same seeds one at a
time (benchmarks/seeds.py).

Bad input (an unknown benchmark or row, a malformed option, a benchmark's own ``error: ...``) is one line on stderr,
exit status 2. Ctrl-C is one line, ``error: interrupted; ...`` saying what was kept (the rows a benchmark measured so
far, in its JSON; ``reproduce``'s finished runs, in ``--reproduce-runs``), exit status 130; ``kill`` (SIGTERM, as
for a sweep started in the background, whose SIGINT a shell script ignores) the same, exit status 143.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import signal
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
from benchmarks.reproduce import interrupted_note as reproduce_interrupted_note
from benchmarks.reproduce import list_rows, reproduce
from benchmarks.restoration import TASKS, restoration
from benchmarks.seeds import seeds
from benchmarks.shared_cpu import shared_cpu
from benchmarks.ssm import ssm_generation, ssm_step
from benchmarks.suite import suite
from benchmarks.timing import best_of, gemm_peaks, keep_freed_memory
from benchmarks.transformer import transformer_step
from benchmarks.unet import unet_step
from project.environment import commit, cpu_model

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
              "reproduce": reproduce, "suite": suite, "seeds": seeds}
CHECKS = {"metrics": metric_order_problems}
# run when no name is given; the others train or sample trained runs for tens of minutes, so they are asked for
DEFAULT = ("vae_step", "metrics", "unet_step")


def print_table(name: str, rows: list[dict]) -> None:
    """The rows' plain values as columns; a value that is a list or a dict (a profile's kernels) is the JSON's
    alone."""
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    print(f"\n{name}")
    print("  ".join(f"{k:>16}" for k in keys))
    for row in rows:
        values = [row.get(k) for k in keys]
        print("  ".join(f"{v:>16.3g}" if isinstance(v, float) else f"{v!s:>16}" for v in values))


def default_threads(names, cuda: bool, cores: int) -> int:
    """Threads when ``--threads`` is not given: one (CPU timings comparable across machines), except for
    ``gpu_steps`` on a GPU, which gets every core as ``train`` does (the host feeds the GPU, inductor compiles in
    parallel), ``shared_cpu``, whose training runs are measured on the whole machine, ``reproduce``, whose
    ``--jobs`` runs (one thread each) share the machine's cores, and ``suite``, the test suite on every core."""
    return cores if (cuda and "gpu_steps" in names) or {"shared_cpu", "reproduce", "suite"} & set(names) else 1


def write_result(path: Path, result: dict) -> None:
    """``result`` as JSON at ``path``, written atomically (the engine's ``atomic_write``: never a half-written file)."""
    from practice_torch.engine.checkpoint import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))


class Parser(argparse.ArgumentParser):
    """argparse with the project's usage errors: one line, ``error: MESSAGE``, on stderr, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def described(shown: list[str] | None) -> str:
    """The help's description: this module's docstring, or each named benchmark's own (its module's docstring; the
    function's for the benchmarks defined here), each once."""
    if not shown:
        return __doc__
    docs = []
    for name in shown:
        function = BENCHMARKS[name]
        here = function.__module__ == __name__
        doc = f"{name}: {inspect.getdoc(function)}" if here else inspect.getdoc(sys.modules[function.__module__])
        if doc not in docs:
            docs.append(doc)
    return "\n\n".join(docs)


def build_parser(shown: list[str] | None = None) -> Parser:
    """The command line. Every option is parsed whatever the benchmarks named; the help (``shown``: the benchmarks
    named beside ``--help``) lists every option (None), or only the common ones (``--threads``, ``--results``) and
    those of the benchmarks in ``shown``, under their own descriptions."""
    prog = " ".join(("python -m benchmarks", *(shown or ())))
    parser = Parser(prog=prog, description=described(shown), add_help=False,
                    formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(owners: tuple[str, ...], *flags, **settings) -> None:
        """An option of the benchmarks ``owners``: hidden from a help that names none of them."""
        if shown is not None and not set(owners) & set(shown):
            settings["help"] = argparse.SUPPRESS
        parser.add_argument(*flags, **settings)

    parser.add_argument("names", nargs="*", help=argparse.SUPPRESS if shown else
                        f"benchmarks to run (default: {', '.join(DEFAULT)}): {', '.join(BENCHMARKS)}")
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit; with benchmark names "
                        "(python -m benchmarks NAME --help), only their options")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default 1; gpu_steps on a "
                        "GPU: every core, as train has, for the host that feeds the GPU and inductor's compiling; "
                        "shared_cpu and reproduce: every core)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where the JSON files go (default {RESULTS}); "
                        "reproduce without --publish: also its trial record and figures")
    add(("vae_step", "unet_step", "transformer_step", "ssm_step"), "--repeats", type=int, default=10,
        help="timed calls of each step, the best kept")
    add(("vae_step", "transformer_step", "jax_train"), "--no-compile", dest="compile", action="store_false",
        help="skip the torch.compile rows (compilation takes about a minute on a CPU)")
    add(("metrics", "flow_bpd", "latent_vs_pixel", "augmentation"), "--dataset", default="fashion_mnist",
        help="image data set of the metrics table (also flow_bpd, latent_vs_pixel, augmentation)")
    add(("metrics", "ddim_steps", "guidance_sweep", "latent_vs_pixel", "flow_bpd", "ode_nfe", "restoration"),
        "--data-dir", help="where standard data sets live")
    add(("metrics",), "--per-set", type=int, default=5000, help="images per set in the metrics table")
    add(("metrics",), "--blur", type=float, default=1.0, help="Gaussian blur sigma in the metrics table (pixels)")
    add(("ddim_steps", "guidance_sweep", "ode_nfe", "galaxy_conditioning", "restoration"), "--run",
        help="a trained run directory (ddim_steps, restoration: a ddpm run, default the newest runs/ddpm-*; "
             "guidance_sweep: a class-conditional one; ode_nfe: a flow_matching run, default the newest; "
             "galaxy_conditioning: a conditional flow_matching run, default one trained here)")
    add(("ddim_steps",), "--ddim-samples", type=int, default=1000, help="ddim_steps: samples per row (at most)")
    add(("ddim_steps",), "--ddim-budget", type=int, default=100_000, help="ddim_steps: network evaluations per row")
    add(("ddim_steps",), "--ddim-steps", default="10,20,50,100,1000", help="ddim_steps: comma-separated step counts")
    add(("ddim_steps",), "--ddim-reconstruct", type=int, default=64,
        help="ddim_steps: test images encoded and decoded")
    add(("guidance_sweep",), "--classifier", help="guidance_sweep: a `train guidance` run (adds classifier-guidance "
                                                  "rows)")
    add(("guidance_sweep",), "--scales", default="0,0.5,1,2,4", help="guidance_sweep: comma-separated guidance "
                                                                     "scales w")
    add(("guidance_sweep",), "--guidance-samples", type=int, default=1000, help="guidance_sweep: samples per scale")
    add(("guidance_sweep",), "--guidance-steps", type=int, default=20, help="guidance_sweep: DDIM steps per sample")
    add(("latent_vs_pixel", "lm_curves"), "--seconds", type=float, default=0,
        help="latent_vs_pixel (default 600), lm_curves (default 300): CPU seconds of training per arm")
    add(("lm_curves",), "--lm-arms", default="", help="lm_curves: comma-separated arms (default all: transformer, "
                                                      "lstm, ssm)")
    add(("lm_curves",), "--lm-every", type=int, default=100, help="lm_curves: steps between validation points")
    add(("kv_cache",), "--tokens", type=int, default=256, help="kv_cache: tokens generated per sequence")
    add(("ssm_generation",), "--gen-length", type=int, default=4096,
        help="ssm_generation: tokens generated per sequence")
    add(("ssm_generation",), "--gen-window", type=int, default=64, help="ssm_generation: tokens per timed window")
    add(("ssm_generation",), "--gen-batch", type=int, default=1, help="ssm_generation: sequences generated at once")
    add(("latent_vs_pixel",), "--ae-fraction", type=float, default=0.3,
        help="latent_vs_pixel: share of the latent arm's budget spent on the autoencoder")
    add(("latent_vs_pixel",), "--ld-samples", type=int, default=1000,
        help="latent_vs_pixel: samples per arm for FID/KID")
    add(("latent_vs_pixel",), "--ld-sample-steps", type=int, default=20,
        help="latent_vs_pixel: DDIM steps of both arms")
    add(("latent_vs_pixel",), "--ld-arms", default="latent,pixel", help="latent_vs_pixel: which arms to run")
    add(("restoration",), "--restore-images", type=int, default=100, help="restoration: test images restored per row")
    add(("restoration",), "--restore-steps", type=int, default=50, help="restoration: respaced steps of the chain")
    add(("restoration",), "--restore-resample", type=int, default=5,
        help="restoration: RePaint's r of the resampled rows")
    add(("restoration",), "--restore-tasks", default=TASKS,
        help="restoration: comma-separated inpaint:MASK and super_resolution:FACTOR")
    add(("gan_stability",), "--stability-variants", default="plain,r1,spectral_norm,minibatch_std,unrolled,wgan_gp",
        help="gan_stability: comma-separated variants")
    add(("gan_stability",), "--stability-seeds", default="0,1,2",
        help="gan_stability: comma-separated train.seed values")
    add(("gan_stability",), "--stability-dataset", default="gaussians",
        help="gan_stability: gaussians or fashion_mnist")
    add(("gan_stability",), "--stability-steps", type=int, default=0,
        help="gan_stability: steps per run (default: the preset's)")
    add(("gan_stability",), "--stability-jobs", type=int, default=1,
        help="gan_stability: runs trained at once, one process each (a GPU)")
    add(("gan_stability",), "--stability-done", default="", help="gan_stability: comma-separated earlier results "
                                                                  "files whose runs count as done (not trained again)")
    add(("augmentation",), "--aug-runs", default="",
        help="augmentation: comma-separated NAME=RUN of class-conditional runs")
    add(("augmentation",), "--aug-real", type=int, default=20, help="augmentation: real images per class of the "
        "few-shot sets (and of the imbalanced split's minority classes)")
    add(("augmentation",), "--aug-samples", type=int, default=500,
        help="augmentation: samples (and real images) per class of the larger sets")
    add(("augmentation",), "--aug-steps", type=int, default=600,
        help="augmentation: classifier steps of batch 128 per set")
    add(("augmentation",), "--aug-seeds", default="0,1,2", help="augmentation: comma-separated seeds")
    add(("disentanglement",), "--dis-variants", default=DIS_VARIANTS,
        help="disentanglement: comma-separated beta=V and tc_beta=V")
    add(("disentanglement",), "--dis-seeds", default="0", help="disentanglement: comma-separated train.seed values")
    add(("disentanglement",), "--dis-steps", type=int, default=0,
        help="disentanglement: steps per run (default: the preset's)")
    add(("disentanglement",), "--dis-runs", default="", help="disentanglement: keep the trained runs in this folder")
    add(("galaxy_conditioning",), "--galaxy-samples", type=int, default=500,
        help="galaxy_conditioning: test conditions sampled")
    add(("fm_vs_cnf",), "--fm-seconds", type=float, default=300, help="fm_vs_cnf: wall seconds of training per model")
    add(("fm_vs_cnf",), "--fm-chunk", type=int, default=100, help="fm_vs_cnf: steps between W2 measurements")
    add(("fm_vs_cnf",), "--w2-target", type=float, default=0.0, help="fm_vs_cnf: W2 to reach (0: 1.5x the floor)")
    add(("ode_nfe",), "--nfe-steps", default="1,2,4,8,16,32", help="ode_nfe: comma-separated fixed-step counts")
    add(("ode_nfe",), "--fm-samples", type=int, default=1000, help="ode_nfe: samples per row (W2 or FID/KID)")
    add(("flow_bpd",), "--flow-steps", type=int, default=0,
        help="flow_bpd: training steps (default: the quick preset's)")
    add(("flow_bpd",), "--flow-every", type=int, default=100, help="flow_bpd: steps between test evaluations")
    add(("flow_bpd",), "--flow-test", type=int, default=1000, help="flow_bpd: test images per evaluation")
    add(("gpu_steps", "seeds"), "--preset", default="",
        help="gpu_steps, seeds: quick | full (default: full on a GPU, quick on a CPU)")
    add(("seeds",), "--seeds-models", default="flow_matching,score,change_of_variables",
        help="seeds: comma-separated models (the engine's default step only)")
    add(("seeds",), "--seeds-steps", type=int, default=50, help="seeds: steps of each run, the first untimed")
    add(("seeds",), "--seeds-set", action="append", default=[], metavar="KEY=VALUE",
        help="seeds: a change to every preset, as train's --set (repeatable)")
    add(("gpu_steps",), "--gpu-models", default="",
        help="gpu_steps: comma-separated models, MODEL@DATASET for that data set's preset (default: every model "
             "with a full preset; a model's rows are one per results file)")
    add(("gpu_steps",), "--gpu-steps", type=int, default=0,
        help="gpu_steps: timed steps per model (default: 20 on a GPU, 3 on a CPU)")
    add(("gpu_steps",), "--gpu-set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
        help="gpu_steps: a change to every preset (or to MODEL's only), as train's --set (repeatable)")
    add(("gpu_steps",), "--gpu-profile", type=int, default=0, metavar="N",
        help="gpu_steps: list the N kernels (operators on a CPU) that take the most of each step")
    add(("gpu_steps",), "--gpu-profile-models", default="",
        help="gpu_steps: comma-separated models whose kernels --gpu-profile lists (default: every one timed)")
    add(("gpu_steps",), "--gpu-model-limit", type=float, default=0, metavar="SECONDS",
        help="gpu_steps: seconds each model's row may take in all, past which it is a failed row (default: no limit)")
    add(("gpu_steps",), "--gpu-merge", action="store_true", help="gpu_steps: keep the rows already in the results "
        "file from the same device and preset, replacing those of the models timed again")
    add(("control",), "--control-seeds", default="0,1,2", help="control: comma-separated train.seed values")
    add(("shared_cpu",), "--cpu-steps", type=int, default=300, help="shared_cpu: training steps per run")
    add(("shared_cpu",), "--cpu-loads", default="0,1,2", help="shared_cpu: comma-separated numbers of busy processes")
    add(("shared_cpu",), "--cpu-repeats", type=int, default=3, help="shared_cpu: runs of each setting under each load")
    add(("suite",), "--suite-tests", default="",
        help="suite: comma-separated test files or node ids to run instead of the whole default suite")
    add(("suite",), "--suite-commit", default="HEAD",
        help="suite: the commit to clone and test (default HEAD; an earlier one times a change before against after)")
    add(("suite",), "--suite-repeats", type=int, default=1, help="suite: runs of the suite, each between two probes")
    add(("jax_train",), "--jax-models", default="",
        help="jax_train: comma-separated models (default: every model practice_jax train trains)")
    add(("jax_train",), "--jax-steps", type=int, default=20, help="jax_train: timed steps per backend")
    add(("jax_train",), "--jax-quality", action="store_true", help="jax_train: also train each quick preset to the "
        "end in both backends and evaluate it (tens of minutes a model)")
    add(("jax_train",), "--jax-seeds", default="0,1", help="jax_train: comma-separated train.seed values (quality)")
    add(("reproduce",), "--rows", default="",
        help=f"reproduce: comma-separated rows (default all: {', '.join(REPRODUCE_ROWS)})")
    add(("reproduce",), "--list", action="store_true",
        help="reproduce: list the rows (or those --rows names), each with how long its runs should take at --seeds "
             "and --jobs, and exit")
    add(("reproduce",), "--presets", nargs="?", const="all", default="", metavar="MODEL,...",
        help="reproduce: the README's results table instead: every front-page quick preset as it comes (or those "
             "named) over the seeds, each row replaced by the mean")
    add(("reproduce", "seeds"), "--seeds", type=int, default=5,
        help="reproduce, seeds: train.seed 0 .. N-1 of every arm (reproduce), trained at once (seeds)")
    add(("reproduce",), "--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))),
        help="reproduce: runs trained at once, one thread each (default: one per core)")
    add(("reproduce",), "--reproduce-runs", default=str(RESULTS / "reproduce-runs"),
        help="reproduce: where the runs are kept (a stopped sweep resumes from them)")
    add(("reproduce",), "--publish", action="store_true",
        help="reproduce: write the published record, docs/reproduce.json and docs/figures/reproduce_* (--presets: "
             "docs/results.json); without it a trial writes its own into --results and leaves them as they are")
    return parser


ONLY = {"list": "reproduce", "publish": "reproduce"}  # options that mean something to one benchmark alone


def interrupted_note(name: str, args, saved: bool) -> str:
    """What an interrupted benchmark kept, and where: a sweep's finished runs (reproduce), or the rows measured so far
    (a benchmark that hands them to ``args.save`` as it goes); '' when nothing."""
    if name == "reproduce":
        return f"; {reproduce_interrupted_note(args)}"
    return f"; the rows measured so far are in {args.results / f'{name}.json'}" if saved else ""


def run_benchmark(name: str, args, cores: list[int], saved: list[bool]) -> int:
    """Run one benchmark, print its table and write ``--results``/<name>.json; 1 where its check fails, else 0.
    ``saved`` gets True once the benchmark has written rows of its own (``args.save``)."""
    load_before = round(os.getloadavg()[0], 2)  # the machine's load as the benchmark starts (1-minute average)
    meta = {"benchmark": name, "threads": len(cores), "torch": torch.__version__,
            "machine": platform.machine(), "processor": platform.processor(), "time": time.time(),
            "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_before": load_before, "commit": commit()}
    out = args.results / f"{name}.json"

    def save(rows: list[dict]) -> None:  # a benchmark that measures row by row: a stopped run keeps what it measured
        write_result(out, {"meta": meta, "rows": rows})
        saved.append(True)

    args.save = save
    rows = BENCHMARKS[name](args)
    print_table(name, rows)
    result = {"meta": meta, "rows": rows}
    status = 0
    if name in CHECKS:
        problems = CHECKS[name](rows)
        result["order_holds"] = not problems
        print("expected order holds: " + ("yes" if not problems else "NO\n  " + "\n  ".join(problems)))
        status = 1 if problems else 0
    write_result(out, result)
    print(f"wrote {out}")
    return status


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when every benchmark ran (1 where a check failed); 2 and one line ``error: ...`` on a
    usage error (argparse's, or one a benchmark raises as ``SystemExit('error: ...')``); 130 and one line when
    interrupted (Ctrl-C), what was finished kept; 143 and one line when terminated (SIGTERM), likewise."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage error, already said in one line
        return exc.code
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    if args.help:
        print(build_parser(args.names or None).format_help(), end="")
        return 0
    names = args.names or DEFAULT
    alone = [(option, only) for option, only in ONLY.items() if getattr(args, option) and only not in names]
    if alone:
        option, only = alone[0]
        print(f"error: --{option} is an option of {only}: python -m benchmarks {only} --{option}", file=sys.stderr)
        return 2
    if args.list:
        try:
            print(list_rows(args))
        except SystemExit as exc:
            return usage_error(exc)
        return 0
    # Both libraries, and the GEMM peak, get the same cores: XLA's CPU client ignores thread-count flags. And the same
    # allocator: glibc keeps what a step frees (XLA's CPU runtime would otherwise page-fault its buffers in afresh at
    # every step), before JAX starts its threads.
    available = sorted(os.sched_getaffinity(0))
    cores = available[: args.threads or default_threads(names, torch.cuda.is_available(), len(available))]
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    keep_freed_memory()
    args.results.mkdir(parents=True, exist_ok=True)
    status = 0
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        for name in names:
            saved: list[bool] = []
            try:
                status = run_benchmark(name, args, cores, saved) or status
            except SystemExit as exc:
                return usage_error(exc)
            except KeyboardInterrupt as exc:
                print(f"error: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"
                      f"{interrupted_note(name, args, bool(saved))}", file=sys.stderr)
                return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return status


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is: the same cleanup (a sweep's runs killed, what was finished kept), exit 143."""


def terminate(signum, frame):
    raise Terminated


def usage_error(exc: SystemExit) -> int:
    """A benchmark's ``SystemExit('error: ...')`` (its one-line usage error): printed on stderr, exit 2; any other
    exit goes on as it was."""
    if not isinstance(exc.code, str):
        raise exc
    print(exc.code, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
