"""Training in JAX on several hosts: ``python -m practice_jax train ... --coordinator HOST:PORT --processes N
--process-id I``, one process a host (or a process per group of devices), as torchrun starts one per GPU.

Every process runs the same command and builds the same run: the same batches and noise, drawn from the same seeds
(the engine's ``GlobalBatches`` and noise generator, as every torchrun rank draws the whole global batch), and the
same initial weights. ``jax.distributed.initialize`` joins them; the mesh (``loop.data_mesh``) then holds
``--devices`` local devices of every process, process by process, and each process places only its own devices'
rows of a batch and its copies of the replicated parameters (``place``): nothing but the gradient's all-reduce,
which the compiled step does, crosses between hosts. Process 0 alone writes the run (config, metrics, checkpoints,
samples: ``writes``); the others compute. A signal to any process stops every one at the same step (``agreed_signal``),
after which process 0 checkpoints. ``--resume`` reads the run folder on every process: keep it on a file system every
host sees. On CPUs the processes reduce over Gloo (``jax_cpu_collectives_implementation``), so that two processes on
one machine are a test of the wiring (``tests/test_jax_train.py``).
"""

from __future__ import annotations

import numpy as np


class HostsError(ValueError):
    """A multi-process setting that cannot work, said in one line."""


def initialize(coordinator: str | None, processes: int | None, process_id: int | None, resume: bool,
               out: str | None, timeout: int = 300) -> None:
    """Join the run's processes (``jax.distributed.initialize``, waiting up to ``timeout`` seconds for all of them)
    when ``--coordinator`` is given; HostsError (one line) for an incomplete or inconsistent set of the three flags, a
    new run without ``--out`` (each process would pick its own folder), or processes that do not meet."""
    given = [v is not None for v in (coordinator, processes, process_id)]
    if not any(given):
        return
    if not all(given):
        raise HostsError("--coordinator, --processes and --process-id go together: give all three (the same "
                         "coordinator and count to every process, each its own id)")
    if processes < 2 or not 0 <= process_id < processes:
        raise HostsError(f"--processes {processes} --process-id {process_id}: run at least 2 processes, with ids 0 to "
                         "processes - 1")
    if not resume and not out:
        raise HostsError("several processes write one run: give every process the same --out")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices reduce across processes
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=processes, process_id=process_id,
                                   initialization_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - XLA's errors are many lines; the user gets one
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HostsError(f"could not join the run's {processes} processes at {coordinator}: {first}") from None


def writes() -> bool:
    """Whether this process writes the run (process 0, or the only one)."""
    import jax

    return jax.process_index() == 0


def mesh_devices(devices: int) -> list:
    """The first ``devices`` local devices of every process, process by process: the mesh's one axis, so that each
    process holds a contiguous block of every batch's rows."""
    import jax

    by_process = {}
    for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(device.process_index, []).append(device)
    return [d for process in sorted(by_process) for d in by_process[process][:devices]]


def place(array, sharding):
    """``array`` (the same host array in every process) laid out as ``sharding`` says, each process filling only
    its own devices' slices (``jax.make_array_from_callback``); on one process, ``jax.device_put``."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(array, sharding)
    host = np.asarray(array)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def agreed_signal(signal: int | None) -> int | None:
    """The signal that stops the run: this process's (None: none yet) on one process; on several, every process's
    gathered at each step (the first one caught by any), so that all of them stop after the same step."""
    import jax

    if jax.process_count() == 1:
        return signal
    from jax.experimental import multihost_utils

    caught = np.asarray(multihost_utils.process_allgather(np.int32(signal or 0)))
    return int(caught.max()) or None
