"""The training engine shared by every model (docs/ARCHITECTURE.md, "An implementation trains for real").

It knows nothing of any model: it is handed a model module that gives it the small interface of
``interface.py`` (``practice_torch.models`` looks modules up in the registry) and does the rest.

    interface.py    what a model module provides (``ModelModule``), and ``Artefact``, what its sampler returns
    config.py       run configuration (model / data / train sections), presets, ``--set key=value``
    presets.py      presets as data: a model's ``PRESETS`` table and the run configuration it gives
    batches.py      reproducible global batches from (seed, epoch, position), sharded over ranks
    distributed.py  torchrun / DistributedDataParallel set-up (gloo on CPU, NCCL on GPU)
    ema.py          exponential moving average of the weights
    checkpoint.py   safetensors weights + companion state (optimizer, schedule, EMA, every RNG), atomic
    metrics.py      metrics.jsonl, TensorBoard events, the loss-curve plot
    artefacts.py    samples a person looks at: PNG grids, WAV files, text
    loop.py         the training loop: AdamW or SGD, warmup + cosine, annealing or exponential, clipping, bf16,
                    compile, signals, NaN stop
    runs.py         run directories: create, refuse to overwrite, reload for ``sample`` and ``eval``
"""


class RunError(Exception):
    """A user error (bad config, missing or foreign checkpoint, ...): the message is one line and the
    command line prints it and exits with status 2."""
