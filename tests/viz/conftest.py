"""The browser harness the explorer tests share: headless Chromium (Debian's ``chromium``) driven by Playwright.

``browser`` is one Chromium per module; ``open_page(explorer)`` saves an explorer and opens
it, ``open_html(path)`` opens any file (a notebook's outputs, two explorers in one page).
Each ``Opened`` page records its console errors and warnings and every request it makes.

Without chromium (or playwright) these tests skip, saying why, except under ``CI=true``,
where they must run (``.ci/run`` installs Debian's chromium when it is missing).
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def unavailable(reason: str):
    """Skip with ``reason``; under ``CI=true`` (read when called) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: .ci/run installs Debian's chromium, the dev extra installs playwright")
    pytest.skip(reason)


@pytest.fixture(name="unavailable")
def unavailable_fixture():
    """The skip-or-fail rule, for tests that check it or need more than the browser."""
    return unavailable


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        unavailable("no chromium on this machine (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]  # root in CI; small /dev/shm
        b = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        yield b
        b.close()


class Opened:
    """A page with what it logged and requested."""

    def __init__(self, browser, path):
        self.context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.as_uri()
        self.page.goto(self.url)

    def clean(self) -> None:
        assert self.errors == []
        assert [u for u in self.requests if u != self.url] == [], "a request left the page"

    def attrs(self, selector: str, *names: str) -> list[tuple]:
        js = "(els, names) => els.map(e => names.map(n => e.getAttribute(n)))"
        return [tuple(row) for row in self.page.eval_on_selector_all(selector, js, list(names))]

    def readout_value(self) -> float:
        text = self.page.inner_text(".ax-readout")
        return float(re.findall(r"(\d+\.\d+)\s*$", text)[0])


@pytest.fixture
def open_html(browser):
    """``open_html(path) -> Opened``; every page's context is closed after the test."""
    opened: list[Opened] = []

    def open_(path) -> Opened:
        o = Opened(browser, path)
        opened.append(o)
        return o

    yield open_
    for o in opened:
        o.context.close()


@pytest.fixture
def open_page(open_html, tmp_path):
    """``open_page(explorer, name) -> Opened``: the explorer saved as one file and opened."""

    def open_(explorer, name: str = "page.html") -> Opened:
        return open_html(explorer.save(tmp_path / name))

    return open_
