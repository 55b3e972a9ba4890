"""The built site checked as a reader meets it: every link and figure resolves, and every formula is typeset.

``link_problems`` reads the HTML files: each relative ``href`` and ``src`` names a file of the site, and each
``#anchor`` an element of that page. ``browser_problems`` opens pages in headless Chromium (Debian's ``chromium``
and ``chromium-driver``, driven by Selenium) served from localhost with every other host unreachable: a page whose
KaTeX reports an error, whose formula stays raw TeX, or whose image does not load is named.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") in ("canonical", "alternate")):
                self.refs.append(a[key])


@functools.cache
def _parsed(file: Path) -> _Refs:
    p = _Refs()
    p.feed(file.read_text(errors="replace"))
    return p


def link_problems(site: Path) -> list[str]:
    """'PAGE: TARGET (why)' for every relative link or resource of the site's HTML pages that does not resolve."""
    _parsed.cache_clear()
    problems = []
    for page in sorted(site.rglob("*.html")):
        if page.name == "404.html":  # its links are absolute, for any depth of a missing address
            continue
        for ref in _parsed(page).refs:
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith("//"):
                continue  # data:, https:, mailto: (the site loads none at run time: browser_problems sees to it)
            dest = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{page.relative_to(site)}: {ref}"
            if not dest.is_file():
                problems.append(f"{where} (no such file)")
            elif parts.fragment and dest.suffix == ".html" and unquote(parts.fragment) not in _parsed(dest).ids:
                problems.append(f"{where} (no such anchor)")
    return problems


def browser_available() -> bool:
    return all(Path(p).is_file() for p in (CHROMIUM, CHROMEDRIVER)) or bool(shutil.which("chromedriver"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# Run in the page once the theme has rendered it: what a reader would see wrong.
_PROBE = """
const math = [...document.querySelectorAll('.arithmatex')];
const raw = math.filter(e => !e.querySelector('.katex, .katex-error')).map(e => e.textContent.trim().slice(0, 80));
const errors = (window.mathErrors || []).map(e => e.slice(0, 160)).concat(
  [...document.querySelectorAll('.katex-error')].map(e => (e.getAttribute('title') || '').slice(0, 120)
                                                     + ' in ' + e.textContent.slice(0, 60)));
const images = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
const typeset = document.querySelectorAll('.katex').length;
return {raw: raw, errors: errors, images: images, typeset: typeset, math: math.length,
        ready: document.readyState === 'complete' && document.body.getAttribute('data-math') === 'typeset'};
"""


def _driver(width: int = 1400, height: int = 1600):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):  # no network but the site's server
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else
                                            shutil.which("chromedriver")), options=options)


def browser_problems(site: Path, pages: list[str], screenshot: tuple[str, Path] | None = None,
                     timeout: float = 10.0) -> tuple[list[str], dict[str, dict]]:
    """Open each of ``pages`` (paths under ``site``) in headless Chromium; the problems a reader would see
    ('PAGE: what'), and per page what was found (formulas typeset, images). ``screenshot``: (page, PNG file) also
    saved, scrolled to the page's first display formula."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    driver = _driver()
    problems, seen = [], {}
    try:
        for page in pages:
            driver.get(base + page)
            deadline = time.monotonic() + timeout
            while True:  # KaTeX runs as the theme's document$ fires: wait until every formula is typeset, or time
                found = driver.execute_script(_PROBE)
                if (found["ready"] and not found["raw"]) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            seen[page] = found
            if not found["ready"]:
                problems.append(f"{page}: KaTeX did not run within {timeout:.0f} s")
            problems += [f"{page}: a KaTeX error: {e}" for e in found["errors"]]
            problems += [f"{page}: a formula left as TeX: {r}" for r in found["raw"]]
            problems += [f"{page}: an image that does not load: {src}" for src in found["images"]]
            if driver.title.startswith("404"):
                problems.append(f"{page}: not found")
        if screenshot:
            page, file = screenshot
            driver.get(base + page)
            time.sleep(1.0)
            driver.execute_script("const m = document.querySelector('.arithmatex .katex-display, .katex-display');"
                                  "if (m) m.scrollIntoView({block: 'center'});")
            time.sleep(0.3)
            file.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(file))
            visible = driver.execute_script(
                "return [...document.querySelectorAll('.katex')].filter(e => {const r = e.getBoundingClientRect();"
                "return r.width > 0 && r.bottom > 0 && r.top < window.innerHeight;}).length;")
            seen[f"screenshot:{page}"] = {"visible_formulas": visible}
    finally:
        driver.quit()
        server.shutdown()
    return problems, seen


def pages_to_open(site: Path) -> list[str]:
    """Every page a reader of the course opens (the code pages under src/ are left to ``link_problems``)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if p.relative_to(site).parts[0] not in ("src", "assets", "search") and p.name != "404.html")

