"""The benchmark runner's interface (timings themselves are never asserted) and the metrics sanity table's
order check, which must fail on a table out of order."""

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import BENCHMARKS, DEFAULT, build_parser, default_threads, main, metric_order_problems, metrics

ROOT = Path(__file__).parents[1]


def test_unknown_benchmark_is_a_usage_error(capsys):
    assert main(["no_such_benchmark"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_registry_names_the_first_entries():
    assert "vae_step" in BENCHMARKS and "metrics" in BENCHMARKS


def test_the_long_diffusion_benchmarks_run_only_when_named():
    assert set(DEFAULT) <= set(BENCHMARKS) and "unet_step" in DEFAULT
    assert not {"ddim_steps", "guidance_sweep", "latent_vs_pixel"} & set(DEFAULT)
    assert {"ddim_steps", "guidance_sweep", "latent_vs_pixel"} <= set(BENCHMARKS)


def test_the_suite_benchmark_reads_pytests_summary_and_keeps_both_probes():
    """``suite`` (run only when named): pytest's last summary line read into counts and seconds, whatever counts it
    names, with or without its '=' rule; its ``--durations`` lines read into the slowest tests, in pytest's order; a run's
    row averages the probe before and after it. Controls: a failed test is counted, the summary and pytest's notes
    around the durations are not read as a test, and output without a summary (the suite never ran) is one line, not
    a row."""
    from benchmarks.suite import PROBES, row, slowest, summary

    assert "suite" in BENCHMARKS and "suite" not in DEFAULT
    assert summary("....\n2112 passed, 1 skipped, 3 warnings in 547.66s (0:09:07)\n") == {
        "passed": 2112, "failed": 0, "errors": 0, "skipped": 1, "warnings": 3, "seconds": 547.66}
    failed = summary("F.\n==== 1 failed, 1 passed, 1 warning, 2 errors in 3.50s ====")
    assert (failed["failed"], failed["passed"], failed["warnings"], failed["errors"]) == (1, 1, 1, 2)
    with pytest.raises(SystemExit, match="printed no summary line; its last line: ImportError: no module"):
        summary("collecting ...\nImportError: no module")
    output = ("....\n============================= slowest 15 durations =============================\n"
              "40.81s call     tests/test_jax_train.py::test_two_devices\n"
              "2.05s setup    tests/test_check.py::test_twin[ssm]\n\n"
              "(13 durations < 0.005s hidden.  Use -vv to show these durations.)\n"
              "2112 passed, 1 skipped, 3 warnings in 547.66s (0:09:07)\n")
    assert slowest(output) == [
        {"seconds": 40.81, "phase": "call", "test": "tests/test_jax_train.py::test_two_devices"},
        {"seconds": 2.05, "phase": "setup", "test": "tests/test_check.py::test_twin[ssm]"}]
    assert slowest("....\n2112 passed in 547.66s (0:09:07)\n") == []
    before, after = dict.fromkeys(PROBES, 10.0), dict.fromkeys(PROBES, 14.0)
    r = row(0, {"seconds": 5.0}, before, after, (0.1, 1.9))
    assert [r[p] for p in PROBES] == [12.0] * 3 and r["probes"] == {"before": before, "after": after}
    assert (r["seconds"], r["load_before"], r["load_after"]) == (5.0, 0.1, 1.9)


def test_the_suite_benchmark_runs_make_tests_own_pytest_arguments(tmp_path):
    """``suite`` runs in a clone the pytest command ``make test`` runs, its arguments read from the Makefile (``make
    test-args``), so the two cannot drift apart. Control: a Makefile without the target is one line, not a run."""
    import subprocess

    from benchmarks.suite import make_test_args

    args = make_test_args(ROOT)
    recipe = subprocess.run(["make", "-n", "--no-print-directory", "test"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    assert recipe.endswith(" -m pytest " + " ".join(args)) and "--dist" in args, (recipe, args)
    (tmp_path / "Makefile").write_text("test:\n\techo old\n")
    with pytest.raises(SystemExit, match="has no `make test-args`.*time a later commit"):
        make_test_args(tmp_path)


def _row(images, fid, kid, precision, recall):
    return {"images": images, "n": 100, "fid": fid, "inception_score": 5.0, "kid": kid, "precision": precision,
            "recall": recall}


def test_the_order_check_passes_an_ordered_table_and_names_each_break():
    rows = [_row("test (itself)", 0.0, -0.3, 1.0, 1.0), _row("test (other half)", 0.9, 0.02, 0.88, 0.87),
            _row("train", 0.6, -0.01, 0.87, 0.86), _row("blurred (sigma 1)", 97.0, 8.7, 0.70, 0.01),
            _row("uniform noise", 328.0, 19.8, 0.06, 0.0)]
    assert metric_order_problems(rows) == []  # the other half is the noise floor: not part of the order
    swapped = rows[:3] + [rows[4], rows[3]]
    problems = metric_order_problems(swapped)
    assert len(problems) == 4 and all(p.split(":")[0] in ("fid", "kid", "precision", "recall") for p in problems)
    assert any("uniform noise 328 >= blurred (sigma 1) 97" in p for p in problems)
    tie = [dict(rows[0]), rows[2], rows[3], rows[4]]
    tie[0]["recall"] = rows[2]["recall"]
    assert metric_order_problems(tie) == ["recall: test (itself) 0.86 <= train 0.86"]


def test_the_metrics_table_on_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(tmp_path))
    args = argparse.Namespace(dataset="digits", data_dir=None, per_set=60, blur=0.5)
    rows = metrics(args)
    assert [r["images"] for r in rows] == ["test (itself)", "test (other half)", "train", "blurred (sigma 0.5)",
                                           "uniform noise"]
    itself = rows[0]
    assert abs(itself["fid"]) < 1e-4 and itself["precision"] == itself["recall"] == 1.0 and itself["kid"] < 0
    assert all(r["n"] == 60 for r in rows) and rows[1]["fid"] < rows[4]["fid"]


@pytest.mark.slow
def test_the_fashion_mnist_table_holds_its_order(tmp_path):
    """``python -m benchmarks metrics`` as a user runs it (the cached or a freshly trained feature network)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "metrics", "--results", str(tmp_path)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["order_holds"] and "expected order holds: yes" in proc.stdout


def test_latent_vs_pixel_times_the_models_own_image_samples():
    """timed_samples hands latent_vs_pixel an image tensor (draw_images also returns the samples' labels)."""
    from types import SimpleNamespace

    from benchmarks.latent_diffusion import timed_samples
    from practice_torch.models import Artefact

    def sample(net, config, n, generator, examples):
        return [Artefact("samples", "images", torch.rand(n, 1, 4, 4, generator=generator) * 1.5,
                         labels=torch.arange(n) % 10)]

    images, cpu_s, wall_s = timed_samples(SimpleNamespace(sample=sample), SimpleNamespace(model=None),
                                          torch.nn.Linear(1, 1), 6)
    assert isinstance(images, torch.Tensor) and images.shape == (6, 1, 4, 4) and images.max() <= 1.0
    assert cpu_s >= 0 and wall_s >= 0


def test_gpu_steps_times_the_engines_step_and_skips_a_preset_that_needs_another_run(tmp_path, capsys):
    """The smoke form of ``gpu_steps`` on a CPU: the VAE's quick step through the engine, its FLOPs counted (a real
    number: more than the decoder's output layer alone), MFU below 1, and gan_inversion (its full preset needs a
    trained gan run) reported as skipped, not crashed. Nothing about speed is asserted."""
    assert main(["gpu_steps", "--gpu-models", "vae,gan_inversion", "--gpu-steps", "1", "--preset", "quick",
                 "--gpu-set", "data.limit=256", "--gpu-set", "train.batch_size=32",
                 "--gpu-set", "vae:model.latent_dim=3", "--gpu-set", "gan:model.nope=1",  # another model's: ignored
                 "--gpu-profile", "3", "--results", str(tmp_path)]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "gpu_steps.json").read_text())["rows"]}
    vae = rows["vae"]
    assert vae["device"] == "cpu" and vae["examples_per_s"] > 0 and vae["first_step_s"] > 0 and vae["build_s"] > 0
    assert vae["batch"] == 32 and vae["gflop_per_step"] > 32 * 784 * 2 * 3 / 1e9 and 0 < vae["mfu"] < 1
    assert vae["gpu_busy"] is None and vae["syncs_per_step"] is None  # CPU: no device to wait for
    assert vae["compiled"] == "eager"  # the quick preset does not compile
    assert vae["set"] == "data.limit=256 train.batch_size=32 model.latent_dim=3"  # its own override, not gan's
    times = [k["ms_per_step"] for k in vae["kernels"]]  # the profile: the three operators that take the most
    assert len(times) == 3 and times == sorted(times, reverse=True) and 0 < sum(k["share"] for k in vae["kernels"]) < 1
    assert "ms/step" in capsys.readouterr().out  # and the log lists them
    # the rate counts the timed steps' batches alone, not the profiled steps' after them (which once doubled it)
    assert vae["examples_per_s"] == pytest.approx(vae["batch"] / (vae["step_ms"] / 1000))
    assert rows["gan_inversion"]["note"].startswith("skipped: ") and rows["gan_inversion"]["mfu"] is None
    assert "model.generator" in rows["gan_inversion"]["note"]


def test_flops_are_counted_through_a_gradient_penalty():
    """count_flops sums torch's per-operator formulas through torch.autograd.grad with create_graph (an R1 or
    WGAN-GP penalty), where FlopCounterMode's module attribution fails (the control): at least the linear layer's
    forward, input gradient and weight gradient (3 x 2 x 4 x 3 x 5); where FlopCounterMode works, the same total."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.timing import count_flops

    lin, x = torch.nn.Linear(3, 5), torch.randn(4, 3, requires_grad=True)

    def step():
        v = lin(x).sum()
        (g,) = torch.autograd.grad(v, x, create_graph=True)
        (g.pow(2).sum() + v).backward()

    assert count_flops(step) >= 3 * 2 * 4 * 3 * 5 and count_flops(lambda: lin(x)) == 2 * 4 * 3 * 5

    def plain():
        lin(x).pow(2).sum().backward()

    with FlopCounterMode(display=False) as reference:
        plain()
    assert count_flops(plain) == reference.get_total_flops() > 2 * 4 * 3 * 5
    with pytest.raises(RuntimeError, match="autograd.grad"), FlopCounterMode(display=False):
        step()


def _gpu_rows(results: Path) -> list[dict]:
    return json.loads((results / "gpu_steps.json").read_text())["rows"]


def test_gpu_steps_keeps_each_row_as_it_is_measured_and_merges_shorter_runs(tmp_path, monkeypatch):
    """Timed in several runs: each row reaches the results file as it is measured (a run stopped at its second
    model, as by Ctrl-C, exits 130 and keeps its first), ``--gpu-merge`` joins a run's rows to the file's in the
    catalogue's order, replacing a model timed again; the controls: without the flag the file holds only the last
    run, and rows from another device are not merged in. A step that fails is that model's row, and the next model
    still runs."""
    from practice_torch.engine.loop import Trainer

    quick = ["--gpu-steps", "1", "--preset", "quick", "--gpu-set", "data.limit=1024", "--results", str(tmp_path)]
    real_step = Trainer._train_step

    def step(self):
        if self.cfg.model_name == "change_of_variables":
            raise KeyboardInterrupt  # the run is stopped while it times its second model
        return real_step(self)

    monkeypatch.setattr(Trainer, "_train_step", step)
    assert main(["gpu_steps", "--gpu-models", "mixture_em,change_of_variables", *quick]) == 130  # Ctrl-C's exit
    assert [r["model"] for r in _gpu_rows(tmp_path)] == ["mixture_em"]

    def failing(self):
        if self.cfg.model_name == "change_of_variables":
            raise RuntimeError("out of memory\nsecond line")
        return real_step(self)

    monkeypatch.setattr(Trainer, "_train_step", failing)
    assert main(["gpu_steps", "--gpu-models", "change_of_variables,score", "--gpu-merge", *quick]) == 0
    rows = _gpu_rows(tmp_path)
    assert [r["model"] for r in rows] == ["change_of_variables", "mixture_em", "score"]  # the catalogue's order
    assert rows[0]["note"] == "failed: RuntimeError: out of memory" and rows[0]["mfu"] is None
    assert rows[2]["examples_per_s"] > 0 and rows[2]["commit"] and rows[2]["gpu"] is None

    monkeypatch.setattr(Trainer, "_train_step", real_step)
    assert main(["gpu_steps", "--gpu-models", "change_of_variables", "--gpu-merge", *quick]) == 0
    rows = _gpu_rows(tmp_path)
    assert [r["model"] for r in rows] == ["change_of_variables", "mixture_em", "score"]
    assert rows[0]["note"] == "" and rows[0]["examples_per_s"] > 0  # timed again: its row replaced

    assert main(["gpu_steps", "--gpu-models", "score", *quick]) == 0  # control: no --gpu-merge, a new file
    assert [r["model"] for r in _gpu_rows(tmp_path)] == ["score"]
    recorded = json.loads((tmp_path / "gpu_steps.json").read_text())
    recorded["rows"][0] |= {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3"}  # control: another machine's row
    (tmp_path / "gpu_steps.json").write_text(json.dumps(recorded))
    assert main(["gpu_steps", "--gpu-models", "mixture_em", "--gpu-merge", *quick]) == 0
    assert [(r["model"], r["device"]) for r in _gpu_rows(tmp_path)] == [("mixture_em", "cpu")]


def test_gpu_steps_stops_a_model_past_its_limit_and_times_the_next(tmp_path, monkeypatch):
    """--gpu-model-limit: a model whose row takes longer (here a first step that sleeps 2 s) is a failed row naming
    the part it was in, and the timer is disarmed for the next model, which is timed (MODEL@DATASET: on that data
    set's preset, where the other keeps its own); the control: with a limit above the sleep the slow model's row is
    timed."""
    import time

    from practice_torch.engine.loop import Trainer

    quick = ["--gpu-steps", "1", "--preset", "quick", "--gpu-set", "data.limit=1024", "--results", str(tmp_path)]
    real_step = Trainer._train_step
    slept = []

    def slow(self):
        if self.cfg.model_name == "score" and not slept:
            slept.append(time.sleep(2.0))
        return real_step(self)

    monkeypatch.setattr(Trainer, "_train_step", slow)
    assert main(["gpu_steps", "--gpu-models", "score,mixture_em@gaussians", "--gpu-model-limit", "1", *quick]) == 0
    rows = {r["model"]: r for r in _gpu_rows(tmp_path)}
    assert rows["mixture_em"]["dataset"] == "gaussians" and rows["score"]["dataset"] == "moons"  # MODEL@DATASET
    assert rows["score"]["note"] == "failed: over its 1 s limit in the first step"
    assert rows["score"]["examples_per_s"] is None
    assert rows["mixture_em"]["note"] == "" and rows["mixture_em"]["examples_per_s"] > 0
    slept.clear()
    assert main(["gpu_steps", "--gpu-models", "score", "--gpu-model-limit", "30", *quick]) == 0  # the control
    assert slept and _gpu_rows(tmp_path)[0]["note"] == "" and _gpu_rows(tmp_path)[0]["examples_per_s"] > 0


def test_gpu_steps_merge_refuses_a_file_that_is_not_its_results_in_one_line(tmp_path, capsys):
    (tmp_path / "gpu_steps.json").write_text("[1, 2]")
    assert main(["gpu_steps", "--gpu-models", "mixture_em", "--gpu-merge", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a gpu_steps results file; move it away or run without --gpu-merge" in err and err.count("\n") == 1


def test_gpu_publish_puts_a_gpu_runs_rows_into_the_record_and_keeps_what_they_replace(tmp_path, capsys):
    """``benchmarks.gpu_publish``: the rows a GPU run brought back take their models' places at the commit given (the
    GPU copy's '+changes' commit refused without one), the replaced row kept as ``<model>_<its commit>``; a new model
    appended; ``--variant`` keeps rows beside the preset's; bad input is one line and writes nothing. Controls: a CPU
    row and a file that is not a results file are refused; rows of the same commit again leave no variant."""
    from benchmarks.gpu_publish import main as publish

    def row(model, commit, ms, device="cuda"):
        return {"model": model, "device": device, "gpu": "NVIDIA H200", "commit": commit, "step_ms": ms,
                "examples_per_s": ms and 1000 / ms}

    record = tmp_path / "gpu_steps.json"
    record.write_text(json.dumps({"meta": {"commit": "aaa"}, "rows": [row("ddpm", "aaa", 40.0), row("vae", "aaa", 2.0)],
                                  "variants": []}, indent=2) + "\n")
    run = tmp_path / "steps.json"
    run.write_text(json.dumps({"meta": {"commit": "aaa+changes", "load_before": 0.4},
                               "rows": [row("ddpm", "aaa+changes", 20.0), row("stylegan", "aaa+changes", 9.0)]}))
    before = record.read_bytes()

    def refused(argv, message):
        assert publish(argv, record) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
        assert record.read_bytes() == before

    refused([str(run)], "pass --commit with the commit that was run")
    refused([str(run), "--commit", "bbb", "--variant", "graphs"], "--variant needs --what")
    refused([str(tmp_path / "missing.json"), "--commit", "bbb"], "no such file")
    (tmp_path / "list.json").write_text("[1]")
    refused([str(tmp_path / "list.json"), "--commit", "bbb"], "is not a gpu_steps results file")
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps({"meta": {}, "rows": [row("vae", "bbb", 1.0, device="cpu")]}))
    refused([str(cpu), "--commit", "bbb"], "vae was timed on cpu, not a GPU")

    assert publish([str(run), "--commit", "bbb"], record) == 0
    new = json.loads(record.read_text())
    assert [(r["model"], r["commit"], r["step_ms"]) for r in new["rows"]] == [
        ("ddpm", "bbb", 20.0), ("vae", "aaa", 2.0), ("stylegan", "bbb", 9.0)]
    assert [(v["name"], v["commit"], v["step_ms"]) for v in new["variants"]] == [("ddpm_aaa", "aaa", 40.0)]
    assert new["meta"] == {"commit": "bbb", "load_before": 0.4}
    assert publish([str(run), "--commit", "bbb"], record) == 0  # the same rows again: nothing more kept
    assert json.loads(record.read_text()) == new
    assert publish([str(run), "--commit", "bbb", "--variant", "graphs", "--what", "CUDA graphs"], record) == 0
    kept = json.loads(record.read_text())
    assert kept["rows"] == new["rows"] and [v["name"] for v in kept["variants"]] == ["ddpm_aaa", "ddpm_graphs",
                                                                                      "stylegan_graphs"]
    assert kept["variants"][1]["what"] == "CUDA graphs" and "now `python -m shared_specs docs`" in capsys.readouterr().out
    assert kept["meta"] == new["meta"]  # a variant's run is not the table's
    skipped = tmp_path / "skipped.json"  # a model the run could not time leaves its timed row (control: a new model)
    skipped.write_text(json.dumps({"meta": {}, "rows": [{**row("vae", "ccc", None), "examples_per_s": None,
                                                          "note": "skipped: no data"},
                                                         {**row("score", "ccc", None), "note": "failed: OOM"}]}))
    assert publish([str(skipped)], record) == 0
    assert "vae: not timed in" in capsys.readouterr().out
    after = {r["model"]: r for r in json.loads(record.read_text())["rows"]}
    assert after["vae"]["commit"] == "aaa" and after["score"]["note"] == "failed: OOM"


def test_gpu_steps_on_a_gpu_gets_every_core_and_cpu_timings_one():
    assert default_threads(["gpu_steps"], cuda=True, cores=16) == 16
    assert default_threads(["gpu_steps"], cuda=False, cores=16) == 1  # the CPU rows stay comparable
    assert default_threads(["vae_step", "metrics"], cuda=True, cores=16) == 1


def test_shared_cpu_runs_each_setting_and_compares_it_with_the_workarounds(monkeypatch):
    """The commands of the four thread settings, and the ratios, on stand-in timings (the runs take minutes)."""
    from benchmarks import shared_cpu as S

    command, env = S.train_command("passive waiting", 50, 2, Path("out"))
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "train.threads=2" in command and "OMP_NUM_THREADS" not in env
    assert "train.threads=1" in S.train_command("one thread", 50, 2, Path("out"))[0]
    engine, engine_env = S.train_command("engine", 50, 2, Path("out"))
    assert not any(a.startswith("train.threads=") for a in engine) and "OMP_WAIT_POLICY" not in engine_env
    speeds = {(0, "all threads"): 4000.0, (0, "one thread"): 2400.0, (0, "passive waiting"): 3200.0,
              (0, "engine"): 3900.0, (1, "all threads"): 1000.0, (1, "one thread"): 2000.0,
              (1, "passive waiting"): 1800.0, (1, "engine"): 1900.0}
    busy = []
    monkeypatch.setattr(S.subprocess, "Popen", lambda cmd: busy.append(cmd) or argparse.Namespace(
        kill=lambda: None, wait=lambda: None))
    monkeypatch.setattr(S, "timed_run", lambda setting, steps, cores: {
        "examples_per_s": speeds[(len(busy), setting)], "threads": 1, "resizes": 0, "wall_s": 1.0})
    rows = S.shared_cpu(argparse.Namespace(cpu_loads="0,1", cpu_steps=50, cpu_repeats=2, save=lambda rows: None))
    assert busy == [S.BUSY]  # one busy process, started for the second load only
    assert len(rows) == 8 and all(r["slowest"] == r["fastest"] == r["examples_per_s"] for r in rows)
    engine_rows = {r["busy_processes"]: r for r in rows if r["setting"] == "engine"}
    assert engine_rows[1]["vs_best_workaround"] == 2000.0 / 1900.0
    assert engine_rows[0]["vs_idle_all_threads"] == 3900.0 / 4000.0


def test_fingerprints_compare_a_renamed_weight_under_its_new_name_in_the_named_model_only():
    from benchmarks.fingerprints import compare, rename_option

    assert rename_option("gan:critic.=discriminator.") == ("gan", "critic.", "discriminator.")
    assert rename_option("critic.=discriminator.") == ("", "critic.", "discriminator.")
    assert rename_option("gan:critic.") is None
    before = {"gan": {"weights": {"critic.w": "a", "generator.w": "b"}, "optimizer": "o"},
              "wgan": {"weights": {"critic.w": "c"}, "optimizer": "o"}}
    after = {"gan": {"weights": {"discriminator.w": "a", "generator.w": "b"}, "optimizer": "o"},
             "wgan": {"weights": {"critic.w": "c"}, "optimizer": "o"}}
    lines, same = compare(before, after, [rename_option("gan:critic.=discriminator.")])
    assert same and lines == ["gan: bit-identical, optimizer same", "wgan: bit-identical, optimizer same"]
    lines, _ = compare(before, after)  # negative control: without the rename the names differ
    assert "only before: critic.w" in lines[0] and "only after: discriminator.w" in lines[0]
    after["gan"]["weights"]["generator.w"] = "changed"
    lines, same = compare(before, after, [rename_option("gan:critic.=discriminator.")])
    assert not same and "1 weights CHANGED (generator.w)" in lines[0]


def test_restoration_scores_psnr_over_the_unknown_region_and_its_baselines_keep_what_is_known():
    """PSNR: a uniform error of 0.1 is 20 dB, and the region decides which pixels count (control: an error outside
    it does not lower it). Mean fill keeps the known pixels and fills the rest with their mean; nearest upsampling
    of the block means has the truth's block means. A bad task is a one-line exit."""
    from benchmarks.restoration import baselines, parse_tasks, psnr, value_range
    from practice_torch.diffusion import low_pass

    truth = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4] = 1
    assert psnr(truth + 0.1, truth, torch.ones(1, 1, 8, 8)) == pytest.approx(20.0, abs=1e-4)
    off_region = truth.clone()
    off_region[..., 4:] += 0.5
    assert psnr(off_region + 0.1 * region, truth, region) == pytest.approx(20.0, abs=1e-4)
    known = 1 - region
    filled = baselines("inpaint", "left", truth, known)["mean fill"]
    assert torch.equal(known * filled, known * truth)
    mean = (truth * known).flatten(1).sum(1) / 32
    torch.testing.assert_close(filled[..., :4], mean[:, None, None, None].expand(3, 1, 8, 4))
    nearest = baselines("super_resolution", "2", truth, known)["nearest"]
    torch.testing.assert_close(low_pass(nearest, 2), low_pass(truth, 2))
    # the data's range R: an error of 0.1 on data spanning 1.5 (the galaxies) is 20 log10(15) dB; 20 dB only at R = 1
    assert psnr(truth + 0.1, truth, torch.ones(1, 1, 8, 8), 1.5) == pytest.approx(20 * math.log10(15), abs=1e-4)
    assert value_range(truth - 0.5, unit=False) == (float(truth.min() - 0.5), float(truth.max() - 0.5))
    assert value_range(truth - 0.5, unit=True) == (0.0, 1.0)
    bicubic = baselines("super_resolution", "2", truth - 0.5, known, -0.5, 0.5)["bicubic"]
    assert bicubic.min() >= -0.5 and bicubic.min() < 0  # clamped to the data's range, not to [0, 1]
    assert parse_tasks("inpaint:center,super_resolution:4") == [("inpaint", "center"), ("super_resolution", "4")]
    with pytest.raises(SystemExit, match="inpaint:MASK or super_resolution:FACTOR"):
        parse_tasks("denoise:2")


def test_the_restoration_figure_labels_each_row_with_what_it_shows():
    """restoration.png: each row labelled (the task's input, each restoration, the truth) beside its own images,
    drawn black to white over the data's range, the task above its rows (control: neighbouring rows differ, so a
    label beside another row's images would be caught)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from torchvision.utils import make_grid

    from benchmarks.restoration import figure_rows, restoration_figure

    g = torch.Generator().manual_seed(0)

    def images():
        return torch.rand(8, 1, 6, 6, generator=g) * 1.5 - 0.5  # data in [-0.5, 1]

    groups = [("inpaint center", figure_rows("inpaint", "center", images(), {"RePaint, r = 1": images(),
                                                                             "RePaint, resampled r = 5": images()},
                                             images())),
              ("super_resolution 4", figure_rows("super_resolution", "4", images(), {"ILVR, r = 1": images()},
                                                 images()))]
    fig = restoration_figure(groups, -0.5, 1.0)
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == [
            "input: known pixels", "RePaint, r = 1", "RePaint, resampled r = 5", "truth",
            "input: 4x block means", "ILVR, r = 1", "truth"]
        assert [ax.get_title(loc="left") for ax in fig.axes] == ["inpaint center", "", "", "",
                                                                 "super_resolution 4", "", ""]
        rows = [shown for _, group in groups for _, shown in group]
        for ax, shown in zip(fig.axes, rows):
            expected = make_grid((shown + 0.5) / 1.5, nrow=8, padding=1, pad_value=1.0).permute(1, 2, 0).numpy()
            np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected, atol=1e-6)
        for above, below in zip(fig.axes, fig.axes[1:]):
            assert not np.allclose(above.images[0].get_array(), below.images[0].get_array())
    finally:
        plt.close(fig)


def test_gan_stability_names_its_variants_and_refuses_an_unknown_one_in_one_line():
    """Each variant is a --set of an existing topic (control: the plain GAN changes nothing)."""
    from benchmarks.gan_stability import VARIANTS, classes_covered, gan_stability, variant_sets

    assert VARIANTS["plain"] == ("gan", ()) and VARIANTS["spectral_norm"] == ("gan", ("model.spectral_norm=true",))
    assert VARIANTS["wgan_gp"][0] == "wgan" and VARIANTS["unrolled"] == ("gan", ("model.unrolled_steps=5",))
    # images: the DCGAN preset's R1 (weight 10) is off for the plain game and every other remedy, on for R1
    assert variant_sets("plain", images=True) == ("model.r1=0",)
    assert variant_sets("r1", images=True) == ("model.r1=10",)
    assert variant_sets("spectral_norm", images=True) == ("model.r1=0", "model.spectral_norm=true")
    assert variant_sets("wgan_gp", images=True) == () and variant_sets("r1", images=False) == ("model.r1=0.1",)
    shares = {f"class_share_{k}": s for k, s in enumerate([0.3, 0.2, 0.05, 0.049, *[0.4 / 6] * 6])}
    assert classes_covered({**shares, "class_share_min": 0.049}) == 9  # half a fair share (0.05) counts, less does not
    args = argparse.Namespace(stability_dataset="gaussians", stability_seeds="0", stability_variants="plain,boosted")
    with pytest.raises(SystemExit, match="unknown variant 'boosted'"):
        gan_stability(args)
    # progressive growing: images only, with the preset's R1
    assert variant_sets("progressive", images=True) == ("model.r1=10", "model.progressive=true")
    with pytest.raises(SystemExit, match="progressive growing grows images; gaussians is not one"):
        gan_stability(argparse.Namespace(**{**vars(args), "stability_variants": "plain,progressive"}))


def test_gan_stability_takes_the_runs_of_earlier_results_files_as_done(tmp_path, monkeypatch):
    """Runs in --stability-done files are not trained again (control: a run missing from them is, and a file of
    another data set or benchmark is refused in one line)."""
    import json

    import benchmarks.gan_stability as stability

    rows = [{"variant": "plain", "model": "gan", "set": "", "seed": s, "modes_covered": 7 + s, "high_quality": 0.8,
             "wall_s": 1.0} for s in (0, 1)]
    (tmp_path / "a.json").write_text(json.dumps({"meta": {"benchmark": "gan_stability"}, "rows": rows[:1]}))
    (tmp_path / "b.json").write_text(json.dumps({"meta": {"benchmark": "gan_stability"}, "rows": rows[1:]}))
    trained = []
    monkeypatch.setattr(stability, "one_run", lambda *task: trained.append(task[:3]) or {**rows[0], "seed": task[2]})
    args = argparse.Namespace(stability_dataset="gaussians", stability_seeds="0,1,2", stability_variants="plain",
                              stability_done=f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}")
    table = stability.gan_stability(args)
    assert trained == [("plain", "gaussians", 2)]  # seeds 0 and 1 were done
    assert [r["seed"] for r in table] == [0, 1, 2, "mean"] and table[-1]["modes_covered"] == pytest.approx(22 / 3)
    images = [{k: v for k, v in rows[0].items() if k != "modes_covered"} | {"fid": 50.0}]
    (tmp_path / "c.json").write_text(json.dumps({"meta": {"benchmark": "gan_stability"}, "rows": images}))
    for name, message in (("c.json", "runs on another data set"), ("missing.json", "not a results file")):
        with pytest.raises(SystemExit, match=message):
            stability.gan_stability(argparse.Namespace(**{**vars(args), "stability_done": str(tmp_path / name)}))


def test_disentanglement_variants_are_one_vae_key_each_and_a_wrong_one_is_refused_in_one_line():
    from benchmarks.disentanglement import VARIANTS, disentanglement, variant_set

    assert [variant_set(v) for v in VARIANTS.split(",")[:2]] == ["model.beta=1", "model.beta=4"]
    assert variant_set("tc_beta=10") == "model.tc_beta=10" and variant_set("factor_gamma=10") == "model.factor_gamma=10"
    for wrong in ("gamma=2", "beta=", "beta"):
        with pytest.raises(SystemExit, match="beta=VALUE, tc_beta=VALUE or factor_gamma=VALUE"):
            disentanglement(argparse.Namespace(dis_variants=f"beta=1,{wrong}", dis_seeds="0", dis_runs="",
                                               dis_steps=0, results="."))


def test_augmentation_draws_its_sets_per_class_and_tops_up_only_the_minority_classes():
    """per_class: exactly k distinct examples of each class (control: a class with too few is a one-line exit);
    the top-up takes the first n samples of each minority class from samples laid out class by class."""
    from benchmarks.augmentation import augmentation, parse_runs, per_class, top_up_rows

    y = torch.arange(10).repeat(7)  # 7 of each class
    rows = per_class(y, [3] * 5 + [1] * 5, torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(y[rows], minlength=10), torch.tensor([3] * 5 + [1] * 5))
    assert len(set(rows.tolist())) == len(rows)
    with pytest.raises(SystemExit, match="class 2 has 7 examples, fewer than the 8"):
        per_class(y, [1, 1, 8], torch.Generator().manual_seed(0))
    labels = torch.arange(4).repeat_interleave(5)  # class by class, 5 each
    assert torch.equal(labels[top_up_rows([2, 3], 5, 2)], torch.tensor([2, 2, 3, 3]))
    assert parse_runs("cgan=runs/a,cvae=runs/b") == {"cgan": Path("runs/a"), "cvae": Path("runs/b")}
    with pytest.raises(SystemExit, match="NAME=RUN_DIR"):
        parse_runs("runs/a")
    args = argparse.Namespace(aug_runs="cgan=/nonexistent", dataset="fashion_mnist", aug_real=20, aug_samples=500,
                              aug_steps=10, aug_seeds="0")
    with pytest.raises(SystemExit, match="/nonexistent is not a run directory"):
        augmentation(args)
    with pytest.raises(SystemExit, match="at most --aug-samples"):
        augmentation(argparse.Namespace(**{**vars(args), "aug_real": 600}))


def test_a_rows_curve_is_read_off_each_run_and_drawn_over_the_seeds(tmp_path):
    """The logged (x, y) of each run, lines that log only one of them skipped (control: a line without the return is
    not a point); the figure is written where asked."""
    from benchmarks import reproduce as R

    row = R.ROWS["cartpole"]
    for arm in row.arms:
        for seed in (0, 1):
            out = R.run_dir(tmp_path, row, arm, seed)
            out.mkdir(parents=True)
            lines = [{"env_steps": 1000 * k, "episode_return": 10.0 * k + seed} for k in range(1, 4)]
            lines.insert(1, {"env_steps": 1500, "value_loss": 0.1})
            (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = R.logged_curve(R.run_dir(tmp_path, row, row.arms[0], 1), "env_steps", "episode_return")
    assert curve == [(1000, 11.0), (2000, 21.0), (3000, 31.0)]
    meta = {"commit": "abc1234", "machine": "a CPU", "jobs": 2, "load_before": 0.0, "load_after": 1.0}
    figure = R.draw_curves(row, tmp_path, [0, 1], meta, out=tmp_path / "curves.png")
    assert figure == tmp_path / "curves.png" and figure.stat().st_size > 10_000


def test_the_families_figure_draws_each_model_with_its_fid_and_ms_a_sample(tmp_path, monkeypatch):
    """A point per model of the families' table whose runs have both figures (the means over its seeds), hollow where
    2 000 samples were scored and its legend's marker filled all the same; a model without the milliseconds (a row
    swept before eval recorded them) is no point, and a record without any draws nothing (the control)."""
    from benchmarks import reproduce as R
    from shared_specs.families import FAMILIES

    wgan, vae = (next(f for f in FAMILIES if f.model == name) for name in ("WGAN-GP", "VAE"))
    runs = [{"row": wgan.row, "arm": wgan.arm, "seed": s, "metrics": {"fid": 120.0 + s, "sample_ms": 0.1,
                                                                      "sample_metrics_samples": 10_000}}
            for s in (0, 1)] + [{"row": vae.row, "arm": vae.arm, "seed": 0, "metrics": {"fid": 80.0}}]
    figure = R.draw_families({"runs": runs}, tmp_path / "families.png")
    assert figure == tmp_path / "families.png" and figure.stat().st_size > 10_000
    import benchmarks.plots

    drawn, legends = [], []

    def save(fig, ax, out):
        points = [c for c in ax.collections if len(c.get_offsets())]
        drawn.append([(c.get_offsets().tolist(), len(c.get_facecolors())) for c in points])
        legends.append([len(c.get_facecolors()) for c in ax.collections if c.get_label() in {"adversarial"}])

    monkeypatch.setattr(benchmarks.plots, "save", save)
    R.draw_families({"runs": runs}, tmp_path / "again.png")
    assert drawn == [[([[0.1, 120.5]], 1)]]  # the WGAN-GP's mean, filled; the VAE, without its ms, is no point
    fewer = [{**r, "metrics": {**r["metrics"], "sample_metrics_samples": 2_000}} for r in runs]
    R.draw_families({"runs": fewer}, tmp_path / "hollow.png")
    assert drawn[1] == [([[0.1, 120.5]], 0)] and legends == [[1], [1]]  # hollow point, its legend marker filled
    assert R.draw_families({"runs": runs[2:]}, tmp_path / "none.png") is None and len(drawn) == 2


def test_a_record_names_the_commit_clean_when_only_records_changed(monkeypatch):
    """A sweep's records were rewritten by its earlier rows (or an earlier sweep in the checkout): those changes alone
    leave the commit clean, for the runs as for the record; a record elsewhere counts when named; any other change
    (the controls: code, a page) marks it '+changes'."""
    from project import environment

    def git(status):
        def run(argv, **kwargs):
            out = "abc1234\n" if "rev-parse" in argv else status
            return subprocess.CompletedProcess(argv, 0, stdout=out, stderr="")
        return run

    records = " M docs/reproduce.json\n M docs/results.json\n M benchmarks/results/control.json\n"
    monkeypatch.setattr(environment.subprocess, "run", git(records))
    assert environment.commit() == "abc1234"
    monkeypatch.setattr(environment.subprocess, "run", git(records + " M docs/topics/gan.md\n"))
    assert environment.commit() == "abc1234+changes"
    monkeypatch.setattr(environment.subprocess, "run", git(" M out/sweep.json\n"))
    assert environment.commit(ignoring=("out/sweep.json",)) == "abc1234" and environment.commit() == "abc1234+changes"
    monkeypatch.setattr(environment.subprocess, "run", git(" M docs/reproduce.json\n M practice_torch/gan/networks.py\n"))
    assert environment.commit(ignoring=("docs/reproduce.json",)) == "abc1234+changes"


def test_reproduce_trains_each_seed_once_records_the_target_and_resumes(tmp_path, monkeypatch, capsys):
    """One tiny row, one seed: trained and evaluated into its folder (the sweep's two child commands, run in this
    process: starting two Pythons cost more than the run; the Ctrl-C tests below start real children) and recorded
    with whether it met the target (the control: a target no run meets is recorded as missed, not dropped); run
    again, nothing is trained and the record is the same; an unknown row is one line."""
    from benchmarks import reproduce as R
    from practice_torch.cli import main

    commands = []
    monkeypatch.setattr(R.CHILDREN, "run", lambda argv, **kw: commands.append(argv[3]) or argparse.Namespace(
        returncode=main(argv[3:]), stderr=""))
    tiny = R.Row("tiny", ("wgan",), "a tiny WGAN", "nobody", "2 steps", "8 modes",
                 (R.Arm("gp", "wgan", "gaussians", ("train.steps=2", "model.hidden=8", "train.batch_size=16",
                                                    "train.samples=16", "train.log_every=1")),),
                 "w1_exact", "W1", "W1 below 0 (never)", lambda m: m["w1_exact"] < 0,
                 beside=(("w1_floor", "the floor"),), pictures=("samples", "reconstructions"))
    monkeypatch.setattr(R, "ROWS", {"tiny": tiny})
    monkeypatch.setattr(R, "RECORD", tmp_path / "reproduce.json")
    args = argparse.Namespace(rows="tiny", presets="", seeds=1, jobs=1, reproduce_runs=str(tmp_path / "runs"),
                              publish=True, results=tmp_path / "trial")
    rows = R.reproduce(args)
    out = capsys.readouterr().out
    assert out.startswith("reproduce: 1 runs (1 to train) of tiny, 1 seeds, 1 at a time: about 1 min")
    assert commands == ["train", "eval"]  # python -m practice_torch train ..., then eval ...
    record = json.loads((tmp_path / "reproduce.json").read_text())
    assert [(r["arm"], r["seed"], r["holds"]) for r in record["runs"]] == [("gp", 0, False)] and len(rows) == 1
    assert set(record["runs"][0]["metrics"]) == {"w1_exact", "w1_floor", "train_s"} and record["runs"][0]["wall_s"] > 0
    log = (tmp_path / "runs/tiny/gp-0/metrics.jsonl").read_text().splitlines()  # the families table's minutes:
    assert record["runs"][0]["metrics"]["train_s"] == round(json.loads(log[-1])["time_s"], 3)  # the log's clock,
    assert record["runs"][0]["metrics"]["train_s"] < record["runs"][0]["wall_s"]  # within the run's wall time
    assert record["rows"]["tiny"]["beside"] == [["w1_floor", "the floor"]] and "tiny" in record["meta"]
    from PIL import Image  # the arm's pictures side by side: one row of two panels (a WGAN has no reconstructions)

    assert Image.open(tmp_path / "figures" / "reproduce_tiny_pictures.png").size == (640, 370)  # + the title's room
    env = json.loads((tmp_path / "runs/tiny/gp-0/environment.json").read_text())  # a run found finished, unbanked:
    found = R.found_conditions(tmp_path / "runs/tiny/gp-0", {})  # the conditions it recorded, its jobs unknown
    assert (found["commit"], found["jobs"], found["load_before"]) == (env["commit"], None, env["load_at_start"][0])
    assert found["date"] == time.strftime("%Y-%m-%d") and found["machine"].startswith(env["cpu"])
    R.reproduce(args)
    assert "(0 to train)" in capsys.readouterr().out
    assert json.loads((tmp_path / "reproduce.json").read_text()) == record  # the conditions of the training kept
    monkeypatch.setitem(R.ROWS, "tiny", dataclasses.replace(tiny, baselines=("gp",)))  # the arm as a baseline:
    R.reproduce(args)
    baseline = json.loads((tmp_path / "reproduce.json").read_text())
    assert baseline["runs"][0]["holds"] is None and baseline["rows"]["tiny"]["baselines"] == ["gp"]  # not judged
    with pytest.raises(SystemExit, match="unknown reproduce row 'nope'; choose from tiny"):
        R.reproduce(argparse.Namespace(**{**vars(args), "rows": "nope"}))
    with pytest.raises(SystemExit, match="--seeds and --jobs must be at least 1, got 0 and 1"):
        R.reproduce(argparse.Namespace(**{**vars(args), "seeds": 0}))


def test_a_run_a_sweep_left_goes_on_from_its_checkpoint_and_a_trained_one_is_only_evaluated(tmp_path, monkeypatch):
    """The sweep's runs span sessions: a run stopped at its checkpoint of step 2 of 4 is trained on (``train
    --resume``) and ends with the weights of a run trained straight; one trained to its end but not evaluated is
    evaluated only (its checkpoint untouched); the wall time of either is unknown (None). Controls: a run whose
    config does not hold the arm's settings now (a wider net) or its seed, or one with no checkpoint, is trained
    again from its start."""
    from safetensors.torch import load_file

    from benchmarks import reproduce as R
    from practice_torch.cli import main
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    commands = []  # the sweep's children, run in this process (a child's start costs more than these runs)
    monkeypatch.setattr(R.CHILDREN, "run", lambda argv, **kw: commands.append(argv[3:6]) or argparse.Namespace(
        returncode=main(argv[3:]), stderr=""))
    arm = R.Arm("gp", "wgan", "gaussians", ("train.steps=4", "model.hidden=8", "train.batch_size=16",
                                            "train.samples=0", "train.log_every=1", "train.checkpoint_every=2"))

    def started(out, *extra):  # the run a sweep would start, stopped after step 2
        cfg = apply_overrides(get_model("wgan").default_config("quick", "gaussians"),
                              [*arm.sets, "train.seed=0", "train.threads=1", *extra])
        new_trainer(cfg, out).run(stop_at=2)

    def weights(out):
        return load_file(str(out / "checkpoints" / "step_0000004.safetensors"))

    assert R.train_and_evaluate(tmp_path / "straight", arm, 0) > 0
    started(tmp_path / "stopped")
    assert R.left_off(tmp_path / "stopped", arm, 0) == "stopped"
    commands.clear()
    assert R.train_and_evaluate(tmp_path / "stopped", arm, 0) is None
    assert [c[:3] for c in commands] == [["train", "wgan", "--resume"], ["eval", str(tmp_path / "stopped"),
                                                                         "--no-sample-metrics"]]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "stopped/metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4] and (tmp_path / "stopped/eval_test.json").is_file()

    (tmp_path / "stopped/eval_test.json").unlink()
    checkpoint = (tmp_path / "stopped/checkpoints/step_0000004.safetensors").stat().st_mtime_ns
    assert R.left_off(tmp_path / "stopped", arm, 0) == "trained"
    commands.clear()
    assert R.train_and_evaluate(tmp_path / "stopped", arm, 0) is None
    assert [c[0] for c in commands] == ["eval"]
    assert (tmp_path / "stopped/eval_test.json").is_file()
    assert (tmp_path / "stopped/checkpoints/step_0000004.safetensors").stat().st_mtime_ns == checkpoint

    started(tmp_path / "other", "model.hidden=16")
    assert R.left_off(tmp_path / "other", arm, 0) is None and R.left_off(tmp_path / "straight", arm, 1) is None
    assert R.left_off(tmp_path / "nothing", arm, 0) is None
    assert R.train_and_evaluate(tmp_path / "other", arm, 0) > 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "other/metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # trained again from its start, not continued
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "other")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reproduce_presets_replaces_a_results_row_by_its_mean_over_the_seeds(tmp_path, capsys):
    """``--presets``: a front-page quick preset as it comes (mixture_em on moons, 3 s a run) trained once a seed (in
    this process, one at a time: the child processes of ``train_and_evaluate`` are the test above's); a trial (no
    ``--publish``) leaves the table byte for byte and writes its rows into a file of its own; with ``--publish`` the
    same runs (none trained again) make the table's row the mean of the seeds' own rows (each read as ``practice_torch
    results`` reads a run), with the sd and the seeds' values; a row that builds on another run is named and left
    alone; run again, nothing trains and the row stays; a model with no such preset is one line."""
    from benchmarks import reproduce as R
    from practice_torch.cli import main as cli
    from practice_torch.results import result_row

    with_samples = []

    def train(out, arm, seed, sample_metrics=False, samples=0):
        with_samples.append(sample_metrics)
        sets = ["--set", f"train.seed={seed}", "--set", "train.threads=1"]
        assert cli(["train", arm.model, "--dataset", arm.dataset, "--out", str(out), *sets]) == 0
        assert cli(["eval", str(out), *([] if sample_metrics else ["--no-sample-metrics"])]) == 0
        return 0.0

    table = json.loads((ROOT / "docs/results.json").read_text())
    assert {r["metric"] for r in table if r["model"] in ("gan", "latent_diffusion")} & set(R.SAMPLE_METRICS)
    mixture = next(r for r in table if r["model"] == "mixture_em")
    builds_on = {**mixture, "model": "ddpm", "backend": "jax"}  # trained in JAX: not the sweep's
    results = tmp_path / "results.json"
    results.write_text(json.dumps([mixture, builds_on]))
    trial = argparse.Namespace(rows="", presets="all", seeds=2, jobs=1, reproduce_runs=str(tmp_path / "runs"),
                               publish=False, results=tmp_path / "trial")
    published = results.read_bytes()
    tried = R.reproduce_presets(trial, results, train)
    out = capsys.readouterr().out
    assert out.startswith("reproduce --presets: 2 runs (2 to train) of 1 quick presets, 2 seeds, 1 at a time")
    assert "not swept (trained otherwise): ddpm" in out
    assert with_samples == [False, False]  # a log-likelihood headline: eval without the sample metrics
    assert results.read_bytes() == published  # a trial: the published table as it was, the rows in the trial's own
    assert json.loads((tmp_path / "trial" / R.TRIAL_PRESETS).read_text()) == tried
    args = argparse.Namespace(**{**vars(trial), "publish": True})
    swept = R.reproduce_presets(args, results, train)  # --publish: the same runs (none trained again) into the table
    assert "(0 to train)" in capsys.readouterr().out and [r["values"] for r in swept] == [r["values"] for r in tried]
    seeds = [result_row(tmp_path / f"runs/presets/mixture_em-moons/seed-{k}", "-") for k in (0, 1)]
    assert seeds[0]["value"] != seeds[1]["value"]  # the control: the seeds differ, so a mean is no copy of one
    row = next(r for r in json.loads(results.read_text()) if r["model"] == "mixture_em")
    assert row == swept[0] and row["values"] == [s["value"] for s in seeds] and row["seeds"] == 2
    assert row["value"] == pytest.approx(sum(row["values"]) / 2) and row["load"].startswith("idle: 1 run at a time")
    assert row["sd"] == pytest.approx(abs(seeds[0]["value"] - seeds[1]["value"]) / 2 ** 0.5)
    assert row["changes"] == [] and any(r["model"] == "ddpm" for r in json.loads(results.read_text()))
    from shared_specs.docs import results_table

    assert f"+- {row['sd']:.2g}" in results_table([row], None) and "2 seeds" in results_table([row], None)
    assert R.reproduce_presets(args, results, train) == [] and "(0 to train)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="'vae' has no quick preset as it comes on the front page; choose from "
                                         "mixture_em"):
        R.reproduce_presets(argparse.Namespace(**{**vars(args), "presets": "vae"}), results, train)
    with pytest.raises(SystemExit, match="--rows and --presets choose different sweeps"):
        R.reproduce(argparse.Namespace(**{**vars(args), "rows": "cartpole"}))


def test_the_presets_sweep_estimates_a_run_on_one_thread():
    """A row trained on the machine's 2 cores takes about twice as long on the sweep's one thread; a row an earlier
    sweep (or train.threads=1) trained on one keeps its time."""
    from benchmarks.reproduce import one_thread_seconds

    row = {"train_seconds": 100.0, "machine": "AMD EPYC, 2 cores", "load": "idle", "changes": []}
    assert one_thread_seconds(row) == 200.0
    assert one_thread_seconds({**row, "load": "idle: 2 runs at a time, one thread each (...)"}) == 100.0
    assert one_thread_seconds({**row, "changes": ["train.threads=1"]}) == 100.0


def test_the_presets_sweep_trains_the_runs_a_preset_builds_on_first_a_seed_each(tmp_path, monkeypatch, capsys):
    """Two fine-tuning presets that name a language-model reference share one reference run a seed, trained before
    them and handed to each as ``model.reference``; latent diffusion, whose engine trains its own autoencoder, is swept
    as it comes; the rows over the seeds say the runs they build on once, not a path a seed. Controls: a row with a
    changed setting, and one trained in JAX, are not swept."""
    import practice_torch.results
    from benchmarks import reproduce as R

    base = {"preset": "quick", "dataset": "shakespeare", "device": "cpu", "value": 1.0, "metrics": {}, "steps": 10,
            "train_seconds": 10.0, "machine": "AMD EPYC, 2 cores", "load": "idle"}
    rows = [{**base, "model": "policy_gradient", "changes": ["model.reference=/tmp/lm", "model.reference_step=2000"]},
            {**base, "model": "dpo", "changes": ["model.reference=/tmp/lm"]},
            {**base, "model": "latent_diffusion", "dataset": "fashion_mnist",
             "changes": ["model.autoencoder=/tmp/ae", "model.latent_scale=0.9"]},
            {**base, "model": "wgan", "changes": ["train.lr=1e-3"]}, {**base, "model": "ddpm", "backend": "jax",
                                                                        "changes": []},
            {**base, "model": "language_model", "changes": [], "train_seconds": 5.0}]
    assert [R.parents_of(r) for r in rows] == [("model.reference",), ("model.reference",), (), None, None, ()]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(rows))
    calls = []

    def train(out, arm, seed, sample_metrics=False, samples=0):
        calls.append((arm.model, arm.sets, seed))
        out.mkdir(parents=True)
        (out / "eval_test.json").write_text("{}")
        return 1.0

    def result_row(run, load):  # what a run records of the runs it built on
        model, seed = run.parent.name.split("-")[0], int(run.name.split("-")[1])
        built = {"latent_diffusion": [f"model.autoencoder={run}/autoencoder", "model.autoencoder_config={}",
                                      "model.latent_scale=0.8"]}.get(model, [f"model.reference=/x/seed-{seed}"])
        return {**next(r for r in rows if r["model"] == model), "changes": built, "value": float(seed), "load": load}

    monkeypatch.setattr(practice_torch.results, "result_row", result_row)
    args = argparse.Namespace(rows="", presets="policy_gradient,dpo,latent_diffusion", seeds=2, jobs=1,
                              reproduce_runs=str(tmp_path / "runs"), publish=True, results=tmp_path / "trial")
    swept = R.reproduce_presets(args, results, train)
    assert "6 runs (6 to train, after 2 they build on)" in capsys.readouterr().out
    parent = tmp_path / "runs/presets/parents/language_model-shakespeare"
    assert calls[:2] == [("language_model", (), 0), ("language_model", (), 1)]  # first, once a seed
    assert ("policy_gradient", (f"model.reference={parent}/seed-1",), 1) in calls[2:]
    assert ("dpo", (f"model.reference={parent}/seed-0",), 0) in calls[2:]
    assert ("latent_diffusion", (), 0) in calls[2:] and len(calls) == 8
    said = {r["model"]: r["changes"] for r in swept}
    assert said == {"policy_gradient": ["model.reference=(a language_model run a seed, trained first)"],
                    "dpo": ["model.reference=(a language_model run a seed, trained first)"],
                    "latent_diffusion": ["model.autoencoder=(a vae run a seed, trained first)"]}
    with pytest.raises(SystemExit, match="'wgan' has no quick preset as it comes"):
        R.reproduce_presets(argparse.Namespace(**{**vars(args), "presets": "wgan"}), results, train)


def test_the_prepared_gpu_run_parses_and_refuses_bad_options_in_one_line(tmp_path):
    """benchmarks/gpu_run.sh (the lent GPU's one run; its dry run on the CPU, --device cpu --tiny, trains every step
    a few steps): bash reads it, and a wrong device, budget, model list or a folder already holding files is one line,
    exit 2, with nothing written (control: the folder left as it was)."""
    import subprocess

    script = str(ROOT / "benchmarks" / "gpu_run.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep").write_text("x")
    for argv, message in ((["--device", "tpu"], "--device is cuda or cpu"), (["--budget", "9m"], "whole seconds"),
                          (["--out", str(taken)], "exists and is not empty"), (["--fast"], "unknown option --fast"),
                          (["--models", "vae;ls"], "comma-separated list of model names")):
        done = subprocess.run(["bash", script, *argv], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and (taken / "keep").read_text() == "x"


def test_the_gpu_carry_gathers_the_cache_with_a_cut_training_split_and_refuses_bad_options(tmp_path):
    """benchmarks/gpu_carry.sh (what the lent GPU lacks, for the device tool's carry): from a data cache it copies the
    prepared sets, the feature networks and Fashion-MNIST's files, the galaxies with each split cut to its first
    --galaxies N and the spoken digits to the first --spoken N clips of each split (the held-out lists cut alike),
    then says the size beside the 64 MiB limit; a bad option, a missing cache or a missing galaxies file or spoken
    digits is one line, exit 2, nothing written. Controls: the cuts keep the first rows and clips."""
    import subprocess

    import numpy as np

    script = str(ROOT / "benchmarks" / "gpu_carry.sh")
    data, fashion, out = tmp_path / "data", tmp_path / "fashion", tmp_path / "out"
    for folder in (data / "shakespeare", data / "features", data / "galaxies", fashion, out):
        folder.mkdir(parents=True)
    (data / "shakespeare" / "text").write_text("o")
    (data / "features" / "digits.json").write_text("{}")
    (fashion / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    counts = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    np.savez(data / "galaxies" / "galaxies_32.npz", train_counts=counts, train_y=np.ones((5, 5), np.float32),
             test_counts=counts[:2], test_y=np.zeros((2, 5), np.float32))
    spoken = data / "spoken_digits"
    clips = {"zero": ["a", "b", "c", "d"], "one": ["e", "f"]}  # held out: zero/c, one/f (val), zero/d (test)
    for word, names in clips.items():
        (spoken / word).mkdir(parents=True)
        for name in names:
            (spoken / word / f"{name}_nohash_0.wav").write_bytes(name.encode())
    (spoken / "validation_list.txt").write_text("zero/c_nohash_0.wav\none/f_nohash_0.wav\n")
    (spoken / "testing_list.txt").write_text("zero/d_nohash_0.wav\n")
    env = {**os.environ, "GENERATIVE_TWINS_DATA": str(data), "FASHION": str(fashion), "PY": sys.executable}

    def carry(*argv, **changes):
        return subprocess.run(["bash", script, "--out", str(out), "--no-wheels", *argv], capture_output=True,
                              text=True, cwd=tmp_path, env={**env, **changes})

    for done, message in ((carry("--fast"), "unknown option --fast"), (carry("--galaxies", "2k"), "whole number"),
                          (carry("--spoken", "-1"), "--spoken is a whole number"),
                          (carry(GENERATIVE_TWINS_DATA=str(tmp_path / "none")), "shakespeare is missing"),
                          (carry(FASHION=str(tmp_path / "none")), "Fashion-MNIST's IDX files")):
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not any(out.iterdir())
    done = carry("--galaxies", "3", "--spoken", "1")
    assert done.returncode == 0, done.stderr
    assert "MiB of the call's 64" in done.stdout
    cache = out / ".gpu-cache"
    assert (cache / "shakespeare" / "text").read_text() == "o" and (cache / "features" / "digits.json").is_file()
    assert (cache / "fashion-mnist" / "train-images-idx3-ubyte.gz").read_bytes() == b"x"
    with np.load(cache / "galaxies" / "galaxies_32.npz") as cut:
        assert cut["train_counts"].shape == (3, 2, 2) and np.array_equal(cut["train_counts"], counts[:3])
        assert cut["train_y"].shape == (3, 5) and np.array_equal(cut["test_counts"], counts[:2])  # 2 < 3: whole
    wavs = sorted(str(p.relative_to(cache / "spoken_digits")) for p in (cache / "spoken_digits").glob("*/*.wav"))
    assert wavs == ["one/e_nohash_0.wav", "zero/c_nohash_0.wav", "zero/d_nohash_0.wav"]  # the first of each split
    assert (cache / "spoken_digits" / "validation_list.txt").read_text() == "zero/c_nohash_0.wav\n"
    assert (cache / "spoken_digits" / "zero" / "d_nohash_0.wav").read_bytes() == b"d"
    (data / "galaxies" / "galaxies_32.npz").unlink()
    done = carry()
    assert done.returncode == 2 and "or pass --galaxies 0" in done.stderr
    assert carry("--galaxies", "0").returncode == 0 and not (cache / "galaxies").exists()
    (spoken / "testing_list.txt").unlink()
    done = carry("--galaxies", "0")
    assert done.returncode == 2 and "or pass --spoken 0" in done.stderr
    assert carry("--galaxies", "0", "--spoken", "0").returncode == 0 and not (cache / "spoken_digits").exists()


# The command line of ``python -m benchmarks reproduce``: trials, publishing, errors, help ----------------------------
@pytest.fixture
def unpinned(monkeypatch):
    """``main`` without its pinning of cores and torch threads: the test process keeps its own."""
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)


def fake_cartpole(interrupt_after: int | None = None):
    """(a stand-in for ``train_and_evaluate`` that writes a CartPole run's files at once, the (arm, seed) it was
    called for): from call ``interrupt_after`` + 1 on it raises KeyboardInterrupt, as Ctrl-C does."""
    calls = []

    def train(out, arm, seed, sample_metrics=False, samples=0):
        calls.append((arm.name, seed))
        if interrupt_after is not None and len(calls) > interrupt_after:
            raise KeyboardInterrupt
        out.mkdir(parents=True, exist_ok=True)
        lines = [{"env_steps": 1000 * k, "episode_return": 100.0 * k + seed} for k in range(1, 4)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (out / "eval_test.json").write_text(json.dumps({"mean_return": 500.0, "min_return": 480.0}))
        (out / "reproduce_wall_s.json").write_text("0.5")
        return 0.5

    return train, calls


def cartpole_argv(tmp_path, seeds: int = 1, jobs: int = 1) -> list[str]:
    return ["reproduce", "--rows", "cartpole", "--seeds", str(seeds), "--jobs", str(jobs), "--results",
            str(tmp_path / "results"), "--reproduce-runs", str(tmp_path / "runs")]


def test_a_trial_sweep_leaves_the_published_record_and_its_figures_byte_for_byte(tmp_path, monkeypatch, capsys,
                                                                                 unpinned):
    """``reproduce --rows cartpole --seeds 1 --results DIR`` (the training stood in for): docs/reproduce.json and
    every docs/figures/reproduce_* are the same bytes after it (none added), and the trial's record and figure are in
    DIR; the next test is the control, where ``--publish`` writes them."""
    from benchmarks import reproduce as R

    figures = R.RECORD.parent / "figures"
    before = {p: p.read_bytes() for p in [R.RECORD, *figures.glob("reproduce_*")]}
    train, calls = fake_cartpole()
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(cartpole_argv(tmp_path)) == 0
    assert {p: p.read_bytes() for p in [R.RECORD, *figures.glob("reproduce_*")]} == before
    assert sorted(calls) == [("ppo", 0), ("trpo", 0)]
    trial = json.loads((tmp_path / "results" / R.TRIAL_RECORD).read_text())
    assert [(r["row"], r["arm"], r["seed"]) for r in trial["runs"]] == [("cartpole", "ppo", 0), ("cartpole", "trpo", 0)]
    assert (tmp_path / "results" / "figures" / "reproduce_cartpole.png").stat().st_size > 10_000
    assert "a trial" in capsys.readouterr().out


def test_publish_writes_the_published_record_and_figure(tmp_path, monkeypatch, unpinned):
    """``--publish`` (into a copy of the record, ``RECORD`` pointed at it): the row's runs replaced by the sweep's,
    every other row's kept, the row's figure drawn beside it; the real record untouched, no trial record written."""
    from benchmarks import reproduce as R

    real = R.RECORD.read_bytes()
    copy = tmp_path / "docs" / "reproduce.json"
    copy.parent.mkdir()
    shutil.copy(R.RECORD, copy)
    monkeypatch.setattr(R, "RECORD", copy)
    monkeypatch.setattr(R, "train_and_evaluate", fake_cartpole()[0])
    assert main([*cartpole_argv(tmp_path), "--publish"]) == 0
    old, new = json.loads(real), json.loads(copy.read_text())
    assert [(r["arm"], r["seed"]) for r in new["runs"] if r["row"] == "cartpole"] == [("ppo", 0), ("trpo", 0)]
    assert [r for r in new["runs"] if r["row"] != "cartpole"] == [r for r in old["runs"] if r["row"] != "cartpole"]
    assert (copy.parent / "figures" / "reproduce_cartpole.png").stat().st_size > 10_000
    assert R.ROOT.joinpath("docs", "reproduce.json").read_bytes() == real
    assert not (tmp_path / "results" / R.TRIAL_RECORD).exists()


def test_a_sweep_spans_checkouts_by_the_runs_it_banks(tmp_path, monkeypatch, unpinned):
    """A published sweep stopped after its first run (its session over) banks that run beside the record; a later
    checkout, whose run folders are empty, trains only the three others, draws the banked run's curve from the bank,
    names the earlier sweep on the row's page and empties the bank. Controls: the record is untouched by the stopped
    sweep; a run banked as another arm (its settings changed since) or judged by another target is trained again."""
    from benchmarks import reproduce as R
    from shared_specs import docs

    copy = tmp_path / "docs" / "reproduce.json"
    copy.parent.mkdir()
    shutil.copy(R.RECORD, copy)
    monkeypatch.setattr(R, "RECORD", copy)
    before = copy.read_bytes()
    pending = copy.with_name(R.PENDING)
    first = [*cartpole_argv(tmp_path, seeds=2), "--publish"]
    train, calls = fake_cartpole(interrupt_after=1)
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(first) == 130 and copy.read_bytes() == before
    (bank,) = json.loads(pending.read_text())["runs"]
    assert (bank["row"], bank["arm"], bank["seed"], bank["value"]) == ("cartpole", "ppo", 0, 500.0)
    assert bank["curve"] == [[1000, 100.0], [2000, 200.0], [3000, 300.0]] and bank["trained"]["jobs"] == 1

    later = [*cartpole_argv(tmp_path / "later", seeds=2), "--publish"]  # another checkout: no run folders
    train, calls = fake_cartpole()
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(later) == 0
    assert sorted(calls) == [("ppo", 1), ("trpo", 0), ("trpo", 1)] and not pending.exists()
    record = json.loads(copy.read_text())
    runs = [(r["arm"], r["seed"], r["value"]) for r in record["runs"] if r["row"] == "cartpole"]
    assert sorted(runs) == [("ppo", 0, 500.0), ("ppo", 1, 500.0), ("trpo", 0, 500.0), ("trpo", 1, 500.0)]
    (earlier,) = record["meta"]["cartpole"]["earlier"]
    assert earlier["runs"] == 1 and earlier["commit"] == record["meta"]["cartpole"]["commit"]
    assert "; one of its runs by an earlier sweep, at " in docs.reproduce_table(record, "ppo")
    assert (copy.parent / "figures" / "reproduce_cartpole.png").stat().st_size > 10_000

    changed = [dict(bank, arm_of={**bank["arm_of"], "sets": ["train.steps=1"]}), dict(bank, seed=1, target="more")]
    pending.write_text(json.dumps({"runs": changed}))
    train, calls = fake_cartpole()
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main([*cartpole_argv(tmp_path / "third", seeds=2), "--publish"]) == 0
    assert sorted(calls) == [("ppo", 0), ("ppo", 1), ("trpo", 0), ("trpo", 1)]
    assert "earlier" not in json.loads(copy.read_text())["meta"]["cartpole"]



def test_a_run_an_earlier_sweep_finished_in_the_folder_is_named_as_that_sweeps(tmp_path, monkeypatch, unpinned):
    """A published sweep stopped after its first run, then run again in the same checkout: the run found finished
    in the folder is not trained again and the row's record names the sweep that trained it, with the conditions it
    banked (a run at 2 at a time, here), not this sweep's. The control: the same sweep run once more after
    publishing finds every run in the folder, none banked, and leaves the record as it was."""
    from benchmarks import reproduce as R

    copy = tmp_path / "docs" / "reproduce.json"
    copy.parent.mkdir()
    shutil.copy(R.RECORD, copy)
    monkeypatch.setattr(R, "RECORD", copy)
    argv = [*cartpole_argv(tmp_path, seeds=2), "--publish"]
    train, calls = fake_cartpole(interrupt_after=1)
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(argv) == 130
    pending = copy.with_name(R.PENDING)
    (bank,) = json.loads(pending.read_text())["runs"]
    pending.write_text(json.dumps({"runs": [{**bank, "trained": {**bank["trained"], "jobs": 2}}]}))
    train, calls = fake_cartpole()
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(argv) == 0
    assert sorted(calls) == [("ppo", 1), ("trpo", 0), ("trpo", 1)] and not pending.exists()
    meta = json.loads(copy.read_text())["meta"]["cartpole"]
    (earlier,) = meta["earlier"]
    assert (earlier["runs"], earlier["jobs"], meta["jobs"]) == (1, 2, 1)
    record = copy.read_bytes()
    train, calls = fake_cartpole()
    monkeypatch.setattr(R, "train_and_evaluate", train)
    assert main(argv) == 0 and calls == [] and copy.read_bytes() == record

def test_a_sweep_that_only_evaluates_keeps_the_conditions_its_runs_trained_under(tmp_path, monkeypatch, unpinned):
    """Runs trained to their end but not scored (``left_off``: "trained") are only evaluated: the row's recorded
    commit, date and load stay those of its training, and the sweep that scored them is named beside them, on the
    page too. The control: a run that trains on from its checkpoint ("stopped") replaces the row's conditions."""
    from benchmarks import reproduce as R
    from shared_specs import docs

    copy = tmp_path / "docs" / "reproduce.json"
    copy.parent.mkdir()
    shutil.copy(R.RECORD, copy)
    monkeypatch.setattr(R, "RECORD", copy)
    monkeypatch.setattr(R, "train_and_evaluate", fake_cartpole()[0])
    argv = [*cartpole_argv(tmp_path), "--publish"]
    assert main(argv) == 0  # the runs trained (the stand-in keeps no checkpoint: left_off finds nothing to go on)
    for left, kept in (("trained", True), ("stopped", False)):
        record = json.loads(copy.read_text())
        record["meta"]["cartpole"] = {**record["meta"]["cartpole"], "commit": "0ld0000", "date": "2026-01-01"}
        copy.write_text(json.dumps(record))
        for scored in (tmp_path / "runs" / "cartpole").glob("*/eval_test.json"):
            scored.unlink()
        monkeypatch.setattr(R, "left_off", lambda out, arm, seed, left=left: left)
        assert main(argv) == 0
        meta = json.loads(copy.read_text())["meta"]["cartpole"]
        assert (meta["commit"] == "0ld0000") == kept and ("evaluated" in meta) == kept
        if kept:
            assert meta["evaluated"]["commit"] != "0ld0000" and meta["evaluated"]["jobs"] == 1
            page = docs.reproduce_table(json.loads(copy.read_text()), "ppo")
            assert "at 0ld0000 on " in page and "; evaluated again from their checkpoints at " in page


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_sweep_says_so_in_one_line_exits_130_and_keeps_its_finished_runs(jobs, tmp_path, monkeypatch,
                                                                                        capsys, unpinned):
    """Ctrl-C during the second run (in this thread, or in one of two): one line saying where the finished run is
    kept, exit 130, no traceback (the interrupt does not escape ``main``), and no record written."""
    from benchmarks import reproduce as R

    train, calls = fake_cartpole(interrupt_after=1)
    monkeypatch.setattr(R, "train_and_evaluate", train)
    try:
        status = main(cartpole_argv(tmp_path, seeds=2, jobs=jobs))
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped main: a traceback")
    runs = tmp_path / "runs"
    assert status == 130
    pending = tmp_path / "results" / R.PENDING
    assert capsys.readouterr().err == (f"error: interrupted; the runs finished so far are kept in {runs} and banked "
                                       f"in {pending} (commit it for another checkout); the same command trains only "
                                       "the others, each from its newest checkpoint\n")
    assert [r["arm"] for r in json.loads(pending.read_text())["runs"]] == ["ppo"]
    assert len(list(runs.glob("cartpole/*/eval_test.json"))) == 1
    assert not (tmp_path / "results" / R.TRIAL_RECORD).exists()


@pytest.mark.parametrize("stop, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_kills_the_sweeps_runs_and_exits_130_without_a_traceback(stop, status, said, tmp_path):
    """``python -m benchmarks reproduce --jobs 2`` as a process, each run a child that sleeps (the first finished at
    once): SIGINT to the sweep alone while two children run; it exits 130 with one line, and the children are gone
    (killed, not left to run on). ``kill`` (SIGTERM) likewise, exit 143: without it the children ran on."""
    script = f"""
import itertools, os, sys
from pathlib import Path
from benchmarks import reproduce as R
from benchmarks.__main__ import main
count = itertools.count()
def train(out, arm, seed, sample_metrics=False, samples=0):
    n = next(count)
    if n == 0:
        out.mkdir(parents=True)
        (out / "eval_test.json").write_text('{{"mean_return": 500, "min_return": 500}}')
        return 0.0
    sleep = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    done = R.CHILDREN.run([sys.executable, "-c", sleep, str(Path({str(tmp_path)!r}) / f"pid-{{n}}")])
    raise RuntimeError(f"the run ended with {{done.returncode}}")
R.train_and_evaluate = train
sys.exit(main(sys.argv[1:]))
"""
    argv = [sys.executable, "-c", script, *cartpole_argv(tmp_path, seeds=2, jobs=2)]

    def as_from_a_shell():  # SIGINT handled and unblocked, whatever the test worker that starts the sweep left
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_shell)
    pids = []
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            pids = [int(p.read_text()) for p in tmp_path.glob("pid-*") if p.read_text()]
        assert len(pids) == 2, proc.communicate()
        masks = [line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                 if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        proc.send_signal(stop)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not end within 60 s of {stop.name}; its signal masks then: {masks}")
        assert proc.returncode == status, out + err
        banked = tmp_path / "results" / "reproduce_pending.json"
        assert err.splitlines() == [f"error: {said}; the runs finished so far are kept in {tmp_path / 'runs'} "
                                    f"and banked in {banked} (commit it for another checkout); the same command "
                                    "trains only the others, each from its newest checkpoint"]
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert len(list((tmp_path / "runs").glob("cartpole/*/eval_test.json"))) == 1
    finally:
        proc.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_bad_input_to_reproduce_is_one_line_and_exit_2(tmp_path, capsys, unpinned):
    """An unknown row, --seeds or --jobs below 1, a --seeds that is no number, --rows with --presets, and --publish
    or --list without reproduce: each one line ``error: ...`` on stderr, exit 2, nothing trained."""
    cases = ((["--rows", "nope"], "error: unknown reproduce row 'nope'; choose from cartpole"),
             (["--seeds", "0"], "error: --seeds and --jobs must be at least 1, got 0 and"),
             (["--jobs", "0"], "error: --seeds and --jobs must be at least 1, got 5 and 0"),
             (["--seeds", "x"], "error: argument --seeds: invalid int value: 'x'"),
             (["--rows", "cartpole", "--presets"], "error: --rows and --presets choose different sweeps"),
             (["--list", "--rows", "nope"], "error: unknown reproduce row 'nope'"))
    common = ["--results", str(tmp_path / "results"), "--reproduce-runs", str(tmp_path / "runs")]
    for extra, message in cases:
        assert main(["reproduce", *extra, *common]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith(message) and len(err.splitlines()) == 1, (extra, err)
    for option in ("--publish", "--list"):
        assert main(["vae_step", option]) == 2
        assert capsys.readouterr().err == f"error: {option} is an option of reproduce: python -m benchmarks " \
                                          f"reproduce {option}\n"
    assert not (tmp_path / "runs").exists()


def test_each_benchmark_has_its_own_help_and_every_command_line_still_parses(capsys):
    """``reproduce --help``: reproduce's own description and options (and the common ones), none of another
    benchmark's; the control: the help without a name lists every benchmark's options. The command lines the docs
    give still parse as before."""
    assert main(["reproduce", "--help"]) == 0
    own = capsys.readouterr().out
    assert own.startswith("usage: python -m benchmarks reproduce")
    assert all(f"{option} " in own for option in ("--rows", "--seeds", "--jobs", "--publish", "--list", "--results"))
    assert "--ddim-steps" not in own and "--gpu-models" not in own and "--repeats" not in own
    assert "``python -m benchmarks reproduce [--rows A,B]" in own and len(own.splitlines()) < 100
    assert main(["vae_step", "--help"]) == 0
    vae = capsys.readouterr().out
    assert "--repeats" in vae and "--rows" not in vae and vae.count("\nvae_step: The VAE's loss") == 1
    assert main(["--help"]) == 0
    every = capsys.readouterr().out
    assert all(option in every for option in ("--rows", "--ddim-steps", "--gpu-models", "--repeats", "--publish"))
    parse = build_parser().parse_args
    assert parse(["vae_step", "metrics"]).names == ["vae_step", "metrics"]
    args = parse(["reproduce", "--rows", "cartpole", "--seeds", "3"])
    assert (args.names, args.rows, args.seeds, args.publish, args.list) == (["reproduce"], "cartpole", 3, False, False)
    assert parse(["ddim_steps", "--run", "RUN"]).run == "RUN" and parse(["reproduce", "--presets"]).presets == "all"


def test_reproduce_list_names_each_row_with_its_runs_to_train_and_their_minutes(tmp_path, capsys):
    """``reproduce --list``: a line a row (those --rows names), its arms, the runs still to train at --seeds and the
    minutes they should take at --jobs, then the whole sweep's; a run already evaluated in the folder, or banked by a
    sweep in another checkout, is not counted again (controls); nothing is trained or written."""
    from benchmarks import reproduce as R

    runs = tmp_path / "runs"
    argv = ["reproduce", "--list", "--rows", "cartpole,gan_ring", "--seeds", "2", "--jobs", "1", "--reproduce-runs",
            str(runs), "--results", str(tmp_path / "results")]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    pending = tmp_path / "results" / R.PENDING
    assert lines[0] == f"reproduce rows at 2 seeds, 1 at a time (runs kept in {runs}, banked in {pending}):"
    assert len(lines) == 4
    assert lines[1].split()[:8] == ["cartpole", "2", "arms", "4", "of", "4", "runs", "to"]
    assert lines[1].endswith("min  CartPole-v1 in 100k environment steps") and "about" in lines[1]
    assert lines[2].split()[:6] == ["gan_ring", "10", "arms", "20", "of", "20"]
    assert lines[3].split()[:3] == ["all", "24", "runs"] and lines[3].endswith(" min")
    done = R.run_dir(runs, R.ROWS["cartpole"], R.ROWS["cartpole"].arms[0], 0)
    done.mkdir(parents=True)
    (done / "eval_test.json").write_text("{}")
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3:6] == ["3", "of", "4"]
    assert not (tmp_path / "results").exists()
    row = R.ROWS["cartpole"]
    pending.parent.mkdir()
    pending.write_text(json.dumps({"runs": [{"row": "cartpole", "arm": row.arms[1].name, "seed": 1, "metrics": {
        row.metric: 500.0}, "arm_of": R.arm_of(row.arms[1]), "target": row.target}]}))
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3:6] == ["2", "of", "4"]
    arms = {(a.name, s) for a in row.arms for s in (0, 1)} - {(row.arms[0].name, 0), (row.arms[1].name, 1)}
    todo = [(row, next(a for a in row.arms if a.name == name), s) for name, s in sorted(arms)]
    without = R.estimate(todo, 1, R.recorded_runs(R.RECORD))  # the control: the record's wall times alone
    entry = json.loads(pending.read_text())
    entry["runs"][0]["wall_s"] = 6000.0  # the bank's wall time of the arm stands beside the record's
    pending.write_text(json.dumps(entry))
    assert main(argv) == 0
    line = capsys.readouterr().out.splitlines()[1]
    banked_too = R.estimate(todo, 1, R.recorded_runs(R.RECORD) + entry["runs"])
    assert f"about {R.minutes(banked_too):>8}" in line and banked_too > without


def test_reproduce_estimates_a_run_by_its_arms_record_then_its_arms_guess_then_its_rows():
    """An arm's own recorded wall time first; before any, its own guess (``Arm.seconds``: WGAN-GP at the paper's
    100 000 updates takes ten times its row's 10 000), not its row's; an arm with neither, its row's record."""
    from benchmarks import reproduce as R

    row = R.ROWS["wgan_toys_long"]
    short, paper = row.arms
    assert paper.seconds > 5 * row.seconds and not short.seconds
    previous = [{"row": row.id, "arm": short.name, "wall_s": 300.0}]
    assert R.estimate([(row, short, 0), (row, paper, 0)], 1, previous) == 300.0 + paper.seconds
    previous.append({"row": row.id, "arm": paper.name, "wall_s": 4000.0})
    assert R.estimate([(row, paper, 0), (row, paper, 1)], 2, previous) == 4000.0
    assert R.estimate([(row, R.Arm("new", "wgan", "gaussians25"), 0)], 1, previous) == (300.0 + 4000.0) / 2
    assert R.estimate([(row, short, 0)], 1, []) == row.seconds  # nothing recorded: the row's guess


def test_a_publish_describes_the_rows_it_swept_as_the_code_does_and_keeps_the_others_as_recorded():
    """A row's description in the record describes its runs: an arm added in the code to a row not swept now (the
    paper's arm of ``wgan_toys_long``) stays out of the record's description until that row is swept, or the pages
    would ask for runs that do not exist; the rows swept now, and rows the record never described, take the code's."""
    from benchmarks import reproduce as R

    recorded = R.describe_row(R.ROWS["wgan_toys_long"])
    recorded["arms"] = recorded["arms"][:1]  # as recorded before the paper's arm was added
    rows = R.recorded_rows({"wgan_toys_long": recorded, "gan_grid": {"stale": True}}, ["gan_grid"])
    assert rows["wgan_toys_long"] == recorded and len(R.ROWS["wgan_toys_long"].arms) == 2
    assert rows["gan_grid"] == R.describe_row(R.ROWS["gan_grid"])  # swept now: the code's, the stale one replaced
    assert rows["dann_galaxies"] == R.describe_row(R.ROWS["dann_galaxies"]) and set(rows) == set(R.ROWS)
    assert R.recorded_rows({"wgan_toys_long": recorded}, ["wgan_toys_long"])["wgan_toys_long"]["arms"] == \
        R.describe_row(R.ROWS["wgan_toys_long"])["arms"]  # the control: swept, it gains the arm
    # whether the figure is better low is the metric's, not the runs': the code's on every row, swept or kept
    assert rows["wgan_toys_long"]["lower"] is True and "lower" not in rows["gan_grid"]  # W1 low, modes covered high
    kept = R.recorded_rows({"stylegan": {**R.describe_row(R.ROWS["stylegan"]), "title": "as recorded"},
                            "gan_ring": {**R.describe_row(R.ROWS["gan_ring"]), "lower": True}}, [])
    assert kept["stylegan"]["lower"] is True and kept["stylegan"]["title"] == "as recorded"
    assert "lower" not in kept["gan_ring"]  # a stale direction is dropped
    assert {r.metric for r in R.ROWS.values()} & R.LOWER_IS_BETTER == {
        "fid", "fid_samples", "fid_one_step", "w1_exact", "w2_one_step", "nll_bits_per_dim"}


def test_every_model_of_the_families_table_is_an_arm_of_a_row_that_scores_its_samples():
    """``shared_specs.families`` names rows and arms by id: each exists, trains on Fashion-MNIST and computes the
    sample metrics, and the record keeps the table's figures (the control: the keys the record would keep without
    them are the row's own)."""
    from benchmarks import reproduce as R
    from shared_specs.families import FAMILIES, KEYS

    for family in FAMILIES:
        row = R.ROWS[family.row]
        arm = next(a for a in row.arms if a.name == family.arm)
        assert arm.dataset == "fashion_mnist" and row.sample_metrics, family
    assert {"fid", "precision", "recall", "sample_ms", "train_s", "bits_per_dim"} <= set(KEYS)
    assert "sample_ms" not in {R.ROWS["stylegan"].metric, *(k for k, _ in R.ROWS["stylegan"].beside)}


def test_practice_jax_help_is_the_train_commands_and_a_missing_command_a_usage_line(capsys):
    """``python -m practice_jax --help``: the train command's options, exit 0; no command, or another one: the usage
    line on stderr, exit 2."""
    from practice_jax.__main__ import main as practice_jax

    assert practice_jax(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m practice_jax train") and "--resume" in out and "--dataset" in out
    for argv in ([], ["fit"]):
        assert practice_jax(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: python -m practice_jax train MODEL") and len(err.splitlines()) == 1


def test_a_rows_eval_samples_reach_eval_and_none_leave_its_default(tmp_path, monkeypatch):
    """``train_and_evaluate`` asks ``eval`` for ``--samples N`` when the row names N (a slow sampler's), and for
    nothing when it does not; the cascade's row names 2 000."""
    import subprocess

    from benchmarks import reproduce as R

    calls = []

    def run(argv, **kw):
        calls.append(argv)
        if argv[3] == "eval":
            (tmp_path / "run" / "eval_test.json").write_text("{}")
        else:
            (tmp_path / "run").mkdir(parents=True, exist_ok=True)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(R.CHILDREN, "run", run)
    arm = R.Arm("a", "ddpm", "digits")
    for samples, expected in ((2000, ["--samples", "2000"]), (0, [])):
        calls.clear()
        R.train_and_evaluate(tmp_path / "run", arm, 0, sample_metrics=True, samples=samples)
        assert calls[1][3:] == ["eval", str(tmp_path / "run"), *expected], calls[1]
    assert R.ROWS["cascade"].eval_samples == 2000


def test_seeds_at_once_train_each_seed_as_its_own_run_and_a_custom_step_is_skipped(tmp_path):
    """``seeds``: five seeds of flow_matching's quick preset stacked in one vmap end where the same seeds trained one
    at a time by the engine's step end (to rounding: the batched products may sum in another order), while two seeds
    end far apart (the control); with the EMA's stack following the weights'. A model with its own step (the GAN's)
    is a skipped row, not a crash. Nothing about speed is asserted."""
    import copy

    from benchmarks.seeds import StackedSeeds, gap, trainable
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    base = apply_overrides(get_model("flow_matching").default_config("quick"),
                           ["train.device=cpu", "model.hidden=16", "train.batch_size=32", "train.warmup_steps=2",
                            "data.limit=256"])

    def built(kind):
        return [new_trainer(apply_overrides(copy.deepcopy(base), [f"train.seed={k}"]), tmp_path / f"{kind}{k}")
                for k in range(3)]

    alone, stacked = built("alone"), StackedSeeds(built("together"))
    for _ in range(4):
        stacked.step()
        for tr in alone:
            tr._train_step()
    assert all(gap(stacked.weights(k), trainable(tr)) < 1e-6 for k, tr in enumerate(alone))
    assert gap(stacked.weights(1), trainable(alone[0])) > 0.1  # the control: another seed's run
    for k, tr in enumerate(alone):  # the EMA of each seed, as the engine's
        shadow = {name.removeprefix("net."): v[k] for name, v in stacked.ema.shadow.items()}
        assert gap(shadow, {n: tr.ema.shadow[n] for n in shadow}) < 1e-6
    assert main(["seeds", "--seeds-models", "gan", "--seeds", "2", "--seeds-steps", "2", "--results",
                 str(tmp_path)]) == 0
    row = json.loads((tmp_path / "seeds.json").read_text())["rows"][0]
    assert row["note"].startswith("skipped: gan trains with its own training step")


@pytest.mark.parametrize("argv, message", [
    (["--seeds-models", "nope"], "unknown model 'nope'"), (["--seeds-set", "nope=1"], "unknown config key 'nope'"),
    (["--seeds", "1"], "--seeds and --seeds-steps are 2 or more")])
def test_seeds_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert main(["seeds", *argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
