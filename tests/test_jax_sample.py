"""Sampling in JAX (``python -m practice_jax sample``, ``practice_jax/sampling.py`` and ``practice_jax/samplers/``): on
the same weights and the same seed, each model's JAX samples are PyTorch's, and each comparison catches a wrong step.

Tolerances, the reference side PyTorch's (``project.compare``): a decoder's or a generator's one pass is held to
the float32 ``network`` level (1e-5); a chain of network passes (DDPM's reverse chain, the flows' ODE solves) to the
float32 ``step`` level (1e-4), the rounding of each pass carried along the chain. dopri5 is compared at tolerances
1e-7: its two step-size controllers (torchdiffeq's, diffrax's) take different steps, so the two solves differ by
their errors, which at the runs' 1e-5 reach 3e-3 on the trained flow-matching field (70 steps through a field that
turns quickly with t; each as far from a 2000-step RK4 solve) and at 1e-7 stay within 1e-5. Decoding (argmax,
inverse-CDF draws, beams) is held to the character."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import theory_jax.diffusion as jdiff
from practice_jax.__main__ import main as practice_jax
from practice_jax.sampling import draw_samples, open_twin
from practice_torch.cli import main as torch_main
from project.compare import Tolerance, assert_trees_close, compare_trees, tolerance
from theory_jax.broadcasting import per_example

pytestmark = pytest.mark.usefixtures("one_thread", "jax_float32")

NETWORK, CHAIN = tolerance("network", "float32"), tolerance("step", "float32")
DOPRI5 = ("atol=1e-7", "rtol=1e-7")  # dopri5's tolerances where the two controllers' solves are within CHAIN
TRAIN = ["--device", "cpu", "--set", "train.samples=0", "--set", "train.threads=1", "--set", "train.batch_size=16"]
RUNS = {  # name: (model, its training, trained by practice_jax (else practice_torch), steps)
    "vae": (["vae", "--dataset", "digits", "--set", "model.architecture=mlp", "--set", "model.hidden=16", "--set",
             "model.latent_dim=2", "--set", "model.conditional=true"], True, 3),
    "gan": (["gan", "--dataset", "digits", "--set", "model.latent_dim=4", "--set", "model.channels=4,8", "--set",
             "model.fc=16", "--set", "model.conditional=true", "--set", "model.spectral_norm=true", "--set",
             "model.minibatch_std=true"], False, 3),
    "ddpm": (["ddpm", "--dataset", "gaussians", "--set", "model.hidden=32", "--set", "model.depth=2", "--set",
              "model.T=50", "--set", "model.sample_steps=10", "--set", "model.conditional=true"], False, 3),
    "ddpm_unet": (["ddpm", "--dataset", "digits", "--set", "model.channels=8", "--set", "model.channel_mults=1,2",
                   "--set", "model.attention_levels=1", "--set", "model.T=20", "--set", "model.sample_steps=4", "--set",
                   "model.conditional=true", "--set", "model.guidance_scale=1", "--set", "train.lr=0.01"], False, 10),
    "language_model": (["language_model", "--set", "model.dim=16", "--set", "model.layers=1", "--set", "model.heads=2",
                        "--set", "model.context=16", "--set", "model.position=rope", "--set", "train.val_batch=0",
                        "--set", "train.batch_size=4", "--set", "train.lr=0.01", "--set", "model.bpe_merges=0",
                        "--set", "model.sample_length=40"], False, 30),
    "flow_matching": (["flow_matching", "--dataset", "gaussians", "--set", "model.hidden=32", "--set", "model.depth=2",
                       "--set", "model.conditional=true", "--set", "model.ode_steps=6", "--set", "train.lr=0.01"],
                      False, 40),
    "cnf": (["cnf", "--dataset", "moons", "--set", "model.hidden=16,16", "--set", "model.method=rk4", "--set",
             "model.steps=4", "--set", "model.sample_method=rk4", "--set", "model.sample_steps=4", "--set",
             "model.grid=8"], False, 3),
}


@pytest.fixture()
def jax_float32():
    """The samplers in float32, as the command runs them, whatever another test file set."""
    import jax

    with jax.enable_x64(False):
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(name): the folder of a run of ``RUNS[name]``, trained a few steps when first asked for."""
    folder, made = tmp_path_factory.mktemp("runs"), {}

    def run(name: str):
        if name not in made:
            (model, *settings), in_jax, steps = RUNS[name]
            out = folder / name
            if in_jax:  # a run JAX trained: the same layout, sampled the same way
                settings = [a for a in (*settings, *TRAIN) if a not in ("--device", "cpu")]
                assert practice_jax(["train", model, "--steps", str(steps), "--out", str(out), *settings]) == 0
            else:
                assert torch_main(["train", model, "--steps", str(steps), "--out", str(out), *settings, *TRAIN]) == 0
            made[name] = out
        return made[name]

    return run


def both(run, overrides=()):
    """((model module, config, PyTorch net), (sampler, config, JAX twin)) of a run opened with ``overrides``."""
    from practice_torch.models import open_run

    return open_run(run, torch.device("cpu"), list(overrides)), open_twin(run, list(overrides))


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def caught(actual, expected, tol: Tolerance) -> bool:
    """Whether a negative control's samples fail the comparison its correct twin passes."""
    return not compare_trees(actual, expected, tol, check_dtype=False).passed


# The decoders: one pass ----------------------------------------------------------------------------------------------
def test_a_jax_trained_cvae_samples_as_pytorch_samples_it(runs):
    """A conditional VAE trained by ``practice_jax train``: its 'samples' (one row per class) are PyTorch's to the
    network level. Controls: the Bernoulli decoder's logits taken as its mean, and the draws paired with the wrong
    labels."""
    from practice_jax.samplers import vae
    from practice_torch.engine.runs import write_samples

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("vae"))
    expected = write_samples(module, cfg, net, 12, 0, None)[0]
    got = draw_samples(sampler, jcfg, twin, 12, 0, None)[0]
    assert (got.name, got.nrow, got.data.shape) == (expected.name, expected.nrow, (20, 1, 8, 8))
    assert torch.equal(got.labels, expected.labels)
    assert_trees_close(got.data.numpy(), expected.data.numpy(), NETWORK)

    def logits(module, variables, z, y):
        return module.apply(variables, z, y, method=type(module).decode)

    def other_labels(module, variables, z, y):
        return vae.decoder_means(module, variables, z[::-1], y)

    from practice_torch.engine.config import derive_seed

    for wrong in (logits, other_labels):
        images = vae.prior_samples(twin, 12, seeded(derive_seed(0, "samples")), decode=wrong)[0]
        assert caught(images, expected.data.numpy(), NETWORK), wrong.__name__


def test_a_dcgan_samples_with_its_running_statistics(runs):
    """The conditional DCGAN with spectral normalisation and minibatch std: G(z, y) with the batch normalisation's
    running statistics is PyTorch's ``eval()`` generator. Control: the batch's own statistics."""
    from practice_jax.samplers import gan
    from practice_torch.engine.config import derive_seed
    from practice_torch.engine.runs import write_samples

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("gan"))
    expected = write_samples(module, cfg, net, 10, 1, None)[0]
    got = draw_samples(sampler, jcfg, twin, 10, 1, None)[0]
    assert torch.equal(got.labels, expected.labels) and got.nrow == expected.nrow
    assert_trees_close(got.data.numpy(), expected.data.numpy(), NETWORK)
    batch_statistics = gan.draw(twin, 10, seeded(derive_seed(1, "samples")), train=True)[0]
    assert caught(batch_statistics, expected.data.numpy(), NETWORK)


# DDPM: the reverse chain ---------------------------------------------------------------------------------------------
def flipped_posterior_mean(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
    """The ancestral step with the sign of x_t's term in mu_tilde (Ho et al. eq. 7) flipped."""
    x0 = jdiff.predict_x0(x_t, alpha_bar_t, eps)
    mean, var = jdiff.posterior_mean_variance(x0, -x_t, alpha_bar_t, alpha_bar_prev)
    return mean + jnp.sqrt(per_example(var, x_t)) * z


def eta_ignored(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, z):
    """DDIM's step at eta = 0 whatever the run's eta."""
    return jdiff.ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, 0.0, z)


@pytest.mark.parametrize(("settings", "wrong"), [
    (["model.sampler=ddpm", "model.clip_x0=true"], flipped_posterior_mean),
    (["model.sampler=ddim", "model.eta=0.5", "model.guidance_scale=2"], eta_ignored),
    (["model.sampler=ddpm", "model.guidance_scale=1.5", "model.sample_steps=0"], flipped_posterior_mean),
])
def test_the_ddpm_chain_is_pytorchs(runs, settings, wrong):
    """The class-conditional MLP denoiser's ancestral and DDIM chains, clipped and guided, respaced and whole: the
    samples and the chains' frames PyTorch's ``generate`` records, at the same steps. Control: a wrong step rule."""
    from practice_jax.samplers import ddpm
    from practice_torch.ddpm.training import generate

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("ddpm"), settings)
    y = np.repeat(np.arange(net.num_classes), 3)
    x0, frames, times = generate(net, cfg.model, len(y), seeded(), torch.from_numpy(y), frames=4, chains=len(y))
    got = ddpm.generate(twin, jcfg.model, len(y), seeded(), y, frames=4, chains=len(y))
    assert got[2] == times and len(times) > 2
    assert_trees_close({"x0": got[0], "frames": got[1]}, {"x0": x0.numpy(), "frames": [f.numpy() for f in frames]},
                       CHAIN)
    faulty = ddpm.generate(twin, jcfg.model, len(y), seeded(), y, step=wrong)[0]
    assert caught(faulty, x0.numpy(), CHAIN)


def test_the_unet_chain_writes_pytorchs_pictures(runs):
    """The class-conditional U-Net (attention at 4 x 4) on 8 x 8 digits, guided: the 'samples' grid and the 'chain'
    of PyTorch's ``sample``, the images and their noise crossing to channels last and back. Control: a wrong step."""
    from practice_jax.samplers import ddpm
    from practice_torch.engine.config import derive_seed
    from practice_torch.engine.runs import write_samples

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("ddpm_unet"))
    expected = write_samples(module, cfg, net, 10, 0, None)
    got = draw_samples(sampler, jcfg, twin, 10, 0, None)
    assert [(a.name, a.nrow) for a in got] == [(a.name, a.nrow) for a in expected] == [("samples", 1), ("chain", 5)]
    assert_trees_close([a.data.numpy() for a in got], [a.data.numpy() for a in expected], CHAIN)
    y = np.repeat(np.arange(net.num_classes), 1)
    faulty = ddpm.generate(twin, jcfg.model, 10, seeded(derive_seed(0, "samples")), y, step=flipped_posterior_mean)[0]
    assert caught(net.from_model(torch.from_numpy(faulty)).numpy(), expected[0].data.numpy(), CHAIN)


# The language model: decoding -----------------------------------------------------------------------------------------
def top_k_off_by_one(logits, u, strategy, temperature, k, p):
    from practice_jax.samplers.language_model import token_of

    return token_of(logits, u, strategy, temperature, k + 1, p)


@pytest.mark.parametrize("strategy", ["top_k", "top_p", "greedy", "beam"])
def test_the_transformer_decodes_as_pytorch_decodes(runs, strategy):
    """40 characters after the prompt by a character transformer of context 16 (its key-value cache refilled twice):
    every rule gives PyTorch's text, to the character. Control: top-k with k + 1 tokens."""
    from practice_jax.samplers.language_model import decode_text
    from practice_torch.language_model.text import decode_text as torch_decode_text

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("language_model"), ["model.top_k=5", "model.beam=3"])
    expected = torch_decode_text(net, cfg.model, 3, seeded(), strategy)
    assert decode_text(twin, jcfg.model, 3, seeded(), strategy) == expected
    assert len(expected) == 3 and len(set(expected)) > 1 or strategy == "greedy"
    if strategy == "top_k":
        assert decode_text(twin, jcfg.model, 3, seeded(), strategy, rule=top_k_off_by_one) != expected


# The flows: the ODE ---------------------------------------------------------------------------------------------------
def midpoint_at_the_start(field, t, x, h):
    """The midpoint rule with the second slope read at t instead of t + h/2."""
    return x + h * field(t, x + h / 2 * field(t, x))


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_flow_matchings_ode_is_pytorchs(runs, method):
    """The class-conditional MLP field, guided (w = 1), pushed from the same noise by the fixed-step solvers (dopri5,
    the same ``ode.dopri5_states``, is the CNF's test's): the states PyTorch's ``generate`` keeps, their times and the
    NFE. Control: the midpoint rule's second slope at the step's start."""
    from practice_jax.samplers import flow_matching
    from practice_torch.flow_matching.model import generate

    (module, cfg, net), (sampler, jcfg, twin) = both(runs("flow_matching"), [f"model.method={method}",
                                                                              "model.guidance_scale=1"])
    y = np.repeat(np.arange(net.num_classes), 4)
    expected = generate(net, cfg.model, len(y), seeded(), torch.from_numpy(y), frames=4)
    got = flow_matching.generate(twin, jcfg.model, len(y), seeded(), y, frames=4)
    assert_trees_close(got.x, expected.x.numpy(), CHAIN)
    assert np.array_equal(got.times, expected.times.numpy()) and got.nfe == expected.nfe
    if method == "midpoint":
        wrong = flow_matching.generate(twin, jcfg.model, len(y), seeded(), y, frames=4, step=midpoint_at_the_start)
        assert caught(wrong.x, expected.x.numpy(), CHAIN)


def euler(field, t, x, h):
    return x + h * field(t, x)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_the_cnf_transports_and_scores_as_pytorch_does(runs, method):
    """The CNF's particles at 6 times from noise to data, by 4 steps of the 3/8 rule (the outputs between its grid
    points interpolated as torchdiffeq's) or by dopri5, and the exact-trace log-likelihood of its density figure.
    dopri5 at tolerances 1e-7 (``DOPRI5``). Controls: Euler's step in place of the 3/8 rule; the density's trace by
    Hutchinson's estimator in place of the exact one."""
    from practice_jax.samplers import cnf
    from practice_torch.cnf.sampling import draw_samples as torch_draw_samples
    from practice_torch.cnf.sampling import eval_log_prob
    from theory_jax.cnf import log_likelihood

    settings = [f"model.sample_method={method}", *(f"model.eval_{t}" for t in DOPRI5)]
    (module, cfg, net), (sampler, jcfg, twin) = both(runs("cnf"), settings)
    xs, times, nfe = torch_draw_samples(net, cfg.model, 16, seeded(), 6)
    got = cnf.draw_samples(twin, jcfg.model, 16, seeded(), 6)
    assert_trees_close(got[0], xs.detach().numpy(), CHAIN)
    assert np.array_equal(got[1], times.numpy()) and (method == "dopri5" or got[2] == nfe)
    if method == "rk4":
        assert caught(cnf.draw_samples(twin, jcfg.model, 16, seeded(), 6, step=euler)[0], xs.detach().numpy(), CHAIN)
        return
    points = torch.randn((20, 2), generator=seeded(2))
    expected = eval_log_prob(net, cfg.model, points)[0].detach().numpy()
    assert_trees_close(cnf.eval_log_prob(twin, jcfg.model, points.numpy()), expected, CHAIN)
    probe = np.sign(np.random.default_rng(0).standard_normal((20, 2))).astype(np.float32)
    hutchinson = log_likelihood(cnf.field_of(twin.module, twin.variables["params"]), points.numpy(), method="dopri5",
                                atol=1e-7, rtol=1e-7, trace="hutchinson", probe=probe)
    assert caught(hutchinson, expected, CHAIN)


# The command ---------------------------------------------------------------------------------------------------------
def png_pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path), dtype=np.int16)


def test_the_command_writes_the_samples_pytorchs_command_writes(runs, tmp_path, capsys):
    """``sample RUN`` writes RUN/samples-jax-1/, then -2; ``--out`` the samples alone, the PNG PyTorch's ``sample
    --out`` writes for the same seed, to a level of 8-bit rounding. Control: another seed's."""
    run = runs("vae")
    assert practice_jax(["sample", str(run), "--n", "4"]) == 0
    assert practice_jax(["sample", str(run), "--n", "4"]) == 0
    assert (run / "samples-jax-1" / "samples.png").is_file() and (run / "samples-jax-2" / "samples.png").is_file()
    assert f"wrote {run / 'samples-jax-2' / 'samples.png'}" in capsys.readouterr().out
    for seed in ("3", "4"):
        assert practice_jax(["sample", str(run), "--n", "8", "--seed", seed, "--out", str(tmp_path / f"j{seed}.png")]) == 0
    assert torch_main(["sample", str(run), "--n", "8", "--seed", "3", "--device", "cpu", "--out",
                       str(tmp_path / "t.png")]) == 0
    jax_png, torch_png = png_pixels(tmp_path / "j3.png"), png_pixels(tmp_path / "t.png")
    assert jax_png.shape == torch_png.shape and np.abs(jax_png - torch_png).max() <= 1
    assert np.abs(png_pixels(tmp_path / "j4.png") - torch_png).max() > 1


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    """No run, a corrupt one (its config, its checkpoint), a model JAX does not sample, a setting that is unknown,
    fixed by the checkpoint or read only in training, a restoration task, a bad --n or --out: one line each."""
    import shutil

    run = runs("vae")
    corrupt, other, broken = tmp_path / "corrupt", tmp_path / "wgan", tmp_path / "broken"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_name": "wgan"}))
    shutil.copytree(run, broken)
    checkpoint = next((broken / "checkpoints").glob("*.safetensors"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    cases = [
        ([str(tmp_path / "none")], "is not a run directory"),
        ([str(corrupt)], "config.json is corrupt"),
        ([str(other)], "wgan has no JAX sampler; choose from vae, gan, ddpm, language_model, flow_matching, cnf"),
        ([str(broken)], "is corrupt or unreadable"),
        ([str(run), "--set", "model.foo=1"], "unknown config key 'model.foo'"),
        ([str(run), "--set", "model.latent_dim=3"], "model.latent_dim is fixed by the checkpoint"),
        ([str(run), "--set", "model.beta=2"], "only the training step reads it"),
        ([str(run), "--set", "train.lr=1"], "sample and eval take model.KEY=VALUE only"),
        ([str(run), "--n", "0"], "--n must be positive"),
        ([str(run), "--out", str(tmp_path / "x.wav")], "images are written as .png files"),
        ([str(runs("cnf")), "--set", "model.sample_method=bosh3"], "practice_jax sample solves with euler"),
    ]
    for args, message in cases:
        assert practice_jax(["sample", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)


def test_the_ddpm_sampler_refuses_restoration_and_help_names_the_command(capsys):
    from practice_jax.samplers import SampleError, ddpm

    class Model:
        task = "inpaint"

    with pytest.raises(SampleError, match="model.task=inpaint: practice_jax sample draws new samples"):
        ddpm.check(Model(), None)
    assert practice_jax(["--help"]) == 0
    assert "python -m practice_jax sample RUN" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        practice_jax(["sample", "--help"])
    assert exit_.value.code == 0 and "samples-jax-<k>" in capsys.readouterr().out
    assert practice_jax([]) == 2 and "practice_jax sample RUN" in capsys.readouterr().err
