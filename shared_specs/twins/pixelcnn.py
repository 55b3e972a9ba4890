"""PixelCNN's JAX twin check: the exact held-out NLL of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained pixelcnn run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

