"""The course as a static site (``make site``), and the checks of its math.

The math of the pages is written as GitHub renders it, ``$...$`` inline and ``$$...$$`` on lines of their own;
the site renders it with KaTeX (Debian's ``libjs-katex``, copied into the build: the site needs no network).
``math_errors`` runs every formula of a page through that same KaTeX under Node.js, so that a formula KaTeX
cannot typeset is named with its page and line before anyone opens a browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KATEX = Path("/usr/share/javascript/katex")  # Debian's libjs-katex
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
# Inline math as pymdownx.arithmatex reads it: no space just inside the dollars, no digit just after the closing one.
_INLINE = re.compile(r"(?<![\\$])\$(?![\s$])(.+?)(?<![\s\\])\$(?![\d$])")


@dataclass(frozen=True)
class Formula:
    line: int
    tex: str
    display: bool


def _blank(match: re.Match) -> str:
    """The match with everything but its newlines blanked, so that line numbers survive."""
    return re.sub(r"[^\n]", " ", match[0])


def formulas(markdown: str) -> list[Formula]:
    """Every formula of a markdown page, outside code, with its line: display ``$$...$$`` and inline ``$...$``."""
    text = _CODE_SPAN.sub(_blank, _FENCE.sub(_blank, re.sub(r"<!--.*?-->", _blank, markdown, flags=re.S)))
    found = []
    for m in _DISPLAY.finditer(text):
        found.append(Formula(text.count("\n", 0, m.start()) + 1, m[1].strip(), True))
    text = _DISPLAY.sub(_blank, text)
    for m in _INLINE.finditer(text):
        found.append(Formula(text.count("\n", 0, m.start()) + 1, m[1], False))
    return sorted(found, key=lambda f: f.line)


_NODE = """
const katex = require(process.argv[1]);
const items = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = items.map(([tex, display]) => {
  try { katex.renderToString(tex, {displayMode: display, throwOnError: true, strict: 'ignore'}); return null; }
  catch (e) { return String(e.message).split('\\n')[0]; }
});
process.stdout.write(JSON.stringify(out));
"""


def katex_available() -> bool:
    return (KATEX / "katex.js").is_file() and shutil.which("node") is not None


def math_errors(files: list[Path], root: Path) -> list[str]:
    """'FILE:LINE: KaTeX's error (the formula)' for every formula of ``files`` KaTeX cannot typeset; RuntimeError
    when KaTeX or Node.js is missing."""
    if not katex_available():
        raise RuntimeError(f"KaTeX ({KATEX}) or node is missing: `sudo apt-get install libjs-katex nodejs` "
                           "(`make site` installs them as root)")
    found = [(file, f) for file in files for f in formulas(file.read_text())]
    if not found:
        return []
    done = subprocess.run(["node", "-e", _NODE, str(KATEX / "katex.js")], check=True, capture_output=True, text=True,
                          input=json.dumps([[f.tex, f.display] for _, f in found]))
    return [f"{file.relative_to(root)}:{f.line}: {error} (in ${f.tex}$)"
            for (file, f), error in zip(found, json.loads(done.stdout)) if error]


# The site ---------------------------------------------------------------------------------------------------------
BUILD = "build"  # where the site is built: site-src/ (the pages as MkDocs reads them), site/ (the HTML), mkdocs.yml
_LINK = re.compile(r"(?P<pre>!?\[[^\]]*\]\()(?P<target>[^)\s]+)(?P<post>(?:\s+\"[^\"]*\")?\))|"
                   r"(?P<attr>(?:href|src)=\")(?P<target2>[^\"]+)(?P<post2>\")")
LANGUAGES = {".py": "python", ".sh": "bash", ".md": "markdown", ".json": "json", ".toml": "toml", ".yml": "yaml",
             ".yaml": "yaml", ".txt": "text", "": "text"}
MATH_JS = """// KaTeX, shipped with the site: the math of the pages (arithmatex) and of the notebooks ($...$)
document$.subscribe(function () {
  renderMathInElement(document.body, {
    delimiters: [{left: "$$", right: "$$", display: true}, {left: "\\\\[", right: "\\\\]", display: true},
                 {left: "\\\\(", right: "\\\\)", display: false}, {left: "$", right: "$", display: false}],
    ignoredClasses: ["highlight", "highlighttable", "highlight-ipynb", "jp-CodeMirrorEditor", "clipboard-copy-txt"],
    throwOnError: true, strict: "ignore",  // an error is reported (and the formula left as its TeX), never hidden
    errorCallback: function (message, error) {
      window.mathErrors = (window.mathErrors || []).concat([String(error)]);
      console.error(message, error);
    }
  });
  document.body.setAttribute("data-math", "typeset");  // for the browser check: KaTeX has run on this page
});
"""


NOT_SEARCHED = "---\nsearch:\n  exclude: true\n---\n\n"  # the code pages: shown where a lesson links them, not searched


class Staging:
    """The markdown tree MkDocs builds: docs/ as it is, README.md as the home page, and a page for every file of
    the repository a page links to (the code, shown), each link rewritten to its place in the site."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out, self.sources = root, out, set()

    def place(self, path: Path) -> Path | None:
        """Where a repository file is in the site: docs/X at X, README.md as index.md, code under src/ (remembered in
        ``sources``: ``source_pages`` writes a page for each); None for a file the site does not show."""
        rel = path.relative_to(self.root)
        if rel == Path("README.md"):
            return Path("index.md")
        if rel.parts[0] == "docs":
            return Path(*rel.parts[1:])
        if rel.parts[0] in (".git", ".venv", "build", "runs"):
            return None
        self.sources.add(rel)
        return Path("src", *rel.parts, "index.md") if path.is_dir() else Path("src", *rel.parts[:-1], rel.name + ".md")

    def rewrite(self, text: str, source: Path, placed: Path) -> str:
        """``text`` of repository file ``source`` with each relative link pointing where the site puts its target."""
        def one(target: str) -> str:
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                return target
            path, _, anchor = target.partition("#")
            dest = (source.parent / path).resolve()
            if not dest.exists() or self.root not in (dest, *dest.parents):
                return target
            where = self.place(dest)
            if where is None:
                return target
            rel = Path(*[".."] * (len(placed.parts) - 1), where).as_posix()
            return rel + (f"#{anchor}" if anchor else "")

        def sub(m: re.Match) -> str:
            if m["target"]:
                return f"{m['pre']}{one(m['target'])}{m['post']}"
            target = re.sub(r"\.md(?=$|#)", ".html", one(m["target2"]))  # raw HTML: MkDocs leaves it as written
            return f"{m['attr']}{target}{m['post2']}"

        out, last = [], 0  # code blocks keep their text
        for m in _FENCE.finditer(text):
            out.append(_LINK.sub(sub, text[last:m.start()]))
            out.append(m[0])
            last = m.end()
        out.append(_LINK.sub(sub, text[last:]))
        return "".join(out)

    def write(self, placed: Path, text: str) -> None:
        file = self.out / placed
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)

    def page(self, source: Path) -> None:
        placed = self.place(source)
        text = self.rewrite(source.read_text(), source, placed)
        self.write(placed, text.replace("<details>", '<details markdown="1">'))

    def notebook(self, file: Path) -> None:
        """A derivation's executed notebook at notebooks/<topic>.ipynb, its markdown cells' links rewritten as a
        page's (they are written for build/notebooks/, where ``make notebooks`` puts the notebooks) and its headings
        without code spans (whose anchors mkdocs-jupyter's table of contents would spell otherwise); a link to a page
        names its HTML file, which MkDocs writes but does not substitute in a notebook."""
        notebook = json.loads(file.read_text())
        written_at = self.root / "build" / "notebooks" / file.name
        placed = Path("notebooks", file.name)
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                text = self.rewrite("".join(cell["source"]), written_at, placed)
                text = re.sub(r"(\]\((?![a-z]+:)[^)\s]*?)\.md(?=[)#])", r"\1.html", text)  # nbconvert keeps .md
                cell["source"] = re.sub(r"^(#+ .*)$", lambda m: m[1].replace("`", ""), text, flags=re.M)
        self.write(placed, json.dumps(notebook, indent=1))

    def source_pages(self) -> None:
        """A page per linked repository file (its text as code) or folder (its files, linked); a folder's pages
        link their files, so each of those gets its page too."""
        done: set[Path] = set()
        while self.sources - done:
            rel = sorted(self.sources - done)[0]
            done.add(rel)
            path = self.root / rel
            placed = self.place(path)
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in LANGUAGES and
                               not p.name.startswith("."))
                items = "\n".join(f"- [`{p.name}`]({p.name}.md)" for p in files)
                for p in files:
                    self.place(p)
                self.write(placed, f"{NOT_SEARCHED}# `{rel.as_posix()}/`\n\n{items}\n")
            else:
                fence = "````" if "```" in path.read_text() else "```"
                self.write(placed, f"{NOT_SEARCHED}# `{rel.as_posix()}`\n\n{fence}{LANGUAGES.get(path.suffix, 'text')}\n"
                                   f"{path.read_text().rstrip()}\n{fence}\n")


GROUP_TITLES = {"rl & preferences": "RL and preferences"}


def nav(root: Path, notebooks: list[str]) -> list:
    """The site's navigation in the course's order: the home page, the lessons by group, the derivations, the
    notebooks, the exercises, the results and records, the design."""
    from project import catalogue
    from shared_specs.docs import topics_with_pages

    groups: dict[str, list] = {}
    for t in topics_with_pages():
        groups.setdefault(t.group, []).append({t.name: f"topics/{t.name}.md"})
    derived = [t.name for t in catalogue.TOPICS if (root / f"docs/derivations/{t.name}.md").is_file()]
    return [{"Home": "index.md"},
            {"Lessons": [{GROUP_TITLES.get(group, group[:1].upper() + group[1:]): pages}
                         for group, pages in groups.items()]},
            {"Derivations": [{n: f"derivations/{n}.md"} for n in derived]},
            *([{"Notebooks": [{n: f"notebooks/{n}.ipynb"} for n in notebooks]}] if notebooks else []),
            {"Exercises": "exercises.md"},
            {"Results": ["results.md", "families.md", "gpu.md",
                         *[{t.name: f"records/{t.name}.md"} for t in topics_with_pages()]]},
            {"The design": ["ARCHITECTURE.md", "TOPICS.md"]}]


def config(root: Path, notebooks: list[str]) -> dict:
    return {
        "site_name": "Generative twins", "docs_dir": "site-src", "site_dir": "site", "use_directory_urls": False,
        "theme": {"name": "material", "font": False,  # no web fonts: the site reads with no network
                  "features": ["navigation.sections", "navigation.top", "search.highlight", "content.code.copy"]},
        "markdown_extensions": ["tables", "attr_list", "md_in_html", "admonition", "toc",
                                {"pymdownx.arithmatex": {"generic": True}}, "pymdownx.superfences",
                                {"pymdownx.highlight": {"use_pygments": True}}],
        "extra_css": ["assets/katex/katex.min.css"],
        "extra_javascript": ["assets/katex/katex.min.js", "assets/katex/contrib/auto-render.js", "assets/math.js"],
        "plugins": ["search", {"mkdocs-jupyter": {"execute": False, "include": ["notebooks/*.ipynb"],
                                                  "include_requirejs": False, "ignore_h1_titles": True,
                                                  "custom_mathjax_url": "data:text/javascript,"}}],
        "not_in_nav": "/src/\n/derivations/figures/\n",
        "validation": {"links": {"not_found": "warn", "anchors": "warn", "unrecognized_links": "warn"}},
        "nav": nav(root, notebooks),
    }


def stage(root: Path, notebooks: Path | None, where: Path) -> Path:
    """Write the MkDocs tree (``where``/site-src) and its config (``where``/mkdocs.yml); the config's path."""
    import yaml

    out = where / "site-src"
    shutil.rmtree(out, ignore_errors=True)
    staging = Staging(root, out)
    for source in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        staging.page(source)
    for figure in [*(root / "docs").rglob("*.png"), *(root / "docs").rglob("*.gif")]:
        target = out / figure.relative_to(root / "docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(figure, target)
    staging.source_pages()
    names = names_of(notebooks)
    for name in names:
        staging.notebook(notebooks / f"{name}.ipynb")
    assets = out / "assets" / "katex"
    shutil.copytree(KATEX, assets, symlinks=False)  # the fonts are a symlink in Debian's package: copied as files
    (out / "assets" / "math.js").write_text(MATH_JS)
    file = where / "mkdocs.yml"
    file.write_text(yaml.safe_dump(config(root, names), sort_keys=False))
    return file


def build(root: Path, notebooks: Path | None, where: Path | None = None, echo=print) -> Path:
    """Stage and build the site into ``where``/site (default build/site): the pages of ``root``, and the notebooks
    of the folder ``notebooks`` (written by ``make notebooks``); its index.html. RuntimeError naming what is missing
    or what MkDocs warned of (a broken link or anchor)."""
    where = where or root / BUILD
    if not katex_available():
        raise RuntimeError(f"KaTeX ({KATEX}) or node is missing: `sudo apt-get install libjs-katex nodejs`")
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        raise RuntimeError("MkDocs is not installed: `make site` installs requirements-site.txt") from None
    problems = run_mkdocs(stage(root, notebooks, where))
    if problems:
        raise RuntimeError("MkDocs failed:\n" + "\n".join(problems))
    index = where / "site" / "index.html"
    echo(f"built {index}: {sum(1 for _ in index.parent.rglob('*.html'))} pages, {len(names_of(notebooks))} "
         "notebooks")
    return index


def run_mkdocs(config_file: Path) -> list[str]:
    """Build the staged site of ``config_file`` next to it (site/); what MkDocs warned of: a link or anchor that
    resolves to nothing, a page it could not read."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(config_file)],
                          capture_output=True, text=True, cwd=config_file.parent,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # a notice of the theme's, not of ours
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "WARNING" in line or "ERROR" in line]
    return warnings or ((done.stdout + done.stderr).splitlines()[-20:] if done.returncode else [])


def names_of(notebooks: Path | None) -> list[str]:
    return [nb.stem for nb in sorted(notebooks.glob("*.ipynb"))] if notebooks and notebooks.is_dir() else []
