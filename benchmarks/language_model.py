"""Language-model benchmarks: validation loss against training time, and sampling speed with a key-value cache.

``lm_curves``: the quick preset's character Transformer, a 2 x 256 LSTM and the ``ssm`` quick preset (Mamba, 0.77 M
parameters against the Transformer's 0.81 M), ``--lm-arms`` of them, each trained for ``--seconds`` of CPU time
(process time, so that other load on a shared machine does not count) with the engine's loss, AdamW and warmup +
cosine schedule (stretched over the steps the budget affords, estimated from the first 20 steps); every
``--lm-every`` steps the cross-entropy of the same 256 validation pieces of 64 characters is recorded. At the end the
whole validation split is scored as ``eval`` does. Rows: one per architecture; the curves go to the JSON file and a
figure (``lm_curves.png``).

``kv_cache``: tokens per CPU second of ``generate`` (top-p) for the Transformer with its key-value cache and without
it (the whole context recomputed for each token, nanoGPT's ``generate``), and for the LSTM (its recurrent state is
its cache), at batch 1 and 16. The weights do not change the speed, so the nets are freshly initialised.

    python -m benchmarks lm_curves --seconds 300
    python -m benchmarks kv_cache
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# arm -> (model, overrides of its quick preset on shakespeare)
ARMS = {"transformer": ("language_model", []),
        "lstm": ("language_model", ["model.architecture=lstm", "model.dim=256", "model.layers=2"]),
        "ssm": ("ssm", [])}


def _config(overrides, model: str = "language_model"):
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model

    return apply_overrides(get_model(model).default_config("quick", "shakespeare"), ["train.val_batch=0", *overrides])


def val_pieces(context: int) -> torch.Tensor:
    """(N, context + 1) validation pieces: the first context + 1 characters of each 256-window."""
    from practice_torch.data.text import load_shakespeare

    val = load_shakespeare("val")
    return torch.stack([torch.cat([x[:context], y[context - 1:context]]) for x, y in (val[i] for i in range(len(val)))])


def _val_loss(net, pieces: torch.Tensor) -> float:
    import torch.nn.functional as F

    with torch.no_grad():
        net.eval()
        logits = net(pieces[:, :-1])
        net.train()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), pieces[:, 1:].reshape(-1)).item()


def train_curve(name: str, model: str, overrides, seconds: float, every: int, seed: int = 0) -> dict:
    """Train one arm for ``seconds`` of CPU time; the validation curve and the final full-split loss."""
    from practice_torch.data.text import load_shakespeare
    from practice_torch.engine.bookkeeping import lr_factor
    from practice_torch.engine.runs import dataset_info
    from practice_torch.models import get_model

    cfg = _config(overrides, model)
    lm_training = get_model(model)
    torch.manual_seed(seed)
    train = load_shakespeare("train")
    net = lm_training.build(cfg.model, dataset_info(cfg.data))
    t = cfg.train
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    val = val_pieces(cfg.model.context)[:256]
    data_gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    curve, step, total_steps, start = [], 0, None, time.process_time()
    wall = time.perf_counter()
    while True:
        used = time.process_time() - start
        if step == 20:
            total_steps = int(20 * seconds / used)
        if used >= seconds:
            break
        factor = lr_factor(step, t.warmup_steps, total_steps or 10**9, t.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = t.lr * factor
        rows = torch.randint(0, len(train), (t.batch_size,), generator=data_gen)
        x, y = (torch.stack(c) for c in zip(*(train[int(i)] for i in rows)))
        noise = lm_training.draw_noise(net, cfg.model, t.batch_size, noise_gen)
        loss, _ = lm_training.loss(net, cfg.model, (x, y), noise, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
        opt.step()
        step += 1
        if step % every == 0:
            curve.append({"step": step, "cpu_s": round(time.process_time() - start, 2),
                          "wall_s": round(time.perf_counter() - wall, 2), "train_loss": round(loss.item(), 4),
                          "val_loss": round(_val_loss(net, val), 4)})
    cpu = time.process_time() - start
    final = lm_training.evaluate(net.eval(), cfg.model, load_shakespeare("val"), torch.Generator())
    params = sum(p.numel() for p in net.parameters())
    return {"arm": name, "params": params, "steps": step, "cpu_s": round(cpu, 1),
            "wall_s": round(time.perf_counter() - wall, 1), "tokens_per_cpu_s": round(step * t.batch_size *
                                                                                     cfg.model.context / cpu),
            "val_loss": round(final["loss"], 4), "val_bits_per_char": round(final["bits_per_char"], 4),
            "curve": curve}


def lm_curves(args) -> list[dict]:
    seconds = args.seconds or 300
    arms = args.lm_arms.split(",") if args.lm_arms else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"error: unknown lm_curves arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    rows = [train_curve(name, *ARMS[name], seconds, args.lm_every) for name in arms]
    _figure(rows, args.results / "lm_curves.png")
    return rows


def _figure(rows, out: Path) -> None:
    from benchmarks.plots import new_axes, save

    fig, ax = new_axes()
    for row in rows:
        ax.plot([c["cpu_s"] for c in row["curve"]], [c["val_loss"] for c in row["curve"]],
                label=f"{row['arm']} ({row['params'] / 1e6:.2f} M params): {row['val_loss']:.3f} nats/char")
    ax.axhline(1.88, color="grey", ls="--", lw=0.8, label="1.88 (target)")
    ax.set(xlabel="training CPU seconds (one thread)", ylabel="validation loss (nats/char)", ylim=(1.3, 3.5))
    save(fig, ax, out)


def kv_cache(args) -> list[dict]:
    from practice_torch.language_model.networks import build_language_model, generate

    rows = []
    for name, (model, overrides) in ARMS.items():
        if model != "language_model":
            continue
        m = _config(overrides).model
        torch.manual_seed(0)
        net = build_language_model(m.architecture, 85, m.context, m.dim, m.layers, m.heads, 0.0, m.tie).eval()
        for batch in (1, 16):
            prompt, steps = torch.zeros(batch, 1, dtype=torch.long), args.tokens
            u = torch.rand(batch, steps)
            for cache in (True, False):
                if name == "lstm" and not cache:
                    continue
                generate(net, prompt, min(8, steps), "top_p", u, use_cache=cache)  # warm-up
                start = time.process_time()  # CPU time of this (one-thread) process: load elsewhere does not count
                generate(net, prompt, steps, "top_p", u, use_cache=cache)
                seconds = time.process_time() - start
                rows.append({"arm": name, "batch": batch, "cache": cache, "tokens": batch * steps,
                             "tokens_per_cpu_s": round(batch * steps / seconds, 1)})
    for row in rows:
        if row["arm"] == "transformer" and row["cache"]:
            slow = next(r for r in rows if r["arm"] == "transformer" and r["batch"] == row["batch"] and not r["cache"])
            row["speedup"] = round(row["tokens_per_cpu_s"] / slow["tokens_per_cpu_s"], 2)
    return rows
