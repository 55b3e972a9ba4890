"""The training engine: typed overrides, reproducible batches, atomic checkpoints, exact resume, NaN stop,
EMA, bf16 autocast and channels-last on CPU (torch.compile is a slow test); closed-form (EM) updates."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from practice_torch.engine import RunError
from practice_torch.engine import loop as engine_loop
from practice_torch.engine.batches import GlobalBatches, shard
from practice_torch.engine.bookkeeping import lr_factor
from practice_torch.engine.checkpoint import CheckpointError, atomic_write, load_checkpoint, read_weights, save_checkpoint
from practice_torch.engine.config import ConfigError, TrainConfig, apply_overrides, from_dict, incompatibilities, to_dict
from practice_torch.engine.ema import EMA
from practice_torch.engine.loop import Diverged, Trainer
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import get_model, new_trainer

vae_training = get_model("vae")  # a model as the engine is handed one
Config, default_config = vae_training.Config, vae_training.default_config

TINY = ["data.name=digits", "model.channels=4,8", "model.latent_dim=4", "model.hidden=16", "train.batch_size=16",
        "train.warmup_steps=3", "train.log_every=2", "train.checkpoint_every=4", "train.samples=4",
        "model.nll_examples=8", "model.nll_samples=4"]


def tiny(*overrides: str):
    return apply_overrides(default_config("quick"), TINY + list(overrides))


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


# Config -------------------------------------------------------------------------------------------------
def test_overrides_are_typed_by_the_dataclass_field():
    cfg = apply_overrides(default_config("quick"), ["model.latent_dim=32", "train.lr=3e-4", "model.conditional=true",
                                                    "model.channels=(16, 32, 64)", "model.architecture=mlp",
                                                    "data.limit=none", "train.precision=bf16"])
    assert cfg.model.latent_dim == 32 and cfg.train.lr == 3e-4 and cfg.model.conditional is True
    assert cfg.model.channels == (16, 32, 64) and cfg.model.architecture == "mlp" and cfg.data.limit is None
    assert default_config("quick").model.latent_dim == 16, "overrides must not edit the preset in place"


@pytest.mark.parametrize("override, message", [
    ("model.latent_dim", "malformed override"),
    ("=3", "malformed override"),
    ("model.latent_dim=abc", "expected int"),
    ("model.latent_dim=1.5", "expected int"),
    ("model.conditional=maybe", "expected true or false"),
    ("model.architecture=resnet", "expected one of mlp, conv"),
    ("model.nope=1", "unknown config key 'model.nope'"),
    ("optim.lr=1", "unknown config key 'optim.lr'"),
    ("lr=1", "unknown config key 'lr'"),
])
def test_bad_overrides_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(default_config("quick"), [override])
    assert "\n" not in str(info.value)


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    cfg = tiny("model.beta=4")
    raw = json.loads(json.dumps(to_dict(cfg)))
    assert from_dict(raw, Config) == cfg
    raw["train"]["bogus"] = 1
    with pytest.raises(ConfigError, match="train.bogus"):
        from_dict(raw, Config)


def test_resume_may_change_training_keys_but_not_the_model_or_data():
    cfg = tiny()
    assert incompatibilities(cfg, apply_overrides(cfg, ["train.steps=99", "train.lr=1e-4"])) == []
    problems = incompatibilities(cfg, apply_overrides(cfg, ["model.latent_dim=8", "data.name=fashion_mnist",
                                                            "train.optimizer=sgd"]))
    assert [p.split(":")[0] for p in problems] == ["model.latent_dim", "data.name", "train.optimizer"]
    # a model that names what its checkpoint fixes (ARCHITECTURE): the other model keys may change on resume
    changed = apply_overrides(cfg, ["model.beta=2", "model.nll_examples=4", "model.latent_dim=8"])
    problems = incompatibilities(cfg, changed, vae_training.ARCHITECTURE)
    assert [p.split(":")[0] for p in problems] == ["model.latent_dim"] and "fixed by the checkpoint" in problems[0]
    assert [p.split(":")[0] for p in incompatibilities(cfg, changed)] == [  # none named: every model key is fixed
        "model.latent_dim", "model.beta", "model.nll_examples"]


def test_learning_rate_warms_up_linearly_then_decays_by_a_cosine():
    factors = [lr_factor(s, warmup=10, total=110, min_ratio=0.1) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_the_annealing_schedule_is_ganin_et_als_and_sgd_trains_with_it(tmp_path):
    """``train.schedule=annealing``: mu_p / mu_0 = (1 + 10 p)^-0.75 after the warmup (Ganin et al. 2016, sec. 5.2.2:
    1 at p = 0, 11^-0.75 = 0.166 at p = 1, the floor ignored); ``train.optimizer=sgd``: the engine's optimizer is SGD
    with ``train.momentum``, its lr scheduled so. Control: the cosine's factors differ."""
    factors = [lr_factor(s, warmup=0, total=100, min_ratio=0.1, schedule="annealing") for s in range(101)]
    assert factors[0] == 1.0 and factors[100] == pytest.approx(11 ** -0.75) and factors[50] == pytest.approx(6 ** -0.75)
    assert factors[50] != pytest.approx(lr_factor(50, warmup=0, total=100, min_ratio=0.1))
    cfg = apply_overrides(tiny(), ["train.optimizer=sgd", "train.momentum=0.5", "train.schedule=annealing",
                                   "train.warmup_steps=0", "train.steps=4", "train.lr=0.01"])
    trainer = new_trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.param_groups[0]["momentum"] == 0.5
    start = weights(trainer)
    for _ in range(4):  # the engine's step, without the run's end (its checkpoint and pictures)
        trainer._train_step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 11 ** -0.75)  # p = 1 after the 4 steps
    assert any(not torch.equal(start[k], v) for k, v in weights(trainer).items())  # and SGD moved the weights


def test_the_exponential_schedule_holds_half_the_run_then_decays_to_the_floor(tmp_path):
    """``train.schedule=exponential`` (Donahue et al.'s BiGAN on MNIST: 200 epochs at the peak, then 200 decaying
    exponentially to a hundredth): 1 up to half the steps after the warmup, min_ratio^(2p - 1) after, min_ratio at
    the end; the engine's optimizer follows it. Controls: cosine's factor at p = 3/4 differs, and so does a decay
    from the start."""
    factors = [lr_factor(s, warmup=0, total=100, min_ratio=0.01, schedule="exponential") for s in range(101)]
    assert factors[:51] == [1.0] * 51 and factors[100] == pytest.approx(0.01)
    assert factors[75] == pytest.approx(0.1) and all(a > b for a, b in zip(factors[50:], factors[51:]))
    assert factors[75] != pytest.approx(lr_factor(75, warmup=0, total=100, min_ratio=0.01))
    assert factors[75] != pytest.approx(0.01 ** 0.75)  # a decay over the whole run
    cfg = apply_overrides(tiny(), ["train.schedule=exponential", "train.min_lr_ratio=0.01", "train.warmup_steps=0",
                                   "train.steps=4", "train.lr=0.01"])
    trainer = new_trainer(cfg, tmp_path / "run")
    rates = []
    for _ in range(4):
        trainer._train_step()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.01, 0.01, 0.01 * 0.1, 0.01 * 0.01])  # p = 1/4, 1/2, 3/4, 1 after each step


# Batches ------------------------------------------------------------------------------------------------
def test_ranks_share_out_the_single_process_batches_and_resume_the_order():
    single = GlobalBatches(50, 8, seed=3)
    ranks = [GlobalBatches(50, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = []
    for _ in range(14):  # 2+ epochs (6 batches each, the last 2 examples dropped)
        batch = single.next()
        assert torch.equal(torch.cat([r.next() for r in ranks]), batch)
        seen.append(batch)
    assert sorted(torch.cat(seen[:6]).tolist()) == sorted(set(torch.cat(seen[:6]).tolist()))  # no repeats
    resumed = GlobalBatches(50, 8, seed=0)
    resumed.load_state_dict(single.state_dict())
    assert torch.equal(resumed.next(), single.next())
    assert not torch.equal(GlobalBatches(50, 8, seed=4).next(), GlobalBatches(50, 8, seed=3).next())
    noise = {"eps": torch.arange(8.0)[:, None]}
    assert torch.equal(torch.cat([shard(noise, r, 2)["eps"] for r in range(2)]), noise["eps"])
    with pytest.raises(ConfigError, match="does not split evenly"):
        GlobalBatches(50, 9, seed=0, world_size=2)


# Checkpoints --------------------------------------------------------------------------------------------
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda tmp: (tmp.write_text("half"), (_ for _ in ()).throw(RuntimeError("crash"))))
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["file.txt"]


def test_checkpoints_round_trip_and_bad_files_are_named(tmp_path):
    folder = tmp_path / "checkpoints"
    w = {"layer.weight": torch.randn(3, 2)}
    for step in (1, 2, 3):
        save_checkpoint(folder, "vae", step, w, {"optimizer": {"lr": 0.1}})
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["step_0000002.safetensors", "step_0000003.safetensors"]
    loaded, state = load_checkpoint(folder, "vae")
    assert torch.equal(loaded["layer.weight"], w["layer.weight"]) and state["step"] == 3
    with pytest.raises(CheckpointError, match="not 'gan'"):
        load_checkpoint(folder, "gan")
    foreign = tmp_path / "foreign.safetensors"
    save_file(w, str(foreign))
    with pytest.raises(CheckpointError, match="not a generative-twins checkpoint"):
        read_weights(foreign, "vae")
    path = folder / "step_0000003.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(folder, "vae")


# EMA ----------------------------------------------------------------------------------------------------
def test_ema_follows_the_warmed_up_decay():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    d = min(0.9, 2 / 11)
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * net.weight)


# Training: exact resume, NaN stop, precision and memory format ------------------------------------------------
def test_resume_is_bit_identical_to_training_straight_through(tmp_path, monkeypatch):
    """6 steps + resume + 6 steps == 12 steps (every weight, the EMA and the optimizer state, torch.equal), with
    a conv VAE, channels-last, EMA, clipping and warmup, across an epoch boundary of the data order. The loss is
    handed the run's model config and the step number, which a resumed run continues."""
    cfg = tiny("train.steps=12", "train.ema_decay=0.9", "train.channels_last=true", "train.grad_clip=5",
               "data.limit=80", "train.threads=1")  # a fixed team: an adaptive one may change the sums' order
    seen, real = [], vae_training.loss

    def recording(net, config, batch, noise, step):
        seen.append((config, step))
        return real(net, config, batch, noise, step)

    monkeypatch.setattr(vae_training, "loss", recording)
    straight = new_trainer(cfg, tmp_path / "straight")
    straight.run()
    assert [step for _, step in seen] == list(range(12)) and all(c is straight.cfg.model for c, _ in seen)
    seen.clear()
    first = new_trainer(cfg, tmp_path / "resumed")
    assert first.run(stop_at=6).step == 6
    resumed = new_trainer(cfg, tmp_path / "resumed", resume=True)
    assert resumed.step == 6
    resumed.run()
    assert [step for _, step in seen] == list(range(12)), "a resumed run's steps go on from the checkpoint's"
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]) for k in a)
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [2, 4, 6, 8, 10, 12]
    other = new_trainer(tiny("train.steps=12", "train.ema_decay=0.9", "train.channels_last=true", "train.grad_clip=5",
                         "data.limit=80", "train.threads=1", "train.seed=1"), tmp_path / "other_seed")
    other.run()
    assert not all(torch.equal(a[k], weights(other)[k]) for k in a), "a different seed must change the weights"


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = new_trainer(tiny("train.steps=50", "train.lr=1e30", "train.warmup_steps=0", "train.checkpoint_every=1",
                           "train.grad_clip=0"), tmp_path / "run")
    with pytest.raises(Diverged, match=r"the loss became (nan|inf)") as info:
        trainer.run()
    kept = json.loads((tmp_path / "run/checkpoints/latest.json").read_text())["step"]
    assert f"last good checkpoint (step {kept})" in str(info.value) and kept < 50 and "\n" not in str(info.value)
    good, _ = load_checkpoint(tmp_path / "run/checkpoints", "vae")
    assert all(torch.isfinite(t).all() for t in good.values())


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    fp32 = new_trainer(tiny("train.steps=3"), tmp_path / "fp32")
    fp32.run()
    bf16 = new_trainer(tiny("train.steps=3", "train.precision=bf16", "train.channels_last=true"), tmp_path / "bf16")
    seen = []
    bf16.net.encoder.convs[0].register_forward_hook(lambda m, i, out: seen.append((out.dtype, i[0].is_contiguous(
        memory_format=torch.channels_last))))
    bf16.run()
    assert seen[:3] == [(torch.bfloat16, True)] * 3, "the 3 training steps: bf16 convs on NHWC batches"
    a, b = weights(fp32), weights(bf16)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], b[k], atol=0.05) for k in a), "bf16 steps should stay near the fp32 ones"
    assert all(math.isfinite(r["loss"]) for r in read_metrics(tmp_path / "bf16"))


def test_a_run_directory_holds_config_checkpoints_metrics_events_and_pictures(loss_plot, tmp_path):
    run = tmp_path / "run"
    outcome = new_trainer(tiny("train.steps=6"), run).run()
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"config.json", "metrics.jsonl", "loss.png", "samples/samples.png", "samples/reconstructions.png",
            "samples/interpolation.png", "checkpoints/latest.json", "checkpoints/step_0000006.safetensors",
            "checkpoints/step_0000006.state.pt"} <= names
    assert any(n.startswith("events/events.out.tfevents") for n in names)
    assert set(outcome.files) >= {run / "loss.png", run / "samples/samples.png"}
    record = read_metrics(run)[-1]
    assert record["step"] == 6 and {"loss", "kl", "recon_nll", "lr", "grad_norm", "examples_per_s"} <= set(record)
    assert json.loads((run / "config.json").read_text())["model"]["latent_dim"] == 4


@pytest.mark.parametrize("value, drawn", [("0", False), ("1", True), ("", True)])
def test_the_environment_turns_the_loss_curves_off_and_nothing_else(value, drawn, tmp_path, monkeypatch):
    """$GENERATIVE_TWINS_LOSS_PLOT=0 (the suite's runs): no RUN/loss.png, the samples and metrics as ever; any other
    value draws it (the controls)."""
    monkeypatch.setenv("GENERATIVE_TWINS_LOSS_PLOT", value)
    outcome = new_trainer(tiny("train.steps=2", "train.log_every=1"), tmp_path / "run").run()
    assert (tmp_path / "run" / "loss.png").is_file() == drawn == (tmp_path / "run" / "loss.png" in outcome.files)
    assert (tmp_path / "run" / "samples" / "samples.png").is_file() and len(read_metrics(tmp_path / "run")) == 2


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                         reason="needs a CUDA device")])


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_torch_compile_trains_like_eager(tmp_path, mode, device):
    """Compiled once (static shapes: a recompilation is an error), in inductor's default mode and in the CUDA-graph
    mode (the same as default on a CPU), the run's weights are eager's within float32 reassociation."""
    eager = new_trainer(tiny("train.steps=3", "model.architecture=mlp", f"train.device={device}"), tmp_path / "eager")
    eager.run()
    compiled = new_trainer(tiny("train.steps=3", "model.architecture=mlp", "train.compile=true",
                                f"train.compile_mode={mode}", f"train.device={device}"), tmp_path / "compiled")
    torch._dynamo.reset()  # an earlier test's compilation of the same forward would count as a recompilation
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled.run()
    a, b = weights(eager), weights(compiled)
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)


def test_a_compile_mode_outside_inductors_is_a_one_line_error():
    with pytest.raises(ConfigError, match="expected one of default, reduce-overhead"):
        tiny("train.compile_mode=fast")


def test_the_engine_imports_no_model():
    engine = Path(__file__).parents[1] / "practice_torch" / "engine"
    for path in engine.glob("*.py"):
        text = path.read_text()
        assert "practice_torch.vae" not in text and "from practice_torch import vae" not in text, path.name


# Closed-form updates: a model module's ``update`` (EM) in place of the gradient step -----------------------------
EM = ["data.limit=400", "train.log_every=1", "train.checkpoint_every=3", "train.samples=50",
      "model.components=4"]


def em_config(*overrides: str):
    from practice_torch.mixture_em import training as mixture_em_training

    return apply_overrides(mixture_em_training.default_config("quick", "moons"), EM + list(overrides))


def test_a_model_with_a_closed_form_update_and_no_trainable_parameters_trains(tmp_path):
    trainer = new_trainer(em_config("train.steps=8"), tmp_path / "run")
    assert list(trainer.net.parameters()) == [] and trainer.optimizer.param_groups[0]["params"] == []
    start = weights(trainer)
    trainer.run()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {"loss", "update_norm", "min_weight"} <= set(records[0]) and not {"grad_norm", "lr"} & set(records[0])
    losses = [r["loss"] for r in records]
    assert all(b <= a + 1e-5 for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.05, losses
    assert records[0]["update_norm"] > 0.1 and records[-1]["update_norm"] < records[0]["update_norm"]
    assert not torch.equal(start["means"], weights(trainer)["means"]) and bool(trainer.net.initialised)
    assert trainer.scheduler.last_epoch == 0, "the LR schedule is left alone"
    assert (tmp_path / "run/samples/density.png").is_file()


def test_adam_betas_reach_the_optimizer_and_bad_ones_are_one_line_errors(tmp_path):
    cfg = apply_overrides(default_config("quick"), [*TINY, "train.betas=0.5,0.99"])
    assert new_trainer(cfg, tmp_path / "run").optimizer.param_groups[0]["betas"] == (0.5, 0.99)
    for bad in ("0.5", "0.5,1.0"):
        with pytest.raises(ConfigError, match="train.betas must be two numbers in"):
            new_trainer(apply_overrides(default_config("quick"), [*TINY, f"train.betas={bad}"]), tmp_path / "bad")


def test_batch_size_zero_is_the_whole_split_and_threads_are_set(tmp_path):
    """The EM preset's ``train.batch_size=0`` gives every step the whole training split (here data.limit), and
    ``train.threads`` sets torch's intra-op threads for the run."""
    before = torch.get_num_threads()
    try:
        trainer = new_trainer(em_config("train.steps=1", "train.threads=1"), tmp_path / "run")
        assert trainer.cfg.train.batch_size == 0 and trainer.batch_size == 400 == len(trainer.batches.next())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="train.threads must be at least 0, got -1"):
        new_trainer(em_config("train.threads=-1"), tmp_path / "bad")


def test_resume_of_a_closed_form_update_is_bit_identical(tmp_path):
    """8 EM steps == 3 + resume + 5, buffers compared with torch.equal; the data order and the noise that seeds
    the means (drawn every step) are restored from the checkpoint."""
    cfg = em_config("train.steps=8")
    straight = new_trainer(cfg, tmp_path / "straight")
    straight.run()
    assert new_trainer(cfg, tmp_path / "resumed").run(stop_at=3).step == 3
    resumed = new_trainer(cfg, tmp_path / "resumed", resume=True)
    assert resumed.step == 3 and bool(resumed.net.initialised)
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = new_trainer(em_config("train.steps=8", "train.seed=1"), tmp_path / "other_seed")
    other.run()
    assert not torch.equal(a["means"], weights(other)["means"]), "another seed seeds other means"


def test_a_non_finite_closed_form_update_stops_the_run(tmp_path, monkeypatch):
    from practice_torch.mixture_em import training as mixture_em_training

    calls = []

    def failing(net, config, batch, noise, step):
        calls.append(1)
        loss, terms = real(net, config, batch, noise, step)
        if len(calls) == 5:
            net.covariances.fill_(math.nan)
        return loss, terms

    real = mixture_em_training.update
    monkeypatch.setattr(mixture_em_training, "update", failing)
    trainer = new_trainer(em_config("train.steps=8"), tmp_path / "run")
    with pytest.raises(Diverged, match=r"update norm nan\) at step 5.*last good checkpoint \(step 3\)") as info:
        trainer.run()
    assert "\n" not in str(info.value)
    good, _ = load_checkpoint(tmp_path / "run/checkpoints", "mixture_em")
    assert all(torch.isfinite(t).all() for t in good.values() if t.is_floating_point())


def test_a_net_with_nothing_to_train_is_a_one_line_error(tmp_path, monkeypatch):
    from practice_torch.mixture_em import training as mixture_em_training

    monkeypatch.delattr(mixture_em_training, "update")
    with pytest.raises(RunError, match="mixture_em has no trainable parameters and no closed-form update"):
        new_trainer(em_config(), tmp_path / "run")


def test_data_classes_keeps_only_those_labels_in_every_split():
    """data.classes=0 trains on T-shirts only (the course's single-class variant); limit counts kept examples."""
    from practice_torch.engine.config import DataConfig
    from practice_torch.engine.runs import load_split

    for split in ("train", "test"):
        x, y = load_split(DataConfig("digits", classes=(3, 7)), split, limit=25)[:]
        assert len(x) == len(y) == 25 and set(y.tolist()) == {3, 7}
    full_x, full_y = load_split(DataConfig("digits"), "train")[:]
    x, y = load_split(DataConfig("digits", classes=(3,)), "train")[:]
    assert torch.equal(x, full_x[full_y == 3]) and len(y) == int((full_y == 3).sum())


def test_held_out_examples_load_their_sibling_splits_as_the_run_loads_its_data():
    """The examples ``sample`` is handed carry the run's data section: a sampler's other split (an autoencoder's ROC
    curves on the test split) keeps data.classes; the control: without it every class comes back."""
    from practice_torch.engine.config import DataConfig
    from practice_torch.engine.runs import held_out_examples, sibling_split

    data = DataConfig("digits", classes=(3,))
    x, y = held_out_examples(data, 12)
    assert x.shape[0] == 12 and set(y.tolist()) == {3}
    test = held_out_examples(data, 12)
    assert set(sibling_split(test, "test")[:][1].tolist()) == {3}
    assert set(sibling_split(test, "test", classes=None)[:][1].tolist()) == set(range(10))


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "digits", "classes": (10,)}, "has labels 0..9"),
    ({"name": "galaxies", "classes": (0,)}, "needs a data set with class labels"),
])
def test_data_classes_refuses_what_the_set_has_not(data, message):
    from practice_torch.engine.config import DataConfig
    from practice_torch.engine.runs import load_split

    with pytest.raises(ConfigError, match=message) as info:
        load_split(DataConfig(**data), "train")
    assert "\n" not in str(info.value)


def test_the_host_reads_the_logged_values_only_at_synchronisation_points(tmp_path, monkeypatch):
    """A GPU run's host reads the device's sums at log and checkpoint steps only (``train.sync_every``, forced here
    on the CPU): the same weights and the same logged means as reading every step, with far fewer reads."""
    reads = []
    real = engine_loop.check_finite  # (values, window, checked, step, ...): the host's read at ``step``
    monkeypatch.setattr(engine_loop, "check_finite",
                        lambda values, window, checked, step, *a: (reads.append(step), real(values, window, checked,
                                                                                           step, *a))[1])
    # one thread each: on two (outside make test's one-thread workers) the two runs' weights differed in their last bits
    sets = ("train.steps=12", "train.log_every=4", "train.checkpoint_every=6", "train.threads=1")
    every = new_trainer(tiny(*sets), tmp_path / "every")
    every.run()
    assert reads == list(range(1, 13))  # on a CPU: every step
    reads.clear()
    lazy = new_trainer(tiny(*sets, "train.sync_every=4"), tmp_path / "lazy")
    lazy.run()
    assert reads == [4, 6, 8, 12]  # log steps 4, 8, 12 and the checkpoint at 6
    a, b = weights(every), weights(lazy)
    assert all(torch.equal(a[k], b[k]) for k in a)
    def logged(run):
        return [{k: v for k, v in row.items() if k not in ("examples_per_s", "time_s")} for row in read_metrics(run)]

    assert logged(tmp_path / "every") == logged(tmp_path / "lazy") and len(logged(tmp_path / "lazy")) == 3


def test_a_nan_between_synchronisation_points_stops_before_anything_is_saved(tmp_path, monkeypatch):
    """With the host reading only every 5 steps, a loss that turns NaN at step 8 is found at the next synchronisation
    point (step 10, a checkpoint step), before that checkpoint is written: the one on disk (step 5) is a good one."""

    calls = []
    real = vae_training.loss

    def failing(net, config, batch, noise, step):
        calls.append(1)
        loss, terms = real(net, config, batch, noise, step)
        return (loss * math.nan if len(calls) == 8 else loss), terms

    monkeypatch.setattr(vae_training, "loss", failing)
    trainer = new_trainer(tiny("train.steps=20", "train.checkpoint_every=5", "train.log_every=5", "train.sync_every=5"),
                          tmp_path / "run")
    with pytest.raises(Diverged, match=r"the loss became nan .*within steps 6-10.*last good checkpoint \(step 5\)"):
        trainer.run()
    assert json.loads((tmp_path / "run/checkpoints/latest.json").read_text())["step"] == 5
    good, _ = load_checkpoint(tmp_path / "run/checkpoints", "vae")
    assert all(torch.isfinite(t).all() for t in good.values())


def test_a_data_set_moves_to_the_gpu_only_when_it_fits_and_never_on_a_cpu():
    from torch.utils.data import TensorDataset

    from practice_torch.engine.batches import fits_on_device, on_device

    assert fits_on_device(1 << 30, 8 << 30) and not fits_on_device(3 << 30, 8 << 30)  # a quarter of the free memory
    data = TensorDataset(torch.zeros(4, 3), torch.arange(4))
    assert on_device(data, torch.device("cpu")) is data  # the control: nothing moves on a CPU


def test_a_batch_of_a_data_set_on_a_device_is_indexed_there(monkeypatch):
    """fetch hands the indices to the data's device first (on a GPU: through pinned memory, without the
    synchronisation that indexing a GPU tensor with CPU indices costs); a CPU's data set is indexed as it is."""
    from torch.utils.data import TensorDataset

    from practice_torch.engine import batches

    moved = []
    monkeypatch.setattr(batches, "to_device", lambda x, device: moved.append(device) or x.to(device))
    x, y = batches.fetch(TensorDataset(torch.arange(12.0).reshape(6, 2), torch.arange(6)), torch.tensor([4, 1]))
    assert moved == [torch.device("cpu")] and y.tolist() == [4, 1] and x.tolist() == [[8.0, 9.0], [2.0, 3.0]]
    cpu = torch.tensor([1.0])
    monkeypatch.undo()
    assert batches.to_device(cpu, torch.device("cpu")) is cpu  # the control: nothing is copied on a CPU


def test_values_a_step_reports_from_the_host_are_logged_on_the_device():
    """cnf's evaluation count, TRPO's line-search figures and a judge's tie share are host tensors; on a CUDA run
    they met the device's loss in one stack and the step failed. The meta device stands in for the GPU here."""
    from practice_torch.engine.loop import logged_values

    device_loss, host_term = torch.tensor(2.0, device="meta"), torch.tensor(3, dtype=torch.int64)
    stop = torch.tensor(0.0, device="meta")
    out = logged_values([device_loss, host_term], stop)
    assert out.device.type == "meta" and out.shape == (3,) and out.dtype == torch.float32
    on_host = logged_values([torch.tensor(2.0), torch.tensor(3)], torch.tensor(1.0))
    assert on_host.tolist() == [2.0, 3.0, 1.0]
    with pytest.raises(RuntimeError):  # the control: stacked where they are, as the step did before
        torch.stack([device_loss.float(), host_term.float(), stop])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_step_never_makes_the_host_wait(tmp_path):
    """Between synchronisation points the engine's step queues work and returns: CUDA's sync debug mode in 'error'
    raises on any synchronisation (a .item(), a CPU-indexed GPU tensor, a pageable copy with non_blocking=False)."""
    trainer = new_trainer(tiny("train.device=cuda", "train.steps=20"), tmp_path / "run")
    trainer._train_step()  # the first step may allocate and synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer._train_step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


FINE_TUNING = ["--set", "model.prompt_length=8", "--set", "model.response_length=8", "--set", "train.batch_size=6",
               "--set", "train.samples=1"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["cnf", "trpo", "reward_model", "dpo"])
def test_the_models_that_report_host_values_train_on_cuda(tmp_path, lm_run, model):
    """The four full presets that failed their first step on an H200 (a host value stacked with the device's loss)
    train two steps on CUDA."""
    from practice_torch.cli import main

    extra = [] if model == "cnf" else ["--set", f"model.reference={lm_run}", *FINE_TUNING]
    extra += {"trpo": ["--set", "model.eval_prompts=16"], "reward_model": ["--set", "model.eval_pairs=16"],
              "dpo": ["--set", "model.eval_prompts=16", "--set", "model.eval_pairs=16"]}.get(model, [])
    assert main(["train", model, "--steps", "2", "--device", "cuda", "--out", str(tmp_path / "run"), *extra]) == 0
    assert read_metrics(tmp_path / "run")[-1]["step"] == 2


def test_a_checkpoint_of_another_model_version_is_refused_in_one_line(tmp_path):
    folder, w = tmp_path / "ckpt", {"a": torch.zeros(2)}
    save_checkpoint(folder, "gan", 3, w, {"step": 3})  # written before the model counted versions: version 1
    versions = {1: "one optimizer", 2: "one optimizer per player"}
    with pytest.raises(CheckpointError, match=r"version 1 checkpoint of gan .* reads version 2 \(one optimizer per "
                                              r"player\): train the run anew") as info:
        load_checkpoint(folder, "gan", versions=versions)
    assert "\n" not in str(info.value)
    save_checkpoint(folder, "gan", 4, w, {"step": 4}, version=2)
    assert torch.equal(load_checkpoint(folder, "gan", versions=versions)[0]["a"], w["a"])  # the current one loads


def test_the_players_of_a_custom_step_share_no_parameter_and_update_only_their_own():
    from practice_torch.engine.distributed import Processes
    from practice_torch.engine.players import Player, StepRun, check_players, player_optimizers

    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="belongs to two players, 'one' and 'two'"):
        check_players({"one": Player(list(a.parameters())), "two": Player([a.weight])})
    players = {"a": Player(list(a.parameters())), "b": Player(list(b.parameters()), lr=0.5, betas=(0.0, 0.9))}
    optimizers = player_optimizers(players, TrainConfig(lr=1e-3), fused=False)
    assert optimizers["b"].param_groups[0]["lr"] == 0.5 and optimizers["a"].param_groups[0]["betas"] == (0.9, 0.999)
    run = StepRun(players, optimizers, None, None, 0.0, Processes(rank=0, local_rank=0, world_size=1))
    before = b.weight.detach().clone()
    loss = b(a(torch.ones(3, 2))).sum()  # reaches both players' parameters
    run.update(a=loss)
    assert a.weight.grad is not None and b.weight.grad is None and torch.equal(b.weight, before)
    assert set(run.take_norms()) == {"grad_norm_a"} and run.take_norms() == {}
    with pytest.raises(KeyError, match="no player c"):
        run.update(c=loss)


def test_a_run_with_a_retired_key_is_refused_saying_why():
    from practice_torch.engine.config import ConfigError, from_dict, to_dict
    from practice_torch.policy_gradient import training as pg_training

    raw = to_dict(pg_training.default_config("quick"))
    raw["model"]["reference_step"] = 2000  # what a fine-tuned run recorded before builds_on.json
    with pytest.raises(ConfigError, match="model.reference_step is a key of an older version .*builds_on.json"):
        from_dict(raw, pg_training.Config)
    raw["model"] = {**raw["model"], "nope": 1}
    del raw["model"]["reference_step"]
    with pytest.raises(ConfigError, match="unknown config key model.nope"):  # the control: any other key
        from_dict(raw, pg_training.Config)


def test_an_older_runs_renamed_keys_read_as_their_new_names_and_a_wgans_n_critic_is_its_own():
    """The GAN family's discriminators count model.discriminator_steps (was n_critic), the mel view is model.mel (was
    log_mel); a saved config with the old name reads as the new one. A WGAN's critic keeps the paper's n_critic."""
    from practice_torch.engine.config import ConfigError, from_dict, to_dict
    from practice_torch.gan import training as gan_training
    from practice_torch.wgan import training as wgan_training

    raw = to_dict(gan_training.default_config("quick", "spoken_digits"))
    raw["model"]["n_critic"] = raw["model"].pop("discriminator_steps") + 2  # a gan run's config.json before
    raw["model"]["log_mel"] = raw["model"].pop("mel")
    cfg = from_dict(raw, gan_training.Config)
    assert cfg.model.discriminator_steps == 3 and cfg.model.mel is True
    raw["model"]["mel"] = True  # both names given: the old one is unknown, not silently dropped
    with pytest.raises(ConfigError, match="unknown config key model.log_mel"):
        from_dict(raw, gan_training.Config)
    wgan = to_dict(wgan_training.default_config("quick"))
    assert from_dict(wgan, wgan_training.Config).model.n_critic == wgan["model"]["n_critic"] == 5
    # on the command line an old name is refused, naming the new one; a WGAN's n_critic is still its own
    with pytest.raises(ConfigError, match="model.n_critic is now called model.discriminator_steps"):
        apply_overrides(gan_training.default_config("quick"), ["model.n_critic=2"])
    assert apply_overrides(wgan_training.default_config("quick"), ["model.n_critic=2"]).model.n_critic == 2


def test_a_finished_run_records_the_seconds_spent_apart_from_its_steps(tmp_path, monkeypatch):
    """environment.json keeps the session's seconds on its first step (the compile, where there is one) and its
    checkpoints, so that a run's time can be read apart; a checkpoint made 0.2 s slower shows there, and in no other
    entry."""
    import time

    fast = new_trainer(tiny("train.steps=4", "train.checkpoint_every=2", "train.log_every=2"), tmp_path / "fast")
    fast.run()
    seconds = json.loads((tmp_path / "fast/environment.json").read_text())["seconds"]
    assert set(seconds) == {"first_step", "checkpoints"} and all(s >= 0 for s in seconds.values())
    real = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self: (time.sleep(0.2), real(self))[1])
    slow = new_trainer(tiny("train.steps=4", "train.checkpoint_every=2", "train.log_every=2"), tmp_path / "slow")
    slow.run()
    slowed = json.loads((tmp_path / "slow/environment.json").read_text())["seconds"]
    assert slowed["checkpoints"] >= 0.2 > seconds["checkpoints"]  # step 2 (the last step's is written after the loop)
    assert slowed["first_step"] < 0.2 + seconds["first_step"]
