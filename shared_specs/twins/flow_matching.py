"""Flow matching's JAX twin check: the CFM loss and the ODE NLL by fixed RK4 steps of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained flow_matching run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row
from shared_specs.twins.nets import flax_twin, nchw, nhwc

ODE_STEPS = 8  # fixed RK4 (3/8 rule) steps of flow matching's ODE likelihood in both backends


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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

    twin, to_twin, _ = flax_twin(net.net)
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
        return nchw(twin.apply({"params": params}, nhwc(z), time, labels, cond))

    x_t, u = jfm.path_sample_and_target(x1, x0, t, sigma_min)
    log_p = log_likelihood(lambda s, z: field(s, z.reshape(shape)).reshape(b, -1), x1.reshape(b, -1), method="rk4",
                           steps=ODE_STEPS, trace="hutchinson", probe=probe.reshape(b, -1))
    return jfm.cfm_loss(field(t, x_t), u), -jnp.mean(log_p)

