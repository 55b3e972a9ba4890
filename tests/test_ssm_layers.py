"""SSM layers: the recurrent mode (token by token) equals the parallel mode (float32, 1e-5) at L = 1024 for S4D and
Mamba in PyTorch and in JAX, and the stack decodes with ``start``/``advance``; negative controls (B by ZOH where Mamba
says Euler, a kernel off by one step, a scan that drops its carry) caught in PyTorch by the agreement and in JAX by
the spec cases."""

import pytest
import torch

from practice_torch.ssm import functions, layers
from practice_torch.ssm.layers import S4D, Mamba, SSMBlock, SSMStack
from shared_specs import topics
from shared_specs.runner import Perturbation, caught, run_case

torch.set_num_threads(1)


def max_diff(layer, length, batch=2, channels=4):
    torch.manual_seed(0)
    u = torch.randn(batch, length, channels)
    with torch.no_grad():
        return (layer(u) - layer.recurrent(u)).abs().max().item()


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_recurrent_equals_convolution_at_1024(init):
    torch.manual_seed(1)
    assert max_diff(S4D(4, 16, imag_init=init), 1024) < 1e-5


def test_mamba_recurrent_equals_parallel_at_1024():
    torch.manual_seed(2)
    assert max_diff(Mamba(4, 8), 1024) < 1e-5


def test_mamba_parallel_scan_equals_sequential_reference():
    torch.manual_seed(3)
    u, delta = torch.randn(64, 6), torch.nn.functional.softplus(torch.randn(64, 6))
    a, b, c = -torch.rand(6, 4) - 0.1, torch.randn(64, 4), torch.randn(64, 4)
    torch.testing.assert_close(functions.selective_scan(u, delta, a, b, c),
                               functions.selective_scan_sequential(u, delta, a, b, c), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["s4d", "mamba"])
def test_stack_start_advance_equals_forward(kind):
    torch.manual_seed(4)
    net = SSMStack(11, channels=8, layers=2, kind=kind, state=8)
    x = torch.randint(0, 11, (2, 40))
    with torch.no_grad():
        full = net(x)
        logits, state = net.start(x[:, :30])
        torch.testing.assert_close(logits, full[:, 29], atol=1e-5, rtol=1e-5)
        for t in range(30, 40):
            logits, state = net.advance(x[:, t], state)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["s4d", "mamba"])
@pytest.mark.parametrize("length", [2, 37])  # 2: shorter than Mamba's conv window (K - 1 = 3)
def test_prefill_reaches_the_state_of_the_token_by_token_recurrence(kind, length):
    """``start`` reads the prompt in parallel: every block's state equals the one ``step`` reaches token by token."""
    torch.manual_seed(6)
    net = SSMStack(11, channels=8, layers=2, kind=kind, state=8)
    x = torch.randint(0, 11, (3, length))
    with torch.no_grad():
        logits, state = net.start(x)
        slow = net.init_state(3)
        for t in range(length):
            slow_logits, slow = net.step(x[:, t], slow)
    torch.testing.assert_close(logits, slow_logits, atol=1e-5, rtol=1e-5)
    for fast, reference in zip(state, slow, strict=True):
        for a, b in zip(fast if isinstance(fast, tuple) else (fast,), reference if isinstance(reference, tuple)
                        else (reference,), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_stack_generates_with_the_language_model_decoder():
    from practice_torch.language_model.networks import generate
    torch.manual_seed(5)
    net = SSMStack(11, channels=8, layers=1, state=8)
    out = generate(net, torch.randint(0, 11, (2, 5)), 6, "greedy")
    assert out.shape == (2, 6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="odd"):
        S4D(4, 7)
    with pytest.raises(ValueError, match="init"):
        S4D(4, 8, imag_init="legs")
    with pytest.raises(ValueError, match="kind"):
        SSMBlock(4, kind="lstm")


def test_negative_control_mamba_b_by_zoh_is_caught(monkeypatch):
    """B discretised by ZOH ((exp(Delta A) - 1) / A B) where the convention is Euler (Delta B): the parallel mode
    no longer matches the recurrent one (Delta near 1, where the two differ)."""
    def zoh_scan(u, delta, a, b, c, chunk, return_state=False):
        a_bar = torch.exp(delta[..., None] * a)  # (B, L, D, N)
        b_bar = (a_bar - 1) / a * b[:, :, None, :]
        x, out = torch.zeros(u.shape[0], *a.shape), []
        for t in range(u.shape[1]):
            x = a_bar[:, t] * x + b_bar[:, t] * u[:, t, :, None]
            out.append(torch.einsum("bdn,bn->bd", x, c[:, t]))
        return torch.stack(out, 1)
    monkeypatch.setattr("practice_torch.ssm.layers.selective_scan_chunked", zoh_scan)
    torch.manual_seed(2)
    assert max_diff(Mamba(4, 8, dt_min=0.5, dt_max=1.0), 64) > 1e-4


@pytest.mark.parametrize(("length", "chunk"), [(64, 8), (50, 7), (5, 8), (1, 1)])
def test_chunked_scan_equals_the_sequential_loop_values_and_gradients(length, chunk):
    """The batched chunked scan (Mamba's training path) against the loop, row by row, in float64."""
    torch.manual_seed(3)
    batch, d, n = 3, 5, 4
    u, delta = torch.randn(batch, length, d, dtype=torch.float64), torch.rand(batch, length, d, dtype=torch.float64)
    a = -torch.rand(d, n, dtype=torch.float64) - 0.1
    b, c = torch.randn(batch, length, n, dtype=torch.float64), torch.randn(batch, length, n, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (u, delta, a, b, c)]
    weights = torch.randn(batch, length, d, dtype=torch.float64)
    fast = functions.selective_scan_chunked(*inputs, chunk=chunk)
    slow = torch.stack([functions.selective_scan_sequential(u[i], delta[i], a, b[i], c[i]) for i in range(batch)])
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)
    for g_fast, g_slow in zip(torch.autograd.grad((fast * weights).sum(), inputs),
                              torch.autograd.grad((slow * weights).sum(), inputs), strict=True):
        torch.testing.assert_close(g_fast, g_slow, atol=1e-12, rtol=1e-12)


def test_negative_control_kernel_off_by_one_is_caught(monkeypatch):
    """K_j = C Abar^(j+1) Bbar (one step late): the convolution no longer matches the recurrence."""
    kernel = layers.complex_diagonal_kernel

    def late(dta, b_bar, c, length):
        return kernel(dta, b_bar * torch.exp(dta), c, length)
    monkeypatch.setattr("practice_torch.ssm.layers.complex_diagonal_kernel", late)
    torch.manual_seed(1)
    assert max_diff(S4D(4, 16), 64) > 1e-4


def test_negative_control_scan_without_carry_is_caught(monkeypatch):
    """A scan that drops its carry (x_t = Bbar_t u_t): the parallel mode no longer matches the recurrent one."""
    def no_carry(u, delta, a, b, c, chunk, return_state=False):
        return torch.einsum("bldn,bln->bld", (delta * u)[..., None] * b[:, :, None, :], c)
    monkeypatch.setattr("practice_torch.ssm.layers.selective_scan_chunked", no_carry)
    torch.manual_seed(2)
    assert max_diff(Mamba(4, 8), 64) > 1e-4


# JAX: the flax twins ---------------------------------------------------------------------------------------------
CASES = {case.id: case for case in topics.spec_cases("ssm")}


def jax_max_diff(module, length, batch=2, channels=4):
    """max |parallel - recurrent| of a flax layer, its step run token by token (a lax.scan of ``step``: one
    compiled loop instead of ``length`` dispatches from Python)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    u = np.random.default_rng(0).standard_normal((batch, length, channels)).astype("float32")
    params = module.init(jax.random.key(1), u[:, :4])

    def recurrent(p, u):
        def step(state, u_t):
            y, state = module.apply(p, u_t, state, method="step")
            return state, y
        start = module.apply(p, batch, method="init_state")
        carried = jax.eval_shape(lambda state: step(state, u[:, 0])[0], start)  # with x64 on, a step widens the state
        start = jax.tree.map(lambda x, like: x.astype(like.dtype), start, carried)
        _, ys = jax.lax.scan(step, start, jnp.swapaxes(u, 0, 1))
        return jnp.swapaxes(ys, 0, 1)

    return float(np.abs(np.asarray(jax.jit(module.apply)(params, u)) - np.asarray(jax.jit(recurrent)(params, u))).max())


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_jax_s4d_recurrent_equals_convolution_at_1024(init):
    import theory_jax.ssm as jssm
    assert jax_max_diff(jssm.S4D(4, 16, imag_init=init), 1024) < 1e-5


def test_jax_mamba_recurrent_equals_parallel_at_1024():
    import theory_jax.ssm as jssm
    assert jax_max_diff(jssm.Mamba(4, 8), 1024) < 1e-5


@pytest.mark.parametrize("kind", ["s4d", "mamba"])
def test_jax_start_reaches_the_state_of_the_token_by_token_recurrence_and_advances_as_forward(kind):
    """The flax stack's ``start`` reads the prompt in parallel: the logits and every block's state equal those
    ``step`` reaches token by token (at 2 tokens, shorter than Mamba's conv window K - 1 = 3, and at 37), and
    ``advance`` from there gives the parallel forward's next logits."""
    import jax
    import numpy as np

    import theory_jax.ssm as jssm

    net = jssm.SSMStack(11, channels=8, layers=2, kind=kind, state=8)
    x = np.random.default_rng(6).integers(0, 11, (3, 40))
    params = jax.jit(net.init)(jax.random.key(0), x)
    start = jax.jit(lambda p, prompt: net.apply(p, prompt, method="start"))
    step = jax.jit(lambda p, token, state: net.apply(p, token, state, method="step"))
    advance = jax.jit(lambda p, token, state: net.apply(p, token, state, method="advance"))
    full = jax.jit(net.apply)(params, x)
    for length in (2, 37):
        logits, state = start(params, x[:, :length])
        slow = net.apply(params, 3, method="init_state")
        for t in range(length):
            slow_logits, slow = step(params, x[:, t], slow)
        np.testing.assert_allclose(logits, slow_logits, atol=1e-5, rtol=1e-5)
        fast_leaves, slow_leaves = jax.tree.leaves(state), jax.tree.leaves(slow)
        assert [(a.shape, a.dtype) for a in fast_leaves] == [(b.shape, b.dtype) for b in slow_leaves]
        for a, b in zip(fast_leaves, slow_leaves, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
        for t in range(length, length + 3):
            logits, state = advance(params, x[:, t], state)
            np.testing.assert_allclose(logits, full[:, t], atol=1e-5, rtol=1e-5)


def test_jax_negative_control_b_by_zoh_is_caught(monkeypatch):
    """The twin's scan with Bbar = (exp(Delta A) - 1) / A B (ZOH) where Mamba's convention is Euler (Delta B)."""
    import jax.numpy as jnp

    import theory_jax.ssm as jssm

    def zoh_scan(u, delta, a, b, c):
        a_bar = jnp.exp(delta[:, :, None] * a[None])
        b_bar = (a_bar - 1) / a[None] * b[:, None, :]
        return jnp.einsum("ldn,ln->ld", _affine_scan(a_bar, b_bar * u[:, :, None]), c)
    assert run_case(CASES["ssm/mamba"]).passed
    monkeypatch.setattr(jssm, "selective_scan", zoh_scan)
    assert "output" in caught(CASES["ssm/mamba"], Perturbation("B by ZOH"))


def test_jax_negative_control_a_prefill_state_one_token_early_is_caught(monkeypatch):
    """The twin's prefill handing ``step`` the scan's state before the prompt's last token: the start case's state
    output no longer matches torch's (its logits still do: the parallel output is untouched)."""
    import theory_jax.ssm as jssm

    scan = jssm.selective_scan

    def early(u, delta, a, b, c, return_state=False):
        if not return_state:
            return scan(u, delta, a, b, c)
        return scan(u, delta, a, b, c), scan(u[:-1], delta[:-1], a, b[:-1], c[:-1], return_state=True)[1]
    assert run_case(CASES["ssm/stack/start"]).passed
    monkeypatch.setattr(jssm, "selective_scan", early)
    message = caught(CASES["ssm/stack/start"], Perturbation("the prefill's state one token early"))
    output = message.split("gradient:")[0]  # the outputs' mismatches: both blocks' scan states, nothing else
    assert output.startswith("output: 1/0/1: ") and "\n1/1/1: " in output
    assert not any(f"{path}: " in output for path in ("0", "1/0/0", "1/1/0"))


def _affine_scan(a_bar, bu):
    """x_t = a_t x_{t-1} + b_t from 0 by lax.associative_scan. (L, D, N) x 2 -> (L, D, N)."""
    import jax
    return jax.lax.associative_scan(lambda f, g: (g[0] * f[0], g[0] * f[1] + g[1]), (a_bar, bu))[1]


def test_jax_negative_control_kernel_off_by_one_is_caught(monkeypatch):
    """The twin's kernel one step late (K_j = C Abar^(j+1) Bbar)."""
    import jax.numpy as jnp

    import theory_jax.ssm as jssm

    kernel = jssm.complex_diagonal_kernel
    monkeypatch.setattr(jssm, "complex_diagonal_kernel",
                        lambda dta, b_bar, c, length: kernel(dta, b_bar * jnp.exp(dta), c, length))
    assert "output" in caught(CASES["ssm/s4d"], Perturbation("kernel off by one"))


def test_jax_negative_control_scan_without_carry_is_caught(monkeypatch):
    """The twin's scan drops its carry (x_t = Delta_t B_t u_t)."""
    import jax.numpy as jnp

    import theory_jax.ssm as jssm

    monkeypatch.setattr(jssm, "selective_scan", lambda u, delta, a, b, c: jnp.einsum(
        "ldn,ln->ld", delta[:, :, None] * b[:, None, :] * u[:, :, None], c))
    assert "output" in caught(CASES["ssm/mamba"], Perturbation("scan without carry"))
