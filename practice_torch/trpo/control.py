"""TRPO (Schulman et al. 2015) on a gymnasium classic-control task with discrete actions, CartPole-v1 by default.

    python -m practice_torch.trpo.control --env CartPole-v1 --preset quick --out runs/trpo-cartpole [--resume] [--eval]

The rollout, the per-episode GAE, the networks, checkpoints, metrics and the command line are PPO's
(``practice_torch.ppo.control``); the update is TRPO's. With theta the policy network's flattened parameters:

1. g = grad_theta L(theta_old), L the importance-sampled surrogate (eq. 14; the project's ``surrogate``, each
   sample its own "state" of the (N, A) logits the network gives the batch), advantages normalised;
2. s ~ F^-1 g by ``conjugate_gradient`` on the callable v -> F v + damping v, where F v is the Hessian-vector product
   of the mean KL (``mean_kl``, uniform state weights 1/N) by double backprop (Appendix C);
3. the full step sqrt(2 delta / s^T F s) s, the step whose quadratic model of the KL is delta (Appendix C);
4. a backtracking line search over fractions 1, 1/2, 1/4, ... that accepts the first step with a higher surrogate
   and a measured mean KL <= delta, else keeps theta_old;
5. the value network (a separate 64-64 tanh MLP) fitted to the lambda-returns by epochs of minibatch Adam.
Steps 1-4 are ``natural.natural_step``, the same update as TRPO's on the language model (``trpo.training``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from practice_torch.ppo.control import ControlConfig, actor_critic, main
from practice_torch.ppo.rollout import Batch, entropy, normalise
from practice_torch.trpo.functions import mean_kl, surrogate
from practice_torch.trpo.natural import kl_fisher_product, natural_step


@dataclass
class TRPOConfig(ControlConfig):
    max_kl: float = 0.01  # delta
    damping: float = 0.1
    cg_iterations: int = 10
    backtracks: int = 10
    value_lr: float = 1e-3
    value_epochs: int = 10
    minibatches: int = 4  # of the value fit


# 2048 env steps an iteration (4 envs x 512); quick: PPO's quick budget, which TRPO also solves well within
TRPO_PRESETS = {"full": TRPOConfig(num_steps=512), "quick": TRPOConfig(total_steps=150_000, num_steps=512)}


def fisher_vector_product_of(policy: nn.Module, obs: torch.Tensor, old_logits: torch.Tensor, damping: float):
    """v -> F v + damping v, F the Hessian of the mean KL(pi_old || pi_theta) over the states ``obs`` (N, D) at
    theta = theta_old (``natural.kl_fisher_product`` of the project's ``mean_kl``, uniform state weights 1/N).
    (P,) -> (P,)."""
    return kl_fisher_product(lambda: _mean_kl(policy, obs, old_logits), list(policy.parameters()), damping)


def _mean_kl(policy: nn.Module, obs: torch.Tensor, old_logits: torch.Tensor) -> torch.Tensor:
    n = obs.shape[0]
    return mean_kl(old_logits, policy(obs), torch.full((n,), 1.0 / n, dtype=old_logits.dtype))


class TRPO:
    """The policy, the value network and its Adam, and ``update``: a natural-gradient step in the trust region."""
    name = "trpo"

    def __init__(self, config: TRPOConfig, obs_dim: int, n_actions: int, generator: torch.Generator):
        self.config, self.generator = config, generator
        self.policy, self.value = actor_critic(config, obs_dim, n_actions, generator)
        self.modules = {"policy": self.policy, "value": self.value}
        self.optimizers = {"value_adam": torch.optim.Adam(self.value.parameters(), lr=config.value_lr)}

    def policy_step(self, batch: Batch) -> dict[str, float]:
        """Steps 1-4 (``natural.natural_step``) on the batch's states, actions and normalised advantages."""
        c = self.config
        advantages = normalise(batch.advantages)
        states = torch.arange(batch.obs.shape[0])
        with torch.no_grad():
            old_logits = self.policy(batch.obs)
        step = natural_step(list(self.policy.parameters()),
                            lambda: surrogate(self.policy(batch.obs), old_logits, states, batch.actions, advantages),
                            lambda: _mean_kl(self.policy, batch.obs, old_logits), c.max_kl, c.cg_iterations,
                            c.damping, c.backtracks)
        return {"policy_loss": -step["surrogate_after"],
                "surrogate_gain": step["surrogate_after"] - step["surrogate_before"],
                "entropy": float(entropy(old_logits).mean()), "approx_kl": step["kl"],
                "step_fraction": step["step_fraction"], "clip_fraction": None}

    def fit_value(self, batch: Batch) -> float:
        """Epochs of minibatch Adam on 0.5 (V(s) - return)^2; the mean loss."""
        c, adam = self.config, self.optimizers["value_adam"]
        n = batch.obs.shape[0]
        size, total = n // c.minibatches, 0.0
        for _ in range(c.value_epochs):
            order = torch.randperm(n, generator=self.generator)
            for k in range(c.minibatches):
                idx = order[k * size:(k + 1) * size]
                loss = 0.5 * torch.mean((self.value(batch.obs[idx]) - batch.returns[idx]) ** 2)
                adam.zero_grad()
                loss.backward()
                adam.step()
                total += float(loss.detach())
        return total / (c.value_epochs * c.minibatches)

    def update(self, batch: Batch, done_fraction: float) -> dict[str, float]:
        stats = self.policy_step(batch)
        return {**stats, "value_loss": self.fit_value(batch)}  # 5.


if __name__ == "__main__":
    sys.exit(main(algorithm=TRPO, presets=TRPO_PRESETS))
