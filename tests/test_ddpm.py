"""DDPM: the schedule object and respacing, the samplers on Gaussian data with the exact noise predictor, the loss,
label dropout and classifier-free guidance, samples and the NLL bound, training through the engine (U-Net on digits,
MLP on moons, exact resume, the CLI with another sampler), bad input; and wrong formulas caught by the spec runner.
The quick preset on Fashion-MNIST is a slow test."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from practice_torch import ddpm, models
from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.ddpm import training as ddpm_training
from practice_torch.diffusion.restoration import inpainting_mask
from practice_torch.engine.config import ConfigError, apply_overrides
from practice_torch.engine.metrics import read_metrics
from practice_torch.models import new_trainer
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

CASES = {c.id: c for c in topics.spec_cases("ddpm")}
DIGITS, MOONS = get_info("digits"), get_info("moons")
TINY_UNET = ["model.channels=8", "model.channel_mults=1,2", "model.attention_levels=1", "model.T=50"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_net(conditional=False, **kw) -> ddpm.Diffusion:
    torch.manual_seed(0)
    cfg = ddpm_training.Config(channels=8, channel_mults=(1, 2), attention_levels=(1,), T=50, sample_steps=10,
                      conditional=conditional, **kw)
    return ddpm_training.build(cfg, DIGITS)


# The schedule shared by training and sampling ---------------------------------------------------------------
def test_schedules_and_respacing_keep_the_marginals():
    full = ddpm.Schedule.make("cosine", 1000)
    assert len(full) == 1000 and full.betas.dtype == torch.float64 and torch.equal(full.timesteps, torch.arange(1000))
    assert full.alpha_bars_prev[0] == 1 and torch.equal(full.alpha_bars_prev[1:], full.alpha_bars[:-1])
    for steps in (1, 10, 50, 999, 1000):
        short = full.respace(steps)
        assert len(short) == steps and short.timesteps[-1] == 999 and (steps == 1 or short.timesteps[0] == 0)
        assert torch.all(torch.diff(short.timesteps) > 0)
        torch.testing.assert_close(short.alpha_bars, full.alpha_bars[short.timesteps], rtol=0, atol=0)
        torch.testing.assert_close(torch.cumprod(1 - short.betas, 0), short.alpha_bars, rtol=1e-10, atol=1e-15)
    twice = full.respace(100).respace(10)
    assert set(twice.timesteps.tolist()) <= set(full.respace(100).timesteps.tolist())
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        ddpm.Schedule.make("quadratic", 10)
    with pytest.raises(ValueError, match="respace to 1..1000 steps"):
        full.respace(1001)


# The samplers reach the data distribution with the exact noise predictor (1-D Gaussian data) -----------------------
MU, S = 0.7, 0.4


def exact_eps(schedule):
    """E[eps | x_t] for x_0 ~ N(MU, S^2): sqrt(1 - a) (x_t - sqrt(a) MU) / (a S^2 + 1 - a)."""
    a = schedule.alpha_bars.float()

    def eps_fn(x, t):
        a_t = a[t][:, None]
        return torch.sqrt(1 - a_t) * (x - torch.sqrt(a_t) * MU) / (a_t * S**2 + 1 - a_t)
    return eps_fn


@pytest.mark.parametrize("sampler,steps,eta,std_range", [
    ("ddpm", 1000, 0.0, (0.38, 0.42)), ("ddim", 50, 0.0, (0.37, 0.43)), ("ddim", 200, 1.0, (0.36, 0.42)),
    # with few steps the posterior variance beta-tilde misses coef_x0^2 Var[x_0|x_t]: the samples are under-dispersed
    ("ddpm", 100, 0.0, (0.34, 0.395))])
def test_the_samplers_draw_the_data_distribution_from_the_exact_noise_predictor(sampler, steps, eta, std_range):
    if sampler == "ddim":
        pytest.importorskip("practice_torch.ddim")
    full = ddpm.Schedule.make("linear", 1000)
    schedule = full.respace(steps)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(3000, 1, generator=gen)
    x0 = ddpm.sample_loop(exact_eps(full), schedule, x_T, sampler=sampler, eta=eta, generator=gen, progress=False)
    se = S / math.sqrt(len(x0))
    assert abs(x0.mean().item() - MU) < 5 * se, x0.mean()
    assert std_range[0] < x0.std().item() < std_range[1], x0.std()


def test_a_deterministic_ddim_chain_repeats_and_the_callback_sees_every_step():
    pytest.importorskip("practice_torch.ddim")
    full = ddpm.Schedule.make("cosine", 200)
    seen = []
    x_T = torch.randn(5, 1)
    a = ddpm.sample_loop(exact_eps(full), full.respace(10), x_T, sampler="ddim", progress=False,
                         generator=torch.Generator().manual_seed(0), callback=lambda t, x: seen.append(t))
    b = ddpm.sample_loop(exact_eps(full), full.respace(10), x_T, sampler="ddim", progress=False,
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and seen == full.respace(10).timesteps.flip(0).tolist()
    with pytest.raises(ValueError, match="sampler must be one of ddpm, ddim"):
        ddpm.sample_loop(exact_eps(full), full, x_T, sampler="euler")


def test_clipping_the_predicted_x0_is_a_change_of_eps():
    a = torch.tensor([0.3, 0.9])
    x_t, eps = torch.randn(2, 4) * 3, torch.randn(2, 4)
    clipped = ddpm.clipped_eps(x_t, eps, a, 1.0)
    x0 = ddpm.predict_x0(x_t, a, clipped)
    torch.testing.assert_close(x0, ddpm.predict_x0(x_t, a, eps).clamp(-1, 1))


# Loss, noise, labels, guidance ---------------------------------------------------------------------------------
def test_the_loss_is_l_simple_with_the_drawn_noise_and_label_dropout():
    net = tiny_net(conditional=True, label_dropout=0.5)
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    half = ddpm_training.Config(label_dropout=0.5)  # the step reads the dropout from its config
    noise = ddpm_training.draw_noise(net, half, 16, torch.Generator().manual_seed(0))
    assert noise["t"].shape == (16,) and noise["eps"].shape == (16, 1, 8, 8) and noise["drop"].dtype == torch.bool
    assert 0 < noise["drop"].sum() < 16
    again = ddpm_training.draw_noise(net, half, 16, torch.Generator().manual_seed(0))
    assert all(torch.equal(noise[k], again[k]) for k in noise)
    loss, _ = ddpm_training.loss(net, ddpm_training.Config(), (x, y), noise, 0)
    a = net.schedule.alpha_bars.float()[noise["t"]][:, None, None, None]
    x_t = a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * noise["eps"]
    labels = torch.where(noise["drop"], torch.full_like(y, 10), y)
    expected = ((net.denoiser(x_t, noise["t"], labels) - noise["eps"]) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    unconditional = tiny_net()
    assert "drop" not in ddpm_training.draw_noise(unconditional, ddpm_training.Config(), 4, torch.Generator())


def test_classifier_free_guidance_combines_the_conditional_and_null_predictions():
    pytest.importorskip("practice_torch.guidance")
    net = tiny_net(conditional=True).eval()
    for p in net.parameters():  # the zero-initialised output layer would make every eps 0
        torch.nn.init.normal_(p, std=0.1)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([3, 20, 49]), torch.tensor([1, 5, 9])
    with torch.no_grad():
        cond, null = net(x, t, y), net(x, t, torch.full_like(y, 10))
        guided = ddpm_training.eps_function(net, ddpm_training.Config(guidance_scale=2.0, conditional=True), y)(x, t)
        plain = ddpm_training.eps_function(net, ddpm_training.Config(conditional=True), y)(x, t)
    torch.testing.assert_close(guided, 3.0 * cond - 2.0 * null)
    torch.testing.assert_close(plain, cond)
    assert not torch.allclose(cond, null)


# Samples and the NLL bound --------------------------------------------------------------------------------------
def test_samples_have_one_row_per_class_and_a_reverse_chain_figure():
    net = tiny_net(conditional=True).eval()
    cfg = ddpm_training.Config(sample_steps=10, chain_frames=4, conditional=True)
    figures = ddpm_training.sample(net, cfg, 25, torch.Generator().manual_seed(1))
    assert [f.name for f in figures] == ["samples", "chain"]
    assert figures[0].nrow == 3 and figures[0].data.shape == (30, 1, 8, 8)
    assert figures[1].nrow == 5 and figures[1].data.shape == (40, 1, 8, 8)  # x_T + 4 frames per chain, 8 chains
    assert all(0 <= f.data.min() and f.data.max() <= 1 for f in figures)
    again = ddpm_training.sample(net, cfg, 25, torch.Generator().manual_seed(1))
    assert torch.equal(figures[0].data, again[0].data)


def test_the_nll_bound_adds_its_terms_and_the_estimate_matches_the_exact_sum():
    net = tiny_net(schedule="linear").eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    images = torch.randint(0, 17, (12, 1, 8, 8)) / 16.0
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(12, dtype=torch.long))
    exact = ddpm_training.evaluate(net, ddpm_training.Config(nll_timesteps=0, T=50, sample_steps=10), dataset,
                          torch.Generator().manual_seed(0))
    estimate = ddpm_training.evaluate(net, ddpm_training.Config(nll_timesteps=4, T=50, sample_steps=10), dataset,
                             torch.Generator().manual_seed(1))
    assert exact["nll_estimator"] == "all T terms (exact)" and "random t" in estimate["nll_estimator"]
    for m in (exact, estimate):
        parts = m["prior_bits_per_dim"] + m["decoder_bits_per_dim"] + m["diffusion_bits_per_dim"]
        assert m["bits_per_dim"] == pytest.approx(parts) == pytest.approx(m["nll_bound"] / (64 * math.log(2)))
        assert m["nll_examples"] == 12 and m["eps_loss"] > 0
    assert abs(estimate["bits_per_dim"] - exact["bits_per_dim"]) < 4 * estimate["bits_per_dim_stderr"] + 1e-3


# Training through the engine ------------------------------------------------------------------------------------
def test_registry_presets_and_build_errors():
    assert models.get_model("ddpm") is ddpm_training and all(hasattr(ddpm_training, name) for name in models.INTERFACE)
    quick, full = ddpm_training.default_config("quick"), ddpm_training.default_config("full")
    assert quick.data.name == "fashion_mnist" and quick.model.denoiser == "unet" and quick.train.ema_decay > 0
    assert full.model.channels == 128 and full.model.num_res_blocks == 2 and full.train.steps > quick.train.steps
    assert ddpm_training.default_config("quick", "moons").model.denoiser == "mlp"
    audio = ddpm_training.default_config("quick", "spoken_digits")
    assert audio.data.view == "mel" and audio.model.mel
    with pytest.raises(ConfigError, match="unknown preset"):
        ddpm_training.default_config("huge")
    with pytest.raises(ValueError, match="use model.denoiser=mlp"):
        ddpm_training.build(ddpm_training.Config(), MOONS)
    with pytest.raises(ValueError, match="MLP denoiser models vectors"):
        ddpm_training.build(ddpm_training.Config(denoiser="mlp"), DIGITS)
    with pytest.raises(ValueError, match="needs labels"):
        ddpm_training.build(ddpm_training.Config(conditional=True), get_info("galaxies"))


def test_only_8_bit_images_are_rescaled_and_decoded_as_8_bit():
    """Fashion-MNIST ([0, 1], 8-bit) goes to [-1, 1] and back, clamped; the galaxies (real values with noise below 0)
    are modelled as they are: their negative pixels survive the round trip (control: the 8-bit net clamps them)."""
    small = ddpm_training.Config(channels=16, channel_mults=(1,), num_res_blocks=1, attention_levels=())
    eight_bit, galaxies = (ddpm_training.build(small, get_info(name)) for name in ("fashion_mnist", "galaxies"))
    assert eight_bit.images and not galaxies.images
    x = torch.tensor([-0.3, 0.0, 0.5, 1.0]).reshape(1, 1, 2, 2)
    assert torch.equal(galaxies.from_model(galaxies.to_model(x)), x)
    assert eight_bit.from_model(eight_bit.to_model(x)).min() == 0
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        ddpm_training.build(ddpm_training.Config(guidance_scale=1.0), DIGITS)
    with pytest.raises(ValueError, match="sample_steps must be in 0..T=50"):
        ddpm_training.build(ddpm_training.Config(T=50, sample_steps=100), DIGITS)


def test_the_galaxies_are_sampled_with_x0_clipped_to_the_range_they_lie_in():
    """The galaxies lie in about [-0.4, 1], so their predicted x_0 is clipped to [-1, 1] as the rescaled images' is:
    a predictor of eps = 0 ends inside it (control: unclipped, each step's 1/sqrt(alpha_bar) blows the chain up, as
    a young network's errors did on the galaxies)."""
    from practice_torch.diffusion.model import generate

    small = ddpm_training.Config(channels=16, channel_mults=(1,), num_res_blocks=1, attention_levels=(), T=100)
    net = ddpm_training.build(small, get_info("galaxies"))
    torch.nn.init.zeros_(net.denoiser.conv_out.weight)
    torch.nn.init.zeros_(net.denoiser.conv_out.bias)
    clipped, free = (generate(net, 4, torch.Generator().manual_seed(0), steps=10, clip_x0=clip)[0] for clip in (True, False))
    assert clipped.abs().max() <= 1 and free.abs().max() > 10


def _digits(*extra):
    return apply_overrides(ddpm_training.default_config("quick", "digits"), [
        *TINY_UNET, "model.sample_steps=5", "model.nll_examples=8", "train.batch_size=16", "train.steps=8",
        "train.log_every=2", "train.warmup_steps=2", "train.samples=10", "train.checkpoint_every=4", "train.threads=1",
        *extra])


def test_a_tiny_unet_trains_on_digits_and_resumes_exactly(tmp_path):
    cfg = _digits("model.conditional=true")
    straight = new_trainer(cfg, tmp_path / "straight")
    straight.run()
    assert (tmp_path / "straight/samples/samples.png").is_file() and (tmp_path / "straight/samples/chain.png").is_file()
    first = new_trainer(cfg, tmp_path / "resumed")
    first.run(stop_at=4)
    resumed = new_trainer(cfg, tmp_path / "resumed", resume=True)
    assert resumed.step == 4
    resumed.run()
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [2, 4, 6, 8]


def test_the_cli_samples_a_trained_run_with_another_sampler_and_evaluates_it(tmp_path):
    pytest.importorskip("practice_torch.ddim")
    run = tmp_path / "run"
    new_trainer(_digits(), run).run()
    out = tmp_path / "ddim.png"
    assert main(["sample", str(run), "--set", "model.sampler=ddim", "--set", "model.sample_steps=3",
                 "--n", "4", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["nll_examples"] == 8 and math.isfinite(metrics["bits_per_dim"])
    for task in (["model.task=inpaint", "model.mask=left"], ["model.task=super_resolution", "model.sr_factor=2"]):
        out = tmp_path / f"{task[0][11:]}.png"
        assert main(["sample", str(run), *(a for t in task for a in ("--set", t)), "--set", "model.sample_steps=3",
                     "--set", "model.resample=2", "--n", "4", "--out", str(out)]) == 0
        assert out.is_file()


@pytest.mark.parametrize("change,message", [("model.mask=middle", "model.mask must be one of center"),
                                            ("model.sr_factor=3", "model.sr_factor must be at least 2 and divide")])
def test_a_restoration_setting_that_cannot_work_is_a_one_line_error(change, message):
    task = "inpaint" if "mask" in change else "super_resolution"
    cfg = apply_overrides(ddpm_training.default_config("quick", "digits"), [f"model.task={task}", change])
    with pytest.raises(ValueError, match=message):
        ddpm_training.build(cfg.model, DIGITS)


# Restoration (RePaint's replacement and resampling, ILVR's low-pass consistency) -----------------------------------
def test_the_repaint_schedule_goes_back_up_and_down_again_resample_times():
    levels = ddpm.repaint_levels(10, jump=1, resample=3)
    moves = np.diff(levels)
    assert levels[0] == 9 and levels[-1] == -1 and set(moves.tolist()) == {-1, 1}
    assert (moves < 0).sum() == 10 + 9 * 2  # every level but the last stepped down 3 times
    assert ddpm.repaint_levels(10) == list(range(9, -2, -1))  # resample 1: the plain chain
    jumps = ddpm.repaint_levels(12, jump=3, resample=2)
    assert max(np.diff(jumps)) == 1 and (np.diff(jumps) < 0).sum() == 12 + 3 * 3  # 3 jumps of 3 levels
    with pytest.raises(ValueError, match="resample >= 1"):
        ddpm.repaint_levels(10, resample=0)


def test_the_restoration_figure_labels_its_three_rows_with_what_each_shows():
    """sample --set model.task=...: what is known, the restoration (its method and resampling), the truth, each row
    beside its own images (control: the two tasks' rows are labelled apart)."""
    known, restored, truth = (torch.full((2, 1, 4, 4), v) for v in (0.1, 0.5, 0.9))
    inpaint = ddpm_training.restoration_rows(ddpm_training.Config(task="inpaint", mask="left", resample=5),
                                             known, restored, truth)
    sr = ddpm_training.restoration_rows(ddpm_training.Config(task="super_resolution", sr_factor=4, resample=1),
                                        known, restored, truth)
    assert [label for label, _ in inpaint] == ["known pixels (mask left)", "restored (RePaint, resampled r = 5)",
                                               "truth"]
    assert [label for label, _ in sr] == ["known: 4x block means", "restored (ILVR, r = 1)", "truth"]
    assert [images for _, images in inpaint] == [known, restored, truth]


@pytest.mark.parametrize("task", ["inpaint", "super_resolution"])
def test_a_restoration_ends_on_what_it_knows_of_the_truth_and_draws_the_rest(task):
    """Inpainting: the known pixels are the truth's exactly (the last replacement uses y itself); SR: the block means
    are the truth's. Controls: the unknown pixels (the high frequencies) are not the truth's, and a replacement that
    puts the truth on the wrong pixels leaves the known ones off."""
    net = tiny_net()
    cfg = ddpm_training.Config(channels=8, channel_mults=(1, 2), attention_levels=(1,), T=50, sample_steps=5,
                               task=task, mask="center", sr_factor=2, resample=2)
    x = torch.rand(3, *DIGITS.shape, generator=torch.Generator().manual_seed(1))
    restored, shown = ddpm_training.restore_images(net, cfg, x, torch.Generator().manual_seed(0))
    truth = net.to_model(x)
    if task == "inpaint":
        known = inpainting_mask("center", DIGITS.shape, torch.Generator())
        assert torch.equal(known * restored, known * truth) and torch.equal(shown, known * truth)
        assert not torch.allclose((1 - known) * restored, (1 - known) * truth, atol=0.1)
        wrong = ddpm.restore(lambda v, t: net(v, t), net.schedule.respace(5), truth,
                             lambda v, y_t: ddpm.replace_known(v, y_t, 1 - known), torch.Generator().manual_seed(0))
        assert not torch.allclose(known * wrong, known * truth, atol=0.1)
    else:
        torch.testing.assert_close(ddpm.low_pass(restored, 2), ddpm.low_pass(truth, 2), rtol=0, atol=1e-6)
        assert not torch.allclose(restored, ddpm.low_pass(truth, 2), atol=0.1)


def test_a_mask_on_the_wrong_pixels_and_a_jump_without_its_square_root_are_caught(both):
    assert run_case(CASES["ddpm/replace_known"]).passed
    assert "output" in caught(CASES["ddpm/replace_known"], Perturbation("the mask's complement", inputs=lambda i: {
        **i, "known": 1 - i["known"]}))

    def no_sqrt(fn):  # (a_t / a_prev) x_prev: the mean of the jump without its square root
        return lambda x_prev, alpha_bar_t, alpha_bar_prev, z: fn(x_prev, alpha_bar_t, alpha_bar_prev, z) + (
            alpha_bar_t / alpha_bar_prev - (alpha_bar_t / alpha_bar_prev) ** 0.5)[:, None, None, None] * x_prev

    assert "output" in caught(CASES["ddpm/renoise"], Perturbation("a x_prev", fn=no_sqrt))


def test_the_mlp_ddpm_learns_moons(tmp_path):
    cfg = apply_overrides(ddpm_training.default_config("quick", "moons"), [
        "model.hidden=64", "model.T=100", "model.sample_steps=20", "train.steps=150", "train.log_every=50",
        "train.threads=1", "train.samples=300", "train.checkpoint_every=150"])
    trainer = new_trainer(cfg, tmp_path / "run")
    trainer.run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert losses[-1] < losses[0] and losses[-1] < 0.7, losses
    assert (tmp_path / "run/samples/chain.png").is_file()


# Wrong formulas are caught by the spec runner (negative controls, docs/ARCHITECTURE.md rule 5) --------------------------
def test_a_posterior_variance_of_beta_instead_of_beta_tilde_is_caught(both):
    def beta_variance(fn):
        def wrong(x0, x_t, alpha_bar_t, alpha_bar_prev):
            mean, _ = fn(x0, x_t, alpha_bar_t, alpha_bar_prev)
            return mean, 1 - alpha_bar_t / alpha_bar_prev  # beta_t, the upper bound, not beta-tilde
        return wrong

    assert run_case(CASES["ddpm/posterior_mean_variance"]).passed
    assert "output" in caught(CASES["ddpm/posterior_mean_variance"], Perturbation("var = beta_t", fn=beta_variance))


def test_a_forward_process_with_a_forgotten_square_root_is_caught(both):
    import jax.numpy as jnp

    def no_sqrt(fn):  # alpha_bar in place of sqrt(alpha_bar) on x_0
        return lambda x0, alpha_bar_t, eps: alpha_bar_t[:, None, None, None] * x0 + jnp.sqrt(
            1 - alpha_bar_t[:, None, None, None]) * eps

    assert "output" in caught(CASES["ddpm/q_sample"], Perturbation("a x0 + sqrt(1-a) eps", fn=no_sqrt))


def test_an_ancestral_step_with_the_noise_at_the_wrong_scale_is_caught(both):
    def double_noise(fn):
        return lambda x_t, eps, alpha_bar_t, alpha_bar_prev, z: fn(x_t, eps, alpha_bar_t, alpha_bar_prev, 2 * z)

    assert "output" in caught(CASES["ddpm/ddpm_step"], Perturbation("2 z", fn=double_noise))
    assert "output" in caught(CASES["ddpm/ddpm_step"], Perturbation("z from another draw", inputs=lambda i: {
        **i, "z": np.roll(i["z"], 1, axis=0)}))


# The quick preset (slow) -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_on_moons_finishes_in_about_a_minute(tmp_path):
    start = time.perf_counter()
    assert main(["train", "ddpm", "--dataset", "moons", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 180
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run/eval_test.json").read_text())["eps_loss"] < 0.5


@pytest.mark.slow
def test_the_quick_preset_on_fashion_mnist_beats_a_uniform_model_in_bits_per_dim(tmp_path):
    start = time.perf_counter()
    assert main(["train", "ddpm", "--out", str(tmp_path / "run")]) == 0
    assert time.perf_counter() - start < 900
    assert main(["eval", str(tmp_path / "run"), "--samples", "500"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["bits_per_dim"] < 8.0, metrics  # a uniform distribution over 256 levels: 8 bits/dim
    assert metrics.get("fid", 0.0) < 150, metrics


# Cascades: the condition and its augmentation ---------------------------------------------------------------------
def test_the_cascades_condition_is_the_low_pass_image_and_its_augmentation_the_forward_process():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64)
    low = ddpm.downsample(x, 2)
    assert low.shape == (4, 1, 14, 14)
    torch.testing.assert_close(ddpm.upsample(low, 2), ddpm.low_pass(x, 2))
    torch.testing.assert_close(ddpm.augment_condition(low, torch.ones(4, dtype=torch.float64), x[:, :, :14, :14]), low)
    eps = torch.randn(4, 1, 14, 14, generator=g, dtype=torch.float64)
    a = torch.full((4,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(ddpm.augment_condition(low, a, eps), ddpm.q_sample(low, a, eps))


def test_an_augmentation_that_adds_unscaled_noise_is_caught_by_the_spec(both):
    import jax.numpy as jnp

    assert run_case(CASES["ddpm/augment_condition"]).passed
    unscaled = Perturbation("z + sqrt(1 - a) eps", fn=lambda fn: lambda z, alpha_bar_s, eps: z + jnp.sqrt(
        1 - alpha_bar_s).reshape(-1, *([1] * (z.ndim - 1))) * eps)
    assert "output" in caught(CASES["ddpm/augment_condition"], unscaled)
    nearest = Perturbation("mean of the first row only", fn=lambda fn: lambda x, factor: fn(x, factor) * 0 + x[
        :, :, ::factor, ::factor])
    assert "output" in caught(CASES["ddpm/downsample"], nearest)


# A cascade of two stages in one run -------------------------------------------------------------------------------
def tiny_cascade(**kw):
    torch.manual_seed(0)
    cfg = ddpm_training.Config(channels=8, channel_mults=(1, 2), attention_levels=(1,), T=50, sample_steps=5,
                               cascade=True, base_channel_mults=(1, 2), **kw)
    return ddpm_training.build(cfg, DIGITS), cfg


def test_the_cascades_loss_is_its_two_stages_l_simple_on_the_augmented_condition():
    from practice_torch.ddpm import cascade

    net, cfg = tiny_cascade(augment_levels=20)
    assert isinstance(net, cascade.Cascade) and net.base.shape == (1, 4, 4) and net.shape == (1, 8, 8)
    g = torch.Generator().manual_seed(8)
    x = torch.rand(6, 1, 8, 8, generator=g)
    noise = ddpm_training.draw_noise(net, cfg, 6, g)
    assert {"t_low", "eps_low", "s", "eps_aug"} <= set(noise) and noise["s"].max() <= 20
    x0, z = net.to_model(x), ddpm.downsample(net.to_model(x), 2)
    a = net.alpha_bars
    base = ((net.base(ddpm.q_sample(z, a[noise["t_low"]], noise["eps_low"]), noise["t_low"]) - noise["eps_low"])
            ** 2).mean()
    level = torch.where(noise["s"] > 0, a[(noise["s"] - 1).clamp(min=0)], torch.ones(6, dtype=a.dtype))
    condition = ddpm.upsample(ddpm.augment_condition(z, level, noise["eps_aug"]), 2)
    x_t = ddpm.q_sample(x0, a[noise["t"]], noise["eps"])
    sr = ((net.sr(x_t, noise["t"], condition, noise["s"] / 20) - noise["eps"]) ** 2).mean()
    total, terms = ddpm_training.loss(net, cfg, (x, torch.zeros(6)), noise, 0)
    torch.testing.assert_close(total, base + sr)
    torch.testing.assert_close(terms["sr_loss"], sr)
    assert cascade.condition_levels(net, torch.zeros(1, dtype=torch.long)) == 1  # level 0: the clean condition


@pytest.mark.parametrize("changes, message", [
    ({"conditional": True}, "draws unconditional samples"),
    ({"cascade_factor": 3}, "must divide the images' 8 x 8"),
    ({"sample_augment": 5}, "beyond the levels the stage was trained on"),
])
def test_a_cascade_refuses_what_it_cannot_do_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_cascade(**changes)


def test_a_tiny_cascade_trains_samples_through_both_stages_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ddpm", "--dataset", "digits", "--steps", "3", "--out", str(run), "--device", "cpu",
                 *[a for s in [*TINY_UNET, "model.cascade=true", "model.augment_levels=20", "model.sample_augment=10",
                               "model.sample_steps=4", "train.batch_size=8", "train.samples=4"] for a in ("--set", s)]]) == 0
    assert (run / "samples/samples.png").is_file() and (run / "samples/base_samples.png").is_file()
    assert main(["eval", str(run), "--no-sample-metrics", "--set", "model.nll_examples=16"]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert math.isfinite(metrics["base_eps_loss"]) and math.isfinite(metrics["sr_eps_loss"])
    assert metrics["sample_augment"] == 10
    capsys.readouterr()
