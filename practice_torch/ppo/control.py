"""PPO (Schulman et al. 2017) on a gymnasium classic-control task with discrete actions, CartPole-v1 by default.

    python -m practice_torch.ppo.control --env CartPole-v1 --preset quick --out runs/ppo-cartpole [--resume] [--eval]

Each iteration collects ``num_steps`` steps from each of ``num_envs`` environments with the current policy
(``collect_rollout``), computes advantages by GAE per episode (``episode_gae``: the bootstrap V(s') on a truncation,
0 on a termination), then runs ``epochs`` passes of ``minibatches`` minibatches of Adam on the clipped surrogate
(eq. 7) + ``vf_coef`` times the value's squared error - ``ent_coef`` times the entropy (eq. 9), the learning rate
decaying linearly to 0. Actor and critic are separate 64-64 tanh MLPs with orthogonal initialisation (CleanRL's
ppo.py, whose CartPole defaults are the ``full`` preset; unlike it, the value loss is not clipped).

The networks, checkpoints, metrics, the returns plot, the greedy evaluation and the command line are written here
once, the environments, the rollout and the per-episode GAE in ``practice_torch.ppo.rollout``;
``practice_torch.trpo.control`` reuses both with TRPO's update. Everything
random comes from one ``torch.Generator``: the actions and the seed of every episode's ``env.reset``; a checkpoint
stores the generator's state and, per environment, its episode's seed and actions so far, which a resumed run
replays, so that on the CPU it ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from practice_torch.engine import RunError
from practice_torch.engine.checkpoint import atomic_write
from practice_torch.engine.runs import write_environment
from practice_torch.ppo.functions import clipped_surrogate_loss, kl_k3
from practice_torch.ppo.rollout import Batch, EnvPool, collect_rollout, entropy, make_env, normalise, to_batch
from practice_torch.progress import progress

SOLVED = {"CartPole-v1": 475.0}  # gymnasium's reward_threshold


@dataclass
class ControlConfig:
    """What every algorithm here shares: the task, the rollout, GAE and the networks."""
    env: str = "CartPole-v1"
    total_steps: int = 500_000  # env steps over all environments
    num_envs: int = 4
    num_steps: int = 128  # per environment and iteration
    gamma: float = 0.99
    lam: float = 0.95
    hidden: int = 64
    seed: int = 1
    checkpoint_every: int = 25  # iterations


@dataclass
class PPOConfig(ControlConfig):
    epochs: int = 4
    minibatches: int = 4
    clip: float = 0.2
    lr: float = 2.5e-4
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5


PPO_PRESETS = {"full": PPOConfig(), "quick": PPOConfig(total_steps=150_000, num_steps=256, epochs=10, lr=1e-3)}


# ---- networks -----------------------------------------------------------------------------------------------------

class MLP(nn.Sequential):
    """in -> hidden -> hidden -> out with tanh, orthogonal weights (gain sqrt 2, the last ``last_gain``), zero
    biases; a squeezed (N,) output when out = 1. (N, in) -> (N, out)."""

    def __init__(self, sizes: tuple[int, ...], last_gain: float, generator: torch.Generator):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layer = nn.Linear(a, b)
            last = i == len(sizes) - 2
            nn.init.orthogonal_(layer.weight, last_gain if last else math.sqrt(2), generator=generator)
            nn.init.zeros_(layer.bias)
            layers += [layer] if last else [layer, nn.Tanh()]
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out[..., 0] if out.shape[-1] == 1 else out


def actor_critic(config: ControlConfig, obs_dim: int, n_actions: int, generator: torch.Generator):
    """Separate actor (obs -> logits, last gain 0.01) and critic (obs -> V, last gain 1), CleanRL's initialisation."""
    return (MLP((obs_dim, config.hidden, config.hidden, n_actions), 0.01, generator),
            MLP((obs_dim, config.hidden, config.hidden, 1), 1.0, generator))


# ---- PPO's update -------------------------------------------------------------------------------------------------

class PPO:
    """The actor, the critic, one Adam over both, and ``update``: epochs of minibatch steps on eq. 9's loss."""
    name = "ppo"

    def __init__(self, config: PPOConfig, obs_dim: int, n_actions: int, generator: torch.Generator):
        self.config, self.generator = config, generator
        self.policy, self.value = actor_critic(config, obs_dim, n_actions, generator)
        self.modules = {"policy": self.policy, "value": self.value}
        params = [*self.policy.parameters(), *self.value.parameters()]
        self.optimizers = {"adam": torch.optim.Adam(params, lr=config.lr, eps=1e-5)}

    def update(self, batch: Batch, done_fraction: float) -> dict[str, float]:
        c, adam = self.config, self.optimizers["adam"]
        adam.param_groups[0]["lr"] = c.lr * (1.0 - done_fraction)  # linear decay to 0 over the run
        n = batch.obs.shape[0]
        size = n // c.minibatches
        sums = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), 0.0)
        for _ in range(c.epochs):
            order = torch.randperm(n, generator=self.generator)
            for k in range(c.minibatches):
                idx = order[k * size:(k + 1) * size]
                logits = self.policy(batch.obs[idx])
                log_probs = torch.log_softmax(logits, -1).gather(1, batch.actions[idx, None])[:, 0]
                policy_loss = clipped_surrogate_loss(log_probs, batch.log_probs[idx], normalise(batch.advantages[idx]),
                                                     c.clip)  # eq. 7
                value_loss = 0.5 * torch.mean((self.value(batch.obs[idx]) - batch.returns[idx]) ** 2)
                ent = entropy(logits).mean()
                loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * ent  # eq. 9, as a loss
                adam.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_([p for g in adam.param_groups for p in g["params"]], c.max_grad_norm)
                adam.step()
                with torch.no_grad():
                    ratio = torch.exp(log_probs - batch.log_probs[idx])
                    stats = (policy_loss, value_loss, ent, kl_k3(batch.log_probs[idx], log_probs).mean(),
                             ((ratio - 1).abs() > c.clip).float().mean())
                for key, value in zip(sums, stats):
                    sums[key] += float(value.detach())
        return {k: v / (c.epochs * c.minibatches) for k, v in sums.items()}


# ---- checkpoints --------------------------------------------------------------------------------------------------

STATE = "state.json"  # written last: it names the weights file it belongs to


def save_run(out: Path, algo, generator: torch.Generator, pool: EnvPool, iteration: int) -> None:
    """Weights, Adam's moments and the generator state as safetensors, the rest (config, optimizer scalars,
    environments' episodes) as JSON; each written to a temporary file and renamed (``atomic_write``)."""
    folder = out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{m}.{k}": v.detach().clone().contiguous() for m, module in algo.modules.items()
               for k, v in module.state_dict().items()}
    tensors["generator"] = generator.get_state()
    groups = {}
    for name, opt in algo.optimizers.items():
        sd = opt.state_dict()
        for index, entry in sd["state"].items():
            for key, value in entry.items():
                tensors[f"optimizer.{name}.{index}.{key}"] = value.detach().clone().contiguous()
        groups[name] = sd["param_groups"]
    weights = f"iteration_{iteration:06d}.safetensors"
    atomic_write(folder / weights, lambda tmp: save_file(tensors, str(tmp)))
    state = {"algorithm": algo.name, "iteration": iteration, "weights": weights,
             "config": dataclasses.asdict(algo.config), "param_groups": groups, "envs": pool.state()}
    atomic_write(folder / STATE, lambda tmp: tmp.write_text(json.dumps(state) + "\n"))
    for old in folder.glob("iteration_*.safetensors"):
        if old.name != weights:
            old.unlink()


def load_run(out: Path, algo, generator: torch.Generator, pool: EnvPool) -> int:
    """Restore what ``save_run`` wrote into ``algo``, ``generator`` and ``pool``; the iteration reached."""
    folder = out / "checkpoints"
    try:
        state = json.loads((folder / STATE).read_text())
        tensors = load_file(str(folder / state["weights"]))
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"no readable checkpoint in {folder} ({type(exc).__name__}); run without --resume") from None
    if state["algorithm"] != algo.name:
        raise RunError(f"{out} is a {state['algorithm']} run, not {algo.name}")
    differ = [k for k, v in dataclasses.asdict(algo.config).items() if state["config"].get(k) != v]
    if differ:
        raise RunError(f"{out} was run with {differ[0]}={state['config'].get(differ[0])!r}, not "
                       f"{getattr(algo.config, differ[0])!r}; resume with the same settings")
    for m, module in algo.modules.items():
        module.load_state_dict({k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(f"{m}.")})
    for name, opt in algo.optimizers.items():
        prefix, entries = f"optimizer.{name}.", {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split(".", 1)
                entries.setdefault(int(index), {})[field] = value
        opt.load_state_dict({"state": entries, "param_groups": state["param_groups"][name]})
    generator.set_state(tensors["generator"])
    pool.restore(state["envs"])
    return int(state["iteration"])


# ---- the run ------------------------------------------------------------------------------------------------------

def check_config(config: ControlConfig) -> int:
    """The number of iterations; ValueError (one line) for settings that cannot run."""
    for key in ("total_steps", "num_envs", "num_steps", "hidden", "checkpoint_every"):
        if getattr(config, key) <= 0:
            flag = " (--steps)" if key == "total_steps" else ""
            raise ValueError(f"{key}{flag} must be positive, got {getattr(config, key)}")
    per_iteration = config.num_envs * config.num_steps
    if config.total_steps < per_iteration:
        raise ValueError(f"total_steps {config.total_steps} is less than one iteration ({config.num_envs} envs x "
                         f"{config.num_steps} steps = {per_iteration}); ask for more steps")
    if getattr(config, "minibatches", 1) <= 0 or per_iteration % getattr(config, "minibatches", 1):
        raise ValueError(f"minibatches must divide num_envs x num_steps = {per_iteration}")
    return config.total_steps // per_iteration


def read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def train(algorithm: Callable, config: ControlConfig, out: Path, resume: bool = False, stop_at: int | None = None,
          log=None):
    """Train ``algorithm(config, obs_dim, n_actions, generator)`` (``PPO`` or ``TRPO``) into ``out``: checkpoints,
    ``metrics.jsonl`` (a row per iteration) and ``returns.png``. ``stop_at``: stop after that iteration, as an
    interruption would (with a checkpoint). Returns the algorithm object."""
    iterations = check_config(config)
    out = Path(out)
    pool = EnvPool(config.env, config.num_envs)
    generator = torch.Generator().manual_seed(config.seed)
    algo = algorithm(config, pool.obs_dim, pool.n_actions, generator)
    if resume:
        start = load_run(out, algo, generator, pool)
    elif (out / "checkpoints" / STATE).exists():
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    else:
        start = 0
        pool.reset_all(generator)
    out.mkdir(parents=True, exist_ok=True)
    write_environment(out, torch.device("cpu"), 1, start)  # the machine and commit a results row quotes
    rows = [r for r in read_metrics(out) if r["iteration"] <= start]  # rows past the checkpoint are redone
    atomic_write(out / "metrics.jsonl", lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    per_iteration = config.num_envs * config.num_steps
    bar = progress(total=iterations, initial=start, desc=f"{algo.name} on {config.env}", unit="it", file=log)
    started = time.perf_counter()
    with open(out / "metrics.jsonl", "a") as metrics:
        for iteration in range(start + 1, iterations + 1):
            rollout = collect_rollout(pool, algo.policy, config.num_steps, generator)
            stats = algo.update(to_batch(rollout, algo.value, config.gamma, config.lam), (iteration - 1) / iterations)
            row = {"iteration": iteration, "env_steps": iteration * per_iteration, "episodes": len(rollout.finished),
                   "mean_return": float(np.mean(rollout.finished)) if rollout.finished else None, **stats,
                   "seconds": time.perf_counter() - started}
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            bar.set_postfix(ret=row["mean_return"], refresh=False)
            bar.update(1)
            if iteration % config.checkpoint_every == 0 or iteration in (iterations, stop_at):
                save_run(out, algo, generator, pool, iteration)
            if iteration == stop_at:
                break
    bar.close()
    write_environment(out, torch.device("cpu"), 1, max([start] + [r["iteration"] for r in read_metrics(out)]),
                      finished=True)
    plot_returns(read_metrics(out), out / "returns.png", f"{algo.name.upper()} on {config.env}",
                 SOLVED.get(config.env))
    return algo


def plot_returns(rows: list[dict], path: Path, title: str, solved: float | None) -> None:
    """Mean episodic return per iteration against env steps, with the solved threshold as a dashed line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["mean_return"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["env_steps"] for r in rows], [r["mean_return"] for r in rows], lw=1)
    if solved is not None:
        ax.axhline(solved, color="k", ls="--", lw=0.8, label=f"solved ({solved:g})")
        ax.legend(loc="lower right")
    ax.set(xlabel="env steps", ylabel="mean episodic return", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def evaluate(policy: nn.Module, env_name: str, episodes: int, seed: int) -> dict[str, Any]:
    """Returns of ``episodes`` greedy episodes (argmax of the logits), reset with seeds seed, seed + 1, ..."""
    env = make_env(env_name)
    returns = []
    for i in range(episodes):
        obs, total, done = env.reset(seed=seed + i)[0], 0.0, False
        while not done:
            action = int(torch.argmax(policy(torch.from_numpy(obs)[None])[0]))
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return {"env": env_name, "episodes": episodes, "policy": "greedy", "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)), "min_return": float(np.min(returns)), "returns": returns}


# ---- the command line ---------------------------------------------------------------------------------------------

EVAL_SEED = 1_000_000  # evaluation episodes use seeds the training draws rarely meet


def main(argv=None, algorithm: Callable = PPO, presets: dict | None = None) -> int:
    presets = PPO_PRESETS if presets is None else presets
    name = algorithm.name
    parser = argparse.ArgumentParser(prog=f"python -m practice_torch.{name}.control",
                                     description=f"{name.upper()} on a gymnasium classic-control task")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--preset", choices=sorted(presets), default="quick")
    parser.add_argument("--out", required=True, help="folder for checkpoints, metrics.jsonl, returns.png, eval.json")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--steps", type=int, help="env steps in all (default: the preset's)")
    parser.add_argument("--seed", type=int, help="default: the preset's")
    parser.add_argument("--eval", action="store_true", help="then evaluate the final policy: eval.json")
    parser.add_argument("--eval-episodes", type=int, default=100)
    args = parser.parse_args(argv)
    overrides = {"env": args.env, "total_steps": args.steps, "seed": args.seed}
    config = dataclasses.replace(presets[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    torch.set_num_threads(1)
    try:
        if args.eval_episodes <= 0:
            raise ValueError(f"--eval-episodes must be positive, got {args.eval_episodes}")
        started = time.perf_counter()
        algo = train(algorithm, config, Path(args.out), resume=args.resume)
        rows = read_metrics(Path(args.out))
        last = [r["mean_return"] for r in rows[-10:] if r["mean_return"] is not None]
        print(f"{name} on {config.env}: {rows[-1]['env_steps']} env steps, mean return of the last 10 iterations' "
              f"episodes {np.mean(last) if last else float('nan'):.1f}, {time.perf_counter() - started:.0f} s")
        if args.eval:
            result = evaluate(algo.policy, config.env, args.eval_episodes, EVAL_SEED)
            (Path(args.out) / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
            print(f"eval: {result['episodes']} greedy episodes, return {result['mean_return']:.1f} "
                  f"+- {result['std_return']:.1f}")
    except (ValueError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
