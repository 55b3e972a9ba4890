"""``control``: PPO against TRPO on CartPole-v1, each quick preset through the engine over seeds.

Each run is ``python -m practice_torch train {ppo,trpo} --dataset cartpole`` (the quick preset, ``train.seed`` 0, 1
and 2 by default: ``--control-seeds``), then ``eval`` (the greedy policy on the 100 test episodes). A row: the
algorithm, the seed, the environment steps at which the mean return of the last 20 finished episodes first reached
gymnasium's solved threshold (475), the recent mean return at the end, the greedy evaluation and the wall time.
``docs/figures/control_cartpole.png`` draws every run's recent mean return against environment steps, titled with
the commit, the machine and the load average over the benchmark.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.plots import new_axes, save

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "control_cartpole.png"
SOLVED = 475.0  # CartPole-v1's reward_threshold


def one_run(model: str, seed: int, out: Path) -> dict:
    """Train and evaluate one quick run into ``out``; its row and its logged curve."""
    from practice_torch.cli import main

    started = time.perf_counter()
    sets = ["--set", f"train.seed={seed}", "--set", "train.log_every=1"]
    if main(["train", model, "--dataset", "cartpole", "--out", str(out), *sets]) != 0:
        raise RuntimeError(f"{model} seed {seed}: training failed")
    if main(["eval", str(out)]) != 0:
        raise RuntimeError(f"{model} seed {seed}: eval failed")
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluation = json.loads((out / "eval_test.json").read_text())
    solved = next((r["env_steps"] for r in rows if r["episode_return"] >= SOLVED), None)
    return {"model": model, "seed": seed, "env_steps": rows[-1]["env_steps"], "steps_to_solved": solved,
            "final_recent_return": rows[-1]["episode_return"], "greedy_mean_return": evaluation["mean_return"],
            "greedy_min_return": evaluation["min_return"], "wall_s": wall,
            "curve": [(r["env_steps"], r["episode_return"]) for r in rows]}


def control(args) -> list[dict]:
    import tempfile

    from practice_torch.results import machine
    from project.environment import commit, describe

    seeds = [int(s) for s in args.control_seeds.split(",")]
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("ppo", "trpo"):
            for seed in seeds:
                rows.append(one_run(model, seed, Path(tmp) / f"{model}-{seed}"))
                print(f"  {model} seed {seed}: solved at {rows[-1]['steps_to_solved']} env steps, greedy "
                      f"{rows[-1]['greedy_mean_return']:.1f}, {rows[-1]['wall_s']:.0f} s", flush=True)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    fig, ax = new_axes((7, 4))
    for row in rows:
        steps, returns = zip(*row["curve"])
        ax.plot(steps, returns, lw=1, color="C0" if row["model"] == "ppo" else "C1",
                label=f"{row['model'].upper()}" if row["seed"] == seeds[0] else None)
    ax.axhline(SOLVED, color="k", ls="--", lw=0.8, label=f"solved ({SOLVED:g})")
    ax.set(xlabel="environment steps", ylabel="mean return of the last 20 episodes",
           title=f"CartPole-v1, quick presets, seeds {args.control_seeds}\n{commit()} · "
                 f"{machine({**describe(), 'cores': os.cpu_count()})}, one thread a run · {load}")
    ax.title.set_fontsize(8)
    save(fig, ax, FIGURE)
    print(f"  wrote {FIGURE}")
    for row in rows:
        del row["curve"]
    return rows
