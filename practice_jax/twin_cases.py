"""The twin-training cases: whole short runs of each model the JAX trainer trains, the PyTorch engine's step against
``python -m practice_jax train``'s, from the same weights, batches and noise, compared after every step's loss and at
the end (``practice_jax/twin_training.py``; ``python -m practice_jax check``). Each is small, with every part of the
step at work: a clip that bites, decay, warmup and the EMA. They sit here, not among the spec cases of
``shared_specs``, because they run both trainers, and nothing below ``practice_jax`` imports it.
"""

from __future__ import annotations

from practice_jax.twin_training import RunCase

# the settings every case's run shares (per model): small, and a clip that bites, decay, warmup, EMA
VAE_RUN = ("model.latent_dim=2", "train.batch_size=16", "train.lr=0.01", "train.warmup_steps=10", "train.grad_clip=20",
           "train.weight_decay=0.01", "train.ema_decay=0.9")
GAN_RUN = ("train.batch_size=16", "train.lr=0.005", "train.warmup_steps=10", "train.grad_clip=1",
           "train.weight_decay=0.01", "train.ema_decay=0.9", "model.latent_dim=4")
FLOW_RUN = ("train.batch_size=16", "train.lr=0.005", "train.warmup_steps=10", "train.grad_clip=1",
            "train.weight_decay=0.01", "train.ema_decay=0.9")
CNF_RUN = ("train.batch_size=16", "train.lr=0.01", "train.warmup_steps=10", "train.grad_clip=1",
           "train.weight_decay=0.01", "train.ema_decay=0.9")

CASES: dict[str, tuple[RunCase, ...]] = {
    "vae": (
        # 50 steps of the MLP, the conv VAE (Gaussian likelihood, conditional, beta and the total correlation's
        # weight) and the two-level VAE
        RunCase("vae/run/mlp", "vae", (*VAE_RUN, "model.architecture=mlp", "model.hidden=16"), dataset="digits"),
        RunCase("vae/run/conv-gaussian-conditional", "vae",
                (*VAE_RUN, "model.channels=8,8", "model.likelihood=gaussian", "model.conditional=true",
                 "model.beta=2", "model.tc_beta=3", "model.dataset_size=1000"),
                dataset="digits"),
        RunCase("vae/run/hierarchical", "vae", (*VAE_RUN, "model.levels=2", "model.top_dim=2", "model.channels=4,8",
                                                "model.hidden=8"), dataset="digits"),
    ),
    "gan": (
        # the unrolled discriminator (Metz et al.): the generator's loss two look-ahead steps on, the class vectors
        # moving; 25 rounds, as each costs three discriminator gradients, two of them differentiated again
        RunCase("gan/run/mlp-conditional-unrolled", "gan", (*GAN_RUN, "model.architecture=mlp", "model.hidden=16,16",
                                                            "model.conditional=true", "model.r1=0",
                                                            "model.unrolled_steps=2", "model.unroll_lr=0.05"),
                dataset="digits", steps=25),
        # simultaneous gradient steps (model.discriminator_steps=0): both players' gradients on one batch, then both
        # steps; PacGAN's players (the generator's batch statistics and running ones moving, the maxout discriminator)
        # with the discriminator packed (pairs of images along their channels, channels last in flax, first in torch)
        RunCase("gan/run/pacgan-simultaneous-packed", "gan",
                (*GAN_RUN, "model.architecture=pacgan", "model.hidden=16,16", "model.discriminator_hidden=8,8",
                 "model.pieces=3", "model.r1=0", "model.discriminator_steps=0", "model.pack=2"),
                dataset="digits"),
        # the class-conditional DCGAN (the projection on the conv features), every layer of its discriminator
        # spectrally normalised, the vectors stepped by each logit (Miyato et al.), and R1's gradient also through
        # the minibatch standard deviation (Karras et al.), the batch's one shared feature
        RunCase("gan/run/dcgan-conditional-r1-sn-mbstd", "gan",
                (*GAN_RUN, "model.channels=4,8", "model.fc=16", "model.conditional=true", "model.r1=1",
                 "model.discriminator_steps=2", "model.generator_loss=saturating", "model.spectral_norm=true",
                 "model.minibatch_std=true"), dataset="digits"),
    ),
    "ddpm": (
        # the null label where drop says. The MLP denoiser: the U-Net's twin has its module cases, and XLA's float64
        # conv gradients would cost 40 s here
        RunCase("ddpm/run/mlp-conditional", "ddpm",
                ("model.hidden=32", "model.depth=2", "model.T=50", "model.sample_steps=10", "model.conditional=true",
                 "model.label_dropout=0.3", "train.batch_size=16", "train.lr=0.005", "train.warmup_steps=10",
                 "train.grad_clip=1", "train.weight_decay=0.01", "train.ema_decay=0.9"),
                dataset="gaussians"),
    ),
    "cnf": (
        # FFJORD's concat-squash field trained through 4 steps of the 3/8 rule with Hutchinson's trace on the engine's
        # probes, and the concatenated-time field through midpoint steps with the exact trace
        RunCase("cnf/run/concatsquash-rk4", "cnf", (*CNF_RUN, "model.hidden=16,16", "model.method=rk4",
                                                    "model.steps=4"), dataset="moons", steps=20),
        RunCase("cnf/run/concat-midpoint-exact", "cnf", (*CNF_RUN, "model.hidden=16", "model.time_input=concat",
                                                         "model.activation=softplus", "model.method=midpoint",
                                                         "model.steps=3", "model.trace=exact"),
                dataset="moons", steps=20),
    ),
    "flow_matching": (
        # the MLP field on moons with a path of width sigma_min, and the class-conditional U-Net on 8 x 8 digits with
        # label dropout (4 steps)
        RunCase("flow_matching/run/mlp-moons", "flow_matching", (*FLOW_RUN, "model.hidden=32", "model.depth=2",
                                                                "model.sigma_min=0.1"), dataset="moons", steps=30),
        RunCase("flow_matching/run/unet-conditional", "flow_matching",
                (*FLOW_RUN, "model.architecture=unet", "model.conditional=true", "model.label_dropout=0.3",
                 "model.channels=8", "model.channel_mults=1,2", "model.num_res_blocks=1", "model.attention_levels=",
                 ), dataset="digits", steps=4),
    ),
    "language_model": (
        # random crops of the windows; the head tied to the embedding, rotary positions
        RunCase("language_model/run/tied-rope", "language_model",
                ("model.dim=16", "model.layers=1", "model.heads=2", "model.context=16", "model.position=rope",
                 "train.batch_size=4", "train.val_batch=0", "train.lr=0.01", "train.warmup_steps=10",
                 "train.grad_clip=0.5", "train.weight_decay=0.01", "train.ema_decay=0.9")),
    ),
}


def cases_of(topic: str) -> tuple[RunCase, ...]:
    """The twin-training cases of ``topic`` (none for a topic the JAX trainer does not train)."""
    return CASES.get(topic, ())


ALL: tuple[RunCase, ...] = tuple(c for cases in CASES.values() for c in cases)
