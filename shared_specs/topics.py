"""Each topic's spec cases (``shared_specs/<topic>.py``'s ``CASES``) and the README's topic table, read through the
catalogue (``project.catalogue``)."""

from __future__ import annotations

import importlib

from project.catalogue import TOPICS, has_derivation, has_implementation, has_spec


def spec_cases(name: str) -> list:
    """The spec cases of a topic (an empty list when it has no spec module yet)."""
    if not has_spec(name):
        return []
    return list(importlib.import_module(f"shared_specs.{name}").CASES)


def table_rows() -> list[tuple[str, str, str, str, str, int]]:
    """(topic, group, lectures, derivation, implementation, cases) for every topic, in course order."""
    mark = {True: "yes", False: "-"}
    return [
        (t.name, t.group, t.lectures, mark[has_derivation(t.name)], mark[has_implementation(t.name)],
         len(spec_cases(t.name)))
        for t in TOPICS
    ]
