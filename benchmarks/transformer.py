"""``python -m benchmarks transformer_step``: one training step of a character transformer on one thread.

The size is nanoGPT's shakespeare_char CPU run (4 layers, 4 heads, dim 128, context 64, vocab 65): token
embedding, ``practice_torch.nets.Transformer``, a linear head, cross-entropy, backward and AdamW. Rows vary one
thing at a time from the baseline (batch 12, biases, float32, eager): batch 64, no biases (nanoGPT's setting),
fused AdamW, bf16 autocast, and ``torch.compile`` (skipped with ``--no-compile``); each with MKL as shipped and,
on AMD CPUs, with MKL's AVX-512 path forced by a vendor shim (``mkl_shim``: a child process with LD_PRELOAD).

FLOPs are counted analytically, as nanoGPT and PaLM (appendix B) do: 6 N per token for the N weights of the
matrix products (the blocks' Linear layers and the head; not the embedding tables, biases or norms) plus
12 L T d for attention (q k^T and A v, forward and backward, the full T x T although half of it is masked);
``flop_counter``'s count is the cross-check. MFU is against the best one-thread fp32 GEMM measured (``gemm_peak``:
XLA, torch as shipped, torch with the shim, each by CPU time). Where the time goes: ``gemm_share`` is the
fraction of the profiled step spent in matrix products (mm/addmm/bmm and the attention kernel); the rest is
elementwise work (norms, GELU, softmax, AdamW over every weight), memory- and dispatch-bound at dim 128.
Each step is timed by wall clock and by process CPU time (best of ``--repeats``, variants taking turns); on a
shared machine the CPU-time MFU is the one to read (time slicing does not inflate it), and the load average is
reported with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.timing import count_flops
from practice_torch.nets import Transformer, TransformerConfig

VOCAB, CONTEXT = 65, 64
BASE = TransformerConfig(dim=128, heads=4, layers=4, max_len=CONTEXT)
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::linear_backward")


class CharTransformer(nn.Module):
    """Token embedding + trunk + linear head: the language model's character transformer, at benchmark size."""

    def __init__(self, config: TransformerConfig, vocab: int = VOCAB):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, config.dim)
        self.trunk = Transformer(config)
        self.head = nn.Linear(config.dim, vocab, bias=False)

    def forward(self, tokens, targets):
        logits = self.head(self.trunk(self.token_embedding(tokens)))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def analytic_flops_per_token(config: TransformerConfig, context: int = CONTEXT, vocab: int = VOCAB) -> float:
    """6 N + 12 L T d for one training token (forward 2 N + 4 L T d, backward twice that)."""
    d, f = config.dim, config.mlp_ratio * config.dim
    matmul_weights = config.layers * (3 * d * d + d * d + 2 * d * f) + d * vocab
    return 6 * matmul_weights + 12 * config.layers * context * d


def gemm_share(step) -> float:
    """Fraction of the CPU time of one profiled ``step()`` spent in matrix products."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / max(total, 1)


# MKL picks its code path by CPU vendor: on AMD it skips AVX-512, and torch's fp32 GEMM runs at under half the
# machine's peak (``gemm_peaks``: torch against XLA). Preloading a two-line library that answers "Intel" to MKL's
# vendor query makes it take the AVX-512 path (same instructions, which Zen 4 implements): the GEMMs double.
MKL_SHIM_C = "int mkl_serv_intel_cpu_true(void) { return 1; }\nint mkl_serv_intel_cpu(void) { return 1; }\n"


def mkl_shim() -> str | None:
    """Path of the compiled vendor shim for LD_PRELOAD, or None (not an AMD x86 CPU, torch without MKL, no C
    compiler). Built once into the temp directory."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    try:
        amd = "AuthenticAMD" in Path("/proc/cpuinfo").read_text()
    except OSError:
        amd = False
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not (amd and torch.backends.mkl.is_available() and compiler):
        return None
    folder = Path(tempfile.gettempdir()) / "generative_twins_mkl_shim"
    library = folder / "libmkl_intel_cpu.so"
    if not library.exists():  # built under a private name, then renamed: a concurrent caller never sees half a file
        folder.mkdir(exist_ok=True)
        source, partial = folder / f"shim-{os.getpid()}.c", folder / f"partial-{os.getpid()}.so"
        source.write_text(MKL_SHIM_C)
        built = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source)],
                               capture_output=True)
        source.unlink(missing_ok=True)
        if built.returncode:
            partial.unlink(missing_ok=True)
            return None
        os.replace(partial, library)
    return str(library)


def _variants(compile_too: bool):
    """(name, config, batch, fused AdamW, autocast bf16, compiled)."""
    no_bias = replace(BASE, bias=False)
    rows = [("baseline b12", BASE, 12, False, False, False), ("no bias b12", no_bias, 12, False, False, False),
            ("no bias fused-adamw b12", no_bias, 12, True, False, False),
            ("batch 64", BASE, 64, False, False, False), ("no bias b64", no_bias, 64, False, False, False),
            ("no bias fused-adamw b64", no_bias, 64, True, False, False),
            ("no bias bf16-autocast b64", no_bias, 64, False, True, False)]
    if compile_too:
        rows += [("no bias compiled b12", no_bias, 12, True, False, True),
                 ("no bias compiled b64", no_bias, 64, True, False, True)]
    return rows


def best_times(steps: dict, repeats: int, warmup: int = 2) -> dict:
    """Per step: the fastest wall-clock time and the fastest process CPU time of ``repeats`` calls, taking turns.
    With one thread the CPU time is the time the step really ran: a loaded machine's time slicing does not
    inflate it (its cache interference still does)."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    best = {name: [float("inf"), float("inf")] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            best[name] = [min(best[name][0], time.perf_counter() - wall), min(best[name][1], time.process_time() - cpu)]
    return best


def gemm_peak(sizes=(512, 1024), repeats: int = 10) -> dict[str, float]:
    """One-thread fp32 GEMM FLOP/s of torch (this process's MKL dispatch) and of XLA, each the best of ``repeats``
    by process CPU time, so time slicing on a shared machine does not lower it. {'torch': ..., 'xla': ...}."""
    import jax
    import jax.numpy as jnp

    matmul, peaks = jax.jit(jnp.matmul), {"torch": 0.0, "xla": 0.0}
    for n in sizes:
        a = torch.randn(n, n)
        aj = jnp.asarray(a.numpy())
        calls = {"torch": lambda: a @ a, "xla": lambda: matmul(aj, aj).block_until_ready()}
        best = best_times(calls, repeats)
        for lib in peaks:
            peaks[lib] = max(peaks[lib], 2 * n**3 / best[lib][1])
    return peaks


def measure(repeats: int, compile_too: bool) -> list[dict]:
    """The rows of every variant in this process (MKL dispatch as it is), without MFU (the caller knows the peak)."""
    steps, info = {}, {}
    for name, config, batch, fused, bf16, compiled in _variants(compile_too):
        torch.manual_seed(0)
        model = CharTransformer(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=fused or None)
        tokens = torch.randint(0, VOCAB, (batch, CONTEXT))
        targets = torch.roll(tokens, -1, dims=1)
        forward = torch.compile(model) if compiled else model

        def loss_backward(forward=forward, tokens=tokens, targets=targets, bf16=bf16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward(tokens, targets)
            loss.backward()

        def step(optimizer=optimizer, loss_backward=loss_backward):
            optimizer.zero_grad(set_to_none=True)
            loss_backward()
            optimizer.step()

        step()  # compiles when compiled; allocates AdamW's state
        counted = count_flops(loss_backward) if not compiled else float("nan")
        steps[name] = step
        info[name] = (config, batch, counted, gemm_share(step))
    best = best_times(steps, repeats)
    shim = "avx512 shim" if "generative_twins_mkl_shim" in os.environ.get("LD_PRELOAD", "") else "as shipped"
    torch_peak = gemm_peak(repeats=repeats)["torch"]
    rows = []
    for name, (config, batch, counted, share) in info.items():
        (wall, cpu), tokens = best[name], batch * CONTEXT
        flops = analytic_flops_per_token(config) * tokens
        rows.append({"variant": name, "mkl": shim, "batch": batch, "tokens_per_s": tokens / wall,
                     "tokens_per_cpu_s": tokens / cpu, "ms_step": 1e3 * wall, "ms_step_cpu": 1e3 * cpu,
                     "gflop_step": flops / 1e9, "counted_vs_analytic": counted / flops, "gemm_share": share,
                     "torch_gemm_gflops": torch_peak / 1e9, "load_avg_1min": os.getloadavg()[0]})
    return rows


def transformer_step(args) -> list[dict]:
    """Rows per variant, with MKL as shipped and (on AMD, in a child process) with the AVX-512 vendor shim:
    tokens/s and MFU (wall clock and CPU time), FLOPs analytic and counted, the GEMM time share. The peak is the
    best one-thread GEMM measured (XLA, torch as shipped, torch with the shim)."""
    compile_too = getattr(args, "compile", True)
    rows = measure(args.repeats, compile_too)
    shim = mkl_shim()
    if shim is None:
        print("MKL vendor shim not built (not AMD, no MKL or no C compiler): rows with MKL as shipped only")
    else:
        child = subprocess.run([sys.executable, "-m", "benchmarks.transformer", "--repeats", str(args.repeats)]
                               + ([] if compile_too else ["--no-compile"]),
                               env={**os.environ, "LD_PRELOAD": shim}, capture_output=True, text=True, check=True)
        rows += json.loads(child.stdout.strip().splitlines()[-1])
    peak = max(gemm_peak(repeats=args.repeats)["xla"], *(row["torch_gemm_gflops"] * 1e9 for row in rows))
    for row in rows:
        row["mfu"] = row["gflop_step"] * 1e9 / (row["ms_step"] / 1e3) / peak
        row["mfu_cpu_time"] = row["gflop_step"] * 1e9 / (row["ms_step_cpu"] / 1e3) / peak
        row["gemm_peak_gflops"] = peak / 1e9
    return rows


def main(argv: list[str] | None = None) -> None:
    """The child process of ``transformer_step``: one thread, the variants' rows as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transformer")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(measure(args.repeats, args.compile)))


if __name__ == "__main__":
    main()
