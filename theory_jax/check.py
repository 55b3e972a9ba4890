"""A trained run checked in the other backend: ``python -m theory_jax check RUN_DIR [--examples N] [--split test]``.

Reads the run's config and its newest checkpoint (EMA weights where the run keeps them), builds the JAX twin of the
network through the weight converter (``shared_specs.interop.torch_to_flax``), and recomputes the run's held-out
metric on N examples in both backends from the same inputs and the same noise, both in float64 (the trained float32
weights cast exactly): a difference is then a difference of the math, held to the project's float64 likelihood
tolerance. Prints metric, PyTorch value, JAX value, difference, tolerance and PASS/FAIL; exit 0 when all pass, 1 on a
failure, 2 on bad input (no run, a model without a twin, a checkpoint that does not match its config, an unknown
split), with a one-line error.

Supported models are those in ``CHECKERS`` (the catalogue lists them): ``vae`` (the single-sample ELBO and the
importance-sampled NLL, nats and bits/dim), ``language_model`` with the transformer (held-out cross-entropy,
nats and bits/char), ``pixelcnn`` (the exact NLL, nats per image and bits/dim) and ``wavenet`` (NLL per sample of
whole clips, nats and bits) and ``ddpm`` on images (the variational bound with 4 shared timesteps per example).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared_specs.compare import Tolerance, tolerance

LEVEL = "loglik"  # the policy level of a log-likelihood in float64


@dataclass(frozen=True)
class Row:
    """One recomputed metric."""

    metric: str
    units: str
    torch_value: float
    jax_value: float
    tol: Tolerance

    @property
    def difference(self) -> float:
        return abs(self.torch_value - self.jax_value)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.difference)) and self.difference <= self.tol.atol + self.tol.rtol * abs(
            self.torch_value)


class CheckError(Exception):
    """Bad input: exit 2 with this one-line message."""


# The models ------------------------------------------------------------------------------------------------------
def _vae(net, cfg, batch, rng, perturb) -> list[Row]:
    """The VAE's single-sample ELBO and its K = 32 importance-sampled NLL, from the same eps in both backends."""
    import jax
    import jax.numpy as jnp
    import torch

    import theory_jax.vae as jv
    from shared_specs.interop import torch_to_flax

    x, y = batch[0].double(), batch[1] if net.num_classes else None
    n, d, k = x.shape[0], net.latent_dim, 32
    eps, eps_k = rng.standard_normal((n, d)), rng.standard_normal((n, k, d))
    net = net.double()
    with torch.no_grad():
        elbo_t = net.elbo(x, torch.from_numpy(eps), y).mean().item()
        nll_t = net.importance_nll(x, torch.from_numpy(eps_k), y).mean().item()
    m = cfg.model
    twin = jv.VAE(image_shape=net.image_shape, latent_dim=d, architecture=m.architecture, likelihood=m.likelihood,
                  hidden=tuple(m.hidden), channels=tuple(m.channels), num_classes=net.num_classes, beta=m.beta)
    xj = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    yj = None if y is None else jnp.asarray(y.numpy())
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), xj, jnp.asarray(eps), yj))["params"]
    params = perturb(torch_to_flax({k_: v.double().numpy() for k_, v in net.state_dict().items()}, template))
    elbo_j = float(jnp.mean(twin.apply({"params": params}, xj, jnp.asarray(eps), yj, method=jv.VAE.elbo)))
    nll_j = float(jnp.mean(twin.apply({"params": params}, xj, jnp.asarray(eps_k), yj, method=jv.VAE.importance_nll)))
    dims = math.prod(net.image_shape) * math.log(2)
    tol = tolerance(LEVEL, "float64")
    return [Row("ELBO (one sample)", "nats/example", elbo_t, elbo_j, tol),
            Row("-ELBO", "bits/dim", -elbo_t / dims, -elbo_j / dims, tol),
            Row(f"NLL (K = {k})", "nats/example", nll_t, nll_j, tol),
            Row(f"NLL (K = {k})", "bits/dim", nll_t / dims, nll_j / dims, tol)]


def _language_model(net, cfg, batch, rng, perturb) -> list[Row]:
    """The character transformer's held-out cross-entropy on context-long pieces of the windows."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from shared_specs.interop import torch_to_flax
    from theory_jax.language_model import cross_entropy
    from theory_jax.nets.transformer import Transformer

    if net.architecture != "transformer":
        raise CheckError(f"language_model with model.architecture={net.architecture} has no JAX twin network "
                         "(only the transformer has one)")
    context = net.context
    x, y = batch[0][:, :context], batch[1][:, :context]
    net = net.double()
    with torch.no_grad():
        loss_t = F.cross_entropy(net(x).reshape(-1, net.vocab_size), y.reshape(-1)).item()
    trunk = Transformer(**dataclasses.asdict(net.trunk.config))
    embedding = net.embedding.weight.detach().double().numpy()
    h0 = jnp.asarray(embedding[x.numpy()])
    template = jax.eval_shape(lambda: trunk.init(jax.random.key(0), h0))["params"]
    state = {k: v.double().numpy() for k, v in net.trunk.state_dict().items()}
    params = perturb(torch_to_flax(state, template))
    h = trunk.apply({"params": params}, h0)
    head = embedding if net.head is None else net.head.weight.detach().double().numpy()
    loss_j = float(cross_entropy(h @ jnp.asarray(head).T, jnp.asarray(y.numpy())))
    tol = tolerance(LEVEL, "float64")
    return [Row("cross-entropy", "nats/char", loss_t, loss_j, tol),
            Row("cross-entropy", "bits/char", loss_t / math.log(2), loss_j / math.log(2), tol)]


def _pixelcnn(net, cfg, batch, rng, perturb) -> list[Row]:
    """PixelCNN's exact held-out NLL, the chain rule over pixels, from the same quantised images."""
    import jax
    import jax.numpy as jnp
    import torch

    import practice_torch.pixelcnn as tp
    import theory_jax.pixelcnn as jp
    from shared_specs.interop import torch_to_flax

    q = net.quantise(batch[0])
    y = batch[1] if net.num_classes else None
    k = net.categories
    inputs = q[:, None].double() * (2.0 / (k - 1)) - 1.0  # the model's pixel coding, in float64
    inner = net.net.double()
    with torch.no_grad():
        logits = inner(inputs, y)
        log_p = (tp.bernoulli_log_likelihood(logits[:, 0], q) if k == 2
                 else tp.categorical_log_likelihood(logits, q))
    nll_t = -log_p.mean().item()
    m = cfg.model
    cls = {"gated": jp.GatedPixelCNN, "plain": jp.PlainPixelCNN}[m.architecture]
    twin = cls(m.channels, m.layers, m.kernel, 1 if k == 2 else k, net.num_classes, m.first_kernel)
    xj = jnp.asarray(inputs.numpy().transpose(0, 2, 3, 1))
    yj = None if y is None else jnp.asarray(y.numpy())
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), xj, yj))["params"]
    weights = {name: p.detach().double().numpy() for name, p in inner.named_parameters()}  # no mask buffers
    params = perturb(torch_to_flax(weights, template))
    out = twin.apply({"params": params}, xj, yj).transpose(0, 3, 1, 2)  # (B, K, H, W)
    qj = jnp.asarray(q.numpy())
    log_pj = jp.bernoulli_log_likelihood(out[:, 0], qj) if k == 2 else jp.categorical_log_likelihood(out, qj)
    nll_j = float(-jnp.mean(log_pj))
    dims = q[0].numel() * math.log(2)
    tol = tolerance(LEVEL, "float64")
    return [Row("NLL", "nats/image", nll_t, nll_j, tol), Row("NLL", "bits/dim", nll_t / dims, nll_j / dims, tol)]


def _wavenet(net, cfg, batch, rng, perturb) -> list[Row]:
    """WaveNet's held-out NLL per sample of whole clips (each sample given its whole past and the digit)."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    import theory_jax.wavenet as jw
    from practice_torch.wavenet.training import encode
    from shared_specs.interop import torch_to_flax
    from theory_jax.language_model import cross_entropy

    q, y = encode(net, batch[0]), batch[1]
    net = net.double()
    with torch.no_grad():
        loss_t = F.cross_entropy(net(q[:, :-1], y), q[:, 1:]).item()
    m = cfg.model
    twin = jw.WaveNet(levels=m.levels, channels=m.channels, skip=m.skip, num_classes=net.num_classes, kernel=m.kernel,
                      dilations=tuple(net.dilations), clock=m.clock, sample_rate=m.sample_rate, amplitude=m.amplitude)
    qj, yj = jnp.asarray(q[:, :-1].numpy()), jnp.asarray(y.numpy())
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), qj, yj))["params"]
    weights = {name: p.detach().double().numpy() for name, p in net.named_parameters()}
    params = perturb(torch_to_flax(weights, template))
    loss_j = float(cross_entropy(twin.apply({"params": params}, qj, yj), jnp.asarray(q[:, 1:].numpy())))
    tol = tolerance(LEVEL, "float64")
    return [Row("NLL", "nats/sample", loss_t, loss_j, tol),
            Row("NLL", "bits/sample", loss_t / math.log(2), loss_j / math.log(2), tol)]


def _ddpm(net, cfg, batch, rng, perturb) -> list[Row]:
    """The DDPM bound -log p(x_0) <= L_T + sum L_{t-1} + L_0 (Ho et al. eq. 5) on images with the U-Net: L_T and L_0
    exactly, the middle sum as (T - 1) x the mean of 4 terms at t ~ U{1..T-1}, the same t and noise in both."""
    import jax
    import jax.numpy as jnp
    import torch

    import practice_torch.ddpm.functions as tf
    import theory_jax.ddpm as jd
    import theory_jax.diffusion as jdiff
    from practice_torch.diffusion import q_sample
    from shared_specs.interop import torch_to_flax
    from theory_jax.nets.unet import UNet

    if not net.images or type(net.denoiser).__name__ != "UNet":
        raise CheckError("ddpm is checked on images with the U-Net (the 2-D MLP denoiser has no JAX twin)")
    x0 = net.to_model(batch[0].double())
    y = batch[1] if net.num_classes else None
    b, dims, big_t, k = x0.shape[0], math.prod(net.shape), len(net.schedule), 4
    a = net.schedule.alpha_bars.double()
    var0 = (net.schedule.betas[1] * (1 - net.schedule.alpha_bars[0]) / (1 - net.schedule.alpha_bars[1])).item()
    ts = rng.integers(1, big_t, (k, b))
    eps0, eps = rng.standard_normal(tuple(x0.shape)), rng.standard_normal((k, *x0.shape))
    net = net.double()
    with torch.no_grad():
        x_1 = q_sample(x0, a[0].expand(b), torch.from_numpy(eps0))
        total = tf.prior_kl(x0, a[big_t - 1].expand(b)) + tf.decoder_nll(
            x0, x_1, net(x_1, torch.zeros(b, dtype=torch.long), y), a[0].expand(b), var0)
        for j in range(k):
            t = torch.from_numpy(ts[j])
            x_t = q_sample(x0, a[t], torch.from_numpy(eps[j]))
            total = total + (big_t - 1) / k * tf.vlb_term(x0, x_t, net(x_t, t, y), a[t], a[t - 1])
    bound_t = total.mean().item()

    twin = UNet(**dataclasses.asdict(net.denoiser.config))
    weights = {name: p.detach().double().numpy() for name, p in net.denoiser.named_parameters()}
    aj, x0j = jnp.asarray(a.numpy()), jnp.asarray(x0.numpy().transpose(0, 2, 3, 1))
    yj = None if y is None else jnp.asarray(y.numpy())
    zeros = jnp.zeros(b, dtype=jnp.int32)
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), x0j, zeros, yj))["params"]
    params = perturb(torch_to_flax(weights, template))

    def eps_of(x_t, t):  # the JAX U-Net takes channels-last images
        return twin.apply({"params": params}, x_t, t, yj)

    def nchw(v):
        return jnp.transpose(v, (0, 3, 1, 2))

    x_1j = jdiff.q_sample(x0j, jnp.broadcast_to(aj[0], (b,)), jnp.asarray(eps0.transpose(0, 2, 3, 1)))
    total_j = jd.prior_kl(nchw(x0j), jnp.broadcast_to(aj[big_t - 1], (b,))) + jd.decoder_nll(
        nchw(x0j), nchw(x_1j), nchw(eps_of(x_1j, zeros)), jnp.broadcast_to(aj[0], (b,)), var0)
    for j in range(k):
        t = jnp.asarray(ts[j])
        x_t = jdiff.q_sample(x0j, aj[t], jnp.asarray(eps[j].transpose(0, 2, 3, 1)))
        total_j = total_j + (big_t - 1) / k * jd.vlb_term(nchw(x0j), nchw(x_t), nchw(eps_of(x_t, t)), aj[t], aj[t - 1])
    bound_j = float(jnp.mean(total_j))
    tol, to_bits = tolerance(LEVEL, "float64"), 1 / (dims * math.log(2))
    return [Row("NLL bound (4 t)", "nats/image", bound_t, bound_j, tol),
            Row("NLL bound (4 t)", "bits/dim", bound_t * to_bits, bound_j * to_bits, tol)]


CHECKERS: dict[str, Callable] = {"vae": _vae, "language_model": _language_model, "pixelcnn": _pixelcnn,
                                 "wavenet": _wavenet, "ddpm": _ddpm}


# The command -----------------------------------------------------------------------------------------------------
def check_run(run_dir: Path, examples: int = 64, split: str = "test", seed: int = 0,
              perturb: Callable[[dict], dict] = lambda params: params) -> list[Row]:
    """The rows for one run; ``perturb`` alters the converted JAX parameters (for negative controls).
    CheckError on bad input."""
    import jax

    from practice_torch.engine.checkpoint import CheckpointError
    from practice_torch.engine.config import ConfigError
    from practice_torch.engine.runs import load_split, load_trained, run_model_name
    from practice_torch.models import get_model

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    if not (run_dir / "config.json").is_file():
        raise CheckError(f"{run_dir} is not a run directory (no config.json); give the folder `train --out` wrote")
    if split not in ("train", "val", "test"):
        raise CheckError(f"unknown split {split!r}; choose train, val or test")
    if examples < 1:
        raise CheckError(f"--examples must be at least 1, got {examples}")
    try:
        name = run_model_name(run_dir)
        if name not in CHECKERS:
            raise CheckError(f"{name} has no JAX twin network to check against; supported: {', '.join(CHECKERS)}")
        module, cfg, net = load_trained(run_dir, get_model(name), device=__import__("torch").device("cpu"))
        data = load_split(cfg.data, split)  # whole (a text set's limit counts characters), the first N used
    except CheckError:
        raise
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckError(f"cannot load {run_dir}: {str(exc).splitlines()[0]}") from None
    import torch

    n = min(examples, len(data))
    if n == 0:
        raise CheckError(f"the {split} split of {cfg.data.name} is empty here")
    batch = tuple(torch.stack(column) for column in zip(*(data[i] for i in range(n)), strict=True))
    return CHECKERS[name](net, cfg, batch, np.random.default_rng(seed), perturb)


def format_rows(rows: list[Row]) -> str:
    lines = [f"{'metric':<22} {'units':<13} {'PyTorch':>16} {'JAX':>16} {'|difference|':>12} {'tolerance':>20}  result"]
    for r in rows:
        tol = f"rtol {r.tol.rtol:.0e} atol {r.tol.atol:.0e}"
        lines.append(f"{r.metric:<22} {r.units:<13} {r.torch_value:>16.10f} {r.jax_value:>16.10f} {r.difference:>12.2e} "
                     f"{tol:>20}  {'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m theory_jax check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--examples", type=int, default=64, help="held-out examples to recompute on (default 64)")
    parser.add_argument("--split", default="test", help="train | val | test (default test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise both backends share")
    args = parser.parse_args(argv)
    try:
        rows = check_run(args.run_dir, args.examples, args.split, args.seed)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: {len(rows)} metrics on {args.examples} {args.split} examples, float64 in both backends")
    print(format_rows(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} of {len(rows)} agree within the float64 likelihood tolerance")
    return 1 if failed else 0
