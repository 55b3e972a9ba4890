"""``python -m benchmarks ddim_steps --run RUN``: speed against sample quality of a trained DDPM's samplers.

For each number of steps (default 10, 20, 50, 100, 1000 of a respaced schedule) and each sampler (DDIM with eta = 0,
and DDPM's ancestral sampler on the same respaced schedule, Nichol & Dhariwal 2021), one row: the wall time per sample,
FID and KID of the samples against held-out test images in the feature space of the project's feature network
(``practice_torch.evaluation``), and for DDIM the error of encode-then-decode (``ddim_encode``, then deterministic
DDIM sampling) on test images: over the whole schedule (``rec_rmse``), and with the ODE stopped where alpha_bar
falls below 0.01 (``rec_rmse_a0.01``). The first decoding step multiplies an error in eps by
sqrt((1 - a_T) / a_T) in x0_hat, about 2e4 at the cosine schedule's a_{T-1} = 2.4e-9 (``python -m theory_jax
ddim``), so the whole-schedule round trip measures how consistent the network's eps is at pure noise more than
the ODE error. Rows "test images" give each sample size's noise floor: the FID of other test images.

Cost on a CPU is (samples x steps) network evaluations per row: a row gets ``--ddim-samples`` samples (default 1000)
but at most ``--ddim-budget`` evaluations (default 100 000), so the 1000-step rows use 100 samples. FID is biased
upwards at small sample sizes (compare a row with the noise floor of its n); KID is unbiased.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
STEPS = (10, 20, 50, 100, 1000)


def find_run(run: str | None) -> Path:
    """``--run``, or the newest runs/ddpm-fashion_mnist-* when it is not given (SystemExit, one line, if none)."""
    if run:
        return Path(run)
    found = sorted((ROOT / "runs").glob("ddpm-fashion_mnist-*"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("error: ddim_steps needs --run RUN, a trained ddpm run "
                         "(python -m practice_torch train ddpm makes runs/ddpm-fashion_mnist-1)")
    return found[-1]


@torch.no_grad()
def draw(net, config, n: int, seed: int, chunk: int = 250) -> tuple[torch.Tensor, float]:
    """n samples (n, C, H, W) in [0, 1] with ``config``'s sampler, and the wall time of drawing them (seconds)."""
    from practice_torch.diffusion.model import generate

    generator, parts = torch.Generator().manual_seed(seed), []
    start = time.perf_counter()
    sampler = {"sampler": config.sampler, "steps": config.sample_steps, "eta": config.eta,
               "guidance_scale": config.guidance_scale, "clip_x0": config.clip_x0}
    for lo in range(0, n, chunk):
        parts.append(net.from_model(generate(net, min(chunk, n - lo), generator, None, **sampler)[0]).cpu())
    return torch.cat(parts), time.perf_counter() - start


@torch.no_grad()
def reconstruction_error(net, steps: int, images: torch.Tensor, min_alpha_bar: float = 0.0) -> float:
    """RMSE in [0, 1] pixel units of decode(encode(x_0)) on images (N, C, H, W): DDIM inversion over ``steps``
    respaced steps, then deterministic DDIM sampling back (no clipping: the ODE in both directions). With
    ``min_alpha_bar`` > 0 the ODE stops at the last kept step whose alpha_bar is at least that."""
    from practice_torch.ddim import ddim_decode, ddim_encode
    from practice_torch.ddpm import Schedule

    schedule = net.schedule if steps == len(net.schedule) else net.schedule.respace(steps)
    keep = schedule.alpha_bars >= min_alpha_bar
    schedule = Schedule.from_alpha_bars(schedule.alpha_bars[keep], schedule.timesteps[keep])
    x0 = net.to_model(images)
    eps_fn = lambda x, t: net(x, t)  # noqa: E731
    back = ddim_decode(eps_fn, schedule, ddim_encode(eps_fn, schedule, x0))
    return float(torch.sqrt(torch.mean((net.from_model(back) - images) ** 2)))


def ddim_steps(args) -> list[dict]:
    """Rows (sampler, steps, n, seconds per sample, FID, KID, reconstruction RMSE) for one trained ddpm run."""
    from practice_torch.engine.runs import load_split
    from practice_torch.evaluation import fid_from_features, kid_subsets
    from practice_torch.evaluation.features import embed, feature_network
    from practice_torch.models import open_run

    run = find_run(getattr(args, "run", None))
    n_max, budget = getattr(args, "ddim_samples", 1000), getattr(args, "ddim_budget", 100_000)
    steps_list = [int(s) for s in str(getattr(args, "ddim_steps", ",".join(map(str, STEPS)))).split(",")]
    n_rec = getattr(args, "ddim_reconstruct", 64)
    module, cfg, net = open_run(run, torch.device("cpu"))
    if cfg.model_name != "ddpm" or not getattr(net, "images", False):
        raise SystemExit(f"error: {run} is not a ddpm run on images")
    test = load_split(cfg.data, "test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    real = torch.stack([test[int(i)][0] for i in order[:n_max]])
    floor_pool = torch.stack([test[int(i)][0] for i in order[n_max:2 * n_max]])
    features = feature_network(cfg.data.name, getattr(args, "data_dir", None))
    real_feats = embed(features, real)[0]
    kid_generator = torch.Generator().manual_seed(1)
    T, nan = len(net.schedule), float("nan")
    rows, sizes = [], set()
    for steps in steps_list:
        if not 1 <= steps <= T:
            raise SystemExit(f"error: --ddim-steps {steps} is outside 1..T={T}")
        n = max(2, min(n_max, budget // steps))
        sizes.add(n)
        for sampler in ("ddim", "ddpm"):
            config = dataclasses.replace(cfg.model, sampler=sampler, sample_steps=steps, eta=0.0, guidance_scale=0.0)
            images, seconds = draw(net, config, n, seed=steps)
            fake_feats = embed(features, images)[0]
            kid, kid_std = kid_subsets(real_feats, fake_feats, generator=kid_generator)
            row = {"sampler": "ddim eta=0" if sampler == "ddim" else "ddpm", "steps": steps, "n": n,
                   "s_per_sample": seconds / n, "fid": fid_from_features(real_feats, fake_feats), "kid": kid,
                   "kid_std": kid_std, "rec_n": 0, "rec_rmse": nan, "rec_rmse_a0.01": nan}
            if sampler == "ddim" and n_rec:
                m = row["rec_n"] = max(1, min(n_rec, budget // (4 * steps)))
                row["rec_rmse"] = reconstruction_error(net, steps, real[:m])
                row["rec_rmse_a0.01"] = reconstruction_error(net, steps, real[:m], min_alpha_bar=0.01)
            rows.append(row)
            print(f"  {row['sampler']:>10} {steps:>5} steps: n {n}, {row['s_per_sample']:.3f} s/sample, "
                  f"FID {row['fid']:.2f}, KID {kid:.4f}, encode-decode RMSE {row['rec_rmse']:.4f} "
                  f"(to alpha_bar >= 0.01: {row['rec_rmse_a0.01']:.4f})", flush=True)
    for n in sorted(sizes):  # the noise floor of FID/KID at each sample size: other test images
        floor_feats = embed(features, floor_pool[:n])[0]
        kid, kid_std = kid_subsets(real_feats, floor_feats, generator=kid_generator)
        rows.append({"sampler": "test images", "steps": 0, "n": n, "s_per_sample": 0.0,
                     "fid": fid_from_features(real_feats, floor_feats), "kid": kid, "kid_std": kid_std,
                     "rec_n": 0, "rec_rmse": nan, "rec_rmse_a0.01": nan})
    for row in rows:
        row["run"] = str(run)
    plot_fid_vs_time(rows, Path(getattr(args, "results", ROOT / "benchmarks" / "results")) / "ddim_steps.png")
    return rows


def plot_fid_vs_time(rows: list[dict], path: Path) -> None:
    """FID and KID against wall time per sample (log scale), one line per sampler, labelled by steps; a PNG.
    FID is biased upwards at small n (rows with fewer samples), KID is not."""
    from practice_torch.plots import new_figure

    fig, axes = new_figure(2, size=5.0)
    for ax, key in zip(axes, ("fid", "kid")):
        for sampler, marker in (("ddim eta=0", "o"), ("ddpm", "s")):
            points = [r for r in rows if r["sampler"] == sampler]
            ax.plot([r["s_per_sample"] for r in points], [r[key] for r in points], marker=marker, label=sampler)
            for r in points:
                ax.annotate(f"{r['steps']} (n {r['n']})", (r["s_per_sample"], r[key]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
        ax.set(xscale="log", xlabel="wall time per sample (s, CPU)", ylabel=f"{key.upper()} (project features)",
               title=f"{key.upper()} by number of steps")
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {path}")
