"""PPO and TRPO on gymnasium's CartPole-v1 through the engine (``--dataset cartpole``, data/control.py,
ppo/rollout.py): actions drawn by the inverse CDF of the engine's uniforms, GAE cut at episode ends with the right
bootstrap, an iteration's updates, runs that resume exactly (the episodes in progress replayed), TRPO's trust
region, conjugate gradient on a callable, the command line, results rows and one-line errors; the quick presets'
targets are slow tests."""

from __future__ import annotations

import json
from contextlib import nullcontext
from types import SimpleNamespace

import gymnasium
import numpy as np
import pytest
import torch
from resumption import assert_resumes_exactly
from torch import nn

from practice_torch.cli import main
from practice_torch.data.control import Environments
from practice_torch.engine.config import apply_overrides
from practice_torch.models import get_model, new_trainer
from practice_torch.ppo import rollout
from practice_torch.ppo import training as ppo_training
from practice_torch.ppo.functions import gae
from practice_torch.ppo.rollout import collect, episode_gae, to_batch
from practice_torch.trpo import training as trpo_training
from practice_torch.trpo.functions import conjugate_gradient
from practice_torch.trpo.natural import flat_grad, kl_fisher_product

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
GAMMA, LAM = 0.9, 0.8
TINY = ["train.batch_size=2", "model.rollout_steps=16", "model.hidden=8", "train.log_every=1", "train.samples=2",
        "train.checkpoint_every=100"]


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


def test_actions_follow_the_policy_by_the_inverse_cdf_of_the_uniforms():
    logits = torch.tensor([[0.3, -1.0, 1.2]]).expand(2000, 3)
    u = (torch.arange(2000) + 0.5) / 2000  # evenly spread uniforms: the counts are the probabilities
    actions, log_probs = rollout.sample_actions(logits, u)
    p = torch.softmax(logits[0], -1)
    counts = torch.bincount(actions, minlength=3) / 2000
    torch.testing.assert_close(counts, p, atol=1 / 2000, rtol=0)
    torch.testing.assert_close(log_probs, torch.log(p)[actions])
    hotter, _ = rollout.sample_actions(logits / 2, u)  # the control: another policy's counts are told apart
    assert not torch.allclose(torch.bincount(hotter, minlength=3) / 2000, p, atol=1 / 2000, rtol=0)


def test_a_control_task_is_a_data_set_of_episode_seeds_with_disjoint_splits():
    from practice_torch.data import get_dataset, get_info
    from practice_torch.data.control import TRAIN_SEEDS

    info = get_info("cartpole")
    assert info.modality == "control" and info.environment == "CartPole-v1" and info.actions == 2
    splits = {split: get_dataset("cartpole", split) for split in ("train", "val", "test")}
    assert all(len(d) == 100 and d.environment == "CartPole-v1" for d in splits.values())
    seeds = [set(d.seeds.tolist()) for d in splits.values()]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    drawn = {Environments.episode_seed(7, k) for k in range(1000)}
    assert max(drawn) < TRAIN_SEEDS <= min(seeds[1] | seeds[2])  # training never plays an evaluation episode
    assert len(drawn) == 1000 and drawn != {Environments.episode_seed(8, k) for k in range(1000)}  # the run's own
    assert get_dataset("cartpole", "test", limit=5).seeds.tolist() == splits["test"].seeds[:5].tolist()


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


def environments(max_episode_steps: int, n: int = 2, seed: int = 0) -> Environments:
    envs = Environments("CartPole-v1", n, seed)
    envs.envs = [gymnasium.make("CartPole-v1", max_episode_steps=max_episode_steps) for _ in range(n)]
    envs.episodes = 0
    for i in range(n):
        envs._start(i)
    return envs


def test_rollout_keeps_the_final_observation_and_to_batch_bootstraps_only_truncations():
    envs = environments(max_episode_steps=3)
    r = collect(envs, Constant(), torch.rand(2, 5))
    assert r.truncated[:, 2].all() and not r.terminated.any() and r.truncated.sum() == 2
    assert not torch.equal(r.next_obs[:, 2], r.obs[:, 3])  # the final observation, not the reset one
    assert torch.equal(r.next_obs[:, :2], r.obs[:, 1:3])
    assert envs.episodes == 4 and len(envs.finished) == 2 and envs.recent_return() == 3.0
    batch = to_batch(r, Linear(), GAMMA, LAM)
    values, next_values = Linear()(r.obs), Linear()(r.next_obs)
    dones = r.truncated | r.terminated
    torch.testing.assert_close(batch.advantages, episode_gae(r.rewards, values, next_values, dones, GAMMA,
                                                             LAM).reshape(-1))
    assert not torch.allclose(batch.advantages, episode_gae(r.rewards, values, next_values * ~dones, dones,
                                                            GAMMA, LAM).reshape(-1))  # truncation as termination

    envs = environments(max_episode_steps=500)
    r = collect(envs, Constant(), torch.rand(2, 30))
    assert r.terminated.any() and not r.truncated.any() and len(envs.finished) == int(r.terminated.sum())
    batch = to_batch(r, Linear(), GAMMA, LAM)
    zeroed = Linear()(r.next_obs) * ~r.terminated
    torch.testing.assert_close(batch.advantages, episode_gae(r.rewards, Linear()(r.obs), zeroed, r.terminated,
                                                             GAMMA, LAM).reshape(-1))
    assert not torch.allclose(batch.advantages, episode_gae(r.rewards, Linear()(r.obs), Linear()(r.next_obs),
                                                            r.terminated, GAMMA, LAM).reshape(-1))


def fake_run(envs, noise):
    """The engine's StepRun as a PPO or TRPO step sees it, with each update recorded instead of taken."""
    updates: list[dict] = []
    return SimpleNamespace(environments=envs, next_noise=lambda: noise, autocast=nullcontext,
                           update=lambda **losses: updates.append(losses), updates=updates)


def test_a_ppo_iteration_is_epochs_of_minibatches_over_one_rollout():
    torch.manual_seed(0)
    config = ppo_training.Config(epochs=3, minibatches=4, rollout_steps=8, gamma=0.99)
    net = rollout.ActorCritic(4, 2, 8)
    noise = ppo_training.draw_noise(net, config, 2, torch.Generator().manual_seed(1))
    assert noise["u"].shape == (2, 8) and noise["order"].shape == (2, 8, 3)
    envs = Environments("CartPole-v1", 2, 0)
    seen = []
    original = ppo_training.ppo_loss
    ppo_training.ppo_loss = lambda net, config, samples, rows: (seen.append(rows), original(net, config, samples,
                                                                                             rows))[1]
    try:
        run = fake_run(envs, noise)
        loss, terms = ppo_training.train_step(net, config, 0, run)
    finally:
        ppo_training.ppo_loss = original
    assert len(run.updates) == 12 and all(set(u) == {"policy"} for u in run.updates)
    for epoch in range(3):  # each pass: 4 disjoint minibatches that cover the 16 transitions, in the noise's order
        rows = seen[4 * epoch:4 * epoch + 4]
        assert [len(r) for r in rows] == [4] * 4
        assert torch.equal(torch.cat(rows), torch.argsort(noise["order"].reshape(16, 3)[:, epoch]))
    assert not torch.equal(seen[0], seen[4])  # the control: the passes are shuffled anew
    assert envs.steps == 16 and {"episode_return", "approx_kl", "clip_fraction", "entropy"} <= set(terms)


def test_the_first_update_of_an_iteration_is_a_plain_policy_gradient():
    """Before any update pi = pi_old: every ratio is 1, nothing is clipped, the k3 KL is 0, and the loss is
    -mean(A_normalised) + value_coef * value error - entropy_coef * entropy."""
    torch.manual_seed(0)
    config = ppo_training.Config(rollout_steps=16, gamma=0.99, entropy_coef=0.01)
    net = rollout.ActorCritic(4, 2, 8)
    noise = ppo_training.draw_noise(net, config, 2, torch.Generator().manual_seed(1))
    samples = ppo_training.collect_control(net, config, Environments("CartPole-v1", 2, 0), noise)
    rows = torch.arange(32)
    loss, terms = ppo_training.ppo_loss(net, config, samples, rows)
    assert float(terms["clip_fraction"]) == 0 and float(terms["approx_kl"]) == pytest.approx(0, abs=1e-7)
    a = samples.advantages
    expected = -torch.mean((a - a.mean()) / (a.std() + 1e-8)) + 0.5 * 0.5 * torch.mean(
        (net.value(samples.inputs) - samples.returns) ** 2) - 0.01 * rollout.entropy(net.policy(samples.inputs)).mean()
    torch.testing.assert_close(loss, expected)
    unnormalised = -torch.mean(a) + 0.5 * 0.5 * torch.mean((net.value(samples.inputs) - samples.returns) ** 2)
    assert not torch.allclose(loss, unnormalised)  # the control: the advantages are normalised


def tiny_config(model: str, *extra: str):
    return apply_overrides(get_model(model).default_config("quick", "cartpole"), [*TINY, *extra])


@pytest.mark.parametrize("model", ["ppo", "trpo"])
def test_a_resumed_run_ends_bit_identical(tmp_path, monkeypatch, model):
    cfg = tiny_config(model, "train.steps=4")
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=2)
    whole = new_trainer(cfg, tmp_path / "whole", resume=True)
    assert resumed.environments.state_dict() == whole.environments.state_dict()
    assert resumed.environments.steps == 4 * 2 * 16
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == [32, 64, 96, 128]

    # negative control: a resume that restarts the episodes in progress instead of replaying them drifts
    def restart(self, state):
        for i, episode in enumerate(state["in_progress"]):
            self._reset(i, episode["seed"] + 1)
        self.episodes, self.steps = state["episodes"], state["steps"]

    monkeypatch.setattr(Environments, "load_state_dict", restart)
    new_trainer(cfg, tmp_path / "drift").run(stop_at=2)
    drifted = new_trainer(cfg, tmp_path / "drift", resume=True)
    drifted.run()
    assert any(not torch.equal(v, whole.net.state_dict()[k]) for k, v in drifted.net.state_dict().items())


def trpo_control_step(net, config, envs, noise):
    run = fake_run(envs, noise)
    run.update = lambda **losses: None  # the critic's fit is not what this test looks at
    return trpo_training.control_step(net, config, run)


def test_trpo_accepts_only_steps_inside_the_trust_region():
    torch.manual_seed(3)
    net = rollout.ActorCritic(4, 2, 8)
    envs, generator = Environments("CartPole-v1", 2, 3), torch.Generator().manual_seed(3)
    kls = []
    for max_kl in (0.005, 0.005, 0.005, 1e-9):  # the last, the control: a region a millionth the size binds too
        config = trpo_training.Config(rollout_steps=64, max_kl=max_kl, value_epochs=1)
        before = [p.detach().clone() for p in net.policy.parameters()]
        _, terms = trpo_control_step(net, config, envs, trpo_training.draw_noise(net, config, 2, generator))
        assert float(terms["trust_kl"]) <= max_kl and float(terms["surrogate_gain"]) >= 0
        moved = any(not torch.equal(a, b) for a, b in zip(before, net.policy.parameters()))
        assert moved == (float(terms["step_fraction"]) > 0)
        kls.append(float(terms["trust_kl"]) if moved else None)
    assert sum(kl is not None and kl > 1e-4 for kl in kls[:3]) >= 2  # the steps use the region they are given


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
    policy = rollout.MLP((4, 5, 5, 3), 1.0).double()
    obs = torch.randn(7, 4, dtype=torch.float64)
    with torch.no_grad():
        old_logits = policy(obs)
    params = list(policy.parameters())
    rows = [flat_grad(policy(obs)[s, a], params) for s in range(7) for a in range(3)]
    jac = torch.stack(rows).reshape(7, 3, -1)
    p = torch.softmax(old_logits, -1)
    fisher = sum(jac[s].T @ (torch.diag(p[s]) - torch.outer(p[s], p[s])) @ jac[s] for s in range(7)) / 7
    v = torch.randn(fisher.shape[0], dtype=torch.float64)
    fvp = kl_fisher_product(lambda: trpo_training.policy_kl(policy, obs, old_logits), params, damping=0.1)
    torch.testing.assert_close(fvp(v), fisher @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(fvp(v), fisher @ v)  # the damping is there


@pytest.mark.parametrize("model", ["ppo", "trpo"])
def test_train_sample_eval_and_a_results_row_through_the_cli(tmp_path, model):
    from practice_torch.results import result_row

    run = tmp_path / model
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["train", model, "--dataset", "cartpole", "--steps", "3", "--out", str(run), *sets]) == 0
    assert (run / "samples" / "samples.png").stat().st_size > 1000
    assert "return" in (run / "samples" / "returns.txt").read_text()
    assert main(["eval", str(run), "--set", "model.eval_prompts=1"]) == 0  # a key of the text task: no effect here
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["episodes"] == 100 and metrics["min_return"] <= metrics["mean_return"] <= metrics["max_return"]
    row = result_row(run, "idle")
    assert row["kind"] == "control" and row["environment"] == "CartPole-v1" and row["env_steps"] == 96
    assert row["metric"] == "mean_return" and row["value"] == metrics["mean_return"]
    assert row["steps_to_solved"] is None  # three tiny iterations solve nothing
    assert main(["train", model, "--resume", str(run), "--steps", "4"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["env_steps"] == 128


@pytest.mark.parametrize("argv, words", [
    (["train", "vae", "--dataset", "cartpole"], "vae learns from a data set; cartpole is a control task"),
    (["train", "ppo", "--dataset", "cartpole", "--set", "train.batch_size=0"], "train.batch_size is the number"),
    (["train", "ppo", "--dataset", "cartpole", "--set", "model.minibatches=100", "--set", "model.rollout_steps=8"],
     "model.rollout_steps=8 steps an environment cannot be cut in model.minibatches=100"),
    (["train", "trpo", "--dataset", "cartpole", "--set", "model.value_epochs=0"], "must be positive"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and words in err[-1], err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ppo", "trpo"])
def test_the_quick_presets_solve_cartpole(tmp_path, model):
    run = tmp_path / model
    assert main(["train", model, "--dataset", "cartpole", "--out", str(run)]) == 0
    assert main(["eval", str(run)]) == 0
    assert json.loads((run / "eval_test.json").read_text())["mean_return"] >= 475
