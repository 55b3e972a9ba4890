"""SSM benchmarks: the cost of one generated token against the length generated so far, and the training step.

``ssm_generation``: one sequence (``--gen-batch`` of them) generated token by token to ``--gen-length`` tokens, by the
quick-preset SSM's recurrent step (``SSMStack.step``: a fixed-size state per layer) and by the quick-preset
Transformer with its key-value cache (built with a context of the whole length, so the cache is never refilled and
each step attends to every token before it). Every ``--gen-window`` tokens the tokens per second of that window are
recorded: the SSM's stay flat, the Transformer's fall as its cache grows. Rows: one per model and window end; the
curves also go to ``ssm_generation.png``. The weights do not change the speed, so the nets are freshly initialised.

``ssm_step``: one training step (forward, backward, AdamW) at the quick sizes on ``--threads`` threads, for the text
SSM (Mamba), the text Transformer beside it, and the audio SSM (S4D on whole clips): wall time (best of
``--repeats``), examples and tokens per second, model FLOPs counted by ``torch.utils.flop_counter`` (matrix products
and convolutions; the scan's elementwise products are not FLOPs it counts, so they show as lost utilisation), and
MFU against the fp32 GEMM peak measured in the same run.

    python -m benchmarks ssm_generation ssm_step
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import best_of, count_flops, gemm_peaks

RESULTS = Path(__file__).resolve().parent / "results"
VOCAB = 65  # shakespeare's characters


def _quick_model(model: str, dataset: str, overrides=()):
    """(config, freshly initialised net) of a model's quick preset on ``dataset`` (its data set need not be here)."""
    from practice_torch.data import get_info
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model

    module = get_model(model)
    cfg = apply_overrides(module.default_config("quick", dataset), list(overrides))
    torch.manual_seed(0)
    return cfg, module.build(cfg.model, get_info(dataset))


def _window_rates(start, advance, batch: int, length: int, window: int) -> list[tuple[int, float]]:
    """Generate ``length`` tokens (greedy: the rule does not change the cost) and time each ``window`` of them.
    -> [(tokens so far at the window's end, tokens per second in the window)]."""
    with torch.no_grad():
        logits, state = start(torch.zeros(batch, 1, dtype=torch.long))
        rates, clock = [], time.perf_counter()
        for t in range(1, length):
            logits, state = advance(logits.argmax(-1), state)
            if (t + 1) % window == 0:
                now = time.perf_counter()
                rates.append((t + 1, batch * window / (now - clock)))
                clock = now
    return rates


def ssm_generation(args) -> list[dict]:
    length, window, batch = args.gen_length, args.gen_window, args.gen_batch
    _, ssm = _quick_model("ssm", "shakespeare")
    _, transformer = _quick_model("language_model", "shakespeare", [f"model.context={min(length, 256)}"])
    if length > 256:  # the Transformer's learned positions as long as the whole generation, so its cache never refills
        from practice_torch.language_model.networks import build_language_model

        m = _quick_model("language_model", "shakespeare")[0].model
        torch.manual_seed(0)
        transformer = build_language_model("transformer", VOCAB, length + 1, m.dim, m.layers, m.heads, 0.0, m.tie)
    rows = []
    for name, net in (("ssm (recurrent step)", ssm), ("transformer (kv cache)", transformer)):
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        _window_rates(net.start, net.advance, batch, 2 * window, window)  # warm-up
        for position, rate in _window_rates(net.start, net.advance, batch, length, window):
            rows.append({"model": name, "params": params, "batch": batch, "tokens_so_far": position,
                         "tokens_per_s": round(rate, 1)})
    for name in {r["model"] for r in rows}:
        mine = [r for r in rows if r["model"] == name]
        for r in mine:
            r["vs_first_window"] = round(r["tokens_per_s"] / mine[0]["tokens_per_s"], 3)
    _figure(rows, args.results / "ssm_generation.png")
    return rows


def _figure(rows: list[dict], out: Path) -> None:
    from benchmarks.plots import new_axes, save

    fig, ax = new_axes((6, 3.6))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        ax.plot([r["tokens_so_far"] for r in mine], [r["tokens_per_s"] for r in mine], marker=".",
                label=f"{name}, {mine[0]['params'] / 1e6:.2f} M params")
    ax.set(xlabel="tokens generated so far", ylabel="tokens per second (window)", xscale="log", ylim=(0, None))
    ax.set_title(f"generation speed, batch {rows[0]['batch']}, {torch.get_num_threads()} thread(s)", fontsize=9)
    save(fig, ax, out)


def ssm_step(args) -> list[dict]:
    peak = gemm_peaks(repeats=max(2, args.repeats // 2))["machine"]
    rows = []
    for name, model, dataset in (("ssm (mamba), text", "ssm", "shakespeare"),
                                 ("transformer, text", "language_model", "shakespeare"),
                                 ("ssm (s4d), audio", "ssm", "spoken_digits")):
        cfg, net = _quick_model(model, dataset)
        t = cfg.train
        opt = torch.optim.AdamW(net.parameters(), lr=t.lr)
        generator = torch.Generator().manual_seed(0)
        if dataset == "shakespeare":
            tokens = torch.randint(0, VOCAB, (t.batch_size, cfg.model.context + 1), generator=generator)

            def forward(net=net, tokens=tokens):
                logits = net(tokens[:, :-1])
                return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            per_example = cfg.model.context
        else:  # whole clips of mu-law classes at the model's rate, with their digits
            length = cfg.model.sample_rate
            q = torch.randint(0, cfg.model.levels, (t.batch_size, length), generator=generator)
            y = torch.randint(0, 10, (t.batch_size,), generator=generator)

            def forward(net=net, q=q, y=y):
                logits = net(q[:, :-1], y)
                return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), q[:, 1:].reshape(-1))
            per_example = length - 1

        def step(forward=forward, opt=opt):
            opt.zero_grad(set_to_none=True)
            forward().backward()
            opt.step()

        flops = count_flops(step)
        seconds = best_of(step, args.repeats, warmup=2)
        rows.append({"model": name, "params": sum(p.numel() for p in net.parameters()), "batch": t.batch_size,
                     "tokens_per_example": per_example, "step_ms": round(1000 * seconds, 1),
                     "examples_per_s": round(t.batch_size / seconds, 1),
                     "tokens_per_s": round(t.batch_size * per_example / seconds),
                     "gflop_per_step": round(flops / 1e9, 3), "mfu": round(flops / seconds / peak, 4),
                     "gemm_peak_gflops": round(peak / 1e9, 1)})
    return rows
