"""StyleGAN2's torch side: the grouped modulated convolution against its definition, demodulation, style mixing's
cut-offs, the synthesis network's use of every w, truncation, the minibatch standard deviation's groups, the lazy
regularisers counted in Adam steps with their ratio, w_avg and pl_mean moved by the step, the CLI on tiny runs
(train, sample with truncation, eval) and one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from adversarial import adam_steps

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import apply_overrides
from practice_torch.models import get_model, new_trainer
from practice_torch.stylegan import functions as F
from practice_torch.stylegan import training as T
from practice_torch.stylegan.networks import Generator, StyleGAN

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DIGITS = get_info("digits")
TINY = {"z_dim": 8, "w_dim": 8, "channels": (8, 8, 8), "base": 2}  # 2 -> 4 -> 8: digits' side
TINY_CLI = ["--device", "cpu", "--set", "model.z_dim=8", "--set", "model.w_dim=8", "--set", "model.channels=8,8,4",
            "--set", "train.batch_size=8", "--set", "train.samples=16", "--set", "train.log_every=1",
            "--set", "data.limit=64", "--set", "model.ppl_samples=16"]


def tiny_net(**kw) -> StyleGAN:
    torch.manual_seed(0)
    return T.build(T.Config(**{**TINY, **kw}), DIGITS)


def double(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# The math ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("demodulate", [True, False])
def test_the_grouped_modulated_convolution_is_each_examples_own_convolution(demodulate):
    x, weight, styles = double(3, 4, 5, 5), double(6, 4, 3, 3, seed=1), double(3, 4, seed=2)
    grouped = F.modulated_conv2d(x, weight, styles, demodulate)
    torch.testing.assert_close(grouped, F.modulated_conv2d_per_example(x, weight, styles, demodulate),
                               rtol=1e-12, atol=1e-12)
    by_hand = torch.nn.functional.conv2d(x[1:2], F.modulate(weight, styles)[1], padding=1)  # eq. 1, one example
    assert torch.allclose(grouped[1:2], by_hand) != demodulate  # demodulation changes it, its absence does not


def test_demodulation_gives_each_output_channel_unit_norm_and_undoes_a_style_scale():
    weight, styles = double(6, 4, 3, 3), double(2, 4, seed=1)
    demodulated = F.demodulate(F.modulate(weight, styles), eps=0.0)
    torch.testing.assert_close(demodulated.pow(2).sum((2, 3, 4)), torch.ones(2, 6, dtype=torch.float64))
    x = double(2, 4, 5, 5, seed=2)
    torch.testing.assert_close(F.modulated_conv2d(x, weight, 10 * styles, eps=0.0),
                               F.modulated_conv2d(x, weight, styles, eps=0.0))  # eq. 3 divides the scale out
    assert not torch.allclose(F.modulated_conv2d(x, weight, 10 * styles, demodulate=False),
                              F.modulated_conv2d(x, weight, styles, demodulate=False))


def test_mixing_takes_w1_before_the_cutoff_and_w2_from_it():
    w1, w2 = torch.zeros(4, 3), torch.ones(4, 3)
    ws = F.mixing_ws(w1, w2, torch.tensor([1, 3, 6, 5]), num_ws=6)
    assert ws.shape == (4, 6, 3)
    assert ws[:, :, 0].tolist() == [[0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0] * 6, [0, 0, 0, 0, 0, 1]]


def test_truncation_shrinks_toward_the_mean_style_and_w_avg_is_a_moving_average():
    w, w_avg = double(5, 3), double(3, seed=1)
    shrunk = F.truncate(w, w_avg, 0.7)
    torch.testing.assert_close((shrunk - w_avg).norm(dim=1), 0.7 * (w - w_avg).norm(dim=1))
    torch.testing.assert_close(F.truncate(w, w_avg, 0.0), w_avg.expand(5, 3))
    torch.testing.assert_close(F.update_w_avg(w_avg, w, beta=0.9), 0.9 * w_avg + 0.1 * w.mean(0))


def test_the_path_length_penalty_pulls_toward_a_running_mean_it_moves():
    grads = double(4, 6, 3)
    lengths = F.path_lengths(grads)
    torch.testing.assert_close(lengths, torch.sqrt((grads**2).sum(2).mean(1)))
    penalty, new_mean = F.path_length_penalty(lengths, torch.tensor(1.0, dtype=torch.float64), decay=0.1)
    torch.testing.assert_close(new_mean, 1.0 + 0.1 * (lengths.mean() - 1.0))
    torch.testing.assert_close(penalty, ((lengths - new_mean) ** 2).mean())


def test_lazy_adam_keeps_the_settings_of_an_unregularised_player_and_scales_a_lazy_ones():
    assert F.lazy_adam(0.002, (0.0, 0.99), 0) == (0.002, (0.0, 0.99)) == F.lazy_adam(0.002, (0.0, 0.99), 1)
    lr, (b1, b2) = F.lazy_adam(0.002, (0.5, 0.99), 16)
    assert math.isclose(lr, 0.002 * 16 / 17) and math.isclose(b1, 0.5 ** (16 / 17)) and math.isclose(b2, 0.99 ** (16 / 17))


def test_the_minibatch_stddev_groups_example_n_with_those_n_mod_b_over_g_apart():
    x = double(8, 2, 3, 3)
    out = F.minibatch_stddev(x, group_size=4)
    group = x[[1, 3, 5, 7]]  # B / G = 2: example 3 is in group 3 mod 2 = 1
    expected = torch.sqrt(group.var(0, correction=0) + 1e-8).mean()
    assert out.shape == (8, 3, 3, 3)
    torch.testing.assert_close(out[3, 2], expected.expand(3, 3))
    assert F.minibatch_stddev(x[:6]).shape == (6, 3, 3, 3)  # 6 examples: groups of 3


# The networks ------------------------------------------------------------------------------------------------------
def test_every_w_reaches_the_image_and_the_noise_inputs_match_the_layers():
    torch.manual_seed(0)
    g = Generator(8, 8, 2, (1, 8, 8), (8, 8, 8), base=2).double()
    noises = [double(*s, seed=i) for i, s in enumerate(g.synthesis.noise_shapes(3))]
    assert g.num_ws == 6 and [s[-1] for s in g.synthesis.noise_shapes(3)] == [2, 4, 4, 8, 8]
    ws = g.ws(double(3, 8))
    image = g.synthesis(ws, noises)
    assert image.shape == (3, 1, 8, 8)
    for layer in range(6):
        moved = ws.clone()
        moved[:, layer] += 1.0
        assert not torch.allclose(g.synthesis(moved, noises), image), f"ws[:, {layer}] is not used"
    with torch.no_grad():
        for layer in g.synthesis.layers:
            layer.noise_strength.fill_(0.5)
    assert not torch.allclose(g.synthesis(ws, [n + 1 for n in noises]), g.synthesis(ws, noises))


def test_psi_zero_draws_the_mean_style_and_mixing_with_the_same_z_changes_nothing():
    net = tiny_net().double()
    g, z = net.generator, double(4, 8)
    with torch.no_grad():
        g.mapping.w_avg.copy_(double(8, seed=3))
    noises = [torch.zeros(s, dtype=torch.float64) for s in g.synthesis.noise_shapes(4)]
    at_mean = g(z, noises, psi=0.0)
    torch.testing.assert_close(at_mean, at_mean[:1].expand(4, -1, -1, -1))  # every z draws the mean style's image
    torch.testing.assert_close(g(z, noises, z2=z, cutoff=torch.tensor([1, 2, 3, 4])), g(z, noises))
    assert not torch.allclose(g(z, noises, z2=double(4, 8, seed=5), cutoff=torch.tensor([1, 2, 3, 4])), g(z, noises))


def test_the_discriminator_gives_one_logit_per_image_and_the_players_share_no_parameter():
    net = tiny_net()
    assert net.logit(torch.rand(8, 1, 8, 8)).shape == (8,)
    players = T.players(net, T.Config(**TINY))
    d, g = ({id(p) for p in players[name].parameters} for name in ("discriminator", "generator"))
    assert not d & g and len(d) + len(g) == len(list(net.parameters()))
    assert players["discriminator"].lr == pytest.approx(0.0025 * 16 / 17)
    assert players["generator"].betas == pytest.approx((0.0, 0.99 ** 0.8))


def test_draw_noise_mixes_at_the_asked_rate_with_cutoffs_below_num_ws():
    net = tiny_net()
    draw = T.draw_noise(net, T.Config(**TINY), 4000, torch.Generator().manual_seed(0))
    cut = draw["cutoff"]
    assert ((cut >= 1) & (cut <= 6)).all() and set(cut[cut < 6].tolist()) == {1, 2, 3, 4, 5}
    assert abs(float((cut == 6).double().mean()) - 0.1) < 0.02  # mixing_prob 0.9
    none = T.draw_noise(net, T.Config(**TINY, mixing_prob=0.0), 50, torch.Generator().manual_seed(0))["cutoff"]
    assert (none == 6).all()
    assert [draw[f"noise_{i}"].shape[1:] for i in range(5)] == [s[1:] for s in net.generator.synthesis.noise_shapes(1)]
    assert draw["pl_y"].shape == (4000, 1, 8, 8)


# The step ----------------------------------------------------------------------------------------------------------
def tiny_trainer(run_dir, *overrides):
    cfg = apply_overrides(get_model("stylegan").default_config("quick", "digits"), [
        "model.z_dim=8", "model.w_dim=8", "model.channels=8,8,8", "model.base=2", "train.batch_size=8",
        "train.samples=4", "train.device=cpu", "data.limit=64", "train.log_every=1", *overrides])
    return new_trainer(cfg, run_dir)


class RecordingRun:
    """A stand-in for the engine's ``StepRun`` that takes no step: it hands out fixed random batches and noise and
    records which players each update named, so that a step's bookkeeping can be read exactly."""

    def __init__(self, net, config, batch=8, seed=0):
        self.net, self.config, self.batch, self.updates = net, config, batch, []
        self.generator = torch.Generator().manual_seed(seed)
        self.noises = []

    def next_batch(self):
        return (torch.rand(self.batch, 1, 8, 8, generator=self.generator), torch.zeros(self.batch)), self.next_noise()

    def next_noise(self):
        self.noises.append(T.draw_noise(self.net, self.config, self.batch, self.generator))
        return self.noises[-1]

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def update(self, **losses):
        assert all(loss.requires_grad for loss in losses.values())
        self.updates.append(sorted(losses))


def test_a_step_counts_its_lazy_regularisers_and_moves_pl_mean_and_w_avg_only_as_due():
    config = T.Config(**TINY, r1_interval=3, pl_interval=2)
    net = tiny_net(r1_interval=3, pl_interval=2)
    run, pl_means, w_avgs = RecordingRun(net, config), [], []
    for step in range(7):
        _, terms = T.train_step(net, config, step, run)
        pl_means.append(float(net.pl_mean))
        w_avgs.append(net.generator.mapping.w_avg.clone())
        assert (float(terms["r1_penalty"]) > 0) == (step % 3 == 0) and (float(terms["path_length"]) > 0) == (step % 2 == 0)
    assert [names for names in run.updates if names == ["discriminator"]].__len__() == 7 + 3  # R1 at 0, 3, 6
    assert [names for names in run.updates if names == ["generator"]].__len__() == 7 + 4  # the path length at 0, 2, 4, 6
    assert [pl_means[s] != pl_means[s - 1] for s in range(1, 7)] == [s % 2 == 0 for s in range(1, 7)]
    generator_noise = run.noises[1]  # step 0: the discriminator's batch, then the generator's fresh noise
    torch.testing.assert_close(w_avgs[0], F.update_w_avg(torch.zeros(8), net.generator.mapping(generator_noise["z"]),
                                                         T.W_AVG_BETA))


def test_every_player_takes_one_extra_adam_step_per_regularisation_in_a_real_run(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", "model.r1_interval=3", "model.pl_interval=2")
    trainer.run(stop_at=7)
    assert adam_steps(trainer.optimizers["discriminator"]) == {7 + 3}  # every parameter, the last bias too
    assert adam_steps(trainer.optimizers["generator"]) == {7 + 4}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["r1_penalty"] > 0 for row in rows] == [s % 3 == 0 for s in range(7)]
    assert rows[-1]["pl_mean"] > 0 and rows[-1]["lr_discriminator"] == pytest.approx(0.0025 * 3 / 4)


def test_no_regulariser_when_its_weight_is_zero_and_unregularised_players_keep_their_adam(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", "model.r1_gamma=0", "model.pl_weight=0")
    trainer.run(stop_at=4)
    assert adam_steps(trainer.optimizers["discriminator"]) == {4} and adam_steps(trainer.optimizers["generator"]) == {4}
    assert float(trainer.net.pl_mean) == 0.0
    assert trainer.optimizers["generator"].param_groups[0]["betas"] == (0.0, 0.99)


# The command line --------------------------------------------------------------------------------------------------
def test_cli_trains_fashion_mnist_samples_with_truncation_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "stylegan", "--dataset", "fashion_mnist", "--steps", "4", "--out", str(run),
                 "--set", "train.ema_decay=0.5", "--set", "model.base=7", *TINY_CLI]) == 0
    assert {p.name for p in (run / "samples").iterdir()} == {"samples.png", "style_mixing.png", "truncation_sweep.png"}
    assert main(["sample", str(run), "--n", "9", "--set", "model.truncation=0.7"]) == 0
    assert (run / "samples-1" / "truncation_sweep.png").is_file()
    _, cfg, net = open_run(run)
    artefacts = T.sample(net, cfg.model, 9, torch.Generator().manual_seed(0))
    assert [a.name for a in artefacts] == ["samples", "style_mixing", "truncation_sweep"]
    assert [tuple(a.data.shape) for a in artefacts] == [(9, 1, 28, 28), (36, 1, 28, 28), (36, 1, 28, 28)]
    assert all(0 <= float(a.data.min()) <= float(a.data.max()) <= 1 for a in artefacts)
    assert main(["eval", str(run), "--samples", "40"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert {"fid", "fid_samples", "fid_untrained", "ppl_w", "ppl_z", "precision_psi_0.5", "recall_psi_1"} <= set(metrics)
    assert metrics["ppl_pairs"] == 16 and metrics["ppl_w"] > 0 and metrics["ppl_z"] > 0
    assert metrics["reference_examples"] == 40 and metrics["discriminator_loss"] > 0
    capsys.readouterr()


def test_sample_and_eval_read_the_ema_weights(tmp_path, capsys):
    from practice_torch.engine.checkpoint import load_checkpoint
    from practice_torch.engine.runs import CHECKPOINTS

    run = tmp_path / "run"
    assert main(["train", "stylegan", "--dataset", "digits", "--steps", "3", "--out", str(run),
                 "--set", "model.base=2", "--set", "train.ema_decay=0.5", *TINY_CLI]) == 0
    raw, state = load_checkpoint(run / CHECKPOINTS, "stylegan")
    _, _, net = open_run(run)
    name = "generator.synthesis.layers.0.weight"
    torch.testing.assert_close(net.state_dict()[name], state["ema"]["shadow"][name])
    assert not torch.equal(net.state_dict()[name], raw[name])
    torch.testing.assert_close(net.state_dict()["generator.mapping.w_avg"], raw["generator.mapping.w_avg"])
    capsys.readouterr()


def open_run(run):
    from practice_torch.models import open_run as opened

    return opened(run, torch.device("cpu"))


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.base=3"], "base * 2^(len(channels) - 1) = 3 * 2^2 = 12; the images are (1, 8, 8)"),
    (["--set", "model.mixing_prob=1.5"], "model.mixing_prob must be in [0, 1], got 1.5"),
    (["--set", "model.betas=0.5"], "model.betas are Adam's two betas"),
    (["--set", "model.pl_decay=2"], "model.pl_decay is the running mean's rate, in (0, 1]; got 2.0"),
    (["--dataset", "gaussians"], "stylegan has no quick preset for data set 'gaussians'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "stylegan", "--dataset", "digits", "--steps", "2", "--out", str(tmp_path / "run"),
                 "--set", "model.base=2", *TINY_CLI, *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_build_refuses_data_that_are_not_images_in_one_line():
    with pytest.raises(ValueError, match="^StyleGAN draws images; gaussians is 2-D data$"):
        T.build(T.Config(), get_info("gaussians"))


def test_ppl_helpers_interpolate_on_the_sphere_and_drop_the_extreme_percentiles():
    a, b = double(5, 4), double(5, 4, seed=1)
    unit = a / a.norm(dim=1, keepdim=True)
    torch.testing.assert_close(T.slerp(a, b, torch.zeros(5, 1, dtype=torch.float64)), unit)
    torch.testing.assert_close(T.slerp(a, b, torch.ones(5, 1, dtype=torch.float64)), b / b.norm(dim=1, keepdim=True))
    mid = T.slerp(a, b, torch.full((5, 1), 0.5, dtype=torch.float64))
    torch.testing.assert_close((mid * unit).sum(1), (mid * b / b.norm(dim=1, keepdim=True)).sum(1))  # equal angles
    distances = np.concatenate([np.ones(990), np.full(5, 1e6), np.full(5, -1e6)])
    assert T.trimmed_mean(distances) == 1.0 and np.mean(distances) == pytest.approx(0.99)  # both tails dropped
    assert T.trimmed_mean(np.concatenate([np.ones(990), np.arange(10.0) + 2])) > 1.0  # not more than 1% a side
