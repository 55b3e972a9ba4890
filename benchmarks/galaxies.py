"""``python -m benchmarks galaxy_conditioning [--run RUN] [--galaxy-samples N]``: do generated galaxies have the
physical parameters they were asked for?

For a ``flow_matching`` run on ``galaxies`` (``--run``; without it, the quick preset is trained first, into
``runs/``), N samples are drawn at the conditions of the first N test galaxies, and ``measure``
(``practice_torch.evaluation.galaxies``) reads half-light radius, ellipticity (PSF-corrected HSM shapes),
flux and concentration (for the Sersic index) off them. One row per parameter: Pearson and Spearman correlation
and the slope of measured on requested (physical units), for the samples and, beside them, for the real test
images of the same conditions measured the same way: the ceiling the measurement allows. Writes the parameter
sweep and a scatter of measured vs requested beside the JSON.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def galaxy_run(run: str | None, device: torch.device):
    """(module, config, net, run dir) of ``--run``, or of a fresh quick-preset run (trained here, into runs/);
    SystemExit, one line, for a run that is not a conditional flow_matching run."""
    from practice_torch.models import open_run

    if run is None:
        from practice_torch.engine.runs import check_new_run_dir, default_run_dir
        from practice_torch.models import get_model, new_trainer

        cfg = get_model("flow_matching").default_config("quick", "galaxies")
        run_dir = default_run_dir(cfg, ROOT / "runs")
        check_new_run_dir(run_dir)
        print(f"galaxy_conditioning: no --run; training the quick preset into {run_dir}")
        trainer = new_trainer(cfg, run_dir)
        try:
            trainer.run()
        finally:
            trainer.close()
        run = str(run_dir)
    module, cfg, net = open_run(Path(run), device)
    if cfg.model_name != "flow_matching" or cfg.data.name != "galaxies" or not getattr(cfg.model, "cond_dim", 0):
        raise SystemExit(f"error: {run} is not a flow_matching run conditioned on galaxy parameters (train one with "
                         "python -m practice_torch train flow_matching --dataset galaxies)")
    return module, cfg, net, Path(run)


@torch.no_grad()
def conditioned_samples(module, cfg, net, y: torch.Tensor, seed: int = 0, chunk: int = 250) -> torch.Tensor:
    """Samples (N, 1, S, S) in the data set's normalisation at the normalised conditions y (N, 5), in chunks."""
    generator, device = torch.Generator().manual_seed(seed), next(net.parameters()).device
    parts = [module.generate(net, cfg.model, len(part), generator, part.to(device)).x[-1].cpu()
             for part in y.split(chunk)]
    return net.from_model(torch.cat(parts))


def shared_noise_generator(module, cfg, net):
    """``generate(y (N, 5), noise (N, 1, S, S)) -> x`` for the sweep figure: the model's ODE from the given start
    x0 = noise at t = 0, so that a row of the sweep can share one start."""
    device = next(net.parameters()).device

    @torch.no_grad()
    def generate(y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = module.generate(net, cfg.model, len(y), None, y.to(device), noise=noise).x[-1]
        return net.from_model(x).cpu()

    return generate


def conditioning_rows(samples: torch.Tensor, real: torch.Tensor, y: torch.Tensor) -> tuple[list[dict], dict, dict]:
    """The table: per parameter, the correlations and slope of measured vs requested (y (N, 5) normalised) for
    ``samples`` and for ``real`` images (N, 1, S, S) of the same conditions; with both measurements."""
    from practice_torch.evaluation.galaxies import condition_correlations, measure

    measured, ceiling = measure(samples), measure(real)
    got, best = condition_correlations(y, measured), condition_correlations(y, ceiling)
    rows = [{"parameter": name, "measured_as": got[name]["measured_as"], "pearson": got[name]["pearson"],
             "pearson_real": best[name]["pearson"], "spearman": got[name]["spearman"],
             "spearman_real": best[name]["spearman"], "slope": got[name]["slope"], "slope_real": best[name]["slope"],
             "measured": got[name]["n"], "samples": len(samples)} for name in got]
    return rows, measured, ceiling


def galaxy_conditioning(args) -> list[dict]:
    from practice_torch.data import get_dataset
    from practice_torch.engine.artefacts import write_artefact
    from practice_torch.evaluation.galaxies import sweep_figure, tracking_figure

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module, cfg, net, run = galaxy_run(args.run, device)
    real, y = get_dataset("galaxies", "test", limit=args.galaxy_samples)[:]
    start = time.perf_counter()
    samples = conditioned_samples(module, cfg, net, y)
    seconds = time.perf_counter() - start
    rows, measured, ceiling = conditioning_rows(samples, real, y)
    write_artefact(tracking_figure(y, measured, (y, ceiling)), args.results / "galaxy_conditioning.png")
    write_artefact(sweep_figure(shared_noise_generator(module, cfg, net), generator=torch.Generator().manual_seed(0)),
                   args.results / "galaxy_conditioning_sweep.png")
    where = {"run": run.name, "method": cfg.model.method, "ode_steps": cfg.model.ode_steps, "sample_s": seconds}
    return [{**row, **where} for row in rows]
