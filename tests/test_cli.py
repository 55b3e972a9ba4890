"""``python -m practice_torch list | train | sample | eval | features``: the happy paths on a tiny run, and every
user error as one line on stderr, exit status 2, and nothing written or overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_ranges import IN_RANGE, bad_values, numeric_train_keys

from practice_torch.cli import main

ROOT = Path(__file__).parents[1]
RESUME_SENTENCE = "with train.threads fixed, bit-identical on a CPU to the run never stopped"
TINY = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.latent_dim=4",
        "--set", "train.batch_size=16", "--set", "train.warmup_steps=2", "--set", "train.log_every=2",
        "--set", "train.checkpoint_every=2", "--set", "train.samples=8", "--set", "model.nll_examples=16",
        "--set", "model.nll_samples=4"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_user_error(result: tuple[int, str, str], message: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A private data cache: ``eval`` trains the digits feature network there (a few seconds), once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENERATIVE_TWINS_DATA", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 4-step run of a tiny conv VAE on the 8x8 digits."""
    out = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENERATIVE_TWINS_LOSS_PLOT", "1")  # the loss curves drawn (tests/conftest.py)
        assert main(["train", "vae", "--steps", "4", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture()
def copy(run, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def newest_weights(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / json.loads((run_dir / "checkpoints/latest.json").read_text())["weights"]


# Happy paths --------------------------------------------------------------------------------------------
def test_list_shows_models_data_sets_and_presets(capsys):
    code, out, _ = cli(capsys, "list")
    assert code == 0
    assert all(word in out for word in ("vae", "fashion_mnist", "digits", "moons", "quick", "full"))


def test_list_gives_each_models_quick_preset_steps_and_measured_time(capsys, tmp_path, monkeypatch):
    """Under each model: each row of its quick preset (data set, steps, batch) and the time a results row measured
    for it as it comes; a row with a changed setting is not the preset's time (the control), an idle row is
    preferred to a busy one."""
    from practice_torch import results

    def row(changes, seconds, load, date):
        return {"model": "ppo", "dataset": "cartpole", "preset": "quick", "changes": changes, "train_seconds": seconds,
                "machine": "AMD EPYC, 2 cores", "load": load, "date": date}

    file = tmp_path / "results.json"
    file.write_text(json.dumps([row([], 21.0, "idle (nothing else running)", "2026-11-01"),
                                row([], 95.0, "busy: tests beside it", "2026-11-02"),
                                row(["train.lr=1e-2"], 7.0, "idle", "2026-11-03")]))
    monkeypatch.setattr(results, "RESULTS_FILE", file)
    code, out, _ = cli(capsys, "list")
    lines = out.splitlines()
    ppo = lines[next(i for i, line in enumerate(lines) if line.startswith("  ppo ")) + 1]
    assert code == 0 and ppo.split() == ["quick:", "shakespeare", "400", "steps", "of", "64;", "any", "control",
                                         "data", "set", "146", "steps", "of", "4", "(cartpole:", "21.0", "s", "on",
                                         "AMD", "EPYC,", "2", "cores,", "idle)"]
    vae = lines[next(i for i, line in enumerate(lines) if line.startswith("  vae ")) + 1]
    assert vae.split()[:5] == ["quick:", "fashion_mnist", "4000", "steps", "of"] and " s on " not in vae


def test_eval_notes_say_what_each_fid_measured_and_skip_a_note_whose_counts_are_missing():
    from practice_torch.cli import metric_lines
    from practice_torch.evaluation.samples import METRIC_NOTES
    from practice_torch.gan.quality import REFERENCE_NOTES

    notes = {**METRIC_NOTES, **REFERENCE_NOTES}
    lines = metric_lines({"fid": 12.5, "fid_samples": 13.25, "reference_examples": 500, "sample_metrics_samples": 500,
                          "sample_metrics_held_out": 500}, notes)
    assert lines[0].startswith("  fid                      12.5000  (eval's sample metrics: 500 samples against 500")
    assert lines[1].startswith("  fid_samples              13.2500  (the model's own evaluation: the same FID of "
                               "another 500 samples")
    assert lines[2] == "  reference_examples       500"  # no note
    assert metric_lines({"fid_samples": 13.25}, notes) == ["  fid_samples              13.2500"]  # counts unknown


def test_a_run_whose_thread_team_changed_says_its_last_bits_depend_on_the_load(capsys, tmp_path, monkeypatch):
    """The team resized once mid-run (the load, stood in for by ``ThreadCount.update``): the log gets the resize as a
    line of its own, and the end of the run a note that its last bits depend on it. Control: a run whose team kept
    its size gets no note."""
    from practice_torch.engine.threads import ThreadCount

    calls = {"n": 0}

    def update(self):
        calls["n"] += 1
        if calls["n"] != 3:
            return None
        torch.set_num_threads(self.threads + 1)
        return f"threads {self.threads - 1} -> {self.threads}: other processes kept 0.0 of 2 cores busy"

    monkeypatch.setattr(ThreadCount, "update", lambda self: None)  # whatever the load of the machine running this
    code, _, err = cli(capsys, "train", "vae", "--steps", "4", "--out", str(tmp_path / "plain"), *TINY)
    assert code == 0 and "note:" not in err
    monkeypatch.setattr(ThreadCount, "update", update)
    before = torch.get_num_threads()
    code, _, err = cli(capsys, "train", "vae", "--steps", "4", "--out", str(tmp_path / "resized"), *TINY)
    assert code == 0 and torch.get_num_threads() == before, err  # restored at the end of the run
    assert f"\nvae: threads {before} -> {before + 1}: other processes" in err and "\r" not in err
    assert f"note: the thread team changed size with the load ({before} -> {before + 1})" in err


def test_train_sample_eval_and_resume(run, copy, capsys, tmp_path):
    assert (run / "samples/samples.png").is_file() and (run / "loss.png").is_file()
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4

    code, out, _ = cli(capsys, "sample", str(copy), "--n", "9", "--out", str(tmp_path / "nine.png"))
    assert code == 0 and (tmp_path / "nine.png").is_file() and "nine.png" in out
    trained = snapshot(copy / "samples")
    code, out, _ = cli(capsys, "sample", str(copy))  # beside the samples training wrote, never over them
    assert code == 0 and f"wrote {copy / 'samples-1' / 'reconstructions.png'}" in out
    assert snapshot(copy / "samples") == trained and len(snapshot(copy / "samples-1")) == len(trained)
    code, out, _ = cli(capsys, "sample", str(copy), "--seed", "1")
    assert code == 0 and f"wrote {copy / 'samples-2' / 'samples.png'}" in out
    assert_user_error(cli(capsys, "sample", str(copy), "--n", "0"), "--n must be positive, got 0")  # not 64

    code, out, err = cli(capsys, "eval", str(copy), "--split", "test")
    metrics = json.loads((copy / "eval_test.json").read_text())
    assert code == 0 and "nll_bits_per_dim" in out
    assert metrics["examples"] == 269 and metrics["nll_examples"] == 16 and metrics["importance_samples"] == 4
    assert metrics["nll_bits_per_dim"] == pytest.approx(metrics["nll"] / (64 * 0.6931471805599453))
    # the sample metrics of an image model: 269 samples (as many as test images) through the digits feature network
    assert "training one now" in err and "standard FID skipped" in err
    assert metrics["sample_metrics_samples"] == metrics["sample_metrics_held_out"] == 269
    assert metrics["fid"] > 0 and 1 <= metrics["inception_score"] <= 10 and 0 <= metrics["recall"] <= 1
    assert all(f"{name:<24}" in out for name in ("fid", "inception_score", "kid", "precision", "recall"))
    assert "(eval's sample metrics: 269 samples against 269 held-out examples, in the project's feature network)" in out
    assert 0 < metrics["sample_ms"] < 1000 and "wall milliseconds a sample" in out  # the sampler's cost, timed
    code, _, err = cli(capsys, "eval", str(copy), "--split", "val", "--no-sample-metrics")
    assert code == 0 and "fid" not in json.loads((copy / "eval_val.json").read_text()) and "FID" not in err

    code, out, _ = cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "6")
    last = json.loads((copy / "metrics.jsonl").read_text().splitlines()[-1])
    assert code == 0 and "trained vae for 6 steps (2 of them now) in " in out
    assert f" s, loss {last['loss']:.4g} at the last log step; run directory {copy}" in out
    assert [r["step"] for r in map(json.loads, (copy / "metrics.jsonl").read_text().splitlines())] == [2, 4, 6]


def test_results_adds_the_runs_row_from_its_own_files(copy, capsys, tmp_path):
    env = json.loads((copy / "environment.json").read_text())
    assert env["device"] == "cpu" and env["from_step"] == 0 and env["to_step"] == 4 and env["cores"] >= 1
    results = tmp_path / "results.json"
    assert_user_error(cli(capsys, "results", str(copy), "--load", "idle", "--file", str(results)),
                      "no eval_test.json: run `python -m practice_torch eval")
    assert not results.exists()
    assert cli(capsys, "eval", str(copy), "--no-sample-metrics")[0] == 0
    code, out, _ = cli(capsys, "results", str(copy), "--load", "idle", "--file", str(results))
    (row,) = json.loads(results.read_text())
    metrics = json.loads((copy / "eval_test.json").read_text())
    assert code == 0 and "vae on digits" in out
    assert row["metric"] == "nll_bits_per_dim" and row["value"] == metrics["nll_bits_per_dim"]
    assert row["units"] == "bits/dim" and row["steps"] == 4 and row["load"] == "idle"
    assert row["preset"] == "quick" and "train.steps=4" in row["changes"] and "model.latent_dim=4" in row["changes"]
    capability = env["torch"]["cpu_capability"]  # the vector extension torch ran with: AVX2, AVX512, ...
    cores = f"{env['cores']} core{'' if env['cores'] == 1 else 's'}"  # '1 core' where the tests are pinned to one
    assert row["machine"] == f"{env['cpu']} ({capability}), {cores}" and row["commit"] == env["commit"]
    # the same run again replaces its row; the file keeps one row per run configuration
    assert cli(capsys, "results", str(copy), "--load", "busy", "--file", str(results))[0] == 0
    assert [r["load"] for r in json.loads(results.read_text())] == ["busy"]


def test_a_diverging_run_exits_non_zero_with_one_line_and_keeps_its_checkpoint(capsys, tmp_path):
    out = tmp_path / "nan"
    code, _, err = cli(capsys, "train", "vae", "--steps", "40", "--out", str(out), *TINY, "--set", "train.lr=1e30",
                       "--set", "train.checkpoint_every=1", "--set", "train.warmup_steps=0", "--set", "train.grad_clip=0")
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: the loss became") and "last good checkpoint" in last
    assert (out / "checkpoints/latest.json").is_file()


# User errors: one line, status 2, nothing written ----------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "gpt9"], "unknown model 'gpt9'; choose from"),
    (["train", "vae", "--dataset", "nope"], "unknown data set 'nope'"),
    (["train", "vae", "--set", "model.latent_dim"], "malformed override 'model.latent_dim'"),
    (["train", "vae", "--set", "model.latent_dim=big"], "expected int, got 'big'"),
    (["train", "vae", "--set", "train.nope=1"], "unknown config key 'train.nope'"),
    (["train", "vae", "--set", "data.data_dir=  "], "the value is spaces only; for an empty value write data.data_dir="),
    (["train", "vae", "--dataset", "mnist"], "mnist loads through torchvision: pass --data-dir"),
    (["train", "vae", "--dataset", "moons"], "the VAE models (C, H, W) images"),
    (["train", "vae", "--steps", "0"], "train.steps must be positive, got 0"),
    (["train", "vae", "--device", "cuda:7"] if not torch.cuda.is_available() else ["train", "vae", "--device", "tpu"],
     "device"),
])
def test_bad_training_requests_write_nothing(argv, message, capsys, tmp_path):
    out = tmp_path / "never"
    assert_user_error(cli(capsys, *argv, "--out", str(out)), message)
    assert not out.exists()


# Every numeric train.* key: NaN, the infinities and a value just out of its range, each in one line ------------------
def test_every_numeric_train_key_has_a_range_that_admits_its_edge():
    """Control for the refusals below: a new numeric key without a range fails here, and the in-range edge of each
    range (steps=1, threads=0, ema_decay=0, min_lr_ratio=1, ...) is accepted."""
    from practice_torch.engine.config import TRAIN_RANGES
    from practice_torch.models import new_run_config

    assert set(numeric_train_keys()) == set(TRAIN_RANGES)
    for key in TRAIN_RANGES:
        value = IN_RANGE[TRAIN_RANGES[key]]
        new_run_config("vae", None, None, [f"train.{key}={f'0.5,{value}' if key == 'betas' else value}"])


@pytest.mark.parametrize("key", sorted(numeric_train_keys()))
def test_each_numeric_train_key_refuses_nan_infinities_and_out_of_range_values_in_one_line(key, capsys, tmp_path):
    out = tmp_path / "never"
    for value, message in bad_values(key, numeric_train_keys()[key]):
        assert_user_error(cli(capsys, "train", "vae", "--set", f"train.{key}={value}", "--out", str(out)), message)
    assert not out.exists()


@pytest.mark.parametrize("where", ["a file", "under a file", "in a read-only folder"])
def test_an_out_that_cannot_be_written_is_one_line(where, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"a file": blocker, "under a file": blocker / "run", "in a read-only folder": Path("/sys/generative-run")}[where]
    message = {"a file": "exists and is not empty", "under a file": f"{blocker} is a file, not a folder",
               "in a read-only folder": "cannot write the run directory /sys/generative-run"}[where]
    assert_user_error(cli(capsys, "train", "vae", "--out", str(out), *TINY), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and blocker.read_text() == "x"


def test_runs_started_side_by_side_under_one_new_folder_both_pass_the_write_probe(tmp_path, monkeypatch):
    """A sweep's runs probe the same missing folders at once: a folder another process makes between our look and our
    mkdir, or fills before our probe removes it, is its, kept, and no error (the race a 2-job sweep met)."""
    from practice_torch.engine.runs import check_writable

    shared, other = tmp_path / "sweep" / "presets", tmp_path / "sweep" / "presets" / "other-run"
    real_mkdir = Path.mkdir

    def racing(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self == shared:  # the other process fills it at once, and made it first for the next probe
            real_mkdir(other)
        if self == tmp_path / "sweep" / "presets" / "mine" and not hasattr(racing, "raced"):
            racing.raced = True
            raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", racing)
    check_writable(shared / "mine" / "seed-0")
    assert other.is_dir() and sorted(p.name for p in shared.iterdir()) == ["mine", "other-run"]


def test_out_pointing_at_an_existing_run_is_refused(run, capsys):
    before = snapshot(run)
    assert_user_error(cli(capsys, "train", "vae", "--out", str(run), *TINY), "already holds a run: pass --resume")
    assert snapshot(run) == before


def test_resume_to_fewer_steps_than_trained_is_refused_and_changes_nothing(copy, capsys):
    """A run stopped at step 4 asked to train to 3 would train nothing and write a config.json of 3 steps, so that a
    later plain --resume trained nothing either: refused. Control: its own step count is admitted."""
    before = snapshot(copy)
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "3"),
                      f"cannot resume {copy} to 3 steps: it has trained 4 already; give --steps 4 or more")
    assert snapshot(copy) == before
    code, out, err = cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "4")
    assert code == 0 and "for 4 steps (0 of them now)" in out, err


def test_train_samples_0_skips_the_samples_at_the_end_and_sample_draws_them_later(loss_plot, tmp_path, capsys):
    """train.samples=0: the run ends with its loss curves and no samples (a short run's end was mostly its sampler);
    `sample` then draws TrainConfig's default number. Control: a run with samples writes them (the ``run`` fixture)."""
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", "vae", "--steps", "2", "--out", str(out), *TINY, "--set", "train.samples=0")
    assert code == 0, err
    assert not (out / "samples").exists() and (out / "loss.png").is_file() and "/samples/" not in stdout
    for name, n in (("later.png", []), ("64.png", ["--n", "64"]), ("63.png", ["--n", "63"])):
        code, _, err = cli(capsys, "sample", str(out), "--out", str(tmp_path / name), *n)
        assert code == 0, err
    later = (tmp_path / "later.png").read_bytes()
    assert later == (tmp_path / "64.png").read_bytes() != (tmp_path / "63.png").read_bytes()
    assert_user_error(cli(capsys, "train", "vae", "--out", str(tmp_path / "x"), *TINY, "--set", "train.samples=-1"),
                      "train.samples must be at least 0, got -1")


class Killed(BaseException):
    """A SIGKILL, as a test can send one in-process: nothing after it runs, no handler sees it."""


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path, capsys, monkeypatch):
    """A run killed (SIGKILL, a preempted machine) before its first checkpoint leaves its config.json and log lines,
    no checkpoint: --resume trains it from step 0, bit-identical to the run never killed, its log holding each step
    once; --out on it still says to --resume. Control: the restart note is printed, and the killed run logged a line."""
    from practice_torch.engine import loop

    settings = ["--steps", "4", *TINY, "--set", "train.checkpoint_every=4", "--set", "train.threads=1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["train", "vae", "--out", str(whole), *settings]) == 0

    def die(trainer):
        raise Killed

    monkeypatch.setattr(loop.Trainer, "save", die)
    with pytest.raises(Killed):
        main(["train", "vae", "--out", str(killed), *settings])
    monkeypatch.undo()
    assert not (killed / "checkpoints").exists()
    assert [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    capsys.readouterr()
    assert_user_error(cli(capsys, "train", "vae", "--out", str(killed), *settings), "already holds a run: pass --resume")
    code, out, err = cli(capsys, "train", "vae", "--resume", str(killed))
    assert code == 0, err
    assert f"{killed} was stopped before its first checkpoint: training it from step 0" in err
    assert "trained vae for 4 steps in" in out
    assert [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    a, b = load_file(str(newest_weights(whole))), load_file(str(newest_weights(killed)))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "samples/samples.png").is_file()


def test_resume_with_an_incompatible_config_is_refused(copy, capsys):
    before = snapshot(copy)
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--set", "model.latent_dim=8"),
                      "model.latent_dim: the run has 4, asked for 8")
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--dataset", "fashion_mnist"),
                      "data.name: the run has 'digits'")
    assert snapshot(copy) == before


def test_a_corrupt_checkpoint_is_refused(copy, capsys):
    weights = newest_weights(copy)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = snapshot(copy)
    assert_user_error(cli(capsys, "sample", str(copy)), "is corrupt or unreadable")
    assert_user_error(cli(capsys, "eval", str(copy)), "is corrupt or unreadable")
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "8"), "is corrupt or unreadable")
    (copy / "checkpoints/latest.json").write_text("{not json")
    assert_user_error(cli(capsys, "sample", str(copy)), "latest.json is corrupt")
    assert {k: v for k, v in snapshot(copy).items() if "latest" not in k} == {
        k: v for k, v in before.items() if "latest" not in k}


def test_a_corrupt_companion_state_is_refused(copy, capsys):
    state = newest_weights(copy).with_name(newest_weights(copy).name.replace(".safetensors", ".state.pt"))
    state.write_bytes(state.read_bytes()[:100])
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "8"), "is corrupt or unreadable")


def test_foreign_checkpoints_are_refused(copy, capsys, tmp_path):
    weights = newest_weights(copy)
    tensors = load_file(str(weights))
    save_file(tensors, str(weights))  # right tensors, but not written by us (no metadata)
    assert_user_error(cli(capsys, "sample", str(copy)), "is not a generative-twins checkpoint")
    save_file(tensors, str(weights), metadata={"format": "generative-twins/checkpoint-1", "model": "gan", "step": "4"})
    assert_user_error(cli(capsys, "eval", str(copy)), "is a checkpoint of model 'gan', not 'vae'")
    other = tmp_path / "other"  # one of ours, for a VAE of another shape
    assert main(["train", "vae", "--steps", "2", "--out", str(other), *TINY, "--set", "model.latent_dim=3"]) == 0
    capsys.readouterr()
    shutil.copy(newest_weights(other), weights)
    before = snapshot(copy)
    assert_user_error(cli(capsys, "sample", str(copy)), "does not fit this model")
    assert_user_error(cli(capsys, "train", "vae", "--resume", str(copy), "--steps", "8"), "does not fit this model")
    assert snapshot(copy) == before


def test_sample_and_eval_take_model_overrides_and_refuse_others(copy, capsys):
    before = snapshot(copy)
    assert_user_error(cli(capsys, "eval", str(copy), "--set", "train.lr=1"), "take model.KEY=VALUE only")
    assert_user_error(cli(capsys, "sample", str(copy), "--set", "model.nope=1"), "unknown config key 'model.nope'")
    assert_user_error(cli(capsys, "sample", str(copy), "--set", "model.latent_dim=3"),
                      "model.latent_dim is fixed by the checkpoint")  # the VAE's ARCHITECTURE
    assert_user_error(cli(capsys, "eval", str(copy), "--set", "model.beta=4"),
                      "model.beta: only the training step reads it, so it changes nothing here; sample and eval of "
                      "vae may change model.nll_samples, model.nll_examples")  # neither ARCHITECTURE nor USE
    assert snapshot(copy) == before
    code, _, _ = cli(capsys, "eval", str(copy), "--no-sample-metrics", "--set", "model.nll_examples=8")
    assert code == 0 and json.loads((copy / "eval_test.json").read_text())["nll_examples"] == 8


def test_sample_and_eval_need_a_run_directory(capsys, tmp_path):
    assert_user_error(cli(capsys, "sample", str(tmp_path)), "is not a run directory")
    assert_user_error(cli(capsys, "eval", str(tmp_path / "missing")), "is not a run directory")


def test_bad_feature_network_requests_are_one_line(capsys):
    assert_user_error(cli(capsys, "features", "nope"), "unknown data set 'nope'")
    assert_user_error(cli(capsys, "features", "shakespeare"), "feature networks are for image data sets")


# As a separate process: exit status, stderr, signals ------------------------------------------------------
def python_m(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "practice_torch", *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_the_module_entry_point_prints_one_line_and_exits_2(tmp_path):
    proc = python_m("train", "vae", "--set", "model.latent_dim=", "--out", str(tmp_path / "x"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err == "error: override 'model.latent_dim=': expected int, got ''\n"


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])  # the same path; SIGTERM (a preemption) in the default suite
def test_a_signal_finishes_the_step_checkpoints_and_the_run_resumes(signum, tmp_path, capsys):
    """The practical guide's sentence, as written: a stopped run continues "with train.threads fixed, bit-identical on a CPU
    to the run never stopped" (its weights compared with those of a run of the same config never stopped, at the
    same step). Control: the stopped run's own weights differ from those."""
    assert RESUME_SENTENCE in (ROOT / "docs" / "guide.md").read_text().replace("\n", " ")
    out = tmp_path / "run"
    proc = python_m("train", "vae", "--steps", "100000", "--out", str(out), *TINY, "--set", "train.threads=1")
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name} after step" in err and "Traceback" not in err
    step = json.loads((out / "checkpoints/latest.json").read_text())["step"]
    assert f"after step {step};" in err
    stopped = load_file(str(newest_weights(out)))
    shutil.copytree(out, tmp_path / "stopped")
    code, _, err = cli(capsys, "train", "vae", "--resume", str(out), "--steps", str(step + 2))  # in this process
    assert code == 0, err
    assert json.loads((out / "checkpoints/latest.json").read_text())["step"] == step + 2
    # stderr is captured here, as in a log: whole lines with the loss, no carriage-return redraws
    assert "\r" not in err and f"{step + 2}/{step + 2}" in err and "loss=" in err, err
    # bit-identical: the stopped run resumed (its config as saved: 100 000 steps, so the same LR schedule) against the
    # same config never stopped, both to step + 2
    from practice_torch.models import new_trainer, resumed_config, run_config

    resumed = new_trainer(resumed_config(tmp_path / "stopped", "vae"), tmp_path / "stopped", resume=True)
    assert resumed.step == step
    resumed.run(stop_at=step + 2)
    never_stopped = new_trainer(run_config(tmp_path / "stopped"), tmp_path / "never-stopped")
    never_stopped.run(stop_at=step + 2)
    mine, theirs = resumed.net.state_dict(), never_stopped.net.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not all(torch.equal(stopped[k], theirs[k]) for k in theirs)  # control: two steps move the weights


def test_sample_and_eval_use_the_runs_threads(copy):
    """A run trained with train.threads=1 also samples on one thread (small-op models are faster so)."""
    from practice_torch.models import open_run

    config = copy / "config.json"
    raw = json.loads(config.read_text())
    raw["train"]["threads"] = 1
    config.write_text(json.dumps(raw))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        open_run(copy, torch.device("cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_machine_of_a_results_row_names_the_vector_extension_where_the_run_recorded_it():
    from practice_torch.results import machine

    cpu = {"cpu": "AMD EPYC", "cores": 2}
    assert machine({**cpu, "torch": {"cpu_capability": "AVX2"}}) == "AMD EPYC (AVX2), 2 cores"
    assert machine(cpu) == "AMD EPYC, 2 cores"  # an older run's environment.json
    assert machine({**cpu, "gpu": "NVIDIA H100 80GB HBM3", "processes": 2}) == "NVIDIA H100 80GB HBM3 x 2"


def test_a_run_trained_by_jax_on_a_gpu_records_that_gpu_though_torch_stayed_on_the_cpu(tmp_path):
    """practice_jax train keeps the torch side on the CPU; the GPU JAX computed on is passed as ``gpu`` and the record
    says cuda and names it (a results row then quotes the GPU, not the host CPU). Control: without it, the CPU."""
    from practice_torch.engine.runs import write_environment
    from practice_torch.results import machine

    write_environment(tmp_path, torch.device("cpu"), 1, 0, backend="jax", gpu="NVIDIA H100 80GB HBM3")
    env = json.loads((tmp_path / "environment.json").read_text())
    assert (env["device"], env["gpu"], env["backend"]) == ("cuda", "NVIDIA H100 80GB HBM3", "jax")
    assert machine(env) == "NVIDIA H100 80GB HBM3"
    write_environment(tmp_path, torch.device("cpu"), 1, 0, backend="jax")
    env = json.loads((tmp_path / "environment.json").read_text())
    assert (env["device"], env["gpu"]) == ("cpu", None) and "GPU" not in machine(env)


def test_a_resumed_runs_training_time_sums_its_sessions():
    """metrics.jsonl's clock restarts with each session: 100 s to step 2, then 30 s more after a resume (control:
    the last reading alone, 30 s, is what a run read as one session would report)."""
    from practice_torch.results import training_seconds

    records = [{"step": 1, "time_s": 50.0}, {"step": 2, "time_s": 100.0}, {"step": 3, "time_s": 12.0},
               {"step": 4, "time_s": 30.0}]
    assert training_seconds(records) == 130.0
    assert training_seconds(records[:2]) == 100.0 and training_seconds(records[2:]) == 30.0
