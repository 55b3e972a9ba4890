"""The training engine shared by every model (ARCHITECTURE.md, "An implementation trains for real").

It knows nothing of any model: a model module gives it the small interface of
``practice_torch.models`` and the engine does the rest.

    config.py       run configuration (model / data / train sections), presets, ``--set key=value``
    batches.py      reproducible global batches from (seed, epoch, position), sharded over ranks
    distributed.py  torchrun / DistributedDataParallel set-up (gloo on CPU, NCCL on GPU)
    ema.py          exponential moving average of the weights
    checkpoint.py   safetensors weights + companion state (optimizer, schedule, EMA, every RNG), atomic
    metrics.py      metrics.jsonl, TensorBoard events, the loss-curve plot
    artefacts.py    samples a person looks at: PNG grids, WAV files, text
    loop.py         the training loop: AdamW, warmup + cosine, clipping, bf16, compile, signals, NaN stop
    runs.py         run directories: create, refuse to overwrite, reload for ``sample`` and ``eval``
"""


class RunError(Exception):
    """A user error (bad config, missing or foreign checkpoint, ...): the message is one line and the
    command line prints it and exits with status 2."""
