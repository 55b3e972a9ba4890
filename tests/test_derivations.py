"""Every derivation passes every claim; the harness and the CLI fail on a wrong step."""

import types

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from project import catalogue
from shared_specs import docs
from theory_jax import cli
from theory_jax.derivation import Derivation, figure_path, to_markdown

# These topics' derivations are run as executed notebooks (the same claims, and the notebook's cells and outputs
# checked too); the others' as scripts. `make notebooks` executes every one.
NOTEBOOK_TOPICS = ("style_transfer",)  # one of the quickest


def _derive(topic, tmp_path):
    """The topic's derivation, run as a script, or for ``NOTEBOOK_TOPICS`` written as a notebook and executed."""
    if topic not in NOTEBOOK_TOPICS:
        d, _ = cli.run_topic(topic, echo=False)
        return d
    return _notebook(topic, tmp_path)


def _notebook(topic, tmp_path):
    """The topic's derivation written as a notebook and executed in a fresh kernel: no cell raised, and the kernel
    printed a PASS per claim and drew every figure."""
    import nbformat

    from theory_jax import notebook

    d, errors = notebook.write(topic, tmp_path / f"{topic}.ipynb")
    assert not errors, f"cells of the {topic} notebook raised: {errors}"
    outputs = [o for c in nbformat.read(tmp_path / f"{topic}.ipynb", as_version=4).cells if c.cell_type == "code"
               for o in c.outputs]
    printed = "".join(o.get("text", "") for o in outputs)
    assert printed.count("PASS") == len(d.claims) and "FAIL" not in printed, "the kernel's checks differ from the run's"
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(d.figures)
    return d


@pytest.mark.parametrize("topic", cli.available())
def test_derivation_passes_every_claim(topic, tmp_path):
    d = _derive(topic, tmp_path)
    assert d is not None, f"the {topic} derivation crashed"
    failed = [f"{c.number}. {c.statement}: {c.detail}" for c in d.claims if not c.passed]
    assert not failed, "\n".join(failed)
    assert len(d.claims) >= 5
    kinds = {c.kind for c in d.claims}
    assert {"numeric", "monte carlo"} <= kinds, f"{topic} uses only {kinds}"
    assert d.figures, f"the {topic} derivation draws no figure"
    # Its document in docs/ says what it says now, up to what this CPU measured (the numbers).
    document = (catalogue.ROOT / docs.DERIVATIONS_DIR / f"{topic}.md").read_text()
    assert docs.masked(document.split(docs.DOCUMENT_NOTE)[0]) == docs.masked(to_markdown(d)), (
        f"{docs.DERIVATIONS_DIR}/{topic}.md is stale: run `make docs`")
    missing = [f.number for f in d.figures
               if not (catalogue.ROOT / docs.DERIVATIONS_DIR / figure_path(topic, f.number)).is_file()]
    assert not missing, f"figures {missing} of {docs.DERIVATIONS_DIR}/{topic}.md are missing: run `make docs`"


@pytest.mark.slow
@pytest.mark.parametrize("topic", [t for t in cli.available() if t not in NOTEBOOK_TOPICS])
def test_every_notebook_executes_and_passes_every_claim(topic, tmp_path):
    """What ``make notebooks`` does, topic by topic (twice a derivation's time each); the default suite compiles
    every notebook's cells instead (``test_every_derivation_lays_out_as_cells_that_compile...``)."""
    d = _notebook(topic, tmp_path)
    assert d.passed, [f"{c.number}. {c.statement}" for c in d.claims if not c.passed]


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
    assert d.numeric("equal to 1e-13", np.ones(3), np.ones(3) + 1e-13).passed
    assert not d.numeric("off by 1e-6", np.ones(3), np.ones(3) + 1e-6).passed
    assert not d.gradient("wrong gradient", np.array([1.0, 2.0]), np.array([1.0, -2.0])).passed


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


def test_cli_reports_a_crash_as_a_failure(monkeypatch, capsys, tmp_path):
    def derive(echo=None):
        raise ZeroDivisionError("step 3")

    _fake_topic(monkeypatch, derive)
    assert cli.main(["elbo"]) == 1
    assert "crashed" in capsys.readouterr().err
    assert cli.main(["elbo", "--notebook", str(tmp_path / "elbo.ipynb")]) == 1  # no notebook, no traceback alone
    assert "crashed before its notebook was written" in capsys.readouterr().err


def test_cli_usage_errors(capsys):
    assert cli.main(["no_such_topic"]) == 2
    assert "unknown topic" in capsys.readouterr().err
    without = [t.name for t in catalogue.TOPICS if not catalogue.has_derivation(t.name)]
    if without:  # in the catalogue, no derivation yet
        assert cli.main([without[0]]) == 2 and "no derivation yet" in capsys.readouterr().err
    assert cli.main([]) == 0 and "elbo" in capsys.readouterr().out
    assert cli.main(["elbo", "ppo", "--notebook", "both.ipynb"]) == 2  # several notebooks go into a directory
    assert "takes a directory" in capsys.readouterr().err


# The precision policy: float32 values under the float64 tolerance fail, whatever the kernels made of them. ------
def test_float32_values_held_to_the_float64_tolerance_fail_even_when_equal():
    d = Derivation("t", "t")
    same = jnp.ones(3, dtype=jnp.float32)
    claim = d.numeric("float32 arithmetic", same, same)
    assert not claim.passed and claim.discrepancy == 0.0 and "float32" in claim.detail
    assert not d.gradient("a float32 gradient", [same[0], 1.0], [1.0, 1.0]).passed  # found inside a list too
    assert not d.inequality("a float32 bound", same, 2.0).passed
    assert d.numeric("float64 arithmetic", np.ones(3), np.ones(3)).passed


def test_a_claim_about_float32_code_states_it_and_gets_the_float32_policy():
    d = Derivation("t", "t")
    one = jnp.ones(3, dtype=jnp.float32)
    ok = d.numeric("within float32 rounding", one + 1e-7, one, float32="a float32 network")
    assert ok.passed and "float32 policy: a float32 network" in ok.detail and "rtol 1e-05" in ok.detail
    assert not d.numeric("off by 1e-4", one + 1e-4, one, float32="a float32 network").passed


def test_float64_params_and_as_float64_give_float64_trees():
    from flax import linen as nn

    from theory_jax.derivation import as_float64, float64_params, full_precision, narrow_floats

    full_precision()
    x = jnp.ones((2, 3))
    drawn = float64_params(nn.Dense(4), np.random.default_rng(0), x)
    assert not narrow_floats(drawn) and drawn["params"]["kernel"].shape == (3, 4)
    initialised = nn.Dense(4).init(__import__("jax").random.key(0), x)
    assert narrow_floats(initialised) == ["float32"] and not narrow_floats(as_float64(initialised))


def test_the_json_report_has_every_claim_with_its_ratio(monkeypatch, tmp_path):
    import json

    def derive(echo=None):
        d = Derivation("elbo", "fake", echo=echo)
        d.numeric("half the tolerance", 1.0 + 5e-11, 1.0)
        d.monte_carlo("mean of N(0.5, 1)", np.random.default_rng(0).standard_normal(1000) + 0.5, 0.5)
        return d

    _fake_topic(monkeypatch, derive)
    assert cli.main(["elbo", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    claims = report["topics"]["elbo"]["claims"]
    assert report["topics"]["elbo"]["passed"] and len(claims) == 2
    assert 0.4 < claims[0]["ratio"] < 0.6 and 0 <= claims[1]["ratio"] <= 1
    assert report["environment"]["jax"]["x64"] in (True, False) and report["environment"]["cores"] >= 1
    assert report["environment"]["jax"]["platform"] in ("cpu", "gpu", "tpu")  # where JAX computed, beside torch's device


# Notebooks: the same derivation, cell by cell (theory_jax.notebook). ------------------------------------------------
FAKE_TOPIC = '''
import numpy as np

from theory_jax.derivation import Derivation, new_figure

TITLE, LECTURES = "a fake topic", "none"


def _section_squares(d, rng, n):
    """Two claims and a figure."""
    x = rng.standard_normal(n)

    @np.vectorize
    def square(v):
        return v * v

    d.numeric("$(x + 1)^2 = x^2 + 2x + 1$", square(x + 1), x**2 + 2 * x + 1)
    d.say("A wrong step follows.")
    d.numeric("a wrong step: $x^2 = 2x$", x**2, 2 * x)
    fig, ax = new_figure()
    ax.plot(x, x**2, ".")
    d.figure(fig, "$x^2$ against $x$")
    return x.mean()


def derive(echo=None):
    d = Derivation("fake_topic", TITLE, LECTURES, echo=echo)
    rng = np.random.default_rng(0)
    d.say("Setting: $x \\\\sim N(0, 1)$.")
    size = 5
    mean = _section_squares(d, rng, n=size)
    d.monte_carlo("the mean of 5 draws is near 0", np.array([mean, -mean, mean]), 0.0, k=100)
    return d
'''


def test_a_notebook_has_a_cell_per_claim_and_shows_a_failed_claim(tmp_path, monkeypatch):
    import importlib
    import sys

    import nbformat

    from theory_jax import notebook

    (tmp_path / "fake_topic.py").write_text(FAKE_TOPIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{catalogue.ROOT}")  # the kernel imports it too
    module = importlib.import_module("fake_topic")
    try:
        d, errors = notebook.write("fake_topic", tmp_path / "fake.ipynb", module=module, cwd=tmp_path)
    finally:
        sys.modules.pop("fake_topic", None)
    assert not d.passed and not errors and len(d.figures) == 1
    nb = nbformat.read(tmp_path / "fake.ipynb", as_version=4)
    sources = [c.source for c in nb.cells]
    # each claim's statement in a markdown cell right above the code that checks it, the step's body laid out flat
    first = sources.index("**Claim 1** (numeric). $(x + 1)^2 = x^2 + 2x + 1$")
    code = sources[first + 1]
    assert nb.cells[first + 1].cell_type == "code" and "n = size\nx = rng.standard_normal(n)\n" in code
    assert "@np.vectorize\ndef square(v):" in code  # a nested function keeps its decorator
    assert "A wrong step follows." in sources  # a lone say, as markdown; above: the step's argument bound by name
    assert any(s.startswith("mean = x.mean()") for s in sources)  # the step's return, as the call's assignment
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    printed = "".join(o.get("text", "") for o in outputs)
    assert "a wrong step" in printed and "FAIL" in printed and "claims pass: FAILED" in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1


def test_a_step_that_returns_early_cannot_be_laid_out_as_cells(tmp_path):
    import importlib.util

    from theory_jax import notebook

    (tmp_path / "early_topic.py").write_text(
        "def _section_early(d, x):\n    if x:\n        return 1\n    d.say('no')\n\n\n"
        "def derive(echo=None):\n    d = None\n    _section_early(d, 1)\n    return d\n")
    spec = importlib.util.spec_from_file_location("early_topic", tmp_path / "early_topic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(notebook.NotFlattenable, match="returns before its end"):
        notebook.flatten(module)


def undefined_names(scripts: dict[str, str], folder) -> list[str]:
    """Names a script uses that nothing before it defines (pyflakes' rules, by ruff): 'topic:line: name'."""
    import subprocess
    import sys
    from pathlib import Path

    for topic, source in scripts.items():
        (folder / f"{topic}.py").write_text(source)
    ruff = Path(sys.executable).with_name("ruff")
    found = subprocess.run([str(ruff), "check", "--isolated", "--no-cache", "--select", "F821,F822,F823",
                            "--output-format", "json", str(folder)], capture_output=True, text=True, check=False)
    import json

    return [f"{Path(e['filename']).stem}:{e['location']['row']}: {e['message']}" for e in json.loads(found.stdout)]


def test_every_derivation_lays_out_as_cells_that_compile_in_steps_under_60_lines(tmp_path):
    """Every topic's notebook laid out (not derived): its cells compile and use no name that no cell before them
    defines, and each step it reads is under 60 lines. Control: the starred step call the layout once wrote as
    ``w = *_section_spectral_norm(d, rng)``, and a cell using a name defined nowhere, are both caught."""
    import importlib
    import inspect

    from theory_jax import notebook

    long, scripts = {}, {}
    for topic in cli.available():
        module = importlib.import_module(f"theory_jax.derivations.{topic}")
        statements = notebook.flatten(module)
        scripts[topic] = notebook.script(module, statements)
        notebook.compiled(topic, scripts[topic])
        for code in {s.code for s in statements}:
            lines = len(inspect.getsourcelines(code)[0])
            if lines >= 60:
                long[f"{topic}.{code.co_name}"] = lines
    assert not long, f"steps of 60 lines or more (split them): {long}"
    assert undefined_names(scripts, tmp_path) == []
    # the controls
    with pytest.raises(notebook.NotFlattenable, match="can't use starred expression here"):
        notebook.compiled("gan", "w = *_section_spectral_norm(d, rng)\n")
    for path in tmp_path.glob("*.py"):
        path.unlink()
    assert [line.split(": ", 1)[1] for line in undefined_names(
        {"broken": scripts["gan"] + "print(w_spectral)\n"}, tmp_path)] == ["Undefined name `w_spectral`"]


def test_a_step_call_passed_to_a_step_is_laid_out_flat_and_its_values_bound(tmp_path):
    """``outer(d, 1, *inner(d, 2))``: outer's first argument bound, inner's statements, its returned tuple bound to
    the parameters the star fills, then outer's. Control: a star that fills an unknown number of parameters is
    refused in one line."""
    import importlib.util

    from theory_jax import notebook

    def load(name, call):
        (tmp_path / f"{name}.py").write_text(
            "def inner(d, k):\n    a = k + 1\n    return a, 2 * a\n\n\n"
            "def outer(d, x, y, z):\n    d.append(x + y + z)\n\n\n"
            "def flexible(d, x, *rest):\n    d.append(x)\n\n\n"
            f"def derive(echo=None):\n    d = []\n    {call}\n    return d\n")
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    module = load("nested_topic", "outer(d, 1, *inner(d, 2))")
    source = notebook.script(module)
    assert source.endswith("d = []\n\nx = 1\n\nk = 2\n\na = k + 1\n\ny, z = (a, 2 * a)\n\nd.append(x + y + z)\n")
    scope = {}
    exec(notebook.compiled("nested_topic", source), scope)  # the layout computes what the derivation does
    assert scope["d"] == module.derive() == [10]
    with pytest.raises(notebook.NotFlattenable, match="fills an unknown number of parameters"):
        notebook.flatten(load("flexible_topic", "flexible(d, 1, *inner(d, 2))"))
