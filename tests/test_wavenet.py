"""WaveNet: negative controls of the specs, causality and the receptive field of the torch network by autograd, the
cached sampler against the parallel forward, the training interface through the engine; the quick preset (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from practice_torch import wavenet as wn
from practice_torch.data import DatasetMissing, get_info
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import new_trainer
from practice_torch.wavenet import training as wn_training
from shared_specs.runner import Perturbation, caught
from shared_specs.wavenet import CASES

BY_ID = {c.id: c for c in CASES}
DIGITS = get_info("spoken_digits")
# A net that trains in a second (dilations 1..16 once): the engine tests here and test_distributed's.
TINY = ["model.channels=8", "model.skip=16", "model.cycle=4", "model.repeats=1", "model.crop=256"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def needs_spoken_digits():
    from practice_torch.data.audio import load_spoken_digits

    try:
        return load_spoken_digits("test")
    except DatasetMissing as exc:
        pytest.skip(str(exc))


# Negative controls: a wrong JAX twin must be caught. ---------------------------------------------------------------
def _centred(f):
    """The JAX convolution with 'same' padding, (K - 1) d split left and right: it sees the future."""
    def conv(x, weight, bias, dilation=1):
        total = (weight.shape[-1] - 1) * dilation
        return f(x, weight, bias, dilation, padding=(total // 2, total - total // 2))
    return conv


def test_a_non_causal_padding_is_caught(both):
    message = caught(BY_ID["wavenet/causal_conv1d_dilated"], Perturbation("centred padding", fn=_centred))
    assert "max |a-b|" in message


def test_a_wrong_mu_is_caught(both):
    caught(BY_ID["wavenet/mu_law_compand"], Perturbation("mu 256", fn=lambda f: lambda **kw: f(**{**kw, "mu": 256.0})))


def test_an_off_by_one_dilation_in_the_block_is_caught(both):
    shifted = Perturbation("dilation + 1", fn=lambda f: lambda **kw: f(**{**kw, "dilation": kw["dilation"] + 1}))
    caught(BY_ID["wavenet/gated_residual_block"], shifted)


def test_the_flax_twins_are_caught_with_a_centred_padding_or_filter_and_gate_swapped(both, monkeypatch):
    """The module cases (torch network vs its flax twin under the converter) fail when the flax side leaks the future
    or reads the gate's kernel as the filter's."""
    import flax.linen as nn

    import theory_jax.wavenet as jax_wavenet

    swapped = Perturbation("filter <-> gate", params=lambda p: {**p, "filter": p["gate"], "gate": p["filter"]})
    assert "output" in caught(BY_ID["wavenet/GatedResidualBlock"], swapped)

    def centred(features, kernel, dilation, name):
        total = (kernel - 1) * dilation
        return nn.Conv(features, (kernel,), kernel_dilation=(dilation,), padding=[(total // 2, total - total // 2)],
                       name=name)

    monkeypatch.setattr(jax_wavenet, "_causal_conv", centred)
    assert "output" in caught(BY_ID["wavenet/WaveNet"], Perturbation("centred padding"))


def test_a_wrong_clock_is_caught(both, monkeypatch):
    """The clock's spec fails with periods in the wrong unit; the clocked module case fails when the flax twin drops
    the crop start (every crop then starts its clock at 0)."""
    import theory_jax.wavenet as jax_wavenet

    halved = Perturbation("periods halved", fn=lambda f: lambda **kw: f(**{**kw, "sample_rate": kw["sample_rate"] / 2}))
    caught(BY_ID["wavenet/clock_features"], halved)
    clock = jax_wavenet.clock_features
    monkeypatch.setattr(jax_wavenet, "clock_features", lambda p, rate, pairs: clock(p - p[:, :1], rate, pairs))
    assert "output" in caught(BY_ID["wavenet/WaveNet_clock_amplitude"], Perturbation("crop start dropped"))


def test_an_amplitude_input_of_mu_law_levels_is_caught(both, monkeypatch):
    """The flax twin fed the mu-law level instead of the decoded waveform value is caught."""
    import theory_jax.wavenet as jax_wavenet

    monkeypatch.setattr(jax_wavenet, "mu_law_decode", lambda q, levels: jax_wavenet.dequantize(q, levels))
    assert "output" in caught(BY_ID["wavenet/WaveNet_clock_amplitude"], Perturbation("amplitude as the level"))


# The network -------------------------------------------------------------------------------------------------------
def _net(kernel=2, dilations=(1, 2, 4, 8, 1, 2, 4, 8), clock=0, amplitude=False):
    torch.manual_seed(0)
    return wn.WaveNet(levels=16, channels=6, skip=8, num_classes=3, kernel=kernel, dilations=dilations, clock=clock,
                      sample_rate=100, amplitude=amplitude).double()


@pytest.mark.parametrize("kernel, dilations", [(2, (1, 2, 4, 8, 1, 2, 4, 8)), (3, (1, 2, 4, 1, 2, 4))])
def test_the_network_is_causal_with_the_closed_form_receptive_field(kernel, dilations):
    """d logits[:, :, t] / d embedded input[tau] is exactly zero for tau > t and for tau <= t - R, nonzero inside."""
    net = _net(kernel, dilations)
    captured = {}
    net.embed.register_forward_hook(lambda module, inputs, output: captured.setdefault("x", output))
    size = wn.receptive_field(kernel, dilations)
    assert size == 1 + (kernel - 1) * (len(dilations) // 3 if kernel == 3 else 2) * (
        2 ** (int(math.log2(max(dilations))) + 1) - 1)
    t, q = size + 4, torch.randint(0, 16, (1, 2 * size + 10))
    logits = net(q, torch.tensor([1]))
    (grad,) = torch.autograd.grad(logits[0, :, t].sum(), captured["x"])
    seen = torch.nonzero(grad[0].abs().sum(-1)).flatten()
    assert seen.min().item() == t - size + 1 and seen.max().item() == t
    assert len(seen) == size


@pytest.mark.parametrize("clock, amplitude", [(0, False), (3, True)])
def test_cached_steps_equal_the_parallel_forward_and_sampling_inverts_its_cdf(clock, amplitude):
    net = _net(3, (1, 2, 4, 1, 2), clock, amplitude)
    y, uniforms = torch.tensor([0, 2, 1]), torch.rand(3, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    q = net.generate(y, uniforms)
    assert q.shape == (3, 31) and (q[:, 0] == 8).all()
    cdf = torch.softmax(net(q[:, :-1], y).detach(), 1).cumsum(1).transpose(1, 2)  # (B, T, levels)
    expected = torch.searchsorted(cdf.contiguous(), uniforms[..., None])[..., 0].clamp_max(15)
    assert torch.equal(q[:, 1:], expected)


def test_a_crop_told_its_start_is_scored_as_in_the_whole_clip():
    """With a clock, training on crops needs their starts: positions whose receptive field lies inside the crop get
    the whole clip's logits; told the wrong start, they do not."""
    net = _net(clock=3, amplitude=True)
    q, y, start = torch.randint(0, 16, (2, 80)), torch.tensor([0, 2]), 23
    whole, size = net(q, y), net.receptive_field
    crop = net(q[:, start:], y, torch.tensor([start, start]))
    torch.testing.assert_close(crop[..., size - 1:], whole[..., start + size - 1:])
    assert not torch.allclose(net(q[:, start:], y)[..., size - 1:], whole[..., start + size - 1:])


def test_the_label_changes_the_prediction():
    net = _net()
    q = torch.randint(0, 16, (1, 20))
    assert not torch.allclose(net(q, torch.tensor([0])), net(q, torch.tensor([2])))


def test_build_rejects_what_it_cannot_train():
    cfg = wn_training.default_config("quick").model
    with pytest.raises(ValueError, match="leave data.view unset"):
        wn_training.build(cfg, get_info("fashion_mnist"))
    with pytest.raises(ValueError, match="sample_rate"):
        wn_training.build(wn_training.Config(sample_rate=7000), DIGITS)
    with pytest.raises(ValueError, match="kernel >= 2"):
        wn_training.build(wn_training.Config(kernel=1), DIGITS)
    with pytest.raises(ValueError, match="model.clock"):
        wn_training.build(wn_training.Config(clock=-1), DIGITS)
    with pytest.raises(ConfigError, match="unknown preset"):
        wn_training.default_config("huge")
    net = wn_training.build(cfg, DIGITS)
    assert net.receptive_field == 1 + 2 * (2**12 - 1) and len(net.blocks) == 24  # a whole word at 8 kHz


def test_the_loss_is_the_cross_entropy_of_the_drawn_crops():
    config = wn_training.Config(channels=4, skip=4, cycle=2, repeats=1, crop=50)
    net = wn_training.build(config, DIGITS)
    x = 0.3 * torch.sin(torch.linspace(0, 300, 16000))[None, None].repeat(2, 1, 1)
    noise = wn_training.draw_noise(net, config, 2, torch.Generator().manual_seed(0))
    assert noise["offset"].min() >= int((8000 - 51) * 0.2) and noise["offset"].max() <= 8000 - 51
    loss, terms = wn_training.loss(net, config, (x, torch.tensor([3, 5])), noise, 0)
    q = wn_training.encode(net, x)
    rows = torch.stack([q[b, o:o + 51] for b, o in enumerate(noise["offset"].tolist())])
    logits = net(rows[:, :-1], torch.tensor([3, 5]), noise["offset"])  # the clock reads each crop's start
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, rows[:, 1:]))
    torch.testing.assert_close(terms["bits_per_sample"], loss.detach() / math.log(2))


def test_train_sample_and_evaluate_through_the_engine(loss_plot, tmp_path):
    needs_spoken_digits()
    cfg = apply_overrides(wn_training.default_config("quick"), [
        *TINY, "model.sample_seconds=0.05", "data.limit=40", "train.steps=12", "train.log_every=4", "train.warmup_steps=2",
        "train.batch_size=4", "train.samples=10", "train.lr=1e-2"])
    outcome = new_trainer(cfg, tmp_path / "run").run()
    records = read_metrics(tmp_path / "run")
    assert len(records) == 3 and records[-1]["loss"] < records[0]["loss"] < math.log(256) + 0.5
    names = sorted(p.name for p in outcome.files)
    assert names == ["loss.png", *[f"samples-{i:02d}.wav" for i in range(10)], "spectrograms.png"]
    import soundfile

    wave, rate = soundfile.read(tmp_path / "run/samples/samples-03.wav")
    assert rate == 8000 and wave.shape == (400,) and np.abs(wave).max() <= 1.0
    from practice_torch.data.audio import load_spoken_digits
    from practice_torch.models import open_run

    net = open_run(tmp_path / "run", torch.device("cpu"))[2]
    metrics = wn_training.evaluate(net, cfg.model, load_spoken_digits("test", limit=4), torch.Generator())
    assert metrics["samples"] == 4 * 7999 and metrics["bits_per_sample"] < 8.0
    assert metrics["nats_per_sample"] == pytest.approx(metrics["bits_per_sample"] * math.log(2))


def test_the_full_preset_path_trains_at_16khz_under_bf16_autocast_on_cpu(tmp_path):
    """The GPU preset's code path, shrunk: 16 kHz, clock and amplitude, bf16 autocast (on the CPU here)."""
    needs_spoken_digits()
    cfg = apply_overrides(wn_training.default_config("full"), [
        *TINY, "model.sample_seconds=0.02", "data.limit=40", "train.steps=8", "train.log_every=4", "train.warmup_steps=2",
        "train.batch_size=4", "train.samples=10", "train.lr=1e-2", "train.device=cpu", "train.checkpoint_every=8"])
    assert cfg.train.precision == "bf16" and cfg.model.sample_rate == 16000 and cfg.model.clock and cfg.model.amplitude
    outcome = new_trainer(cfg, tmp_path / "run").run()
    records = read_metrics(tmp_path / "run")
    assert all(math.isfinite(r["loss"]) for r in records) and records[-1]["loss"] < records[0]["loss"]
    import soundfile

    wave, rate = soundfile.read(tmp_path / "run/samples/samples-07.wav")
    assert rate == 16000 and wave.shape == (320,) and np.abs(wave).max() <= 1.0
    assert len([p for p in outcome.files if p.suffix == ".wav"]) == 10


@pytest.mark.slow
def test_the_quick_preset_beats_the_marginal_entropy_and_chance(tmp_path):
    from practice_torch.cli import main

    needs_spoken_digits()
    assert main(["train", "wavenet", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["bits_per_sample"] < metrics["marginal_bits"] - 1.0, metrics
    # the classifier hears the asked-for digit: measured 0.47 of 140 (sd 0.04) with the clock and amplitude inputs,
    # 0.24 without them; chance is 0.10
    assert metrics["class_accuracy"] > 0.3, metrics


# Judging samples by ear: the spoken-digit classifier of log-mel pictures (practice_torch.evaluation.features) ------
def _clips_as_samples(waves: torch.Tensor, labels: torch.Tensor, rate: int):
    """A stand-in model module whose 'samples' are the given clips, resampled to ``rate`` and labelled."""
    from types import SimpleNamespace

    import torchaudio

    from practice_torch.models import Artefact

    resampled = torchaudio.functional.resample(waves, 16000, rate)
    module = SimpleNamespace(sample=lambda net, config, n, generator, examples: [
        Artefact("samples", "audio", resampled[:n], sample_rate=rate, labels=labels[:n])])
    return module, SimpleNamespace(model=None, model_name="clips")


def test_samples_are_judged_through_the_classifiers_own_transform(monkeypatch):
    """feature_pictures(wave) is exactly the picture of the data set's mel view (what the classifier trained on);
    eval's audio sample metrics carry the labels the clips were drawn for into class_accuracy."""
    from practice_torch.data.audio import load_spoken_digits, mel_picture
    from practice_torch.evaluation import features as F
    from practice_torch.evaluation import samples as S

    test = needs_spoken_digits()
    mel = load_spoken_digits("test", view="mel", limit=6)
    waves = torch.stack([test[i][0][0] for i in range(6)])
    labels = torch.stack([test[i][1] for i in range(6)])
    pictures = F.feature_pictures("spoken_digits", waves)
    assert pictures.shape == (6, 1, 64, 64) and 0 <= pictures.min() and pictures.max() <= 1
    torch.testing.assert_close(pictures, torch.stack([mel_picture(mel[i][0]) for i in range(6)]), rtol=0, atol=0)
    assert F.feature_shape(DIGITS) == (1, 64, 64) and F.check_dataset("spoken_digits") is DIGITS

    torch.manual_seed(0)
    judge = F.FeatureNetwork((1, 64, 64), 10).eval()
    judge.test_accuracy = 1.0
    monkeypatch.setattr(S, "feature_network", lambda *args, **kwargs: judge)
    module, cfg = _clips_as_samples(waves, labels, 8000)
    held_out = [test[i] for i in range(6)]
    metrics = S.model_sample_metrics(module, cfg, torch.nn.Linear(1, 1), DIGITS, held_out, 6, torch.Generator(),
                                     torch.device("cpu"))
    seen = F.feature_pictures("spoken_digits", module.sample(None, None, 6, None, None)[0].data, 8000)
    predicted = judge(seen).argmax(-1)
    assert metrics["class_accuracy"] == pytest.approx((predicted == labels).float().mean().item())
    assert metrics["sample_metrics_samples"] == 6 and "fid" in metrics and "fid_inception" not in metrics
    # the samples are the held-out clips at 8 kHz, and the recordings are judged at the samples' rate: equal HNR
    assert metrics["hnr_db"] == metrics["hnr_db_real"] > 5
    other = (predicted + 1) % 10  # negative control: labels the judge never gives score 0
    module, cfg = _clips_as_samples(waves, other, 8000)
    assert S.model_sample_metrics(module, cfg, torch.nn.Linear(1, 1), DIGITS, held_out, 6, torch.Generator(),
                                  torch.device("cpu"))["class_accuracy"] == 0.0
    noisy = waves + 0.3 * torch.randn(waves.shape, generator=torch.Generator().manual_seed(0))  # hiss over the words
    module, cfg = _clips_as_samples(noisy, labels, 8000)
    noisy_metrics = S.model_sample_metrics(module, cfg, torch.nn.Linear(1, 1), DIGITS, held_out, 6,
                                           torch.Generator(), torch.device("cpu"))
    assert noisy_metrics["hnr_db"] < metrics["hnr_db"] - 5 and noisy_metrics["hnr_db_real"] == metrics["hnr_db_real"]


def test_harmonicity_reads_the_harmonics_to_noise_ratio():
    """Praat's HNR of a 150-Hz harmonic wave plus white noise at a known SNR is that SNR (within 1.5 dB: the
    correlation peak is the best over lags, a small upward bias at low SNR); frames under the silence threshold are
    left out (the same clip between half-seconds of silence reads the same), a silent clip is NaN."""
    from practice_torch.data.audio import harmonicity

    t = torch.arange(8000) / 8000
    voiced = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6))
    voiced = 0.3 * voiced / voiced.std()
    noise = torch.randn(8000, generator=torch.Generator().manual_seed(0))
    snrs = [0.0, 10.0, 20.0]
    clips = torch.stack([voiced + 0.3 * 10 ** (-snr / 20) * noise for snr in snrs])
    hnr = harmonicity(clips, 8000)
    assert np.all(np.abs(hnr - snrs) < 1.5), hnr
    padded = harmonicity(torch.cat([torch.zeros(3, 4000), clips, torch.zeros(3, 4000)], 1), 8000)
    assert np.all(np.abs(padded - snrs) < 1.5), padded  # (the frames astride the edges read a little lower)
    assert np.isnan(harmonicity(torch.zeros(1, 8000), 8000)[0])


@pytest.mark.slow
def test_the_spoken_digit_classifier_recognises_held_out_clips_at_8_khz():
    """The classifier (trained on 16 kHz log-mels, cached) names the digit of unseen speakers' clips after the trip
    through 8 kHz a WaveNet sample takes; shuffled labels score near chance (negative control)."""
    from practice_torch.evaluation import features as F
    from practice_torch.evaluation import samples as S

    test = needs_spoken_digits()
    waves = torch.stack([test[i][0][0] for i in range(len(test))])
    labels = torch.stack([test[i][1] for i in range(len(test))])
    judge = F.feature_network("spoken_digits")
    module, cfg = _clips_as_samples(waves, labels, 8000)
    held_out = [test[i] for i in range(len(test))]
    args = (len(test), torch.Generator(), torch.device("cpu"))
    metrics = S.model_sample_metrics(module, cfg, torch.nn.Linear(1, 1), DIGITS, held_out, *args)
    assert judge.test_accuracy >= 0.95 and metrics["class_accuracy"] >= 0.9, metrics
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    module, cfg = _clips_as_samples(waves, shuffled, 8000)
    assert S.model_sample_metrics(module, cfg, torch.nn.Linear(1, 1), DIGITS, held_out, *args)["class_accuracy"] < 0.3
