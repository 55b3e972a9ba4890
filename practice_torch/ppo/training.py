"""PPO's training adapter for the character language model (``practice_torch.models``):
``python -m practice_torch train ppo --set model.reference=RUN_DIR``.

The policy is the language model of a trained ``language_model`` run with a value head on its last hidden layer
(one trunk for both, as in Stiennon et al. 2020's small models); the reference is the same model, frozen. Every
``model.ppo_epochs`` engine steps start with a rollout: one response of ``model.response_length`` characters per
prompt of the batch (the windows' first ``model.prompt_length`` characters) from the current policy, with per-token
rewards r_t = -beta (log pi(y_t) - log pi_ref(y_t)) (the k1 KL penalty per token, Ziegler et al. 2019) plus the
judge's reward at the last token; advantages by GAE (Schulman et al. 2016, eq. 16; gamma ``model.gamma``, lambda
``model.lam``) from the value head's estimates, whitened over the rollout; returns A + V. The rollout lives in
buffers (``Rollout``), so a checkpoint carries it and a resumed run is exact. Each step, the rollout included, is one
optimizer step on PPO's loss over the whole rollout: the clipped surrogate (Schulman et al. 2017, eq. 7) on the
per-token ratios pi/pi_old plus ``model.value_coef`` times the value head's squared error to the returns.

With ``model.reward_model=RUN`` (a trained ``reward_model`` run on the same language model's architecture) the
reward is the learned one instead of the judge's: the reward model's score r(prompt, y), normalised to mean 0 and
sd 1 over the reference model's responses to 256 validation prompts (Ziegler et al. 2019, sec. 2.2), its weights
frozen and stored in this run's checkpoints; the judge then only scores (the logged ``reward``), so whether
optimising the learned reward raises the true one is measured, not assumed.

``eval`` reports what REINFORCE's does (``policy_gradient.training.fine_tuning_metrics``): the judge's mean reward
of policy and reference on held-out prompts, the gain in the reference's sds, the KL to the reference and the
held-out bits/char. The derivation: ``python -m theory_jax ppo``; PPO on CartPole-v1: ``practice_torch.ppo.control``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.engine.config import TrainConfig
from practice_torch.engine.presets import Preset, preset_config
from practice_torch.policy_gradient import fine_tuning as pg
from practice_torch.policy_gradient.functions import action_log_probs
from practice_torch.policy_gradient.judges import judge, score
from practice_torch.policy_gradient.policy import (
    LanguageSettings,
    PolicyAndReference,
    build_pair,
    decode,
    head_logits,
    hidden_states,
    prompts_of,
    sample_responses,
)
from practice_torch.ppo.functions import clipped_surrogate_loss, gae, kl_k1, kl_k3


@dataclass
class Config(LanguageSettings):
    """PPO's settings: the run's ``model.*`` keys (``--set model.reference=runs/lm``)."""

    judge: str = "letter"  # policy_gradient.judges.JUDGES
    letters: str = "e"
    kl_coef: float = 0.02  # beta of the per-token k1 penalty in the reward
    ppo_epochs: int = 4  # optimizer steps on each rollout (the first is taken right after collecting it)
    clip: float = 0.2  # epsilon of the clipped surrogate
    value_coef: float = 0.5  # weight of the value head's squared error
    gamma: float = 1.0  # the episode is one response: no discount
    lam: float = 0.95  # GAE's lambda
    eval_prompts: int = 256
    reward_model: str = ""  # a trained reward_model run: its normalised score is the reward ("": the judge's)
    reward_model_step: int = 0  # the step of its checkpoint build loaded (recorded; 0: not loaded, or none)


HEADLINE = pg.HEADLINE
GPU_TRAINING = pg.GPU_TRAINING

# quick: 64 prompts per rollout, 4 optimizer steps each, 1600 steps: as many sampled responses as REINFORCE's quick
# preset (25 600); the reward rises by 1.4 of the reference's sds with the held-out bits/char 0.09 worse (with 100
# rollouts of 32: 1.3 sds but 0.16 worse; beta 0.03 or 0.05 there: 0.75 and 0.24 sds). One CPU thread.
PRESETS = {
    "quick": {"shakespeare": Preset(
        Config(),
        TrainConfig(steps=1600, batch_size=64, lr=3e-4, warmup_steps=20,
                    checkpoint_every=400, log_every=20, samples=8, threads=1, **pg.FINE_TUNING))},
    "full": {"shakespeare": Preset(
        Config(prompt_length=64, response_length=64, eval_prompts=1024),
        TrainConfig(steps=2000, batch_size=256, lr=5e-5, warmup_steps=50,
                    checkpoint_every=500, samples=16, **pg.FINE_TUNING, **GPU_TRAINING))},
}
default_config = preset_config("ppo", PRESETS)
CHECKPOINT_VERSIONS = {1: "a step counter in the weights (the rollout's cycle)",
                       2: "the rollout's cycle reads the engine's step number"}


class Rollout(nn.Module):
    """The current rollout, in buffers so that checkpoints carry it: tokens (N, P + L) int64, old_log_probs,
    advantages and returns (N, L), the judge's rewards, the rewards optimised (the judge's or the reward model's
    normalised score) and the k1 KL per response (N,). Their N is the rollout's:
    a checkpoint's buffers are taken at whatever size they were saved (``RESIZABLE_BUFFERS``)."""

    RESIZABLE_BUFFERS = ("tokens", "old_log_probs", "advantages", "returns", "rewards", "scores", "kl")  # checkpoint

    def __init__(self):
        super().__init__()
        for name in self.RESIZABLE_BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.long if name == "tokens" else torch.float32))

    def store(self, **tensors: torch.Tensor) -> None:
        for name, value in tensors.items():
            setattr(self, name, value.detach())


class PolicyWithValue(PolicyAndReference):
    """PolicyAndReference with a value head V(s_t) = w . h_t + b on the policy's last hidden layer, and the rollout."""

    def __init__(self, lm, s: Config):
        super().__init__(lm, s)
        width = lm.embedding.weight.shape[1]
        self.value_head = nn.Linear(width, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.rollout = Rollout()
        self.scorer = None  # build sets a frozen reward model here (model.reward_model)

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "scorer", None) is not None:  # a frozen reward model stays in eval mode
            self.scorer.eval()
        return self

    def logits_and_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's logits predicting each response character and the values of the states before it.
        tokens: (N, P + L) -> ((N, L, V), (N, L))."""
        h = hidden_states(self.policy, tokens[:, :-1])[:, self.prompt_length - 1:]
        return head_logits(self.policy, h).float(), self.value_head(h)[..., 0].float()


def check(config: Config) -> None:
    judge(config.judge, config.letters)
    if config.ppo_epochs < 1 or not 0 < config.clip < 1:
        raise ValueError(f"model.ppo_epochs must be positive and model.clip in (0, 1), got {config.ppo_epochs} and "
                         f"{config.clip}")
    if config.kl_coef < 0 or config.value_coef < 0 or not 0 <= config.gamma <= 1 or not 0 <= config.lam <= 1:
        raise ValueError("model.kl_coef and model.value_coef must not be negative, model.gamma and model.lam in "
                         f"[0, 1]; got {config.kl_coef}, {config.value_coef}, {config.gamma}, {config.lam}")


NORMALISING_PROMPTS = 256  # the reference's responses the reward model's score is normalised over


def load_reward_model(config: Config, data):
    """The frozen reward model of the run ``config.reward_model`` (its step recorded), or, once recorded, an empty
    one of the same architecture (its weights come with this run's checkpoint). Either way without the reward
    model's reference copy, which only drew its preference pairs. ValueError, one line, for a path
    that is not a trained reward_model run on this language model's architecture and episode."""
    from pathlib import Path

    from practice_torch.engine import RunError
    from practice_torch.engine.checkpoint import latest_step
    from practice_torch.engine.runs import run_model_name
    from practice_torch.models import open_run
    from practice_torch.policy_gradient.policy import LM_KEYS, build_lm
    from practice_torch.reward_model.networks import RewardModel

    if config.reward_model_step:
        scorer = RewardModel(build_lm(config, data.num_classes), config)
    else:
        path = Path(config.reward_model)
        try:
            if run_model_name(path) != "reward_model":
                raise ValueError(f"model.reward_model={path} is a {run_model_name(path)} run; name a trained "
                                 "reward_model run (python -m practice_torch train reward_model)")
            _, cfg, scorer = open_run(path, torch.device("cpu"))
        except (RunError, OSError) as exc:
            raise ValueError(f"model.reward_model={path}: not a trained reward_model run ({exc})") from None
        differs = [k for k in (*LM_KEYS, "prompt_length", "response_length")
                   if getattr(cfg.model, k) != getattr(config, k)]
        if differs:
            raise ValueError(f"model.reward_model={path} has {differs[0]}={getattr(cfg.model, differs[0])} where "
                             f"this run has {getattr(config, differs[0])}: train it on the same language model")
        config.reward_model_step = latest_step(path / "checkpoints") or 0
    scorer.register_buffer("score_mean", torch.zeros(()))
    scorer.register_buffer("score_sd", torch.ones(()))
    return scorer.without_reference().requires_grad_(False).eval()


@torch.no_grad()
def normalise_scores(net: PolicyWithValue) -> None:
    """Set the reward model's score mean and sd from the reference's responses to the validation split's first
    ``NORMALISING_PROMPTS`` windows (a fixed seed: the same numbers every time)."""
    prompts = pg.validation_prompts(NORMALISING_PROMPTS, net.prompt_length)
    u = torch.rand((len(prompts), 1, net.response_length), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64).float()
    scores = net.scorer(prompts, sample_responses(net.reference, prompts, u)[:, 0])
    net.scorer.score_mean.fill_(scores.mean())
    net.scorer.score_sd.fill_(scores.std(correction=1).clamp_min(1e-6))


def build(config: Config, data) -> PolicyWithValue:
    check(config)
    lm, _ = build_pair(config, data)
    net = PolicyWithValue(lm, config)
    if config.reward_model or config.reward_model_step:
        first = not config.reward_model_step
        net.scorer = load_reward_model(config, data)
        if first:
            normalise_scores(net)
    return net


def draw_noise(net: PolicyWithValue, config: Config, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The uniforms of one response per prompt, (n, 1, L), used on the steps that collect a rollout."""
    return {"u": torch.rand((n, 1, net.response_length), generator=generator, dtype=torch.float64).float()}


def token_rewards(judge_rewards: torch.Tensor, log_pi: torch.Tensor, log_ref: torch.Tensor, beta: float
                  ) -> torch.Tensor:
    """r_t = -beta k1_t, plus the judge's reward at the last token. judge_rewards: (N,), log_pi, log_ref: (N, L) ->
    (N, L)."""
    rewards = -beta * kl_k1(log_pi, log_ref)
    rewards[:, -1] += judge_rewards
    return rewards


def whiten(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / sd over every entry: advantages on one scale from rollout to rollout."""
    return (x - x.mean()) / (x.std(correction=0) + 1e-8)


def _world() -> tuple[int, int]:
    """(rank, number of processes): (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gathered(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of x, in rank order, on every rank (the identity in one process). x: (n, ...) ->
    (world * n, ...)."""
    rank, world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def my_rows(x: torch.Tensor) -> torch.Tensor:
    """This rank's share of a gathered rollout's rows. x: (world * n, ...) -> (n, ...)."""
    rank, world = _world()
    n = len(x) // world
    return x[rank * n:(rank + 1) * n]


@torch.no_grad()
def collect(net: PolicyWithValue, config: Config, prompts: torch.Tensor, u: torch.Tensor) -> None:
    """Draw one response per prompt from the policy and store the rollout: tokens, pi_old's per-token
    log-probabilities, whitened GAE advantages and returns. prompts: (N, P), u: (N, 1, L). Under torchrun the
    ranks' rollouts are gathered first, so every rank stores the same global rollout (whitened as one process
    would), a checkpoint holds all of it, and each rank trains on its own rows (``my_rows``)."""
    responses = sample_responses(net.policy, prompts, u)[:, 0]
    tokens = torch.cat([prompts, responses], dim=1)
    logits, values = net.logits_and_values(tokens)
    log_pi = action_log_probs(logits, responses)
    log_ref = action_log_probs(net.reference(tokens[:, :-1]).float()[:, net.prompt_length - 1:], responses)
    judged = torch.tensor(score(judge(config.judge, config.letters), decode(responses)), device=tokens.device)
    scored = judged if net.scorer is None else (net.scorer(prompts, responses) - net.scorer.score_mean) / \
        net.scorer.score_sd
    tokens, values, log_pi, log_ref, judged, scored = (gathered(t) for t in (tokens, values, log_pi, log_ref, judged,
                                                                             scored))
    rewards = token_rewards(scored, log_pi, log_ref, config.kl_coef)
    values_ext = torch.cat([values, values.new_zeros(len(values), 1)], 1)  # V = 0 after the last character
    advantages = gae(rewards, values_ext, config.gamma, config.lam)
    net.rollout.store(tokens=tokens, old_log_probs=log_pi, advantages=whiten(advantages),
                      returns=advantages + values, rewards=judged, scores=scored, kl=kl_k1(log_pi, log_ref).sum(-1))


def loss(net: PolicyWithValue, config: Config, batch, noise: dict[str, torch.Tensor], step: int):
    """A new rollout from the batch's prompts every ``ppo_epochs`` steps, then PPO's loss on the rollout: the
    clipped surrogate on the per-token ratios plus ``value_coef`` times the value error. Terms: the rollout's judge
    reward and KL (k1, per response), the clipped fraction, the k3 estimate of KL(pi_old || pi)."""
    if step % config.ppo_epochs == 0:  # a new rollout every ppo_epochs steps
        collect(net, config, prompts_of(batch[0], net.prompt_length), noise["u"].to(batch[0].device))
    r = net.rollout
    tokens, old_log_pi, advantages, returns = (my_rows(t) for t in (r.tokens, r.old_log_probs, r.advantages,
                                                                     r.returns))
    logits, values = net.logits_and_values(tokens)
    log_pi = action_log_probs(logits, tokens[:, net.prompt_length:])
    policy_loss = clipped_surrogate_loss(log_pi.flatten(), old_log_pi.flatten(), advantages.flatten(), config.clip)
    value_loss = 0.5 * torch.mean((values - returns) ** 2)
    ratio = torch.exp(log_pi.detach() - old_log_pi)
    terms = {"reward": r.rewards.mean(), "score": r.scores.mean(), "kl_k1": r.kl.mean(), "policy_loss": policy_loss.detach(),
             "value_loss": value_loss.detach(), "clip_fraction": ((ratio - 1).abs() > config.clip).float().mean(),
             "kl_old_k3": kl_k3(log_pi.detach(), old_log_pi).mean()}
    return policy_loss + config.value_coef * value_loss, terms


def evaluate(net: PolicyWithValue, config: Config, dataset, generator: torch.Generator) -> dict[str, float]:
    """``policy_gradient.training.fine_tuning_metrics`` of the PPO policy."""
    return pg.fine_tuning_metrics(net, config, dataset, generator)


def sample(net: PolicyWithValue, config: Config, n: int, generator: torch.Generator, examples=None):
    """As REINFORCE's: the policy's responses, and side by side with the reference's."""
    return pg.sample(net, config, n, generator, examples)


__all__ = ["HEADLINE", "Config", "build", "default_config", "draw_noise", "evaluate", "loss",
           "sample"]
