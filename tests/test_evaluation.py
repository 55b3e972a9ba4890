"""Evaluation in PyTorch: the metrics' behaviour, negative controls the spec runner must catch, the feature
network (trained on the 8x8 digits in seconds, cached and reloaded), ``eval``'s sample metrics on a tiny run,
the standard-FID Inception path with random weights, and one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import practice_torch.evaluation as E
from practice_torch.cli import main
from practice_torch.evaluation import features as F
from practice_torch.evaluation import inception as I
from practice_torch.evaluation import metrics
from practice_torch.evaluation.samples import image_set_metrics
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {case.id: case for case in topics.spec_cases("evaluation")}
TINY = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.latent_dim=4",
        "--set", "train.batch_size=16", "--set", "train.warmup_steps=2", "--set", "train.log_every=2",
        "--set", "train.checkpoint_every=2", "--set", "train.samples=8", "--set", "model.nll_examples=16",
        "--set", "model.nll_samples=4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private data cache for the module: the digits feature network is trained once, here."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENERATIVE_TWINS_DATA", str(folder))
        yield folder


@pytest.fixture(scope="module")
def digits_net(cache):
    """Trained under torch.no_grad(), as a model's ``evaluate`` asks for a network the cache lacks."""
    with torch.no_grad():
        net, record = F.train_feature_network("digits")
    return net, record


def one_line_error(capsys, argv, message):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


# The metrics' behaviour ---------------------------------------------------------------------------------
def test_fid_of_a_shift_is_the_squared_shift_and_zero_for_the_same_set():
    x = torch.randn(500, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.1, 0.3], dtype=torch.float64)
    assert E.fid_from_features(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    assert abs(E.fid_from_features(x, x)) < 1e-9
    assert E.fid_from_features(x, 2 * x) > 0.5  # a change of covariance alone is seen


def test_inception_score_bounds_are_attained():
    rows = torch.softmax(torch.arange(10, dtype=torch.float64) / 3, -1).repeat(40, 1)
    assert float(E.inception_score(rows)) == pytest.approx(1.0, abs=1e-12)
    onehot = torch.eye(10, dtype=torch.float64)[torch.arange(40) % 10]
    assert float(E.inception_score(onehot)) == pytest.approx(10.0, rel=1e-12)
    mean, std = E.inception_score_splits(onehot, splits=4)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)


def test_split_inception_score_of_class_sorted_samples_needs_the_shuffle():
    """A class-conditional model's samples come one class after another: consecutive splits would each hold one
    class (IS 1); the split IS of a random permutation sees every class in every split (IS near 10)."""
    sorted_by_class = torch.eye(10, dtype=torch.float64).repeat_interleave(100, dim=0)
    assert E.inception_score_splits(sorted_by_class, splits=10)[0] == pytest.approx(1.0)
    mean, _ = E.inception_score_splits(sorted_by_class, splits=10, generator=torch.Generator().manual_seed(0))
    assert mean > 8.5


def test_kid_is_near_zero_for_equal_distributions_and_positive_for_different_ones():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 400, 8, generator=g, dtype=torch.float64)
    same, same_std = E.kid_subsets(a, b, subsets=20, subset_size=200, generator=g)
    apart, _ = E.kid_subsets(a, b + 0.5, subsets=20, subset_size=200, generator=g)
    assert abs(same) < 3 * same_std / math.sqrt(20) + 1e-3 and apart > 50 * abs(same)


def test_precision_and_recall_behave_and_chunking_changes_nothing(monkeypatch):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 5, dtype=torch.float64, generator=g)
    assert [float(v) for v in E.precision_recall(real, real)] == [1.0, 1.0]
    assert [float(v) for v in E.precision_recall(real, real + 100)] == [0.0, 0.0]
    p, r = E.precision_recall(real, real[:80])
    assert float(p) == 1.0 and float(r) < 1.0
    fake = torch.randn(250, 5, dtype=torch.float64, generator=g) + 1.0
    whole = E.precision_recall(real, fake)
    monkeypatch.setattr(metrics, "CHUNK", 7)
    assert E.precision_recall(real, fake) == whole and 0 < float(whole[0]) < 1 and 0 < float(whole[1]) < 1


def test_bits_per_dim_and_the_change_of_scale():
    nll = torch.tensor([0.0, 100.0], dtype=torch.float64)
    shifted = E.bits_per_dim(E.nll_on_level_scale(nll, 64), 64) - E.bits_per_dim(nll, 64)
    torch.testing.assert_close(shifted, torch.full((2,), 8.0, dtype=torch.float64))
    y = E.dequantize(torch.tensor([0.0, 255.0]), torch.tensor([0.0, 0.999]))
    assert 0 <= y.min() and y.max() < 1


# Negative controls: wrong metrics on the JAX side must be caught by the spec runner ------------------------
def _caught(case_id, name, fn):
    return caught(CASES[case_id], Perturbation(name, fn=lambda _: fn))


def test_a_frechet_distance_without_the_cross_term_is_caught(both):
    import jax.numpy as jnp

    def no_cross(mean1, cov1, mean2, cov2):
        return jnp.sum((mean1 - mean2) ** 2) + jnp.trace(cov1) + jnp.trace(cov2)

    assert "output" in _caught("evaluation/frechet_distance", "no cross term", no_cross)


def test_a_frechet_distance_with_the_commuting_shortcut_is_caught(both):
    """tr(S1^{1/2} S2^{1/2}) in place of tr((S1^{1/2} S2 S1^{1/2})^{1/2}): right only when S1 S2 = S2 S1."""
    import jax.numpy as jnp

    import theory_jax.evaluation as T

    def shortcut(mean1, cov1, mean2, cov2):
        cross = jnp.trace(T.sqrtm_psd(cov1) @ T.sqrtm_psd(cov2))
        return jnp.sum((mean1 - mean2) ** 2) + jnp.trace(cov1) + jnp.trace(cov2) - 2 * cross

    _caught("evaluation/frechet_distance", "commuting shortcut", shortcut)
    assert run_case(CASES["evaluation/frechet_distance/equal"], Perturbation("shortcut", fn=lambda _: shortcut)).passed


def test_a_biased_mmd_is_caught(both):
    import theory_jax.evaluation as T

    _caught("evaluation/mmd2_unbiased", "V-statistic", T.mmd2_biased)
    _caught("evaluation/mmd2_unbiased/equal", "V-statistic", T.mmd2_biased)


def test_a_kid_kernel_without_the_1_over_d_is_caught(both):
    import theory_jax.evaluation as T

    def kid_gamma_one(x, y):
        return T.mmd2_from_kernels((x @ x.T + 1) ** 3, (y @ y.T + 1) ** 3, (x @ y.T + 1) ** 3)

    _caught("evaluation/kid", "gamma = 1", kid_gamma_one)


def test_a_knn_radius_that_counts_the_point_itself_is_caught(both):
    import jax.numpy as jnp

    import theory_jax.evaluation as T

    def off_by_one(real, fake, k=3):
        d2 = T.squared_distances(real, fake)
        inside_real = jnp.any(d2 <= T.knn_radii(real, k - 1)[:, None], axis=0)
        inside_fake = jnp.any(d2 <= T.knn_radii(fake, k - 1)[None, :], axis=1)
        return jnp.mean(inside_real.astype(real.dtype)), jnp.mean(inside_fake.astype(real.dtype))

    _caught("evaluation/precision_recall", "k-th neighbour counting itself", off_by_one)


def test_an_inception_score_with_the_kl_reversed_is_caught(both):
    import jax.numpy as jnp

    def reversed_kl(probs):
        marginal = jnp.mean(probs, axis=0)
        return jnp.exp(jnp.mean(jnp.sum(marginal * (jnp.log(marginal) - jnp.log(probs)), axis=-1)))

    _caught("evaluation/inception_score", "KL(p(y) || p(y|x))", reversed_kl)


# The feature network ----------------------------------------------------------------------------------------
def test_the_digits_feature_network_trains_caches_and_reloads(digits_net, cache, monkeypatch):
    net, record = digits_net
    assert record["test_accuracy"] > 0.9 and record["dataset"] == "digits"
    weights, meta = F.cache_paths("digits")
    assert weights.parent == cache / "features" and json.loads(meta.read_text())["test_accuracy"] == record["test_accuracy"]

    monkeypatch.setattr(F, "train_feature_network", lambda *a, **k: pytest.fail("retrained a cached network"))
    again = F.feature_network("digits")
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(again.features(x), net.features(x))
    assert again.probabilities(x).shape == (5, 10) and again.features(x).shape == (5, 64)
    torch.testing.assert_close(again.probabilities(x).sum(-1), torch.ones(5))
    assert again.test_accuracy == record["test_accuracy"] and not again.training
    with pytest.raises(ValueError, match=r"images of shape \(1, 8, 8\)"):
        again.features(torch.rand(2, 1, 28, 28))


def test_a_cache_from_another_configuration_is_retrained(digits_net, monkeypatch, capsys):
    """FIDs are comparable only under one feature network: a cached net of another configuration is replaced."""
    _, meta = F.cache_paths("digits")
    good = meta.read_text()
    record = json.loads(good)
    try:
        meta.write_text(json.dumps({**record, "config": {**record["config"], "epochs": record["config"]["epochs"] + 1}}))
        calls = []
        monkeypatch.setattr(F, "train_feature_network", lambda name, *a, **k: calls.append(k["notice"]) or digits_net)
        F.feature_network("digits")
        assert len(calls) == 1 and "another configuration" in calls[0]
    finally:
        meta.write_text(good)
    calls.clear()
    F.feature_network("digits")
    assert calls == []


def test_a_corrupt_cache_is_one_line(digits_net, capsys):
    _, meta = F.cache_paths("digits")
    good = meta.read_text()
    try:
        meta.write_text("{not json")
        one_line_error(capsys, ["features", "digits"], "is corrupt: retrain it with")
    finally:
        meta.write_text(good)


def test_the_features_command_and_its_one_line_errors(digits_net, capsys):
    assert main(["features", "digits", "--device", "cpu"]) == 0
    assert f"test accuracy {100 * digits_net[1]['test_accuracy']:.2f}%" in capsys.readouterr().out
    one_line_error(capsys, ["features", "nope"], "unknown data set 'nope'")
    one_line_error(capsys, ["features", "moons"], "feature networks are for image data sets and the audio sets "
                                                "spoken_digits; moons is 2-D data")
    one_line_error(capsys, ["features", "galaxies"], "galaxies has no class labels")
    one_line_error(capsys, ["features", "mnist"], "mnist loads through torchvision: pass --data-dir")


def test_sample_metrics_rank_real_above_blurred_and_noise(digits_net):
    import torchvision.transforms.functional as TF

    from practice_torch.data import get_dataset

    net, _ = digits_net
    test = get_dataset("digits", "test")[:][0]
    half_a, half_b = test[:134], test[134:268]
    noise = torch.rand(134, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    itself, real, blurred, random = (image_set_metrics(half_a, other, net)
                                     for other in (half_a, half_b, TF.gaussian_blur(half_b, 5, 1.0), noise))
    assert abs(itself["fid"]) < 1e-4 and itself["precision"] == itself["recall"] == 1.0 and itself["kid"] < 0
    for worse in (blurred, random):
        assert real["fid"] < worse["fid"] and real["kid"] < worse["kid"]
        assert real["precision"] > worse["precision"] and real["recall"] > worse["recall"]
        assert real["inception_score"] > worse["inception_score"]


# eval of a tiny run: the sample metrics, the standard FID with a random Inception, one-line errors -------------
@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_net):
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "vae", "--steps", "4", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    torch.save(I.fid_inception_v3(init_weights=True).state_dict(), folder / "pt_inception-2015-12-05-random.pth")
    return folder


def test_eval_reports_sample_metrics_and_the_standard_fid_with_weights(run, random_inception, capsys):
    assert main(["eval", str(run), "--samples", "4", "--data-dir", str(random_inception)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["sample_metrics_samples"] == 4 and metrics["sample_metrics_held_out"] == 4
    assert metrics["fid"] > 0 and 1 <= metrics["inception_score"] <= 10 and 0 <= metrics["precision"] <= 1
    assert "pytorch-fid" in metrics["inception_weights"] and metrics["fid_inception"] > 0
    assert "nll_bits_per_dim" in metrics and "fid_inception" in out and "recall" in out


def test_eval_without_weights_says_so_in_one_line_and_can_skip_sample_metrics(run, capsys):
    assert main(["eval", str(run), "--samples", "8"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "standard FID skipped" in line]
    assert len(notes) == 1 and "no --data-dir given" in notes[0]
    assert "fid_inception" not in json.loads((run / "eval_test.json").read_text())
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    assert "fid" not in json.loads((run / "eval_test.json").read_text())
    one_line_error(capsys, ["eval", str(run), "--inception", str(run / "missing.pth")], "no such file")
    one_line_error(capsys, ["eval", str(run), "--samples", "1"], "--samples must be at least 2")


def test_sample_metrics_skip_what_they_cannot_measure_with_one_line(capsys):
    from types import SimpleNamespace

    from practice_torch.data import get_info
    from practice_torch.evaluation.samples import model_sample_metrics
    from practice_torch.models import Artefact

    text_model = SimpleNamespace(sample=lambda net, config, n, generator, examples: [Artefact("samples", "text", ["a"])])
    cfg = SimpleNamespace(model=None, model_name="talker")
    net = torch.nn.Linear(1, 1)
    args = (None, torch.Generator(), torch.device("cpu"))
    held_out = [(torch.zeros(1, 8, 8), 0)] * 4
    assert model_sample_metrics(text_model, cfg, net, get_info("digits"), held_out, *args) == {}
    assert capsys.readouterr().err == "sample metrics skipped: the samples of talker are not digits images (1, 8, 8)\n"
    assert model_sample_metrics(text_model, cfg, net, get_info("galaxies"), held_out, *args) == {}
    assert capsys.readouterr().err == "sample metrics skipped: a feature network is a classifier and galaxies has no " \
                                      "class labels\n"
    assert model_sample_metrics(text_model, cfg, net, get_info("moons"), held_out, *args) == {}  # not images: silence
    assert capsys.readouterr().err == ""


def test_the_inception_network_reads_both_weight_layouts_and_refuses_others(random_inception, tmp_path):
    path = I.find_inception_weights(random_inception)
    assert path is not None and path.name.startswith("pt_inception") and I.find_inception_weights(tmp_path) is None
    fid_net = I.load_inception(path)
    x = torch.rand(2, 1, 8, 8)
    assert fid_net.features(x).shape == (2, 2048)
    torch.manual_seed(0)
    torchvision_net = I.tv.Inception3(num_classes=1000, aux_logits=True, init_weights=False)
    torch.save(torchvision_net.state_dict(), tmp_path / "inception_v3_google-test.pth")
    assert I.find_inception_weights(tmp_path).name == "inception_v3_google-test.pth"
    assert "torchvision" in I.load_inception(tmp_path / "inception_v3_google-test.pth").source
    # the FID blocks pool as TensorFlow did: leaving out the padding changes the A block's output
    block, patched = I.tv.InceptionA(192, 32), I.FIDInceptionA(192, 32)
    patched.load_state_dict(block.state_dict())
    h = torch.rand(1, 192, 5, 5)
    assert not torch.allclose(block(h), patched(h))
    (tmp_path / "pt_inception-2015-12-05-bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(F.FeatureNetworkError, match="holds no Inception-v3 state_dict"):
        I.load_inception(tmp_path / "pt_inception-2015-12-05-bad.pth")


def test_metrics_functions_share_names_with_the_derivation():
    import theory_jax.evaluation as T

    for case in CASES.values():
        assert hasattr(T, case.fn) and hasattr(E, case.fn), case.fn
    assert np.isclose(float(E.bits_per_dim(torch.tensor(math.log(2) * 64), 64)), 1.0)


def test_a_model_with_a_slow_sampler_sets_evals_default_sample_count(capsys):
    """EVAL_SAMPLES of a model module caps eval's default number of samples (autoregressive samplers are slow)."""
    from types import SimpleNamespace

    from practice_torch.data import get_info
    from practice_torch.evaluation.samples import model_sample_metrics
    from practice_torch.models import Artefact

    asked = []

    def sample(net, config, n, generator, examples):
        asked.append(n)
        return [Artefact("samples", "text", ["a"])]

    cfg, net = SimpleNamespace(model=None, model_name="slow"), torch.nn.Linear(1, 1)
    held_out = [(torch.zeros(1, 8, 8), 0)] * 10
    for module, expected in [(SimpleNamespace(sample=sample, EVAL_SAMPLES=3), 3), (SimpleNamespace(sample=sample), 10)]:
        model_sample_metrics(module, cfg, net, get_info("digits"), held_out, None, torch.Generator(), torch.device("cpu"))
        assert asked.pop() == expected
    capsys.readouterr()


def test_the_mutual_information_gap_rewards_one_latent_per_factor_and_nothing_else():
    from practice_torch.evaluation.disentanglement import mutual_information_gap

    rng = np.random.default_rng(0)
    factors = rng.uniform(size=(2000, 3))
    noise = rng.standard_normal((2000, 2))
    aligned = mutual_information_gap(np.c_[factors[:, [2, 0, 1]], noise], factors)
    assert aligned["mig"] > 0.9 and list(aligned["best"]) == [1, 2, 0]
    squashed = mutual_information_gap(np.c_[np.tanh(3 * factors[:, [2, 0, 1]]), noise], factors)
    assert squashed["mig"] == pytest.approx(aligned["mig"])  # equal-count bins: monotone maps change nothing
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    assert mutual_information_gap(np.c_[factors @ rotation, noise], factors)["mig"] < 0.3  # each factor spread
    assert mutual_information_gap(np.c_[factors, factors], factors)["mig"] < 0.01  # each factor in two latents
    assert mutual_information_gap(rng.permutation(np.c_[factors, noise]), factors)["mig"] < 0.05  # unrelated
    with pytest.raises(ValueError, match="codes"):
        mutual_information_gap(factors[:, :1], factors)


def test_equal_count_bins_put_tied_values_in_one_bin():
    from practice_torch.evaluation.disentanglement import equal_count_bins

    rng = np.random.default_rng(0)
    tied = rng.permutation(np.repeat([0.0, 1.0, 2.0], [5, 10, 5]))  # by rank alone, 2 bins of 10 split the 1s
    values = np.c_[tied, rng.permutation(20).astype(float)]
    found = equal_count_bins(values, 2)
    assert all(len(np.unique(found[tied == v, 0])) == 1 for v in (0.0, 1.0, 2.0))
    assert np.all(np.diff(found[np.argsort(tied), 0]) >= 0)  # the bins follow the values
    assert np.bincount(found[:, 1]).tolist() == [10, 10]  # distinct values: equal counts
    assert np.array_equal(equal_count_bins(values**3 - 5, 2), found)  # a monotone map changes nothing


def test_the_mutual_information_gap_of_a_discrete_factor_carried_by_one_latent_is_near_one():
    from practice_torch.evaluation.disentanglement import mutual_information_gap

    rng = np.random.default_rng(1)
    shape = rng.permutation(np.repeat([0.0, 1.0, 2.0], [180, 240, 180]))  # dSprites-like: 3 values, 20 bins of 30
    codes = np.c_[rng.standard_normal(600), shape + 0.1 * rng.standard_normal(600)]
    score = mutual_information_gap(codes, np.c_[shape, rng.uniform(size=600)])
    assert score["best"][0] == 1 and score["gaps"][0] > 0.9  # splitting the ties by sort order loses most of it


def test_the_probe_reads_what_a_representation_makes_linear_and_the_pixels_do_not():
    """Labels that are the sign of a product of two pixels: no linear probe of the pixels reads them (about chance);
    a representation holding the product makes them linear. Both figures come from the same probe."""
    from practice_torch.evaluation.probe import probe_against_pixels

    x = torch.randn(1200, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0, 0, 0] * x[:, 0, 0, 1] > 0).long()
    train, test = (x[:800], y[:800]), (x[800:], y[800:])
    read = probe_against_pixels(lambda v: v[:, 0, 0, :1] * v[:, 0, 0, 1:], train, test, torch.device("cpu"))
    assert read["probe_accuracy"] > 0.97 and read["probe_accuracy_inputs"] < 0.6 and read["probe_examples"] == 800
    blind = probe_against_pixels(lambda v: v[:, 0, 1, :], train, test, torch.device("cpu"))  # pixels the label skips
    assert blind["probe_accuracy"] < 0.6
