"""The families compared on one table (``docs/families.md``): each image model the project trains on Fashion-MNIST,
its sample quality (FID, precision and recall on the project's features), its likelihood where the family has one,
what a sample costs to draw and what the model cost to train, each a mean over the seeds of a ``benchmarks
reproduce`` row's runs.

The table is a view over the sweep's record (``docs/reproduce.json``): ``FAMILIES`` names, for each model, the row and
arm whose runs it reads, so a model measured by its own row (StyleGAN beside the DCGAN, the cascade beside one stage)
is not trained twice, and the rows ``families`` and ``families_slow_samplers`` (2 000 samples scored, where
drawing 10 000 would take hours) train the rest. A model whose row has not been swept yet has its line
on the page, saying so. ``python -m benchmarks reproduce`` keeps ``KEYS`` in the record for every run that reports
them, whatever its row's own metric.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """One line of the table: ``model`` as the page names it, its ``family``, the reproduce ``row`` and ``arm`` whose
    runs it reads, the ``sampler`` its samples were drawn with, and ``nll``: the eval key of its exact negative
    log-likelihood or its bound in bits/dim (None where the family has none)."""

    model: str
    family: str
    row: str
    arm: str
    sampler: str
    nll: str | None = None


FAMILIES = (
    Family("VAE", "latent variable", "vae_gan", "vae", "one decoder pass", "nll_bits_per_dim"),
    Family("VAE-GAN", "latent variable + adversarial", "vae_gan", "vaegan", "one decoder pass", "nll_bits_per_dim"),
    Family("DCGAN (R1)", "adversarial", "stylegan", "dcgan", "one generator pass"),
    Family("WGAN-GP", "adversarial", "families", "wgan_gp", "one generator pass"),
    Family("progressive growing", "adversarial", "stylegan", "progressive", "one generator pass"),
    Family("StyleGAN2", "adversarial", "stylegan", "stylegan", "one generator pass"),
    Family("DDPM", "diffusion", "cascade", "one_stage", "DDIM, 50 steps", "bits_per_dim"),
    Family("cascaded DDPM", "diffusion", "cascade", "augmented", "DDIM, 50 steps a stage"),
    Family("latent diffusion", "diffusion", "families", "latent_diffusion", "the preset's sampler in the latent"),
    Family("flow matching", "flow", "families_slow_samplers", "flow_matching", "the preset's ODE solve"),
    Family("consistency model (flow matching, distilled)", "flow", "consistency_fashion_mnist", "consistency",
           "one network pass"),
    Family("coupling flow (RealNVP)", "flow", "families", "coupling_flows", "one inverse pass", "bits_per_dim"),
    Family("PixelCNN", "autoregressive", "families_slow_samplers", "pixelcnn", "784 network passes", "bits_per_dim"),
    Family("EBM", "energy-based", "families_slow_samplers", "ebm", "Langevin chains"),
)

# What the record keeps of each run beside its row's own metric, where eval reports it: the table's columns
KEYS = ("fid", "precision", "recall", "sample_ms", "sample_metrics_samples", "train_s",
        *sorted({f.nll for f in FAMILIES if f.nll}))


def _mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r["metrics"][key] for r in runs if r.get("metrics", {}).get(key) is not None]
    return statistics.fmean(values) if values and len(values) == len(runs) else None


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def family_figures(record: dict[str, Any], family: Family) -> dict[str, Any] | None:
    """The means over the seeds of one model's runs in ``record`` (None when its row has none): ``fid``,
    ``precision``, ``recall``, ``nll``, ``sample_ms``, ``train_min``, ``samples`` (scored a run) and ``seeds``; a
    figure some seed lacks is None."""
    runs = [r for r in record.get("runs", []) if r["row"] == family.row and r["arm"] == family.arm]
    if not runs:
        return None
    train = _mean(runs, "train_s")
    return {"fid": _mean(runs, "fid"), "precision": _mean(runs, "precision"), "recall": _mean(runs, "recall"),
            "nll": _mean(runs, family.nll) if family.nll else None, "sample_ms": _mean(runs, "sample_ms"),
            "train_min": None if train is None else train / 60, "samples": _mean(runs, "sample_metrics_samples"),
            "seeds": len(runs)}


def families_table(record: dict[str, Any], records: str = "records/") -> str:
    """``docs/families.md``'s table: a line per ``FAMILIES`` model, its figures the means over its row's seeds, or
    the command that measures it while its row has no runs."""
    lines = ["| model | family | FID | precision | recall | NLL (bits/dim) | ms a sample | sampler | training "
             "minutes | samples scored | seeds | row |", "|" + "---|" * 12]
    for f in FAMILIES:
        described = record.get("rows", {}).get(f.row, {})
        topics = described.get("topics") or []
        model = next((a["model"] for a in described.get("arms", []) if a["name"] == f.arm), None)
        page = model if model in topics else topics[0] if topics else None  # the model's own records page
        row = f"[`{f.row}`]({records}{page}.md#reproduced)" if page else f"`{f.row}`"
        figures = family_figures(record, f)
        if figures is None:
            lines.append(f"| {f.model} | {f.family} | not yet measured: `python -m benchmarks reproduce --rows "
                         f"{f.row} --publish` | | | | | {f.sampler} | | | | `{f.row}` |")
            continue
        lines.append(f"| {f.model} | {f.family} | **{_cell(figures['fid'], 1)}** | {_cell(figures['precision'], 3)} | "
                     f"{_cell(figures['recall'], 3)} | {_cell(figures['nll'], 3)} | {_cell(figures['sample_ms'], 2)} | "
                     f"{f.sampler} | {_cell(figures['train_min'], 1)} | {_cell(figures['samples'], 0)} | "
                     f"{figures['seeds']} | {row} |")
    return "\n".join(lines) + machines_note(record)


def machines_note(record: dict[str, Any]) -> str:
    """'' when every measured line's row ran on one machine; else a paragraph naming each machine and its rows (an
    earlier sweep's too): milliseconds and minutes compare only between lines of one machine."""
    rows: dict[str, list[str]] = {}
    for name in dict.fromkeys(f.row for f in FAMILIES if any(r["row"] == f.row for r in record.get("runs", []))):
        meta = record.get("meta", {}).get(name, {})
        for sweep in [meta, *meta.get("earlier", [])]:
            if sweep.get("machine") and name not in rows.setdefault(sweep["machine"], []):
                rows[sweep["machine"]].append(name)
    if len(rows) < 2:
        return ""
    named = "; ".join(f"{machine} ({', '.join(f'`{r}`' for r in names)})" for machine, names in rows.items())
    return (f"\n\nThe rows ran on {len(rows)} machines: {named}. The milliseconds a sample and the training minutes "
            "compare between lines of one machine.")
