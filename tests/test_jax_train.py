"""Training in JAX (``python -m practice_jax train``, ``practice_jax/``): a JAX run is a run the PyTorch
side reads, its step is the engine's step (the twin-training cases pass: ``test_twin_training.py``), and each
fault of an optimizer written by hand is caught."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import torch

from practice_jax import cli, state, twin_cases, twin_training
from practice_jax.__main__ import main as practice_jax
from practice_jax.runs import JaxRun
from practice_jax.twin_cases import GAN_RUN
from practice_jax.twin_cases import VAE_RUN as RUN
from practice_jax.twin_training import RunCase, caught
from project.catalogue import ROOT


def sigterm_after_step(monkeypatch, step: int) -> None:
    """Every JaxRun sends its own process SIGTERM once it has taken ``step`` steps (a preempted machine)."""
    advance = JaxRun.advance

    def advance_then_signal(run):
        logged = advance(run)
        if run.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return logged

    monkeypatch.setattr(JaxRun, "advance", advance_then_signal)


CASE = RunCase("vae/run/mlp-controls", "vae", (*RUN, "model.architecture=mlp", "model.hidden=16"), dataset="digits",
               steps=12)


def engine_and_reference(case, steps: int, folder):
    """(the engine's Trainer after ``steps`` steps of ``case``'s run, in float32 on one thread; ``torch_run``'s
    result for the same steps in float32)."""
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    reference, _, _ = twin_training.torch_run(RunCase(case.id, case.model, case.overrides, case.dataset, steps=steps,
                                                  dtype="float32"))
    cfg = apply_overrides(get_model(case.model).default_config("quick", case.dataset),
                          [f"train.steps={steps}", "train.device=cpu", "train.threads=1", *case.overrides])
    trainer = new_trainer(cfg, folder)
    try:
        trainer.run(stop_at=steps)
    finally:
        trainer.close()
    return trainer, reference


def test_the_twin_runs_reference_is_the_engines_own_step(tmp_path):
    """``torch_run`` in float32 is bit for bit what the engine's Trainer does in as many steps: the PyTorch side of
    a twin-training case is the engine's step, not a copy of it that could drift."""
    trainer, reference = engine_and_reference(CASE, 6, tmp_path / "run")
    weights = dict(trainer.net.named_parameters())
    assert all(np.array_equal(reference["weights"][n], weights[n].detach().numpy()) for n in weights)
    assert all(np.array_equal(reference["ema"][n], trainer.ema.shadow[n].numpy()) for n in weights)
    assert not np.array_equal(reference["weights"]["decoder.out.weight"],  # the control: one step fewer differs
                              twin_training.torch_run(RunCase(CASE.id, CASE.model, CASE.overrides, CASE.dataset, steps=5,
                                                          dtype="float32"))[0]["weights"]["decoder.out.weight"])


def _adam_without_bias_correction(train):
    """AdamW whose moments are used as they are, without 1 / (1 - beta^t): a fault a hand-written Adam makes."""
    import jax
    import jax.numpy as jnp
    import optax

    b1, b2 = train.betas

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (zeros, zeros)

    def update(grads, state, params=None):
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state[0], grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state[1], grads)
        return jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + 1e-8), mu, nu), (mu, nu)

    return optax.chain(state.clip_like_torch(train.grad_clip), optax.GradientTransformation(init, update),
                       optax.add_decayed_weights(train.weight_decay),
                       optax.scale_by_learning_rate(state.lr_schedule(train)))


def _ema_before_the_step(loss, train_state, batch, noise):
    """The default step with the EMA taken of the parameters before the update instead of after it."""
    import jax
    import optax

    (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(train_state.params, batch, noise, train_state.step)
    shadow = state.ema_update(train_state.shadow, train_state.params, train_state.ema, train_state.step + 1)
    updates, opt_state = train_state.tx.update(grads, train_state.opt_state, train_state.params)
    params = optax.apply_updates(train_state.params, updates)
    return (train_state.replace(params=params, opt_state=opt_state, shadow=shadow, step=train_state.step + 1),
            {"loss": value, **terms})


def _schedule_a_step_late(train):
    """AdamW whose learning rate is read one update late (the schedule at the count before)."""
    import optax

    schedule = state.lr_schedule(train)
    return optax.chain(state.clip_like_torch(train.grad_clip),
                       optax.adamw(lambda count: schedule(count - 1), b1=train.betas[0], b2=train.betas[1], eps=1e-8,
                                   weight_decay=train.weight_decay))


@pytest.mark.parametrize(("name", "alter", "where"), [
    ("a wrong Adam beta2 (0.99)", lambda parts: {**parts, "optimizer": lambda t: state.optimizer(
        t, betas=(t.betas[0], 0.99))}, "weights"),
    ("Adam without its bias correction", lambda parts: {**parts, "optimizer": _adam_without_bias_correction},
     "weights"),
    ("the EMA taken before the update", lambda parts: {**parts, "step": _ema_before_the_step}, "ema"),
    ("the learning-rate schedule a step late", lambda parts: {**parts, "optimizer": _schedule_a_step_late},
     "weights"),
])
def test_a_faulty_jax_step_is_caught(name, alter, where, both):
    message = caught(CASE, name, alter)
    assert where in message


def test_practice_jax_trains_a_vae_into_a_run_pytorch_samples_evaluates_resumes_and_checks(loss_plot, tmp_path, capsys):
    from practice_torch.cli import main as torch_main
    from theory_jax.cli import main as jax_main

    run = tmp_path / "run"
    settings = ["--set", "model.architecture=mlp", "--set", "model.hidden=16", "--set", "model.latent_dim=2",
                "--set", "train.batch_size=32", "--set", "train.log_every=5", "--set", "train.checkpoint_every=10",
                "--set", "train.samples=4", "--set", "model.nll_examples=8", "--set", "model.nll_samples=4"]
    assert practice_jax(["train", "vae", "--dataset", "digits", "--steps", "15", "--out", str(run), *settings]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out = capsys.readouterr().out  # the end of the run: its loss and wall time, as PyTorch's trainer says them
    assert "trained vae in JAX for 15 steps in " in out and f", loss {lines[-1]['loss']:.4g} at the last log step" in out
    assert [r["step"] for r in lines] == [5, 10, 15] and lines[-1]["loss"] < lines[0]["loss"]
    assert {"loss", "grad_norm", "lr", "kl", "recon_nll"} <= set(lines[0])
    assert (run / "loss.png").is_file() and (run / "samples" / "samples.png").is_file()
    assert torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    assert json.loads((run / "eval_test.json").read_text())["nll_bits_per_dim"] > 0
    from practice_torch.results import result_row
    from shared_specs.docs import results_table

    row = result_row(run, "idle")
    assert row["backend"] == "jax" and "trained in JAX" in results_table([row], None)
    assert practice_jax(["train", "vae", "--resume", str(run), "--set", "train.lr=nan"]) == 2  # as PyTorch refuses it
    assert "train.lr=nan': expected a finite number" in capsys.readouterr().err
    assert torch_main(["train", "vae", "--resume", str(run), "--steps", "20"]) == 0  # PyTorch continues the run
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 20
    row = result_row(run, "idle")  # the control: its last session was PyTorch's
    assert "backend" not in row and "trained in JAX" not in results_table([row], None) and row["resumed"]
    assert jax_main(["check", str(run), "--examples", "8"]) == 0
    capsys.readouterr()
    assert practice_jax(["train", "vae", "--dataset", "digits", "--out", str(run)]) == 2  # a run is already there
    assert "already holds a run" in capsys.readouterr().err
    assert practice_jax(["train", "wgan"]) == 2
    assert "no JAX trainer yet; choose from vae" in capsys.readouterr().err


def test_only_the_biases_a_normalisation_removes_go_uncompared():
    """The conv VAE's convolutions before a GroupNorm have biases the loss does not depend on (rounding-noise
    gradients, which Adam scales up differently in each backend): those alone are left out of a run case's
    comparison; the MLP has none."""


    cases = {c.id: c for c in twin_cases.cases_of("vae")}
    conv = dataclasses.replace(cases["vae/run/conv-gaussian-conditional"], steps=3)
    assert twin_training.torch_run(conv)[2] == ["decoder.deconvs.0.bias", "encoder.convs.0.bias", "encoder.convs.1.bias"]
    assert twin_training.torch_run(dataclasses.replace(cases["vae/run/mlp"], steps=3))[2] == []


def test_practice_jax_trains_the_character_transformer_and_refuses_what_its_twin_lacks(tmp_path, capsys):

    run, tiny = tmp_path / "lm", ["--set", "model.dim=16", "--set", "model.layers=1", "--set", "model.heads=2",
                                  "--set", "model.context=16", "--set", "train.batch_size=4", "--set",
                                  "train.log_every=5", "--set", "train.val_batch=4", "--set", "train.samples=1", "--set",
                                  "model.bpe_merges=0", "--set", "model.sample_length=16"]
    assert practice_jax(["train", "language_model", "--steps", "10", "--out", str(run), *tiny]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10] and {"val_loss", "bits_per_char"} <= set(lines[-1])
    assert (run / "samples" / "samples.txt").is_file() and (run / "checkpoints" / "latest.json").is_file()
    capsys.readouterr()
    for setting, message in (("model.architecture=lstm", "only the transformer has one"),
                             ("model.dropout=0.1", "draws no dropout masks")):
        assert practice_jax(["train", "language_model", "--steps", "2", "--out", str(tmp_path / "x"), *tiny,
                         "--set", setting]) == 2
        assert message in capsys.readouterr().err


def test_a_signal_checkpoints_a_jax_run_and_resume_continues_it_exactly(tmp_path, capsys, monkeypatch):
    """SIGTERM finishes the step, checkpoints (in torch's layout) and exits with 128 + 15; ``--resume`` restores the
    weights, Adam's moments and counts, the EMA, the batch order and the noise, so the run ends where an
    uninterrupted one does."""

    from practice_torch.engine.checkpoint import load_checkpoint

    settings = ["--dataset", "digits", "--set", "model.architecture=mlp", "--set", "model.hidden=16", "--set",
                "model.latent_dim=2", "--set", "train.batch_size=32", "--set", "train.log_every=2", "--set",
                "train.samples=2", "--set", "train.ema_decay=0.9"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(["vae", "--steps", "6", "--out", str(whole), *settings]) == 0
    sigterm_after_step(monkeypatch, 3)
    assert cli.main(["vae", "--steps", "6", "--out", str(part), *settings]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped by SIGTERM after step 3; checkpoint saved" in err and f"--resume {part}" in err
    stopped, state = load_checkpoint(part / "checkpoints", "vae")
    assert not (part / "samples").exists()  # an interrupted run has not finished
    # what PyTorch's --resume reads too: AdamW's exp_avg/exp_avg_sq are optax's mu/nu, the step count and the
    # schedule where the JAX run left them
    moments = state["optimizer"]["state"]
    assert state["step"] == 3 and state["scheduler"]["last_epoch"] == 3
    assert all(float(s["step"]) == 3.0 and torch.all(s["exp_avg_sq"] >= 0) for s in moments.values())
    assert any(float(s["exp_avg"].abs().sum()) > 0 for s in moments.values())
    monkeypatch.undo()
    assert cli.main(["vae", "--resume", str(part)]) == 0
    (a, sa), (b, sb) = load_checkpoint(whole / "checkpoints", "vae"), load_checkpoint(part / "checkpoints", "vae")
    assert sb["step"] == 6 and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(v, sb["ema"]["shadow"][k]) for k, v in sa["ema"]["shadow"].items())
    assert all(torch.equal(s[k], sb["optimizer"]["state"][i][k]) for i, s in sa["optimizer"]["state"].items()
               for k in ("exp_avg", "exp_avg_sq"))
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (whole, part)]
    assert losses[1][-1] == losses[0][-1]
    assert not all(torch.equal(stopped[k], b[k]) for k in b)  # control: the resumed steps moved the weights
    capsys.readouterr()
    assert cli.main(["vae", "--resume", str(part), "--out", str(tmp_path / "x")]) == 2
    assert "drop --out" in capsys.readouterr().err
    assert cli.main(["vae", "--resume", str(part), "--set", "model.hidden=8"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    # fewer steps than trained would train nothing and write a config.json of fewer: refused, nothing changed
    config = (part / "config.json").read_bytes()
    assert cli.main(["vae", "--resume", str(part), "--steps", "5"]) == 2
    assert "it has trained 6 already; give --steps 6 or more" in capsys.readouterr().err
    assert (part / "config.json").read_bytes() == config


class Killed(BaseException):
    """A SIGKILL, as a test can send one in-process: nothing after it runs, no handler sees it."""


def test_a_jax_run_killed_before_its_first_checkpoint_resumes_from_step_0(loss_plot, tmp_path, capsys, monkeypatch):
    """A JAX run killed before its first checkpoint (its config.json and log lines written, no checkpoint): --resume
    trains it from step 0 and ends where the run never killed ends. Control: the note says it starts again. The run
    never killed draws no samples at its end (train.samples=0), the other does."""
    from practice_jax import loop
    from practice_torch.engine.checkpoint import load_checkpoint

    settings = ["--dataset", "digits", "--set", "model.architecture=mlp", "--set", "model.hidden=16", "--set",
                "model.latent_dim=2", "--set", "train.batch_size=32", "--set", "train.log_every=2", "--set",
                "train.samples=2", "--set", "train.checkpoint_every=4"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli.main(["vae", "--steps", "4", "--out", str(whole), *settings, "--set", "train.samples=0"]) == 0
    assert not (whole / "samples").exists() and (whole / "loss.png").is_file()

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(loop, "save", die)
    with pytest.raises(Killed):
        cli.main(["vae", "--steps", "4", "--out", str(killed), *settings])
    monkeypatch.undo()
    assert (killed / "config.json").is_file() and not (killed / "checkpoints").exists()
    capsys.readouterr()
    assert cli.main(["vae", "--resume", str(killed)]) == 0
    assert f"{killed} was stopped before its first checkpoint: training it from step 0" in capsys.readouterr().err
    (a, _), (b, sb) = load_checkpoint(whole / "checkpoints", "vae"), load_checkpoint(killed / "checkpoints", "vae")
    assert sb["step"] == 4 and all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert (killed / "samples/samples.png").is_file()


# The GAN: two players, each on its own optimizer (``shared_specs/twins/gan.py``, ``JaxGameRun``) --------------------
def _game_case(name: str = "dcgan-conditional-r1-sn-mbstd", steps: int = 4):
    """A GAN run case, shortened: a fault of the step shows in the first rounds, and compiling is most of the cost."""

    case = {c.id: c for c in twin_cases.cases_of("gan")}[f"gan/run/{name}"]
    return RunCase(f"{case.id}-controls", case.model, case.overrides, case.dataset, steps=steps)


def _generator_first(twin):
    """The round of the game with the players' order swapped: the generator's update, then the discriminator's."""
    objectives = twin.objectives

    def train_step(run, config):
        batch, noise = run.next_batch()
        g_loss, _ = run.update("generator", objectives["generator"], batch, noise)
        for _ in range(config.discriminator_steps):
            batch, noise = run.next_batch()
            _, terms = run.update("discriminator", objectives["discriminator"], batch, noise)
        return terms["discriminator_loss"] + g_loss, terms

    return train_step


def _one_after_the_other(twin):
    """Simultaneous updates done in turn: the discriminator's step, then the generator's gradient at the new
    discriminator (on the same batch), which the engine's ``run.update(discriminator=..., generator=...)`` is not."""
    objectives = twin.objectives

    def train_step(run, config):
        batch, noise = run.next_batch()
        _, terms = run.update("discriminator", objectives["discriminator"], batch, noise)
        g_loss, _ = run.update("generator", objectives["generator"], batch, noise)
        return terms["discriminator_loss"] + g_loss, terms

    return train_step


@pytest.mark.usefixtures("one_thread")  # the Trainer runs train.threads=1: the same kernels
def test_the_games_reference_is_the_engines_own_custom_step(tmp_path):
    """The PyTorch side of the GAN's twin-training cases is, bit for bit in float32, what the engine's Trainer does
    with the adapter's ``train_step``: both players' optimizers, the inner loop, R1, the batch norms' statistics."""
    trainer, reference = engine_and_reference(_game_case(steps=4), 4, tmp_path / "run")
    state = trainer.net.state_dict()
    assert set(reference["weights"]) > {n for n, _ in trainer.net.named_parameters()}  # the statistics too
    assert all(np.array_equal(reference["weights"][n], state[n].numpy()) for n in reference["weights"])
    assert all(np.array_equal(reference["ema"][n], trainer.ema.shadow[n].numpy()) for n in reference["ema"])


@pytest.mark.parametrize("fault", ["the players' order swapped", "simultaneous updates taken in turn",
                                   "flax's biased running variance", "the look-ahead's steps taken as constants",
                                   "spectral norm without the power iteration's update"])
def test_a_faulty_game_step_is_caught(fault, both, monkeypatch):
    import jax

    import theory_jax.f_divergence as jf
    import theory_jax.gan as jg

    if fault == "spectral norm without the power iteration's update":  # sigma from the vectors the run started with
        normalize = jg.spectral_normalize
        monkeypatch.setattr(jg, "spectral_normalize", lambda w, u, v, n_iter=1, eps=1e-12: normalize(w, u, v, 0, eps))
        mlp = RunCase("gan/run/mlp-sn-controls", "gan", (*GAN_RUN, "model.architecture=mlp", "model.hidden=16,16",
                                                         "model.r1=0", "model.spectral_norm=true"), "digits", steps=4)
        assert "loss" in caught(mlp, fault)  # the MLP's layers: the same SpectralDense, compiled sooner
    elif fault == "the look-ahead's steps taken as constants":  # the unrolled loss right, its gradient not (eq. 6)
        def unroll(loss, params, steps, lr):
            for _ in range(steps):
                grads = jax.lax.stop_gradient(jax.grad(loss)(params))
                params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
            return params

        monkeypatch.setattr(jg, "unroll", unroll)
        assert "loss" in caught(_game_case("mlp-conditional-unrolled"), fault)
    elif fault == "the players' order swapped":
        alter = lambda parts: {**parts, "train_step": _generator_first}  # noqa: E731
        assert "loss" in caught(_game_case("mlp-conditional-unrolled"), fault, alter)
    elif fault == "simultaneous updates taken in turn":
        alter = lambda parts: {**parts, "train_step": _one_after_the_other}  # noqa: E731
        assert "loss" in caught(_game_case("pacgan-simultaneous-packed"), fault, alter)
    else:  # the generator's batch norms updating their running variance by the batch's biased variance
        monkeypatch.setattr(jf, "batch_norm", lambda name, train: jf.nn.BatchNorm(
            use_running_average=not train, momentum=jf.BATCHNORM_MOMENTUM, epsilon=jf.BATCHNORM_EPS,
            use_fast_variance=False, name=name))
        message = caught(_game_case(), fault)
        assert "running_var" in message and "loss" not in message.split("\n")[0], message  # only the statistics


def test_practice_jax_trains_the_gan_into_a_run_pytorch_evaluates_and_either_backend_resumes(tmp_path, capsys):
    from practice_torch.cli import main as torch_main
    from practice_torch.engine.checkpoint import load_checkpoint

    run = tmp_path / "gan"  # spectrally normalised: its vectors cross to torch's parametrizations and back
    tiny = ["--set", "model.hidden=16,16", "--set", "train.batch_size=64", "--set", "train.log_every=4", "--set",
            "train.samples=200", "--set", "model.spectral_norm=true"]
    assert practice_jax(["train", "gan", "--steps", "8", "--out", str(run), *tiny]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 8]
    assert {"loss", "grad_norm_discriminator", "grad_norm_generator", "lr_generator", "d_real"} <= set(lines[-1])
    assert (run / "samples" / "samples.png").is_file()
    weights, state = load_checkpoint(run / "checkpoints", "gan")
    assert sorted(state["players"]) == ["discriminator", "generator"] and state["step"] == 8
    assert np.isclose(float(weights["discriminator.out.parametrizations.weight.0.v"].norm()), 1.0)
    assert torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    assert 0 <= json.loads((run / "eval_test.json").read_text())["modes_covered"] <= 8
    assert torch_main(["train", "gan", "--resume", str(run), "--steps", "10"]) == 0  # PyTorch continues it
    assert practice_jax(["train", "gan", "--resume", str(run), "--steps", "12"]) == 0  # and JAX continues that
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 12
    capsys.readouterr()
    assert practice_jax(["train", "gan", "--steps", "1", "--out", str(tmp_path / "sn"), "--set",
                     "model.spectral_norm=true", "--set", "model.discriminator_steps=0"]) == 2
    assert "discriminator_steps >= 1 only" in capsys.readouterr().err and not (tmp_path / "sn").exists()
    assert practice_jax(["train", "gan", "--steps", "1", "--out", str(tmp_path / "adam"), "--set",
                     "model.unrolled_steps=2", "--set", "model.unroll_optimizer=adam"]) == 2
    assert "unroll_optimizer=sgd" in capsys.readouterr().err and not (tmp_path / "adam").exists()
    assert practice_jax(["train", "gan", "--steps", "1", "--out", str(tmp_path / "grown"), "--dataset", "digits", "--set",
                     "model.progressive=true"]) == 2
    assert "does not grow the players" in capsys.readouterr().err and not (tmp_path / "grown").exists()


# DDPM: the default step on L_simple (``shared_specs/twins/ddpm.py``) ---------------------------------------------
def test_practice_jax_trains_ddpm_into_a_run_pytorch_evaluates_and_a_loss_without_the_null_token_is_caught(
        tmp_path, capsys, both, monkeypatch):
    import theory_jax.diffusion as jdiff
    from practice_torch.cli import main as torch_main

    run = tmp_path / "ddpm"
    tiny = ["--dataset", "gaussians", "--set", "model.hidden=16", "--set", "model.depth=1", "--set", "model.T=50",
            "--set", "model.sample_steps=5", "--set", "train.batch_size=32", "--set", "train.samples=50", "--set",
            "model.nll_examples=16", "--set", "train.log_every=2"]
    assert practice_jax(["train", "ddpm", "--steps", "4", "--out", str(run), *tiny]) == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    assert json.loads((run / "eval_test.json").read_text())
    capsys.readouterr()
    assert practice_jax(["train", "ddpm", "--steps", "2", "--out", str(tmp_path / "x"), "--dataset", "digits",
                     "--set", "model.dropout=0.1"]) == 2
    assert "draws no dropout masks" in capsys.readouterr().err
    case = {c.id: c for c in twin_cases.cases_of("ddpm")}["ddpm/run/mlp-conditional"]
    short = RunCase(f"{case.id}-controls", case.model, case.overrides, case.dataset, steps=4)
    monkeypatch.setattr(jdiff, "null_labels", lambda y, drop, num_classes: y)  # label dropout forgotten
    assert "loss" in caught(short, "no null token")


def test_practice_jax_train_refuses_the_values_practice_torch_train_refuses(tmp_path, capsys):
    """One validation for both trainers (``practice_torch.models.new_run_config``): --steps 0 and -5, and each
    numeric train key NaN, infinite or out of its range; one line, exit 2, nothing written. (On --resume:
    ``resumed_config``, in the VAE run's test above; valid values: test_cli's control.)"""
    from train_ranges import bad_values, numeric_train_keys

    out = tmp_path / "never"
    for argv, message in [(["--steps", "0"], "train.steps must be positive, got 0"),
                          (["--steps", "-5"], "train.steps must be positive, got -5"),
                          (["--devices", "999"], "--devices 999: this machine has"),
                          (["--devices", "0"], "--devices 0: this machine has"),
                          *((["--set", f"train.{key}={value}"], message) for key, kind in numeric_train_keys().items()
                            for value, message in bad_values(key, kind))]:
        assert cli.main(["vae", *argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert not out.exists()


def test_practice_jax_train_refuses_sgd_and_the_other_schedules_in_one_line(tmp_path, capsys):
    """The engine's other optimizer and schedules (``train.optimizer=sgd``, ``train.schedule=annealing``, DANN's, and
    ``exponential``, BiGAN's) are PyTorch's alone: the JAX trainer says so in one line, exit 2, nothing written."""
    out = tmp_path / "never"
    for change in ("train.optimizer=sgd", "train.schedule=annealing", "train.schedule=exponential"):
        assert cli.main(["vae", "--set", change, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and change in err and "AdamW and the cosine schedule" in err, err
    assert not out.exists()


# Many devices: the batch split over a mesh, the parameters replicated (``loop.data_mesh``) ------------------------------
DATA_PARALLEL = """
import json, os, sys
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from practice_jax.runs import new_run
from practice_torch.models import new_run_config

def gap(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]) / (1e-8 + 1e-8 * np.abs(b[k])))) for k in b if a[k].dtype.kind == "f")

out, saved = {"devices": len(jax.devices())}, {}
for model, sets in json.loads(sys.argv[1]).items():
    runs = {(n, seed): new_run(new_run_config(model, "quick", None, [*sets, f"train.seed={seed}"]), "float64",
                               devices=n) for n, seed in ((1, 0), (2, 0), (1, 1))}
    start = {k: v.numpy() for k, v in runs[1, 0].weights().items()}
    for run in runs.values():
        for _ in range(4):
            run.advance()
    weights = {key: {k: v.numpy() for k, v in run.weights().items()} for key, run in runs.items()}
    out[model] = {"placed_on": len(jax.tree.leaves(runs[2, 0].params)[0].sharding.device_set),
                  "two_against_one": gap(weights[2, 0], weights[1, 0]), "moved": gap(weights[1, 0], start),
                  "other_seed": gap(weights[1, 1], weights[1, 0])}
    saved.update({f"{model}/0|{k}": v for k, v in weights[1, 0].items()})
np.savez(sys.argv[2], **saved)
print(json.dumps(out))
"""

# Several hosts: processes joined by jax.distributed, process 0 writing (``practice_jax/hosts.py``); after the runs,
# the same two processes train the VAE again with every process placing the first rows (the negative control)
MULTI_PROCESS = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import practice_jax.hosts as hosts
from practice_jax.runs import new_run
from practice_torch.models import new_run_config

port, process, out, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
hosts.initialize(f"localhost:{port}", 2, process, resume=False, out=out, timeout=120)

def trained(model, sets):
    run = new_run(new_run_config(model, "quick", None, [*sets, "train.seed=0"]), "float64", devices=1)
    for _ in range(4):
        run.advance()
    return run, {k: v.numpy() for k, v in run.weights().items()}

saved = {}
for model, sets in models.items():
    run, weights = trained(model, sets)
    saved.update({f"{model}/0|{k}": v for k, v in weights.items()})
    saved[f"{model}/placed_on"] = np.array(len(jax.tree.leaves(run.params)[0].sharding.device_set))

def first_rows(array, sharding):  # the fault: every process places the first block of rows as its own
    host = np.asarray(array)
    def block(index):
        return host[tuple(slice(0, s.stop - s.start) if isinstance(s, slice) and s.start else s for s in index)]
    return jax.make_array_from_callback(host.shape, sharding, block)

hosts.place = first_rows
saved.update({f"vae/same|{k}": v for k, v in trained("vae", models["vae"])[1].items()})
if hosts.writes():
    np.savez(out, **saved)
"""


def gap(a: str, b: str, source_a, source_b) -> float:
    """The largest error of the weights ``a`` in ``source_a`` against ``b`` in ``source_b`` (npz files of
    'run|tensor' arrays), in units of the step tolerance, 1e-8 of each weight's size."""
    keys = [k.split("|")[1] for k in source_b.files if k.startswith(f"{b}|")]
    return max(float(np.max(np.abs(source_a[f"{a}|{k}"] - source_b[f"{b}|{k}"]) /
                            (1e-8 + 1e-8 * np.abs(source_b[f"{b}|{k}"])))) for k in keys
               if source_b[f"{b}|{k}"].dtype.kind == "f")


def test_two_devices_and_two_processes_train_the_run_one_device_trains(tmp_path):
    """Data-parallel JAX, 4 float64 steps, each batch split and the parameters replicated: the VAE (the default step)
    and the GAN (two players) on 2 forced host devices of one process (XLA_FLAGS, in a fresh process), and the VAE on
    two processes on this machine joined as several hosts are (``--coordinator``, ``--processes``,
    ``--process-id``; one CPU device each, reducing over Gloo), each placing its own rows of every batch, process 0
    alone writing (the GAN's batches are placed by the same ``hosts.place``). Both reach the weights one device
    reaches, within the step tolerance (1e-8 of each weight's size): the gradient is averaged over the devices as DDP
    averages it. Controls: the weights moved from their start, another seed's run lands beyond the tolerance, and so
    does the VAE trained by two processes that each place the first rows."""
    import socket
    import subprocess
    import sys

    # narrow convolutions: at the preset's 32 and 64 channels a float64 step of the VAE took 0.3 s, 15 times these
    models = {"vae": ["model.channels=4,8", "model.hidden=16", "model.latent_dim=2", "train.batch_size=8",
                      "train.log_every=2"],
              "gan": ["model.hidden=16,16", "train.batch_size=8"]}
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    # the suite's XLA flags (tests/conftest.py: compiled for speed of compiling), one CPU device a process
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "XLA_FLAGS": flags}
    hosts = [subprocess.Popen([sys.executable, "-c", MULTI_PROCESS, str(port), str(k), str(tmp_path / "two.npz"),
                               json.dumps({"vae": models["vae"]})], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in (1, 0)]
    done = subprocess.run([sys.executable, "-c", DATA_PARALLEL, json.dumps(models), str(tmp_path / "one.npz")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for proc in hosts:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert out["devices"] == 2
    for model in models:
        assert out[model]["placed_on"] == 2, out
        assert out[model]["two_against_one"] <= 1.0 < out[model]["moved"] and out[model]["other_seed"] > 1.0, out
    assert int(two["vae/placed_on"]) == 2 and gap("vae/0", "vae/0", two, one) <= 1.0
    assert gap("vae/same", "vae/0", two, one) > 1.0  # both processes on the first rows: caught


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "localhost:1"], "go together: give all three"),
    (["--coordinator", "localhost:1", "--processes", "1", "--process-id", "0"], "run at least 2 processes"),
    (["--coordinator", "localhost:1", "--processes", "2", "--process-id", "2"], "with ids 0 to processes - 1"),
])
def test_several_hosts_flags_that_cannot_work_are_one_line(flags, message, capsys, tmp_path):
    from practice_jax.cli import main

    assert main(["vae", "--dataset", "digits", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "run").exists()
    assert main(["vae", "--coordinator", "localhost:1", "--processes", "2", "--process-id", "0"]) == 2
    assert "give every process the same --out" in capsys.readouterr().err


# Flow matching: the straight conditional path and its velocity (``practice_jax/flow_matching.py``) -------------------
def test_practice_jax_trains_flow_matching_into_a_run_pytorch_evaluates_and_wrong_losses_are_caught(
        tmp_path, capsys, both, monkeypatch):
    """The MLP field on moons trained 4 steps in JAX into a run PyTorch evaluates; OT coupling (solved on the host)
    and dropout are refused in one line. The twin-training case (``flow_matching/run/mlp-moons``) catches a field
    that sees t instead of 1000 t and a path that forgets sigma_min."""
    import practice_jax.flow_matching as pf
    import theory_jax.flow_matching as jfm
    from practice_torch.cli import main as torch_main

    run = tmp_path / "fm"
    tiny = ["--dataset", "moons", "--set", "model.hidden=16", "--set", "model.depth=1", "--set", "train.batch_size=32",
            "--set", "train.samples=50", "--set", "train.log_every=2", "--set", "model.ode_steps=4"]
    assert cli.main(["flow_matching", "--steps", "4", "--out", str(run), *tiny]) == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    assert json.loads((run / "eval_test.json").read_text())
    capsys.readouterr()
    for setting, says in (("model.coupling=ot", "pairs noise and data independently"),
                          ("model.dropout=0.1", "draws no dropout masks")):
        assert cli.main(["flow_matching", "--steps", "2", "--out", str(tmp_path / "x"), "--dataset", "digits",
                          "--set", "model.architecture=unet", "--set", setting]) == 2
        assert says in capsys.readouterr().err and not (tmp_path / "x").exists()
    case = {c.id: c for c in twin_cases.cases_of("flow_matching")}["flow_matching/run/mlp-moons"]
    short = RunCase(f"{case.id}-controls", case.model, case.overrides, case.dataset, steps=4)
    monkeypatch.setattr(pf, "TIME_SCALE", 1.0)  # the field reads t in [0, 1], not the 1000 t torch's reads
    assert "loss" in caught(short, "t unscaled")
    monkeypatch.undo()
    straight = jfm.path_sample_and_target
    monkeypatch.setattr(jfm, "path_sample_and_target", lambda x1, x0, t, sigma_min=0.0: straight(x1, x0, t))
    assert "loss" in caught(short, "sigma_min forgotten")


# The CNF: the log-likelihood through the solver (``practice_jax/cnf.py``) --------------------------------------------
def test_practice_jax_trains_the_cnf_into_a_run_pytorch_evaluates_and_wrong_solves_are_caught(
        tmp_path, capsys, both, monkeypatch):
    """FFJORD's field on moons trained 3 steps in JAX (the 3/8 rule) into a run PyTorch evaluates; the adjoint is
    refused in one line. The twin-training case (``cnf/run/concatsquash-rk4``) catches the exact trace where the run
    takes Hutchinson's with the engine's probes, and a solve with one step more."""
    import theory_jax.cnf as jcnf
    from practice_torch.cli import main as torch_main

    run = tmp_path / "cnf"
    tiny = ["--dataset", "moons", "--set", "model.hidden=8", "--set", "model.method=rk4", "--set", "model.steps=2",
            "--set", "train.batch_size=32", "--set", "train.samples=50", "--set", "train.log_every=3", "--set",
            "model.sample_method=rk4", "--set", "model.sample_steps=2", "--set", "model.grid=8", "--set",
            "model.eval_examples=40", "--set", "model.nll_examples=8"]
    assert cli.main(["cnf", "--steps", "3", "--out", str(run), *tiny]) == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [3]
    assert torch_main(["eval", str(run), "--device", "cpu", "--no-sample-metrics"]) == 0
    assert json.loads((run / "eval_test.json").read_text())["nll"] > 0
    capsys.readouterr()
    assert cli.main(["cnf", "--steps", "2", "--out", str(tmp_path / "x"), *tiny, "--set", "model.adjoint=true"]) == 2
    assert "backpropagates through the solver" in capsys.readouterr().err and not (tmp_path / "x").exists()
    case = {c.id: c for c in twin_cases.cases_of("cnf")}["cnf/run/concatsquash-rk4"]
    short = RunCase(f"{case.id}-controls", case.model, case.overrides, case.dataset, steps=4)
    solve = jcnf.log_likelihood
    monkeypatch.setattr(jcnf, "log_likelihood", lambda f, x, **kw: solve(f, x, **{**kw, "trace": "exact"}))
    assert "loss" in caught(short, "exact trace")
    monkeypatch.setattr(jcnf, "log_likelihood", lambda f, x, **kw: solve(f, x, **{**kw, "steps": kw["steps"] + 1}))
    assert "loss" in caught(short, "a step more")


def test_the_jax_schedule_and_ema_decay_are_the_engines_bookkeeping():
    """The traced twins inside the compiled step, ``lr_schedule`` (optax) and ``ema_decay`` (jnp.minimum), give what
    the engine's bookkeeping gives on the host (``practice_torch.engine.bookkeeping``), step by step; control: a
    schedule without the warmup differs."""

    from practice_torch.engine.bookkeeping import ema_decay, lr_factor
    from practice_torch.models import new_run_config

    train = dataclasses.replace(new_run_config("vae", "quick", None, []).train, steps=60, warmup_steps=7,
                                min_lr_ratio=0.05)
    schedule = state.lr_schedule(train)
    host = [train.lr * lr_factor(s, 7, 60, 0.05) for s in range(61)]
    assert np.allclose([float(schedule(s)) for s in range(61)], host, rtol=1e-6, atol=0)
    flat = state.lr_schedule(dataclasses.replace(train, warmup_steps=0))
    assert not np.allclose([float(flat(s)) for s in range(61)], host, rtol=1e-6, atol=0)
    assert [float(state.ema_decay(0.99, u)) for u in range(1, 40)] == pytest.approx(
        [ema_decay(0.99, u) for u in range(1, 40)], rel=1e-6)


# train.rng=jax: a JAX run's own noise, from jax.random ---------------------------------------------------------------
RUN_CASES = {c.id: c for c in twin_cases.ALL}
NOISE_CASES = ("vae/run/mlp", "vae/run/hierarchical", "gan/run/mlp-conditional-unrolled", "ddpm/run/mlp-conditional",
               "language_model/run/tied-rope", "flow_matching/run/unet-conditional", "cnf/run/concatsquash-rk4")


@pytest.mark.parametrize("case", [RUN_CASES[i] for i in NOISE_CASES], ids=lambda c: c.id)  # images, labels, both
def test_jax_noise_has_the_engines_names_shapes_and_kinds(case):
    """Each model's ``draw_noise`` with ``jax.random`` gives what its PyTorch adapter's gives (as the JAX trainer
    receives it: images channels last): the same names, shapes and kinds (float, int, bool) and, over 2048 rows, the
    same distribution: a float's mean and spread, a bool's share, an int's range, within sampling error. Control:
    two keys draw different noise."""
    import jax

    from practice_jax.torch_layout import to_jax
    from practice_jax.twins import twin_of
    from practice_torch.engine.runs import build_net, dataset_info
    from practice_torch.models import get_model

    cfg, module = twin_training.run_config(case), get_model(case.model)
    net, n = build_net(module, cfg, dataset_info(cfg.data)), 2048
    twin = twin_of(case.model)(net, cfg)
    engine = to_jax(module.draw_noise(net, cfg.model, n, torch.Generator().manual_seed(0)))
    mine, other = twin.draw_noise(jax.random.key(0), n), twin.draw_noise(jax.random.key(1), n)
    assert set(mine) == set(engine)
    for name, value in engine.items():
        value, drawn = np.asarray(value), np.asarray(mine[name])
        assert drawn.shape == value.shape and drawn.dtype.kind == value.dtype.kind, name
        if value.dtype.kind == "f":
            assert abs(drawn.mean() - value.mean()) < 0.05 and abs(drawn.std() - value.std()) < 0.05, name
        elif value.dtype.kind == "b":
            assert abs(drawn.mean() - value.mean()) < 0.05, name
        else:
            assert drawn.min() == value.min() == 0 and abs(int(drawn.max()) - int(value.max())) <= 0.01 * value.max()
    assert any(not np.array_equal(np.asarray(mine[k]), np.asarray(other[k])) for k in mine)


def test_a_run_with_jax_noise_trains_resumes_exactly_and_pytorch_refuses_to_draw_it(tmp_path, capsys, monkeypatch):
    """``--rng jax``: the run's noise from its key (saved in each checkpoint), so a run stopped by SIGTERM and resumed
    ends where the run never stopped ends; it differs from the same run on the engine's noise (the control); the
    PyTorch engine, which draws from torch's generator, refuses the config in one line."""

    from practice_torch.cli import main as torch_main
    from practice_torch.engine.checkpoint import load_checkpoint

    settings = ["--dataset", "digits", "--steps", "6", "--set", "model.architecture=mlp", "--set", "model.hidden=16",
                "--set", "model.latent_dim=2", "--set", "train.batch_size=32", "--set", "train.log_every=2",
                "--set", "train.samples=0"]
    runs = {name: tmp_path / name for name in ("whole", "part", "engine")}
    assert cli.main(["vae", "--rng", "jax", "--out", str(runs["whole"]), *settings]) == 0
    assert cli.main(["vae", "--out", str(runs["engine"]), *settings]) == 0
    sigterm_after_step(monkeypatch, 3)
    assert cli.main(["vae", "--rng", "jax", "--out", str(runs["part"]), *settings]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert "jax_key" in load_checkpoint(runs["part"] / "checkpoints", "vae")[1]
    assert cli.main(["vae", "--resume", str(runs["part"])]) == 0
    whole, part, engine = (load_checkpoint(runs[k] / "checkpoints", "vae")[0] for k in ("whole", "part", "engine"))
    assert all(torch.equal(whole[k], part[k]) for k in whole)
    assert not all(torch.equal(whole[k], engine[k]) for k in whole)
    capsys.readouterr()
    assert cli.main(["vae", "--resume", str(runs["part"]), "--rng", "torch"]) == 2
    assert "which a resumed run keeps" in capsys.readouterr().err
    assert torch_main(["train", "vae", "--resume", str(runs["part"]), "--steps", "8"]) == 2
    assert "train.rng=jax: the PyTorch engine draws a step's noise from its torch generator" in capsys.readouterr().err


def test_the_jax_twins_refuse_reflow_consistency_and_a_cascade_in_one_line():
    """The flow-matching twin has no teacher and the DDPM twin one stage: each refuses before it builds."""
    from types import SimpleNamespace

    from practice_jax import ddpm as jddpm
    from practice_jax import flow_matching as jfm_twin
    from practice_torch.ddpm import training as ddpm_training
    from practice_torch.flow_matching import training as fm_training

    for changes in ({"reflow": True}, {"consistency": True}):
        with pytest.raises(Exception, match="train .* with practice_torch") as caught_error:
            jfm_twin.jax_twin(None, SimpleNamespace(model=fm_training.Config(**changes)))
        assert "\n" not in str(caught_error.value)
    with pytest.raises(ValueError, match="train the cascade with practice_torch"):
        jddpm.jax_twin(None, SimpleNamespace(model=ddpm_training.Config(cascade=True)))
