"""``python -m benchmarks unet_step``: our U-Net against diffusers' ``UNet2DModel`` of the same architecture.

Two sizes: the ddpm quick size (``UNetConfig()`` defaults, 28x28, batch 64) and a larger one (Ho et al.'s CIFAR-10
layout at half width: 64 channels, mults (1, 2, 2, 2), two residual blocks per level, attention at 16x16, 3x32x32,
batch 16). Per size and implementation: one training step (eps-prediction MSE, backward, AdamW) in images/s
and MFU, and sampling speed (forward passes/s under ``no_grad``). FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (plus the CPU attention kernel it does not know), MFU against
the fp32 GEMM peak measured by ``benchmarks.timing.gemm_peaks``. The two implementations are timed
in turns (best of ``--repeats`` each), so a busy machine slows both alike; ``*_vs_diffusers`` is our time over
theirs (below 1: ours is faster). The diffusers twin has the same widths, blocks, attention levels, head size
and GroupNorm groups: its parameter and FLOP counts equal ours (the table shows both). diffusers is optional
(``pip install diffusers==0.42.1`` or ``pip install .[bench]``); without it one line says so and only our rows
are reported.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from benchmarks.timing import best_of_interleaved, count_flops, gemm_peaks
from practice_torch.nets import UNet, UNetConfig

SIZES = (
    ("quick 28x28", UNetConfig(), 28, 64),
    ("larger 32x32", UNetConfig(in_channels=3, out_channels=3, channels=64, channel_mults=(1, 2, 2, 2),
                                num_res_blocks=2, attention_levels=(1,), heads=4, groups=32), 32, 16),
)


def diffusers_twin(config: UNetConfig, size: int):
    """diffusers' ``UNet2DModel`` with our architecture (None when diffusers is not installed)."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        return None
    widths = tuple(config.channels * m for m in config.channel_mults)
    levels = range(len(widths))
    return UNet2DModel(
        sample_size=size, in_channels=config.in_channels, out_channels=config.out_channels, block_out_channels=widths,
        layers_per_block=config.num_res_blocks, norm_num_groups=config.groups, dropout=config.dropout,
        down_block_types=tuple("AttnDownBlock2D" if i in config.attention_levels else "DownBlock2D" for i in levels),
        up_block_types=tuple("AttnUpBlock2D" if i in config.attention_levels else "UpBlock2D" for i in reversed(levels)),
        attention_head_dim=widths[-1] // config.heads,  # the middle block's head size; ours splits every level the same
        time_embedding_type="positional", flip_sin_to_cos=False, freq_shift=0)


def unet_step(args) -> list[dict]:
    """Rows per size: ours and diffusers', training step and sampling, with the ratio of step times."""
    peak = gemm_peaks(repeats=args.repeats)["machine"]
    rows = []
    for name, config, size, batch in SIZES:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, config.in_channels, size, size, generator=generator)
        eps = torch.randn(x.shape, generator=generator)
        t = torch.randint(0, 1000, (batch,), generator=generator)
        nets = {"ours": (UNet(config), lambda net, x, t: net(x, t))}
        twin = diffusers_twin(config, size)
        if twin is None:
            print("diffusers is not installed (pip install diffusers==0.42.1): only our rows")
        else:
            nets["diffusers"] = (twin, lambda net, x, t: net(x, t).sample)
        steps, passes, flops = {}, {}, {}
        for impl, (net, forward) in nets.items():
            optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def loss_backward(net=net, forward=forward):
                net.zero_grad(set_to_none=True)
                F.mse_loss(forward(net, x, t), eps).backward()

            def train_step(optimizer=optimizer, loss_backward=loss_backward):
                loss_backward()
                optimizer.step()

            @torch.no_grad()
            def sample_pass(net=net, forward=forward):
                forward(net, x, t)

            steps[impl], passes[impl] = train_step, sample_pass
            flops[impl] = count_flops(loss_backward), count_flops(sample_pass)
        step_s, pass_s = best_of_interleaved(steps, args.repeats), best_of_interleaved(passes, args.repeats)
        for impl, (net, _) in nets.items():
            (step_flops, fwd_flops), base = flops[impl], "diffusers" if twin is not None else impl
            rows.append({"size": name, "impl": impl, "batch": batch,
                         "params_M": sum(p.numel() for p in net.parameters()) / 1e6, "gflop_fwd": fwd_flops / 1e9,
                         "train_img_per_s": batch / step_s[impl], "train_mfu": step_flops / step_s[impl] / peak,
                         "passes_per_s": 1 / pass_s[impl], "sample_mfu": fwd_flops / pass_s[impl] / peak,
                         "ms_step": 1e3 * step_s[impl], "ms_pass": 1e3 * pass_s[impl],
                         "step_vs_diffusers": step_s[impl] / step_s[base] if twin is not None else float("nan"),
                         "pass_vs_diffusers": pass_s[impl] / pass_s[base] if twin is not None else float("nan")})
    for row in rows:
        row["gemm_peak_gflops"] = peak / 1e9
    return rows
