"""One check shared by the training tests: a run cut at a step and resumed ends bit-identical to an uncut one."""

from __future__ import annotations

import copy

import torch

from practice_torch.engine.checkpoint import load_checkpoint
from practice_torch.engine.runs import CHECKPOINTS
from practice_torch.models import new_trainer


def assert_resumes_exactly(cfg, tmp_path, stop_at: int):
    """Train ``cfg`` straight through in ``tmp_path/whole`` and, in ``tmp_path/cut``, to ``stop_at``, then resumed;
    every tensor of the resumed net must equal the uncut run's last checkpoint. Each trainer gets its own copy of
    ``cfg``, as each command does. With ``train.threads`` 0 the runs take one thread: the engine gives a run fewer
    threads on a busy machine, and two thread counts sum a convolution's gradient in two orders, which Adam turns,
    on a bias whose gradient is all rounding (one before a GroupNorm), into steps of opposite signs. The runs draw no
    samples at their end (``train.samples`` 0): they come after the last checkpoint, which is what is compared."""
    cfg = copy.deepcopy(cfg)
    cfg.train.threads = cfg.train.threads or 1
    cfg.train.samples = 0
    new_trainer(copy.deepcopy(cfg), tmp_path / "whole").run()
    new_trainer(copy.deepcopy(cfg), tmp_path / "cut").run(stop_at=stop_at)
    resumed = new_trainer(copy.deepcopy(cfg), tmp_path / "cut", resume=True)
    assert resumed.step == stop_at
    resumed.run()
    whole, _ = load_checkpoint(tmp_path / "whole" / CHECKPOINTS, cfg.model_name, with_state=False)  # its last weights
    mine = resumed.net.state_dict()
    assert set(mine) == set(whole)
    for name, value in mine.items():
        assert torch.equal(value.cpu(), whole[name]), name
    return resumed
