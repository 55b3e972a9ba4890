"""The character transformer's JAX twin check: the held-out cross-entropy of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained language_model run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import dataclasses
import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, CheckError, Row


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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
