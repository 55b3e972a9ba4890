"""``python -m benchmarks reproduce [--rows A,B] [--seeds N] [--jobs J] [--reproduce-runs DIR] [--publish]``: each
algorithm's own paper's experiment, over seeds, beside the paper's figure; ``--list``: the rows, each with how long
its runs should take. ``--presets [MODEL,...]``: the README's results table over seeds instead
(``reproduce_presets``): each front-page quick preset trained once a seed, its row the mean (the runs a preset builds
on trained first, a seed each: ``PARENTS``).

A row (``ROWS``, in ``benchmarks/reproduce_rows.py``) is one experiment: the paper and where its figure is, the
protocol (our presets as trained, on the paper's task), the arms (a model, a data set and its settings each, with
the paper's figure for it), the figure every run is read for (a key of ``eval``'s metrics) and the target every seed
must meet, or, for DANN, the share of the gap between two arms a third closes on each seed. The rows: CartPole (PPO,
TRPO), WGAN-GP's 8 Gaussians and its other toys (the 25 Gaussians also at gan_toy.py's settings), DANN on two shifts
with its bounds (and on the galaxy blend at three times the steps, also with the paper's optimizer), BiGAN's encoder
against the autoencoder's and the VAE's, the mode-collapse ring and grid of VEEGAN and PacGAN (the plain GAN, each
remedy, packing, WGAN-GP; on the grid also Metz et al.'s rates and WGAN-GP at 10 000 updates), progressive growing
and StyleGAN2 beside the DCGAN, flow matching's reflow and consistency distillation beside their teachers, DDPM's
cascade with and without conditioning augmentation, the VAE family's rows (VAE-GAN, the hierarchical VAE,
disentanglement and FactorVAE's critic), and Mamba's synthetic tasks (selective copying and induction heads also at
three times the steps, induction heads also at the paper's length). Each (row, arm, seed) is one ``python -m
practice_torch train`` and ``eval`` on one torch thread, ``--jobs`` at a time, into ``DIR/<row>/<arm>-<seed>``; a
run whose evaluation is there is kept, so a stopped sweep (Ctrl-C: exit 130, the runs' child processes killed) picks
up where it left off. The first line says how long the sweep should take on this machine (the seconds each row's
runs took in the last sweep recorded, where there is one). The record, ``docs/reproduce.json``
(``benchmarks/results/reproduce.json`` is the last sweep's own table, as for every benchmark), holds every run's
figures, wall time and whether it met the target, with the commit, the machine and the load; ``make docs`` renders
it on each row's topic pages (``shared_specs.docs.reproduce_table``) and, one line a row, in the README
(``reproduce_summary``). A row with a ``curve`` (CartPole) also draws its runs' learning curves, mean +- sd over the
seeds beside peers' published points, into ``docs/figures/reproduce_<row>.png``; a row with ``pictures`` (VAE-GAN)
puts its arms' first-seed samples side by side in ``docs/figures/reproduce_<row>_pictures.png``
(``benchmarks/reproduce_figures.py`` draws them).

A sweep that outlives its checkout keeps what it finished: each run, as it ends, is banked in
``reproduce_pending.json`` beside the record (``docs/`` with ``--publish``), its figures, the conditions it trained
under and (a row with a ``curve``) its logged curve; committed, that file lets the same command in a later checkout,
whose run folders are empty, train only the runs not banked. The record then names the earlier sweeps its runs
came from, and the row's banked runs leave the file (``benchmarks/reproduce_bank.py``).

Only ``--publish`` writes the published record, its figures and (``--presets``) ``docs/results.json``. A trial
without it writes its own: ``reproduce_record.json`` and ``figures/`` (``--presets``: ``reproduce_presets.json``) in
``--results``, and leaves the published ones byte for byte as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.reproduce_bank import (  # noqa: F401 (PENDING, arm_of, found_conditions: re-exported)
    PENDING,
    arm_of,
    bank,
    banked,
    found_conditions,
    pending_file,
    read_bank,
    recorded_runs,
    row_meta,
    unbank,
)
from benchmarks.reproduce_figures import draw_curves, draw_families, draw_pictures, logged_curve
from benchmarks.reproduce_rows import LOWER_IS_BETTER, ROWS, Arm, Row, run_dir  # noqa: F401 (Arm: re-exported)
from shared_specs.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "reproduce.json"  # the published record: written only with ``--publish``
TRIAL_RECORD = "reproduce_record.json"  # a trial's record, in ``--results`` (its figures in ``--results``/figures)
TRIAL_PRESETS = "reproduce_presets.json"  # a trial's rows of ``--presets``, in ``--results``


class Children:
    """The child processes of the runs being trained (a sweep's threads each wait on one of them): an interrupted
    sweep stops them all (``stop``) and starts no more."""

    def __init__(self) -> None:
        self.lock, self.running, self.stopped = threading.Lock(), set(), False

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """``argv`` to its end, its output captured, as ``subprocess.run`` (killed if this thread is interrupted);
        RuntimeError once the sweep is stopped."""
        with self.lock:
            if self.stopped:
                raise RuntimeError("the sweep was interrupted")
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
            self.running.add(child)
        try:
            out, err = child.communicate()
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            with self.lock:
                self.running.discard(child)
        return subprocess.CompletedProcess(argv, child.returncode, out, err)

    def stop(self) -> None:
        """Kill every child still running; start none after this (until ``restart``)."""
        with self.lock:
            self.stopped = True
            for child in self.running:
                child.kill()

    def restart(self) -> None:
        """A new sweep in this process may start children again."""
        with self.lock:
            self.stopped = False


CHILDREN = Children()


def train_and_evaluate(out: Path, arm: Arm, seed: int, sample_metrics: bool = False, samples: int = 0
                       ) -> float | None:
    """Train and evaluate one run into ``out`` on one thread (a child process each, so that jobs run side by side);
    its wall time. A run an earlier sweep left unfinished (``left_off``) goes on from its newest checkpoint (``train
    --resume``, which ends bit-identical to a run trained straight) or, trained to its end, is evaluated only; its
    wall time is then unknown (None: the sweeps' parts are not added up). ``sample_metrics``: ``eval`` computes FID
    and the other sample metrics too (a results row's headline may be one), on ``samples`` samples (0: eval's
    default)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    python = [sys.executable, "-m", "practice_torch"]
    sets = [a for s in (*arm.sets, f"train.seed={seed}", "train.threads=1") for a in ("--set", s)]
    state = left_off(out, arm, seed)
    if state is None:
        shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    evaluate = ["eval", str(out), *([] if sample_metrics else ["--no-sample-metrics"]),
                *(["--samples", str(samples)] if samples else [])]
    commands = {None: [["train", arm.model, "--dataset", arm.dataset, "--out", str(out), *sets], evaluate],
                "stopped": [["train", arm.model, "--resume", str(out), *sets], evaluate],
                "trained": [evaluate]}[state]
    for argv in commands:
        done = CHILDREN.run([*python, *argv], cwd=ROOT, env=env)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{' '.join(argv[:2])} {out}: {last}")
    if state is not None:
        return None
    wall = time.perf_counter() - started
    (out / "reproduce_wall_s.json").write_text(json.dumps(wall))
    return wall


def took(wall: float | None) -> str:
    """A run's wall time as the sweep prints it ("412 s"; "from where a sweep left it" for one finished now)."""
    return "finished from where a sweep left it" if wall is None else f"{wall:.0f} s"


def left_off(out: Path, arm: Arm, seed: int) -> str | None:
    """Where an earlier sweep left the run in ``out``: "stopped" (a checkpoint short of its steps), "trained" (to
    its end, not evaluated), or None: nothing to go on from (no checkpoint), or a run the arm would not start now
    (another model or data set, or a setting of the arm's or the seed's that its config does not hold)."""
    from practice_torch.engine.checkpoint import latest_step
    from practice_torch.engine.config import ConfigError, apply_overrides
    from practice_torch.models import run_config

    done = latest_step(out / "checkpoints")
    if done is None:
        return None
    try:
        saved = run_config(out)
        same = apply_overrides(saved, [*arm.sets, f"train.seed={seed}", "train.threads=1"]) == saved
    except (ConfigError, OSError, ValueError):
        return None
    if not same or saved.model_name != arm.model or saved.data.name != arm.dataset:
        return None
    return "trained" if done >= saved.train.steps else "stopped"


def record_of(row: Row, arm: Arm, seed: int, out: Path) -> dict:
    """The record of one finished run: its figures (its row's, and those of the families table that eval reported,
    ``shared_specs.families.KEYS``, with ``train_s``, its training seconds), wall time and whether it met the
    target."""
    from practice_torch.engine.metrics import read_metrics
    from practice_torch.results import training_seconds
    from shared_specs.families import KEYS

    metrics = json.loads((out / "eval_test.json").read_text())
    logged = read_metrics(out)
    if logged and all("time_s" in line for line in logged):  # the engine's log (a stub's may lack the clock)
        metrics["train_s"] = round(training_seconds(logged), 3)
    kept = {k: metrics[k] for k in (row.metric, *(key for key, _ in row.beside), *KEYS) if k in metrics}
    wall = json.loads((out / "reproduce_wall_s.json").read_text()) if (out / "reproduce_wall_s.json").is_file() else None
    verdict = None if row.holds is None or arm.name in row.baselines else row.holds(metrics)  # None: not judged
    return {"row": row.id, "arm": arm.name, "seed": seed, "value": metrics[row.metric], "metrics": kept,
            "holds": None if verdict is None else bool(verdict), "wall_s": wall}


def bank_run(pending: Path, row: Row, arm: Arm, seed: int, out: Path, trained: dict) -> dict:
    """Bank the finished run in ``out`` (``reproduce_bank.bank``): its record (``record_of``, returned), the
    conditions it ``trained`` under and, for a row with a ``curve``, its logged curve."""
    record = record_of(row, arm, seed, out)
    curve = logged_curve(out, *row.curve[:2]) if row.curve and (out / "metrics.jsonl").is_file() else None
    bank(pending, row, arm, seed, record, trained, curve)
    return record


def estimate(todo: list, jobs: int, previous: list[dict]) -> float:
    """Seconds the (row, arm, seed) runs still to do should take, ``jobs`` at a time: each one its arm's mean wall
    time in ``previous`` (the published record's runs and the bank's: ``history``; an unrolled GAN takes 4 times its
    row's plain one), else the arm's own guess, else its row's, else the row's own guess."""
    def seconds(row: Row, arm: Arm) -> float:
        mine = [r["wall_s"] for r in previous if r["row"] == row.id and r["arm"] == arm.name and r.get("wall_s")]
        if mine or arm.seconds:
            return sum(mine) / len(mine) if mine else arm.seconds
        rows = [r["wall_s"] for r in previous if r["row"] == row.id and r.get("wall_s")]
        return sum(rows) / len(rows) if rows else row.seconds

    return sum(seconds(row, arm) for row, arm, _ in todo) / jobs


def history(bankbook: dict) -> list[dict]:
    """The runs whose wall times ``estimate`` reads: the published record's and those banked (``bankbook``, runs of a
    sweep not yet published, often the only ones of a new arm's)."""
    return recorded_runs(RECORD) + list(bankbook.values())


def chosen_rows(args) -> list[Row]:
    """The rows ``--rows`` names, in its order (every row when it names none); a one-line SystemExit for an unknown
    row or for ``--seeds`` or ``--jobs`` below 1."""
    names = [n for n in args.rows.split(",") if n] if args.rows else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"error: unknown reproduce row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit(f"error: --seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}")
    return [ROWS[n] for n in names]


def record_file(args) -> Path:
    """Where the sweep's record goes, its figures in ``figures/`` beside it: the published ``RECORD``
    (``docs/reproduce.json``, ``docs/figures``) only with ``--publish``; a trial's own ``TRIAL_RECORD`` in
    ``--results`` otherwise, the published record and figures left as they are."""
    return RECORD if args.publish else Path(args.results) / TRIAL_RECORD


def minutes(seconds: float) -> str:
    """'12 min', or '0.4 min' under ten minutes."""
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def list_rows(args) -> str:
    """``--list``: each row (those ``--rows`` names), its arms, the runs still to train in ``--reproduce-runs`` at
    ``--seeds`` and how long they should take ``--jobs`` at a time (``estimate``: each run as long as in the last
    sweep recorded, else its row's guess), then the whole sweep's."""
    rows, folder = chosen_rows(args), Path(args.reproduce_runs)
    pending = pending_file(record_file(args))
    bankbook = read_bank(pending)
    previous = history(bankbook)
    lines = [f"reproduce rows at {args.seeds} seeds, {args.jobs} at a time (runs kept in {folder}, banked in "
             f"{pending}):"]
    every = []
    for row in rows:
        runs = [(row, arm, seed) for arm in row.arms for seed in range(args.seeds)]
        todo = [r for r in runs if not (run_dir(folder, *r) / "eval_test.json").is_file() and not banked(bankbook, *r)]
        every += todo
        lines.append(f"  {row.id:<22} {len(row.arms)} arm{'s' if len(row.arms) > 1 else ' '}  {len(todo):>3} of "
                     f"{len(runs):>3} runs to train, about {minutes(estimate(todo, args.jobs, previous)):>8}  "
                     f"{row.title}")
    lines.append(f"  {'all':<22} {len(every)} runs to train, about {minutes(estimate(every, args.jobs, previous))}")
    return "\n".join(lines)


def interrupted_note(args) -> str:
    """Where an interrupted sweep keeps its runs (the same command trains only the others, each from its newest
    checkpoint)."""
    folder = Path(args.reproduce_runs) / ("presets" if args.presets else "")
    banks = "" if args.presets else f" and banked in {pending_file(record_file(args))} (commit it for another checkout)"
    return (f"the runs finished so far are kept in {folder}{banks}; the same command trains only the others, each "
            "from its newest checkpoint")


def reproduce(args) -> list[dict]:
    """The papers' experiments (``--rows``, default every row) over ``--seeds``, ``--jobs`` runs at a time, into
    ``--reproduce-runs`` (a run evaluated there is kept); their record and figures where ``record_file`` says: the
    published ``docs/reproduce.json`` and ``docs/figures`` only with ``--publish``. ``--presets``: the results
    table's sweep instead (``reproduce_presets``)."""
    if args.presets:
        if args.rows:
            raise SystemExit("error: --rows and --presets choose different sweeps (the papers' experiments, the "
                             "results table's presets); give one")
        return reproduce_presets(args)
    from practice_torch.engine.checkpoint import atomic_write
    from practice_torch.results import machine
    from project.environment import commit, describe

    rows, seeds = chosen_rows(args), range(args.seeds)
    names = [row.id for row in rows]
    path = record_file(args)
    pending = pending_file(path)
    bankbook = read_bank(pending)  # the runs banked when the sweep starts (the sweep banks more as it goes)
    folder = Path(args.reproduce_runs)
    runs = [(row, arm, seed) for row in rows for arm in row.arms for seed in seeds]
    here = [r for r in runs if (run_dir(folder, *r) / "eval_test.json").is_file()]
    carried = {(row.id, arm.name, seed): b for row, arm, seed in runs
               if (row, arm, seed) not in here and (b := banked(bankbook, row, arm, seed))}
    todo = [r for r in runs if r not in here and (r[0].id, r[1].name, r[2]) not in carried]
    previous = recorded_runs(path)
    print(f"reproduce: {len(runs)} runs ({len(todo)} to train"
          + (f", {len(carried)} banked by an earlier sweep in {pending}" if carried else "")
          + f") of {', '.join(names)}, {args.seeds} seeds, {args.jobs} "
          f"at a time: about {estimate(todo, args.jobs, history(bankbook)) / 60:.0f} min on this "
          f"machine; runs kept in {folder}; the record: {path}"
          + ("" if args.publish else " (a trial: --publish writes the published one)"), flush=True)
    load_before = round(os.getloadavg()[0], 2)
    recorded_by = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in (path, pending)]
    conditions = {"commit": commit(ignoring=tuple(recorded_by)), "machine": machine({**describe(),
                  "cores": os.cpu_count()}), "date": time.strftime("%Y-%m-%d"), "jobs": args.jobs,
                  "load_before": load_before}
    found = []  # each run an earlier sweep finished in this checkout: (row, the conditions it trained under, banked)
    for run in here:  # banked, should this sweep not get to publish
        entry = banked(bankbook, *run)
        trained_as = entry["trained"] if entry else found_conditions(run_dir(folder, *run), conditions)
        if entry is None:
            bank_run(pending, *run, run_dir(folder, *run), trained_as)
        found.append((run[0].id, trained_as, entry is not None))

    def one(run):
        row, arm, seed = run
        out = run_dir(folder, row, arm, seed)
        wall = train_and_evaluate(out, arm, seed, row.sample_metrics, samples=row.eval_samples)
        result = bank_run(pending, row, arm, seed, out, {**conditions, "load_after": round(os.getloadavg()[0], 2)})
        print(f"  {row.id} {arm.name} seed {seed}: {row.label} {result['value']:.{row.digits}f}"
              f"{' (target missed)' if result['holds'] is False else ''}, {took(wall)}", flush=True)

    scored = {r for r in todo if left_off(run_dir(folder, *r), r[1], r[2]) == "trained"}  # evaluated only
    each(one, todo, args.jobs)
    core = ("row", "arm", "seed", "value", "metrics", "holds", "wall_s")
    records = [{k: carried[(row.id, arm.name, seed)][k] for k in core} if (row.id, arm.name, seed) in carried
               else record_of(row, arm, seed, run_dir(folder, row, arm, seed)) for row, arm, seed in runs]
    now = {**conditions, "commit": commit(ignoring=tuple(recorded_by)), "load_after": round(os.getloadavg()[0], 2)}
    earlier = {n: [b["trained"] for (r, _, _), b in carried.items() if r == n] + [t for r, t, _ in found if r == n]
               for n in names}  # the conditions of each run an earlier sweep trained, banked or found in the folder
    meta = {n: row_meta(now, sum(r[0].id == n for r in todo), earlier[n]) for n in names}
    kept = [r for r in previous if r["row"] not in names]  # other rows' runs stay as they were recorded
    trained = ({row.id for row, _, _ in set(todo) - scored} | {r for r, _, _ in carried}
               | {r for r, _, was_banked in found if was_banked})  # not published yet (publishing unbanks)
    old = json.loads(path.read_text()) if path.is_file() else {}
    old_meta = old.get("meta", {})
    for n in names:  # a row none of whose runs trained now keeps the conditions they trained under recorded,
        if n not in trained and n in old_meta:  # with those of the sweep that evaluated them again, if one did
            meta[n] = {**old_meta[n], **({"evaluated": {k: now[k] for k in ("commit", "date", "jobs", "load_before",
                       "load_after")}} if any(r[0].id == n for r in scored) else {})}
    record = {"meta": {**old_meta, **{n: meta[n] for n in names}},
              "rows": recorded_rows(old.get("rows", {}), names), "runs": kept + records}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    unbank(pending, names)
    print(f"wrote {path}; " + ("`make docs` puts it on the pages" if args.publish else
                               f"a trial: {RECORD} and its figures are left as they are (--publish writes them)"))
    figures = path.parent / "figures"
    for row in rows:
        if row.curve:
            out = figures / f"reproduce_{row.id}.png"
            print(f"wrote {draw_curves(row, folder, list(seeds), record['meta'][row.id], out, carried)}")
        if row.pictures:
            out = figures / f"reproduce_{row.id}_pictures.png"
            print(f"wrote {draw_pictures(row, folder, record['meta'][row.id], out, list(seeds))}")
    if set(names) & {f.row for f in FAMILIES}:  # a model of the families' table measured again
        drawn = draw_families(record, figures / "families.png")
        print(f"wrote {drawn}" if drawn else "the families' figure waits for a model with its FID and ms a sample")
    return [{k: v for k, v in r.items() if k != "metrics"} for r in records]


def each(one: Callable, todo: list, jobs: int) -> None:
    """``one`` of every item of ``todo``, ``jobs`` at a time (threads, each waiting on its child processes), or in
    this thread when one at a time. Interrupted (Ctrl-C), it starts no more and kills the runs' children
    (``CHILDREN``) before it lets the interrupt through; the items finished are kept."""
    CHILDREN.restart()
    if jobs == 1:
        for item in todo:
            one(item)
        return
    with ThreadPoolExecutor(jobs) as pool:
        try:
            list(pool.map(one, todo))
        except KeyboardInterrupt:
            CHILDREN.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def recorded_rows(old_rows: dict[str, dict], swept: list[str]) -> dict[str, dict]:
    """The record's description of every row: the code's for the rows just swept and for rows it has never
    described, and as it was recorded for the others, whose runs it describes (an arm added to a row in the code
    since its sweep has no runs in the record until the row is swept again); whether a row's figure is better low is
    the metric's, not its runs', and is the code's for every row."""
    def kept(n: str) -> dict:
        return {**{k: v for k, v in old_rows[n].items() if k != "lower"}, **direction(ROWS[n])}

    return {n: describe_row(ROWS[n]) if n in swept or n not in old_rows else kept(n) for n in ROWS}


def direction(row: Row) -> dict:
    """{'lower': True} where the row's figure is better low (``LOWER_IS_BETTER``), else nothing."""
    return {"lower": True} if row.metric in LOWER_IS_BETTER else {}


def describe_row(row: Row) -> dict:
    """What the pages say of a row beside its figures (the record keeps it, so docs need not import the rows)."""
    return {"title": row.title, "topics": list(row.topics), "paper": row.paper, "protocol": row.protocol,
            "paper_figure": row.paper_figure, "label": row.label, "target": row.target, "digits": row.digits,
            **direction(row),
            "beside": [list(pair) for pair in row.beside], **({"gap": list(row.gap)} if row.gap else {}),
            **({"baselines": list(row.baselines)} if row.baselines else {}),
            "arms": [{"name": a.name, "model": a.model, "dataset": a.dataset, "sets": list(a.sets),
                      **({"paper": a.paper} if a.paper else {})} for a in row.arms]}


# The results table's sweep (``--presets``) ----------------------------------------------------------------------------
def sweepable(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the front page's rows that are a quick preset as it comes, on PyTorch, or one that builds on runs the sweep
    trains first (``parents_of``): the presets ``--presets`` trains over seeds; the other front-page rows, trained
    otherwise), in the course's order."""
    from shared_specs.docs import front_rows, in_course_order

    rows = in_course_order(front_rows(results))
    plain = [r for r in rows if parents_of(r) is not None]
    return plain, [r for r in rows if r not in plain]


# The runs a preset builds on that the sweep trains first, a seed each, shared by every preset that names them: the
# model key a row names -> that run's model and data set, its quick preset as it comes. A model whose engine trains
# its own (``prerequisite_runs``: latent diffusion's autoencoder) is swept as it comes.
PARENTS = {"model.reference": ("language_model", "shakespeare"), "model.generator": ("gan", "fashion_mnist")}


def parents_of(row: dict) -> tuple[str, ...] | None:
    """The ``PARENTS`` keys the sweep trains first for ``row``'s preset: () for a quick preset as it comes (or one
    whose model trains its own prerequisites), None for a row it cannot train as it comes (trained in JAX, a setting
    changed, or a parent the sweep does not know)."""
    from practice_torch.models import get_model
    from shared_specs.docs import plain_preset

    if row["preset"] != "quick" or row.get("backend") or not plain_preset(row):
        return None
    if not row["changes"] or hasattr(get_model(row["model"]), "prerequisite_runs"):
        return ()
    needs = tuple(key for key in PARENTS if any(c.startswith(key) for c in row["changes"]))
    named = all(any(c.startswith(key) for key in needs) for c in row["changes"])  # model.reference_step too
    return needs if needs and named else None


def parent_dir(folder: Path, key: str, seed: int) -> Path:
    model, dataset = PARENTS[key]
    return folder / "parents" / f"{model}-{dataset}" / f"seed-{seed}"


def one_thread_seconds(row: dict) -> float:
    """A results row's training time on one thread, as the sweep trains: its own where it ran on one (an earlier
    sweep's, or ``train.threads=1``), else its time times the cores it had (the runs use all of them by default; these
    small networks scale nearly linearly to 2: the GAN quick preset took 223 s on 2 threads and 460 s on one)."""
    alone = "one thread each" in row.get("load", "") or "train.threads=1" in row.get("changes", [])
    cores = re.search(r"(\d+) cores?", row.get("machine", ""))
    return row["train_seconds"] * (1 if alone else int(cores.group(1)) if cores else 1)


def over_seeds_changes(row: dict) -> list[str]:
    """A swept run's changes as the row over its seeds says them: the runs it builds on (a path a seed, and what the
    run recorded of them) said once, as the model key and the run's model, trained first a seed each."""
    from practice_torch.models import get_model
    from shared_specs.docs import BOOKKEEPING

    builds_on = getattr(get_model(row["model"]), "BUILDS_ON", {})
    named = [key for key in builds_on if any(c.startswith(f"model.{key}=") for c in row["changes"])]
    kept = [c for c in row["changes"] if not (named and c.startswith(BOOKKEEPING) and c.startswith("model."))]
    return kept + [f"model.{key}=(a {builds_on[key]} run a seed, trained first)" for key in named]


def over_seeds(rows: list[dict], load: str) -> dict:
    """One results row of a preset trained once a seed (``rows``: seed 0 first, as ``practice_torch.results`` reads
    each run): seed 0's settings, the headline and every metric all the seeds report as their mean over the seeds,
    with the headline's sd, min and the seeds' own values, the training time a run's mean; ``load`` says how it ran."""
    import statistics

    values = [r["value"] for r in rows]
    numeric = [k for k, v in rows[0]["metrics"].items()
               if isinstance(v, (int, float)) and all(isinstance(r["metrics"].get(k), (int, float)) for r in rows)]
    return {**rows[0], "changes": over_seeds_changes(rows[0]), "value": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "values": values,
            "seeds": len(rows),
            "train_seconds": round(statistics.fmean(r["train_seconds"] for r in rows), 1), "load": load,
            "run": "python -m benchmarks reproduce --presets --publish",
            "metrics": {k: statistics.fmean(r["metrics"][k] for r in rows) for k in numeric}}


# eval's sample metrics (``practice_torch.evaluation.samples``): a preset whose headline is one of them is evaluated
# with them; the others without (10 000 samples of an autoregressive model take longer than its training)
SAMPLE_METRICS = ("fid", "inception_score", "kid", "precision", "recall")


def reproduce_presets(args, results_file: Path | None = None, train: Callable = train_and_evaluate) -> list[dict]:
    """``--presets [MODEL,...]``: every front-page quick preset (``sweepable``; or those named) trained and evaluated
    once a seed by ``train`` (``train_and_evaluate``), ``--jobs`` at a time on one thread each, into
    ``DIR/presets/<model>-<data set>/seed-<k>``; each preset's results row replaced by the mean over the seeds
    (``over_seeds``) in ``results_file`` (``docs/results.json``) with ``--publish``, else in a trial's own
    ``TRIAL_PRESETS`` in ``--results``, the published table left as it is."""
    from practice_torch.results import RESULTS_FILE, add_rows, result_row

    results_file = results_file or RESULTS_FILE
    target = results_file if args.publish else Path(args.results) / TRIAL_PRESETS
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit(f"error: --seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}")
    plain, others = sweepable(json.loads(results_file.read_text()) if results_file.is_file() else [])
    named = [n for n in args.presets.split(",") if n and n != "all"]
    unknown = [n for n in named if n not in {r["model"] for r in plain}]
    if unknown:
        raise SystemExit(f"error: {unknown[0]!r} has no quick preset as it comes on the front page; choose from "
                         f"{', '.join(r['model'] for r in plain)}")
    chosen = [r for r in plain if not named or r["model"] in named]
    folder = Path(args.reproduce_runs) / "presets"
    runs = [(r, seed) for r in chosen for seed in range(args.seeds)]
    where = {(r["model"], seed): folder / f"{r['model']}-{r['dataset']}" / f"seed-{seed}" for r, seed in runs}
    todo = [(r, seed) for r, seed in runs if not (where[r["model"], seed] / "eval_test.json").is_file()]
    parents = sorted({(key, seed) for r, seed in todo for key in parents_of(r)})
    parents_todo = [p for p in parents if not (parent_dir(folder, *p) / "eval_test.json").is_file()]
    by_model = {(r["model"], r["dataset"]): r for r in json.loads(results_file.read_text())} if \
        results_file.is_file() else {}
    seconds = [one_thread_seconds(r) for r, _ in todo] + [one_thread_seconds(by_model[PARENTS[key]]) for key, _ in
                                                          parents_todo if PARENTS[key] in by_model]
    minutes = sum(t + 40 for t in seconds) / args.jobs / 60  # + start-up and evaluation
    first = f", after {len(parents_todo)} they build on" if parents_todo else ""
    print(f"reproduce --presets: {len(runs)} runs ({len(todo)} to train{first}) of {len(chosen)} quick presets, "
          f"{args.seeds} seeds, {args.jobs} at a time: about {minutes:.0f} min on "
          f"this machine (their recorded times); runs kept in {folder}"
          + (f"; not swept (trained otherwise): {', '.join(r['model'] for r in others)}" if others and not named
             else ""), flush=True)
    load_before = round(os.getloadavg()[0], 2)

    def parent(run):
        key, seed = run
        model, dataset = PARENTS[key]
        wall = train(parent_dir(folder, key, seed), Arm(model, model, dataset), seed)
        print(f"  {model} on {dataset} seed {seed} (for {key}): {took(wall)}", flush=True)

    def one(run):
        row, seed = run
        sets = tuple(f"{key}={parent_dir(folder, key, seed)}" for key in parents_of(row))
        wall = train(where[row["model"], seed], Arm(row["model"], row["model"], row["dataset"], sets), seed,
                     sample_metrics=row.get("metric") in SAMPLE_METRICS)
        print(f"  {row['model']} on {row['dataset']} seed {seed}: {took(wall)}", flush=True)

    each(parent, parents_todo, args.jobs)
    each(one, todo, args.jobs)
    load = (f"idle: {args.jobs} run{'s' if args.jobs > 1 else ''} at a time, one thread each (load average "
            f"{load_before} before, {round(os.getloadavg()[0], 2)} after)")
    trained = {r["model"] for r, _ in todo}  # a preset none of whose runs trained now keeps the row recorded
    swept = [over_seeds([result_row(where[r["model"], seed], load) for seed in range(args.seeds)], load)
             for r in chosen if r["model"] in trained or r.get("seeds") != args.seeds]
    add_rows(swept, target)
    print(f"wrote {len(swept)} rows, each the mean over {args.seeds} seeds, into {target}; "
          + ("`make docs` renders them" if args.publish else
             f"a trial: {results_file} is left as it is (--publish writes it)"))
    return swept
