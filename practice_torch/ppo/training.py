"""PPO's training adapter (``practice_torch.models``), one algorithm on two kinds of task:

    python -m practice_torch train ppo --set model.reference=RUN_DIR     # the character language model
    python -m practice_torch train ppo --dataset cartpole                # a control task (data/control.py)

Each engine step is one PPO iteration (Schulman et al. 2017, Algorithm 1, as CleanRL's ppo.py writes it): collect a
rollout with the current policy, compute advantages by GAE (Schulman et al. 2016, eq. 16; ``model.gamma``,
``model.lam``) from the value estimates, then ``model.epochs`` passes over the rollout in ``model.minibatches``
minibatches, each one AdamW update (the engine's ``run.update``) on the clipped surrogate (eq. 7) of the per-sample
ratios pi/pi_old, with advantages normalised over the minibatch, plus ``model.value_coef`` times the value's squared
error to the returns A + V minus ``model.entropy_coef`` times the entropy (eq. 9). The rollout is a local of the step:
nothing of it is a weight, and a checkpoint between two steps has nothing of it to keep. ``train.steps`` counts
iterations; the learning-rate schedule follows them.

The language model: the policy is the language model of a trained ``language_model`` run with a value head on its
last hidden layer (one trunk for both, as in Stiennon et al. 2020's small models); the reference is the same model,
frozen. A rollout is one response of ``model.response_length`` characters per prompt of the batch (the windows'
first ``model.prompt_length`` characters) with per-token rewards r_t = -beta (log pi(y_t) - log pi_ref(y_t)) (the k1
KL penalty per token, Ziegler et al. 2019) plus the judge's reward at the last token; a sample is a response (its
tokens' ratios and advantages). Under torchrun the ranks' rollouts are gathered, every rank holds the global one
and trains on its share of each minibatch, so any number of processes computes one process's step.
With ``model.reward_model=RUN`` (a trained ``reward_model`` run on the same language model's architecture) the
reward is the learned one instead of the judge's (``learned_reward.py``): the reward model's score r(prompt, y),
normalised to mean 0 and sd 1 over the reference model's responses to 256 validation prompts (Ziegler et al. 2019,
sec. 2.2), its weights frozen and stored in this run's checkpoints; the judge then only scores (the logged
``reward``), so whether optimising the learned reward raises the true one is measured, not assumed. ``eval`` reports
REINFORCE's fine-tuning metrics (``policy_gradient.fine_tuning``).

A control task: separate 64-64 tanh actor and critic (``rollout.ActorCritic``), ``train.batch_size`` environments
stepped ``model.rollout_steps`` steps each with actions drawn from the engine's uniforms, GAE cut at episode ends
(``rollout.episode_gae``); a sample is one transition. ``eval`` plays the greedy policy on the test split's episodes.
``evaluate`` and ``sample``, the same for TRPO, are ``tasks.py``'s. The derivation: ``python -m theory_jax ppo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.distributed import gathered_rows, rank_rows
from practice_torch.engine.players import Player
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.functions import action_log_probs
from practice_torch.policy_gradient.judges import judge, score
from practice_torch.policy_gradient.policy import (
    BUILDS_ON as REFERENCE,
)
from practice_torch.policy_gradient.policy import (
    LM_ARCHITECTURE,
    LM_RANGES,
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    decode,
    head_logits,
    hidden_states,
    inherit,
    prompts_of,
    sample_responses,
)
from practice_torch.ppo import rollout as control
from practice_torch.ppo.functions import clipped_surrogate_loss, gae, kl_k1, kl_k3
from practice_torch.ppo.learned_reward import frozen_scorer, normalise_scores
from practice_torch.ppo.tasks import evaluate, sample


@dataclass
class Config(LanguageSettings):
    """PPO's settings: the run's ``model.*`` keys (``--set model.epochs=10``). The language model's task also reads
    ``LanguageSettings`` (``model.reference=runs/lm``) and the judge's keys; a control task reads ``hidden`` and
    ``rollout_steps``."""

    epochs: int = 4  # passes over each rollout (CleanRL's update_epochs)
    minibatches: int = 1  # minibatches of each pass, one update each (CleanRL's num_minibatches)
    clip: float = 0.2  # epsilon of the clipped surrogate
    value_coef: float = 0.5  # weight of the value's squared error
    entropy_coef: float = 0.0  # weight of the entropy bonus (eq. 9's c_2)
    gamma: float = 1.0  # discount (the language model's episode is one response: none)
    lam: float = 0.95  # GAE's lambda
    judge: str = "letter"  # the language model's task: policy_gradient.judges.JUDGES
    letters: str = "e"
    kl_coef: float = 0.02  # beta of the per-token k1 penalty in the reward
    eval_prompts: int = 256
    reward_model: str = ""  # a trained reward_model run: its normalised score is the reward ("": the judge's)
    hidden: int = 64  # a control task: the width of the actor's and the critic's two hidden layers
    rollout_steps: int = 128  # a control task: steps of each environment per rollout (CleanRL's num_steps)


HEADLINE = (*pg.HEADLINE, ("mean_return", "greedy policy's mean return", "per episode"))
GPU_TRAINING = pg.GPU_TRAINING
CONTROL = {"gamma": 0.99, "entropy_coef": 0.01, "minibatches": 4}  # CleanRL's classic-control settings

# quick, the language model: 64 prompts per rollout, 4 full-batch updates each, 400 iterations: as many sampled
# responses as REINFORCE's quick preset (25 600). One CPU thread.
# quick, a control task: 4 environments x 256 steps a rollout, 10 passes of 4 minibatches, lr 1e-3 decaying to 0 over
# 146 iterations (150 000 environment steps); full: CleanRL's CartPole settings, 4 x 128 steps, 4 passes, lr 2.5e-4,
# 976 iterations (500 000 steps). Adam without warmup, gradients clipped to 0.5, as CleanRL's.
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=400, batch_size=64, lr=3e-4, warmup_steps=5,
                    checkpoint_every=100, log_every=5, samples=8, threads=1, **pg.FINE_TUNING)),
              "control": Preset(
        Config(**CONTROL, epochs=10, rollout_steps=256),
        TrainConfig(steps=146, batch_size=4, lr=1e-3, warmup_steps=0, min_lr_ratio=0.0, grad_clip=0.5,
                    checkpoint_every=25, log_every=5, samples=4, threads=1))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, eval_prompts=1024),
        TrainConfig(steps=500, batch_size=256, lr=5e-5, warmup_steps=12,
                    checkpoint_every=125, samples=16, **pg.FINE_TUNING, **{**GPU_TRAINING, "log_every": 10})),
             "control": Preset(
        Config(**CONTROL, epochs=4, rollout_steps=128),
        TrainConfig(steps=976, batch_size=4, lr=2.5e-4, warmup_steps=0, min_lr_ratio=0.0, grad_clip=0.5,
                    checkpoint_every=100, log_every=10, samples=4, threads=1))},
}
default_config = preset_config("ppo", PRESETS)
# What the checkpoint fixes (the network and what its weights mean): --resume refuses a change to these, sample and
# eval --set refuse them; the other model keys (the step's weights, the sampler, eval's sizes) may change.
ARCHITECTURE = (*LM_ARCHITECTURE, "reward_model", "hidden")
# What sample and eval --set may change; the model's other keys are the checkpoint's or the training step's.
USE = ("judge", "letters", "eval_prompts", "prompt_length", "response_length")
# The range of each numeric model key, checked wherever a config is made (``engine.config.check_model``).
RANGES = {**LM_RANGES, **dict.fromkeys(("epochs", "minibatches", "eval_prompts", "hidden", "rollout_steps"), "positive"),
          **dict.fromkeys(("value_coef", "entropy_coef", "kl_coef"), "at least 0"),
          **dict.fromkeys(("gamma", "lam"), "in [0, 1]"), "clip": "in (0, 1)"}
BUILDS_ON = {**REFERENCE, "reward_model": "reward_model"}  # the runs a fine-tuning run starts from and is judged by
CHECKPOINT_VERSIONS = {1: "a step counter in the weights (the rollout's cycle)",
                       2: "the rollout's cycle reads the engine's step number",
                       3: "an iteration a step, the rollout a local of the step (no rollout buffers in the weights), "
                          "the reward model without its reference copy, the runs it builds on in builds_on.json"}


class PolicyWithValue(PolicyAndReference):
    """PolicyAndReference with a value head V(s_t) = w . h_t + b on the policy's last hidden layer, and the frozen
    reward model (``scorer``) when the reward is learned."""

    def __init__(self, lm, scorer: nn.Module | None = None):
        super().__init__(lm)
        width = lm.embedding.weight.shape[1]
        self.value_head = nn.Linear(width, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.scorer = scorer  # the frozen reward model of model.reward_model (``learned_reward.frozen_scorer``)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "scorer", None) is not None:  # a frozen reward model stays in eval mode
            self.scorer.eval()
        return self

    def logits_and_values(self, tokens: torch.Tensor, prompt_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's logits predicting each response character and the values of the states before it.
        tokens: (N, P + L), P = prompt_length -> ((N, L, V), (N, L))."""
        h = hidden_states(self.policy, tokens[:, :-1])[:, prompt_length - 1:]
        return head_logits(self.policy, h).float(), self.value_head(h)[..., 0].float()


def check(config: Config) -> None:
    if config.epochs < 1 or config.minibatches < 1 or not 0 < config.clip < 1:
        raise ValueError(f"model.epochs and model.minibatches must be positive and model.clip in (0, 1), got "
                         f"{config.epochs}, {config.minibatches} and {config.clip}")
    if config.value_coef < 0 or config.entropy_coef < 0 or not 0 <= config.gamma <= 1 or not 0 <= config.lam <= 1:
        raise ValueError("model.value_coef and model.entropy_coef must not be negative, model.gamma and model.lam in "
                         f"[0, 1]; got {config.value_coef}, {config.entropy_coef}, {config.gamma}, {config.lam}")


def check_text(config: Config) -> None:
    judge(config.judge, config.letters)
    if config.kl_coef < 0:
        raise ValueError(f"model.kl_coef must not be negative, got {config.kl_coef}")


def check_control(config: Config) -> None:
    if config.hidden < 1 or config.rollout_steps < 1:
        raise ValueError(f"model.hidden and model.rollout_steps must be positive, got {config.hidden} and "
                         f"{config.rollout_steps}")
    if config.rollout_steps < config.minibatches:
        raise ValueError(f"a rollout of model.rollout_steps={config.rollout_steps} steps an environment cannot be cut "
                         f"in model.minibatches={config.minibatches}")


def build(config: Config, data, parents: dict) -> PolicyWithValue | control.ActorCritic:
    """The actor-critic of a control task, or the language model's policy with a value head (and the frozen reward
    model, with ``model.reward_model``)."""
    check(config)
    if data.modality == "control":
        check_control(config)
        return control.ActorCritic(data.shape[0], data.actions, config.hidden)
    check_text(config)
    pair, reward = build_pair(config, data, parents), parents.get("reward_model")
    net = PolicyWithValue(pair, None if reward is None else frozen_scorer(config, data, reward))
    if reward is not None and reward.net is not None:  # the first build: its scores' mean and sd (then checkpointed)
        normalise_scores(net, config)
    return net


def players(net, config: Config) -> dict[str, Player]:
    """One player: the policy with its value head (one AdamW, as CleanRL's one Adam over actor and critic)."""
    return {"policy": Player([p for p in net.parameters() if p.requires_grad])}


def draw_noise(net, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The randomness of one iteration on n prompts or n environments: ``u`` the uniforms the actions are drawn by
    ((n, 1, L): one response per prompt; (n, T): T steps per environment) and ``order`` the keys that shuffle the
    samples of each pass ((n, epochs): a response each; (n, T, epochs): a transition each)."""
    if isinstance(net, control.ActorCritic):
        u_shape, order_shape = (n, config.rollout_steps), (n, config.rollout_steps, config.epochs)
    else:
        u_shape, order_shape = (n, 1, config.response_length), (n, config.epochs)
    u = torch.rand(u_shape, generator=generator, dtype=torch.float64).float()
    return {"u": u, "order": torch.rand(order_shape, generator=generator)}


def token_rewards(judge_rewards: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor, beta: float
                  ) -> torch.Tensor:
    """r_t = -beta k1_t, plus the judge's reward at the last token. judge_rewards: (N,), log_pi, log_ref: (N, L) ->
    (N, L)."""
    rewards = -beta * kl_k1(log_pi, log_ref)
    rewards[:, -1] += judge_rewards
    return rewards


@dataclass
class Samples:
    """A rollout as PPO's update reads it, N samples: ``inputs`` (what the policy reads: (N, P + L) tokens or (N, D)
    observations), ``actions`` ((N, L) characters or (N,)), ``old_log_probs``, ``advantages``, ``returns`` (the
    shape of ``actions``), ``order`` (N, epochs) the shuffling keys, and ``terms`` to log."""
    inputs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    order: torch.Tensor
    terms: dict[str, torch.Tensor]


@torch.no_grad()
def collect_text(net: PolicyWithValue, config: Config, batch, noise: dict[str, torch.Tensor]) -> Samples:
    """One response per prompt of the batch (x (B, W) windows) from the policy, by the uniforms u (B, 1, L); their
    per-token log-probabilities, rewards, GAE advantages and returns. Under torchrun the ranks' rollouts are
    gathered first, so every rank holds the same global rollout."""
    prompts = prompts_of(batch[0], config.prompt_length)
    responses = sample_responses(net.policy, prompts, noise["u"])[:, 0]
    tokens = torch.cat([prompts, responses], dim=1)
    logits, values = net.logits_and_values(tokens, config.prompt_length)
    log_pi = action_log_probs(logits, responses)
    log_ref = action_log_probs(net.reference(tokens[:, :-1]).float()[:, config.prompt_length - 1:], responses)
    judged = torch.tensor(score(judge(config.judge, config.letters), decode(responses)), device=tokens.device)
    scored = judged if net.scorer is None else (net.scorer(prompts, responses) - net.scorer.score_mean) / \
        net.scorer.score_sd
    tokens, values, log_pi, log_ref, judged, scored, order = (
        gathered_rows(t) for t in (tokens, values, log_pi, log_ref, judged, scored, noise["order"]))
    rewards = token_rewards(scored, log_pi, log_ref, config.kl_coef)
    values_ext = torch.cat([values, values.new_zeros(len(values), 1)], 1)  # V = 0 after the last character
    advantages = gae(rewards, values_ext, config.gamma, config.lam)
    terms = {"reward": judged.mean(), "score": scored.mean(), "kl_k1": kl_k1(log_pi, log_ref).sum(-1).mean()}
    return Samples(tokens, tokens[:, config.prompt_length:], log_pi, advantages, advantages + values, order, terms)


@torch.no_grad()
def collect_control(net: control.ActorCritic, config: Config, envs, noise: dict[str, torch.Tensor]) -> Samples:
    """``rollout_steps`` steps of every environment by the uniforms u (B, T), flattened to B T transitions with
    advantages by GAE per episode."""
    batch = control.to_batch(control.collect(envs, net.policy, noise["u"]), net.value, config.gamma, config.lam)
    terms = {"episode_return": torch.tensor(envs.recent_return())}
    return Samples(batch.obs, batch.actions, batch.log_probs, batch.advantages, batch.returns,
                   noise["order"].reshape(-1, config.epochs), terms)


def policy_terms(net, config: Config, samples: Samples, rows: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The current policy's log pi(a), V and entropy of the samples ``rows``, flattened to one entry per action."""
    if isinstance(net, control.ActorCritic):
        logits = net.policy(samples.inputs[rows])
        log_pi = torch.log_softmax(logits, -1).gather(1, samples.actions[rows, None])[:, 0]
        return log_pi, net.value(samples.inputs[rows]), control.entropy(logits)
    logits, values = net.logits_and_values(samples.inputs[rows], config.prompt_length)
    log_pi = action_log_probs(logits, samples.actions[rows])
    return log_pi.flatten(), values.flatten(), control.entropy(logits.flatten(0, 1))


def ppo_loss(net, config: Config, samples: Samples, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Eq. 9 as a loss on the minibatch ``rows``: the clipped surrogate (eq. 7) with the minibatch's advantages
    normalised, ``value_coef`` times half the value's squared error, less ``entropy_coef`` times the entropy. Under
    torchrun this rank's share of the minibatch (normalised over all of it)."""
    advantages = control.normalise(samples.advantages[rows]).flatten()
    mine = rank_rows(rows)
    advantages = rank_rows(advantages.reshape(len(rows), -1)).flatten()
    log_pi, values, entropy = policy_terms(net, config, samples, mine)
    old_log_pi, returns = samples.old_log_probs[mine].flatten(), samples.returns[mine].flatten()
    policy_loss = clipped_surrogate_loss(log_pi, old_log_pi, advantages, config.clip)  # eq. 7
    value_loss = 0.5 * torch.mean((values - returns) ** 2)
    loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy.mean()  # eq. 9, as a loss
    with torch.no_grad():
        ratio = torch.exp(log_pi - old_log_pi)
        terms = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy.mean(),
                 "approx_kl": kl_k3(old_log_pi, log_pi).mean(),  # KL(pi_old || pi), k3 on pi_old's samples
                 "clip_fraction": ((ratio - 1).abs() > config.clip).float().mean()}
    return loss, terms


def train_step(net, config: Config, step: int, run) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One PPO iteration: a rollout, then ``epochs`` passes over its samples in ``minibatches`` shuffled
    minibatches, one update each. (The updates' mean loss; the rollout's terms and the updates' mean terms.)"""
    if run.environments is None:
        samples = collect_text(net, config, *run.next_batch())
    else:
        samples = collect_control(net, config, run.environments, run.next_noise())
    losses, sums = [], {}
    for epoch in range(config.epochs):
        for rows in control.minibatches(samples.order[:, epoch], config.minibatches):
            with run.autocast():
                loss, terms = ppo_loss(net, config, samples, rows)
            run.update(policy=loss)
            losses.append(loss.detach())
            sums = {k: sums.get(k, 0) + v for k, v in terms.items()}
    updates = len(losses)
    return torch.stack(losses).mean(), {**samples.terms, **{k: v / updates for k, v in sums.items()}}


__all__ = ["BUILDS_ON", "HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "inherit",
           "players", "sample", "train_step"]
