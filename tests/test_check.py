"""``python -m theory_jax check RUN_DIR``: a trained run's held-out metric recomputed by the JAX twin, on tiny runs of
every supported model; and the negative controls (a perturbed weight, another model's checkpoint, a checkpoint that does
not fit its config, a model or a configuration without a twin, a wrong split) each caught."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from practice_torch.cli import main as torch_cli
from shared_specs import twin_check as check
from theory_jax.cli import main as jax_cli

COMMON = ["--device", "cpu", "--set", "train.warmup_steps=1", "--set", "train.log_every=1",
          "--set", "train.checkpoint_every=2", "--set", "train.samples=2"]
RUNS = {
    "vae": ["--dataset", "digits", "--set", "model.channels=4,8", "--set", "model.latent_dim=4",
            "--set", "train.batch_size=16"],
    "language_model": ["--set", "model.dim=16", "--set", "model.layers=1", "--set", "model.heads=2",
                       "--set", "model.context=16", "--set", "train.batch_size=4"],
    "pixelcnn": ["--set", "model.channels=8", "--set", "model.layers=2", "--set", "train.batch_size=8"],
    "wavenet": ["--set", "model.channels=8", "--set", "model.skip=8", "--set", "model.cycle=2", "--set", "model.repeats=1",
                "--set", "train.batch_size=2", "--set", "train.samples=1"],
    "ddpm": ["--set", "model.channels=8", "--set", "model.channel_mults=1,2", "--set", "model.attention_levels=1",
             "--set", "model.T=20", "--set", "model.sample_steps=5", "--set", "train.batch_size=4"],
    "coupling_flows": ["--dataset", "digits", "--set", "model.hidden=8", "--set", "train.batch_size=8"],
    "flow_matching": ["--dataset", "digits", "--set", "model.channels=8", "--set", "model.channel_mults=1,2",
                      "--set", "model.attention_levels=1", "--set", "model.ode_steps=2", "--set", "train.batch_size=4"],
    "ssm": ["--set", "model.channels=8", "--set", "model.layers=2", "--set", "model.context=16",
            "--set", "train.batch_size=4"],
    "ssm@spoken_digits": ["--dataset", "spoken_digits", "--set", "model.channels=8", "--set", "model.layers=1",
                          "--set", "model.state=4", "--set", "model.sample_rate=1000", "--set", "train.batch_size=2",
                          "--set", "train.val_batch=2", "--set", "train.samples=1", "--set", "model.sample_seconds=0.05"],
    "text_to_image": ["--set", "data.limit=300", "--set", "model.autoencoder_steps=4", "--set", "model.channels=16",
                      "--set", "model.num_res_blocks=1", "--set", "model.heads=2", "--set", "model.text_dim=16",
                      "--set", "model.text_layers=1", "--set", "model.text_heads=2", "--set", "model.T=50",
                      "--set", "model.sample_steps=2", "--set", "model.scale_examples=100",
                      "--set", "train.batch_size=16"],
    # 2-D data: the MLP denoiser / field (theory_jax.nets.MLPDenoiser)
    "ddpm@moons": ["--dataset", "moons", "--set", "model.hidden=8", "--set", "model.depth=1", "--set", "model.T=20",
                   "--set", "model.sample_steps=5", "--set", "train.batch_size=8"],
    "flow_matching@moons": ["--dataset", "moons", "--set", "model.hidden=8", "--set", "model.depth=1", "--set",
                            "model.ode_steps=2", "--set", "model.density_grid=0", "--set", "train.batch_size=8"],
}
# 2-D runs of models whose 2-D networks have no JAX twin: check must refuse them in one line
UNTWINNED = {
    "coupling_flows": ["--dataset", "moons", "--set", "model.hidden=8", "--set", "model.layers=2",
                       "--set", "train.batch_size=8", "--set", "train.samples=4"],
}


class Runs(dict):
    """Tiny runs trained on first use, once per module."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> Path:
        out = self.root / name.replace("@", "-")
        model = name.split("@")[0]  # "ddpm@moons": ddpm on 2-D data
        first = ["--set", f"model.autoencoder_root={self.root / 'autoencoders'}"] if model == "text_to_image" else []
        assert torch_cli(["train", model, "--steps", "2", "--out", str(out), *COMMON, *RUNS[name], *first]) == 0
        self[name] = out
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("check"))


def test_every_model_with_a_twin_has_a_run_here_and_the_catalogue_names_them():
    from project.catalogue import TOPICS

    assert {name.split("@")[0] for name in RUNS} == set(check.CHECKERS)
    assert set(check.CHECKERS) == {t.name for t in TOPICS if t.checks}
    for module in check.CHECKERS.values():  # each topic that names a check provides it beside its networks
        assert callable(importlib.import_module(module).check), module


# the default suite checks the fast models end to end, flow_matching and ddpm through their 2-D MLP twins; the others
# (a few seconds of training and compiling each; flow_matching's U-Net about 40 s, compiling its ODE's
# vector-Jacobian products) run with -m slow
FAST = ("vae", "pixelcnn", "coupling_flows", "ddpm@moons", "flow_matching@moons", "ssm")  # flow_matching's U-Net: -m slow
MODELS = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in sorted(RUNS)]


@pytest.mark.parametrize("name", MODELS)
def test_the_twin_recomputes_the_held_out_metric(runs, name, capsys):
    capsys.readouterr()
    assert jax_cli(["check", str(runs[name]), "--examples", "4"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out and not re.search(r"\bnan\b", out, re.IGNORECASE)


@pytest.mark.parametrize("name", MODELS)
def test_a_perturbed_weight_is_caught(runs, name):
    def perturb(params):
        """One entry of the first kernel: a bias may be normalised or softmaxed away, an embedding row may be one the
        examples never look up, a masked-out entry (the diagonal of an LU factor) is never read."""
        paths, tree = jax.tree_util.tree_flatten_with_path(params)
        leaves = [leaf for _, leaf in paths]
        index = next(i for i, (path, _) in enumerate(paths) if path[-1].key == "kernel")
        leaves[index] = np.array(leaves[index], copy=True)
        leaves[index].flat[0] += 0.1
        return jax.tree.unflatten(tree, leaves)

    rows = check.check_run(runs[name], examples=4, perturb=perturb)
    assert not all(r.passed for r in rows)


@pytest.mark.parametrize("source, target", [("language_model", "vae"), ("vae", "pixelcnn"),
                                            ("pixelcnn", "coupling_flows")])
def test_another_models_checkpoint_is_a_one_line_error(runs, tmp_path, capsys, source, target):
    mixed = tmp_path / "mixed"
    shutil.copytree(runs[target], mixed)
    shutil.rmtree(mixed / "checkpoints")
    shutil.copytree(runs[source] / "checkpoints", mixed / "checkpoints")
    capsys.readouterr()
    assert jax_cli(["check", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"model '{source}', not '{target}'" in err  # names the mismatch


def test_a_checkpoint_that_does_not_fit_its_config_is_a_one_line_error(runs, tmp_path, capsys):
    edited = tmp_path / "edited"
    shutil.copytree(runs["coupling_flows"], edited)
    config = json.loads((edited / "config.json").read_text())
    config["model"]["hidden"] *= 2  # the conditioners' width no longer that of the weights
    (edited / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert jax_cli(["check", str(edited)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not fit" in err and "net.first.weight" in err


def test_bad_input_is_a_one_line_error(runs, tmp_path, capsys):
    for argv, words in ((["check", str(tmp_path / "none")], "not a run directory"),
                        (["check", str(runs["vae"]), "--split", "dev"], "unknown split"),
                        (["check", str(runs["vae"]), "--examples", "0"], "at least 1")):
        capsys.readouterr()
        assert jax_cli(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_a_runs_config_json_names_the_run(runs, tmp_path, capsys):
    """``check RUN/config.json`` checks RUN, the file's folder; another file is a one-line error asking for the run's
    folder (the control: the folder of the same file is not taken for a run)."""
    capsys.readouterr()
    assert jax_cli(["check", str(runs["vae"] / "config.json"), "--examples", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{runs['vae']}: ") and "PASS" in out and "FAIL" not in out
    notes = tmp_path / "notes.txt"
    notes.write_text("")
    assert jax_cli(["check", str(notes)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {notes} is a file; give the run's folder, the one that holds config.json\n"


@pytest.mark.parametrize("name", sorted(UNTWINNED))
def test_a_configuration_without_a_twin_is_a_one_line_error(tmp_path, capsys, name):
    run = tmp_path / name
    assert torch_cli(["train", name, "--steps", "2", "--out", str(run), *COMMON, *UNTWINNED[name]]) == 0
    capsys.readouterr()
    assert jax_cli(["check", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name} is checked on images") and "no JAX twin network" in err
    assert err.count("\n") == 1


def test_a_model_without_a_twin_is_named(tmp_path, capsys):
    run = tmp_path / "em"
    assert torch_cli(["train", "mixture_em", "--steps", "2", "--out", str(run), "--device", "cpu",
                      "--set", "train.log_every=1", "--set", "train.checkpoint_every=2", "--set", "train.samples=2"]) == 0
    capsys.readouterr()
    assert jax_cli(["check", str(run)]) == 2
    assert "no JAX twin network" in capsys.readouterr().err
