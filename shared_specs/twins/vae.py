"""The VAE's JAX twin check: the single-sample ELBO and the K = 32 importance-sampled NLL of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained vae run: the
run's held-out metric recomputed from the same inputs and noise by the PyTorch network and by its flax twin, both in
float64 (``perturb`` alters the converted JAX parameters, for the negative controls).
"""

from __future__ import annotations

import math

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row

TC = "tc_discriminator."  # FactorVAE's discriminator's weights: a second network, checked on its own


def check(net, cfg, batch, rng, perturb) -> list[Row]:
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
    if getattr(m, "levels", 1) == 2:
        twin = jv.HierarchicalVAE(image_shape=net.image_shape, latent_dim=m.latent_dim, top_dim=m.top_dim,
                                  likelihood=m.likelihood, channels=tuple(m.channels), hidden=m.hidden[0])
    else:
        twin = jv.VAE(image_shape=net.image_shape, latent_dim=d, architecture=m.architecture,
                      likelihood=m.likelihood, hidden=tuple(m.hidden), channels=tuple(m.channels),
                      num_classes=net.num_classes)
    xj = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    yj = None if y is None else jnp.asarray(y.numpy())
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), xj, jnp.asarray(eps), yj))["params"]
    weights = {k_: v.double().numpy() for k_, v in net.state_dict().items()}
    vae_weights = {k_: v for k_, v in weights.items() if not k_.startswith(TC)}
    params = perturb(torch_to_flax(vae_weights, template))
    elbo_j = float(jnp.mean(twin.apply({"params": params}, xj, jnp.asarray(eps), yj, method=type(twin).elbo)))
    nll_j = float(jnp.mean(twin.apply({"params": params}, xj, jnp.asarray(eps_k), yj, method=type(twin).importance_nll)))
    dims = math.prod(net.image_shape) * math.log(2)
    tol = tolerance(LEVEL, "float64")
    rows = [Row("ELBO (one sample)", "nats/example", elbo_t, elbo_j, tol),
            Row("-ELBO", "bits/dim", -elbo_t / dims, -elbo_j / dims, tol),
            Row(f"NLL (K = {k})", "nats/example", nll_t, nll_j, tol),
            Row(f"NLL (K = {k})", "bits/dim", nll_t / dims, nll_j / dims, tol)]
    if not hasattr(net, "tc_discriminator"):
        return rows
    # FactorVAE's second player: its TC estimate, the mean logit over codes z ~ q(z|x) of the batch
    with torch.no_grad():
        mean, logvar = net.encode(x, y)
        z = (mean + torch.exp(0.5 * logvar) * torch.from_numpy(eps)).numpy()
        tc_t = net.tc_discriminator(torch.from_numpy(z)).mean().item()
    critic = jv.TCDiscriminator(latent_dim=d, hidden=tuple(m.tc_hidden))
    template = jax.eval_shape(lambda: critic.init(jax.random.key(0), jnp.asarray(z)))["params"]
    tc_params = perturb(torch_to_flax({k_[len(TC):]: v for k_, v in weights.items() if k_.startswith(TC)}, template))
    tc_j = float(jnp.mean(critic.apply({"params": tc_params}, jnp.asarray(z))))
    return [*rows, Row("TC (D's mean logit)", "nats", tc_t, tc_j, tol)]
