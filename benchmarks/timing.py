"""What every benchmark measures with: best-of timings, the machine's fp32 GEMM peak, counted model FLOPs, and
glibc told to keep freed memory (``keep_freed_memory``).

MFU (model FLOP utilisation) = counted FLOPs per second / the GEMM peak measured in the same run.
"""

from __future__ import annotations

import ctypes
import time

import torch

__all__ = ["best_of", "best_of_interleaved", "count_flops", "gemm_peaks", "keep_freed_memory"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's; a CPU has none), so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, warmup: int = 2) -> float:
    """The fastest of ``repeats`` timed calls, in seconds (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep the memory a step frees for the next step instead of handing it back to the kernel:
    all threads in one arena, no allocation by its own ``mmap``, no trimming below 1 GiB (``mallopt``). Call it
    before JAX starts its threads. False, and nothing changed, where the C library is not glibc.

    XLA's CPU runtime allocates a step's buffers afresh at each call and frees them after, about 40 MB for the conv
    VAE's step at batch 128, and glibc hands such blocks back to the kernel (blocks above its mmap threshold, 32 MB at
    most; whole heaps of the arenas of other threads), so each call page-faults them in again: 10,000 faults, about
    18 ms of a 53 ms step on one core (``vae_step``). PyTorch's smaller blocks stay in glibc's heap once its threshold
    has risen, so its steps fault nothing either way."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
    return all(mallopt(option, value) == 1 for option, value in ((m_arena_max, 1), (m_mmap_max, 0),
                                                                  (m_trim_threshold, 1 << 30)))


def gemm_peaks(sizes=(512, 1024, 2048), repeats: int = 5) -> dict[str, float]:
    """fp32 GEMM FLOP/s at the current cores (2 n^3 per n x n matmul), best over a few sizes, per library.

    The machine peak is the better of the two; MFU is measured against it. On AMD CPUs torch's MKL
    sgemm runs well below XLA's, so torch's own GEMM is reported too (a ceiling for any torch model).
    """
    import jax
    import jax.numpy as jnp

    peaks = {"torch": 0.0, "xla": 0.0}
    mm = jax.jit(jnp.matmul)
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        peaks["torch"] = max(peaks["torch"], 2 * n**3 / best_of(lambda: a @ b, repeats))
        aj, bj = jnp.asarray(a.numpy()), jnp.asarray(b.numpy())
        peaks["xla"] = max(peaks["xla"], 2 * n**3 / best_of(lambda: mm(aj, bj).block_until_ready(), repeats))
    peaks["machine"] = max(peaks.values())
    return peaks


def _cpu_attention_flops() -> dict:
    """FlopCounterMode formulas for the CPU flash-attention kernels (it counts only the GPU ones)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)

    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def count_flops(fn) -> int:
    """The FLOPs of ``fn()`` by torch's own per-operator formulas (``FlopCounterMode``'s registry, plus the CPU
    attention kernels), summed by a dispatch mode that only adds them up. FlopCounterMode itself also attributes the
    FLOPs to modules through backward hooks, which fail inside ``torch.autograd.grad`` (a gradient penalty's R1 or
    WGAN-GP term, a score's input gradient): the totals are the same, without the attribution."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    registry = FlopCounterMode(display=False, custom_mapping=_cpu_attention_flops()).flop_registry

    class Totals(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            counted = registry.get(func._overloadpacket)
            if counted is not None:
                self.total += counted(*args, **kwargs, out_val=out)
            return out

    with Totals() as totals:
        fn()
    return totals.total


def best_of_interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """The fastest of ``repeats`` timed calls of each function (seconds), taking turns, so a busy machine slows
    every contender alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
