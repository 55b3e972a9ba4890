"""PPO and TRPO on gymnasium's CartPole-v1 (practice_torch.ppo.control, practice_torch.trpo.control): GAE cut at
episode ends with the right bootstrap, the rollout's records, runs that write their files and resume exactly, TRPO's
trust region, conjugate gradient on a callable, one-line errors; the quick presets' targets are slow tests."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from practice_torch.ppo import control
from practice_torch.ppo.control import PPO, PPO_PRESETS, PPOConfig
from practice_torch.ppo.functions import gae
from practice_torch.ppo.rollout import EnvPool, collect_rollout, episode_gae, to_batch
from practice_torch.trpo import control as trpo_control
from practice_torch.trpo.control import TRPO, TRPO_PRESETS, TRPOConfig, fisher_vector_product_of
from practice_torch.trpo.functions import conjugate_gradient
from practice_torch.trpo.natural import flat_grad

torch.set_num_threads(1)
GAMMA, LAM = 0.9, 0.8
TINY = {"total_steps": 96, "num_envs": 2, "num_steps": 16, "hidden": 8, "checkpoint_every": 100}


class Constant(nn.Module):
    """A policy that always picks action 0 (CartPole's pole then falls within a dozen steps)."""

    def forward(self, obs):
        return torch.tensor([30.0, -30.0]).expand(obs.shape[0], 2)


class Linear(nn.Module):
    """V(s) = sum(s) + 1: a critic whose values differ from state to state."""

    def forward(self, obs):
        return obs.sum(-1) + 1.0


def by_hand(rewards, values, bootstrap):
    """GAE of one episode piece, the recursion written out: values (L,), bootstrap V(s_L)."""
    out, carry = [], 0.0
    nxt = [*values[1:], bootstrap]
    for t in reversed(range(len(rewards))):
        carry = rewards[t] + GAMMA * nxt[t] - values[t] + GAMMA * LAM * carry
        out.append(carry)
    return out[::-1]


def test_episode_gae_bootstraps_on_truncation_and_not_on_termination():
    rewards = torch.tensor([[1.0, 2.0, 0.5, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.3, -0.2, 0.7, 0.1]], dtype=torch.float64)
    v_final, v_end = 5.0, -1.5  # V of the truncated episode's last observation; V(s_T) after the rollout
    dones = torch.tensor([[False, True, False, False]])
    truncated = episode_gae(rewards, values, torch.tensor([[0.0, v_final, 0.0, v_end]], dtype=torch.float64), dones,
                            GAMMA, LAM)
    expected = by_hand([1.0, 2.0], [0.3, -0.2], v_final) + by_hand([0.5, 1.0], [0.7, 0.1], v_end)
    torch.testing.assert_close(truncated[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    terminated = episode_gae(rewards, values, torch.tensor([[0.0, 0.0, 0.0, v_end]], dtype=torch.float64), dones,
                             GAMMA, LAM)
    expected = by_hand([1.0, 2.0], [0.3, -0.2], 0.0) + by_hand([0.5, 1.0], [0.7, 0.1], v_end)
    torch.testing.assert_close(terminated[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(truncated[:, :2], terminated[:, :2])  # the bootstrap matters
    assert torch.equal(truncated[:, 2:], terminated[:, 2:])  # and stays in its episode
    uncut = gae(rewards, torch.cat([values, torch.tensor([[v_end]], dtype=torch.float64)], 1), GAMMA, LAM)
    assert not torch.allclose(uncut, truncated)  # negative control: GAE run across the episode boundary


def pool_of(max_episode_steps: int, n: int = 2, seed: int = 0):
    pool = EnvPool("CartPole-v1", n)
    pool.envs = [gymnasium.make("CartPole-v1", max_episode_steps=max_episode_steps) for _ in range(n)]
    generator = torch.Generator().manual_seed(seed)
    pool.reset_all(generator)
    return pool, generator


def test_rollout_keeps_the_final_observation_and_to_batch_bootstraps_only_truncations():
    pool, generator = pool_of(max_episode_steps=3)
    rollout = collect_rollout(pool, Constant(), 5, generator)
    assert rollout.truncated[:, 2].all() and not rollout.terminated.any() and rollout.truncated.sum() == 2
    assert not torch.equal(rollout.next_obs[:, 2], rollout.obs[:, 3])  # the final observation, not the reset one
    assert torch.equal(rollout.next_obs[:, :2], rollout.obs[:, 1:3])
    batch = to_batch(rollout, Linear(), GAMMA, LAM)
    values, next_values = Linear()(rollout.obs), Linear()(rollout.next_obs)
    dones = rollout.truncated | rollout.terminated
    torch.testing.assert_close(batch.advantages, episode_gae(rollout.rewards, values, next_values, dones, GAMMA,
                                                             LAM).reshape(-1))
    assert not torch.allclose(batch.advantages, episode_gae(rollout.rewards, values, next_values * ~dones, dones,
                                                            GAMMA, LAM).reshape(-1))  # truncation as termination

    pool, generator = pool_of(max_episode_steps=500)
    rollout = collect_rollout(pool, Constant(), 30, generator)
    assert rollout.terminated.any() and not rollout.truncated.any()
    assert len(rollout.finished) == int(rollout.terminated.sum())
    batch = to_batch(rollout, Linear(), GAMMA, LAM)
    zeroed = Linear()(rollout.next_obs) * ~rollout.terminated
    torch.testing.assert_close(batch.advantages, episode_gae(rollout.rewards, Linear()(rollout.obs), zeroed,
                                                             rollout.terminated, GAMMA, LAM).reshape(-1))
    assert not torch.allclose(batch.advantages, episode_gae(rollout.rewards, Linear()(rollout.obs),
                                                            Linear()(rollout.next_obs), rollout.terminated, GAMMA,
                                                            LAM).reshape(-1))  # termination bootstrapped


@pytest.mark.parametrize("algorithm, config", [(PPO, PPOConfig(**TINY, minibatches=2)),
                                               (TRPO, TRPOConfig(**TINY, minibatches=2))])
def test_a_resumed_run_ends_bit_identical(tmp_path, monkeypatch, algorithm, config):
    def final(out):
        algo = algorithm(config, 4, 2, torch.Generator())
        generator, pool = torch.Generator(), EnvPool(config.env, config.num_envs)
        control.load_run(out, algo, generator, pool)
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in control.read_metrics(out)]
        return algo, generator, pool, rows

    control.train(algorithm, config, tmp_path / "whole")
    control.train(algorithm, config, tmp_path / "cut", stop_at=2)
    assert len(control.read_metrics(tmp_path / "cut")) == 2
    control.train(algorithm, config, tmp_path / "cut", resume=True)
    whole, cut = final(tmp_path / "whole"), final(tmp_path / "cut")
    for name in ("policy", "value"):
        for key, value in whole[0].modules[name].state_dict().items():
            assert torch.equal(value, cut[0].modules[name].state_dict()[key]), f"{name}.{key}"
    for name, opt in whole[0].optimizers.items():
        other = cut[0].optimizers[name].state_dict()["state"]
        for index, entry in opt.state_dict()["state"].items():
            for key, value in entry.items():
                assert torch.equal(value, other[index][key]), f"{name}.{index}.{key}"
    assert torch.equal(whole[1].get_state(), cut[1].get_state())
    assert whole[2].state() == cut[2].state() and whole[3] == cut[3]

    # negative control: a resume that restarts the episodes in progress instead of replaying them drifts
    monkeypatch.setattr(EnvPool, "restore", lambda self, state: [self.reset(i, e["seed"] + 1)
                                                                   for i, e in enumerate(state)])
    control.train(algorithm, config, tmp_path / "drift", stop_at=2)
    control.train(algorithm, config, tmp_path / "drift", resume=True)
    drift = [{k: v for k, v in r.items() if k != "seconds"} for r in control.read_metrics(tmp_path / "drift")]
    assert drift[:2] == whole[3][:2] and drift[2:] != whole[3][2:]


@pytest.mark.parametrize("module, steps", [(control, 2048), (trpo_control, 4096)])
def test_the_command_writes_its_files(tmp_path, capsys, module, steps):
    main = module.main if module is control else lambda argv: control.main(argv, TRPO, TRPO_PRESETS)
    out = tmp_path / "run"
    assert main(["--out", str(out), "--steps", str(steps), "--eval", "--eval-episodes", "3"]) == 0
    rows = control.read_metrics(out)
    assert [r["env_steps"] for r in rows] == [steps // 2, steps]
    for key in ("mean_return", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert key in rows[-1]
    assert (out / "returns.png").stat().st_size > 1000
    result = json.loads((out / "eval.json").read_text())
    assert result["episodes"] == 3 and len(result["returns"]) == 3 and result["mean_return"] > 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert (out / "checkpoints" / state["weights"]).is_file() and state["iteration"] == 2
    assert main(["--out", str(out), "--steps", str(steps), "--resume"]) == 0  # already complete: nothing to do
    assert len(control.read_metrics(out)) == 2
    # its results row: read off the run (the eval, the env steps, the machine and commit of environment.json)
    from practice_torch.results import control_row

    row = control_row(out, "idle")
    assert row["kind"] == "control" and row["model"] == module.__name__.split(".")[1] and row["preset"] == "custom"
    assert row["value"] == result["mean_return"] == row["metrics"][row["metric"]] and row["steps"] == steps
    assert row["commit"] and row["machine"]
    (out / "eval.json").unlink()  # the control: an unevaluated run has no row
    with pytest.raises(Exception, match="has no eval.json: evaluate it with --eval"):
        control_row(out, "idle")


def test_trpo_accepts_only_steps_inside_the_trust_region():
    config = TRPOConfig(**{**TINY, "num_steps": 64}, max_kl=0.005)
    pool, generator = EnvPool(config.env, config.num_envs), torch.Generator().manual_seed(3)
    pool.reset_all(generator)
    algo = TRPO(config, pool.obs_dim, pool.n_actions, generator)
    accepted = 0
    for _ in range(3):
        batch = to_batch(collect_rollout(pool, algo.policy, config.num_steps, generator), algo.value, 0.99, 0.95)
        with torch.no_grad():
            old_logits = algo.policy(batch.obs)
        before = [p.detach().clone() for p in algo.policy.parameters()]
        stats = algo.update(batch, 0.0)
        with torch.no_grad():
            logp_old, logp = torch.log_softmax(old_logits, -1), torch.log_softmax(algo.policy(batch.obs), -1)
            measured = float(torch.mean(torch.sum(torch.exp(logp_old) * (logp_old - logp), -1)))
        assert measured <= config.max_kl and measured == pytest.approx(stats["approx_kl"], rel=1e-4, abs=1e-9)
        assert stats["surrogate_gain"] >= 0
        moved = any(not torch.equal(a, b) for a, b in zip(before, algo.policy.parameters()))
        assert moved == (stats["step_fraction"] > 0)
        accepted += stats["step_fraction"] > 0
        if stats["step_fraction"] == 1.0:  # negative control: twice the full step leaves the region
            theta = torch.nn.utils.parameters_to_vector(algo.policy.parameters()).detach()
            old = torch.nn.utils.parameters_to_vector(before)
            torch.nn.utils.vector_to_parameters(old + 3 * (theta - old), algo.policy.parameters())
            with torch.no_grad():
                logp = torch.log_softmax(algo.policy(batch.obs), -1)
            assert float(torch.mean(torch.sum(torch.exp(logp_old) * (logp_old - logp), -1))) > config.max_kl
            torch.nn.utils.vector_to_parameters(theta, algo.policy.parameters())
    assert accepted >= 2


def test_conjugate_gradient_on_a_callable_equals_it_on_the_matrix():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    a, b = torch.tensor(m @ m.T + 0.1 * np.eye(6)), torch.tensor(rng.normal(size=6))
    assert torch.equal(conjugate_gradient(a, b, 6), conjugate_gradient(lambda v: a @ v, b, 6))
    assert not torch.allclose(conjugate_gradient(a, b, 6), conjugate_gradient(lambda v: a.T @ a @ v, b, 6))

    import jax.numpy as jnp

    from theory_jax.trpo import conjugate_gradient as jax_cg
    aj, bj = jnp.asarray(a.numpy()), jnp.asarray(b.numpy())
    np.testing.assert_array_equal(np.asarray(jax_cg(aj, bj, 6)), np.asarray(jax_cg(lambda v: aj @ v, bj, 6)))


def test_the_fisher_vector_product_of_the_network_is_its_kl_hessian():
    """F v by double backprop against F = sum_s w_s J_s^T (diag p_s - p_s p_s^T) J_s, J_s = d logits_s / d theta."""
    torch.manual_seed(0)
    policy = control.MLP((4, 5, 5, 3), 1.0, torch.Generator().manual_seed(0)).double()
    obs = torch.randn(7, 4, dtype=torch.float64)
    with torch.no_grad():
        old_logits = policy(obs)
    params = list(policy.parameters())
    rows = [flat_grad(policy(obs)[s, a], params) for s in range(7) for a in range(3)]
    jac = torch.stack(rows).reshape(7, 3, -1)
    p = torch.softmax(old_logits, -1)
    fisher = sum(jac[s].T @ (torch.diag(p[s]) - torch.outer(p[s], p[s])) @ jac[s] for s in range(7)) / 7
    v = torch.randn(fisher.shape[0], dtype=torch.float64)
    fvp = fisher_vector_product_of(policy, obs, old_logits, damping=0.1)
    torch.testing.assert_close(fvp(v), fisher @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(fvp(v), fisher @ v)  # the damping is there


@pytest.mark.parametrize("argv, words", [
    (["--env", "Pendulum-v1"], "Box actions"),
    (["--env", "NoSuchEnv-v0"], "unknown environment"),
    (["--steps", "-5"], "must be positive"),
    (["--steps", "100"], "less than one iteration"),
    (["--resume"], "no readable checkpoint"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    assert control.main(["--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err


def test_the_trpo_module_is_a_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "practice_torch.trpo.control", "--out", str(tmp_path), "--env",
                           "MountainCarContinuous-v0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Box actions" in done.stderr


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, capsys):
    config = PPOConfig(**TINY)
    control.train(PPO, config, tmp_path)
    with pytest.raises(control.RunError, match="--resume"):
        control.train(PPO, config, tmp_path)
    with pytest.raises(control.RunError, match="seed=1, not 2"):
        control.train(PPO, dataclasses.replace(config, seed=2), tmp_path, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, presets, target", [(PPO, PPO_PRESETS, 475.0), (TRPO, TRPO_PRESETS, 475.0)])
def test_the_quick_presets_solve_cartpole(tmp_path, algorithm, presets, target):
    algo = control.train(algorithm, presets["quick"], tmp_path)
    last = [r["mean_return"] for r in control.read_metrics(tmp_path)[-5:] if r["mean_return"] is not None]
    assert np.mean(last) >= target
    assert control.evaluate(algo.policy, "CartPole-v1", 20, control.EVAL_SEED)["mean_return"] >= target
