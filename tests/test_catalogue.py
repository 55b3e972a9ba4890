"""The catalogue lists every topic of the syllabus (the README's table is generated from it: tests/test_docs.py)."""

import re
import subprocess
import sys

from project import catalogue
from shared_specs import cli, topics

TOPICS_MD = catalogue.ROOT / "docs" / "TOPICS.md"


def test_every_syllabus_topic_is_catalogued():
    names = re.findall(r"^\| ([a-z_]+) \|", TOPICS_MD.read_text(), flags=re.M)
    names = [n for n in names if n != "topic"]
    assert names == [t.name for t in catalogue.TOPICS]


def test_names_are_unique_and_valid_module_names():
    names = [t.name for t in catalogue.TOPICS]
    assert len(names) == len(set(names)) and all(n.isidentifier() for n in names)


def test_forms_present_for_the_first_topics():
    rows = {r[0]: r for r in topics.table_rows()}
    assert rows["vae"][3:5] == ("yes", "yes") and rows["vae"][5] >= 10
    assert rows["elbo"][3:5] == ("yes", "yes") and rows["elbo"][5] >= 6


def test_list_command_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "shared_specs", "list"], capture_output=True, text=True, check=True,
                         cwd=catalogue.ROOT).stdout
    assert "topic" in out and "spec cases" in out and len(out.splitlines()) >= len(catalogue.TOPICS) + 1


def test_check_rejects_unknown_topics(capsys):
    assert cli.main(["check", "not_a_topic"]) == 2
    assert "unknown topic" in capsys.readouterr().err
    without = [t.name for t in catalogue.TOPICS if not topics.spec_cases(t.name)]
    if without:  # a topic of the syllabus that has no cases yet
        assert cli.main(["check", without[0]]) == 2
        assert "no spec cases" in capsys.readouterr().err
