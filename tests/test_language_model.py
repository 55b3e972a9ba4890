"""The language model: decoding rules (negative controls of their specs, the sampler's strategies), tokenisers (BPE
merges and exact round trips), the two character models (incremental decoding equals the full forward, beam search
equals enumeration on a tiny vocabulary), and the training interface through the engine; the quick preset's quality
target (validation loss <= 1.88 nats/char) is a slow test, its time (5 minutes) is measured by
``python -m benchmarks lm_curves``, never asserted."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from practice_torch import language_model as lm
from practice_torch.data import DatasetMissing, get_info
from practice_torch.engine import loop
from practice_torch.engine.config import apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.language_model import training as lm_training
from practice_torch.models import new_trainer
from shared_specs.language_model import CASES
from shared_specs.runner import Perturbation, caught

BY_ID = {c.id: c for c in CASES}
SHAKESPEARE = get_info("shakespeare")
# A net that trains in a second: the engine tests here and test_distributed's.
TINY = ["model.dim=32", "model.layers=1", "model.heads=2", "model.context=32"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def needs_shakespeare():
    from practice_torch.data.text import shakespeare_text

    try:
        return shakespeare_text("val")
    except DatasetMissing as exc:
        pytest.skip(str(exc))


# Negative controls: a wrong JAX twin must be caught. ---------------------------------------------------------------
def test_a_nucleus_of_the_wrong_mass_is_caught(both):
    lower_p = Perturbation("p - 0.2", fn=lambda f: lambda **kw: f(**{**kw, "p": kw["p"] - 0.2}))
    assert "max |a-b|" in caught(BY_ID["language_model/top_p_probs"], lower_p)


def test_an_empty_nucleus_at_p_zero_is_caught(both):
    """p = 0 keeps the most likely token (greedy); the rule without that exception keeps nothing: a softmax of -inf
    everywhere, NaN."""
    import jax
    import jax.numpy as jnp

    def without_the_top_token(fn):
        def probs(logits, p):
            soft = jax.nn.softmax(logits, axis=-1)
            above = jnp.sum(jnp.where(soft[..., None, :] > soft[..., :, None], soft[..., None, :], 0.0), axis=-1)
            return jax.nn.softmax(jnp.where(above < p, logits, -jnp.inf), axis=-1)
        return probs

    assert "inf" in caught(BY_ID["language_model/top_p_probs/zero"], Perturbation("no top token", fn=without_the_top_token))
    logits = torch.tensor([[0.3, 2.0, -1.0], [1.5, 0.2, 0.1]], dtype=torch.float64)
    assert torch.equal(lm.top_p_probs(logits, 0.0), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    u = torch.tensor([0.99, 0.5])
    assert torch.equal(lm.top_p_step(logits, u, 0.0), lm.greedy_step(logits))


def test_another_uniform_is_caught(both):
    shifted = Perturbation("other uniforms", inputs=lambda d: {**d, "u": (d["u"] + 0.37) % 1.0})
    caught(BY_ID["language_model/top_k_step"], shifted)


def test_a_narrower_beam_is_caught(both):
    narrow = Perturbation("beam 1", fn=lambda f: lambda **kw: f(**{**kw, "beam": 1}))
    assert "shape" in caught(BY_ID["language_model/beam_search_narrow"], narrow)


# Decoding ----------------------------------------------------------------------------------------------------------
def test_the_fused_loss_is_the_specd_cross_entropy():
    logits, y = torch.randn(3, 7, 11, dtype=torch.float64), torch.randint(0, 11, (3, 7))
    torch.testing.assert_close(lm.cross_entropy(logits, y), torch.nn.functional.cross_entropy(logits.reshape(-1, 11),
                                                                                            y.reshape(-1)))


def test_next_token_applies_the_temperature_before_each_filter():
    logits, u = torch.randn(6, 9), torch.rand(6)
    assert torch.equal(lm.next_token(logits, u, "greedy"), logits.argmax(-1))
    assert torch.equal(lm.next_token(logits, u, "top_k", 0.5, k=3), lm.top_k_step(logits / 0.5, u, 3))
    assert torch.equal(lm.next_token(logits, u, "top_p", 2.0, p=0.7), lm.top_p_step(logits / 2.0, u, 0.7))
    assert torch.equal(lm.next_token(logits, u, "temperature", 0.7), lm.temperature_step(logits, u, 0.7))
    with pytest.raises(ValueError, match="unknown decoding strategy 'nucleus'"):
        lm.next_token(logits, u, "nucleus")


def test_the_nucleus_is_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64)
    kept = lambda p: (lm.top_p_probs(probs.log(), p) > 0).sum().item()  # noqa: E731
    assert [kept(p) for p in (0.4, 0.49, 0.51, 0.79, 0.81, 0.96)] == [1, 1, 2, 2, 3, 4]


# Tokenisers --------------------------------------------------------------------------------------------------------
def test_bpe_learns_the_most_frequent_pair_and_round_trips(tmp_path):
    tok = lm.BPETokenizer.train("aaabdaaabac", 3)
    assert tok.tokens[len(tok.alphabet)] == "aa" and tok.merges[1] == (tok.stoi["a"], tok.stoi["b"])
    text = "the cat sat on the mat; the rat sat.\n  The end\n" * 20
    tok = lm.BPETokenizer.train(text, 8)
    assert len(tok.merges) == 8 and tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) < 0.6 * len(text), "merges compress their own training text"
    done = lm.BPETokenizer.train(text, 100)
    assert len(done.merges) < 100 and len(done.encode(text)) == len(lm.pretokenize(text)), \
        "learning stops when every pre-token is one token"
    assert " the" in done.tokens and not any(" " in t.strip() for t in done.tokens), "merges stay inside pre-tokens"
    again = lm.BPETokenizer.load(tok.save(tmp_path / "bpe.json"))
    assert again.merges == tok.merges and again.encode("the rat ate the cat") == tok.encode("the rat ate the cat")
    assert again.decode(again.encode("zebra!")) == "\ufffde\ufffdra\ufffd", "unknown characters become UNK"
    with pytest.raises(ValueError, match="not a BPE tokeniser"):
        lm.BPETokenizer.from_json(json.dumps({"type": "wordpiece"}))


def test_pretokens_partition_the_text_and_characters_round_trip():
    text = "  Hello, world!!  42 times\n\n\tO Romeo -- Romeo?  "
    assert "".join(lm.pretokenize(text)) == text
    assert lm.pretokenize("a  b") == ["a", " ", " b"]
    tok = lm.CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text and tok.encode("Z") == [0]


def test_bpe_on_the_shakespeare_validation_text():
    val = needs_shakespeare()[:50_000]
    tok = lm.BPETokenizer.train(val, 100)
    ids = tok.encode(val)
    assert tok.decode(ids) == val and len(val) / len(ids) > 1.6


# The models --------------------------------------------------------------------------------------------------------
def tiny(architecture: str, vocab: int = 11, context: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return lm.build_language_model(architecture, vocab, context, 16, 2, 2, 0.0, True).double().eval()


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
def test_incremental_decoding_equals_the_full_forward(architecture):
    net = tiny(architecture)
    prompt, u = torch.randint(0, 11, (3, 4)), torch.rand(3, 10)
    for strategy in ("greedy", "temperature", "top_k", "top_p"):
        fast = lm.generate(net, prompt, 10, strategy, u, 0.9, 5, 0.8, use_cache=True)
        slow = lm.generate(net, prompt, 10, strategy, u, 0.9, 5, 0.8, use_cache=False)
        assert torch.equal(fast, slow), strategy
    with torch.no_grad():
        logits, state = net.start(prompt)
        for i in range(3):
            torch.testing.assert_close(logits, net(torch.cat([prompt, fast[:, :i]], 1))[:, -1])
            logits, state = net.advance(fast[:, i], state)


def test_the_transformer_cache_refills_beyond_its_context():
    net = tiny("transformer", context=8)
    out = lm.generate(net, torch.randint(0, 11, (2, 3)), 30, "top_p", torch.rand(2, 30), p=0.9)
    assert out.shape == (2, 30) and 0 <= out.min() and out.max() < 11


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
def test_beam_search_with_a_net_equals_enumeration_on_a_tiny_vocabulary(architecture):
    net, prompt, length = tiny(architecture, vocab=3), torch.tensor([1, 2]), 4
    seqs = lm.generate(net, prompt[None], length, "beam", beam=3 ** (length - 1))
    every = torch.tensor(list(itertools.product(range(3), repeat=length)))
    with torch.no_grad():
        full = torch.cat([prompt.expand(len(every), 2), every], 1)
        logp = torch.log_softmax(net(full[:, :-1]), -1).gather(-1, full[:, 1:, None])[:, 1:, 0].sum(1)
    best = torch.argsort(logp, descending=True)[: 3 ** (length - 1)]
    assert torch.equal(seqs, every[best])
    greedy = lm.generate(net, prompt[None], length, "greedy")
    assert torch.equal(lm.generate(net, prompt[None], length, "beam", beam=1), greedy)


# Training interface ------------------------------------------------------------------------------------------------
def test_build_and_presets():
    quick, full = lm_training.default_config("quick"), lm_training.default_config("full")
    assert quick.data.name == "shakespeare" and quick.train.batch_size == 12 and quick.model.context == 64
    assert full.model.context == 256 and full.train.precision == "bf16"
    with pytest.raises(ValueError, match="trains on shakespeare"):
        lm_training.build(lm_training.Config(), get_info("moons"))
    with pytest.raises(ValueError, match="model.context must be in 2..256"):
        lm_training.build(lm_training.Config(context=300), SHAKESPEARE)
    with pytest.raises(ValueError, match="unknown architecture 'gru'"):
        lm_training.build(lm_training.Config(architecture="gru"), SHAKESPEARE)


def test_loss_crops_the_windows_with_the_drawn_offsets():
    net_config = lm_training.Config(dim=16, layers=1, heads=2, context=8)
    net = lm_training.build(net_config, SHAKESPEARE)
    x = torch.randint(0, 85, (4, 256))
    noise = lm_training.draw_noise(net, net_config, 4, torch.Generator().manual_seed(0))
    assert noise["offset"].max() <= 248
    loss, terms = lm_training.loss(net, net_config, (x, torch.roll(x, -1, 1)), noise, 0)
    rows = torch.stack([x[b, o:o + 8] for b, o in enumerate(noise["offset"].tolist())])
    targets = torch.stack([torch.roll(x, -1, 1)[b, o:o + 8] for b, o in enumerate(noise["offset"].tolist())])
    torch.testing.assert_close(loss, lm.cross_entropy(net(rows), targets))
    torch.testing.assert_close(terms["bits_per_char"], loss.detach() / math.log(2))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_the_full_preset_path_compiles_once_under_bf16_autocast(tmp_path, backend, monkeypatch):
    """The GPU preset's path, shrunk: torch.compile and bf16 autocast on the CPU, with the engine's validation at
    every log step. Any recompilation is an error here (a validation traced into the compiled loss recompiled it).
    Recompiling is dynamo's decision, whatever the backend: the default suite traces forward and backward through
    AOTAutograd without inductor's code generation (30-70 s of C++ builds on 2 cores), the slow one with it."""
    needs_shakespeare()
    if backend != "inductor":
        monkeypatch.setattr(loop, "compiled", lambda loss, mode: torch.compile(loss, backend=backend, dynamic=False))
    cfg = apply_overrides(lm_training.default_config("full"), [
        *TINY, "model.sample_length=20",
        "model.bpe_merges=0", "train.val_batch=2", "data.limit=40000", "train.steps=4", "train.log_every=1",
        "train.warmup_steps=1", "train.samples=1", "train.device=cpu", "train.checkpoint_every=4"])
    assert cfg.train.compile and cfg.train.precision == "bf16"
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        new_trainer(cfg, tmp_path / "run").run()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all(math.isfinite(r["val_loss"]) for r in records)
    assert len({r["val_loss"] for r in records}) == 4, "each step scores the next validation windows"


@pytest.mark.parametrize("architecture, merges", [("transformer", 10), ("lstm", 0)])
def test_both_architectures_train_sample_and_evaluate_through_the_engine(loss_plot, architecture, merges, tmp_path):
    needs_shakespeare()
    cfg = apply_overrides(lm_training.default_config("quick"), [
        f"model.architecture={architecture}", *TINY,
        "model.sample_length=40", f"model.bpe_merges={merges}", "data.limit=40000", "train.steps=30",
        "train.log_every=10", "train.warmup_steps=5", "train.samples=2", "train.lr=3e-3"])
    outcome = new_trainer(cfg, tmp_path / "run").run()
    records = read_metrics(tmp_path / "run")
    assert len(records) == 3 and records[-1]["loss"] < records[0]["loss"] and "val_loss" in records[-1]
    names = sorted(p.name for p in outcome.files)
    bpe = ["bpe_sample.txt", "bpe_tokenizer.txt"] if merges else []
    assert names == [*bpe, "loss.png", "samples.txt", "strategies.txt"]
    strategies = (tmp_path / "run/samples/strategies.txt").read_text()
    assert all(f"=== {s} (" in strategies for s in lm.STRATEGIES)
    if merges:
        assert len(lm.BPETokenizer.load(tmp_path / "run/samples/bpe_tokenizer.txt").merges) == merges
    from practice_torch.data.text import load_shakespeare

    val = load_shakespeare("val", limit=20_000)
    metrics = lm_training.evaluate(outcome_net(tmp_path / "run"), cfg.model, val, torch.Generator())
    assert metrics["characters"] == len(val) * 256 and metrics["loss"] < math.log(85)
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / math.log(2))


def outcome_net(run_dir):
    from practice_torch.models import open_run

    return open_run(run_dir, torch.device("cpu"))[2]


@pytest.mark.slow
def test_the_quick_preset_reaches_1_88_nats_per_char(tmp_path):
    from practice_torch.cli import main

    needs_shakespeare()
    assert main(["train", "language_model", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "val"]) == 0
    metrics = json.loads((tmp_path / "run/eval_val.json").read_text())
    assert metrics["loss"] <= 1.88, metrics


def test_the_kv_cache_benchmark_reports_both_paths():
    import argparse

    from benchmarks.language_model import kv_cache

    rows = kv_cache(argparse.Namespace(tokens=4))
    assert {(r["arm"], r["batch"], r["cache"]) for r in rows} == {
        ("transformer", 1, True), ("transformer", 1, False), ("transformer", 16, True), ("transformer", 16, False),
        ("lstm", 1, True), ("lstm", 16, True)}
    assert all(r["tokens_per_cpu_s"] > 0 for r in rows) and all("speedup" in r for r in rows if r["arm"] == "transformer"
                                                              and r["cache"])
