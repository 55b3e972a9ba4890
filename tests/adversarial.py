"""What the two-player tests share (gan, wgan): a tiny trainer on the 2-D Gaussians and each optimizer's step count."""

from __future__ import annotations

from practice_torch.engine.config import apply_overrides
from practice_torch.models import get_model, new_trainer


def tiny_trainer(model: str, run_dir, *overrides):
    """The engine's trainer of ``model``'s quick preset on gaussians, shrunk to 64 points, MLPs of 8, batches of 16."""
    cfg = apply_overrides(get_model(model).default_config("quick", "gaussians"), [
        "model.hidden=8", "model.latent_dim=2", "train.batch_size=16", "train.samples=10", "train.device=cpu",
        "data.limit=64", "train.warmup_steps=1", *overrides])
    return new_trainer(cfg, run_dir)


def adam_steps(optimizer) -> set[int]:
    """The step counts of an optimizer's parameters (one value when every parameter took every update)."""
    return {int(state["step"]) for state in optimizer.state.values()}
