"""Every registered data set on small slices: shapes, dtypes, ranges, splits, labels, determinism, missing-data messages.

The built sets (shakespeare, spoken_digits, galaxies) use the cache that `make data` fills; a test that finds it
empty runs the prepare hook itself, so this file also works alone (the first time takes about a minute).
"""

import numpy as np
import pytest
import torch

from practice_torch.data import DatasetMissing, all_datasets, get_dataset, get_info, is_image_set
from practice_torch.data.splits import three_way

SPLITS = ("train", "val", "test")


def prepared(name: str) -> None:
    """Run ``name``'s prepare hook (instant once cached); skip if the machine cannot build it (offline, no espeak-ng)."""
    status = get_info(name).prepare()
    if status.startswith("NOT"):
        pytest.skip(f"{name}: {status}")


def assert_one_line_missing(name: str, *words: str, **options) -> None:
    with pytest.raises(DatasetMissing) as info:
        get_dataset(name, "train", **options)
    message = str(info.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message


def test_registry_documents_every_set():
    infos = all_datasets()
    expected = {"fashion_mnist", "mnist", "cifar10", "digits", "moons", "gaussians", "rings", "shakespeare", "names",
                "spoken_digits", "galaxies"}
    assert expected <= set(infos)
    for info in infos.values():
        assert info.shape and info.dtype and info.value_range and info.condition and info.splits and info.source


def test_is_image_set_for_default_presets():
    assert is_image_set("fashion_mnist") and is_image_set("digits") and is_image_set("galaxies")
    assert not is_image_set("moons") and not is_image_set("shakespeare") and not is_image_set("no_such_set")


def test_fashion_mnist_or_its_message():
    try:
        sizes = [len(get_dataset("fashion_mnist", split)) for split in SPLITS]
    except DatasetMissing as exc:
        assert "\n" not in str(exc) and "apt-get install dataset-fashion-mnist" in str(exc)
        return
    assert sizes == [51_000, 9_000, 10_000]
    x, y = get_dataset("fashion_mnist", "val", limit=256)[:]
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    # the IDX files are read once a process, and a split's images are its own: writing to one leaves the next as read
    x[:] = -1.0
    again, _ = get_dataset("fashion_mnist", "val", limit=256)[:]
    assert torch.equal(again, get_dataset("fashion_mnist", "val", limit=256)[:][0]) and again.min() >= 0
    from practice_torch.data import images
    first = images.read_idx.cache_info().hits
    get_dataset("fashion_mnist", "test")
    assert images.read_idx.cache_info().hits == first + 2  # the two test files, read by the first loop


def test_fashion_mnist_is_read_from_the_data_cache(tmp_path, monkeypatch):
    """A machine without the Debian package (a lent GPU) reads the IDX files from $GENERATIVE_TWINS_DATA/fashion-mnist."""
    from practice_torch.data import images

    debian = images.DEBIAN_FASHION
    if not debian.is_dir():
        pytest.skip("no Fashion-MNIST on this machine to copy")
    monkeypatch.setattr(images, "DEBIAN_FASHION", tmp_path / "absent")
    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(tmp_path / "cache"))
    assert_one_line_missing("fashion_mnist", "GENERATIVE_TWINS_DATA/fashion-mnist")  # the control: nowhere yet
    (tmp_path / "cache" / "fashion-mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "cache" / "fashion-mnist" / name).symlink_to(debian / name)
    assert len(get_dataset("fashion_mnist", "test")) == 10_000


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_torchvision_sets_say_how_to_get_them(name):
    assert_one_line_missing(name, "--data-dir")


def test_digits():
    parts = [get_dataset("digits", split) for split in SPLITS]
    assert [len(p) for p in parts] == [1258, 270, 269]
    x, y = parts[0][:]
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) == set(range(10))
    indices = [set(three_way(1797, split)) for split in SPLITS]
    assert not (indices[0] & indices[1] or indices[0] & indices[2] or indices[1] & indices[2])


def test_the_digits_read_from_scikit_learns_file_are_its_load_digits():
    from sklearn.datasets import load_digits

    from practice_torch.data.images import sklearn_digits

    images, labels = sklearn_digits()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)
    assert not np.array_equal(images.transpose(0, 2, 1), bunch.images), "rows and columns are told apart"


@pytest.mark.parametrize("name, classes", [("moons", 2), ("gaussians", 8), ("rings", 3)])
def test_toy2d(name, classes):
    x, y = get_dataset(name, "train", limit=500)[:]
    assert x.shape == (500, 2) and x.dtype == torch.float32 and x.abs().max() < 3.5
    assert set(y.tolist()) == set(range(classes)) and get_info(name).num_classes == classes
    assert torch.equal(x, get_dataset(name, "train", limit=500)[:][0])
    assert not torch.equal(x, get_dataset(name, "val", limit=500)[:][0])
    assert [len(get_dataset(name, split)) for split in SPLITS] == [20_000, 2_000, 2_000]


@pytest.mark.parametrize("name, centres, std, test_size", [
    ("ring8", np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1), 0.01, 2500),
    ("grid25", np.stack(np.meshgrid([-4, -2, 0, 2, 4], [-4, -2, 0, 2, 4], indexing="ij"), -1).reshape(-1, 2), 0.05,
     2500),
    ("gaussians25", np.stack(np.meshgrid(*[np.arange(-2, 3) * 2 / 2.828] * 2, indexing="ij"), -1).reshape(-1, 2),
     0.05 / 2.828, 2000)])
def test_the_mode_collapse_mixtures_are_the_papers(name, centres, std, test_size):
    """VEEGAN's ring and grid as PacGAN's code draws them, WGAN-GP's 25 Gaussians: each label's points about its
    centre with the papers' standard deviation; the papers' 2 500 test samples where they score on them."""
    x, y = (t.numpy() for t in get_dataset(name, "train", limit=5000)[:])
    assert get_info(name).num_classes == len(centres) and set(y.tolist()) == set(range(len(centres)))
    offsets = x - centres[y]
    assert np.abs(offsets.mean(0)).max() < 0.1 * std and abs(offsets.std() / std - 1) < 0.03
    assert len(get_dataset(name, "test")) == test_size


def test_the_swiss_roll_is_wgan_gps_and_labels_its_position_as_a_float():
    from sklearn.datasets import make_swiss_roll

    x, t = get_dataset("swissroll", "train", limit=3000)[:]
    assert x.shape == (3000, 2) and t.dtype == torch.float32 and get_info("swissroll").num_classes == 0
    radius = np.hypot(*(x.numpy() * 7.5).T)  # noise 0.25 about the spiral's radius t
    assert np.abs(radius - t.numpy()).mean() < 0.5 and 1.5 * np.pi <= t.min() and t.max() <= 4.5 * np.pi
    spiral, _ = make_swiss_roll(3000, noise=0.0, random_state=0)
    assert np.hypot(spiral[:, 0], spiral[:, 2]).max() > 13  # the same roll: the plane of coordinates 0 and 2


def test_missing_built_sets_say_run_make_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GENERATIVE_TWINS_DATA", str(tmp_path))
    for name in ("shakespeare", "spoken_digits", "galaxies"):
        assert_one_line_missing(name, "make data")
    assert_one_line_missing("galaxies", "practice_torch.data.galaxies 64", size=64)
    assert_one_line_missing("spoken_digits", "SPEECHCOMMANDS", source="speechcommands", data_dir=tmp_path)


def test_shakespeare_splits_by_work_and_predicts_the_next_character():
    prepared("shakespeare")
    parts = {split: get_dataset("shakespeare", split, block_size=64) for split in SPLITS}
    works = [set(part.works) for part in parts.values()]
    assert len(set.union(*works)) == 42 and sum(map(len, works)) == 42
    total = sum(len(part.text) for part in parts.values())
    assert all(0.03 < len(parts[split].text) / total < 0.07 for split in ("val", "test"))
    x, y = parts["train"][3]
    assert x.shape == y.shape == (64,) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[1:], y[:-1]) and torch.equal(parts["train"][4][0][0], y[-1])
    vocab = parts["train"].vocab
    assert vocab.itos == get_dataset("shakespeare", "test", limit=100).vocab.itos and len(vocab) == 85
    assert vocab.decode(x) == parts["train"].text[3 * 64: 4 * 64]
    assert vocab.encode("To be, or not\n").tolist() == [vocab.stoi[c] for c in "To be, or not\n"]
    assert vocab.encode("café~").tolist()[-2:] == [0, 0]  # unseen in train: the reserved UNK id


def test_names_are_padded_next_token_sequences():
    parts = {split: get_dataset("names", split) for split in SPLITS}
    words = [set(part.names) for part in parts.values()]
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])
    sizes = [len(part) for part in parts.values()]
    assert sum(sizes) > 5000 and abs(sizes[1] / sum(sizes) - 0.1) < 0.01
    ds = parts["val"]
    x, y = ds[0]
    assert x.shape == y.shape == (12,) and x.dtype == y.dtype == torch.int64
    name = ds.names[0]
    assert x[0] == 1 and ds.vocab.decode(x, skip_special=True) == name and ds.vocab.decode(y, skip_special=True) == name
    assert y[len(name)] == 2 and (y[len(name) + 1:] == -100).all() and (x[len(name) + 1:] == 0).all()
    assert torch.equal(x[1:len(name) + 1], y[:len(name)])


def test_spoken_digits_wave_and_speaker_split():
    prepared("spoken_digits")
    parts = {split: get_dataset("spoken_digits", split) for split in SPLITS}
    assert sum(len(part) for part in parts.values()) >= 1000 and all(len(part) for part in parts.values())
    speakers = [set(part.speakers) for part in parts.values()]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert set(parts["val"].labels) == set(range(10))
    x, y = parts["test"][7]
    assert x.shape == (1, 16000) and x.dtype == torch.float32 and x.abs().max() <= 1 and x.abs().max() > 0.1
    assert y.dtype == torch.int64 and 0 <= y < 10
    again = get_dataset("spoken_digits", "test")
    assert again.files == parts["test"].files and torch.equal(again[7][0], x)


def test_spoken_digits_mel_view_inverts_with_griffin_lim():
    from practice_torch.data.audio import log_mel, mel_to_waveform

    prepared("spoken_digits")
    mel = get_dataset("spoken_digits", "val", view="mel")
    x = torch.stack([mel[i][0] for i in range(0, len(mel), len(mel) // 4)])
    assert x.shape[1:] == (1, 64, 64) and x.min() >= -1.01 and x.max() <= 1.1
    wave = mel_to_waveform(x)
    assert wave.shape == (len(x), 1, 16000)
    back = log_mel(wave)
    for a, b in zip(x, back):
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9


def test_galaxies_images_and_conditions():
    from practice_torch.data.galaxies import RANGES, denormalise_condition, to_counts

    prepared("galaxies")
    x, y = get_dataset("galaxies", "val")[:]
    assert x.shape == (1000, 1, 32, 32) and x.dtype == y.dtype == torch.float32
    assert -1 < x.min() and x.max() < 1.2 and y.shape == (1000, 5) and y.abs().max() <= 1
    xp, physical = get_dataset("galaxies", "val", physical=True)[:]
    assert torch.equal(x, xp) and torch.allclose(denormalise_condition(y), physical, atol=1e-5)
    low, high = torch.from_numpy(RANGES).T
    assert ((physical >= low - 1e-6) & (physical <= high + 1e-6)).all()
    flux = to_counts(x).sum((1, 2, 3)) / 10 ** physical[:, 4]  # the stamp holds most of the light
    assert 0.85 < flux.median() < 1.02
    assert [len(get_dataset("galaxies", split)) for split in ("train", "test")] == [12_000, 1_000]
    assert torch.equal(get_dataset("galaxies", "test", limit=10)[:][0], get_dataset("galaxies", "test", limit=10)[:][0])
    assert not torch.equal(physical[:10], get_dataset("galaxies", "test", physical=True, limit=10)[:][1])


def test_a_mel_picture_has_low_frequencies_at_the_bottom_and_values_in_0_1():
    from practice_torch.data.audio import mel_picture

    x = torch.full((2, 1, 64, 64), -1.0)
    x[..., 0, :] = 1.0  # energy in the lowest mel bin only
    x[..., 5, 3] = 7.0  # out of range: clamped
    picture = mel_picture(x)
    assert picture.shape == x.shape and picture.min() == 0 and picture.max() == 1
    assert torch.equal(picture[..., -1, :], torch.ones(2, 1, 64)) and picture[..., -6, 3].eq(1).all()
    assert picture[..., :-1, :].sum() == 2  # only the two clamped pixels besides the bottom row
