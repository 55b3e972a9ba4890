"""``python -m benchmarks.fingerprints``: what a refactor of the training side must not move.

Each model's quick preset (its default data set) trains ``--steps`` steps on the CPU with one thread, as
``practice_torch train`` would (the same engine, seed, data order and noise), and stops there, as an interruption
would; the fingerprint of the run is the SHA-256 of every tensor of its weights and of its optimizer's state. Two
commits whose fingerprints agree trained bit-identical networks.

    python -m benchmarks.fingerprints --out before.json            # on the old commit
    python -m benchmarks.fingerprints --compare before.json        # on the new one: which models moved

``--rename [MODEL:]OLD=NEW`` (repeatable) compares a weight the old commit named ``OLD...`` with the new one's
``NEW...`` (a module renamed, its numbers kept), in MODEL's run only or in every run.
``--compare`` names, model by model, the weights that changed, the ones only one side has (a counter buffer dropped,
say) and whether the optimizer's state agrees; it exits with 1 if any model's common weights differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (on the CPU, contiguous)."""
    t = tensor.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}{tuple(tensor.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def optimizer_digest(optimizer: torch.optim.Optimizer) -> str:
    """SHA-256 of every tensor of the optimizer's per-parameter state, in parameter order."""
    h = hashlib.sha256()
    for index, state in sorted(optimizer.state_dict()["state"].items()):
        for key, value in sorted(state.items()):
            h.update(f"{index}.{key}".encode())
            h.update(digest(value).encode() if torch.is_tensor(value) else repr(value).encode())
    return h.hexdigest()[:16]


# The runs a model builds on (a fine-tuned language model, an inverted GAN), trained first, as many steps, into
# ``--references``: (run name, model, data set, overrides with the other runs' folders as {name}).
PREREQUISITES = (("lm", "language_model", None, ()), ("gan", "gan", "fashion_mnist", ()),
                 ("reward", "reward_model", None, ("model.reference={lm}",)))
# model (or model@variant) -> (data set, overrides with the prerequisites' folders as {name})
USES = {"policy_gradient": (None, ("model.reference={lm}",)), "ppo": (None, ("model.reference={lm}",)),
        "ppo@reward_model": (None, ("model.reference={lm}", "model.reward_model={reward}")),
        "trpo": (None, ("model.reference={lm}",)), "reward_model": (None, ("model.reference={lm}",)),
        "dpo": (None, ("model.reference={lm}",)), "gan_inversion": (None, ("model.generator={gan}",)),
        "vq_vae@restarts": (None, ("model.restart_every=5",)),  # restarts within the 20 steps
        "ssm@audio": ("spoken_digits", ())}


def train(name: str, steps: int, overrides, run_dir: Path, dataset: str | None = None):
    """The engine's trainer of ``name``'s quick preset after ``steps`` steps on one CPU thread (checkpointed)."""
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    cfg = apply_overrides(get_model(name).default_config("quick", dataset),
                          ["train.threads=1", "train.device=cpu", "train.log_every=1",
                           f"train.checkpoint_every={10 ** 9}", *overrides])
    trainer = new_trainer(cfg, run_dir)
    try:
        trainer.run(stop_at=steps)
    finally:
        trainer.close()
    return trainer


def prerequisites(folder: Path, steps: int) -> dict[str, str]:
    """{name: run folder} of ``PREREQUISITES``, trained into ``folder`` unless there already."""
    runs = {}
    for run, model, dataset, overrides in PREREQUISITES:
        runs[run] = str(folder / run)
        if not (folder / run / "checkpoints" / "latest.json").is_file():
            train(model, steps, [o.format(**runs) for o in overrides], folder / run, dataset)
    return runs


def fingerprint(name: str, steps: int, runs: dict[str, str]) -> dict:
    """{"weights": {key: digest}, "optimizer": digest, "loss": the last logged loss} after ``steps`` quick steps."""
    model, _, _ = name.partition("@")
    dataset, overrides = USES.get(name, (None, ()))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = train(model, steps, [o.format(**runs) for o in overrides], Path(tmp) / "run", dataset)
        lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        return {"weights": {k: digest(v) for k, v in trainer.net.state_dict().items()},
                "optimizer": "".join(optimizer_digest(o) for _, o in sorted(trainer.optimizers.items())),
                "loss": json.loads(lines[-1])["loss"] if lines else None, "step": trainer.step}


def rename_option(text: str) -> tuple[str, str, str] | None:
    """``[MODEL:]OLD=NEW`` -> (MODEL or "", OLD, NEW); None when OLD or NEW is missing."""
    scope, _, pair = text.rpartition(":")
    old, _, new = pair.partition("=")
    return (scope, old, new) if old and new else None


def renamed(weights: dict[str, str], renames: list[tuple[str, str]]) -> dict[str, str]:
    """``weights`` with each key starting with a renamed prefix (old, new) given the new prefix."""
    def rename(key: str) -> str:
        return next((new + key[len(old):] for old, new in renames if key.startswith(old)), key)
    return {rename(k): v for k, v in weights.items()}


def compare(before: dict, after: dict, renames: list[tuple[str, str, str]] = ()) -> tuple[list[str], bool]:
    """(a line per model of ``after``, whether every model both sides ran kept its common weights); ``renames``:
    (model or "" for every model, old, new) prefixes of the weights' names in ``before`` and ``after``."""
    lines, same = [], True
    for name in sorted(after):
        a, b = before.get(name), after.get(name)
        if a is None or b is None or "error" in a or "error" in b:
            lines.append(f"{name}: not comparable ({(a or {}).get('error', 'absent')} / {(b or {}).get('error', 'absent')})")
            continue
        wa, wb = renamed(a["weights"], [(old, new) for model, old, new in renames if model in ("", name)]), b["weights"]
        changed = sorted(k for k in wa.keys() & wb.keys() if wa[k] != wb[k])
        gone, new = sorted(wa.keys() - wb.keys()), sorted(wb.keys() - wa.keys())
        optimizer = "optimizer same" if a["optimizer"] == b["optimizer"] else "optimizer CHANGED"
        verdict = "bit-identical" if not changed else f"{len(changed)} weights CHANGED ({', '.join(changed[:4])})"
        extra = (f"; only before: {', '.join(gone)}" if gone else "") + (f"; only after: {', '.join(new)}" if new else "")
        lines.append(f"{name}: {verdict}, {optimizer}{extra}")
        same &= not changed
    return lines, same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fingerprints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", nargs="*", help="default: every trainable model")
    parser.add_argument("--out", type=Path, help="write the fingerprints here (JSON)")
    parser.add_argument("--compare", type=Path, help="compare with fingerprints written before")
    parser.add_argument("--rename", action="append", default=[], metavar="[MODEL:]OLD=NEW",
                        help="a weight-name prefix the old commit called OLD and this one NEW (in MODEL's run only)")
    parser.add_argument("--references", type=Path, default=Path("runs/fingerprints"),
                        help="where the runs the fine-tuning models build on are trained once (default: %(default)s)")
    args = parser.parse_args(argv)
    from practice_torch.models import MODELS

    every = [*MODELS, *(k for k in USES if "@" in k)]
    unknown = sorted(set(args.models or ()) - set(every))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    renames = [rename_option(item) for item in args.rename]
    if not all(renames):
        parser.error(f"--rename takes [MODEL:]OLD=NEW weight-name prefixes, got {' '.join(args.rename)}")
    torch.set_num_threads(1)
    runs = prerequisites(args.references, args.steps)
    results = {}
    for name in args.models or every:
        started = time.perf_counter()
        try:
            results[name] = fingerprint(name, args.steps, runs)
        except Exception as exc:  # a model that cannot run here is reported, the others go on
            results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(f"{name}: {results[name].get('error') or results[name]['loss']} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.compare:
        lines, same = compare(json.loads(args.compare.read_text()), results, renames)
        print("\n".join(lines))
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
