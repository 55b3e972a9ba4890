"""Exercises: every known mistake fails its exercise's cases and is named as itself; ours passes; the commands write
a learner's file without ever overwriting one, check it, give hints and list the progress."""

from __future__ import annotations

import inspect
import json

import pytest

from shared_specs import exercise as E
from theory_jax.cli import main

EXERCISES = [(topic, e) for topic in E.topics_with_exercises() for e in E.exercises_of(topic)]


def test_there_are_exercises_each_with_cases_hints_and_two_named_mistakes():
    assert len(EXERCISES) >= 3
    for topic, e in EXERCISES:
        assert E.cases_of(topic, e.function), f"{topic}.{e.function} has no spec case"
        assert len(e.hints) >= 2 and len(e.mistakes) >= 2 and e.teaches, f"{topic}.{e.function}"
        assert len({m.says for m in e.mistakes}) == len(e.mistakes)


@pytest.mark.parametrize(("topic", "exercise"), EXERCISES, ids=[f"{t}.{e.function}" for t, e in EXERCISES])
def test_each_known_mistake_fails_and_is_named_as_itself(topic, exercise):
    """A mistake given as the learner's JAX function fails a case of its exercise, and of the exercise's mistakes
    the first it matches is itself (so no two mistakes give one answer, and none is right)."""
    cases = E.cases_of(topic, exercise.function)
    for mistake in exercise.mistakes:
        failed = []
        for case in cases:  # until a case names it
            checked = E.check_case(case, "jax", mistake.wrong, exercise.mistakes)
            failed += [] if checked.passed else [(checked.line, checked.mistake)]
            if checked.mistake == mistake.says:
                break
        assert failed, f"{topic}.{exercise.function}: {mistake.says!r} passes every case"
        assert failed[-1][1] == mistake.says, (mistake.says, failed)


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_every_exercise_writes_a_file_that_loads_in_both_backends(backend, tmp_path):
    """Each topic's stubs: our signatures and docstrings, the imports they need (none withheld), bodies that raise
    NotImplementedError; the file loads, and the checker finds every function unwritten."""
    for topic in E.topics_with_exercises():
        path, added = E.write_exercises(topic, backend, tmp_path)
        assert added == [e.function for e in E.exercises_of(topic)]
        module = E.load(path)
        for e in E.exercises_of(topic):
            assert getattr(module, e.function).__doc__ == E.ours(topic, e.function, backend).__doc__
            imported = {name.strip() for line in path.read_text().splitlines() if line.startswith("from ")
                        for name in line.partition(" import ")[2].split(",")}
            assert not imported & set(e.withhold), (topic, e.function)
            fn = getattr(module, e.function)
            required = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
            with pytest.raises(NotImplementedError):
                fn(*[None] * len(required))  # any arguments: the body raises first


@pytest.mark.parametrize(("topic", "exercise"), EXERCISES, ids=[f"{t}.{e.function}" for t, e in EXERCISES])
def test_ours_passes_the_checker_in_both_backends_and_the_stub_is_unwritten(topic, exercise, tmp_path):
    for backend in E.BACKENDS:
        for case in E.cases_of(topic, exercise.function):
            checked = E.check_case(case, backend, E.ours(topic, exercise.function, backend), exercise.mistakes)
            assert checked.passed and checked.mistake is None, (backend, case.id, checked)
        path, _ = E.write_exercises(f"{topic}.{exercise.function}", backend, tmp_path)
        stub = getattr(E.load(path), exercise.function)
        assert E.check_case(E.cases_of(topic, exercise.function)[0], backend, stub).status == "unwritten"


def test_a_wrong_answer_names_the_first_wrong_entry_and_a_torch_mistake_is_named_too():
    import torch

    topic, (exercise,) = E.find("gan.minibatch_std")
    (case,) = E.cases_of(topic, exercise.function)

    def unnamed(h, eps=1e-8):  # wrong, and no known mistake: a plain FAIL with its first wrong entry
        return torch.cat([h, torch.full((h.shape[0], 1), 0.5, dtype=h.dtype)], 1)

    checked = E.check_case(case, "torch", unnamed, exercise.mistakes)
    assert checked.status == "fail" and checked.mistake is None
    assert checked.line.startswith("output[0, 9]: yours 0.5, ours ") and "tolerance" in checked.line

    def bessel(h, eps=1e-8):  # the mistake, as a PyTorch learner writes it
        std = torch.sqrt(torch.var(h, dim=0) + eps).mean()  # torch.var's default: N - 1
        return torch.cat([h, std.expand(h.shape[0], 1)], 1)

    checked = E.check_case(case, "torch", bessel, exercise.mistakes)
    assert checked.status == "fail" and checked.mistake.startswith("your minibatch std divides by N - 1")


@pytest.mark.parametrize(("body", "says"), [
    ("    return h +* 2\n", "does not load: SyntaxError"),
    ("    return jnp.mean(h)\n", "ERROR gan/minibatch_std: yours returned output of shape () where ours is (6, 10)"),
    ("    return jnp.concatenate([h, jnp.log(h[:, :1] - h[:, :1])], axis=1)\n",
     "ERROR gan/minibatch_std: yours returned -inf at output[0, 9] where ours is"),
    ("    return jnp.concatenate([h, jnp.ones((1, 1))], axis=1)\n",
     "ERROR gan/minibatch_std: yours raised TypeError: Cannot concatenate"),
])
def test_a_learners_error_is_one_line_naming_it_and_exit_2(body, says, tmp_path, capsys):
    """A syntax error, a wrong shape, a -inf and an exception raised in the learner's code: one line that says
    which (for the exception, the line of their file it passed through), exit 2, no traceback."""
    assert main(["exercise", "gan.minibatch_std", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "gan_jax.py"
    stub = path.read_text()
    path.write_text(stub.replace('    raise NotImplementedError("write minibatch_std")\n', body))
    capsys.readouterr()
    assert main(["exercise", "--check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert says in out + err and "Traceback" not in out + err
    if "raised" in says:
        line = path.read_text().splitlines().index(body.rstrip("\n")) + 1
        assert f"(line {line} of {path})" in out  # the line of their body it passed through


def test_the_commands_write_check_hint_and_list_a_learners_work(tmp_path, capsys):
    folder = ["--dir", str(tmp_path)]
    assert main(["exercise", "gan.minibatch_std", *folder]) == 0
    path = tmp_path / "gan_jax.py"
    text = path.read_text()
    assert 'TOPIC, BACKEND = "gan", "jax"' in text and "import jax.numpy as jnp" in text
    assert "Karras et al. 2018" in text and 'raise NotImplementedError("write minibatch_std")' in text
    assert main(["exercise", "--check", str(path)]) == 1
    assert "not written yet" in capsys.readouterr().out
    # the learner writes it with Bessel's correction: named; then right: done
    path.write_text(text.replace('    raise NotImplementedError("write minibatch_std")',
                                 "    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0, ddof=1) + eps))\n"
                                 "    return jnp.concatenate([h, jnp.full((h.shape[0], 1), std)], axis=1)"))
    assert main(["exercise", "--check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  gan/minibatch_std: output[0, 9]" in out and "a known mistake: your minibatch std divides by N - 1" \
        in out
    written = path.read_text().replace("ddof=1", "ddof=0")
    path.write_text(written)
    assert main(["exercise", "--check", str(path)]) == 0
    assert "1 of 1 cases pass: done" in capsys.readouterr().out
    # asking again keeps the work; asking for the topic adds only the missing stubs
    assert main(["exercise", "gan.minibatch_std", *folder]) == 0 and path.read_text() == written
    assert main(["exercise", "gan", *folder]) == 0
    assert written.split("def minibatch_std")[1] in path.read_text()  # the learner's function as they left it
    assert "def discriminator_loss(" in path.read_text() and "\nimport jax\n" in path.read_text()
    assert json.loads((tmp_path / E.PROGRESS).read_text()) == {"gan_jax.py": {"minibatch_std": "done"}}
    capsys.readouterr()
    assert main(["exercises", *folder]) == 0
    listed = capsys.readouterr().out
    assert "gan.minibatch_std" in listed and " done " in listed.split("gan.minibatch_std")[1].split("\n")[0]
    assert main(["exercise", "gan.minibatch_std", "--hint", "2"]) == 0
    assert capsys.readouterr().out.startswith("hint 2 of 3: ")
    assert main(["exercise", "gan.minibatch_std", "--solution", "--backend", "torch"]) == 0
    assert "torch.var" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "says"), [
    (["exercise", "nope"], "no exercises for 'nope'; topics with exercises: change_of_variables, "),
    (["exercise", "gan.nope"], "gan has no exercise 'nope'; its exercises: gan.discriminator_loss"),
    (["exercise", "gan.minibatch_std", "--hint", "9"], "has hints 1 to 3, not 9"),
    (["exercise", "--check", "missing.py"], "missing.py: no such file"),
])
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_file_that_does_not_load_or_names_no_topic_is_refused_in_one_line(tmp_path, capsys):
    broken = tmp_path / "gan_jax.py"
    broken.write_text("TOPIC, BACKEND = 'gan', 'jax'\ndef minibatch_std(h, eps=1e-8):\n    return h +\n")
    assert main(["exercise", "--check", str(broken)]) == 2
    assert "does not load: SyntaxError" in capsys.readouterr().err
    broken.write_text("def minibatch_std(h):\n    return h\n")
    assert main(["exercise", "--check", str(broken)]) == 2
    assert "must say TOPIC" in capsys.readouterr().err


def test_a_notebook_gets_each_exercise_after_the_cell_that_calls_it_and_its_check_runs(capsys):
    """``notebook.exercise_cells``: the stub (renamed your_<function>, so the derivation keeps ours) and its check
    cell follow the first cell that calls the function, an exercise no cell calls goes last; run in a namespace as
    the kernel runs them, the check says 'not written yet', then 'done' once the body is written."""
    import nbformat.v4 as nbf

    from theory_jax import notebook

    cells = [nbf.new_markdown_cell("# gan"), nbf.new_code_cell("from theory_jax.gan import minibatch_std"),
             nbf.new_code_cell("h = minibatch_std(x)"), nbf.new_code_cell("d.numeric(...)")]
    out = notebook.exercise_cells("gan", cells)
    names = [c.metadata.get("exercise") for c in out]
    assert names[:3] == [None, None, None] and names[3:6] == ["minibatch_std"] * 3 and names[6] is None
    assert names[7:] == ["discriminator_loss"] * 3 + ["generator_loss_nonsaturating"] * 3
    stub, check = out[4].source, out[5].source
    assert stub.startswith("def your_minibatch_std(h, eps: float = 1e-8):") and "check_in_notebook" in check
    namespace = {}
    exec("import jax.numpy as jnp\n" + stub, namespace)
    exec(check, namespace)
    assert "not written yet" in capsys.readouterr().out
    exec("import jax.numpy as jnp\n" + stub.replace('    raise NotImplementedError("write minibatch_std")',
         "    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0) + eps))\n"
         "    return jnp.concatenate([h, jnp.full((h.shape[0], 1), std)], axis=1)"), namespace)
    exec(check, namespace)
    assert "1 of 1 cases pass: done" in capsys.readouterr().out


def test_the_pages_worked_example_is_what_the_checker_prints(tmp_path, capsys):
    """docs/exercises.md's failure message, run as the page says: the learner's function and the output, verbatim."""
    page = (E.catalogue.ROOT / "docs" / "exercises.md").read_text()
    body = page.split("```python\n", 1)[1].split("```", 1)[0]
    printed = page.split("compares its output with this block -->\n```text\n", 1)[1].split("```", 1)[0]
    assert main(["exercise", "gan.minibatch_std", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "gan_jax.py"
    stub = path.read_text()
    start = stub.index("def minibatch_std(")
    path.write_text(stub[:start] + body)
    capsys.readouterr()
    assert main(["exercise", "--check", str(path)]) == 1
    assert capsys.readouterr().out == printed
