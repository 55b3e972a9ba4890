"""PPO's and TRPO's pieces for a control task (``data/control.py``: CartPole-v1 and the like, discrete actions),
written once for both: the actor-critic networks, a rollout of the environments with actions drawn from the
engine's uniforms, GAE cut at episode ends, the advantage normalisation both updates use, and the greedy episodes
that ``eval`` and the samples play.

A rollout is ``steps`` steps of each of the ``B`` environments (``collect``); ``to_batch`` flattens it to N = B T
samples with advantages by GAE per episode (``episode_gae``: the bootstrap V(s') on a truncation, 0 on a
termination) and returns A + V, the critic's targets. Nothing of it outlives the step that collected it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from practice_torch.data.control import OBSERVATIONS, SOLVED, Environments, EpisodeSeeds, make_env
from practice_torch.engine.interface import Artefact
from practice_torch.ppo.functions import gae


class MLP(nn.Sequential):
    """in -> hidden -> hidden -> out with tanh, orthogonal weights (gain sqrt 2, the last ``last_gain``), zero
    biases; a squeezed (N,) output when out = 1. (N, in) -> (N, out)."""

    def __init__(self, sizes: tuple[int, ...], last_gain: float):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layer = nn.Linear(a, b)
            last = i == len(sizes) - 2
            nn.init.orthogonal_(layer.weight, last_gain if last else math.sqrt(2))
            nn.init.zeros_(layer.bias)
            layers += [layer] if last else [layer, nn.Tanh()]
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out[..., 0] if out.shape[-1] == 1 else out


class ActorCritic(nn.Module):
    """Separate actor (obs -> logits, last gain 0.01) and critic (obs -> V, last gain 1), 64-64 tanh MLPs with
    CleanRL's orthogonal initialisation. (N, D) -> (N, A) and (N,)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int):
        super().__init__()
        self.policy = MLP((obs_dim, hidden, hidden, n_actions), 0.01)
        self.value = MLP((obs_dim, hidden, hidden, 1), 1.0)


def sample_actions(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ softmax(logits) by the inverse CDF of the uniforms u, and log pi(a). logits: (B, A), u: (B,) in [0, 1) ->
    (B,) long, (B,)."""
    cdf = torch.cumsum(torch.softmax(logits.double(), -1), -1)
    actions = torch.searchsorted(cdf, u.double()[:, None])[:, 0].clamp_max(logits.shape[-1] - 1)
    return actions, torch.log_softmax(logits, -1).gather(1, actions[:, None])[:, 0]


@dataclass
class Rollout:
    """``T`` steps of ``B`` environments. obs, next_obs: (B, T, D) (next_obs[:, t] is what step t led to, the final
    observation where an episode ended); actions: (B, T) long; log_probs, rewards: (B, T); terminated, truncated:
    (B, T) bool."""
    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


@torch.no_grad()
def collect(envs: Environments, policy: nn.Module, u: torch.Tensor) -> Rollout:
    """One step of every environment per column of u with actions drawn from ``policy`` (obs (B, D) -> logits
    (B, A)) by those uniforms. u: (B, T) in [0, 1)."""
    columns: dict[str, list] = {k: [] for k in ("obs", "next_obs", "actions", "log_probs", "rewards", "terminated",
                                                "truncated")}
    for t in range(u.shape[1]):
        obs = torch.from_numpy(envs.obs.copy())
        actions, log_probs = sample_actions(policy(obs), u[:, t])
        next_obs, rewards, terminated, truncated = envs.step(actions.numpy())
        for key, value in zip(columns, (obs, next_obs, actions, log_probs, rewards, terminated, truncated)):
            columns[key].append(torch.as_tensor(value))
    return Rollout(**{k: torch.stack(v, dim=1) for k, v in columns.items()})


def episode_gae(rewards, values, next_values, dones, gamma: float, lam: float) -> torch.Tensor:
    """GAE (Schulman et al. 2016, eq. 16) cut at episode ends: the project's ``gae`` on each episode's piece of each
    row, with V(s_{t+1}) = next_values at the piece's last step (0 after a termination, V(s') after a truncation or
    at the rollout's end). rewards, values, next_values: (B, T); dones: (B, T) bool -> advantages (B, T)."""
    out = torch.empty_like(rewards)
    for b in range(rewards.shape[0]):
        ends = torch.nonzero(dones[b]).flatten().tolist()
        start = 0
        for end in ends + ([rewards.shape[1] - 1] if not ends or ends[-1] != rewards.shape[1] - 1 else []):
            piece = torch.cat([values[b, start:end + 1], next_values[b, end:end + 1]])[None]
            out[b, start:end + 1] = gae(rewards[b, start:end + 1][None], piece, gamma, lam)[0]
            start = end + 1
    return out


@dataclass
class Batch:
    """A rollout flattened to N = B T samples. obs: (N, D); actions: (N,) long; log_probs, advantages, returns: (N,)."""
    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


@torch.no_grad()
def to_batch(rollout: Rollout, value: nn.Module, gamma: float, lam: float) -> Batch:
    """Advantages by ``episode_gae`` from the critic's V(s_t) and V(s_{t+1}) (0 where s_{t+1} is terminal);
    returns A + V, the critic's targets (the lambda-return)."""
    b, t, d = rollout.obs.shape
    values = value(rollout.obs.reshape(b * t, d)).reshape(b, t)
    next_values = value(rollout.next_obs.reshape(b * t, d)).reshape(b, t) * ~rollout.terminated
    advantages = episode_gae(rollout.rewards, values, next_values, rollout.terminated | rollout.truncated, gamma, lam)
    return Batch(rollout.obs.reshape(b * t, d), rollout.actions.reshape(-1), rollout.log_probs.reshape(-1),
                 advantages.reshape(-1), (advantages + values).reshape(-1))


def normalise(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (sd + 1e-8), the sd with Bessel's correction: the advantage normalisation of PPO's and TRPO's
    reference code (per minibatch in PPO, as CleanRL's; over the batch in TRPO). (...) -> (...)."""
    return (x - x.mean()) / (x.std(correction=1) + 1e-8)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(pi(.|s)) = -sum_a pi log pi. (N, A) -> (N,)."""
    log_p = torch.log_softmax(logits, -1)
    return -torch.sum(torch.exp(log_p) * log_p, -1)


def minibatches(keys: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """A pass over N samples in ``count`` minibatches: the permutation that sorts the uniform keys (N,), cut in
    ``count`` near-equal parts of indices."""
    return torch.argsort(keys).chunk(count)


# ---- greedy episodes: eval and the samples -------------------------------------------------------------------------

@torch.no_grad()
def greedy_episode(policy: nn.Module, env_name: str, seed: int) -> np.ndarray:
    """One episode of the greedy policy (the argmax of the logits) from ``env.reset(seed=seed)``: its observations
    and rewards, (T, D + 1)."""
    env = make_env(env_name)
    obs, done, rows = env.reset(seed=seed)[0], False, []
    device = next(policy.parameters()).device
    while not done:
        action = int(torch.argmax(policy(torch.as_tensor(obs, device=device)[None])[0]))
        nxt, reward, terminated, truncated, _ = env.step(action)
        rows.append([*obs, reward])
        obs, done = nxt, terminated or truncated
    env.close()
    return np.asarray(rows, np.float64)


def greedy_returns(policy: nn.Module, episodes: EpisodeSeeds) -> dict[str, float]:
    """The greedy policy's returns over a split's episodes (``eval``): mean, sd, min and max."""
    env_name, seeds = episodes.environment, episodes.seeds.tolist()
    returns = np.array([greedy_episode(policy, env_name, int(s))[:, -1].sum() for s in seeds])
    return {"mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "min_return": float(returns.min()), "max_return": float(returns.max()), "episodes": len(returns)}


def episode_artefacts(policy: nn.Module, episodes: EpisodeSeeds, n: int) -> list[Artefact]:
    """What the samples of a control run show: the first n of a split's episodes played greedily, each one's
    observations over time, one panel each (an image), and their returns (text)."""
    env_name, seeds = episodes.environment, episodes.seeds[:n].tolist()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    episodes = [greedy_episode(policy, env_name, int(s)) for s in seeds]
    names = OBSERVATIONS.get(env_name) or [f"obs[{d}]" for d in range(episodes[0].shape[1] - 1)]
    fig, axes = plt.subplots(len(episodes), 1, figsize=(6, 1.6 * len(episodes)), dpi=100, squeeze=False, sharex=True)
    for ax, seed, episode in zip(axes[:, 0], seeds, episodes):
        for d in range(episode.shape[1] - 1):
            ax.plot(episode[:, d], lw=0.8, label=names[d])
        ax.set_title(f"seed {int(seed)}: return {episode[:, -1].sum():g}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6, ncol=len(names), loc="upper right")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.canvas.draw()
    image = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()).permute(2, 0, 1)[None] / 255.0
    plt.close(fig)
    line = f" (solved: {SOLVED[env_name]:g})" if env_name in SOLVED else ""
    text = [f"{env_name}, greedy policy{line}"] + [f"seed {int(s)}: return {e[:, -1].sum():g} in {len(e)} steps"
                                                   for s, e in zip(seeds, episodes)]
    return [Artefact("samples", "images", image, nrow=1), Artefact("returns", "text", ["\n".join(text)])]
