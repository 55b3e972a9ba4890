"""``python -m benchmarks flow_bpd``: test bits/dim of the coupling flow against training time, in one run.

The quick preset of ``coupling_flows`` on ``--dataset`` (fashion_mnist) trains with the project's engine in chunks of
``--flow-every`` steps up to ``--flow-steps`` (default: the preset's, whose LR schedule it keeps); after each chunk
the test bits/dim of the first ``--flow-test`` test images (one dequantisation draw each, the same draws every time)
are measured, and the row records the steps, the wall and process-CPU seconds of training so far (evaluation
excluded) and the training loss of the last chunk. On a machine shared with other jobs wall time measures the
neighbours as well; CPU seconds do not. Threads: the preset's ``train.threads`` (1).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch


@torch.no_grad()
def test_bits_per_dim(net, images: torch.Tensor, u: torch.Tensor) -> float:
    """Mean bits/dim of -log p((k + u) / levels) over ``images`` (N, C, H, W) with the draws u, in batches of 500."""
    from practice_torch.coupling_flows import bits_per_dim_from_log_prob

    was_training = net.training
    net.eval()
    dims = math.prod(net.shape)
    bits = torch.cat([bits_per_dim_from_log_prob(net.log_prob(net.dequantize(images[i:i + 500], u[i:i + 500])),
                                                 dims, net.levels) for i in range(0, len(images), 500)])
    net.train(was_training)
    return bits.mean().item()


def flow_bpd(args) -> list[dict]:
    from practice_torch.data import get_dataset
    from practice_torch.engine.metrics import read_metrics
    from practice_torch.models import get_model, new_trainer

    cfg = get_model("coupling_flows").default_config("quick", args.dataset)
    if args.flow_steps:
        cfg.train.steps = args.flow_steps
    test = get_dataset(args.dataset, "test", args.data_dir)
    n = min(args.flow_test, len(test))
    images = torch.stack([test[i][0] for i in range(n)])
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    run_dir = Path(tempfile.mkdtemp(prefix="flow_bpd-"))
    cpu0, wall0, eval_cpu, eval_wall = time.process_time(), time.perf_counter(), 0.0, 0.0
    trainer = new_trainer(cfg, run_dir)
    rows = []
    try:
        while trainer.step < cfg.train.steps:
            target = trainer.step + args.flow_every
            trainer.run(stop_at=target if target < cfg.train.steps else None)  # the last chunk also writes samples
            c, w = time.process_time(), time.perf_counter()
            bits = test_bits_per_dim(trainer.net, images.to(trainer.device), u.to(trainer.device))
            eval_cpu, eval_wall = eval_cpu + time.process_time() - c, eval_wall + time.perf_counter() - w
            logged = [r for r in read_metrics(run_dir) if "loss" in r]
            rows.append({"step": trainer.step, "wall_s": round(time.perf_counter() - wall0 - eval_wall, 1),
                         "cpu_s": round(time.process_time() - cpu0 - eval_cpu, 1),
                         "train_bits": logged[-1]["loss"] if logged else math.nan, "test_bits": bits,
                         "test_images": n, "threads": torch.get_num_threads()})
            print(rows[-1], flush=True)
    finally:
        trainer.close()
    return rows
