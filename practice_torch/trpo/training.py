"""TRPO's training adapter (``practice_torch.models``), one algorithm on two kinds of task:

    python -m practice_torch train trpo --set model.reference=RUN_DIR     # the character language model
    python -m practice_torch train trpo --dataset cartpole                # a control task (data/control.py)

Each engine step is one TRPO iteration (Schulman et al. 2015, sec. 6 and Appendix C), its policy update the
natural-gradient step in the trust region (``natural.natural_step``, written once for every policy): the surrogate
L(theta) = mean pi_theta/pi_old A (eq. 14), the constraint the mean over the visited states of the exact
KL(pi_old(. | s) || pi_theta(. | s)) <= ``model.max_kl``, conjugate gradient on its Fisher-vector products and a
backtracking line search. No optimizer moves the policy; one process only (each Fisher-vector product would need an
all-reduce under torchrun).

The language model: the policy and the frozen reference are REINFORCE's (``policy_gradient.policy``): B prompts per
step, K responses each from the current policy, returns = the judge's reward - ``model.kl_coef`` (log pi(y) -
log pi_ref(y)), and the leave-one-out baseline of the prompt's other K - 1 returns as the advantage A of every
character of a response; the Fisher-vector products on ``model.fisher_fraction`` of the responses. ``eval`` reports
REINFORCE's fine-tuning metrics (``policy_gradient.fine_tuning``).

A control task: PPO's actor-critic, rollout and GAE (``ppo.rollout``): ``train.batch_size`` environments stepped
``model.rollout_steps`` steps each, advantages by GAE per episode normalised over the batch; after the policy's
step the critic alone (the one player, its own AdamW at ``train.lr``) is fitted to the lambda-returns by
``model.value_epochs`` passes of ``model.minibatches`` minibatches. ``eval`` plays the greedy policy on the test
split's episodes. ``evaluate`` and ``sample``, the same for PPO, are ``ppo/tasks.py``'s. The derivation:
``python -m theory_jax trpo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.functions import action_log_probs, leave_one_out_baseline
from practice_torch.policy_gradient.policy import (
    BUILDS_ON,
    LM_ARCHITECTURE,
    LM_RANGES,
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    episode_logits,
    inherit,
    prompts_of,
    response_log_prob,
    sample_responses,
)
from practice_torch.ppo import rollout as control
from practice_torch.ppo.tasks import evaluate, sample
from practice_torch.trpo.functions import mean_kl, surrogate
from practice_torch.trpo.natural import natural_step


@dataclass
class Config(LanguageSettings):
    """TRPO's settings: the run's ``model.*`` keys. The language model's task also reads ``LanguageSettings``
    (``model.reference=runs/lm``), the judge's keys and ``samples_per_prompt``; a control task reads ``gamma``,
    ``lam``, ``hidden``, ``rollout_steps``, ``value_epochs`` and ``minibatches``."""

    max_kl: float = 0.01  # delta: the trust region, mean KL per visited state (nats)
    cg_iterations: int = 10
    damping: float = 0.1
    backtracks: int = 10
    fisher_fraction: float = 0.25  # the language model: the share of the responses the Fisher-vector products see
    judge: str = "letter"
    letters: str = "e"
    samples_per_prompt: int = 4  # K: the leave-one-out baseline needs K >= 2
    kl_coef: float = 0.02  # beta of the k1 penalty in the return
    eval_prompts: int = 256
    gamma: float = 0.99  # a control task: the discount
    lam: float = 0.95  # a control task: GAE's lambda
    hidden: int = 64  # a control task: the width of the actor's and the critic's two hidden layers
    rollout_steps: int = 512  # a control task: steps of each environment per rollout
    value_epochs: int = 20  # a control task: passes of the critic's fit over each rollout (10 left seeds 1 and 3 of
    # five at a greedy 384 and 334 on CartPole: advantages from an under-fitted critic; RL Zoo's n_critic_updates)
    minibatches: int = 4  # a control task: minibatches of each pass of the critic's fit


HEADLINE = (*pg.HEADLINE, ("mean_return", "greedy policy's mean return", "per episode"))

# quick, the language model: REINFORCE's batches (16 prompts x 4 responses of 32 characters), 150 natural-gradient
# steps on one thread, the Fisher-vector products on a quarter of the responses (about 3 s a step; on all of them,
# 10 s); full: a GPU, 64 prompts x 8 responses of 64 characters. A control task: 4 environments x 512 steps a
# rollout (2048 environment steps), the critic's Adam at a constant 1e-3, unclipped; quick 49 iterations (100 352
# steps, the RL Zoo's CartPole budget), full 244 (500 000).
CONTROL = TrainConfig(steps=49, batch_size=4, lr=1e-3, warmup_steps=0, min_lr_ratio=1.0, grad_clip=0.0,
                      checkpoint_every=25, log_every=5, samples=4, threads=1)
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=150, batch_size=16, checkpoint_every=50, log_every=10, samples=8, threads=1)),
              "control": Preset(Config(), CONTROL)},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, samples_per_prompt=8, eval_prompts=1024),
        TrainConfig(steps=1000, batch_size=64, checkpoint_every=250, log_every=50, samples=16)),
             "control": Preset(Config(), TrainConfig(**{**CONTROL.__dict__, "steps": 244, "log_every": 10}))},
}
default_config = preset_config("trpo", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = (*LM_ARCHITECTURE, "hidden")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("judge", "letters", "eval_prompts", "prompt_length", "response_length")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**LM_RANGES, **dict.fromkeys(("max_kl", "cg_iterations", "backtracks", "eval_prompts", "hidden", "rollout_steps",
                                         "value_epochs", "minibatches"), "positive"),
          **dict.fromkeys(("damping", "kl_coef"), "at least 0"), **dict.fromkeys(("gamma", "lam"), "in [0, 1]"),
          "fisher_fraction": "in (0, 1]", "samples_per_prompt": "at least 2"}


def check(config: Config) -> None:
    if config.max_kl <= 0 or config.cg_iterations < 1 or config.damping < 0 or config.backtracks < 1:
        raise ValueError(f"model.max_kl must be positive, model.cg_iterations and model.backtracks at least 1, "
                         f"model.damping not negative; got {config.max_kl}, {config.cg_iterations}, "
                         f"{config.backtracks}, {config.damping}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ValueError("trpo trains in one process (each Fisher-vector product would need an all-reduce): run it "
                         "without torchrun")


def check_text(config: Config) -> None:
    pg.check(config)
    if not 0 < config.fisher_fraction <= 1:
        raise ValueError(f"model.fisher_fraction must be in (0, 1], got {config.fisher_fraction}")


def check_control(config: Config) -> None:
    if min(config.hidden, config.rollout_steps, config.value_epochs, config.minibatches) < 1:
        raise ValueError("model.hidden, model.rollout_steps, model.value_epochs and model.minibatches must be "
                         f"positive, got {config.hidden}, {config.rollout_steps}, {config.value_epochs} and "
                         f"{config.minibatches}")
    if not 0 <= config.gamma <= 1 or not 0 <= config.lam <= 1:
        raise ValueError(f"model.gamma and model.lam must be in [0, 1], got {config.gamma} and {config.lam}")


def build(config: Config, data, parents: dict) -> PolicyAndReference | control.ActorCritic:
    check(config)
    if data.modality == "control":
        check_control(config)
        return control.ActorCritic(data.shape[0], data.actions, config.hidden)
    check_text(config)
    lm = build_pair(config, data, parents)
    return PolicyAndReference(lm)


def players(net, config: Config) -> dict[str, Player]:
    """The critic of a control task (its own AdamW); the policy is no optimizer's: the natural step moves it."""
    return {"value": Player(list(net.value.parameters()))} if isinstance(net, control.ActorCritic) else {}


def draw_noise(net, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The language model: the uniforms of n prompts' K responses, (n, K, L). A control task: the uniforms of n
    environments' T actions ``u`` (n, T) and the keys that shuffle the critic's fit ``order`` (n, T, value_epochs)."""
    if not isinstance(net, control.ActorCritic):
        return pg.draw_noise(net, config, n, generator)
    u = torch.rand((n, config.rollout_steps), generator=generator, dtype=torch.float64).float()
    return {"u": u, "order": torch.rand((n, config.rollout_steps, config.value_epochs), generator=generator)}


def train_step(net, config: Config, step: int, run) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One TRPO iteration on the language model's prompts or a control task's environments: (the negated
    surrogate after the step, terms)."""
    if run.environments is None:
        with torch.no_grad():  # natural_step takes the gradients it needs
            return text_step(net, config, *run.next_batch())
    return control_step(net, config, run)


def text_step(net: PolicyAndReference, config: Config, batch, noise: dict[str, torch.Tensor]):
    """One TRPO step on fresh responses to the batch's prompts (x (B, 256) windows); terms: the judge's mean
    reward, k1 per response, the step's fraction and measured KL."""
    prompts = prompts_of(batch[0], config.prompt_length)
    u = noise["u"].to(prompts.device)
    b, k, length = u.shape
    responses = sample_responses(net.policy, prompts, u).reshape(b * k, length)
    rows = prompts.repeat_interleave(k, dim=0)
    p = config.prompt_length
    tokens, old_logits = episode_logits(net.policy, rows, responses)
    log_ref = response_log_prob(episode_logits(net.reference, rows, responses)[1], tokens, p)
    log_old = response_log_prob(old_logits, tokens, p)
    rewards, returns = pg.returns_of(config, responses, log_old, log_ref)
    advantages = (returns.reshape(b, k) - leave_one_out_baseline(returns.reshape(b, k))).reshape(-1, 1)
    old_logp = torch.log_softmax(old_logits[:, p - 1:], -1)  # (N, L, V): pi_old at each visited prefix
    old_token = action_log_probs(old_logits[:, p - 1:], responses)

    def new_logits(rows=slice(None)):
        return net.policy(tokens[rows, :-1]).float()[:, p - 1:]

    def text_surrogate():  # eq. 14, per character: mean pi/pi_old A
        return torch.mean(torch.exp(action_log_probs(new_logits(), responses) - old_token) * advantages)

    def text_kl(rows=slice(None)):  # mean over the visited prefixes of KL(pi_old || pi_theta), exact over the vocabulary
        old = old_logp[rows]
        return torch.mean(torch.sum(old.exp() * (old - torch.log_softmax(new_logits(rows), -1)), -1))

    every = max(1, round(1 / config.fisher_fraction))  # every k-th response (K = 4, a quarter: one per prompt)
    params = [q for q in net.policy.parameters() if q.requires_grad]
    move = natural_step(params, text_surrogate, text_kl, **trust_region(config),
                        fisher_kl=lambda: text_kl(slice(None, None, every)))
    terms = {"reward": rewards.mean(), "kl_k1": (log_old - log_ref).mean(),
             "step_fraction": torch.tensor(move["step_fraction"]), "trust_kl": torch.tensor(move["kl"])}
    return torch.tensor(-move["surrogate_after"]), terms


def trust_region(config: Config) -> dict[str, float]:
    return {"max_kl": config.max_kl, "cg_iterations": config.cg_iterations, "damping": config.damping,
            "backtracks": config.backtracks}


def policy_kl(policy: nn.Module, obs: torch.Tensor, old_logits: torch.Tensor) -> torch.Tensor:
    """The mean over the states ``obs`` (N, D) of KL(pi_old(. | s) || pi_theta(. | s)), uniform weights 1/N
    (the project's ``mean_kl``). () ."""
    n = obs.shape[0]
    return mean_kl(old_logits, policy(obs), torch.full((n,), 1.0 / n, dtype=old_logits.dtype,
                                                          device=old_logits.device))


def control_step(net: control.ActorCritic, config: Config, run):
    """1-4. the natural step of the policy on a fresh rollout's transitions (advantages normalised over the batch);
    5. the critic's fit to the lambda-returns, ``value_epochs`` passes of ``minibatches`` minibatches. Terms: the
    recent episodes' mean return, the step's fraction, its measured KL and surrogate gain, the entropy before it and
    the critic's mean loss."""
    noise = run.next_noise()
    batch = control.to_batch(control.collect(run.environments, net.policy, noise["u"]), net.value, config.gamma,
                             config.lam)
    advantages = control.normalise(batch.advantages)
    states = torch.arange(batch.obs.shape[0])
    with torch.no_grad():
        old_logits = net.policy(batch.obs)
    move = natural_step(list(net.policy.parameters()),
                        lambda: surrogate(net.policy(batch.obs), old_logits, states, batch.actions, advantages),
                        lambda: policy_kl(net.policy, batch.obs, old_logits), **trust_region(config))
    order, losses = noise["order"].reshape(-1, config.value_epochs), []
    for epoch in range(config.value_epochs):  # 5.
        for rows in control.minibatches(order[:, epoch], config.minibatches):
            with run.autocast():
                value_loss = 0.5 * torch.mean((net.value(batch.obs[rows]) - batch.returns[rows]) ** 2)
            run.update(value=value_loss)
            losses.append(value_loss.detach())
    terms = {"episode_return": torch.tensor(run.environments.recent_return()),
             "step_fraction": torch.tensor(move["step_fraction"]), "trust_kl": torch.tensor(move["kl"]),
             "surrogate_gain": torch.tensor(move["surrogate_after"] - move["surrogate_before"]),
             "entropy": control.entropy(old_logits).mean(), "value_loss": torch.stack(losses).mean()}
    return torch.tensor(-move["surrogate_after"]), terms


__all__ = ["BUILDS_ON", "HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "inherit",
           "players", "sample", "train_step"]
