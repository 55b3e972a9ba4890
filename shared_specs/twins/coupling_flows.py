"""The coupling flows' JAX twin check: the dequantised NLL and its importance-weighted bound of a trained image run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained coupling_flows run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, CheckError, Row
from shared_specs.twins.nets import nchw, nhwc


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
    h = twin.apply({"params": params["net"]}, nhwc(x), nhwc(mask))
    return jc.coupling_transform(x, mask, nchw(h), kind)


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


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

