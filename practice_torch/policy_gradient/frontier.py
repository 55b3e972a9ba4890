"""``python -m practice_torch.policy_gradient.frontier RUN [RUN ...] --out FIGURE.png``: the judge's reward against
the KL to the reference, one point per evaluated fine-tuning run (REINFORCE, PPO, TRPO, DPO; each run's
``eval_test.json``), with the reference's reward as the line every run starts from.

A fine-tuning method trades KL for reward: a run is better than another when it reaches more reward at the same KL.
Points carry their standard errors both ways; each is labelled with the run's model and directory name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["frontier_points", "frontier_figure", "main"]


def frontier_points(runs: list[Path]) -> list[dict]:
    """(model, name, reward, its se, KL, its se, the reference's reward) of each run; ValueError, one line, for a run
    without a fine-tuning evaluation."""
    points = []
    for run in runs:
        path = run / "eval_test.json"
        try:
            metrics = json.loads(path.read_text())
            config = json.loads((run / "config.json").read_text())
        except (OSError, ValueError):
            raise ValueError(f"{run}: no eval_test.json (evaluate it first: python -m practice_torch eval {run})") \
                from None
        if "kl_to_reference" not in metrics:
            raise ValueError(f"{run} is not a fine-tuning run of the language model (its eval has no KL to the "
                             "reference)")
        points.append({"model": config.get("model_name", "?"), "name": run.name, "reward": metrics["reward"],
                       "reward_se": metrics["reward_se"], "kl": metrics["kl_to_reference"],
                       "kl_se": metrics["kl_to_reference_se"], "reference_reward": metrics["reference_reward"]})
    return points


def frontier_figure(points: list[dict], out: Path) -> Path:
    """The scatter of reward against KL (nats per response), written to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = {}
    for p in points:
        colour = colours.setdefault(p["model"], f"C{len(colours)}")
        ax.errorbar(p["kl"], p["reward"], xerr=p["kl_se"], yerr=p["reward_se"], fmt="o", color=colour,
                    label=p["model"] if sum(q["model"] == p["model"] for q in points[:points.index(p)]) == 0 else None)
        ax.annotate(p["name"], (p["kl"], p["reward"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    reference = sum(p["reference_reward"] for p in points) / len(points)
    ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="reference model")
    ax.scatter([0], [reference], color="grey")
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel("judge's mean reward (held-out prompts)")
    ax.set_title("reward against KL to the reference")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m practice_torch.policy_gradient.frontier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated runs of policy_gradient, ppo, trpo or dpo")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        points = frontier_points(args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {frontier_figure(points, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
