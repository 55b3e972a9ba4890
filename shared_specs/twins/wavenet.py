"""WaveNet's JAX twin check: the NLL per sample of whole held-out clips of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained wavenet run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

