"""The course as a static site (``make site``), and the checks of its math.

The math of the pages is written as GitHub renders it, ``$...$`` inline and ``$$...$$`` on lines of their own;
the site renders it with KaTeX (Debian's ``libjs-katex``, copied into the build: the site needs no network).
``math_errors`` runs every formula of a page through that same KaTeX under Node.js, so that a formula KaTeX
cannot typeset is named with its page and line before anyone opens a browser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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
