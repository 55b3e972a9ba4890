"""A trained run checked in the other backend: ``python -m theory_jax check RUN_DIR [--examples N] [--split test]``.

Reads the run's config and its newest checkpoint (EMA weights where the run keeps them), builds the JAX twin of the
network through the weight converter (``shared_specs.interop.torch_to_flax``), and recomputes the run's held-out
metric on N examples in both backends from the same inputs and the same noise, both in float64 (the trained float32
weights cast exactly): a difference is then a difference of the math, held to the project's float64 likelihood
tolerance. Prints metric, PyTorch value, JAX value, difference, tolerance and PASS/FAIL; exit 0 when all pass, 1 on a
failure, 2 on bad input (no run, a model without a twin, a checkpoint that does not match its config, an unknown
split), with a one-line error.

Supported models are those in ``CHECKERS`` (an unsupported one is refused with the list): ``vae`` (the single-sample
ELBO and the importance-sampled NLL, nats and bits/dim), ``language_model`` with the transformer (held-out
cross-entropy, nats and bits/char), ``pixelcnn`` (the exact NLL, nats per image and bits/dim), ``wavenet`` (NLL per
sample of whole clips, nats and bits), ``ddpm`` (the variational bound with 4 shared timesteps per
example), ``coupling_flows`` on images (the exact NLL of the dequantised images over ``eval_draws`` shared draws of
the uniform noise, nats and bits/dim, and the importance-weighted bound), ``ssm`` (the held-out cross-entropy in nats
and bits per character or per sample, the twin in its parallel mode: Mamba's associative scan, S4D's FFT
convolution) and ``flow_matching`` (the CFM loss, and the ODE NLL by 8 fixed RK4 steps, ``ODE_STEPS``, with one
shared Rademacher probe per example); ddpm and flow_matching with the U-Net on images or the MLP
(``theory_jax.nets.MLPDenoiser``) on 2-D data. The 2-D network of ``coupling_flows`` has no JAX twin: a one-line
error, exit 2.
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
    from practice_torch.wavenet.clips import encode
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


def _ssm(net, cfg, batch, rng, perturb) -> list[Row]:
    """The SSM's held-out cross-entropy: characters of context-long pieces of the windows (text), or every sample of
    whole clips after the first given the digit (audio), each in the twin's parallel mode."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    import theory_jax.ssm as jssm
    from shared_specs.interop import torch_to_flax
    from theory_jax.language_model import cross_entropy

    if net.modality == "audio":
        from practice_torch.wavenet.clips import encode

        q, labels = encode(net, batch[0]), batch[1]
        x, y, units = q[:, :-1], q[:, 1:], "sample"
    else:
        x, y, labels, units = batch[0][:, :net.context], batch[1][:, :net.context], None, "char"
    net = net.double()
    with torch.no_grad():
        loss_t = F.cross_entropy(net(x, labels).reshape(-1, net.vocab_size), y.reshape(-1)).item()
    m = cfg.model
    twin = jssm.SSMStack(net.vocab_size, m.channels, m.layers, m.kind, m.state, m.imag_init, m.expand, m.conv_width,
                         m.rank or None, net.context, net.num_classes)
    xj, lj = jnp.asarray(x.numpy()), None if labels is None else jnp.asarray(labels.numpy())
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), xj, lj))["params"]
    params = perturb(torch_to_flax({k: v.double().numpy() for k, v in net.state_dict().items()}, template))
    loss_j = float(cross_entropy(twin.apply({"params": params}, xj, lj), jnp.asarray(y.numpy())))
    tol = tolerance(LEVEL, "float64")
    return [Row("cross-entropy", f"nats/{units}", loss_t, loss_j, tol),
            Row("cross-entropy", f"bits/{units}", loss_t / math.log(2), loss_j / math.log(2), tol)]


def _ddpm(net, cfg, batch, rng, perturb) -> list[Row]:
    """The DDPM bound -log p(x_0) <= L_T + sum L_{t-1} + L_0 (Ho et al. eq. 5), with the U-Net on images or the MLP
    denoiser on vectors: L_T and L_0 exactly, the middle sum as (T - 1) x the mean of 4 terms at t ~ U{1..T-1}, the
    same t and noise in both."""
    import jax
    import jax.numpy as jnp
    import torch

    import practice_torch.ddpm.functions as tf
    import theory_jax.ddpm as jd
    import theory_jax.diffusion as jdiff
    from practice_torch.diffusion import q_sample
    from shared_specs.interop import torch_to_flax

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

    twin, to_twin, from_twin = _twin_of(net.denoiser)
    weights = {name: p.detach().double().numpy() for name, p in net.denoiser.named_parameters()}
    aj, x0j = jnp.asarray(a.numpy()), to_twin(jnp.asarray(x0.numpy()))
    yj = None if y is None else jnp.asarray(y.numpy())
    zeros = jnp.zeros(b, dtype=jnp.int32)
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), x0j, zeros, yj))["params"]
    params = perturb(torch_to_flax(weights, template))

    def eps_of(x_t, t):  # the JAX U-Net takes channels-last images
        return twin.apply({"params": params}, x_t, t, yj)

    nchw = from_twin
    x_1j = jdiff.q_sample(x0j, jnp.broadcast_to(aj[0], (b,)), to_twin(jnp.asarray(eps0)))
    total_j = jd.prior_kl(nchw(x0j), jnp.broadcast_to(aj[big_t - 1], (b,))) + jd.decoder_nll(
        nchw(x0j), nchw(x_1j), nchw(eps_of(x_1j, zeros)), jnp.broadcast_to(aj[0], (b,)), var0)
    for j in range(k):
        t = jnp.asarray(ts[j])
        x_t = jdiff.q_sample(x0j, aj[t], to_twin(jnp.asarray(eps[j])))
        total_j = total_j + (big_t - 1) / k * jd.vlb_term(nchw(x0j), nchw(x_t), nchw(eps_of(x_t, t)), aj[t], aj[t - 1])
    bound_j = float(jnp.mean(total_j))
    tol, to_bits = tolerance(LEVEL, "float64"), 1 / (dims * math.log(2))
    unit = "nats/image" if net.images else "nats/example"
    return [Row("NLL bound (4 t)", unit, bound_t, bound_j, tol),
            Row("NLL bound (4 t)", "bits/dim", bound_t * to_bits, bound_j * to_bits, tol)]


def _twin_of(network):
    """(the flax twin of a torch denoiser or field, torch layout -> the twin's, the twin's -> torch's): the U-Net
    takes channels-last images, the MLP denoiser vectors as they are."""
    from theory_jax.nets import MLPDenoiser, UNet

    if type(network).__name__ == "UNet":
        return UNet(**dataclasses.asdict(network.config)), _nhwc, _nchw
    if type(network).__name__ == "MLPDenoiser":
        twin = MLPDenoiser(dim=network.dim, hidden=network.hidden, depth=len(network.blocks),
                           num_classes=network.num_classes)
        return twin, (lambda x: x), (lambda x: x)
    raise CheckError(f"no JAX twin of the {type(network).__name__} network")


def _flow_layer(layer) -> tuple[tuple, dict | None, dict | None]:
    """One layer of ``practice_torch.coupling_flows.layers.MultiScaleFlow`` described for its JAX twin: (a hashable
    description, ("actnorm",), ("invconv",), ("squeeze",) or ("coupling", mask, parity, kind, flax ConvNet); its fixed
    buffers (a 1x1 convolution's permutation and sign) or None; the flax-shaped template of its parameters or None).
    A mask is named by the shape and first entry of the torch mask, (1, 1, H, W) checkerboard or (1, C, 1, 1)
    channel, and recomputed in JAX."""
    import jax
    import jax.numpy as jnp

    import theory_jax.coupling_flows as jc

    kind = type(layer).__name__
    if kind == "ActNorm":
        return ("actnorm",), None, {"log_scale": tuple(layer.log_scale.shape), "bias": tuple(layer.bias.shape)}
    if kind == "InvConv1x1":
        return (("invconv",), {name: getattr(layer, name).double().numpy() for name in ("permutation", "sign")},
                {name: tuple(getattr(layer, name).shape) for name in ("lower", "upper", "log_diag")})
    if kind == "Squeeze":
        return ("squeeze",), None, None
    if kind != "Coupling" or type(layer.net).__name__ != "ConvNet":
        raise CheckError(f"coupling_flows layer {kind} has no JAX twin (images with the ConvNet conditioner have one)")
    net = layer.net
    twin = jc.ConvNet(net.first.in_channels - 1, net.last.out_channels, net.first.out_channels, len(net.blocks))
    mask = "checkerboard" if layer.mask.shape[1] == 1 else "channel"
    like = jnp.zeros((1, 2, 2, twin.channels))
    return (("coupling", mask, 0 if layer.mask.reshape(-1)[0] > 0 else 1, layer.kind, twin), None,
            {"net": jax.eval_shape(lambda: twin.init(jax.random.key(0), like, like))["params"]})


def _flow_layers(body) -> tuple[tuple, dict, dict]:
    """The whole flow described by ``_flow_layer``: (the descriptions stage by stage, the buffers, the template), the
    last two keyed "stages_s_i" as the converter names torch's ``stages.s.i``."""
    described = [[_flow_layer(layer) for layer in stage] for stage in body.stages]
    stages = tuple(tuple(d for d, _, _ in stage) for stage in described)
    keyed = {f"stages_{s}_{i}": (b, t) for s, stage in enumerate(described) for i, (_, b, t) in enumerate(stage)}
    return (stages, {k: b for k, (b, _) in keyed.items() if b is not None},
            {k: t for k, (_, t) in keyed.items() if t is not None})


def _flow_layer_forward(layer: tuple, params, buffers, x):
    """One layer described by ``_flow_layers``, by the functions of ``theory_jax.coupling_flows``.
    x: (B, C, H, W) -> (y, log |det dy/dx| (B,))."""
    import jax.numpy as jnp

    import theory_jax.coupling_flows as jc

    if layer[0] == "actnorm":
        return jc.actnorm_forward(x, params["log_scale"], params["bias"])
    if layer[0] == "invconv":  # W = P (L + I)(U + diag(sign exp(log_diag)))
        weight = jc.invconv_lu_weight(buffers["permutation"], params["lower"], params["upper"], params["log_diag"],
                                      buffers["sign"])[0]
        return jc.invconv_forward(x, weight)
    if layer[0] == "squeeze":
        return jc.squeeze(x), jnp.zeros(x.shape[0], x.dtype)
    _, mask_name, parity, kind, twin = layer
    mask = (jc.checkerboard_mask if mask_name == "checkerboard" else jc.channel_mask)(x, parity)
    h = twin.apply({"params": params["net"]}, _nhwc(x), _nhwc(mask))
    return jc.coupling_transform(x, mask, _nchw(h), kind)


def _flow_log_prob(stages, latent_shapes, alpha: float, params, buffers, y):
    """log p(y) of ``Flow`` on [0, 1]^D by eq. 12 in JAX: the logit transform, each stage's layers, then the first
    ``latent_shapes[s][0]`` channels factored out after every stage but the last. y: (B, C, H, W) -> (B,)."""
    import jax.numpy as jnp

    import theory_jax.coupling_flows as jc

    x, total = jc.logit_transform(y, alpha)
    base = jnp.zeros(y.shape[0], y.dtype)
    for s, (stage, shape) in enumerate(zip(stages, latent_shapes, strict=True)):
        for i, layer in enumerate(stage):
            key = f"stages_{s}_{i}"
            x, log_det = _flow_layer_forward(layer, params.get(key), buffers.get(key), x)
            total = total + log_det
        if x.shape[1] > shape[0]:
            base, x = base + jc.standard_normal_log_prob(x[:, :shape[0]]), x[:, shape[0]:]
    return base + jc.standard_normal_log_prob(x) + total


def _flow_bits(stages, latent_shapes, alpha: float, levels: int, params, buffers, x, u):
    """The JAX side of ``_coupling_flows`` (jitted with the first four static, so checks of the same shapes compile
    once): (bits/dim averaged over draws and images, the importance-weighted bound's bits/dim). x: (B, C, H, W) in
    [0, 1], u: (K, B, C, H, W) dequantisation draws, all K draws in one batch of K B images."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    import theory_jax.coupling_flows as jc
    from theory_jax.evaluation import dequantize

    k, dims = u.shape[0], math.prod(x.shape[1:])
    y = dequantize(jnp.round(x * (levels - 1))[None], u, levels).reshape(-1, *x.shape[1:])
    logs = _flow_log_prob(stages, latent_shapes, alpha, params, buffers, y).reshape(k, -1)  # (K, B)
    iw = logsumexp(logs, axis=0) - math.log(k)
    return (jnp.mean(jc.bits_per_dim_from_log_prob(logs, dims, levels)),
            jnp.mean(jc.bits_per_dim_from_log_prob(iw, dims, levels)))


def _coupling_flows(net, cfg, batch, rng, perturb) -> list[Row]:
    """The multi-scale flow's dequantised test NLL on images (Flow.log_prob, eq. 12 after the logit transform):
    bits/dim averaged over ``eval_draws`` draws of u ~ U[0, 1)^D per image (eq. 13-15), and the importance-weighted
    bound -log mean_u p over the same draws, as ``eval`` reports them; the same u in both backends."""
    import jax
    import jax.numpy as jnp
    import torch

    import practice_torch.coupling_flows as tc
    from shared_specs.interop import torch_to_flax

    if not net.images:
        raise CheckError("coupling_flows is checked on images (the MLP conditioner of vector data has no JAX twin "
                         "network)")
    x, k, levels, dims = batch[0].double(), cfg.model.eval_draws, net.levels, math.prod(net.shape)
    u = rng.uniform(size=(k, *x.shape))
    net = net.double()
    with torch.no_grad():
        logs_t = torch.stack([net.log_prob(net.dequantize(x, torch.from_numpy(u_k))) for u_k in u])  # (K, B)
    bits_t = tc.bits_per_dim_from_log_prob(logs_t, dims, levels).mean().item()
    iw_t = tc.bits_per_dim_from_log_prob(torch.logsumexp(logs_t, 0) - math.log(k), dims, levels).mean().item()

    stages, buffers, template = _flow_layers(net.body)
    weights = {name: p.detach().double().numpy() for name, p in net.body.named_parameters()}  # no buffers
    params = perturb(torch_to_flax(weights, template))
    bits = jax.jit(_flow_bits, static_argnums=(0, 1, 2, 3))
    bits_j, iw_j = (float(v) for v in bits(stages, tuple(map(tuple, net.body.latent_shapes)), net.alpha, levels,
                                           params, buffers, jnp.asarray(x.numpy()), jnp.asarray(u)))
    tol, to_nats = tolerance(LEVEL, "float64"), dims * math.log(2)
    return [Row(f"NLL ({k} draws of u)", "nats/image", bits_t * to_nats, bits_j * to_nats, tol),
            Row(f"NLL ({k} draws of u)", "bits/dim", bits_t, bits_j, tol),
            Row(f"IW bound ({k} draws)", "bits/dim", iw_t, iw_j, tol)]


ODE_STEPS = 8  # fixed RK4 (3/8 rule) steps of flow matching's ODE likelihood in both backends


def _flow_matching(net, cfg, batch, rng, perturb) -> list[Row]:
    """Flow matching on images with the U-Net field: the held-out CFM loss (eval's, one t and x0 per example, no
    label dropout) and the ODE NLL -log p_1(x) = -log N(x_0) + int_0^1 tr(dv/dx) dt in model space (2x - 1), by
    ODE_STEPS RK4 steps from t = 1 down to 0 with one Rademacher probe per example for Hutchinson's trace; the same
    t, x0 and probe in both backends (``practice_torch.cnf.log_likelihood`` and ``theory_jax.cnf.log_likelihood``)."""
    import jax
    import jax.numpy as jnp
    import torch

    from practice_torch.cnf import log_likelihood
    from practice_torch.flow_matching.functions import cfm_loss, path_sample_and_target
    from practice_torch.flow_matching.model import condition
    from shared_specs.interop import torch_to_flax

    x1, c = net.to_model(batch[0].double()), condition(net, batch[1])  # c: labels, a float vector or None
    c = c.double() if c is not None and c.is_floating_point() else c
    b, shape = x1.shape[0], tuple(x1.shape)
    t, x0, probe = rng.uniform(size=b), rng.standard_normal(shape), rng.choice((-1.0, 1.0), size=shape)
    net = net.double()
    with torch.no_grad():
        x_t, u = path_sample_and_target(x1, torch.from_numpy(x0), torch.from_numpy(t), cfg.model.sigma_min)
        cfm_t = cfm_loss(net(x_t, torch.from_numpy(t), c), u).item()
        nll_t = -log_likelihood(lambda s, z: net(z, s, c), x1, method="rk4", steps=ODE_STEPS, trace="hutchinson",
                                probe=torch.from_numpy(probe)).mean().item()

    twin, to_twin, _ = _twin_of(net.net)
    labels = jnp.asarray(c.numpy()) if net.num_classes else None
    cond = jnp.asarray(c.numpy()) if net.cond_dim else None
    x1j = jnp.asarray(x1.numpy())
    extra = (labels, cond) if net.cond_dim else (labels,)  # the MLP field takes labels only
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), to_twin(x1j), jnp.zeros(b), *extra))["params"]
    weights = {name: p.detach().double().numpy() for name, p in net.net.named_parameters()}
    params = perturb(torch_to_flax(weights, template))

    metrics = jax.jit(_flow_matching_metrics, static_argnames=("twin", "sigma_min"))
    cfm_j, nll_j = (float(v) for v in metrics(params, twin, x1j, jnp.asarray(t), jnp.asarray(x0), jnp.asarray(probe),
                                               labels, cond, cfg.model.sigma_min))
    tol = tolerance(LEVEL, "float64")
    return [Row("CFM loss", "per dim", cfm_t, cfm_j, tol),
            Row(f"ODE NLL (rk4 x{ODE_STEPS})", "nats/image" if x1.dim() == 4 else "nats/example", nll_t, nll_j, tol)]


def _flow_matching_metrics(params, twin, x1, t, x0, probe, labels, cond, sigma_min: float):
    """The JAX side of ``_flow_matching``, one pure function (jitted with ``twin`` and ``sigma_min`` static, so checks
    of the same shapes compile once): (CFM loss, mean ODE NLL). x1, x0, probe: (B, C, H, W) images or (B, D)
    vectors; t: (B,); labels: (B,) or None; cond: (B, P) or None."""
    import jax.numpy as jnp

    import theory_jax.flow_matching as jfm
    from practice_torch.flow_matching.model import TIME_SCALE
    from theory_jax.cnf import log_likelihood

    b, shape = x1.shape[0], x1.shape

    images = x1.ndim == 4

    def field(s, z):  # v_theta(t, z) as FlowModel: the twin sees 1000 t (the U-Net channels-last images)
        time = jnp.broadcast_to(s * TIME_SCALE, (b,))
        if not images:  # the MLP field of vectors: labels only, never a float condition
            return twin.apply({"params": params}, z, time, labels)
        return _nchw(twin.apply({"params": params}, _nhwc(z), time, labels, cond))

    x_t, u = jfm.path_sample_and_target(x1, x0, t, sigma_min)
    log_p = log_likelihood(lambda s, z: field(s, z.reshape(shape)).reshape(b, -1), x1.reshape(b, -1), method="rk4",
                           steps=ODE_STEPS, trace="hutchinson", probe=probe.reshape(b, -1))
    return jfm.cfm_loss(field(t, x_t), u), -jnp.mean(log_p)


def _nhwc(x):
    """(B, C, H, W) -> (B, H, W, C), for the flax twins."""
    return x.transpose(0, 2, 3, 1)


def _nchw(x):
    """(B, H, W, C) -> (B, C, H, W)."""
    return x.transpose(0, 3, 1, 2)


CHECKERS: dict[str, Callable] = {"vae": _vae, "language_model": _language_model, "pixelcnn": _pixelcnn,
                                 "wavenet": _wavenet, "ddpm": _ddpm, "coupling_flows": _coupling_flows,
                                 "flow_matching": _flow_matching, "ssm": _ssm}


# The command -----------------------------------------------------------------------------------------------------
def check_run(run_dir: Path, examples: int = 64, split: str = "test", seed: int = 0,
              perturb: Callable[[dict], dict] = lambda params: params) -> list[Row]:
    """The rows for one run; ``perturb`` alters the converted JAX parameters (for negative controls).
    CheckError on bad input."""
    import jax

    from practice_torch.data import SPLITS
    from practice_torch.engine.checkpoint import CheckpointError
    from practice_torch.engine.config import ConfigError
    from practice_torch.engine.runs import load_split, load_trained, run_model_name
    from practice_torch.models import get_model

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    if not (run_dir / "config.json").is_file():
        raise CheckError(f"{run_dir} is not a run directory (no config.json); give the folder `train --out` wrote")
    if split not in SPLITS:
        raise CheckError(f"unknown split {split!r}; every data set has {', '.join(SPLITS)}")
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
