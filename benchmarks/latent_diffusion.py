"""``python -m benchmarks latent_vs_pixel --seconds S``: latent diffusion against pixel-space DDPM at equal training time.

Both arms train with the project's engine on fashion_mnist from their quick configs, for the same budget of S seconds
of this process's CPU time (``time.process_time``: on a machine shared with other jobs, wall time measures the
neighbours; on an idle one, CPU seconds = wall seconds x threads):

* latent: the autoencoder (``vae`` quick, latent_dim 16, beta 0.1) for ``--ae-fraction`` of S, then the latent DDPM
  (``latent_diffusion`` quick) for the rest; the autoencoder's time counts against the latent arm;
* pixel: ``ddpm`` quick (the U-Net), made class-conditional with the same label dropout so both arms sample with the
  same classifier-free guidance scale.

Training runs in chunks of 50 steps; after each, ``train.steps`` (which sets the LR schedule) is re-estimated as the
steps the rest of the budget affords at that chunk's cost, and training stops when the budget is spent (set-up, data
loading and the latent scale's estimate included). ``--ld-arms`` runs one arm only (two processes, one per arm, halve
the wall time on a shared machine). Each arm then draws
``--ld-samples`` samples with DDIM (eta 0) over ``--ld-sample-steps`` respaced steps, timed, and FID and KID are
measured against as many test images in the project's feature network (FID is biased upwards at small n; KID is not).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch


def train_for(cfg, run_dir: Path, cpu_seconds: float, chunk: int = 50) -> dict:
    """Train ``cfg`` into ``run_dir`` for about ``cpu_seconds`` of process CPU time, set-up included, in chunks of
    ``chunk`` steps (the remaining steps re-estimated after each from its cost); returns the trainer's net (EMA
    weights if kept) with the steps, CPU and wall seconds spent."""
    from practice_torch.engine.runs import ema_copy
    from practice_torch.models import new_trainer

    cpu0, wall0 = time.process_time(), time.perf_counter()
    cfg.train.steps = 10**9  # no finish() inside the budget; set below once a step's cost is known
    trainer = new_trainer(cfg, run_dir)
    try:
        while time.process_time() - cpu0 < cpu_seconds and trainer.step < cfg.train.steps - 1:
            start, first = time.process_time(), trainer.step
            trainer.run(stop_at=min(trainer.step + chunk, cfg.train.steps - 1))
            per_step = (time.process_time() - start) / max(trainer.step - first, 1)
            # the steps the rest of the budget affords at the latest rate; the LR schedule reads train.steps each step
            cfg.train.steps = trainer.step + 1 + max(0, int((cpu_seconds - (time.process_time() - cpu0)) / per_step))
        net = trainer.net if trainer.ema is None else ema_copy(trainer.net, trainer.ema.weights(trainer.net))
    finally:
        trainer.close()
    return {"net": net.eval(), "steps": trainer.step, "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0}


@torch.no_grad()
def timed_samples(module, cfg, net, n: int, seed: int = 0) -> tuple[torch.Tensor, float, float]:
    """n class-conditional samples in [0, 1] (the model's own 'samples' artefact), CPU and wall seconds."""
    from practice_torch.evaluation.samples import draw_images

    cpu0, wall0 = time.process_time(), time.perf_counter()
    images, _ = draw_images(module, cfg, net, n, torch.Generator().manual_seed(seed), chunk=250)
    return images, time.process_time() - cpu0, time.perf_counter() - wall0


def latent_vs_pixel(args) -> list[dict]:
    from practice_torch import ddpm
    from practice_torch import latent_diffusion as ld
    from practice_torch.data import get_dataset
    from practice_torch.evaluation.features import feature_network
    from practice_torch.evaluation.samples import image_set_metrics
    from practice_torch.models import get_model

    ddpm_training, ld_training, vae_training = (get_model(m) for m in ("ddpm", "latent_diffusion", "vae"))  # presets

    dataset, budget, n = args.dataset, args.seconds or 600, args.ld_samples
    root = Path(tempfile.mkdtemp(prefix="latent_vs_pixel-"))
    sampler = {"sampler": "ddim", "eta": 0.0, "sample_steps": args.ld_sample_steps, "guidance_scale": 1.0}

    arms = []
    if "latent" in args.ld_arms.split(","):  # the autoencoder, then the latent DDPM, within one budget
        ae_cfg = vae_training.default_config("quick", dataset)
        ae_cfg = dataclasses.replace(ae_cfg, model=dataclasses.replace(ae_cfg.model, latent_dim=16, beta=0.1))
        ae = train_for(ae_cfg, root / "vae", args.ae_fraction * budget)
        ld_cfg = ld_training.default_config("quick", dataset)
        ld_cfg.model = dataclasses.replace(ld_cfg.model, autoencoder=str(root / "vae"), **sampler)
        latent = train_for(ld_cfg, root / "latent", budget - ae["cpu_s"])
        arms.append(("latent diffusion", ld, ld_cfg, latent, f"{ae['steps']} vae + {latent['steps']} ddpm",
                     ae["cpu_s"] + latent["cpu_s"], ae["wall_s"] + latent["wall_s"]))
    if "pixel" in args.ld_arms.split(","):  # ddpm quick, class-conditional with the same label dropout and guidance
        px_cfg = ddpm_training.default_config("quick", dataset)
        px_cfg.model = dataclasses.replace(px_cfg.model, conditional=True,
                                           label_dropout=ld_training.default_config("quick").model.label_dropout, **sampler)
        pixel = train_for(px_cfg, root / "pixel", budget)
        arms.append(("pixel ddpm", ddpm, px_cfg, pixel, str(pixel["steps"]), pixel["cpu_s"], pixel["wall_s"]))

    test = get_dataset(dataset, "test", args.data_dir)[:][0][:n]
    features = feature_network(dataset, args.data_dir)
    rows = []
    for name, module, cfg, arm, steps, cpu_s, wall_s in arms:
        net = arm["net"]
        fake, sample_cpu, sample_wall = timed_samples(module, cfg, net, n)
        m = image_set_metrics(test[: len(fake)], fake, features)
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
        rows.append({"model": name, "train_cpu_s": cpu_s, "train_wall_s": wall_s, "steps": steps,
                     "params_trained": trainable, "params_frozen": frozen, "samples": len(fake),
                     "sampler": f"ddim {args.ld_sample_steps} steps, cfg w=1", "fid": m["fid"], "kid": m["kid"],
                     "kid_std": m["kid_std"], "sample_ms_per_image_cpu": 1e3 * sample_cpu / len(fake),
                     "sample_ms_per_image_wall": 1e3 * sample_wall / len(fake)})
    print(f"runs kept in {root}")
    return rows
