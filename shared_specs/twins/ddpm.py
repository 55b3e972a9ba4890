"""DDPM's JAX twin check: the variational bound with four shared timesteps per example of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained ddpm run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row
from shared_specs.twins.nets import flax_twin


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

    twin, to_twin, from_twin = flax_twin(net.denoiser)
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
