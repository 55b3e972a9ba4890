"""Exercises: every known mistake fails its exercise's cases and is named as itself; ours passes; the commands write
a learner's file without ever overwriting one, check it, give hints and list the progress."""

from __future__ import annotations

import inspect
import json

import pytest

from project import catalogue
from project.compare import tolerance
from shared_specs import exercise as E
from shared_specs import exercise_check as C
from theory_jax.cli import main
from theory_jax.exercises import Mistake, stub_of

EXERCISES = [(topic, e) for topic in E.topics_with_exercises() for e in E.exercises_of(topic)]
pytestmark = pytest.mark.usefixtures("kept_programs")  # each reference compiled once, not once a mistake


@pytest.fixture(autouse=True)
def default_folder(tmp_path, monkeypatch):
    """The default folder (where ``--dir`` is remembered) in the test's own folder, never the checkout's."""
    monkeypatch.setattr(E, "FOLDER", tmp_path / "exercises")
    return tmp_path / "exercises"


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


def pasted(path, topic: str, exercise, backend: str, text: str) -> None:
    """The learner's file at ``path`` with ``text`` in place of the exercise's stub."""
    stub = stub_of(E.ours(topic, exercise.function, backend))
    assert path.read_text().count(stub) == 1
    path.write_text(path.read_text().replace(stub, text))


@pytest.mark.parametrize(("topic", "exercise"), EXERCISES, ids=[f"{t}.{e.function}" for t, e in EXERCISES])
def test_the_solution_pasted_in_place_of_the_stub_passes_in_both_backends(topic, exercise, tmp_path):
    """The stub is unwritten; ``--solution`` (ours, with the helpers it calls that the learner's file leaves out),
    pasted in its place in the file ``exercise`` writes, passes every case: ours passes its own checker, and the
    solution runs with what the file holds."""
    for backend in E.BACKENDS:
        path, _ = E.write_exercises(f"{topic}.{exercise.function}", backend, tmp_path / backend)
        stub = getattr(E.load(path), exercise.function)
        assert E.check_case(E.cases_of(topic, exercise.function)[0], backend, stub).status == "unwritten"
        pasted(path, topic, exercise, backend, E.solution(topic, exercise, backend))
        lines = []
        assert E.check_file(path, lines.append) == {exercise.function: "done"}, (backend, lines)


def test_ours_alone_does_not_run_in_the_learners_file_and_the_solution_defines_what_it_lacks(tmp_path, capsys):
    """The negative control: DDPM's step pasted as ours is written calls two helpers the file withholds (a
    NameError, exit 2); ``--solution`` prints their definitions before it, and passes."""
    topic, (exercise,) = E.find("ddpm.ddpm_step")
    for backend in E.BACKENDS:
        path, _ = E.write_exercises("ddpm.ddpm_step", backend, tmp_path / backend)
        text = path.read_text()
        pasted(path, topic, exercise, backend, inspect.getsource(E.ours(topic, "ddpm_step", backend)))
        capsys.readouterr()
        assert main(["exercise", "--check", str(path)]) == 2
        out = capsys.readouterr().out
        assert "yours raised NameError: name 'p" in out and "' is not defined" in out  # predict_x0 or the posterior's
        assert main(["exercise", "ddpm.ddpm_step", "--solution", "--backend", backend]) == 0
        printed = capsys.readouterr().out
        assert printed == E.solution(topic, exercise, backend)
        assert "def posterior_mean_variance(" in printed and "def predict_x0(" in printed
        path.write_text(text)
        pasted(path, topic, exercise, backend, printed)
        assert main(["exercise", "--check", str(path)]) == 0


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


def _dpo_one_sign_slip(backend):
    """Issue 77's DPO margin: the rejected answer's log-ratio added, beta ((pc - rc) + (pr - rr))."""
    if backend == "jax":
        import jax

        def wrong(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
            margin = beta * ((policy_chosen - ref_chosen) + (policy_rejected - ref_rejected))
            return jax.numpy.mean(jax.nn.softplus(-margin))
        return wrong
    import torch

    def wrong(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
        margin = beta * ((policy_chosen - ref_chosen) + (policy_rejected - ref_rejected))
        return torch.nn.functional.softplus(-margin).mean()
    return wrong


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_a_loss_near_a_mistake_by_its_value_alone_is_not_named_by_it(backend):
    """A loss is one number: a sign slip in one term lies within NEAR of the flipped margin by value, not by its
    gradients, so among the three mistakes it was named by, none is named; the mistake it is, once known, is."""
    from shared_specs.case import rng_for
    from shared_specs.runner import _cotangent, backends

    topic, (exercise,) = E.find("dpo.dpo_loss")
    (case,) = E.cases_of(topic, exercise.function)
    flipped = next(m for m in exercise.mistakes if "sign flipped" in m.says)
    slip = next(m for m in exercise.mistakes if "adds the rejected" in m.says)
    others = tuple(m for m in exercise.mistakes if m is not slip)
    yours = _dpo_one_sign_slip(backend)
    checked = E.check_case(case, backend, yours, others)
    assert checked.status == "fail" and checked.mistake is None, checked
    checked = E.check_case(case, backend, yours, exercise.mistakes)
    assert checked.mistake == slip.says
    assert E.check_case(case, "jax", flipped.wrong, exercise.mistakes).mistake == flipped.says  # the control
    # the setting of the issue: by its value alone the slip is within NEAR of the flipped margin; its gradients not
    inputs = case.make_inputs(rng_for(case.id))
    cotangent = _cotangent(backends()[0].function(case, inputs), rng_for(case.id, "/cotangent"))
    out, grads = C._run(backend, case, inputs, yours, cotangent)
    ours_ = C._run("jax", case, inputs, E.ours(topic, "dpo_loss", "jax"), cotangent)
    wrong = C._run("jax", case, inputs, flipped.wrong, cotangent)
    tol = tolerance(case.level, case.dtype)
    assert C.nearness(out, wrong[0], ours_[0], tol) <= C.NEAR < C.nearness(grads, wrong[1], ours_[1], tol)


def test_an_answer_as_near_to_two_mistakes_names_neither():
    """Two mistakes that give one answer (here the same one, said two ways) tie: neither is named; alone, it is."""
    topic, (exercise,) = E.find("gan.minibatch_std")
    (case,) = E.cases_of(topic, exercise.function)
    bessel = exercise.mistakes[0]
    again = Mistake("the same, said another way", bessel.wrong)
    assert E.check_case(case, "jax", bessel.wrong, (bessel,)).mistake == bessel.says
    assert E.check_case(case, "jax", bessel.wrong, (bessel, again)).mistake is None


@pytest.mark.parametrize("backend", E.BACKENDS)
@pytest.mark.parametrize("part", ["output", "gradient"])
def test_a_nan_where_ours_is_finite_is_an_error_in_the_output_or_the_gradient(backend, part, tmp_path, capsys):
    """A NaN in the output, or in the gradients alone (a where whose untaken branch is NaN: its value right), is an
    ERROR line and exit 2, as docs/exercises.md says; the same function without it passes (the control)."""
    module = "jnp" if backend == "jax" else "torch"
    std = ("jnp.mean(jnp.sqrt(jnp.var(h, axis=0) + eps))" if backend == "jax" else
           "torch.sqrt(torch.var(h, dim=0, correction=0) + eps).mean()")
    cat = "jnp.concatenate" if backend == "jax" else "torch.cat"
    nan = {"output": "jnp.log(-jnp.abs(h) - 1.0)" if backend == "jax" else "torch.log(-h.abs() - 1.0)",
           "gradient": f"{module}.where(h > 1e9, {module}.sqrt(-{'jnp.abs(h)' if backend == 'jax' else 'h.abs()'}), "
                       "0.0)"}[part]
    right = (f"    std = {std}\n"
             f"    return {cat}([h, std + 0.0 * h[:, :1]], 1)\n")
    assert main(["exercise", "gan.minibatch_std", "--dir", str(tmp_path), "--backend", backend]) == 0
    path = tmp_path / f"gan_{backend}.py"
    stub = path.read_text()
    for body, code in ((right, 0), (right.replace("0.0 * h[:, :1]", f"0.0 * {nan}[:, :1]"), 2)):
        path.write_text(stub.replace('    raise NotImplementedError("write minibatch_std")\n', body))
        capsys.readouterr()
        assert main(["exercise", "--check", str(path)]) == code
        out = capsys.readouterr().out
        if code:
            says = ("yours returned nan at output[0, 9]" if part == "output" else "your gradient wrt h[0, 0] is nan")
            assert f"ERROR gan/minibatch_std: {says}" in out and "fix the error above first" in out, out


@pytest.mark.parametrize("backend", E.BACKENDS)
@pytest.mark.parametrize(("topic", "exercise"), EXERCISES, ids=[f"{t}.{e.function}" for t, e in EXERCISES])
def test_a_stub_says_what_the_learner_needs_without_what_the_file_lacks(topic, exercise, backend, tmp_path):
    """Every stub, in both backends, introduces each argument as ``name: ...`` (alone or in a list ``a, b: ...``),
    gives the output's shape after ``->``, and every ``name`` it mentions is an argument or in the learner's file;
    attention's says its mask keeps where True (a boolean keep-mask, not an additive one), the selective scan's gives
    its recurrence and shapes."""
    import re

    path, _ = E.write_exercises(f"{topic}.{exercise.function}", backend, tmp_path)
    module = E.load(path)
    fn = getattr(module, exercise.function)
    doc, arguments = fn.__doc__, list(inspect.signature(fn).parameters)
    assert not [a for a in arguments if not re.search(rf"\b{a}\b(``)?(, \w+)*:", doc)], doc
    assert "->" in doc, doc
    assert not [n for n in re.findall(r"``(\w+)``", doc) if n not in arguments and not hasattr(module, n)], doc
    if exercise.function == "scaled_dot_product_attention":
        assert "boolean keep-mask" in doc and "True where query i may attend to key j" in doc
    elif exercise.function == "selective_scan_sequential":
        assert "exp(delta[t, d] a[d, n])" in doc and "(L, D)" in doc and "(D, N)" in doc


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


def test_a_closed_stdout_ends_quietly(tmp_path):
    """``python -m theory_jax exercises | head -1`` ends without a traceback: here a reader gone before the list is
    written (``true``: the write always meets a closed pipe, where ``head`` meets it only past the pipe's buffer) ends
    it with 141, as SIGPIPE would, silently, the interpreter's last flush included."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shell = f'"{sys.executable}" -m theory_jax exercises | true; exit ${{PIPESTATUS[0]}}'
    ran = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})  # in tmp_path: the default folder is there
    assert (ran.returncode, ran.stdout, ran.stderr) == (141, "", ""), ran.stderr


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


RIGHT = ("    std = jnp.mean(jnp.sqrt(jnp.var(h, axis=0) + eps))\n"
         "    return jnp.concatenate([h, jnp.full((h.shape[0], 1), std)], axis=1)\n")


def written(path, body: str = RIGHT, name: str = "minibatch_std") -> None:
    """``path``'s stub of ``name`` given ``body``."""
    path.write_text(path.read_text().replace(f'    raise NotImplementedError("write {name}")\n', body))


def row(listed: str, name: str) -> list[str]:
    """The list's row of exercise ``name``: [name, jax, torch, ...]."""
    return next(line.split() for line in listed.splitlines() if line.split()[:1] == [name])


def test_a_folder_that_cannot_be_written_or_listed_is_one_line_and_exit_2(tmp_path, capsys):
    """A --dir under a file, a --dir for the list that is not a folder, and a folder to check without exercise
    files: one line each, exit 2, no traceback."""
    (tmp_path / "a_file").write_text("")
    for argv, says in ((["exercise", "vae", "--dir", str(tmp_path / "a_file" / "sub")],
                        f"error: cannot write {tmp_path / 'a_file' / 'sub' / 'vae_jax.py'}: "),
                       (["exercises", "--dir", str(tmp_path / "missing")], f"error: {tmp_path / 'missing'} is not a folder"),
                       (["exercise", "--check", str(tmp_path)], f"error: {tmp_path} holds no exercise files")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert err.startswith(says) and err.count("\n") == 1 and not out, (argv, out, err)


def test_the_folder_dir_names_is_remembered_and_the_list_shows_its_progress(tmp_path, default_folder, capsys):
    """``--dir`` once: the list without it shows the progress kept there, and ``exercise`` writes there, until
    ``--dir`` names the default again (the control: the default folder's list has none of it)."""
    mine = tmp_path / "mine"
    assert main(["exercise", "gan.minibatch_std", "--dir", str(mine)]) == 0
    written(mine / "gan_jax.py")
    assert main(["exercise", "--check", str(mine / "gan_jax.py")]) == 0
    capsys.readouterr()
    assert main(["exercises"]) == 0
    listed = capsys.readouterr().out
    assert f"your files in {mine.resolve()}/" in listed and row(listed, "gan.minibatch_std")[1:3] == ["done", "-"]
    assert main(["exercise", "vae"]) == 0 and (mine / "vae_jax.py").is_file()
    assert not (default_folder / "vae_jax.py").exists()
    capsys.readouterr()
    assert main(["exercise", "--check"]) == 1  # no PATH: every file of that folder (make exercise-check)
    out = capsys.readouterr().out
    assert "minibatch_std: 1 of 1 cases pass: done" in out and "reparameterize: not written yet" in out
    assert main(["exercises", "--dir", str(default_folder)]) == 0  # back to the default, remembered too
    assert main(["exercises"]) == 0
    listed = capsys.readouterr().out.split("30 exercises")[-1]
    assert f"your files in {default_folder}/" in listed and row(listed, "gan.minibatch_std")[1:3] == ["-", "-"]


def test_check_of_a_folder_checks_each_exercise_file_in_it(tmp_path, capsys):
    """``--check FOLDER``: each ``<topic>_<backend>.py`` in it, in the course's order (other files left alone); exit
    0 when all are done, 1 while one is not written, 2 when one does not load, whose error is one line among the
    others' checks."""
    folder = tmp_path / "mine"
    assert main(["exercise", "gan.minibatch_std", "--dir", str(folder)]) == 0
    assert main(["exercise", "vae", "--dir", str(folder), "--backend", "torch"]) == 0
    (folder / "notes.py").write_text("raise SystemExit('not an exercise file')\n")
    written(folder / "gan_jax.py")
    capsys.readouterr()
    assert main(["exercise", "--check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert out.index("vae.reparameterize in PyTorch") < out.index("gan.minibatch_std in JAX")  # the course's order
    assert "minibatch_std: 1 of 1 cases pass: done" in out and "reparameterize: not written yet" in out
    topic, (exercise,) = E.find("vae.reparameterize")
    pasted(folder / "vae_torch.py", topic, exercise, "torch", E.solution(topic, exercise, "torch"))
    assert main(["exercise", "--check", str(folder)]) == 0
    assert json.loads((folder / E.PROGRESS).read_text()) == {"gan_jax.py": {"minibatch_std": "done"},
                                                            "vae_torch.py": {"reparameterize": "done"}}
    (folder / "gan_jax.py").write_text((folder / "gan_jax.py").read_text() + "\nbroken(\n")
    capsys.readouterr()
    assert main(["exercise", "--check", str(folder)]) == 2
    out = capsys.readouterr().out
    assert "error: " in out and "gan_jax.py does not load: SyntaxError" in out and "Traceback" not in out
    assert "reparameterize: 1 of 1 cases pass: done" in out


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
    page = (catalogue.ROOT / "docs" / "exercises.md").read_text()
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
