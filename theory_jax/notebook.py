"""A derivation as a Jupyter notebook: the same source as the script and the document, cell by cell.

``python -m theory_jax elbo --notebook build/notebooks/elbo.ipynb`` (``make notebooks`` for every topic) reads the
topic's ``derive()`` and the steps it calls (``theory_jax/derivations/elbo.py``), and writes them out flat, as a lecture
notebook reads:

* a first code cell with the derivation module's imports (the topic's functions among them, ``from theory_jax.elbo
  import ...``) and its own helpers (``from theory_jax.derivations.elbo import ...``);
* then, in the order ``derive()`` runs them, the statements of ``derive()`` and of each step, cut after every
  statement that records a claim or a figure: a markdown cell with what that code checks (each claim's statement,
  the same LaTeX as the document), then the code cell itself, whose output is the printed check and the figure;
* each ``d.say(...)`` that stands alone becomes a markdown cell of its text;
* each of the topic's exercises (``theory_jax/exercises/<topic>.py``) after the first cell that calls its function:
  what to write, the stub as ``your_<function>`` and a check cell running ``python -m theory_jax exercise``'s checker.

Nothing is copied by hand: the cells are slices of the derivation's source (comments and layout kept), so the notebook
changes when the derivation does. To know which statement recorded which claim, the derivation is run once here
(each item keeps the line that recorded it, ``Derivation.origins``); then the notebook is executed in a fresh kernel
(nbclient), so a learner opens it with every output and figure already there. A step is flattenable when it is a
function of the derivation module whose first parameter is ``d``, called from ``derive()`` with ``d`` first as a
statement (or an assignment, or as an argument of another step's call, ``*`` unpacked or not), and returns nothing or
one value at its end. The cells are compiled before the derivation runs: a layout Python cannot read is an error, not
a notebook.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theory_jax.derivation import Claim, Derivation, Figure

ROOT = Path(__file__).resolve().parent.parent


class NotFlattenable(ValueError):
    """A derivation whose source the notebook cannot lay out cell by cell (the message says which line and why)."""


@dataclass
class Statement:
    """One top-level statement of ``derive()`` or a step: its source text (dedented) and where it came from."""

    text: str
    code: types.CodeType
    first: int  # absolute line numbers in the module's file
    last: int
    say: bool = False  # a lone ``d.say(...)``
    node: ast.stmt | None = None  # its syntax tree (None for a binding the layout wrote)
    items: list[Any] = field(default_factory=list)  # what it recorded when run (claims, says, figures)


def _function_statements(fn: types.FunctionType) -> list[Statement]:
    """The statements of ``fn``'s body (its docstring left out) as source slices, each with the comment lines just
    above it."""
    lines, start = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    out, previous_end = [], (body[0].lineno - 1 if body else 0)
    for stmt in body:
        begin = min([stmt.lineno] + [x.lineno for x in getattr(stmt, "decorator_list", [])])  # a def's decorators
        while begin - 1 > previous_end and lines[begin - 2].strip().startswith("#"):
            begin -= 1  # the comments just above belong to the statement
        text = textwrap.dedent("".join(lines[begin - 1:stmt.end_lineno])).rstrip()
        say = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
               and isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr == "say")
        out.append(Statement(text, fn.__code__, start + begin - 1, start + stmt.end_lineno - 1, say, node=stmt))
        previous_end = stmt.end_lineno
    return out


def _returns_early(fn: types.FunctionType) -> int | None:
    """The line of a ``return`` in ``fn`` other than its last statement (None when there is none)."""
    lines, start = inspect.getsourcelines(fn)
    node = ast.parse(textwrap.dedent("".join(lines))).body[0]
    last = node.body[-1] if node.body else None

    def visit(n: ast.AST) -> int | None:
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child is not last:
                return start + child.lineno - 1
            found = visit(child)
            if found:
                return found
        return None

    return visit(node)


def _step_call(stmt: ast.stmt, module: types.ModuleType) -> tuple[types.FunctionType, ast.Call, str | None] | None:
    """(the step, its call, the assignment target's source) when ``stmt`` calls a step of ``module`` with ``d``."""
    target = None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        call, target = stmt.value, ast.unparse(stmt.targets[0])
    elif isinstance(stmt, ast.Expr):
        call = stmt.value
    else:
        return None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        return None
    fn = getattr(module, call.func.id, None)
    if not (isinstance(fn, types.FunctionType) and fn.__module__ == module.__name__):
        return None
    params = list(inspect.signature(fn).parameters)
    if not (params and params[0] == "d" and call.args and isinstance(call.args[0], ast.Name) and call.args[0].id == "d"):
        return None  # a step receives the derivation first, as ``d``
    return fn, call, target


def flatten(module: types.ModuleType) -> list[Statement]:
    """``derive()``'s statements with each step call replaced by the step's own statements (``_inline``)."""
    derive = module.derive
    lines, _ = inspect.getsourcelines(derive)
    statements = _function_statements(derive)
    nodes = ast.parse(textwrap.dedent("".join(lines))).body[0].body
    out = []
    for stmt, node in zip(statements, nodes[len(nodes) - len(statements):]):  # (the docstring left out)
        if isinstance(node, ast.Return):
            continue  # ``return d``
        found = _step_call(node, module)
        out += [stmt] if found is None else _inline(module, *found, stmt)
    return out


def _inline(module: types.ModuleType, fn: types.FunctionType, call: ast.Call, target: str | None,
            stmt: Statement) -> list[Statement]:
    """A step's statements in place of its call ``stmt``: its arguments bound to its parameter names first (in the
    call's order, where they differ; an argument that is itself a step call, or ``*`` one, is laid out flat too,
    its value bound to the parameters it fills), its final ``return value`` turned into the call's assignment."""
    early = _returns_early(fn)
    if early:
        raise NotFlattenable(f"{module.__name__}.{fn.__name__} returns before its end (line {early}): a notebook "
                             "runs a step's statements as cells, so a step may return only at its end")
    params = list(inspect.signature(fn).parameters)
    out = []
    for position, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred):
            names = _filled_by_star(module, fn, call, position)
            value, bound = argument.value, ", ".join(names)
        else:
            value, bound = argument, params[position]
        inner = _step_call(ast.Expr(value), module)
        if inner is not None:
            out += _inline(module, inner[0], inner[1], bound, stmt)
        elif ast.unparse(value) != bound:
            out.append(Statement(f"{bound} = {ast.unparse(value)}", stmt.code, stmt.first, stmt.last))
    for k in call.keywords:
        if k.arg is None:
            raise NotFlattenable(f"{module.__name__}: a step called with **{ast.unparse(k.value)} (line {stmt.first})"
                                 " cannot be laid out as cells; pass its arguments by name")
        if ast.unparse(k.value) != k.arg:
            out.append(Statement(f"{k.arg} = {ast.unparse(k.value)}", stmt.code, stmt.first, stmt.last))
    body = _function_statements(fn)
    if body and isinstance(body[-1].node, ast.Return):
        last = body.pop()
        value = "" if last.node.value is None else ast.unparse(last.node.value)
        if target and value and value != ast.unparse(ast.parse(target, mode="eval").body):  # not ``a, b = a, b``
            body.append(Statement(f"{target} = {value}", last.code, last.first, last.last, node=last.node))
    return out + body


def _filled_by_star(module: types.ModuleType, fn: types.FunctionType, call: ast.Call, position: int) -> list[str]:
    """The parameters of ``fn`` that the ``*`` argument at ``position`` of ``call`` fills: those after the
    positional arguments before it, up to the keywords; only as the last positional argument, of a step whose
    parameters are all positional or keyword and have no defaults (else it is unknown how many it fills)."""
    parameters = list(inspect.signature(fn).parameters.values())
    named = {k.arg for k in call.keywords}
    where = f"{module.__name__}: the call of {fn.__name__} with {ast.unparse(call.args[position])}"
    if position != len(call.args) - 1 or any(
            p.kind is not p.POSITIONAL_OR_KEYWORD or p.default is not p.empty for p in parameters):
        raise NotFlattenable(f"{where} fills an unknown number of parameters; name them (a, b = ...; step(d, a, b))")
    return [p.name for p in parameters[position:] if p.name not in named]


def attach(statements: list[Statement], d: Derivation) -> None:
    """Give each statement the items it recorded when ``d`` was derived: an item belongs to the innermost frame of
    its origin that runs one of the flattened functions, at the statement spanning that line."""
    codes = {s.code for s in statements}
    for item, origin in zip(d.items, d.origins):
        frame = next(((code, line) for code, line in origin if code in codes), None)
        owner = None if frame is None else next(
            (s for s in statements if s.code is frame[0] and s.first <= frame[1] <= s.last), None)
        if owner is None:
            raise NotFlattenable(f"a {type(item).__name__.lower()} of {d.topic} was recorded outside derive() and "
                                 "its steps; record it from a step")
        owner.items.append(item)


def _describe(item: Any) -> str:
    if isinstance(item, Claim):
        return f"**Claim {item.number}** ({item.kind}). {item.statement}"
    if isinstance(item, Figure):
        return f"*Figure {item.number}.* {item.caption}"
    return item


def _imports(module: types.ModuleType, statements: list[Statement]) -> str:
    """The module's own import statements and the names it defines that the cells use."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    imports = [ast.get_source_segment(source, n) for n in tree.body
               if isinstance(n, (ast.Import, ast.ImportFrom)) and not (isinstance(n, ast.ImportFrom)
                                                                      and n.module == "__future__")]
    defined = set()
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            defined.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                defined |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}
    used = set()
    for s in statements:
        used |= {x.id for x in ast.walk(ast.parse(s.text)) if isinstance(x, ast.Name)}
    names = sorted(defined & used, key=lambda n: (n.startswith("_"), n.lower()))
    own = f"from {module.__name__} import (\n" + "".join(f"    {n},\n" for n in names) + ")" if names else ""
    return "\n".join(imports + ([own] if own else []) + ["", "echo = print  # each claim's check, printed as it passes"])


def script(module: types.ModuleType, statements: list[Statement] | None = None) -> str:
    """The notebook's code as one script, in the order of its cells, laid out without deriving: what a cheap check
    compiles (``compiled``) and reads for names no cell before defines."""
    statements = flatten(module) if statements is None else statements
    return "\n\n".join([_imports(module, statements), *(s.text for s in statements)]) + "\n"


def compiled(topic: str, source: str) -> types.CodeType:
    """``source`` compiled, or NotFlattenable naming the line of the layout that Python cannot read."""
    try:
        return compile(source, f"<the {topic} notebook>", "exec")
    except SyntaxError as error:
        raise NotFlattenable(f"the {topic} notebook's cells do not compile: {error.msg}: "
                             f"{(error.text or '').strip()!r}") from None


def cells(topic: str, module: types.ModuleType | None = None) -> tuple[Derivation, list[Any]]:
    """Derive ``topic`` (its derivation module ``theory_jax.derivations.<topic>`` unless ``module`` is given) once, to
    learn which statement records which claim, and lay it out as notebook cells."""
    import nbformat.v4 as nbf

    module = module or importlib.import_module(f"theory_jax.derivations.{topic}")
    statements = flatten(module)
    compiled(topic, script(module, statements))  # before the derivation's minutes, not after
    d = module.derive()
    attach(statements, d)
    out = [nbf.new_markdown_cell(
        f"# `{topic}`: {module.TITLE}\n\n*Lectures:* {module.LECTURES}\n\n"
        f"The derivation [`theory_jax/derivations/{topic}.py`](../../theory_jax/derivations/{topic}.py) of "
        f"[`theory_jax/{topic}.py`](../../theory_jax/{topic}.py), cell by cell: each claim's "
        "statement, then the code that computes and checks it, its check and its figure. Written and run by "
        f"`python -m theory_jax {topic} --notebook FILE.ipynb`; change a number and run the cells again."),
        nbf.new_code_cell(_imports(module, statements))]
    chunk: list[Statement] = []

    def flush() -> None:
        if not chunk:
            return
        recorded = [item for s in chunk for item in s.items]
        if recorded:
            out.append(nbf.new_markdown_cell("\n\n".join(_describe(i) for i in recorded)))
        text = "\n".join(s.text for s in chunk)
        if recorded and chunk[-1].text.startswith("d."):
            text += ";"  # the cell's output is the printed check, not the returned Claim's repr
        out.append(nbf.new_code_cell(text))
        chunk.clear()

    for s in statements:
        if s.say and len(s.items) == 1 and isinstance(s.items[0], str):
            flush()
            out.append(nbf.new_markdown_cell(s.items[0]))
            continue
        chunk.append(s)
        if any(not isinstance(i, str) for i in s.items):
            flush()
    flush()
    out = exercise_cells(topic, out)
    out.append(nbf.new_code_cell('print(f"{sum(c.passed for c in d.claims)} of {len(d.claims)} claims pass"'
                                 ' + ("" if d.passed else ": FAILED, see the marks above"))'))
    return d, out


def exercise_cells(topic: str, cells: list[Any]) -> list[Any]:
    """``cells`` with each of the topic's exercises (``theory_jax/exercises/<topic>.py``) after the first derivation
    cell that calls its function (else at the end): a markdown cell saying what to write, the stub as
    ``your_<function>`` (so the derivation's cells keep calling ours) and a check cell that runs the same checker as
    ``python -m theory_jax exercise --check`` (``shared_specs.exercise.check_in_notebook``)."""
    import nbformat.v4 as nbf

    from theory_jax.exercises import stub_of

    if importlib.util.find_spec(f"theory_jax.exercises.{topic}") is None:
        return cells
    out = list(cells)
    for exercise in importlib.import_module(f"theory_jax.exercises.{topic}").EXERCISES:
        name = exercise.function
        calls = [i for i, c in enumerate(out) if i > 1 and c.cell_type == "code" and "exercise" not in c.metadata
                 and re.search(rf"\b{name}\(", c.source)]  # cell 1 imports the topic's functions
        at = calls[0] + 1 if calls else len(out)
        fn = getattr(importlib.import_module(f"theory_jax.{topic}"), name)
        out[at:at] = [
            nbf.new_markdown_cell(
                f"**Exercise: write `{name}` yourself.** {exercise.teaches[0].upper()}{exercise.teaches[1:]}. Fill "
                f"in `your_{name}` below, then run the check cell: it runs `{name}`'s spec cases against ours in "
                f"PyTorch and the independent reference, and names a known mistake. Hints: `python -m theory_jax "
                f"exercise {topic}.{name} --hint 1` (then 2, ...); the same exercise in a file, in either framework: "
                f"`python -m theory_jax exercise {topic}.{name} [--backend torch]`.",
                metadata={"exercise": name}),
            nbf.new_code_cell(stub_of(fn, f"your_{name}").rstrip("\n"), metadata={"exercise": name}),
            nbf.new_code_cell(f"from shared_specs.exercise import check_in_notebook\n\n"
                              f"check_in_notebook(\"{topic}.{name}\", your_{name});", metadata={"exercise": name})]
    return out


def write(topic: str, path: Path, execute: bool = True, module: types.ModuleType | None = None,
          cwd: Path = ROOT, timeout: int = 1200) -> tuple[Derivation, list[str]]:
    """Write ``topic``'s notebook to ``path``, executed in a fresh kernel (working directory ``cwd``) unless
    ``execute`` is False: the derivation as run here, and the errors of the cells that raised. A failed claim or a
    crash is written too, with its mark or its traceback, for the learner to see."""
    import nbformat
    import nbformat.v4 as nbf

    d, body = cells(topic, module)
    nb = nbf.new_notebook(cells=body, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    errors = []
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       extra_arguments=["--log-level=ERROR"],  # not the kernel's note on its local TCP sockets
                       resources={"metadata": {"path": str(cwd)}}).execute()
        errors = [f"{o['ename']}: {o['evalue']}" for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.get("output_type") == "error"]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return d, errors
