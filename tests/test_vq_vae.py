"""The vq_vae topic in PyTorch: the networks' shapes, the codebook as buffers outside the optimiser, the EMA update
(once per training step, only in training mode, the closed form of ``functions``), dead-code restarts drawn from the
engine's generator, the two stages through the command line on tiny digits runs (the prior's VQ-VAE frozen and
carried in its checkpoints), exact resume, one-line errors. torchrun and the quick preset are slow tests."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from practice_torch import vq_vae
from practice_torch.cli import main
from practice_torch.data import DatasetMissing, get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.engine.runs import dataset_info
from practice_torch.models import new_trainer, open_run
from practice_torch.vq_vae import training

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).parents[1]
DIGITS = get_info("digits")
IMAGE = (1, 8, 8)
TINY_VQ = ["model.channels=8,16", "model.num_codes=16", "model.code_dim=4", "model.restart_every=5",
           "train.batch_size=32", "train.warmup_steps=2", "train.log_every=5", "train.checkpoint_every=5",
           "train.val_batch=32", "train.samples=16"]
TINY_PRIOR = ["model.stage=prior", "model.prior_dim=32", "model.prior_layers=1", "model.prior_heads=2",
              "train.batch_size=32", "train.warmup_steps=2", "train.log_every=5", "train.val_batch=32",
              "train.samples=16"]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def tiny_vq(**kw) -> vq_vae.VQVAE:
    torch.manual_seed(0)
    return vq_vae.VQVAE(IMAGE, **{"num_codes": 16, "code_dim": 4, "channels": (8, 16), "groups": 4, **kw})


def digits(n: int = 32) -> torch.Tensor:
    data = DIGITS.load("train")
    return torch.stack([data[i][0] for i in range(n)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a 20-step vq_vae run on digits, a 20-step prior run on its codes)."""
    root = tmp_path_factory.mktemp("vq_vae")
    assert main(["train", "vq_vae", "--dataset", "digits", "--device", "cpu", "--steps", "20", "--out",
                 str(root / "vq"), *sets(TINY_VQ)]) == 0
    assert main(["train", "vq_vae", "--dataset", "digits", "--device", "cpu", "--steps", "20", "--out",
                 str(root / "prior"), *sets([*TINY_PRIOR, f"model.vq_vae={root / 'vq'}"])]) == 0
    return root / "vq", root / "prior"


# The networks ----------------------------------------------------------------------------------------------------
def test_shapes_and_attribute_names():
    enc = vq_vae.GridEncoder((1, 28, 28), 16)
    dec = vq_vae.GridDecoder((1, 28, 28), 16)
    assert enc(torch.rand(3, 1, 28, 28)).shape == (3, 16, 7, 7)
    assert dec(torch.randn(3, 16, 7, 7)).shape == (3, 1, 28, 28)
    assert [type(m).__name__ for m in (enc.convs[0], enc.norms[0], enc.head, dec.project, dec.deconvs[1])] == \
        ["Conv2d", "GroupNorm", "Conv2d", "Conv2d", "ConvTranspose2d"]
    assert len(dec.norms) == 1 and dec.deconvs[-1].out_channels == 1 and enc.head.kernel_size == (1, 1)
    net = tiny_vq().eval()
    x = digits(5)
    codes = net.encode(x)
    assert codes.shape == (5, 2, 2) and codes.dtype == torch.long and net.length == 4
    assert net.decode(codes).shape == (5, *IMAGE) and 0 <= net(x).min() and net(x).max() <= 1
    prior = vq_vae.CodePrior(16, 4, dim=16, heads=2, layers=1)
    assert prior(codes.flatten(1)).shape == (5, 4, 16) and prior.nll(codes.flatten(1)).shape == (5,)


def test_the_prior_is_causal_and_its_nll_is_the_chain_rule():
    torch.manual_seed(0)
    prior = vq_vae.CodePrior(5, 6, dim=16, heads=2, layers=2).eval()
    codes = torch.randint(0, 5, (3, 6))
    changed = codes.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 5
    logits, logits_changed = prior(codes), prior(changed)
    torch.testing.assert_close(logits[:, :4], logits_changed[:, :4])  # row t sees codes before t only
    assert (logits[:, 4:] - logits_changed[:, 4:]).abs().max() > 1e-4
    chain = -torch.log_softmax(logits, -1).gather(-1, codes[..., None])[..., 0].sum(-1)
    torch.testing.assert_close(prior.nll(codes), chain)


def test_sampling_the_prior_with_its_cache_is_inverse_cdf_on_the_full_forward():
    torch.manual_seed(0)
    prior = vq_vae.CodePrior(6, 5, dim=16, heads=2, layers=2).eval()
    u = torch.rand(4, 5)
    drawn = prior.generate(u)
    probs = torch.softmax(prior(drawn), -1)  # the full forward on the drawn sequence gives each step's distribution
    cdf = torch.cumsum(probs, -1)
    torch.testing.assert_close(drawn, (cdf <= u[..., None] * cdf[..., -1:]).sum(-1))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="divisible by 4"):
        vq_vae.VQVAE((1, 10, 10))
    with pytest.raises(ValueError, match="decay"):
        vq_vae.CodebookUpdate(decay=1.0)
    net = tiny_vq().train()
    x, keys = digits(4), torch.rand(4, 4)
    with pytest.raises(ValueError, match="needs keys"):
        net.loss(x, update=vq_vae.CodebookUpdate())
    with pytest.raises(ValueError, match="update rule"):
        net.loss(x, keys, step=0)
    # the loss's settings are checked by the loss, before the quantiser changes anything, and by build from the config
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="objective must be"):
        net.loss(x, keys, step=0, objective="l1", update=vq_vae.CodebookUpdate())
    with pytest.raises(ValueError, match=r"needs \[0, 1\] outputs"):
        tiny_vq(bounded=False).train().loss(x, keys, step=0, objective="bce", update=vq_vae.CodebookUpdate())
    with pytest.raises(ValueError, match="beta must not be negative"):
        net.loss(x, keys, step=0, beta=-1.0, update=vq_vae.CodebookUpdate())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for bad, message in (({"objective": "l1"}, "objective must be"), ({"beta": -1.0}, "beta must not be negative"),
                         ({"decay": 1.0}, "decay"), ({"threshold": -1.0}, "threshold")):
        with pytest.raises(ValueError, match=message):
            training.build(training.Config(**bad), DIGITS, {})
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        training.build(training.Config(), get_info("moons"), {})


# The codebook: buffers, the EMA update, restarts ------------------------------------------------------------------
def test_the_codebook_is_in_buffers_and_not_in_the_optimiser(tmp_path):
    cfg = apply_overrides(training.default_config("quick", "digits"), [*TINY_VQ, "train.steps=1"])
    trainer = new_trainer(cfg, tmp_path / "run")
    buffers = dict(trainer.net.named_buffers())
    assert {"quantiser.codebook", "quantiser.cluster_size", "quantiser.embed_sum", "quantiser.usage"} == set(buffers)
    assert not any("quantiser" in name for name, _ in trainer.net.named_parameters())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in trainer.net.parameters()}
    assert not optimised & {id(b) for b in buffers.values()}


def test_the_first_training_step_starts_every_code_at_encoder_outputs():
    net = tiny_vq().train()
    rule = vq_vae.CodebookUpdate(decay=0.0, eps=0.0)  # decay 0: the EMA step is one k-means step from the restart
    x, keys = digits(), torch.rand(32, 4, generator=torch.Generator().manual_seed(0))
    rows = vq_vae.networks.grid_to_rows(net.encoder(x)).detach()
    chosen = rows[torch.argsort(keys.reshape(-1))[:16]]
    _, indices = vq_vae.quantise(rows, chosen)  # every code owns at least its own row
    net.loss(x, keys, step=0, update=rule)
    counts, sums = vq_vae.assignment_stats(rows, indices, 16)
    torch.testing.assert_close(net.quantiser.codebook, sums / counts[:, None])  # the mean of each code's rows


def test_the_ema_update_happens_once_per_training_step_and_only_in_training_mode():
    net, rule = tiny_vq().train(), vq_vae.CodebookUpdate()
    x, gen = digits(), torch.Generator().manual_seed(0)
    net.loss(x, torch.rand(32, 4, generator=gen), step=0, update=rule)  # initialisation and a first EMA step
    q = net.quantiser
    before = {k: v.clone() for k, v in q.state_dict().items()}
    rows = vq_vae.networks.grid_to_rows(net.encoder(x)).detach()
    indices = vq_vae.nearest_code(rows, before["codebook"])
    cluster, embed = vq_vae.ema_update(before["cluster_size"], before["embed_sum"], rows, indices, rule.decay)
    net.loss(x, torch.rand(32, 4, generator=gen), step=1, update=rule)
    torch.testing.assert_close(q.cluster_size, cluster)
    torch.testing.assert_close(q.codebook, vq_vae.ema_codebook(cluster, embed, rule.eps))
    torch.testing.assert_close(q.usage, before["usage"] + vq_vae.code_usage(indices, 16))
    net.eval()
    after = {k: v.clone() for k, v in q.state_dict().items()}
    net.loss(x)  # no keys, step or update rule needed, nothing changes
    training.validate(net, training.Config(), (x, None))
    assert all(torch.equal(after[k], v) for k, v in q.state_dict().items())


def test_an_engine_step_updates_the_codebook_once_validation_never(tmp_path, monkeypatch):
    steps, real = [], vq_vae.networks.VectorQuantiser.update

    def counting(self, rows, indices, keys, step, update):
        steps.append(step)
        assert update == training.codebook_update(cfg.model)  # the config's rule, handed down the loss
        return real(self, rows, indices, keys, step, update)

    monkeypatch.setattr(vq_vae.networks.VectorQuantiser, "update", counting)
    cfg = apply_overrides(training.default_config("quick", "digits"), [*TINY_VQ, "train.steps=6", "train.log_every=2"])
    new_trainer(cfg, tmp_path / "run").run()
    assert steps == list(range(6))  # one update per step, none at the three log steps' validations


def test_dead_codes_restart_at_rows_chosen_by_the_generator():
    x = digits()

    def restarted(seed: int) -> torch.Tensor:
        net, rule = tiny_vq().train(), vq_vae.CodebookUpdate(restart_every=2)
        gen = torch.Generator().manual_seed(seed)
        net.loss(x, torch.rand(32, 4, generator=torch.Generator().manual_seed(99)), step=0,
                 update=rule)  # the same initialisation
        q = net.quantiser
        q.codebook[3] = 1e3  # code 3 can win no row: the one dead code at the restart of step 2
        q.embed_sum[3] = 1e3 * q.cluster_size[3]
        q.usage.fill_(1000.0)
        q.usage[3] = 0.0
        net.loss(x, torch.rand(32, 4, generator=gen), step=1, update=rule)  # the second step: a restart
        rows = vq_vae.networks.grid_to_rows(net.encoder(x)).detach()
        assert not net.quantiser.usage.any()  # usage starts over
        assert torch.isclose(rows, net.quantiser.codebook[3]).all(-1).any(), "code 3 restarts at an encoder output"
        return net.quantiser.codebook.clone()

    a, b, c = restarted(1), restarted(1), restarted(2)
    assert torch.equal(a, b)  # same seed, same codes
    live = torch.arange(16) != 3
    assert not torch.equal(a[3], c[3]) and torch.equal(a[live], c[live])  # another draw moves the dead code only


# The command line: both stages ----------------------------------------------------------------------------------
def test_cli_trains_samples_and_evaluates_the_vq_vae(runs, capsys):
    vq, _ = runs
    assert {p.name for p in (vq / "samples").iterdir()} == {"reconstructions.png", "usage.png"}
    assert main(["eval", str(vq), "--device", "cpu", "--no-sample-metrics"]) == 0
    metrics = json.loads((vq / "eval_test.json").read_text())
    assert metrics["examples"] == len(DIGITS.load("test")) and metrics["codes_per_example"] == 4
    assert 0 < metrics["code_usage"] <= 1 and 1 <= metrics["perplexity"] <= 16
    assert metrics["codes_used"] == round(16 * metrics["code_usage"]) and 0 < metrics["mse"] < 0.2


def test_the_prior_run_records_and_freezes_its_vq_vae(runs, tmp_path):
    vq, prior = runs
    cfg = json.loads((prior / "config.json").read_text())["model"]
    assert cfg["num_codes"] == 16 and cfg["channels"] == [8, 16]  # inherited from the vq_vae run
    builds_on = json.loads((prior / "builds_on.json").read_text())["vq_vae"]
    assert builds_on["model"] == "vq_vae" and builds_on["step"] == 20 and builds_on["run"] == str(vq)
    _, _, trained = open_run(vq, torch.device("cpu"))
    _, _, net = open_run(prior, torch.device("cpu"))
    for name, value in trained.state_dict().items():  # the prior's training never touched the VQ-VAE
        assert torch.equal(net.vq_vae.state_dict()[name], value), name
    assert not any(p.requires_grad for p in net.vq_vae.parameters())
    assert not net.train().vq_vae.training
    copy = tmp_path / "prior"  # the vq_vae run gone: the prior run rebuilds it from its config and checkpoint
    shutil.copytree(prior, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace(str(vq), str(tmp_path / "gone")))
    _, _, rebuilt = open_run(copy, torch.device("cpu"))
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in net.state_dict().items())
    assert main(["sample", str(copy), "--n", "9", "--device", "cpu"]) == 0
    assert {"samples.png", "reconstructions.png", "usage.png"} <= {p.name for p in (copy / "samples-1").iterdir()}
    assert main(["eval", str(copy), "--device", "cpu", "--no-sample-metrics"]) == 0
    metrics = json.loads((copy / "eval_test.json").read_text())
    assert metrics["uniform_bits_per_code"] == 4.0 and metrics["bits_per_code"] < 4.0
    assert metrics["bits_per_example"] == pytest.approx(4 * metrics["bits_per_code"])
    assert 0 < metrics["unigram_bits_per_code"] <= 4.0 + 1e-6


def test_prior_samples_are_decoded_images(runs):
    module, cfg, net = open_run(runs[1], torch.device("cpu"))
    artefacts = module.sample(net, cfg.model, 10, torch.Generator().manual_seed(0), None)
    assert [a.name for a in artefacts] == ["samples"] and artefacts[0].data.shape == (10, *IMAGE)
    again = module.sample(net, cfg.model, 10, torch.Generator().manual_seed(0), None)[0].data
    assert torch.equal(artefacts[0].data, again)


def test_bad_runs_are_one_line_errors(runs, tmp_path, capsys):
    vq, prior = runs
    cases = {"needs a trained VQ-VAE": ["model.stage=prior"],
             "not a trained vq_vae run": ["model.stage=prior", f"model.vq_vae={tmp_path / 'nothing'}"],
             "is a prior run": ["model.stage=prior", f"model.vq_vae={prior}"],
             "add --set model.stage=prior": [f"model.vq_vae={vq}"]}
    for i, (message, overrides) in enumerate(cases.items()):
        capsys.readouterr()
        assert main(["train", "vq_vae", "--dataset", "digits", "--steps", "1", "--out", str(tmp_path / f"r{i}"),
                     *sets(overrides)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / f"r{i}").exists()


def test_resume_is_bit_identical(tmp_path):
    """6 steps, then 6 more after a resume == 12 straight, with a restart at steps 5 and 10 in between."""
    cfg = apply_overrides(training.default_config("quick", "digits"), [*TINY_VQ, "train.steps=12", "data.limit=96"])
    new_trainer(cfg, tmp_path / "straight").run()
    assert new_trainer(cfg, tmp_path / "resumed").run(stop_at=6).step == 6
    new_trainer(cfg, tmp_path / "resumed", resume=True).run()
    a, b = (open_run(tmp_path / r, torch.device("cpu"))[2].state_dict() for r in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_spoken_digit_log_mels_train_and_write_wavs(tmp_path):
    cfg = apply_overrides(training.default_config("quick", "spoken_digits"), [
        "data.limit=32", "model.channels=4,8,8", "model.num_codes=8", "model.code_dim=2", "train.batch_size=16",
        "train.steps=2", "train.samples=8", "train.log_every=1", "train.val_batch=0"])
    try:
        info = dataset_info(cfg.data)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    assert info.shape == (1, 64, 64) and not training.build(cfg.model, info, {}).bounded
    outcome = new_trainer(cfg, tmp_path / "run").run()
    wavs = sorted(p.name for p in outcome.files if p.suffix == ".wav")
    assert "originals_audio-00.wav" in wavs and "reconstructions_audio-07.wav" in wavs


# Slow: torchrun and the quick preset --------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_update_the_codebook_as_one(tmp_path):
    """torchrun with 2 gloo processes and half batches: the EMA state, usage and restarts (every 2 steps) agree with
    one process on the whole batch (the rows of both ranks are gathered)."""
    from safetensors.numpy import load_file

    args = ["practice_torch", "train", "vq_vae", "--dataset", "digits", "--device", "cpu", "--steps", "6",
            *sets([*TINY_VQ, "model.restart_every=2", "train.val_batch=0"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for prefix, out in ((["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"], "ddp"),
                        (["-m"], "single")):
        proc = subprocess.run([sys.executable, *prefix, *args, "--out", str(tmp_path / out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (load_file(str(tmp_path / r / "checkpoints" / "step_0000006.safetensors")) for r in ("ddp", "single"))
    for key in ("codebook", "cluster_size", "embed_sum", "usage"):
        torch.testing.assert_close(torch.from_numpy(a[f"quantiser.{key}"]), torch.from_numpy(b[f"quantiser.{key}"]),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_quick_preset_uses_its_codebook_and_its_prior_beats_uniform(tmp_path):
    start = time.perf_counter()
    assert main(["train", "vq_vae", "--out", str(tmp_path / "vq")]) == 0
    assert main(["train", "vq_vae", "--out", str(tmp_path / "prior"), "--set", "model.stage=prior",
                 "--set", f"model.vq_vae={tmp_path / 'vq'}"]) == 0
    assert time.perf_counter() - start < 1200
    assert main(["eval", str(tmp_path / "prior"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "prior/eval_test.json").read_text())
    assert metrics["code_usage"] >= 0.5 and metrics["mse"] < 0.02, metrics
    assert metrics["gain_over_uniform_bits"] >= 1.0 and metrics["bits_per_code"] < metrics["unigram_bits_per_code"]
    assert math.isclose(metrics["uniform_bits_per_code"], 6.0)
