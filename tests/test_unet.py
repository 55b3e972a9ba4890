"""The U-Net (``practice_torch.nets`` and its flax twin): shapes, one-line errors, what the embeddings do, and
negative controls on its spec (``shared_specs.nets.UNET_CASES``, run in full by tests/test_specs.py through the
ddpm spec): a spatially transposed conv kernel, flax's GroupNorm epsilon and interleaved sinusoids are caught. And
the conv layers of the flax twins (``theory_jax/nets/conv.py``) against flax's own: parameters, outputs, gradients,
with a planted fault in each caught by the same comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from practice_torch.nets import UNet, UNetConfig, timestep_embedding, timestep_frequencies
from shared_specs.case import init_weights
from shared_specs.nets import UNET_CASES
from shared_specs.runner import Perturbation, caught

CASES = {case.id: case for case in UNET_CASES}


def randomised(model: UNet, seed: int = 0) -> UNet:
    """The model with every weight drawn by the spec's initialiser (the zero-initialised convs hide everything)."""
    schema = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    weights = init_weights(schema, np.random.default_rng(seed))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model


@pytest.mark.parametrize(("config", "shape"), [
    (UNetConfig(), (1, 1, 28, 28)),  # the ddpm quick size: 28, 14, 7
    (UNetConfig(), (1, 1, 64, 64)),  # a (1, 64, 64) log-mel spectrogram
    (UNetConfig(channel_mults=(1, 2), attention_levels=(1,), groups=4, channels=16), (3, 1, 8, 8)),  # digits
    (UNetConfig(in_channels=3, out_channels=6, heads=4, num_res_blocks=2, num_classes=10), (2, 3, 16, 12)),
], ids=["28x28", "64x64-mel", "8x8-digits", "rgb-conditional"])
def test_shapes(config, shape):
    model = UNet(config)
    out = model(torch.randn(shape), torch.rand(shape[0]) * 1000)
    assert out.shape == (shape[0], config.out_channels, *shape[2:])
    assert torch.count_nonzero(out) == 0, "conv_out is zero-initialised: a fresh U-Net predicts eps = 0"


def test_the_flax_twin_takes_nhwc():
    """Shapes by tracing only (jax.eval_shape compiles nothing); its numbers are the spec's business."""
    import jax
    import jax.numpy as jnp

    from theory_jax.nets import UNet as FlaxUNet

    net = FlaxUNet(channels=8, channel_mults=(1, 2), attention_levels=(1,), groups=4, num_classes=3)
    x, t, y = jnp.zeros((2, 8, 12, 1)), jnp.array([3, 7]), jnp.array([0, 3])
    params = jax.eval_shape(net.init, jax.random.key(0), x, t)
    assert jax.eval_shape(lambda p: net.apply(p, x, t, y), params).shape == (2, 8, 12, 1)
    with pytest.raises(ValueError, match="divisible by 2"):
        jax.eval_shape(lambda p: net.apply(p, jnp.zeros((2, 7, 12, 1)), t), params)


@pytest.mark.parametrize(("settings", "message"), [
    ({"channels": 30}, "divisible by groups=8"),
    ({"channels": 7, "groups": 1}, "positive even"),
    ({"attention_levels": (3,)}, r"attention_levels \[3\] outside"),
    ({"heads": 3}, "heads=3 must divide"),
    ({"num_res_blocks": 0}, "num_res_blocks >= 1"),
    ({"cond_dim": -1}, "num_classes, cond_dim and context_dim >= 0"),
    ({"context_dim": -2}, "num_classes, cond_dim and context_dim >= 0"),
    ({"widths": 3}, "unknown U-Net settings"),
    ({"channels": 8, "channel_mults": (1,), "attention_levels": ()}, "removes the time and class embedding"),
])
def test_bad_configs_raise_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as info:
        UNet(**settings)
    assert "\n" not in str(info.value)


def test_a_unet_of_one_channel_a_group_everywhere_would_see_neither_t_nor_y(monkeypatch):
    """Why ``check`` refuses widths that are all ``groups``: each block adds the embedding of t (and y) per channel
    and then normalises, and a GroupNorm of one channel a group takes each channel's mean away, so such a U-Net's
    output is the same at every t and y. Control: at two channels a group it is not."""
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10.0, 10.0])

    def spread(groups):  # the largest change of the output over t and over y, perturbed weights
        torch.manual_seed(0)
        net = UNet(channels=8, channel_mults=(1,), attention_levels=(), groups=groups, num_classes=3)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
            y = torch.tensor([0, 0])
            return max(float((net(x, t, y) - net(x, 5 * t, y)).abs().max()),
                       float((net(x, t, y) - net(x, t, y + 1)).abs().max()))

    assert spread(4) > 0.1
    monkeypatch.setattr(UNetConfig, "check", lambda self: self)
    assert spread(8) < 1e-4


def test_bad_inputs_raise_one_line():
    model = UNet(channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match=r"divisible by 4, got \(2, 1, 30, 30\)"):
        model(torch.randn(2, 1, 30, 30), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.randn(2, 3, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 1, 28, 28), torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_labels_and_the_null_token():
    """y = None is the null row K of the class embedding; a real label gives a different output, per example."""
    k = 4
    model = randomised(UNet(channels=16, channel_mults=(1, 2), attention_levels=(1,), num_classes=k))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5.0, 50.0, 500.0])
    with torch.no_grad():
        null = model(x, t)
        assert torch.equal(null, model(x, t, torch.full((3,), k)))
        labelled = model(x, t, torch.tensor([0, k, 2]))
    assert torch.equal(labelled[1], null[1])
    assert (labelled[[0, 2]] - null[[0, 2]]).abs().amax() > 1e-3


def test_a_continuous_condition_is_required_and_changes_each_example():
    """cond_dim = P: the output depends on cond (B, P) per example; cond is required, and refused without cond_dim."""
    model = randomised(UNet(channels=16, channel_mults=(1, 2), attention_levels=(1,), cond_dim=5))
    x, t, c = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9]), torch.rand(3, 5) * 2 - 1
    with torch.no_grad():
        base = model(x, t, cond=c)
        moved = model(x, t, cond=torch.cat([c[:1], c[1:2] + 0.5, c[2:]]))
    assert torch.equal(moved[[0, 2]], base[[0, 2]]) and (moved[1] - base[1]).abs().amax() > 1e-3
    for bad, message in [(None, r"cond of shape \(3, 5\), got None"), (c[:, :4], r"got \(3, 4\)")]:
        with pytest.raises(ValueError, match=message) as info:
            model(x, t, cond=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cond_dim=0"):
        UNet(channel_mults=(1, 2), attention_levels=(1,))(torch.randn(3, 1, 8, 8), t, cond=c)


def test_the_output_depends_on_t_and_long_t_equals_float_t():
    model = randomised(UNet(channels=16, channel_mults=(1, 2), attention_levels=(1,)))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a, b = model(x, torch.tensor([10, 10])), model(x, torch.tensor([10.0, 600.0]))
        assert torch.allclose(a[0], b[0], atol=1e-6) and (a[1] - b[1]).abs().amax() > 1e-3
        assert torch.equal(model(x, torch.tensor(10)), a)  # a scalar t is broadcast over the batch


def test_timestep_embedding_is_sin_then_cos_with_transformer_frequencies():
    emb = timestep_embedding(torch.tensor([0.0, 3.0]), 8)
    freqs = 10000.0 ** (-np.arange(4) / 4)
    np.testing.assert_allclose(emb[1].numpy(), np.concatenate([np.sin(3 * freqs), np.cos(3 * freqs)]), rtol=1e-6)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def compiled_targets(fn, *args) -> list[str]:
    """The functions the graph torch.compile captures of ``fn(*args)`` calls (one graph, or an error)."""
    graphs = []

    def keep(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=keep, fullgraph=True)(*args)
    return [str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"]


def test_the_nets_keep_their_frequencies_so_a_compiled_step_runs_no_numpy():
    """The U-Net's time embedding and the 2-D denoiser read the NumPy frequencies from a buffer (the same values,
    not in their state_dict): NumPy traced into a compiled graph (the control: the embedding without the buffer)
    is emulated by torch ops and keeps the graph out of AOTAutograd's cache, so every run recompiled its backward."""
    from practice_torch.nets import MLPDenoiser
    from practice_torch.nets.unet import TimeEmbedding

    t = torch.tensor([1, 500])
    embedding, denoiser = TimeEmbedding(8), MLPDenoiser(2, hidden=8, depth=1)
    for fn, args in ((embedding, (t,)), (denoiser, (torch.zeros(2, 2), t))):
        assert not any("Wrapped" in name for name in compiled_targets(fn, *args))
        assert "frequencies" not in fn.state_dict()
    torch.testing.assert_close(embedding.frequencies, torch.as_tensor(timestep_frequencies(8)), rtol=0, atol=0)
    assert any("Wrapped" in name for name in compiled_targets(lambda t: timestep_embedding(t, 8), t))


# Negative controls: each convention trap of the twin, planted on the JAX side, fails the spec. -----------------
def test_a_transposed_conv_kernel_is_caught(both):
    def transpose_conv_1(params):
        block = dict(params)
        block["conv_1"] = {**block["conv_1"], "kernel": np.swapaxes(block["conv_1"]["kernel"], 0, 1)}
        return block

    message = caught(CASES["nets/unet_res_block/shortcut"], Perturbation("3x3 kernel transposed", params=transpose_conv_1))
    assert "output" in message


def test_flax_groupnorm_epsilon_is_caught(both, monkeypatch):
    import theory_jax.nets.unet as jax_unet

    monkeypatch.setattr(jax_unet, "GROUPNORM_EPS", 1e-6)  # flax's default
    assert "output" in caught(CASES["nets/unet_res_block/shortcut"], Perturbation("GroupNorm eps 1e-6"))


def test_interleaved_sinusoids_are_caught(both, monkeypatch):
    import jax.numpy as jnp

    import theory_jax.nets.unet as jax_unet

    blocks = jax_unet.timestep_embedding

    def interleaved(t, dim):  # [sin w0, cos w0, sin w1, ...]: Vaswani's layout, not Ho et al.'s blocks
        return jnp.stack(jnp.split(blocks(t, dim), 2, axis=-1), axis=-1).reshape(len(t), dim)

    monkeypatch.setattr(jax_unet, "timestep_embedding", interleaved)
    assert "output" in caught(CASES["nets/unet_time_embedding"], Perturbation("interleaved sin/cos"))


def test_cross_attention_catches_a_mask_that_lets_padding_through_and_keys_swapped_with_values(both):
    """The padded captions' extra tokens read on the JAX side (its mask all True), then the [k | v] blocks of ``kv``
    taken as [v | k]: each changes the output; with its own mask, no gradient reaches a padded token in PyTorch (the
    case holds the JAX twin's gradients to these)."""
    case = CASES["nets/unet_cross_attention/padded"]
    leak = Perturbation("padding let through", inputs=lambda d: {**d, "mask": np.ones_like(d["mask"])})
    message = caught(case, leak)
    assert "output" in message and "context" in message  # the padded tokens now get gradients

    def swap_kv(params):
        kernel, bias = params["kv"]["kernel"], params["kv"]["bias"]
        half = kernel.shape[1] // 2
        return {**params, "kv": {"kernel": np.concatenate([kernel[:, half:], kernel[:, :half]], 1),
                                 "bias": np.concatenate([bias[half:], bias[:half]])}}

    assert "output" in caught(case, Perturbation("[v | k]", params=swap_kv))

    from practice_torch.nets import CrossAttentionBlock

    block = CrossAttentionBlock(16, 12, heads=2, groups=4)
    torch.nn.init.normal_(block.out.weight)  # zero-initialised, as a new block starts: the identity
    inputs = case.make_inputs(np.random.default_rng(0))
    context = torch.from_numpy(inputs["context"]).requires_grad_()
    block(torch.from_numpy(inputs["x"]), context, torch.from_numpy(inputs["mask"])).sum().backward()
    assert context.grad[~torch.from_numpy(inputs["mask"])].abs().max() == 0
    assert context.grad[torch.from_numpy(inputs["mask"])].abs().min() > 0


def test_the_mlp_denoisers_spec_catches_a_null_label_in_row_0_and_swapped_time_layers(both):
    """The MLP denoiser of vectors (``nets/mlp_denoiser``): a class table whose null token is row 0 instead of row K,
    and the time MLP's two layers swapped (same shapes: hidden x hidden), are each caught."""
    def null_first(params):  # rows shifted: the null token K read from row 0
        return {**params, "label": {"embedding": np.roll(params["label"]["embedding"], 1, axis=0)}}

    def swapped_time(params):
        return {**params, "time_0": params["time_2"], "time_2": params["time_0"]}

    assert "output" in caught(CASES["nets/mlp_denoiser/conditional"], Perturbation("null row 0", params=null_first))
    assert "output" in caught(CASES["nets/mlp_denoiser"], Perturbation("time layers swapped", params=swapped_time))


# The benchmark's diffusers twin really is the same network (speed itself is never asserted). ----------------
def test_the_benchmark_twin_has_our_parameter_count():
    pytest.importorskip("diffusers")
    from benchmarks.unet import SIZES, diffusers_twin

    for _, config, size, _ in SIZES:
        ours, theirs = UNet(config), diffusers_twin(config, size)
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_the_benchmark_counts_cpu_attention_and_runs_without_diffusers(monkeypatch):
    import sys

    from benchmarks.timing import count_flops
    from benchmarks.unet import diffusers_twin

    q = torch.randn(1, 2, 16, 4)
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 2 * 2 * 2 * 16 * 16 * 4
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    assert diffusers_twin(UNetConfig(), 28) is None


def test_the_twins_agree_in_float64_at_large_t_and_a_float32_sinusoid_is_caught(monkeypatch):
    """``theory_jax check`` runs both U-Nets in float64: the JAX twin must compute t's sinusoid in the images'
    precision, as the torch net does in its weights'. Computed in float32 (t = 900, angles to 900 rad) it is off by
    about 1e-5 and the outputs part at 1e-8; in float64 they agree to roundoff."""
    import jax
    import jax.numpy as jnp

    import theory_jax.nets.unet as junet
    from shared_specs.interop import torch_to_flax
    from theory_jax.nets import UNet as FlaxUNet

    config = UNetConfig(channel_mults=(1, 2), attention_levels=(1,), groups=4, channels=16)
    net = randomised(UNet(config)).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([900, 37])
    with torch.no_grad():
        expected = net(x, t).permute(0, 2, 3, 1).numpy()
    twin = FlaxUNet(channels=16, channel_mults=(1, 2), attention_levels=(1,), groups=4)
    weights = {k: v.detach().numpy() for k, v in net.named_parameters()}

    def jax_out():
        with jax.enable_x64(True):
            xj, tj = jnp.asarray(x.permute(0, 2, 3, 1).numpy()), jnp.asarray(t.numpy())
            template = jax.eval_shape(lambda: twin.init(jax.random.key(0), xj, tj))["params"]
            params = torch_to_flax(weights, template)
            # jitted whole (one program, not one per operation), traced anew each call: the patched sinusoid counts
            return np.asarray(jax.jit(lambda p, x, t: twin.apply({"params": p}, x, t))(params, xj, tj))

    assert np.abs(jax_out() - expected).max() < 1e-11
    embedding = junet.timestep_embedding
    monkeypatch.setattr(junet, "timestep_embedding", lambda t, dim: embedding(t.astype(jnp.float32), dim))
    assert np.abs(jax_out() - expected).max() > 1e-9


# The conv layers of the flax twins (theory_jax/nets/conv.py): flax's parameters, flax's forward, lax's gradients. --
TRANSPOSED = {"3x3-p1-q1": (3, 1, 1), "4x4-p1-q0": (4, 1, 0)}  # the VAEs' decoders; the GAN's and CycleGAN's


def same_params(ours, theirs, x):
    """Both modules' params, initialised from one key (x64 on: flax's are float32 all the same): equal leaf for leaf,
    dtypes included; flax's returned."""
    import jax

    mine, flax_params = ours.init(jax.random.key(0), x), theirs.init(jax.random.key(0), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), mine) == jax.tree.map(lambda a: (a.shape, a.dtype), flax_params)
    jax.tree.map(np.testing.assert_array_equal, mine, flax_params)
    return flax_params


def randomised_like(params, dtype, rng):
    """Every leaf redrawn from N(0, 1) in ``dtype`` (a nonzero bias, a scale away from 1)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), dtype), params)


def transposed_convs(kernel: int, padding: int, output_padding: int, dtype):
    """(ours, flax's) stride-2 transposed convs with torch's padding and output padding, flax's params for both, an
    input (2, 5, 4, 4) (H != W) and a cotangent for the output, all in ``dtype``."""
    import flax.linen as nn
    import jax.numpy as jnp

    from theory_jax.nets.conv import ConvTranspose

    lo = kernel - 1 - padding
    pad = ((lo, lo + output_padding),) * 2
    ours = ConvTranspose(3, (kernel, kernel), strides=(2, 2), padding=pad)
    theirs = nn.ConvTranspose(3, (kernel, kernel), strides=(2, 2), padding=pad, transpose_kernel=True)
    rng = np.random.default_rng(kernel)
    x = jnp.asarray(rng.standard_normal((2, 5, 4, 4)), dtype)
    params = randomised_like(same_params(ours, theirs, x), dtype, rng)
    cotangent = jnp.asarray(rng.standard_normal(theirs.apply(params, x).shape), dtype)
    return ours, theirs, params, x, cotangent


def gradient_gap(ours, theirs, params, x, cotangent) -> float:
    """The largest relative gap between the two modules' gradients of <y, c> w.r.t. the input and every parameter."""
    import jax
    import jax.numpy as jnp

    def grads(module):
        return jax.grad(lambda p, x: jnp.vdot(module.apply(p, x), cotangent), argnums=(0, 1))(params, x)

    gaps = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max() / jnp.abs(b).max()), grads(ours), grads(theirs))
    return max(jax.tree.leaves(gaps))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", TRANSPOSED.values(), ids=TRANSPOSED.keys())
def test_our_transposed_conv_is_flaxs_bit_for_bit(config, dtype):
    import jax

    with jax.enable_x64(True):
        ours, theirs, params, x, _ = transposed_convs(*config, dtype)
        assert ours.apply(params, x).dtype == dtype
        np.testing.assert_array_equal(ours.apply(params, x), theirs.apply(params, x))


@pytest.mark.parametrize("config", TRANSPOSED.values(), ids=TRANSPOSED.keys())
def test_our_transposed_conv_has_lax_gradients_and_a_wrong_kernel_path_is_caught(config, monkeypatch):
    """Its input and kernel gradients are lax's to float64 round-off; the kernel's comes from its own path
    (``conv_transpose_swapped``), so a kernel read with its taps flipped, or written one pixel off (p + 1, q + 2:
    the same output size), leaves the forward pass as it is and is caught by the same comparison."""
    import jax

    import theory_jax.nets.conv as conv

    with jax.enable_x64(True):
        pair = transposed_convs(*config, "float64")
        assert gradient_gap(*pair) < 1e-12
        swapped = conv.conv_transpose_swapped
        faults = {"taps flipped": lambda x, w, s, p, q: swapped(x, w[::-1, ::-1], s, p, q),
                  "one pixel off": lambda x, w, s, p, q: swapped(x, w, s, p + 1, q + 2)}
        for name, fault in faults.items():
            monkeypatch.setattr(conv, "conv_transpose_swapped", fault)
            assert gradient_gap(*pair) > 1e-2, f"{name} went unnoticed"


def test_our_transposed_conv_takes_only_what_it_implements():
    import jax
    import jax.numpy as jnp

    from theory_jax.nets.conv import ConvTranspose

    x, fits = jnp.zeros((1, 3, 3, 2)), {"kernel_size": (3, 3), "strides": (2, 2), "padding": ((1, 2), (1, 2))}
    for misfit in ({"kernel_size": (3, 2)}, {"strides": (2, 1)}, {"padding": ((1, 2), (1, 1))},
                   {"padding": ((3, 3), (3, 3))}, {"padding": ((1, 0), (1, 0))}):  # p < 0; q < 0
        with pytest.raises(ValueError, match="square kernel"):
            ConvTranspose(2, **{**fits, **misfit}).init(jax.random.key(0), x)


def test_our_group_norm_is_flaxs_and_interleaved_or_merged_groups_are_caught(monkeypatch):
    """Flax's two-pass GroupNorm (torch's): the same parameters; outputs and gradients to float64 round-off, outputs
    to float32's (its sums are taken per channel first). Groups of channels c, c + G, ... instead of C/G neighbours,
    or all channels one group, are caught by the same comparison."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    import theory_jax.nets.conv as conv

    with jax.enable_x64(True):
        ours, theirs = conv.GroupNorm(num_groups=3, epsilon=1e-5), nn.GroupNorm(3, epsilon=1e-5, use_fast_variance=False)
        rng = np.random.default_rng(0)
        x = jnp.asarray(3 + rng.standard_normal((2, 5, 4, 6)), "float64")  # an offset: the variance is two-pass
        params = randomised_like(same_params(ours, theirs, x), "float64", rng)
        np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.apply(params, x.astype("float32")), theirs.apply(params, x.astype("float32")),
                                   rtol=1e-5, atol=1e-5)
        cotangent = jnp.asarray(rng.standard_normal(x.shape))
        assert gradient_gap(ours, theirs, params, x, cotangent) < 1e-12
        group_norm, channels = conv.group_norm, np.arange(6).reshape(2, 3).T.reshape(-1)  # 0 3 1 4 2 5
        faults = {"interleaved groups": lambda x, s, b, g, e: group_norm(x[..., channels], s[channels], b[channels], g,
                                                                         e)[..., np.argsort(channels)],
                  "one group": lambda x, s, b, g, e: group_norm(x, s, b, 1, e)}
        for name, fault in faults.items():
            monkeypatch.setattr(conv, "group_norm", fault)
            assert gradient_gap(ours, theirs, params, x, cotangent) > 1e-2, f"{name} went unnoticed"


def test_our_unflatten_dense_is_dense_then_unflatten_bit_for_bit_and_a_plain_reshape_is_caught():
    """``UnflattenDense`` is ``Dense(C H W)`` then ``unflatten_image`` (torch's ``view(C, H, W)``, to NHWC) with the
    same parameters, the same outputs to the bit and the same gradients to float64 round-off; a plain reshape of the
    Dense's output to (H, W, C) is not."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from theory_jax.nets.conv import UnflattenDense
    from theory_jax.vae import unflatten_image

    shape = (3, 2, 4)  # (C, H, W)

    class DenseThenUnflatten(nn.Module):
        @nn.compact
        def __call__(self, h):
            return unflatten_image(nn.Dense(24, name="project")(h), shape)

    class Ours(nn.Module):
        @nn.compact
        def __call__(self, h):
            return UnflattenDense(shape, name="project")(h)

    with jax.enable_x64(True):
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(1)
            h = jnp.asarray(rng.standard_normal((5, 7)), dtype)
            params = randomised_like(same_params(Ours(), DenseThenUnflatten(), h), dtype, rng)
            y = Ours().apply(params, h)
            assert y.shape == (5, 2, 4, 3) and y.dtype == dtype
            np.testing.assert_array_equal(y, DenseThenUnflatten().apply(params, h))
        plain = nn.Dense(24).apply({"params": params["params"]["project"]}, h).reshape(5, 2, 4, 3)
        assert np.abs(plain - y).max() > 1e-2
        cotangent = jnp.asarray(rng.standard_normal(y.shape))
        assert gradient_gap(Ours(), DenseThenUnflatten(), params, h, cotangent) < 1e-12
