"""One check shared by the training tests: a run cut at a step and resumed ends bit-identical to an uncut one."""

from __future__ import annotations

import copy

import torch

from practice_torch.models import new_trainer


def assert_resumes_exactly(cfg, tmp_path, stop_at: int):
    """Train ``cfg`` straight through in ``tmp_path/whole`` and, in ``tmp_path/cut``, to ``stop_at``, then resumed;
    every tensor of the two final state dicts must be equal. Each trainer gets its own copy of ``cfg``, as each
    command does (some builds record what they loaded in the config)."""
    new_trainer(copy.deepcopy(cfg), tmp_path / "whole").run()
    new_trainer(copy.deepcopy(cfg), tmp_path / "cut").run(stop_at=stop_at)
    resumed = new_trainer(copy.deepcopy(cfg), tmp_path / "cut", resume=True)
    assert resumed.step == stop_at
    resumed.run()
    whole = new_trainer(copy.deepcopy(cfg), tmp_path / "whole", resume=True).net.state_dict()
    for name, value in resumed.net.state_dict().items():
        assert torch.equal(value, whole[name]), name
    return resumed
