"""The transformer trunk (``practice_torch.nets.Transformer``) and the pure attention functions: the key-value cache
equals the full forward, causality, the fast path equals the written-out math, one-line errors, and negative
controls on the spec (``shared_specs/transformer.py``, run in full by tests/test_specs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from practice_torch import transformer as T
from practice_torch.nets import Transformer, TransformerConfig
from shared_specs.case import init_weights
from shared_specs.runner import Perturbation, caught
from shared_specs.transformer import CASES as SPEC_CASES

SMALL = {"dim": 32, "heads": 4, "layers": 2, "max_len": 24}
POSITIONS = ["learned", "sinusoidal", "rope", "none"]


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight drawn by the spec's initialiser, at unit scale (GPT-2's N(0, 0.02) hides a wrong mask)."""
    schema = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    weights = init_weights(schema, np.random.default_rng(seed))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model.eval()


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("position", POSITIONS)
def test_the_kv_cache_forward_equals_the_full_forward(position, norm):
    """Prompt of 5, then chunks of 1, 3 and 1 tokens: every row equals the full forward's (incremental decoding)."""
    torch.manual_seed(0)
    model = randomised(Transformer(**SMALL, position=position, norm=norm))
    h = torch.randn(2, 10, SMALL["dim"])
    with torch.no_grad():
        full = model(h)
        cache = model.init_cache(batch=2)
        parts = [model(h[:, a:b], cache=cache) for a, b in [(0, 5), (5, 6), (6, 9), (9, 10)]]
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_the_cache_one_token_at_a_time_and_rms_norm_without_bias():
    model = randomised(Transformer(**SMALL, position="rope", norm_kind="rms", bias=False))
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    h = torch.randn(3, 8, SMALL["dim"])
    with torch.no_grad():
        full, cache = model(h), model.init_cache(3)
        steps = torch.cat([model(h[:, i:i + 1], cache=cache) for i in range(8)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)


def test_a_selected_cache_continues_the_selected_rows():
    """Beam search keeps and repeats hypotheses: select(index) makes the cache that of h[index]."""
    model = randomised(Transformer(**SMALL, position="rope"))
    h, index = torch.randn(3, 6, SMALL["dim"]), torch.tensor([2, 2, 0])
    with torch.no_grad():
        cache = model.init_cache(3)
        model(h[:, :5], cache=cache)
        last = model(h[index, 5:], cache=cache.select(index))
        torch.testing.assert_close(last, model(h[index])[:, 5:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_causality_output_i_ignores_inputs_after_i(position):
    """Changing the inputs at positions > 4 leaves outputs 0..4 bit-for-bit unchanged, and changes output 5."""
    model = randomised(Transformer(**SMALL, position=position))
    h = torch.randn(2, 9, SMALL["dim"])
    later = h.clone()
    later[:, 5:] += torch.randn(2, 4, SMALL["dim"])
    with torch.no_grad():
        a, b = model(h), model(later)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert (a[:, 5] - b[:, 5]).abs().amax() > 1e-2


def test_bidirectional_attention_sees_the_future():
    model = randomised(Transformer(**SMALL, causal=False))
    h = torch.randn(1, 6, SMALL["dim"])
    later = h.clone()
    later[:, -1] += torch.randn(SMALL["dim"])  # not a constant: LayerNorm removes that
    with torch.no_grad():
        assert (model(h)[:, 0] - model(later)[:, 0]).abs().amax() > 1e-3


def test_without_positions_the_bidirectional_trunk_is_permutation_equivariant():
    model = randomised(Transformer(**SMALL, causal=False, position="none"))
    h, perm = torch.randn(2, 7, SMALL["dim"]), torch.randperm(7)
    with torch.no_grad():
        torch.testing.assert_close(model(h[:, perm]), model(h)[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rotary", [False, True])
def test_the_fast_attention_equals_the_written_out_multi_head_attention(rotary):
    """``MultiHeadAttention`` (fused qkv, SDPA) is ``transformer.multi_head_attention`` (a loop over heads)."""
    from practice_torch.nets import MultiHeadAttention

    attn = randomised(MultiHeadAttention(32, 4, rope=rotary)).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    with torch.no_grad():
        slow = T.multi_head_attention(x, attn.qkv.weight, attn.qkv.bias, attn.out.weight, attn.out.bias, heads=4,
                                      causal=True, rotary=rotary)
        torch.testing.assert_close(attn(x), slow, rtol=1e-12, atol=1e-12)


def test_layer_norm_and_rms_norm_equal_torch():
    x, g, b = torch.randn(4, 16, dtype=torch.float64), torch.randn(16, dtype=torch.float64), torch.randn(16).double()
    torch.testing.assert_close(T.layer_norm(x, g, b), torch.nn.functional.layer_norm(x, (16,), g, b, eps=1e-5))
    torch.testing.assert_close(T.rms_norm(x, g), torch.nn.functional.rms_norm(x, (16,), g, eps=1e-5))
    torch.testing.assert_close(T.gelu(x), torch.nn.functional.gelu(x))


def test_the_default_config_is_nanogpt_shakespeare_char_size():
    cfg = TransformerConfig()
    assert (cfg.dim, cfg.heads, cfg.layers, cfg.mlp_ratio, cfg.norm, cfg.position) == (128, 4, 4, 4, "pre", "learned")
    model = Transformer()
    blocks = sum(p.numel() for p in model.blocks.parameters())
    assert blocks == 4 * (12 * 128**2 + 13 * 128)  # per block: qkv 3D^2+3D, out D^2+D, mlp 8D^2+5D, two norms 4D
    assert model(torch.zeros(2, 64, 128)).shape == (2, 64, 128)


@pytest.mark.parametrize(("settings", "message"), [
    ({"dim": 30, "heads": 4}, "heads dividing dim"),
    ({"norm": "middle"}, "norm must be"),
    ({"norm_kind": "batch"}, "norm_kind"),
    ({"position": "alibi"}, "position must be one of"),
    ({"position": "rope", "dim": 12, "heads": 4}, "even head width"),
    ({"dropout": 1.0}, "dropout"),
    ({"width": 3}, "unknown transformer settings"),
])
def test_bad_configs_raise_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as info:
        Transformer(**settings)
    assert "\n" not in str(info.value)


def test_bad_inputs_raise_one_line():
    model = Transformer(**SMALL)
    with pytest.raises(ValueError, match=r"\(B, T, 32\), got \(2, 5, 16\)"):
        model(torch.zeros(2, 5, 16))
    with pytest.raises(ValueError, match="exceed max_len=24"):
        model(torch.zeros(1, 25, 32))
    cache = model.init_cache(1)
    model(torch.zeros(1, 20, 32), cache=cache)
    with pytest.raises(ValueError, match="cache holds 24 positions; 20 \\+ 5"):
        model(torch.zeros(1, 5, 32), cache=cache)


def test_masked_weights_are_exactly_zero_and_rows_sum_to_one():
    q, k = torch.randn(2, 6, 8, dtype=torch.float64), torch.randn(2, 9, 8, dtype=torch.float64)
    w = T.attention_weights(q, k, causal=True)
    allowed = T.causal_mask(6, 9)
    assert torch.all(w[:, ~allowed] == 0) and torch.all(w[:, allowed] > 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 6, dtype=torch.float64))
    assert allowed[0].tolist() == [True] * 4 + [False] * 5  # query 0 is position 3 of 9


def test_rope_relative_position_in_torch():
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    def score(m, n):
        return (T.rope(q[None], torch.tensor([float(m)])) * T.rope(k[None], torch.tensor([float(n)]))).sum()
    torch.testing.assert_close(score(7, 3), score(104, 100))
    assert abs(score(7, 3) - score(7, 4)) > 1e-3


def test_sinusoidal_embedding_is_interleaved_sin_cos():
    emb = T.sinusoidal_embedding(torch.tensor([0.0, 3.0], dtype=torch.float64), 8)
    freqs = 10000.0 ** (-np.arange(0, 8, 2) / 8)
    np.testing.assert_allclose(emb[1, 0::2].numpy(), np.sin(3 * freqs), rtol=1e-14)
    np.testing.assert_allclose(emb[1, 1::2].numpy(), np.cos(3 * freqs), rtol=1e-14)
    assert emb[0].tolist() == [0.0, 1.0] * 4


# Negative controls: each convention trap, planted on the JAX side, fails the spec. ----------------------------------
CASES = {case.id: case for case in SPEC_CASES}


def rotate_half(x, positions):
    """The GPT-NeoX convention: rotate (x_i, x_{i + d/2}) instead of the paper's interleaved (x_{2i}, x_{2i+1})."""
    import jax.numpy as jnp

    from theory_jax.nets import attention

    half = x.shape[-1] // 2
    angles = attention._angles(positions, x.shape[-1], x.dtype)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x0, x1 = x[..., :half], x[..., half:]
    return jnp.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def test_a_missing_causal_mask_is_caught(both):
    def unmasked(fn):
        return lambda **kw: fn(**{**kw, "causal": False})

    message = caught(CASES["transformer/scaled_dot_product_attention/causal"], Perturbation("no mask", fn=unmasked))
    assert "output" in message


def test_rotate_half_rope_is_caught_in_the_function_and_the_module(both, monkeypatch):
    import theory_jax.nets.transformer as jax_nets

    assert "output" in caught(CASES["transformer/rope"], Perturbation("rotate-half", fn=lambda fn: rotate_half))
    monkeypatch.setattr(jax_nets, "rope", rotate_half)
    assert "output" in caught(CASES["nets/transformer_attention/rope-no-bias"], Perturbation("rotate-half rope"))


def test_block_sinusoids_are_caught(both):
    import jax.numpy as jnp

    def blocks(fn):  # [sin ... | cos ...]: the U-Net's timestep layout, not the paper's interleaving
        def embed(positions, dim):
            pe = fn(positions, dim)
            return jnp.concatenate([pe[:, 0::2], pe[:, 1::2]], axis=-1)
        return embed

    assert "output" in caught(CASES["transformer/sinusoidal_embedding"], Perturbation("[sin | cos]", fn=blocks))


def test_flax_norm_epsilon_and_tanh_gelu_are_caught(both, monkeypatch):
    import jax

    import theory_jax.nets.transformer as jax_nets

    with monkeypatch.context() as patch:
        patch.setattr(jax_nets, "NORM_EPS", 1e-6)  # flax's default
        assert "output" in caught(CASES["nets/transformer_block/pre-layer-norm"], Perturbation("LayerNorm eps 1e-6"))
    monkeypatch.setattr(jax_nets, "gelu", jax.nn.gelu)  # approximate=True by default
    assert "output" in caught(CASES["nets/transformer_mlp"], Perturbation("tanh GELU"))


def test_swapped_query_and_key_blocks_are_caught(both):
    """The fused qkv kernel read as [k | q | v]: the logits transpose, which only the causal mask exposes."""
    def swap(params):
        kernel = params["qkv"]["kernel"]
        q, k, v = np.split(np.asarray(kernel), 3, axis=1)
        return {**params, "qkv": {**params["qkv"], "kernel": np.concatenate([k, q, v], axis=1)}}

    assert "output" in caught(CASES["nets/transformer_attention"], Perturbation("[k | q | v]", params=swap))


# The benchmark's FLOP count (speed itself is never asserted). ----------------------------------------------------
def test_the_benchmark_counts_the_flops_torch_counts():
    """6 N + 12 L T d per token is within 3% of FlopCounterMode's count of one forward + backward."""
    from benchmarks.timing import count_flops
    from benchmarks.transformer import VOCAB, CharTransformer, analytic_flops_per_token

    config = TransformerConfig(dim=32, heads=2, layers=2, max_len=16)
    model, tokens = CharTransformer(config), torch.randint(0, VOCAB, (2, 16))
    counted = count_flops(lambda: model(tokens, tokens).backward())
    assert 1.0 <= counted / (analytic_flops_per_token(config, context=16) * 32) < 1.03


@pytest.mark.slow
def test_the_mkl_vendor_shim_keeps_matmul_results():
    """On AMD with MKL and a C compiler: a child process with the shim preloaded multiplies like this one."""
    import os
    import subprocess
    import sys

    from benchmarks.transformer import mkl_shim

    shim = mkl_shim()
    if shim is None:
        pytest.skip("not an AMD CPU with MKL and a C compiler")
    a = torch.randn(300, 200, dtype=torch.float64)
    code = "import sys, torch; a = torch.load(sys.argv[1]); print(repr((a @ a.T).sum().item()))"
    path = os.path.join(os.path.dirname(shim), "a.pt")
    torch.save(a, path)
    out = subprocess.run([sys.executable, "-c", code, path], env={**os.environ, "LD_PRELOAD": shim},
                         capture_output=True, text=True, check=True).stdout
    assert abs(float(out) - (a @ a.T).sum().item()) < 1e-8 * (a @ a.T).abs().sum().item()
