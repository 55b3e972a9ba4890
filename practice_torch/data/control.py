"""Control tasks as data sets: gymnasium's classic-control environments with discrete actions.

    python -m practice_torch train ppo --dataset cartpole     # CartPole-v1, solved at a mean return of 475

A control task's data are its episodes, and an episode is named by the seed of its ``env.reset``. So each split is
a list of seeds, 100 a split: the val and test splits are fixed, disjoint ranges (the episodes the samples and
``eval`` play), and training draws its episodes' seeds from the range below both (``Environments.episode_seed``), of
which the train split lists the first 100 (``eval --split train``). x: the seed, int64 (); no y.

``Environments`` is what a data loader is to a data set: ``n`` copies of the environment stepped in lockstep, each
reset with the next training episode's seed as soon as its episode ends. Its ``state_dict`` names each episode in
progress by its seed and its actions so far; ``load_state_dict`` replays them, which rebuilds a deterministic
environment exactly, so a resumed run continues the very episodes an interrupted one was playing.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch.utils.data import Dataset

from practice_torch.data import DatasetInfo, register

TRAIN_SEEDS = 2**30  # training episodes' seeds lie in [0, 2^30); val's and test's above
SPLITS = {"train": (0, 100), "val": (2**30, 100), "test": (2**30 + 10_000, 100)}  # (first seed, episodes) of a split
RECENT = 20  # finished episodes whose mean return is logged (``Environments.recent_return``)


def make_env(name: str):
    """``gymnasium.make(name)``, checked to have discrete actions and 1-D observations (ValueError, one line)."""
    import gymnasium

    try:
        env = gymnasium.make(name)
    except gymnasium.error.Error as exc:
        raise ValueError(f"unknown environment {name!r} ({type(exc).__name__})") from None
    if not isinstance(env.action_space, gymnasium.spaces.Discrete):
        env.close()
        raise ValueError(f"{name} has {type(env.action_space).__name__} actions; PPO and TRPO here need discrete ones")
    if not isinstance(env.observation_space, gymnasium.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ValueError(f"{name} has observations {env.observation_space}; a 1-D Box is needed")
    return env


class EpisodeSeeds(Dataset):
    """The seeds of a split's episodes of the gymnasium task ``environment``, one example each: x (), int64."""

    def __init__(self, environment: str, first: int, count: int):
        self.environment = environment
        self.seeds = torch.arange(first, first + count, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i):
        return (self.seeds[i],)


class Environments:
    """``n`` copies of one environment stepped in lockstep, each reset as soon as its episode ends with the next
    training episode's seed (``episode_seed(seed, k)`` for the run's k-th episode). ``obs``: (n, D), the current
    observations; ``recent_return()``: the mean return of the last ``RECENT`` finished episodes."""

    def __init__(self, name: str, n: int, seed: int):
        self.envs = [make_env(name) for _ in range(n)]
        self.seed = seed
        self.obs_dim = self.envs[0].observation_space.shape[0]
        self.n_actions = int(self.envs[0].action_space.n)
        self.obs = np.zeros((n, self.obs_dim), np.float32)
        self.episodes, self.steps = 0, 0  # episodes started and environment steps taken so far
        self.seeds, self.actions, self.returns = [0] * n, [[] for _ in range(n)], [0.0] * n
        self.finished: deque[float] = deque(maxlen=RECENT)
        for i in range(n):
            self._start(i)

    @staticmethod
    def episode_seed(seed: int, k: int) -> int:
        """The reset seed of the k-th training episode of a run seeded ``seed``: a hash, in [0, TRAIN_SEEDS)."""
        return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0] % TRAIN_SEEDS)

    def _start(self, i: int) -> None:
        self._reset(i, self.episode_seed(self.seed, self.episodes))
        self.episodes += 1

    def _reset(self, i: int, seed: int) -> None:
        self.obs[i] = self.envs[i].reset(seed=seed)[0]
        self.seeds[i], self.actions[i], self.returns[i] = seed, [], 0.0

    def step(self, actions: np.ndarray):
        """One step of every environment. actions: (n,) int -> (next_obs (n, D), rewards (n,), terminated,
        truncated (n,) bool); next_obs is what the step led to, the final observation of an episode that ended,
        while ``self.obs`` moves on to the next episode's first."""
        next_obs = np.empty_like(self.obs)
        self.steps += len(self.envs)
        rewards, terminated, truncated = (np.zeros(len(self.envs), t) for t in (np.float32, bool, bool))
        for i, env in enumerate(self.envs):
            next_obs[i], rewards[i], terminated[i], truncated[i], _ = env.step(int(actions[i]))
            self.actions[i].append(int(actions[i]))
            self.returns[i] += float(rewards[i])
            self.obs[i] = next_obs[i]
            if terminated[i] or truncated[i]:
                self.finished.append(self.returns[i])
                self._start(i)
        return next_obs, rewards, terminated, truncated

    def recent_return(self) -> float:
        """The mean return of the last ``RECENT`` finished episodes (0 before the first ends)."""
        return float(np.mean(self.finished)) if self.finished else 0.0

    def state_dict(self) -> dict:
        return {"episodes": self.episodes, "steps": self.steps, "finished": list(self.finished),
                "in_progress": [{"seed": s, "actions": list(a)} for s, a in zip(self.seeds, self.actions)]}

    def load_state_dict(self, state: dict) -> None:
        """Replay each episode in progress: its reset seed, then its actions."""
        if len(state["in_progress"]) != len(self.envs):
            raise ValueError(f"the checkpoint has {len(state['in_progress'])} environments, the run "
                             f"{len(self.envs)} (train.batch_size)")
        for i, episode in enumerate(state["in_progress"]):
            self._reset(i, episode["seed"])
            for action in episode["actions"]:
                self.obs[i], reward = self.envs[i].step(action)[:2]
                self.returns[i] += float(reward)
            self.actions[i] = list(episode["actions"])
        self.episodes, self.steps = int(state["episodes"]), int(state["steps"])
        self.finished = deque(state["finished"], maxlen=RECENT)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _loader(environment: str):
    def load(split: str, data_dir=None, limit: int | None = None) -> Dataset:
        first, count = SPLITS[split]
        return EpisodeSeeds(environment, first, count if limit is None else min(limit, count))
    load.__doc__ = f"The seeds of {environment}'s episodes of ``split`` (``EpisodeSeeds``)."
    return load


for _name, _env, _shape, _actions, _about in (
        ("cartpole", "CartPole-v1", (4,), 2, "a pole on a cart: +1 a step upright, 500 steps at most; solved at 475"),
        ("acrobot", "Acrobot-v1", (6,), 3, "a two-link arm swung above a line: -1 a step, 500 at most; solved at -100"),
):
    register(DatasetInfo(
        name=_name, modality="control", shape=_shape, dtype="float32 observations", value_range="unbounded",
        condition="none (an episode's seed)", load=_loader(_env),
        splits="episodes by reset seed, 100 a split: train's from [0, 2^30), where training draws its episodes' "
               "seeds, val's and test's fixed above it", source=f"gymnasium {_env}: {_about}",
        environment=_env, actions=_actions))

SOLVED = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0}  # gymnasium's reward_threshold of each task
OBSERVATIONS = {"CartPole-v1": ("cart position", "cart velocity", "pole angle", "pole angular velocity"),
                "Acrobot-v1": ("cos theta1", "sin theta1", "cos theta2", "sin theta2", "theta1 velocity",
                               "theta2 velocity")}  # what each entry of an observation is
