"""Environments and rollouts for the control algorithms (PPO and TRPO on gymnasium tasks with discrete actions).

``EnvPool`` steps ``n`` copies of one environment in lockstep, each reset with a seed drawn from the run's generator
as soon as its episode ends, and names each episode in progress by its seed and actions so far (what a checkpoint
stores and a resumed run replays). ``collect_rollout`` gathers ``steps`` steps of every environment with the current
policy; ``to_batch`` flattens them with advantages by GAE cut at episode ends (``episode_gae``). ``normalise`` and
``entropy`` are the two per-batch quantities both updates use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from practice_torch.engine import RunError
from practice_torch.ppo.functions import gae


def make_env(name: str):
    """``gymnasium.make(name)`` after checking it has discrete actions and 1-D observations; ValueError otherwise."""
    import gymnasium

    try:
        env = gymnasium.make(name)
    except gymnasium.error.Error as exc:
        raise ValueError(f"unknown environment {name!r} ({type(exc).__name__}); try CartPole-v1, Acrobot-v1 or "
                         f"MountainCar-v0") from None
    if not isinstance(env.action_space, gymnasium.spaces.Discrete):
        env.close()
        raise ValueError(f"{name} has {type(env.action_space).__name__} actions; these algorithms need discrete "
                         f"ones (CartPole-v1, Acrobot-v1, MountainCar-v0)")
    if not isinstance(env.observation_space, gymnasium.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ValueError(f"{name} has observations {env.observation_space}; a 1-D Box is needed")
    return env


def draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


class EnvPool:
    """``n`` copies of one environment stepped in lockstep, each reset (with a seed drawn from the generator) as soon
    as its episode ends. ``state()`` names each episode in progress by its seed and actions so far; ``restore``
    replays them, which rebuilds a deterministic environment exactly."""

    def __init__(self, name: str, n: int):
        self.envs = [make_env(name) for _ in range(n)]
        self.obs_dim = self.envs[0].observation_space.shape[0]
        self.n_actions = int(self.envs[0].action_space.n)
        self.obs = np.zeros((n, self.obs_dim), np.float32)
        self.seeds, self.actions, self.returns = [0] * n, [[] for _ in range(n)], [0.0] * n

    def reset(self, i: int, seed: int) -> None:
        self.obs[i] = self.envs[i].reset(seed=seed)[0]
        self.seeds[i], self.actions[i], self.returns[i] = seed, [], 0.0

    def reset_all(self, generator: torch.Generator) -> None:
        for i in range(len(self.envs)):
            self.reset(i, draw_seed(generator))

    def step(self, actions: np.ndarray, generator: torch.Generator):
        """One step of every environment. actions: (n,) int -> (next_obs (n, D), rewards, terminated, truncated (n,),
        returns of the episodes that ended); next_obs is the observation the step led to, the final one of an ended
        episode, while ``self.obs`` moves on to the next episode's first."""
        next_obs = np.empty_like(self.obs)
        rewards, terminated, truncated = (np.zeros(len(self.envs), t) for t in (np.float32, bool, bool))
        finished = []
        for i, env in enumerate(self.envs):
            next_obs[i], rewards[i], terminated[i], truncated[i], _ = env.step(int(actions[i]))
            self.actions[i].append(int(actions[i]))
            self.returns[i] += float(rewards[i])
            self.obs[i] = next_obs[i]
            if terminated[i] or truncated[i]:
                finished.append(self.returns[i])
                self.reset(i, draw_seed(generator))
        return next_obs, rewards, terminated, truncated, finished

    def state(self) -> list[dict]:
        return [{"seed": s, "actions": a} for s, a in zip(self.seeds, self.actions)]

    def restore(self, state: list[dict]) -> None:
        if len(state) != len(self.envs):
            raise RunError(f"the checkpoint has {len(state)} environments, the config {len(self.envs)}")
        for i, episode in enumerate(state):
            self.reset(i, episode["seed"])
            for action in episode["actions"]:
                self.obs[i], reward = self.envs[i].step(action)[:2]
                self.returns[i] += float(reward)
            self.actions[i] = list(episode["actions"])


@dataclass
class Rollout:
    """``steps`` steps of ``B`` environments. obs, next_obs: (B, T, D) (next_obs[:, t] is what step t led to, the
    final observation where an episode ended); actions: (B, T) long; log_probs, rewards: (B, T);
    terminated, truncated: (B, T) bool; finished: the returns of the episodes that ended."""
    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    finished: list[float]


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ softmax(logits) and log pi(a). logits: (B, A) -> (B,) long, (B,)."""
    actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
    return actions, torch.log_softmax(logits, -1).gather(1, actions[:, None])[:, 0]


@torch.no_grad()
def collect_rollout(pool: EnvPool, policy: nn.Module, steps: int, generator: torch.Generator) -> Rollout:
    """``steps`` steps of every environment of ``pool`` with actions sampled from ``policy`` (obs (B, D) -> logits
    (B, A))."""
    columns: dict[str, list] = {k: [] for k in ("obs", "next_obs", "actions", "log_probs", "rewards", "terminated",
                                                "truncated")}
    finished: list[float] = []
    for _ in range(steps):
        obs = torch.from_numpy(pool.obs.copy())
        actions, log_probs = sample_actions(policy(obs), generator)
        next_obs, rewards, terminated, truncated, ended = pool.step(actions.numpy(), generator)
        finished += ended
        for key, value in zip(columns, (obs, next_obs, actions, log_probs, rewards, terminated, truncated)):
            columns[key].append(torch.as_tensor(value))
    return Rollout(**{k: torch.stack(v, dim=1) for k, v in columns.items()}, finished=finished)


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
    """(x - mean) / (std + 1e-8), the advantage normalisation of PPO's and TRPO's reference code. (N,) -> (N,)."""
    return (x - x.mean()) / (x.std(correction=1) + 1e-8)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(pi(.|s)) = -sum_a pi log pi. (N, A) -> (N,)."""
    log_p = torch.log_softmax(logits, -1)
    return -torch.sum(torch.exp(log_p) * log_p, -1)
