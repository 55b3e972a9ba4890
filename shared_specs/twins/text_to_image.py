"""Text-to-image's JAX twin check: the held-out caption-conditioned latent loss of a trained run.

``check`` is what ``python -m theory_jax check`` (``shared_specs/twin_check.py``) runs on a trained text_to_image run:
the latent epsilon loss recomputed from the same images, captions and noise by the PyTorch networks and by their flax
twins (the VQ-VAE's encoder ``theory_jax.vq_vae.GridEncoder``, the text encoder
``theory_jax.text_to_image.TextEncoder``, the U-Net ``theory_jax.nets.UNet`` with its cross-attention), both in
float64 (``perturb`` alters the converted JAX parameters of the text encoder and the U-Net, for the negative
controls).
"""

from __future__ import annotations

from project.compare import tolerance
from shared_specs.twin_rows import LEVEL, Row
from shared_specs.twins.nets import nchw, nhwc

TIMESTEPS = 4  # shared timesteps per example


def _params(twin, module, *example):
    """The flax parameters of ``twin`` holding the float64 weights of the torch ``module``."""
    import jax

    from shared_specs.interop import torch_to_flax

    weights = {name: p.detach().double().numpy() for name, p in module.named_parameters()}
    template = jax.eval_shape(lambda: twin.init(jax.random.key(0), *example))["params"]
    return torch_to_flax(weights, template)


def check(net, cfg, batch, rng, perturb) -> list[Row]:
    """mean ||eps - eps_theta(u_t, t, c)||^2 over the latent elements, at 4 timesteps t ~ U{0..T-1} per example, each
    example's caption in one wording drawn from ``rng`` (never dropped), u_t = sqrt(abar_t) s z_e(x) +
    sqrt(1 - abar_t) eps (Rombach et al. eq. 2): the training loss, held out."""
    import dataclasses

    import jax.numpy as jnp
    import numpy as np
    import torch

    import theory_jax.diffusion as jdiff
    from practice_torch.data import captions
    from practice_torch.diffusion import q_sample
    from theory_jax.nets import UNet
    from theory_jax.text_to_image import TextEncoder
    from theory_jax.vq_vae import GridEncoder

    x = batch[0].double()
    b, k = len(x), TIMESTEPS
    texts = captions.batch_captions(batch, torch.from_numpy(rng.uniform(size=b)), torch.zeros(b, dtype=torch.bool),
                                    net.brightness_edges)
    ids, mask = captions.tokenize(texts, cfg.model.max_len)
    ts = rng.integers(0, len(net.schedule), (k, b))
    eps = rng.standard_normal((k, b, *net.shape))
    a = net.schedule.alpha_bars.double()
    net = net.double()
    with torch.no_grad():
        u0 = net.encode(x)
        loss_t = np.mean([((torch.from_numpy(eps[j]) - net.eps(
            q_sample(u0, a[ts[j]], torch.from_numpy(eps[j])), torch.from_numpy(ts[j]), ids, mask)) ** 2).mean().item()
            for j in range(k)])

    vq, text, unet = net.autoencoder, net.text_encoder, net.denoiser
    encoder = GridEncoder(vq.image_shape, vq.code_dim, tuple(vq.encoder.convs[i].out_channels
                                                             for i in range(len(vq.encoder.convs))),
                          vq.encoder.norms[0].num_groups)
    t_cfg = text.trunk.config
    text_twin = TextEncoder(text.embedding.num_embeddings, t_cfg.dim, t_cfg.heads, t_cfg.layers, t_cfg.max_len)
    unet_twin = UNet(**dataclasses.asdict(unet.config))
    xj, idsj, maskj = nhwc(jnp.asarray(x.numpy())), jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy())
    enc_params = _params(encoder, vq.encoder, xj)
    text_params = perturb(_params(text_twin, text, idsj))
    u0j = encoder.apply({"params": enc_params}, xj) * net.scale.item()
    states = text_twin.apply({"params": text_params}, idsj)
    pooled = states[jnp.arange(b), maskj.sum(1) - 1]
    zeros = jnp.zeros(b, dtype=jnp.int32)
    unet_params = perturb(_params(unet_twin, unet, u0j, zeros, None, pooled, False, states, maskj))
    aj, losses = jnp.asarray(a.numpy()), []
    for j in range(k):
        t, e = jnp.asarray(ts[j]), nhwc(jnp.asarray(eps[j]))
        u_t = jdiff.q_sample(u0j, aj[t], e)
        pred = unet_twin.apply({"params": unet_params}, u_t, t, None, pooled, False, states, maskj)
        losses.append(float(jnp.mean((nchw(e) - nchw(pred)) ** 2)))
    return [Row(f"latent eps loss ({k} t)", "per element", float(loss_t), float(np.mean(losses)),
                tolerance(LEVEL, "float64"))]
