"""torchrun with 2 CPU processes (gloo) and batch B/2 each trains like 1 process with batch B.

The per-example-mean loss makes DDP's gradient average the full-batch gradient, the ranks share out the
same global batch, and the noise of the whole batch is drawn on every rank and sliced; so after a few
steps the weights agree within the float32 tolerance of "gradients / one optimizer step" (1e-4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_language_model import TINY as TINY_LM
from test_latent_diffusion import TINY as LATENT
from test_pixelcnn import TINY as TINY_PIXELCNN
from test_wavenet import TINY as TINY_WAVENET

from practice_torch.cli import main as torch_cli
from project.compare import compare_trees, tolerance

ROOT = Path(__file__).parents[1]
TINY = ["train", "vae", "--dataset", "digits", "--device", "cpu", "--steps", "4", "--set", "model.architecture=mlp",
        "--set", "model.hidden=32", "--set", "model.latent_dim=4", "--set", "train.batch_size=32",
        "--set", "train.warmup_steps=1", "--set", "train.log_every=1", "--set", "train.checkpoint_every=2",
        "--set", "train.samples=4"]


TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root on one thread (``env``: more variables); a non-zero exit fails the
    test with its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def checkpoint(run: Path, step: int) -> dict[str, np.ndarray]:
    return load_file(str(run / "checkpoints" / f"step_{step:07d}.safetensors"))


def single_process(*args: str) -> None:
    """The same command in this process (the reference run needs no process of its own)."""
    assert torch_cli(list(args)) == 0


PROBE = """
import json, os, sys, weakref
from pathlib import Path

import torch.distributed as dist

from practice_torch.engine.config import apply_overrides
from practice_torch.models import new_trainer
from practice_torch.models import get_model

out, overrides = Path(sys.argv[1]), sys.argv[2:]
cfg = apply_overrides(get_model("vae").default_config("quick", "digits"), overrides)
outer = new_trainer(cfg, out / "outer")
inner = new_trainer(cfg, out / "inner")  # a run nested in another, as latent_diffusion trains its autoencoder
inner.run()
inner.close()
shared = dist.is_initialized()
# a game of two players that writes its own step, nested too (one torchrun start instead of two)
game = new_trainer(apply_overrides(get_model("wgan").default_config("quick"), json.loads(os.environ["GAME"])),
                   out / "game")
game.run()
game.close()
outer.run()
wrapper = weakref.ref(outer.loss)
outer.close()
report = {"group_kept_by_inner": shared, "wrapper_freed": wrapper() is None, "left": not dist.is_initialized()}
(out / f"report-{os.environ['RANK']}.json").write_text(json.dumps(report))  # one file a rank: a shared stdout interleaves
"""


TURNS = {  # model -> its tiny settings: players that take turns
    "gan": ["--set", "model.discriminator_steps=1", "--set", "model.hidden=16,16", "--set", "model.latent_dim=2"],
    "wgan": ["--set", "model.n_critic=2", "--set", "model.hidden=16,16", "--set", "model.latent_dim=2"],
    "bigan": ["--dataset", "gaussians", "--set", "model.hidden=16,16", "--set", "model.width=16",
              "--set", "model.joint=16", "--set", "model.probe_examples=500"],
    "style_transfer": ["--dataset", "digits", "--set", "model.discriminator_steps=1", "--set", "model.width=4",
                       "--set", "model.channels=4,8", "--set", "model.fc=16", "--set", "model.blocks=1"],
}
GAME_SETS = [a for s in ("train.batch_size=16", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=3",
                         "train.samples=10", "data.limit=128") for a in ("--set", s)]


def game_args(model: str) -> list[str]:
    """``train MODEL`` for 6 steps of its tiny players on the CPU (after ``python -m practice_torch``)."""
    return ["train", model, "--device", "cpu", "--steps", "6", *TURNS[model], *GAME_SETS]


def as_overrides(args: list[str]) -> list[str]:
    """The ``--set`` values, ``--steps``, ``--device`` and ``--dataset`` of a ``train`` command line as config
    overrides."""
    named = {"--set": "{}", "--steps": "train.steps={}", "--device": "train.device={}", "--dataset": "data.name={}"}
    return [named[a].format(args[i + 1]) for i, a in enumerate(args) if a in named]


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    """One torchrun launch of 2 ranks (its start costs as much as a short run): the VAE probe, with the WGAN's game
    nested in it."""
    out = tmp_path_factory.mktemp("torchrun")
    probe = out / "probe.py"
    probe.write_text(PROBE)
    game = as_overrides(game_args("wgan"))
    python(*TORCHRUN, str(probe), str(out), *as_overrides(TINY), env={"GAME": json.dumps(game)})
    return out


def test_two_processes_with_half_batches_match_one_process_and_leave_their_group(launch, tmp_path):
    """Two ranks of batch B/2 train (``outer``) like one process of batch B (the same command in this process).

    In the same launch: close() frees the DDP wrapper (which holds the gloo group) before leaving the group, so the
    group's threads end while the interpreter is alive: a group first freed at interpreter exit aborted a rank now and
    then ("terminate called without an active exception"; 9 in 67 runs of a minimal torchrun script, 0 in 60 with the
    wrapper freed first). A nested trainer (``inner``), which shares the outer one's group, leaves the group alone."""
    reports = [json.loads((launch / f"report-{rank}.json").read_text()) for rank in (0, 1)]
    assert reports == [{"group_kept_by_inner": True, "wrapper_freed": True, "left": True}] * 2

    single_process(*TINY, "--out", str(tmp_path / "single"))
    ddp = launch / "outer"
    tol = tolerance("step", "float32")
    result = compare_trees(checkpoint(ddp, 4), checkpoint(tmp_path / "single", 4), tol)
    assert result.passed, result.message()
    moved = compare_trees(checkpoint(tmp_path / "single", 2), checkpoint(tmp_path / "single", 4), tol)
    assert not moved.passed, "two more steps must move the weights beyond the tolerance (negative control)"

    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4], "rank 0 alone writes the metrics"
    assert len(list((ddp / "events").iterdir())) == 1 and (ddp / "samples/samples.png").is_file()
    single = [json.loads(line) for line in (tmp_path / "single/metrics.jsonl").read_text().splitlines()]
    assert np.allclose([r["loss"] for r in records], [r["loss"] for r in single], rtol=1e-4), \
        "the logged loss is the mean over ranks, i.e. the global-batch loss"


@pytest.mark.slow  # 34 s; the engine's DDP path stays in the default suite
def test_latent_diffusion_trains_its_autoencoder_under_torchrun(tmp_path):
    """The autoencoder's run nests in the latent run and shares its process group: both ranks train it (rank 0
    writes it), wait for each other, load it, then train the latent DDPM in the same group."""
    out, root = tmp_path / "latent", tmp_path / "autoencoders"
    proc = python(*TORCHRUN, "-m", "practice_torch", "train", "latent_diffusion", "--dataset", "digits", "--steps", "4",
                  "--out", str(out), "--set", f"model.autoencoder_root={root}", *LATENT)
    assert proc.stdout.count("training its autoencoder") == 1, "rank 0 alone reports"
    (autoencoder,) = root.iterdir()
    assert (autoencoder / "checkpoints" / "step_0000015.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["model"]["autoencoder"] == str(autoencoder)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][-1] == 4


TINY_AUTOREGRESSIVE = {  # each model's tiny net from its own tests, on a few examples
    "wavenet": [*TINY_WAVENET, "data.limit=8"],
    "language_model": [*TINY_LM, "model.bpe_merges=0", "train.val_batch=0", "data.limit=40000"],
    "language_model-lstm": ["model.architecture=lstm", *TINY_LM, "model.bpe_merges=0", "train.val_batch=0",
                            "data.limit=40000"],
    "pixelcnn": [*TINY_PIXELCNN, "model.conditional=true", "data.name=digits", "data.limit=8"],
    "pixelcnn-plain": ["model.architecture=plain", *TINY_PIXELCNN, "data.name=digits", "data.limit=8"],
}


@pytest.mark.parametrize("name", sorted(TINY_AUTOREGRESSIVE))
def test_every_trainable_parameter_gets_a_gradient(name, tmp_path):
    """What DistributedDataParallel needs of a model: a trainable parameter that the loss leaves without a gradient
    stops a torchrun at its second step (the last WaveNet block's residual projection, which feeds nothing, did)."""
    import torch

    from practice_torch.engine.batches import fetch
    from practice_torch.engine.config import apply_overrides
    from practice_torch.models import get_model, new_trainer

    module = get_model(name.split("-")[0])
    cfg = apply_overrides(module.default_config("quick"), [*TINY_AUTOREGRESSIVE[name], "train.batch_size=4"])
    trainer = new_trainer(cfg, tmp_path / "run")
    batch = fetch(trainer.train_set, torch.arange(4))
    noise = module.draw_noise(trainer.net, cfg.model, 4, torch.Generator().manual_seed(0))
    loss, _ = module.loss(trainer.net, cfg.model, batch, noise, 0)
    loss.backward()
    missing = [n for n, p in trainer.net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing}"


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m != "wgan" else m for m in TURNS])
def test_players_taking_turns_train_under_torchrun_as_in_one_process(launch, tmp_path, model):
    """Two-player games under torchrun: each writes its own step, each player's gradient averaged over the processes
    by the engine's ``run.update`` (the WGAN critic's double backward included), so two processes train as one.
    The WGAN's run is the shared launch's (``launch``); the others (slow tests) launch their own.
    Negative control: the weights do move between checkpoints."""
    args = game_args(model)
    if model == "wgan":
        ddp = launch / "game"
    else:
        ddp = tmp_path / "ddp"
        python(*TORCHRUN, "-m", "practice_torch", *args, "--out", str(ddp))
    single_process(*args, "--out", str(tmp_path / "single"))
    tol = tolerance("step", "float32")
    result = compare_trees(checkpoint(ddp, 6), checkpoint(tmp_path / "single", 6), tol)
    assert result.passed, result.message()
    assert not compare_trees(checkpoint(tmp_path / "single", 3), checkpoint(tmp_path / "single", 6), tol).passed
