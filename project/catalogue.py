"""The catalogue: every topic of the syllabus (docs/TOPICS.md), in one place: the project's one registry.

Every listing, test and README table is generated from ``TOPICS`` (the tables by ``shared_specs.docs``); nothing
else types a topic name twice. A topic that trains names its model in ``trains``; ``practice_torch.models.MODELS`` (what
``python -m practice_torch train`` accepts) is derived from it, with the training adapter
``practice_torch.<topic>.training``. A topic whose trained runs the JAX twin can recompute names what it recomputes in
``checks``; ``shared_specs.twin_check.CHECKERS`` holds exactly those topics (each with
``shared_specs/twins/<topic>.py``). Presence of a topic's three forms is read off the file system, so the table says
what exists, not what was planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Topic:
    """One lecture topic; ``name`` is the file name in all three forms."""

    name: str
    group: str
    lectures: str
    modality: str
    trains: str = ""  # the model ``python -m practice_torch train <name>`` trains, in one line; "" for none
    checks: str = ""  # what ``python -m theory_jax check RUN`` recomputes on a trained run's weights; "" for none

    @property
    def training_module(self) -> str | None:
        """The module path of the topic's training adapter, or None for a topic that trains nothing."""
        return f"practice_torch.{self.name}.training" if self.trains else None


TOPICS: tuple[Topic, ...] = (
    # Foundations
    Topic("change_of_variables", "foundations", "Box-Muller transform; Jacobians", "2-D",
          trains="elementwise monotone flow + LU mixing, MLE (1-D, 2-D)"),
    Topic("f_divergence", "foundations", "f-divergences; variational divergence minimisation; f-GAN; Jensen", "2-D, image",
          trains="f-GAN: variational divergence minimisation, six f-divergences (2-D, images)"),
    Topic("mixture_em", "foundations", "latent variable models; GMM by EM", "2-D, image features",
          trains="Gaussian mixture fitted by EM, full or diagonal covariances (2-D, images)"),
    Topic("elbo", "foundations", "evidence lower bound", "math"),
    Topic("evaluation", "foundations", "evaluation of generative models", "image"),
    # Latent-variable models
    Topic("autoencoder", "latent variable", "autoencoders; denoising; anomaly detection", "image, sound",
          trains="autoencoder: MLP or conv, denoising, anomaly detection by reconstruction error (images, log-mels)"),
    Topic("vae", "latent variable",
          "VAE; reparameterisation; beta-VAE; beta-TCVAE; FactorVAE; hierarchical VAE; VAE-GAN; conditional VAE",
          "image, sound",
          trains="variational autoencoder: MLP or conv, beta-VAE, beta-TCVAE, FactorVAE, two-level, VAE-GAN, "
                 "conditional (images)",
          checks="the single-sample ELBO and the 32-sample importance-weighted NLL (nats, bits/dim)"),
    Topic("vq_vae", "latent variable", "vector-quantised VAE", "image, sound",
          trains="VQ-VAE: EMA codebook, dead-code restarts; a transformer prior over the code grid (images, log-mels)"),
    # Adversarial models
    Topic("gan", "adversarial", "GAN; DCGAN; cGAN; progressive growing", "2-D, image, audio",
          trains="GAN: MLP on 2-D mixtures, DCGAN with R1, class-conditional (projection discriminator), log-mels, "
                 "spectral normalisation, minibatch std, unrolled discriminator, PacGAN, progressive growing"),
    Topic("wgan", "adversarial", "Wasserstein GAN; gradient penalty", "1-D, 2-D, image",
          trains="WGAN: clipping, two- or one-sided gradient penalty, n_critic, critic's W1 estimate (1-D, 2-D, images)"),
    Topic("stylegan", "adversarial", "StyleGAN: mapping network, modulated convolutions, style mixing, path length",
          "image", trains="StyleGAN2: mapping network, modulated and demodulated convolutions, noise inputs, style "
                          "mixing, lazy R1 and path-length penalties, truncation, EMA generator (images)"),
    Topic("bigan", "adversarial", "BiGAN / ALI", "image",
          trains="BiGAN: conv encoder, DCGAN generator, joint discriminator over (x, z); linear probe of E(x)"),
    Topic("gan_inversion", "adversarial", "GAN inversion", "image",
          trains="encoder by latent regression against a frozen gan run; optimisation, encoder, hybrid (images)"),
    Topic("domain_adversarial", "adversarial", "domain-adversarial networks", "image",
          trains="DANN by gradient reversal: Fashion-MNIST to a galaxy-blended target, against source-only (images)"),
    Topic("style_transfer", "adversarial", "style transfer; domain translation", "image",
          trains="CycleGAN between class-split image domains: LSGAN, cycle (10) and identity (5) losses (images)"),
    # Diffusion models
    Topic("ddpm", "diffusion", "DDPM: forward/reverse processes, ELBO, U-Net", "image, sound, 2-D",
          trains="DDPM: U-Net (images, mel spectrograms) or MLP (2-D), DDPM/DDIM samplers, CFG, inpainting and "
                 "super-resolution (RePaint, ILVR), a two-stage cascade with conditioning augmentation",
          checks="the variational bound, four shared timesteps per example (U-Net on images, MLP on 2-D)"),
    Topic("score", "diffusion", "DDPMs as score predictors; Langevin", "2-D, image",
          trains="NCSN: noise-conditional score net, DSM, annealed Langevin (2-D MLP, image U-Net)"),
    Topic("guidance", "diffusion", "classifier and classifier-free guidance", "image",
          trains="noise-aware classifier p(y|x_t, t) for classifier guidance (images)"),
    Topic("ddim", "diffusion", "DDIM; respaced sampling", "image"),
    Topic("latent_diffusion", "diffusion", "latent diffusion models", "image",
          trains="class-conditional DDPM on scaled latents of a frozen VAE, CFG"),
    Topic("text_to_image", "diffusion", "text guidance; the concepts of stable diffusion", "image",
          trains="caption-to-image latent diffusion: char transformer, cross-attention U-Net, VQ latents, CFG",
          checks="the caption-conditioned latent epsilon loss (VQ encoder, text encoder and U-Net twins)"),
    # Flows
    Topic("coupling_flows", "flows", "NICE; RealNVP; Glow; dequantisation", "2-D, image",
          trains="RealNVP/Glow: multi-scale coupling flow, dequantised bits/dim",
          checks="the dequantised NLL and its importance-weighted bound on images (nats, bits/dim)"),
    Topic("cnf", "flows", "continuous normalizing flows; neural ODEs", "2-D",
          trains="FFJORD: continuous normalizing flow, Hutchinson trace, dopri5/adjoint (2-D, 1-D)"),
    Topic("flow_matching", "flows", "flow matching; OT paths; reflow; consistency; galaxy images", "2-D, image, astro",
          trains="CFM on OT paths, minibatch OT, ODE sampler (2-D, images, galaxies), reflow, consistency distillation",
          checks="the CFM loss and the ODE log-likelihood by fixed RK4 steps (U-Net on images, MLP on 2-D)"),
    # Energy-based models
    Topic("ebm", "energy-based", "EBMs; Langevin MCMC; replay buffer", "2-D, image",
          trains="EBM: persistent Langevin chains, replay buffer, CD + L2, OOD AUROC (2-D, images)"),
    Topic("rbm", "energy-based", "RBMs; contrastive divergence", "image",
          trains="Bernoulli RBM: CD-k and persistent CD, Gibbs samples, AIS log-likelihood (binarised images)"),
    # Autoregressive models and transformers
    Topic("pixelcnn", "autoregressive", "PixelCNN; masked convolutions", "image",
          trains="gated PixelCNN: masked convs, exact NLL in bits/dim (binarised, 8-bit images)",
          checks="the exact NLL (nats per image, bits/dim)"),
    Topic("wavenet", "autoregressive", "WaveNet; dilated causal convolutions", "sound",
          trains="WaveNet: gated dilated causal convs, mu-law softmax, digit-conditioned (audio)",
          checks="the NLL per sample of whole clips (nats, bits)"),
    Topic("transformer", "autoregressive", "attention; transformer blocks; position embeddings", "text, image, sound"),
    Topic("language_model", "autoregressive", "tokenisation; decoding strategies", "text",
          trains="character Transformer or LSTM, every decoding rule, BPE (text)",
          checks="the transformer's held-out cross-entropy (nats, bits/char)"),
    # RL and preference optimisation
    Topic("policy_gradient", "rl & preferences", "policy gradient theorem; LM as a policy", "text",
          trains="REINFORCE with a leave-one-out baseline: the character LM fine-tuned toward a judge (text)"),
    Topic("ppo", "rl & preferences", "proximal policy optimisation", "text, control",
          trains="PPO, epochs of minibatch updates on each rollout: the character LM with a value head and a per-token "
                 "KL penalty toward a judge or a reward model (text); CartPole-v1 (--dataset cartpole)"),
    Topic("trpo", "rl & preferences", "trust region policy optimisation", "text, control",
          trains="TRPO's natural-gradient steps in a KL trust region: the character LM toward a judge (text); "
                 "CartPole-v1 (--dataset cartpole)"),
    Topic("reward_model", "rl & preferences", "reward modelling; Bradley-Terry", "text",
          trains="Bradley-Terry reward model on the character LM's trunk, pairs labelled by a judge (text)"),
    Topic("dpo", "rl & preferences", "direct preference optimisation", "text",
          trains="DPO on judge-labelled pairs from the frozen reference: the character LM fine-tuned (text)"),
    # State-space models
    Topic("ssm", "state-space", "S4; selective scan (Mamba)", "text, sound",
          trains="Mamba character LM (text) and digit-conditioned S4D on mu-law audio, sampled one recurrent step "
                 "per token",
          checks="the held-out cross-entropy per character or per audio sample (nats, bits)"),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}


def get_topic(name: str) -> Topic:
    """The topic called ``name``; a ``KeyError`` whose message lists the known names."""
    if name not in BY_NAME:
        raise KeyError(f"unknown topic {name!r}; known topics: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def has_derivation(name: str) -> bool:
    return (ROOT / "theory_jax" / "derivations" / f"{name}.py").is_file()


def has_implementation(name: str) -> bool:
    return (ROOT / "practice_torch" / f"{name}.py").is_file() or (ROOT / "practice_torch" / name).is_dir()


def has_spec(name: str) -> bool:
    return (ROOT / "shared_specs" / f"{name}.py").is_file()
