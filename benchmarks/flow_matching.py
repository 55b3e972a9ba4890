"""Flow matching benchmarks (run only when named; they train for minutes on a CPU).

``python -m benchmarks fm_vs_cnf``: flow matching against the FFJORD-style CNF on two moons. Both train with the
project's engine from their quick configs (``--set``-free), in chunks of ``--fm-chunk`` steps for at most
``--fm-seconds`` of wall time each (process CPU time is reported beside it: on a shared machine it is the fairer
clock); after every chunk the exact W2 of 500 samples (EMA weights) to 500 held-out points
is measured outside the clock. One row per model: wall time and steps to reach W2 <= ``--w2-target`` (default: 1.5x
the W2 between two held-out halves of the same size, the floor), the best and final W2, the final held-out NLL in nats
(exact trace, dopri5; ``evaluate`` of each module) and the NFE per sample. Flow matching's step is simulation-free
(one field evaluation per example); the CNF's solves an ODE with the trace in every step.

``python -m benchmarks ode_nfe [--run RUN]``: NFE against quality for the ODE sampler of a trained flow_matching run
(default: the newest runs/flow_matching-*; none: a quick moons run is trained first). 2-D: exact W2 of ``--fm-samples``
samples (default 1000) to as many held-out points; images: FID and KID of as many samples in the project's feature
space. Methods euler, midpoint, rk4 (torchdiffeq's 3/8 rule) at ``--nfe-steps`` steps, and dopri5 at a few
tolerances. Every row starts from the same noise, so differences between rows are the solver's.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _points(dataset, n: int, offset: int = 0) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(offset, offset + n)])


@torch.no_grad()
def _samples(module_name: str, net, config, n: int, seed: int) -> tuple[torch.Tensor, int]:
    """n samples (n, D) of a trained flow_matching or cnf net and the NFE of drawing them."""
    generator = torch.Generator().manual_seed(seed)
    if module_name == "flow_matching":
        from practice_torch.flow_matching.model import generate

        trajectory = generate(net, config, n, generator)
        return trajectory.x[-1].cpu(), trajectory.nfe
    from practice_torch.cnf.sampling import draw_samples

    xs, _, nfe = draw_samples(net, config, n, generator)
    return xs[-1].cpu(), int(nfe)


def train_until(cfg, run_dir: Path, seconds: float, chunk: int, held: torch.Tensor, target: float) -> dict:
    """Train ``cfg`` with the engine in chunks of ``chunk`` steps (wall clock ``seconds`` at most, evaluation excluded),
    measuring W2 of len(held) samples (EMA weights) to ``held`` after each chunk; the first time it is <= target."""
    from practice_torch.engine.runs import ema_copy
    from practice_torch.evaluation import wasserstein2
    from practice_torch.models import new_trainer

    trainer, spent, cpu, curve, reached = new_trainer(cfg, run_dir), 0.0, 0.0, [], None
    try:
        while spent < seconds and trainer.step < cfg.train.steps:
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.run(stop_at=min(trainer.step + chunk, cfg.train.steps))
            spent, cpu = spent + time.perf_counter() - start, cpu + time.process_time() - start_cpu
            net = trainer.net if trainer.ema is None else ema_copy(trainer.net, trainer.ema.weights(trainer.net))
            net.eval()
            w2 = wasserstein2(_samples(cfg.model_name, net, cfg.model, len(held), seed=trainer.step)[0], held)
            curve.append((trainer.step, spent, w2))
            print(f"  {cfg.model_name}: step {trainer.step}, {spent:.1f} s ({cpu:.1f} s CPU), W2 {w2:.4f}", flush=True)
            if reached is None and w2 <= target:
                reached = (trainer.step, spent, cpu)
    finally:
        trainer.close()
    return {"net": net, "curve": curve, "reached": reached, "seconds": spent, "cpu_seconds": cpu, "steps": trainer.step}


def fm_vs_cnf(args) -> list[dict]:
    """Rows (model, steps and seconds to W2 <= target, best/final W2, final NLL, NFE per sample)."""
    from practice_torch import models
    from practice_torch.engine.runs import load_split
    from practice_torch.evaluation import wasserstein2

    seconds, chunk = getattr(args, "fm_seconds", 300.0), getattr(args, "fm_chunk", 100)
    root = Path(tempfile.mkdtemp(prefix="fm_vs_cnf-"))
    rows = []
    for name in ("flow_matching", "cnf"):
        module = models.get_model(name)
        cfg = module.default_config("quick", "moons")
        cfg.train.threads = getattr(args, "threads", 1)
        test = load_split(cfg.data, "test")
        held, other = _points(test, 500), _points(test, 500, offset=500)
        floor = wasserstein2(other, held)
        target = getattr(args, "w2_target", 0.0) or 1.5 * floor
        print(f"{name}: W2 target {target:.4f} (held-out floor {floor:.4f}), at most {seconds:.0f} s", flush=True)
        out = train_until(cfg, root / name, seconds, chunk, held, target)
        metrics = module.evaluate(out["net"], cfg.model, test, torch.Generator().manual_seed(0))
        rows.append({"model": name, "w2_target": target, "w2_floor": floor,
                     "steps_to_target": out["reached"][0] if out["reached"] else None,
                     "seconds_to_target": out["reached"][1] if out["reached"] else None,
                     "cpu_seconds_to_target": out["reached"][2] if out["reached"] else None,
                     "steps": out["steps"], "train_seconds": out["seconds"], "train_cpu_seconds": out["cpu_seconds"],
                     "best_w2": min(c[2] for c in out["curve"]), "final_w2": metrics["w2"],
                     "final_nll": metrics["nll"], "nll_stderr": metrics["nll_stderr"],
                     "nfe_per_sample": metrics["nfe_per_solve"]})
    return rows


def find_run(run: str | None) -> Path | None:
    if run:
        return Path(run)
    found = sorted((ROOT / "runs").glob("flow_matching-*"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def ode_nfe(args) -> list[dict]:
    """Rows (method, steps or tolerance, NFE, seconds per sample, W2 or FID/KID) for one trained flow_matching run."""
    from practice_torch import models
    from practice_torch.engine.runs import load_split
    from practice_torch.models import open_run

    run = find_run(getattr(args, "run", None))
    if run is None or not (run / "config.json").is_file():
        module = models.get_model("flow_matching")
        cfg = module.default_config("quick", "moons")
        run = Path(tempfile.mkdtemp(prefix="ode_nfe-")) / "run"
        print(f"no flow_matching run given: training the quick moons preset into {run}", flush=True)
        from practice_torch.models import new_trainer

        trainer = new_trainer(cfg, run)
        try:
            trainer.run()
        finally:
            trainer.close()
    module, cfg, net = open_run(run, torch.device("cpu"))
    if cfg.model_name != "flow_matching":
        raise SystemExit(f"error: {run} is not a flow_matching run")
    test = load_split(cfg.data, "test")
    images = len(net.shape) == 3
    steps_list = [int(s) for s in str(getattr(args, "nfe_steps", "1,2,4,8,16,32")).split(",")]
    settings = [(m, s, None) for m in ("euler", "midpoint", "rk4") for s in steps_list]
    settings += [("dopri5", 1, tol) for tol in (1e-2, 1e-3, 1e-5)]
    if images:
        measure, n = _image_metric(args, cfg, test), getattr(args, "fm_samples", 1000)
    else:
        from practice_torch.evaluation import wasserstein2

        n = getattr(args, "fm_samples", 1000)
        held = _points(test, n)
        floor = wasserstein2(_points(test, n, offset=n), held) if len(test) >= 2 * n else float("nan")
        measure = lambda x: {"w2": wasserstein2(x, held), "w2_floor": floor}  # noqa: E731
    rows = []
    for method, steps, tol in settings:
        config = dataclasses.replace(cfg.model, method=method, ode_steps=steps,
                                     **({"atol": tol, "rtol": tol} if tol else {}))
        x, nfe, seconds = _draw(module, net, config, n, images)
        row = {"method": method, "steps": steps if tol is None else None, "tol": tol, "nfe": nfe, "n": n,
               "s_per_sample": seconds / n, **measure(x), "run": str(run)}
        rows.append(row)
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                               if k != "run"), flush=True)
    return rows


@torch.no_grad()
def _draw(module, net, config, n: int, images: bool, chunk: int = 250) -> tuple[torch.Tensor, int, float]:
    """n samples ((n, D), or images in [0, 1] with one class per row when conditional), NFE per solve, seconds."""
    from practice_torch.flow_matching.model import generate

    generator, parts, nfe = torch.Generator().manual_seed(0), [], 0
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        y = torch.arange(m) % net.num_classes if net.num_classes else None
        trajectory = generate(net, config, m, generator, y)
        parts.append(net.from_model(trajectory.x[-1]).clamp(0, 1) if images else trajectory.x[-1])
        nfe = trajectory.nfe
    return torch.cat(parts).cpu(), nfe, time.perf_counter() - start


def _image_metric(args, cfg, test):
    """x (N, C, H, W) in [0, 1] -> FID and KID against as many test images, in the project's feature space."""
    from practice_torch.evaluation import fid_from_features, kid_subsets
    from practice_torch.evaluation.features import embed, feature_network

    n = getattr(args, "fm_samples", 1000)
    real = _points(test, min(n, len(test)))
    features = feature_network(cfg.data.name, getattr(args, "data_dir", None))
    real_feats = embed(features, real)[0]

    def measure(x: torch.Tensor) -> dict:
        fake = embed(features, x)[0]
        kid, kid_std = kid_subsets(real_feats, fake, generator=torch.Generator().manual_seed(1))
        return {"fid": fid_from_features(real_feats, fake), "kid": kid, "kid_std": kid_std}

    return measure
