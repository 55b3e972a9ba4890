"""Every derivation passes every claim; the harness and the CLI fail on a wrong step."""

import types

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from theory_jax import cli
from theory_jax.derivation import Derivation, to_markdown


@pytest.mark.parametrize("topic", cli.available())
def test_derivation_passes_every_claim(topic):
    d, seconds = cli.run_topic(topic, echo=False)
    assert d is not None, f"the {topic} derivation crashed"
    failed = [f"{c.number}. {c.statement}: {c.detail}" for c in d.claims if not c.passed]
    assert not failed, "\n".join(failed)
    assert len(d.claims) >= 5
    kinds = {c.kind for c in d.claims}
    assert {"numeric", "monte carlo"} <= kinds, f"{topic} uses only {kinds}"


# Negative controls: a wrong step fails, whatever its kind. ---------------------------------------
def test_wrong_symbolic_step_fails():
    m1, m2 = sp.symbols("m1 m2", real=True)
    d = Derivation("t", "t")
    assert d.symbolic("right", (m1 - m2) ** 2, m1**2 - 2 * m1 * m2 + m2**2).passed
    wrong = d.symbolic("a sign error", (m1 - m2) ** 2, m1**2 + 2 * m1 * m2 + m2**2)
    assert not wrong.passed
    assert "m1*m2" in wrong.detail  # the residual is shown
    assert not d.passed


def test_wrong_numeric_step_fails_beyond_the_policy_tolerance():
    d = Derivation("t", "t")
    assert d.numeric("equal to 1e-13", jnp.ones(3), jnp.ones(3) + 1e-13).passed
    assert not d.numeric("off by 1e-6", jnp.ones(3), jnp.ones(3) + 1e-6).passed
    assert not d.gradient("wrong gradient", jnp.array([1.0, 2.0]), jnp.array([1.0, -2.0])).passed


def test_monte_carlo_step_fails_when_the_exact_value_is_wrong():
    samples = np.random.default_rng(0).standard_normal(10_000) + 0.5
    d = Derivation("t", "t")
    assert d.monte_carlo("mean of N(0.5, 1)", samples, 0.5).passed
    assert not d.monte_carlo("mean claimed 0.6", samples, 0.6).passed  # 10 standard errors off


def test_reversed_inequality_fails():
    d = Derivation("t", "t")
    assert d.inequality("1 <= 2", 1.0, 2.0).passed
    assert not d.inequality("2 <= 1", 2.0, 1.0).passed


def test_a_derivation_with_no_claims_does_not_pass():
    assert not Derivation("t", "t").passed


def test_markdown_lists_claims_and_marks():
    d = Derivation("t", "a title", "a lecture")
    d.say("Narrative with $x^2$.")
    d.numeric("one equals one", 1.0, 1.0)
    d.numeric("one equals two", 1.0, 2.0)
    text = to_markdown(d)
    assert "# `t`: a title" in text and "Narrative with $x^2$." in text
    assert "**Claim 2** (numeric). one equals two" in text and "**FAILED**" in text and "1 of 2 claims" in text


def _fake_topic(monkeypatch, derive):
    module = types.SimpleNamespace(TITLE="fake", LECTURES="none", derive=derive)
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: module)
    monkeypatch.setattr(cli.catalogue, "has_derivation", lambda name: True)


def test_cli_exits_nonzero_on_a_failed_claim(monkeypatch, capsys, tmp_path):
    def derive(echo=None):
        d = Derivation("elbo", "fake", echo=echo)
        d.numeric("a wrong step", 1.0, 1.5)
        return d

    _fake_topic(monkeypatch, derive)
    assert cli.main(["elbo", "--markdown", str(tmp_path / "d.md")]) == 1
    out = capsys.readouterr().out
    assert "a wrong step" in out and "FAIL" in out
    assert "**FAILED**" in (tmp_path / "d.md").read_text()


def test_cli_reports_a_crash_as_a_failure(monkeypatch, capsys):
    def derive(echo=None):
        raise ZeroDivisionError("step 3")

    _fake_topic(monkeypatch, derive)
    assert cli.main(["elbo"]) == 1
    assert "crashed" in capsys.readouterr().err


def test_cli_usage_errors(capsys):
    assert cli.main(["no_such_topic"]) == 2
    assert "unknown topic" in capsys.readouterr().err
    assert cli.main(["ssm"]) == 2  # in the catalogue, no derivation yet
    assert cli.main([]) == 0 and "elbo" in capsys.readouterr().out
