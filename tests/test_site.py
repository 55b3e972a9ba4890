"""The course's site (make site): built by MkDocs from a copy of the pages, then opened page by page in headless
Chromium with no network. Slow (about 4 minutes on 2 cores): `make test-slow` installs what it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from project import catalogue
from shared_specs import site, site_check
from shared_specs.docs import topics_with_pages

ROOT = catalogue.ROOT
pytestmark = pytest.mark.slow


def _needs_tools():
    missing = [what for what, ok in (("MkDocs (make site-setup)", shutil.which("mkdocs") or _importable("mkdocs")),
                                     ("KaTeX and node (apt-get install libjs-katex nodejs)", site.katex_available()),
                                     ("chromium and chromium-driver", site_check.browser_available())) if not ok]
    assert not missing, f"the site's test needs {', '.join(missing)}: run `make test-slow`, which installs them"


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site built into a temporary folder, with one executed notebook (elbo's, written here)."""
    _needs_tools()
    where = tmp_path_factory.mktemp("site")
    notebooks = where / "notebooks-in"
    subprocess.run([sys.executable, "-m", "theory_jax", "elbo", "--notebook", str(notebooks / "elbo.ipynb")],
                   check=True, capture_output=True, cwd=ROOT)
    site.build(ROOT, notebooks, where=where, echo=lambda *_: None)
    return where


def test_every_page_opens_with_its_math_typeset_and_its_figures_loaded(built):
    root = built / "site"
    pages = site_check.pages_to_open(root)
    lessons = [f"topics/{t.name}.html" for t in topics_with_pages()]
    assert set(lessons) <= set(pages) and "notebooks/elbo.html" in pages and "index.html" in pages
    shot = built / "elbo.png"
    problems, seen = site_check.browser_problems(root, pages, screenshot=("topics/elbo.html", shot))
    assert problems == []
    # the math is there and typeset: in the lessons, the derivations and the notebook
    assert all(seen[p]["typeset"] > 0 for p in lessons), [p for p in lessons if not seen[p]["typeset"]]
    assert seen["derivations/elbo.html"]["typeset"] >= 17 and seen["notebooks/elbo.html"]["typeset"] >= 17
    # the screenshot of a lesson shows its rendered equations (kept in build/site-check/ to look at)
    assert seen["screenshot:topics/elbo.html"]["visible_formulas"] >= 3
    assert shot.stat().st_size > 20_000
    keep = ROOT / "build" / "site-check"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "elbo.png")


def test_every_link_and_figure_of_the_site_resolves(built):
    assert site_check.link_problems(built / "site") == []


def test_a_broken_equation_and_a_broken_link_are_caught(built, tmp_path):
    """Negative control: the same site with two formulas KaTeX cannot typeset and a link to nothing planted in a
    lesson."""
    shutil.copytree(built / "site-src", tmp_path / "site-src")
    shutil.copy(built / "mkdocs.yml", tmp_path / "mkdocs.yml")
    lesson = tmp_path / "site-src" / "topics" / "elbo.md"
    lesson.write_text(lesson.read_text() + "\nPlanted: $\\frac{1}{2$ and a [link](gone.md).\n\n$$\n\\nosuchmacro{x}\n$$\n")
    warnings = site.run_mkdocs(tmp_path / "mkdocs.yml")
    assert any("gone.md" in w for w in warnings)  # MkDocs names the link ...
    links = site_check.link_problems(tmp_path / "site")
    assert links == ["topics/elbo.html: gone.md (no such file)"]  # ... and so does the check of the HTML
    problems, _ = site_check.browser_problems(tmp_path / "site", ["topics/elbo.html", "topics/vae.html"])
    # KaTeX names the undefined macro and leaves it as its TeX; auto-render finds no end to a formula whose braces
    # do not close, and leaves that as its TeX too
    assert all(p.startswith("topics/elbo.html: ") for p in problems) and len(problems) == 3, problems
    assert any("a KaTeX error" in p and "nosuchmacro" in p for p in problems)
    assert any("a formula left as TeX" in p and "frac{1}{2" in p for p in problems)
