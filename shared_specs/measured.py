"""What was measured, as the pages show it: the results rows (``docs/results.json``), the reproductions
(``docs/reproduce.json``) and the figures prose quotes from them (``<!--q:KEY-->FIGURE<!--/q-->``).

``shared_specs.docs`` renders the tables with these into the results page and the records pages, and
``shared_specs.lessons`` a lesson's summary.
"""

from __future__ import annotations

import re
from typing import Any

from project import catalogue

REPRODUCE_FILE = "docs/reproduce.json"  # ``python -m benchmarks reproduce``'s record


def _settings(row: dict[str, Any]) -> str:
    trained = ", trained in JAX (`practice_jax train`)" if row.get("backend") == "jax" else ""
    return row["preset"] + "".join(f" `{c}`" for c in row["changes"]) + trained


SAMPLE_METRICS = ("fid", "inception_score", "kid", "precision", "recall")  # they depend on how many samples


def _figure(row: dict[str, Any]) -> str:
    """'test NLL: **2.548** bits/char', or over seeds (``benchmarks reproduce --presets``) '**2.548** +- 0.012
    bits/char, 5 seeds (min 2.531)'."""
    n = row["metrics"].get("sample_metrics_samples") if row["metric"] in SAMPLE_METRICS else None
    n = round(n) if n else n  # a mean over seeds of a count is the count
    spread = f" +- {row['sd']:.2g}" if "seeds" in row else ""
    seeds = f", {row['seeds']} seeds (min {row['min']:.4g})" if "seeds" in row else ""
    units = f" {row['units']}" if row["units"] else ""  # a share or an accuracy may have none
    return f"{row['label']}: **{row['value']:.4g}**{spread}{units}{seeds}" + (f" ({n} samples)" if n else "")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


BOOKKEEPING = ("train.checkpoint_every=", "train.log_every=", "train.threads=", "train.samples=",
               # the trained runs a model builds on (and what it recorded of them), which every run must name
               "model.reference", "model.generator", "model.autoencoder", "model.vq_vae", "model.latent_scale=")


def plain_preset(row: dict[str, Any]) -> bool:
    """A run of the preset as it is: no setting changed beyond checkpointing, logging, threads and the trained runs
    it builds on."""
    return all(change.startswith(BOOKKEEPING) for change in row.get("changes", []))


def front_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model for the front page: the newest plain-preset run (``plain_preset``) on the first data set the model
    has one on, a mean over seeds (``reproduce --presets``) before any single run and a PyTorch run before one trained
    in JAX (the sweep trains PyTorch's; else its newest run); each carries ``runs``, how many the model has in all (its
    page lists them)."""
    chosen: dict[str, dict[str, Any]] = {}
    count: dict[str, int] = {}
    rows = [r for r in rows if r.get("kind") != "control"]  # control tasks: on their pages and in the reproductions
    for r in rows:  # docs/results.json is in the order recorded
        name = r["model"]
        count[name] = count.get(name, 0) + 1
        best = chosen.get(name)
        plain, best_plain = plain_preset(r), best is not None and plain_preset(best)
        over_seeds = bool(r.get("seeds")) or not (best or {}).get("seeds")  # a single run never displaces a sweep's
        torch_first = not r.get("backend") or bool((best or {}).get("backend"))  # nor a JAX run a PyTorch one
        if best is None or (plain and (not best_plain or (r["dataset"] == best["dataset"] and over_seeds
                                                          and torch_first))) or not best_plain:
            chosen[name] = r
    return [{**r, "runs": count[name]} for name, r in chosen.items()]


def in_course_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` sorted by their model's place in the course (``catalogue.TOPICS``), then as recorded."""
    order = {t.name: i for i, t in enumerate(catalogue.TOPICS)}
    return sorted(rows, key=lambda r: order.get(r["model"], len(order)))


def results_table(rows: list[dict[str, Any]], link_prefix: str | None) -> str:
    """One row per run: model (linked to its page's results), data set, preset and settings, the held-out figure,
    steps and training wall time, and where: machine, load, commit. With ``link_prefix`` (the front page): one row
    per model (``front_rows``), its link saying how many runs its page has."""
    if not rows:
        return "*No run recorded yet: `python -m practice_torch results RUN --load ...`, then `make docs`.*"
    first = "| model | data set | " if link_prefix is not None else "| data set | "
    header = first + "preset and settings | held-out figure | steps | training time | machine | load | commit |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in in_course_order(front_rows(rows) if link_prefix is not None else rows):
        more = f" ({r['runs']} runs)" if r.get("runs", 1) > 1 else ""
        model = f"[`{r['model']}`]({link_prefix}{r['model']}.md#results){more} | " if link_prefix is not None else ""
        lines.append(f"| {model}{r['dataset']} | {_settings(r)} | {_figure(r)} | {r['steps']} | "
                     f"{_minutes(r['train_seconds'])}{' (resumed)' if r.get('resumed') else ''} | {r['machine']} | "
                     f"{r['load']} | {r['commit']} |")
    return "\n".join(lines)


def reproduce_stats(record: dict[str, Any], row: str, arm: str) -> dict[str, Any]:
    """The figures of one arm of a reproduction over its seeds: mean, sd, min, max, seeds, met (every seed met the
    target; never for one of the row's ``baselines``, whatever its runs recorded), wall (mean seconds a run)."""
    import statistics

    runs = sorted((r for r in record.get("runs", []) if r["row"] == row and r["arm"] == arm), key=lambda r: r["seed"])
    if not runs:
        raise KeyError(f"no run of {row}/{arm} in {REPRODUCE_FILE}")
    values = [r["value"] for r in runs]
    walls = [r["wall_s"] for r in runs if r.get("wall_s")]
    baseline = arm in record.get("rows", {}).get(row, {}).get("baselines", [])
    judged = not baseline and all(r["holds"] is not None for r in runs)  # a gap row judges no arm alone either
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "seeds": len(runs), "met": judged and all(r["holds"] for r in runs),
            "met_count": sum(bool(r["holds"]) for r in runs) if judged else 0, "judged": judged,
            "wall": statistics.fmean(walls) if walls else None}


def best_arm(row: dict[str, Any], arms: list[dict[str, Any]], stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Of ``arms`` (a recorded row's), the one meeting the target on the most seeds, then the best mean: the lowest
    where the row's figure is better low (``lower``: an FID, a W1, an NLL), else the highest. ``stats``: each arm's
    ``reproduce_stats``."""
    sign = -1.0 if row.get("lower") else 1.0
    return max(arms, key=lambda a: (stats[a["name"]]["met_count"], sign * stats[a["name"]]["mean"]))


def gap_shares(record: dict[str, Any], row: str) -> dict[int, float]:
    """A row with a ``gap`` (low, arm, high): on each seed all three ran, the share of the gap from the low arm to the
    high one that the arm closes, (arm - low) / (high - low)."""
    low, mid, high = record["rows"][row]["gap"]
    value = {(r["arm"], r["seed"]): r["value"] for r in record.get("runs", []) if r["row"] == row}
    seeds = sorted({seed for _, seed in value})
    return {seed: (value[mid, seed] - value[low, seed]) / (value[high, seed] - value[low, seed]) for seed in seeds
            if all((arm, seed) in value for arm in (low, mid, high)) and value[high, seed] != value[low, seed]}


def paper_gap_share(row: dict[str, Any]) -> float | None:
    """The share of the gap the paper's own figures for a gap row's three arms close, (mid - low) / (high - low);
    None where an arm has no numeric figure of the paper's."""
    paper = {arm["name"]: arm.get("paper", "") for arm in row["arms"]}
    try:
        low, mid, high = (float(paper[name]) for name in row["gap"])
    except (KeyError, ValueError):
        return None
    return (mid - low) / (high - low) if high != low else None


def gap_line(record: dict[str, Any], row: str, page: bool = True) -> str:
    """The share of the gap a gap row's arm closes over the seeds, mean +- sd (min), and how many seeds reach one half
    (the target): a sentence for the page, or the README's short form."""
    import statistics

    shares = list(gap_shares(record, row).values())
    if not shares:
        return ""
    low, mid, high = record["rows"][row]["gap"]
    sd = statistics.stdev(shares) if len(shares) > 1 else 0.0
    figure = f"**{statistics.fmean(shares):.0%}** +- {sd:.0%} (min {min(shares):.0%})"
    half = sum(share >= 0.5 for share in shares)
    if not page:
        return f"the gap `{mid}` closes: {figure}, half or more on {half} of {len(shares)} seeds"
    return (f"The share of the gap from `{low}` to `{high}` that `{mid}` closes, (`{mid}` - `{low}`) / (`{high}` - "
            f"`{low}`) on each seed: {figure}; half or more on {half} of {len(shares)} seeds.")


def _mean_sd(stats: dict[str, Any], digits: int) -> str:
    return f"**{stats['mean']:.{digits}f}** +- {stats['sd']:.{digits}f} (min {stats['min']:.{digits}f})"


def reproduce_table(record: dict[str, Any], topic: str) -> str:
    """A topic page's reproductions: per row its paper, protocol and target, then a line per arm: ours over the seeds
    (mean +- sd, min), how many seeds met the target, the paper's figure, a run's time; and where it was measured."""
    rows = {k: r for k, r in record.get("rows", {}).items() if topic in r["topics"]}
    measured = {r["row"] for r in record.get("runs", [])}
    if not rows or not measured & set(rows):
        return "*No reproduction recorded yet: `python -m benchmarks reproduce --publish`, then `make docs`.*"
    parts = []
    for key, row in rows.items():
        if key not in measured:
            continue
        meta = record["meta"][key]
        lines = [f"**{row['title']}.** The paper: {row['paper']}. {row['protocol']}. Target: {row['target']}.", "",
                 f"| arm | {row['label']}: ours over the seeds | seeds meeting the target | paper | beside it (mean "
                 "over the seeds) | time a run |", "|---|---|---|---|---|---|"]
        for arm in row["arms"]:
            st = reproduce_stats(record, key, arm["name"])
            wall = _minutes(st["wall"]) if st["wall"] else "-"
            met = f"{st['met_count']} of {st['seeds']}" if st["judged"] else "-"
            named = f"`{arm['name']}`: " if arm["name"] != arm["model"] else ""  # the name the prose and figures use
            lines.append(f"| {named}`{arm['model']}` on {arm['dataset']}{''.join(f' `{s}`' for s in arm['sets'])} | "
                         f"{_mean_sd(st, row['digits'])} | {met} | {arm.get('paper') or row['paper_figure']} | "
                         f"{_beside(record, key, arm['name'], row.get('beside', []))} | {wall} |")
        if row.get("gap"):
            lines += ["", gap_line(record, key)]
        lines += ["", f"Measured by `python -m benchmarks reproduce --rows {key} --publish` at {meta['commit']} on "
                      f"{meta['machine']}, {at_a_time(meta['jobs']) + ', ' if meta['jobs'] else ''}one "
                      "thread each (load average "
                      f"{meta['load_before']} before, {meta['load_after']} after), {meta['date']}"
                      f"{''.join('; ' + earlier_sweep(e) for e in meta.get('earlier', []))}"
                      f"{'; ' + evaluated_again(meta['evaluated']) if meta.get('evaluated') else ''}"
                      f"{'; ' + meta['beside'] if meta.get('beside') else ''}."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def at_a_time(jobs: int) -> str:
    """'2 runs at a time', '1 run at a time'."""
    return f"{jobs} run{'s' if jobs != 1 else ''} at a time"


def earlier_sweep(sweep: dict[str, Any]) -> str:
    """'2 of its runs by an earlier sweep, at abc1234 on ..., 2 runs at a time (load 0.5 before, 2.0 after),
    2026-11-29': where a row's banked runs were trained (``benchmarks.reproduce_bank.row_meta``)."""
    runs = f"{sweep['runs']} of its runs" if sweep["runs"] > 1 else "one of its runs"
    beside = f"{at_a_time(sweep['jobs'])} " if sweep.get("jobs") else ""  # None: found finished, not recorded
    return (f"{runs} by an earlier sweep, at {sweep['commit']} on {sweep['machine']}, {beside}"
            f"(load average {sweep['load_before']} before, {sweep['load_after']} after), {sweep['date']}")


def evaluated_again(sweep: dict[str, Any]) -> str:
    """'evaluated again from their checkpoints at abc1234, ...': a sweep that only scored a row's trained runs
    (their training's conditions stand before it)."""
    return (f"evaluated again from their checkpoints at {sweep['commit']}, {sweep['jobs']} at a time (load average "
            f"{sweep['load_before']} before, {sweep['load_after']} after), {sweep['date']}")


def _beside(record: dict[str, Any], row: str, arm: str, beside: list[list[str]]) -> str:
    """'the pixels' probe 0.794; an untrained E's 0.720': each figure shown beside ours, its mean over the seeds (over
    those where it is defined, saying on how many it is not: a reverse KL with no sample near a mode)."""
    import math
    import statistics

    runs = [r for r in record.get("runs", []) if r["row"] == row and r["arm"] == arm]
    parts = []
    for key, label in beside:
        if not runs or not all(key in r["metrics"] for r in runs):
            continue
        values = [r["metrics"][key] for r in runs if math.isfinite(r["metrics"][key])]
        undefined = f" ({len(runs) - len(values)} of {len(runs)} seeds undefined)" if len(values) < len(runs) else ""
        parts.append(f"{label} {statistics.fmean(values):.3g}{undefined}" if values else f"{label} undefined")
    return "; ".join(parts) or "-"


def reproduce_summary(record: dict[str, Any], records: str = "records/") -> str:
    """README.md's line per reproduction: ours over the seeds beside the paper's figure, how many seeds met the target;
    a row of up to three arms shows each, one of more its best (most seeds meeting the target, then the higher mean),
    the rest on its page; a row's ``baselines`` (arms beside its subject) only on its page."""
    measured = {r["row"] for r in record.get("runs", [])}
    if not measured:
        return "*No reproduction recorded yet: `python -m benchmarks reproduce --publish`, then `make docs`.*"
    lines = ["| experiment | ours over the seeds | paper | target | seeds meeting it | commit |", "|" + "---|" * 6]
    for key, row in record["rows"].items():
        if key not in measured:
            continue
        stats = {arm["name"]: reproduce_stats(record, key, arm["name"]) for arm in row["arms"]}
        subject = [a for a in row["arms"] if a["name"] not in row.get("baselines", [])]  # baselines stay on its page
        shown = subject if len(subject) <= 3 else [best_arm(row, subject, stats)]
        every = sum(stats[a["name"]]["met"] for a in subject)
        judged = any(stats[a["name"]]["judged"] for a in subject)  # a row without a target: the best mean
        best = ((f" (best of {len(subject)} arms, {every} meeting the target on every seed)" if judged else
                 f" (the {'lowest' if row.get('lower') else 'highest'} of {len(subject)} arms)")
                if len(shown) < len(subject) else "")
        ours = "; ".join(f"`{a['name']}`{best} {_mean_sd(stats[a['name']], row['digits'])}" for a in shown)
        paper = shown[0].get("paper") if len(shown) == 1 and shown[0].get("paper") else row["paper_figure"]
        met = "; ".join(f"{stats[a['name']]['met_count']} of {stats[a['name']]['seeds']}" for a in shown
                        if stats[a["name"]]["judged"])
        if row.get("gap"):  # the target is the share of the gap: the row's figure and verdict, the paper's share
            ours = f"{ours}; {gap_line(record, key, page=False)}"
            share = paper_gap_share(row)
            paper = paper if share is None else f"the gap `{row['gap'][1]}` closes: {share:.0%}"
        met = met or "-"
        lines.append(f"| [{row['title']}]({records}{row['topics'][0]}.md#reproduced) | {row['label']}: {ours} | "
                     f"{paper} | {row['target']} | {met} | {record['meta'][key]['commit']} |")
    return "\n".join(lines)


QUOTE = re.compile(r"<!--q:(?P<key>[^>]+?)-->(?P<figure>.*?)<!--/q-->")


def quote(key: str, results: list[dict[str, Any]], record: dict[str, Any], gpu: dict[str, Any] | None = None) -> str:
    """The figure a prose quote stands for. ``results:MODEL/DATASET``: the headline of that results row (the plain
    preset's where there is one, as the front page picks it), 4 significant digits; ``results:MODEL/DATASET/METRIC``:
    another figure that row's evaluation recorded (a sweep's row: its mean over the seeds). ``reproduce:ROW/ARM/STAT``: a
    reproduction's mean, sd, min or max (the row's digits), seeds, met (the seeds that met the target, 'k of n'), or
    the mean over the seeds of a metric its runs recorded (3 significant digits); ``reproduce:ROW/ARM/seedK``: seed
    K's value (the row's digits), ``reproduce:ROW/ARM/METRIC/seedK`` a metric it recorded (3 significant digits), for
    prose that compares arms seed by seed. ``gpu:MODEL/FIELD``: a figure of ``gpu`` (docs/gpu_steps.json), MODEL a
    model's row or a variant's name, as the GPU table writes it (``gpu_figure``). ValueError naming a key that names
    nothing."""
    kind, _, path = key.partition(":")
    parts = path.split("/")
    if kind == "gpu" and len(parts) == 2:
        figure = gpu_figure(gpu or {}, *parts)
        if figure is not None:
            return figure
    if kind == "results" and len(parts) in (2, 3):
        rows = [r for r in results if (r["model"], r["dataset"]) == tuple(parts[:2]) and r.get("kind") != "control"]
        picked = [r for r in front_rows(rows) if r["dataset"] == parts[1]] or rows
        if picked and len(parts) == 2:
            return f"{picked[0]['value']:.4g}"
        if picked and isinstance(picked[0].get("metrics", {}).get(parts[2]), (int, float)):
            return f"{picked[0]['metrics'][parts[2]]:.4g}"
    if kind == "results" and len(parts) == 4 and parts[3] in ("value", "train_seconds"):  # MODEL/DATASET/PRESET/...
        rows = [r for r in results if (r["model"], r["dataset"], r["preset"]) == tuple(parts[:3])
                and not r.get("changes") and r.get("kind") != "control"]
        if rows:  # the newest plain run of that preset (one a device): its headline, or its training time in seconds
            return f"{max(rows, key=lambda r: r.get('date', ''))[parts[3]]:.4g}"
    gap_row = kind == "reproduce" and len(parts) == 3 and parts[1] == "gap" and parts[2] in ("mean", "min", "half") \
        and record.get("rows", {}).get(parts[0], {}).get("gap")
    shares = list(gap_shares(record, parts[0]).values()) if gap_row else []
    if shares:
        if parts[2] == "half":
            return f"{sum(share >= 0.5 for share in shares)} of {len(shares)}"
        return f"{(sum(shares) / len(shares) if parts[2] == 'mean' else min(shares)):.0%}"
    seed = re.fullmatch(r"seed(\d+)", parts[-1]) if kind == "reproduce" and len(parts) in (3, 4) else None
    if seed and parts[0] in record.get("rows", {}):  # one seed's figure: the row's value, or a metric it recorded
        run = next((r for r in record["runs"] if (r["row"], r["arm"], r["seed"]) == (*parts[:2], int(seed[1]))), None)
        if run is not None and len(parts) == 3:
            return f"{run['value']:.{record['rows'][parts[0]]['digits']}f}"
        if run is not None and isinstance(run["metrics"].get(parts[2]), (int, float)):
            return f"{run['metrics'][parts[2]]:.3g}"
    if kind == "reproduce" and len(parts) == 3 and parts[0] in record.get("rows", {}):
        try:
            st = reproduce_stats(record, parts[0], parts[1])
        except KeyError:
            st = None
        digits = record["rows"][parts[0]]["digits"]
        if st is not None and parts[2] in ("mean", "sd", "min", "max"):
            return f"{st[parts[2]]:.{digits}f}"
        if st is not None and parts[2] in ("seeds", "met"):
            return str(st["seeds"]) if parts[2] == "seeds" else f"{st['met_count']} of {st['seeds']}"
        runs = [r for r in record["runs"] if r["row"] == parts[0] and r["arm"] == parts[1]]
        if runs and all(parts[2] in r["metrics"] for r in runs):  # a recorded figure: its mean over the seeds
            return f"{sum(r['metrics'][parts[2]] for r in runs) / len(runs):.3g}"
    raise ValueError(f"a prose quote names {key!r}, which is no figure: results:MODEL/DATASET[/METRIC|/PRESET/value|"
                     "train_seconds] or reproduce:ROW/ARM/mean|sd|min|max|seeds|met|a recorded metric[/seedK]|seedK or "
                     "reproduce:ROW/gap/mean|min|half or gpu:MODEL/FIELD")


GPU_FORMATS = {"examples_per_s": "{:,.0f}", "mfu": "{:.1%}", "gpu_busy": "{:.0%}", "step_ms": "{:.3g}",
               "first_step_s": "{:.3g}", "syncs_per_step": "{:.2g}", "batch": "{:d}"}


def gpu_figure(recorded: dict[str, Any], name: str, field: str) -> str | None:
    """A figure of a GPU results file (``python -m benchmarks gpu_steps``): ``field`` (``GPU_FORMATS``: formatted as
    the GPU table writes it) of the row timed for model ``name``, or of the variant so named (a setting timed beside
    the preset: ``variants``, each with its ``name``); None where there is no such measured figure."""
    rows = {r["model"]: r for r in recorded.get("rows", [])} | {v["name"]: v for v in recorded.get("variants", [])}
    value = rows.get(name, {}).get(field)
    if field not in GPU_FORMATS or not isinstance(value, (int, float)):
        return None
    return GPU_FORMATS[field].format(value)


def fill_quotes(text: str, results: list[dict[str, Any]], record: dict[str, Any], where: str,
                gpu: dict[str, Any] | None = None) -> str:
    """``text`` with every prose quote's figure generated (``quote``); ValueError naming ``where`` and the key."""
    try:
        return QUOTE.sub(lambda m: f"<!--q:{m['key']}-->{quote(m['key'], results, record, gpu)}<!--/q-->", text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
