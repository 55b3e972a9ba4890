"""A topic's two pages: the lesson a learner reads (docs/topics/<topic>.md) and its lab record (docs/records/).

The lesson is the path through the topic: the idea, the equations, the derivation's steps in brief, the training
step quoted from its source, how to train and sample, the figures and its results in brief. It holds at most
``MAX_LESSON_WORDS`` words of prose (``lesson_words``; code is not counted). Everything that was measured or tried,
and the long generated tables (claims, spec cases, every run, the reproductions), are on the records page.

Generated here, between markers as every generated block (``shared_specs.docs``):

* ``<!-- code:PATH:NAME:begin ... -->``: the source of the function or class ``NAME`` (``Class.method`` for a
  method) of the repository file ``PATH``, quoted whole, so that a lesson's code cannot drift from the code.
* ``summary`` on a lesson: the topic's headline runs and reproductions, one line each, linked to the record.
* ``records-header`` on a records page: its title and the way back to the lesson.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from typing import Any

from shared_specs import measured

MAX_LESSON_WORDS = 2000
RECORDS_DIR = "docs/records"
CODE = re.compile(r"(?P<begin><!-- code:(?P<spec>[^\s:]+:[\w.]+):begin[^>]*-->)\n.*?(?P<end><!-- code:(?P=spec):end -->)",
                  re.S)
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[A-Za-z/!][^>]*>")  # a tag, not a bare "<" (as in `eta <= 1`)


def source_of(root: Path, spec: str) -> str:
    """The source of ``NAME`` in ``PATH`` (``spec`` is 'PATH:NAME'), decorators included, dedented; ValueError
    naming what is not there."""
    path, _, name = spec.partition(":")
    file = root / path
    if not file.is_file():
        raise ValueError(f"a code quote names {path}, which is no file of the repository")
    text = file.read_text()
    body: list[ast.stmt] = ast.parse(text).body
    node: ast.AST | None = None
    for part in name.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise ValueError(f"a code quote names {name} in {path}, which defines no such function or class")
        body = node.body
    lines = text.splitlines()
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("\n".join(lines[first - 1:node.end_lineno]))


def code_block(root: Path, spec: str, page: str) -> str:
    """A quoted definition: where it is (linked from ``page``, a path under docs/) and its source."""
    path, _, name = spec.partition(":")
    up = "/".join([".."] * (page.count("/")))
    return f"`{name}` in [`{path}`]({up}/{path}):\n\n```python\n{source_of(root, spec)}\n```"


def fill_code(text: str, root: Path, page: str) -> str:
    """``text`` with every code quote's source as the file now has it; ValueError naming ``page`` and the quote."""
    try:
        return CODE.sub(lambda m: f"{m['begin']}\n{code_block(root, m['spec'], page)}\n{m['end']}", text)
    except ValueError as exc:
        raise ValueError(f"{page}: {exc}") from None


def lesson_words(markdown: str) -> int:
    """The words a learner reads on a page: its prose and tables, without code blocks, comments or HTML tags."""
    text = _TAG.sub(" ", _COMMENT.sub(" ", _FENCE.sub(" ", markdown)))
    return len(re.findall(r"[A-Za-z0-9][\w'’.-]*", text))


def records_header(name: str) -> str:
    return (f"# `{name}`: the records\n\nThe lab record of the [`{name}` lesson](../topics/{name}.md): what was "
            "measured and tried, every recorded run, the derivation's claims and the spec cases with their errors.")


def summary_block(name: str, results: list[dict[str, Any]], record: dict[str, Any]) -> str:
    """A lesson's results in brief: per data set its headline run (the front page's choice), per reproduction its
    best arm (of the topic's own model where the row has one) beside the paper; each linked to the full tables of
    the records page."""
    rows = [r for r in results if r["model"] == name and r.get("kind") != "control"]
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        r = measured.front_rows([x for x in rows if x["dataset"] == dataset])[0]
        lines.append(f"- **{dataset}**, {r['preset']} preset: {measured._figure(r)}, after "
                     f"{measured._minutes(r['train_seconds'])} of training ({r['machine']}, {r['commit']}).")
    ran = {r["row"] for r in record.get("runs", [])}
    for key, row in record.get("rows", {}).items():
        if name not in row["topics"] or key not in ran:
            continue
        if row.get("gap"):  # the row's figure is the share of the gap its middle arm closes, not an arm's own
            share = measured.paper_gap_share(row)
            paper = "" if share is None else f", the paper's {share:.0%}"
            lines.append(f"- Reproduced, *{row['title']}*: {measured.gap_line(record, key, page=False)}{paper}; the "
                         f"target: {row['target']}.")
            continue
        stats = {a["name"]: measured.reproduce_stats(record, key, a["name"]) for a in row["arms"]}
        own = [a for a in row["arms"] if a["model"] == name] or row["arms"]  # the page's own model's arms first
        best = measured.best_arm(row, own, stats)
        st = stats[best["name"]]
        met = f"; the target ({row['target']}) met on {st['met_count']} of {st['seeds']} seeds" if st["judged"] else ""
        paper = best.get("paper") or row["paper_figure"]
        paper = f", the paper {paper}" if paper.strip("- ") else ""  # '-': no figure of the paper's for this task
        lines.append(f"- Reproduced, *{row['title']}*: {row['label']} {st['mean']:.{row['digits']}f} over "
                     f"{st['seeds']} seeds (`{best['name']}`){paper}{met}.")
    if not lines:
        return (f"*No run recorded yet.* The derivation's claims and the spec cases with their measured errors are "
                f"on [the records page](../records/{name}.md).")
    return "\n".join(lines) + (f"\n\nEvery run with its settings, machine and load, the reproductions arm by arm, the "
                               f"derivation's claims and the spec cases: [the records page](../records/{name}.md).")


def too_long(pages: dict[str, str]) -> list[str]:
    """A line per lesson over ``MAX_LESSON_WORDS`` words."""
    return [f"{path}: the lesson has {n} words, more than {MAX_LESSON_WORDS}: move what was measured or tried to "
            f"{RECORDS_DIR}/{Path(path).name}" for path, text in pages.items()
            if (n := lesson_words(text)) > MAX_LESSON_WORDS]
