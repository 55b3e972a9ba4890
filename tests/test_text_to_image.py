"""Text guidance's math (``practice_torch.text_to_image`` and its JAX twin, run in full by tests/test_specs.py):
negative controls on its spec cases: a mask that lets padding through, guidance with its branches swapped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from shared_specs.runner import Perturbation, caught, run_case
from shared_specs.text_to_image import CASES

BY_ID = {case.id: case for case in CASES}


def test_a_mask_that_lets_the_padding_through_is_caught(both):
    case = BY_ID["text_to_image/cross_attention"]
    assert run_case(case).passed
    leak = Perturbation("padding let through", inputs=lambda d: {**d, "mask": np.ones_like(d["mask"])})
    message = caught(case, leak)
    assert "output" in message and "reference" in message  # the JAX side alone now averages over the padding


def test_guidance_with_the_branches_swapped_is_caught(both):
    import theory_jax.text_to_image as T

    def swapped(fn):
        return lambda eps_cond, eps_uncond, w: T.guided_eps(eps_uncond, eps_cond, w)

    assert "output" in caught(BY_ID["text_to_image/guided_eps"], Perturbation("branches swapped", fn=swapped))


# Captions -------------------------------------------------------------------------------------------------------
def _training_captions(n=3000, seed=0):
    from practice_torch.data import captions as C

    rng = np.random.default_rng(seed)
    labels, bins, wording = rng.integers(0, 10, n), rng.integers(0, 3, n), rng.uniform(size=n)
    return labels, bins, [C.fashion_caption(int(k), int(b), float(u)) for k, b, u in zip(labels, bins, wording)]


def test_training_captions_say_what_the_picture_is_and_never_pair_the_held_out_words():
    from practice_torch.data import captions as C

    labels, bins, texts = _training_captions()
    parsed = [C.parse_fashion(t) for t in texts]
    assert [k for k, _ in parsed] == labels.tolist()  # every caption names its class, by one of its synonyms
    held = {(k, C.BRIGHTNESS.index(w)) for k, w in C.HELD_OUT}
    for (k, said), b in zip(parsed, bins):
        assert said == (1 if (k, b) in held else b)  # the bin is named unless medium or a held-out pair
    assert len(set(texts)) > 300  # the wording varies: templates x synonyms x adjectives
    # negative control: the same draws with the held-out pairs allowed do name them
    unseen = [C.parse_fashion(C.fashion_caption(int(k), int(b), 0.5, held_out=True)) for k, b in held]
    assert set(unseen) == held
    assert {(k, b) for _, k, b in C.prompts(held_out=True)} == held


def test_tokens_round_trip_and_the_empty_caption_is_the_start_token_alone():
    from practice_torch.data import captions as C

    ids, mask = C.tokenize(["a dark sneaker", C.EMPTY, "an ankle boot"], 20)
    assert C.detokenize(ids) == ["a dark sneaker", "", "an ankle boot"]
    assert ids[1, 0] == C.START and mask[1].sum() == 1 and mask.sum(1).tolist() == [15, 1, 14]
    with pytest.raises(ValueError, match="letters a-z"):
        C.tokenize(["a dark sneaker!"], 20)
    with pytest.raises(ValueError, match="at most 19 characters"):
        C.tokenize(["a" * 20], 20)


def test_the_captions_looked_up_on_the_device_are_the_ones_written_on_the_host():
    """A training step's Fashion-MNIST captions come from a table of every caption's token ids, indexed by class,
    brightness bin and the three digits of the wording (``fashion_caption_ids``): the same ids and mask as writing
    each caption and tokenising it (``batch_captions``), the empty caption where dropped, the digits' edges included
    (u at 0, at a multiple of 1/15 and of 1/225, just below 1). Control: a table whose template and noun axes are
    swapped gives other captions."""
    import torch

    from practice_torch.data import captions as C

    table = C.fashion_caption_table(48)
    g = torch.Generator().manual_seed(0)
    n = 4000
    labels, bins = torch.randint(10, (n,), generator=g), torch.randint(3, (n,), generator=g)
    wording, drop = torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g) < 0.2
    wording[:5] = torch.tensor([0.0, 1 / 15, 2 / 225, 0.5, 1 - 2 ** -52], dtype=torch.float64)
    texts = [C.EMPTY if d else C.fashion_caption(int(k), int(b), float(u))
             for k, b, u, d in zip(labels, bins, wording, drop)]
    ids, mask = C.fashion_caption_ids(table, labels, bins, wording, drop)
    written, written_mask = C.tokenize(texts, 48)
    assert torch.equal(ids, written) and torch.equal(mask, written_mask)
    assert len(set(C.detokenize(ids))) > 300 and C.detokenize(ids[drop])[0] == ""
    swapped = table.transpose(2, 3).contiguous().reshape(table.shape)  # the control: the axes mixed up
    assert not torch.equal(C.fashion_caption_ids(swapped, labels, bins, wording, drop)[0], written)


def _galaxy_captions(n=3000, seed=0):
    import torch

    from practice_torch.data import captions as C
    from practice_torch.data.galaxies import RANGES

    rng = np.random.default_rng(seed)
    physical = torch.from_numpy(rng.uniform(RANGES[:, 0], RANGES[:, 1], (n, 5)))
    return [C.galaxy_caption(w, float(u), held_out=h)
            for w, u, h in zip(C.galaxy_attributes(physical), rng.uniform(size=n), rng.uniform(size=n) < 0.5)]


@pytest.mark.parametrize("dataset", ["fashion_mnist", "galaxies"])
def test_the_vocabulary_is_every_word_the_training_captions_say(dataset):
    """Computed from the caption tables, it is the set of words of thousands of drawn captions (held-out pairs
    included); control: the other data set's captions say words it lacks."""
    from practice_torch.data import captions as C

    drawn = {"fashion_mnist": _training_captions()[2] + [C.fashion_caption(k, b, u, held_out=True)
                                                         for k in range(10) for b in range(3) for u in (0.1, 0.6)],
             "galaxies": _galaxy_captions()}
    said = {w for text in drawn[dataset] for w in C.words(text)}
    assert set(C.vocabulary(dataset)) == said
    assert C.vocabulary(dataset) == tuple(sorted(said))
    other = {w for text in drawn["galaxies" if dataset == "fashion_mnist" else "fashion_mnist"] for w in C.words(text)}
    assert other - set(C.vocabulary(dataset))  # e.g. 'galaxy' for Fashion-MNIST, 'sneaker' for the galaxies
    assert "medium" not in C.vocabulary("fashion_mnist")  # a bin no caption names
    assert C.words("A dark T-shirt, pale-ish!") == ["a", "dark", "t-shirt", "pale-ish"]


@pytest.mark.parametrize("dataset, known, unknown", [
    ("fashion_mnist", "an image of a deep-coloured button-up shirt", "a purple giraffe"),
    ("galaxies", "a compact, luminous galaxy with a soft core", "a purple giraffe"),
])
def test_a_prompt_note_names_the_words_the_captions_never_say(dataset, known, unknown):
    from practice_torch.data import captions as C
    from practice_torch.text_to_image import training

    assert training.prompt_note(known, dataset) == ""  # control: every word was seen in training
    note = training.prompt_note(unknown, dataset)
    assert "\n" not in note and "'purple', 'giraffe'" in note and "'a'" not in note
    assert note.endswith(", ".join(C.vocabulary(dataset)))  # the words it does know
    assert "'galaxy'" in training.prompt_note("a dark galaxy", "fashion_mnist")  # one data set's words are not the other's
    assert "'dark'" in training.prompt_note("a dark galaxy", "galaxies")


def test_a_blank_prompt_is_not_the_empty_prompt_and_is_refused_in_one_line():
    from dataclasses import replace

    from practice_torch.data import get_info
    from practice_torch.engine.config import ConfigError
    from practice_torch.engine.runs import build_net
    from practice_torch.text_to_image import training

    cfg = training.default_config("quick", "fashion_mnist")
    with pytest.raises(ConfigError, match="not the empty prompt") as info:
        build_net(training, replace(cfg, model=replace(cfg.model, prompt="   ")), get_info("fashion_mnist"))
    assert "\n" not in str(info.value) and "model.prompt=" in str(info.value)
    # control: the empty prompt passes the prompt's checks (and stops at the missing autoencoder run)
    with pytest.raises(ConfigError, match="builds on a vq_vae run"):
        build_net(training, replace(cfg, model=replace(cfg.model, prompt="")), get_info("fashion_mnist"))


def test_brightness_bins_are_the_classes_terciles():
    import torch

    from practice_torch.data import captions as C

    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 2
    x = torch.rand(600, 1, 4, 4, generator=g) * (1 + y.view(-1, 1, 1, 1))  # class 1 twice as bright
    edges = C.brightness_edges(x, y, classes=2)
    bins = C.brightness_bin(x, y, edges)
    for k in (0, 1):
        counts = torch.bincount(bins[y == k], minlength=3)
        assert counts.min() >= 99 and counts.max() <= 101  # a third of each class in each bin
    assert edges[1, 0] > edges[0, 0] * 1.5
    # negative control: one class's edges for both classes put most of class 1 in 'light'
    assert (C.brightness_bin(x, y, edges[[0, 0]])[y == 1] == 2).float().mean() > 0.6


# The networks: the text encoder and the U-Net that cross-attends to it -------------------------------------------
def test_the_causal_text_encoder_reads_no_padding_in_either_backend():
    import jax
    import jax.numpy as jnp
    import torch

    from practice_torch.text_to_image import TextEncoder
    from shared_specs.interop import torch_to_flax
    from theory_jax.text_to_image import TextEncoder as FlaxTextEncoder

    ids = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 8, 0, 0, 0, 0]])
    other = ids.clone()
    other[ids == 0] = 9  # what sits in the padded places changes
    torch.manual_seed(0)
    net = TextEncoder(12, dim=16, heads=2, layers=2, max_len=6)
    real = ids != 0
    with torch.no_grad():
        a, b = net(ids), net(other)
    assert torch.equal(a[real], b[real]) and not torch.allclose(a[~real], b[~real])
    flax_net = FlaxTextEncoder(12, dim=16, heads=2, layers=2, max_len=6)
    template = flax_net.init(jax.random.PRNGKey(0), jnp.asarray(ids.numpy()))["params"]
    params = torch_to_flax({k: v.numpy() for k, v in net.state_dict().items()}, template)
    fa = np.asarray(flax_net.apply({"params": params}, jnp.asarray(ids.numpy())))
    fb = np.asarray(flax_net.apply({"params": params}, jnp.asarray(other.numpy())))
    np.testing.assert_allclose(fa, a.numpy(), atol=1e-5)
    np.testing.assert_array_equal(fa[real.numpy()], fb[real.numpy()])
    # negative control: a bidirectional trunk lets the padding into the real tokens' states
    net.trunk.blocks[0].attn.causal = False
    with torch.no_grad():
        assert not torch.allclose(net(ids)[real], net(other)[real])


def test_the_u_net_cross_attends_at_its_attention_levels_and_never_to_padding():
    import torch

    from practice_torch.nets import UNet

    torch.manual_seed(0)
    plain = UNet(channels=16, channel_mults=(1, 2), attention_levels=(1,), heads=2, groups=4)
    net = UNet(channels=16, channel_mults=(1, 2), attention_levels=(1,), heads=2, groups=4, context_dim=12)
    assert not any("cross" in k for k in plain.state_dict())  # an unconditioned U-Net's checkpoint is unchanged
    crossed = {k.split(".cross.")[0] for k in net.state_dict() if ".cross." in k}
    assert crossed == {"down.2", "mid.0", "up.0", "up.1"}  # every block with self-attention: level 1 and the middle
    for p in net.parameters():  # the zero-initialised output layers would hide the context
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    context, mask = torch.randn(2, 5, 12), torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).bool()
    moved = context.clone()
    moved[~mask] += 5.0
    with torch.no_grad():
        out = net(x, t, context=context, context_mask=mask)
        assert torch.equal(out, net(x, t, context=moved, context_mask=mask))
        assert not torch.allclose(out, net(x, t, context=moved, context_mask=torch.ones_like(mask)))  # control
        other = context.clone()
        other[0, 1] += 1.0  # a real token of the first caption
        changed = net(x, t, context=other, context_mask=mask)
    assert not torch.allclose(changed[0], out[0]) and torch.equal(changed[1], out[1])
    with pytest.raises(ValueError, match="cross-attends to context of shape"):
        net(x, t)
    with pytest.raises(ValueError, match="context_dim=0"):
        plain(x, t, context=context)


# The training adapter: a tiny run on each captioned data set -----------------------------------------------------
TINY = ["--device", "cpu", "--set", "data.limit=300", "--set", "model.channels=16", "--set", "model.num_res_blocks=1",
        "--set", "model.heads=2",
        "--set", "model.text_dim=16", "--set", "model.text_layers=1", "--set", "model.text_heads=2",
        "--set", "model.T=50", "--set", "model.sample_steps=2", "--set", "model.scale_examples=100",
        "--set", "model.eval_per_prompt=2", "--set", "model.eval_examples=24", "--set", "train.batch_size=16",
        "--set", "train.warmup_steps=1", "--set", "train.log_every=2", "--set", "train.samples=10"]


@pytest.fixture(scope="module", params=["fashion_mnist", "galaxies"])
def tiny_run(request, tmp_path_factory):
    """A run of 3 steps on a 4-step VQ-VAE the engine trains first, started in an empty working directory ``cwd``
    beside the run's folder. The VQ-VAE's usage figure (the codes of the whole test split, 10 000 images) is left
    out: it would cost more than the rest of the run."""
    import practice_torch.vq_vae.training as vq_training
    from practice_torch.cli import main
    from practice_torch.data import DatasetMissing

    def no_test_split(*args, **kwargs):
        raise DatasetMissing("left out by the test")

    root = tmp_path_factory.mktemp(f"text_to_image_{request.param}")
    run, cwd = root / "run", root / "cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vq_training, "sibling_split", no_test_split)
        patch.chdir(cwd)
        assert main(["train", "text_to_image", "--dataset", request.param, "--steps", "3", "--out", str(run),
                     "--set", "model.autoencoder_steps=4", *TINY]) == 0
    return request.param, run


def test_a_run_with_out_writes_nothing_outside_it(tiny_run):
    """The VQ-VAE the engine trains first goes into the run's own folder, not the working directory (control: the
    listing finds that VQ-VAE's files, inside)."""
    _, run = tiny_run
    written = sorted(p.relative_to(run.parent).as_posix() for p in run.parent.rglob("*") if p.is_file())
    assert [p for p in written if not p.startswith("run/")] == []
    assert "run/autoencoder/config.json" in written and "run/config.json" in written


def test_a_step_moves_the_text_encoder_and_the_u_net_and_never_the_autoencoder(tiny_run):
    import torch

    from practice_torch.data import captions
    from practice_torch.engine.runs import load_split
    from practice_torch.models import open_run

    name, run = tiny_run
    module, cfg, net = open_run(run, torch.device("cpu"))
    builds_on = json.loads((run / "builds_on.json").read_text())["autoencoder"]
    assert builds_on["model"] == "vq_vae" and builds_on["step"] == 4 and builds_on["run"] == str(run / "autoencoder")
    _, _, vq = open_run(Path(builds_on["run"]), torch.device("cpu"))
    for key, value in vq.state_dict().items():
        assert torch.equal(net.autoencoder.state_dict()[key], value), key
    assert not any(p.requires_grad for p in net.autoencoder.parameters()) and net.scale.item() > 0
    assert (net.brightness_edges.shape == (10, 2)) == (name == "fashion_mnist")
    assert (run / "samples" / "prompts.png").is_file()  # each prompt written above its images
    x, y = next(iter(torch.utils.data.DataLoader(load_split(cfg.data, "train"), batch_size=8)))
    g = torch.Generator().manual_seed(0)
    noise = module.draw_noise(net, cfg.model, 8, g)
    texts = captions.batch_captions((x, y), noise["wording"], noise["drop"], net.brightness_edges)
    parse = captions.parse_galaxy if name == "galaxies" else captions.parse_fashion
    assert all(parse(t) for t, d in zip(texts, noise["drop"]) if not d)  # every kept caption says something
    loss, _ = module.loss(net, cfg.model, (x, y), noise, 0)
    loss.backward()
    assert net.text_encoder.embedding.weight.grad.abs().sum() > 0  # the caption reaches the loss
    assert net.denoiser.down[0].cross.kv.weight.grad.abs().sum() > 0
    # Fashion-MNIST's step writes no caption on the host: it looks the token ids up on the device (one graph for
    # train.compile, where writing them broke it and inductor's C++ compile of the host part failed); the galaxies'
    # are still written there (the control)
    def written_on_the_host(*args, **kwargs):
        raise AssertionError("a caption written on the host")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captions, "batch_captions", written_on_the_host)
        if name == "fashion_mnist":
            module.loss(net, cfg.model, (x, y), noise, 0)
        else:
            with pytest.raises(AssertionError, match="on the host"):
                module.loss(net, cfg.model, (x, y), noise, 0)


def cache_an_untrained_feature_network(name: str, folder: Path, monkeypatch) -> None:
    """The feature network of ``name`` in its current configuration, untrained, as the cache in ``folder`` (made
    $GENERATIVE_TWINS_DATA) holds one: the prompts' class figures read its class probabilities, whose quality a test of
    the command line does not judge (training the real one takes over a minute on two cores)."""
    import dataclasses

    from practice_torch.data import get_info
    from practice_torch.evaluation import features as F

    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(folder))
    info, config = get_info(name), F.CONFIGS[name]
    net = F.FeatureNetwork(F.feature_shape(info), info.num_classes, config.channels, config.feature_dim, config.dropout)
    F.save_feature_network(net, {"format": F.FORMAT, "dataset": name, "test_accuracy": 0.0,
                                 "image_shape": list(F.feature_shape(info)), "num_classes": info.num_classes,
                                 "config": dataclasses.asdict(config)})


def test_cli_samples_a_prompt_and_evaluates_what_the_prompts_asked(tiny_run, tmp_path, capsys, monkeypatch):
    """A word the captions never say is named on stderr in one line, the prompt sampled anyway (control: eval with
    a prompt of known words says nothing of them)."""
    from practice_torch.cli import main

    name, run = tiny_run
    if name == "fashion_mnist":  # its images come from Debian's package, not the cache
        cache_an_untrained_feature_network(name, tmp_path / "cache", monkeypatch)
    prompt = "a large round faint galaxy" if name == "galaxies" else "a dark sneaker"
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png"), "--device", "cpu",
                 "--set", f"model.prompt={prompt.replace('a ', 'a purple ', 1)}"]) == 0
    assert (tmp_path / "s.png").is_file()
    notes = [line for line in capsys.readouterr().err.splitlines() if "never" in line]
    assert len(notes) == 1 and "'purple' never" in notes[0] and prompt.split()[-1] in notes[0].split("; ")[-1]
    assert main(["eval", str(run), "--device", "cpu", "--no-sample-metrics", "--set", f"model.prompt={prompt}"]) == 0
    assert "never" not in capsys.readouterr().err
    metrics = json.loads((run / "eval_test.json").read_text())
    assert math.isfinite(metrics["latent_loss"]) and metrics["examples"] == 24
    keys = (["size_auc", "brightness_accuracy", "held_out_pair_accuracy", "real_size_auc", "real_shape_accuracy",
             "reconstruction_size_auc"]
            if name == "galaxies" else ["class_accuracy", "brightness_accuracy", "held_out_class_accuracy",
                                        "reconstruction_class_accuracy"])
    for key in [*keys, "retrieval_top1", "retrieval_chance"]:
        assert 0 <= metrics[key] <= 1, key
    assert metrics["retrieval_chance"] >= 1 / 24  # each image's own caption means what it means
    if name == "galaxies":  # the measurement reads the real galaxies' words back: far above chance
        assert metrics["real_size_auc"] > 0.8 and metrics["real_brightness_accuracy"] > 0.7


@pytest.mark.parametrize("overrides, message", [
    (["model.prompt=a dark sneaker!"], "a prompt may use the letters a-z"),
    (["model.sample_steps=5000"], "model.sample_steps must be in 0..T=1000"),
    ([], "text_to_image builds on a vq_vae run"),
])
def test_bad_input_is_one_line(overrides, message):
    from practice_torch.data import get_info
    from practice_torch.engine.config import ConfigError, apply_overrides
    from practice_torch.engine.runs import build_net
    from practice_torch.text_to_image import training

    cfg = apply_overrides(training.default_config("quick", "fashion_mnist"), overrides)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_net(training, cfg, get_info("fashion_mnist"))
