"""The GAN's training form: the networks (the f-GAN's, reused) and their shapes, the round of the game (discriminator_steps
discriminator updates, then one of the generator, each player on its own optimizer), the losses of
``practice_torch.gan.functions`` as the players' objectives, the conditional GAN,
mode statistics, an exactly resumed run, the CLI on tiny 2-D and image runs, one-line errors; the quick presets
are slow tests."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from adversarial import adam_steps, tiny_trainer
from resumption import assert_resumes_exactly

from practice_torch.cli import main
from practice_torch.data import get_info
from practice_torch.engine.config import DataConfig, apply_overrides
from practice_torch.gan import functions
from practice_torch.gan import training as gan_training
from practice_torch.gan.networks import Adversarial, discriminator_objective, generator_objective
from practice_torch.gan.quality import mode_statistics, untrained_copy
from practice_torch.models import new_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GAUSSIANS, DIGITS = get_info("gaussians"), get_info("digits")
TINY = ["--device", "cpu", "--set", "model.hidden=16,16", "--set", "model.latent_dim=2", "--set", "train.batch_size=32",
        "--set", "train.warmup_steps=2", "--set", "train.log_every=5", "--set", "train.samples=200"]
TINY_CONV = ["--dataset", "digits", "--device", "cpu", "--set", "model.channels=4,8", "--set", "model.fc=16",
             "--set", "model.latent_dim=4", "--set", "train.batch_size=16", "--set", "train.samples=20",
             "--set", "train.log_every=2", "--set", "data.limit=200"]


def tiny_net(data=GAUSSIANS, **kw) -> Adversarial:
    torch.manual_seed(0)
    small = {"hidden": (16, 16), "latent_dim": 2, "channels": (4, 8), "fc": 16}
    return gan_training.build(gan_training.Config(**{**small, **kw}), data)


def grads_of(net) -> set[str]:
    return {name.split(".")[0] for name, p in net.named_parameters() if p.grad is not None}


def test_shapes_of_the_mlp_dcgan_and_conditional_players():
    net = tiny_net()
    assert net(torch.randn(5, 2)).shape == (5, 2) and net.logit(torch.randn(5, 2)).shape == (5,)
    conv = tiny_net(DIGITS, architecture="conv", conditional=True)
    images = conv(torch.randn(6, 2), torch.arange(6))
    assert images.shape == (6, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert conv.logit(images, torch.arange(6)).shape == (6,) and conv.embed.weight.shape == (10, 16)


def test_pacgans_players_are_built_as_its_code_builds_them():
    """model.architecture=pacgan: a generator of bias-free linear layers, each followed by a batch norm (eps 1e-4,
    momentum 0.05) and a ReLU, a linear output with bias; a discriminator of maxout layers (units x pieces outputs)
    reading packed examples; every linear weight from N(0, 0.02^2), every bias zero. Control: the plain MLP players'
    weights are not drawn that way."""
    from torch import nn

    net = tiny_net(architecture="pacgan", hidden=(64, 64), discriminator_hidden=(48, 32), pieces=3, pack=2)
    g, d = net.generator, net.discriminator
    assert [layer.bias for layer in g.layers] == [None, None] and g.out.bias is not None
    assert [(n.eps, n.momentum) for n in g.norms] == [(1e-4, 0.05)] * 2
    assert [(layer.in_features, layer.out_features) for layer in d.layers] == [(4, 144), (48, 96)]
    z = torch.randn(10, 2)
    assert net(z).shape == (10, 2) and net.logit(net(z)).shape == (5,) and d.features(torch.randn(5, 4)).shape == (5, 32)

    def drawn_as_pacgan(module):
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        weights = torch.cat([m.weight.flatten() for m in linears])
        biases = [m.bias for m in linears if m.bias is not None]
        return abs(weights.std().item() - 0.02) < 0.002 and all(torch.all(b == 0) for b in biases)

    assert drawn_as_pacgan(g) and drawn_as_pacgan(d)
    plain = tiny_net(hidden=(64, 64))
    assert not drawn_as_pacgan(plain.generator) and not drawn_as_pacgan(plain.discriminator)


def test_pacgans_generator_samples_from_its_running_statistics_in_eval_mode():
    """Training normalises by the batch and moves the running statistics by 0.05 of the batch's; eval normalises by
    the running statistics: one sample's output then no longer depends on the rest of its batch."""
    net = tiny_net(architecture="pacgan", hidden=(16, 16), discriminator_hidden=(8, 8), pieces=3)
    z = torch.randn(32, 2)
    first = net.generator.layers[0](z)
    net(z)
    assert torch.allclose(net.generator.norms[0].running_mean, 0.05 * first.mean(0), atol=1e-6)
    assert not torch.allclose(net(z[:4])[:2], net(z[:2]))  # training: the batch's statistics
    net.eval()
    assert torch.allclose(net(z[:4])[:2], net(z[:2]))


@pytest.mark.parametrize("discriminator_steps", [2, 0])
def test_a_step_is_a_round_of_the_game_each_player_on_its_own_optimizer(tmp_path, discriminator_steps):
    """One training step: discriminator_steps updates of the discriminator, each on its own batch, then one of the generator
    (discriminator_steps = 0: both at once on one batch); each player's AdamW counts only its own updates."""
    trainer = tiny_trainer("gan", tmp_path / "run", f"model.discriminator_steps={discriminator_steps}")
    net = trainer.net
    assert set(trainer.optimizers) == {"discriminator", "generator"}
    generator_before = [p.detach().clone() for p in net.generator.parameters()]
    trainer.run(stop_at=2)
    d, g = trainer.optimizers["discriminator"], trainer.optimizers["generator"]
    assert adam_steps(d) == {2 * max(discriminator_steps, 1)} and adam_steps(g) == {2}
    taken = trainer.batches.epoch * (len(trainer.train_set) // 16) + trainer.batches.position // 16
    assert trainer.step == 2 and taken == 2 * (discriminator_steps + 1), "a fresh batch for every update of a round"
    assert {id(p) for group in g.param_groups for p in group["params"]} == {id(p) for p in net.generator.parameters()}
    assert all(not torch.equal(a, b) for a, b in zip(generator_before, net.generator.parameters()))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"grad_norm_discriminator", "grad_norm_generator", "lr_discriminator", "lr_generator"} <= set(rows[-1])


def test_the_generators_update_moves_the_generator_only():
    net, z = tiny_net(), torch.randn(8, 2)
    g_loss = generator_objective(net, net(z))
    g_loss.backward(inputs=net.generator_parameters())  # as the engine's run.update does
    assert grads_of(net) == {"generator"}
    net.zero_grad(set_to_none=True)
    g_loss = generator_objective(net, net(z))
    g_loss.backward()  # negative control: a plain backward also reaches the discriminator
    assert grads_of(net) == {"discriminator", "generator"}


@pytest.mark.parametrize("generator_loss", ["non_saturating", "saturating"])
def test_the_players_objectives_are_the_functions_of_the_derivations_twin(generator_loss):
    net, x, z = tiny_net(generator_loss=generator_loss), torch.randn(8, 2), torch.randn(8, 2)
    fake = net(z)
    d_loss, terms = discriminator_objective(net, x, fake)
    torch.testing.assert_close(d_loss, functions.discriminator_loss(net.logit(x), net.logit(fake)))
    torch.testing.assert_close(terms["discriminator_loss"], d_loss.detach())
    d_loss.backward()
    assert grads_of(net) == {"discriminator"}, "the fakes are data to the discriminator"
    g_loss = generator_objective(net, fake, kind=generator_loss)
    fn = {"non_saturating": functions.generator_loss_nonsaturating, "saturating": functions.generator_loss_saturating}
    torch.testing.assert_close(g_loss, fn[generator_loss](net.logit(net(z))))
    other = "saturating" if generator_loss == "non_saturating" else "non_saturating"
    assert not torch.allclose(g_loss, fn[other](net.logit(net(z))))  # negative control: the other loss


def test_r1_penalises_the_discriminators_input_gradient_at_real_data():
    net, x, z = tiny_net(), torch.randn(8, 2), torch.randn(8, 2)
    fake = net(z).detach()
    plain, _ = discriminator_objective(net, x, fake)
    with_r1, terms = discriminator_objective(net, x, fake, r1=10.0)
    # the penalty by hand: the Jacobian of each example's logit in its own input (rows are independent)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: net.logit(v[None])[0]))(x)
    expected = 0.5 * torch.mean(torch.sum(jac**2, dim=1))
    torch.testing.assert_close(terms["r1_penalty"], expected)
    torch.testing.assert_close(with_r1, plain + 10.0 * expected)
    net.zero_grad(set_to_none=True)
    with_r1.backward()  # the penalty's gradient reaches the discriminator's weights (double backward)
    penalty_grad = torch.autograd.grad(10.0 * expected, net.discriminator.out.weight)[0]
    plain_grad = torch.autograd.grad(discriminator_objective(net, x, fake)[0], net.discriminator.out.weight)[0]
    torch.testing.assert_close(net.discriminator.out.weight.grad, plain_grad + penalty_grad)
    assert grads_of(net) == {"discriminator"}
    # negative control: the penalty at the fakes is another number
    fake = fake.clone().requires_grad_(True)
    from practice_torch.f_divergence.networks import r1_penalty
    assert not torch.allclose(r1_penalty(net.logit(fake), fake), expected)


def test_a_conditional_discriminator_starts_as_the_unconditional_one_and_uses_the_labels():
    net = tiny_net(conditional=True)
    x = torch.randn(4, 2)
    torch.testing.assert_close(net.logit(x, torch.tensor([0, 1, 2, 3])), net.discriminator(x))
    torch.nn.init.normal_(net.embed.weight)
    assert not torch.allclose(net.logit(x, torch.zeros(4, dtype=torch.int64)),
                              net.logit(x, torch.ones(4, dtype=torch.int64)))
    assert not torch.allclose(net(torch.zeros(1, 2), torch.tensor([0])), net(torch.zeros(1, 2), torch.tensor([1])))


def test_mode_statistics_count_modes_and_samples_near_them():
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    labels = torch.arange(3).repeat_interleave(200)
    data = centres[labels] + 0.1 * torch.randn(600, 2, generator=torch.Generator().manual_seed(0))
    stats = mode_statistics(centres[torch.tensor([0, 0, 1, 1])] + 0.05, data, labels)
    assert stats["modes_covered"] == 2 and stats["high_quality"] == 1.0 and abs(stats["mode_std"] - 0.1) < 0.01
    far = mode_statistics(torch.full((4, 2), 2.5), data, labels)
    assert far["modes_covered"] == 0 and far["high_quality"] == 0.0


def test_an_untrained_copy_is_fresh_and_leaves_the_net_and_the_global_generator_alone():
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = torch.random.get_rng_state()
    fresh = untrained_copy(net, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(fresh.generator.out.weight, net.generator.out.weight)
    assert torch.equal(fresh.generator.out.weight, untrained_copy(net, seed=1).generator.out.weight)


def test_a_resumed_run_is_bit_identical(tmp_path):
    cfg = apply_overrides(gan_training.default_config("quick", "gaussians"), [
        "model.hidden=8", "model.latent_dim=2", "train.batch_size=16", "train.steps=6", "train.checkpoint_every=3",
        "train.log_every=3", "train.samples=10", "train.device=cpu", "data.limit=64"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=3)  # both players' optimizers resume
    assert "steps" not in resumed.net.state_dict()  # no step counter in the weights


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_spectral_norm_holds_each_discriminator_layer_to_norm_one_and_leaves_the_generator_alone(architecture):
    """model.spectral_norm=true: every Linear and Conv2d of the discriminator reads W / sigma(W); after training-mode
    passes (one power iteration each) each layer's largest singular value is 1 (its raw weight's is not), and eval
    mode moves no vector. Control: the plain net's layers keep their raw norms, and its generator has none."""
    data = GAUSSIANS if architecture == "mlp" else DIGITS
    net = tiny_net(data, architecture=architecture, spectral_norm=True)
    layers = [m for m in net.discriminator.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(hasattr(m, "parametrizations") for m in net.generator.modules())
    x = torch.randn(8, *data.shape)
    with torch.no_grad():
        for m in layers:
            m.parametrizations.weight.original.mul_(3.0)  # steeper raw weights; the normalised ones do not care
        for _ in range(30):
            net.logit(x)
        for m in layers:
            top = torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), ord=2)
            raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.reshape(m.weight.shape[0], -1), ord=2)
            assert abs(float(top) - 1) < 1e-4 and float(raw) > 1.5
    net.eval()
    u = layers[0].parametrizations.weight[0].u.clone()
    with torch.no_grad():
        net.logit(x)
    assert torch.equal(u, layers[0].parametrizations.weight[0].u)
    plain = tiny_net(data, architecture=architecture)
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())


def test_a_spectrally_normalised_run_resumes_bit_identically_with_its_power_iteration_vectors(tmp_path):
    cfg = apply_overrides(gan_training.default_config("quick", "gaussians"), [
        "model.hidden=8", "model.latent_dim=2", "model.spectral_norm=true", "train.batch_size=16", "train.steps=6",
        "train.checkpoint_every=3", "train.log_every=3", "train.samples=10", "train.device=cpu", "data.limit=64"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=3)
    assert any(k.endswith("parametrizations.weight.0.u") for k in resumed.net.state_dict())


@pytest.mark.parametrize("conditional", [False, True])
def test_minibatch_std_judges_a_batch_as_a_whole(conditional):
    """model.minibatch_std=true: the last layer reads one more feature, and an example's logit depends on its batch
    (alone in a batch of copies it has no spread to show). Control: the plain discriminator judges each example
    alone."""
    data = DIGITS if conditional else GAUSSIANS
    net = tiny_net(data, minibatch_std=True, conditional=conditional, architecture="conv" if conditional else "mlp")
    assert net.discriminator.out.in_features == 16 + 1
    x = torch.rand(8, *data.shape)
    y = torch.arange(8) % 10 if conditional else None
    with torch.no_grad():
        in_batch = net.logit(x, y)[0]
        among_copies = net.logit(x[:1].expand_as(x), y[:1].expand(8) if conditional else None)[0]
    assert not torch.allclose(in_batch, among_copies)
    plain = tiny_net(data, conditional=conditional, architecture="conv" if conditional else "mlp")
    with torch.no_grad():
        assert torch.allclose(plain.logit(x, y)[0], plain.logit(x[:1].expand_as(x),
                                                                y[:1].expand(8) if conditional else None)[0])


def test_the_unrolled_generator_loss_looks_ahead_without_moving_the_discriminator():
    """unrolled_generator_objective: with 0 steps it is the plain generator loss; with 3 the generator's gradient
    changes (it follows the discriminator's answer), the discriminator's weights stay as they were, and only the
    generator's parameters are asked for gradients by the step."""
    from practice_torch.gan.networks import unrolled_generator_objective

    net = tiny_net()
    before = {k: v.clone() for k, v in net.discriminator.state_dict().items()}
    x, z = torch.randn(16, 2) * 2, torch.randn(16, 2)

    def generator_gradient(steps):
        fake = net(z)
        loss = unrolled_generator_objective(net, x, fake, steps=steps, lr=1.0)
        return loss, torch.autograd.grad(loss, net.generator_parameters())

    plain_loss = generator_objective(net, net(z))
    (loss0, grads0), (loss3, grads3) = generator_gradient(0), generator_gradient(3)
    assert torch.equal(loss0, plain_loss) and not torch.allclose(loss3, plain_loss)
    assert any(not torch.allclose(a, b) for a, b in zip(grads0, grads3))
    assert all(torch.equal(v, before[k]) for k, v in net.discriminator.state_dict().items())


def test_the_adam_look_ahead_takes_the_discriminators_own_next_steps():
    """adam_unroll from ``AdamState.of`` an AdamW that has stepped three times (decay on, float64) lands where that
    AdamW's next two steps on the same loss land. Controls: a fresh optimizer's state (no moments, step 0) and plain
    gradient steps at its lr land elsewhere."""
    import practice_torch.gan as G
    from practice_torch.engine.players import AdamState

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64) + 0.5
    params = {"w": torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64)),
              "b": torch.nn.Parameter(torch.zeros((), dtype=torch.float64))}

    def loss(p):
        return G.softplus(-(x @ p["w"] + p["b"])).mean() + (p["w"] ** 2).sum()

    def ahead(state, steps=2):
        m, v = ({k: state.moments(p)[i] for k, p in params.items()} for i in (0, 1))
        out = G.adam_unroll(loss, dict(params), m, v, state.step, steps, state.lr, state.betas, state.eps,
                            state.weight_decay)
        return {k: t.detach() for k, t in out.items()}

    opt = torch.optim.AdamW(params.values(), lr=0.05, betas=(0.5, 0.999), weight_decay=0.1)
    fresh = AdamState.of(torch.optim.AdamW(params.values(), lr=0.05, betas=(0.5, 0.999), weight_decay=0.1))

    def step():
        opt.zero_grad()
        loss(params).backward()
        opt.step()

    for _ in range(3):
        step()
    state = AdamState.of(opt)
    predicted, restarted = ahead(state), ahead(fresh)
    plain = {k: t.detach() for k, t in G.unroll(loss, dict(params), 2, state.lr).items()}
    assert state.step == 3 and fresh.step == 0
    step(), step()
    for k, p in params.items():
        assert torch.allclose(predicted[k], p.detach(), rtol=0, atol=1e-12)
    assert all(not torch.allclose(other[k], params[k].detach(), rtol=0, atol=1e-6)
               for other in (restarted, plain) for k in ("w",))


def test_the_adam_look_ahead_refuses_an_optimizer_whose_steps_it_would_not_repeat():
    """``AdamState.of`` reads AdamW, and an Adam without weight decay (the same update: the look-ahead predicts its
    next step, the control); an Adam with weight_decay (L2 added to the gradient, not AdamW's decoupled decay),
    AMSGrad or another optimizer is a one-line ValueError, where it would once have applied AdamW's decay."""
    import practice_torch.gan as G
    from practice_torch.engine.players import AdamState

    w = torch.nn.Parameter(torch.tensor([0.3, -1.2], dtype=torch.float64))

    def loss(p):
        return ((p["w"] - 1.0) ** 4).sum()

    adam = torch.optim.Adam([w], lr=0.1)
    for _ in range(2):
        adam.zero_grad()
        loss({"w": w}).backward()
        adam.step()
    state = AdamState.of(adam)
    m, v = state.moments(w)
    predicted = G.adam_unroll(loss, {"w": w}, {"w": m}, {"w": v}, state.step, 1, state.lr, state.betas, state.eps,
                              state.weight_decay)["w"].detach()
    adam.zero_grad()
    loss({"w": w}).backward()
    adam.step()
    assert torch.allclose(predicted, w.detach(), rtol=0, atol=1e-12)
    for wrong, says in ((torch.optim.Adam([w], weight_decay=0.1), "adds weight_decay=0.1 to the gradient (L2)"),
                        (torch.optim.AdamW([w], amsgrad=True), "amsgrad and maximize change the update"),
                        (torch.optim.SGD([w], lr=0.1), "reads Adam or AdamW, got SGD")):
        with pytest.raises(ValueError, match=re.escape(says)):
            AdamState.of(wrong)


def test_an_unrolled_run_trains_through_the_cli_and_refuses_spectral_norm(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--out", str(run), "--steps", "4", *TINY, "--set", "model.unrolled_steps=2",
                 "--set", "model.minibatch_std=true"]) == 0
    assert json.loads((run / "checkpoints/latest.json").read_text())["step"] == 4
    assert main(["train", "gan", "--out", str(tmp_path / "adam"), "--steps", "3", *TINY, "--set",
                 "model.unrolled_steps=2", "--set", "model.unroll_optimizer=adam"]) == 0
    assert main(["train", "gan", "--out", str(tmp_path / "typo"), "--steps", "2", *TINY, "--set",
                 "model.unrolled_steps=2", "--set", "model.unroll_optimizer=rmsprop"]) == 2
    assert "expected one of sgd, adam, got 'rmsprop'" in capsys.readouterr().err
    assert main(["train", "gan", "--out", str(tmp_path / "bad"), "--steps", "2", *TINY, "--set",
                 "model.unrolled_steps=2", "--set", "model.spectral_norm=true"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_cli_trains_samples_and_evaluates_a_tiny_2d_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "20", "--out", str(run), *TINY]) == 0
    assert (run / "samples/samples.png").is_file()
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["modes"] == 8 and 0 <= metrics["high_quality"] <= 1 and metrics["discriminator_loss"] > 0
    capsys.readouterr()


def test_cli_trains_a_tiny_conditional_dcgan_with_one_row_per_class(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "4", "--out", str(run), *TINY_CONV, "--set", "model.conditional=true",
                 "--set", "model.generator_loss=saturating"]) == 0
    artefacts = gan_training.sample(*_open(run), 20, torch.Generator().manual_seed(0))
    assert artefacts[0].data.shape == (20, 1, 8, 8) and artefacts[0].nrow == 2
    assert artefacts[0].labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert main(["eval", str(run), "--no-sample-metrics", "--set", "model.eval_references=false"]) == 0
    capsys.readouterr()


def _open(run):
    from practice_torch.models import open_run

    _, cfg, net = open_run(run, torch.device("cpu"))
    return net, cfg.model


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.generator_loss=minimax"], "expected one of non_saturating, saturating"),
    (["--dataset", "names"], "vectors, images or log-mel spectrograms; names is text"),
    (["--set", "model.architecture=conv"], "architecture=conv needs images"),
    (["--set", "model.discriminator_steps=-1"], "model.discriminator_steps must be at least 0, got -1"),
    (["--set", "model.architecture=pacgan", "--set", "model.pieces=0"], "model.pieces must be positive, got 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["train", "gan", "--steps", "2", "--out", str(tmp_path / "run"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_conditional_gan_on_unlabelled_data_is_refused():
    with pytest.raises(ValueError, match="model.conditional=true needs class labels"):
        tiny_net(dataclasses.replace(GAUSSIANS, num_classes=0), conditional=True)


def test_a_tiny_gan_on_spoken_digit_log_mels_writes_spectrograms_and_wavs(tmp_path, capsys):
    from practice_torch.data import DatasetMissing
    from practice_torch.engine.runs import dataset_info

    cfg = apply_overrides(gan_training.default_config("quick", "spoken_digits"), [
        "data.limit=32", "model.channels=4,8", "model.fc=16", "model.latent_dim=4", "train.batch_size=16",
        "train.steps=2", "train.samples=8", "train.log_every=1", "train.device=cpu"])
    try:
        info = dataset_info(cfg.data)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    net = gan_training.build(cfg.model, info)
    assert info.shape == (1, 64, 64) and not net.generator.unit_interval and cfg.model.r1 > 0
    outcome = new_trainer(cfg, tmp_path / "run").run()
    wavs = sorted(p.name for p in outcome.files if p.suffix == ".wav")
    assert wavs[0] == "samples_audio-00.wav" and len(wavs) == 8 and (tmp_path / "run/samples/samples.png").is_file()
    with pytest.raises(ValueError, match="mel=false does not fit spoken_digits"):
        gan_training.build(dataclasses.replace(cfg.model, mel=False), info)
    capsys.readouterr()


# The quick presets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_quick_preset_covers_most_modes(tmp_path):
    assert main(["train", "gan", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["modes_covered"] >= 7 and metrics["high_quality"] > 0.6, metrics  # measured: 7 and 0.77


@pytest.mark.slow
def test_the_dcgan_quick_preset_beats_an_untrained_generator(tmp_path):
    assert main(["train", "gan", "--dataset", "fashion_mnist", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    # measured: FID 61.8 against 398.7 untrained (0.155), every class at least 4.35% of the samples
    assert metrics["fid_samples"] <= 0.3 * metrics["fid_untrained"] and metrics["class_share_min"] >= 0.04, metrics


@pytest.mark.slow
def test_the_cgan_names_its_asked_for_class_80_percent_of_the_time(tmp_path):
    """The conditional DCGAN at 10 000 steps (measured: 82.0%, FID 31.7)."""
    assert main(["train", "gan", "--dataset", "fashion_mnist", "--steps", "10000", "--set", "model.conditional=true",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--no-sample-metrics"]) == 0
    metrics = json.loads((tmp_path / "run/eval_test.json").read_text())
    assert metrics["class_accuracy"] >= 0.8 and metrics["fid_samples"] <= 0.3 * metrics["fid_untrained"], metrics


def test_the_reference_images_are_loaded_with_the_runs_data_options(monkeypatch):
    """eval's 'training images' reference is the train split of the evaluated split's data set as the run loads it:
    with data.classes=3 only 3s (the engine's sibling_split), not every digit of the data set by name."""
    from practice_torch.engine.config import DataConfig
    from practice_torch.engine.runs import load_split
    from practice_torch.gan import quality, sampling

    seen = {}
    monkeypatch.setattr(quality, "image_references", lambda *args, **kw: seen.update(train=args[3], name=args[4]) or {})
    test = load_split(DataConfig("digits", classes=(3,)), "test")
    net = gan_training.build(gan_training.Config(architecture="conv", latent_dim=4, channels=(4, 8), fc=16),
                             get_info("digits"))
    sampling.references(net, test, torch.Generator().manual_seed(0))
    labels = {int(seen["train"][i][1]) for i in range(len(seen["train"]))}
    assert labels == {3} and seen["name"] == "digits"
    everything = load_split(DataConfig("digits"), "train")  # the control: the data set by name has every digit
    assert len({int(everything[i][1]) for i in range(len(everything))}) == 10


@pytest.mark.parametrize("topic", ["gan", "wgan", "bigan"])
def test_evals_samples_bound_the_reference_fids_samples(topic, monkeypatch):
    """``eval --samples N`` reaches an evaluation that draws samples of its own: the reference FIDs compare at most N
    images (eval once drew 10 000 for them whatever N was); without it, as many as the held-out images (the
    control)."""
    from practice_torch.engine.runs import load_split
    from practice_torch.gan import quality
    from practice_torch.models import get_model

    seen = []
    monkeypatch.setattr(quality, "image_references", lambda *args, **kw: seen.append(kw["n"]) or {})
    module = get_model(topic)
    cfg = module.default_config("quick", "digits").model
    net, test = module.build(cfg, get_info("digits")), load_split(DataConfig("digits"), "test")
    module.evaluate(net, cfg, test, torch.Generator().manual_seed(0), samples=7)
    module.evaluate(net, cfg, test, torch.Generator().manual_seed(0))
    assert seen == [7, len(test)]


def test_eval_hands_its_samples_to_a_model_that_takes_them(tmp_path, monkeypatch, capsys):
    from practice_torch.gan import quality

    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "2", "--out", str(run), *TINY_CONV, "--set", "train.samples=0"]) == 0
    seen = []
    monkeypatch.setattr(quality, "image_references", lambda *args, **kw: seen.append(kw["n"]) or {})
    assert main(["eval", str(run), "--samples", "5", "--no-sample-metrics"]) == 0
    assert main(["eval", str(run), "--no-sample-metrics"]) == 0
    assert seen == [5, 269]  # the control: the digits' 269 test images
    capsys.readouterr()


@pytest.mark.parametrize("topic", ["gan", "wgan", "bigan", "f_divergence"])
def test_only_8_bit_images_get_a_generator_bounded_to_the_unit_interval(topic):
    """The galaxies are real-valued (sky noise below 0): a sigmoid generator could not draw them."""
    from practice_torch.models import get_model

    module = get_model(topic)
    cfg = module.default_config("quick", "fashion_mnist").model
    bounded = {name: module.build(cfg, get_info(name)).generator.unit_interval for name in ("fashion_mnist", "galaxies")}
    assert bounded == {"fashion_mnist": True, "galaxies": False}


def test_progressive_growing_grows_the_players_through_a_run_that_resumes_exactly(tmp_path, capsys):
    """``model.progressive=true`` on 8 x 8 digits (2 -> 4 -> 8): each step's logged stage and alpha are the schedule's
    (``growth``: a phase at 2 x 2, then each doubling faded in and held), a run stopped in the middle of a fade-in
    resumes to the uncut run's weights, the samples and eval are the grown network's; settings it does not take
    are one line."""
    from practice_torch.engine.metrics import read_metrics

    cfg = apply_overrides(gan_training.default_config("quick", "digits"), [
        "model.progressive=true", "model.width=4", "model.latent_dim=4", "model.phase_steps=2", "train.batch_size=16",
        "train.steps=10", "train.checkpoint_every=3", "train.log_every=1", "train.samples=8", "train.device=cpu",
        "data.limit=64"])
    resumed = assert_resumes_exactly(cfg, tmp_path, stop_at=3)  # step 3: the 4 x 4 stage half faded in
    from practice_torch.gan.quality import untrained_copy

    fresh = dict(untrained_copy(resumed.net).named_parameters())  # eval's untrained reference: every weight redrawn
    assert not any(torch.equal(p, fresh[name]) for name, p in resumed.net.named_parameters() if name.endswith("weight"))
    rows = read_metrics(tmp_path / "whole")
    assert [(r["stage"], r["alpha"]) for r in rows] == [functions.growth(r["step"] - 1, 2, 3) for r in rows]
    assert {r["stage"] for r in rows} == {0.0, 1.0, 2.0} and 0.5 in {r["alpha"] for r in rows}
    assert main(["eval", str(tmp_path / "whole"), "--no-sample-metrics", "--set", "model.eval_references=false"]) == 0
    assert json.loads((tmp_path / "whole/eval_test.json").read_text())["discriminator_loss"] > 0
    for wrong, message in ((["--set", "model.conditional=true"], "without model.conditional"),
                           (["--dataset", "gaussians"], "grows players on images; gaussians is not")):
        argv = ["train", "gan", "--out", str(tmp_path / "bad"), "--steps", "2", *TINY_CONV, "--set",
                "model.progressive=true", *wrong]
        assert main(argv) == 2 and message in capsys.readouterr().err
