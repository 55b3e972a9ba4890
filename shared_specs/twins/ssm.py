"""The SSM stack's JAX twin check: the held-out cross-entropy of a trained run, the twin in its parallel mode.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained ssm run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

