"""A real browser for end-to-end tests: Debian's Chromium driven by Playwright (the PyPI package
talks to the browser at its executable path, nothing is downloaded), with every page watched:
console errors, uncaught exceptions and each request, and any request that would leave
127.0.0.1 answered with an abort instead of reaching the network."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, sync_playwright

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
LAUNCH_ARGS = [
    "--no-sandbox",  # Chromium refuses to start as root without it
    "--disable-background-networking",  # else it calls Google's hosts at start
    "--enable-unsafe-swiftshader",  # WebGL through the software renderer, no GPU here
]


def chromium_path() -> str:
    """Debian's Chromium (make test installs it when absent)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is missing: `make test` installs it (apt-get install chromium)"
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium for a test module."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and what it did: console errors, page errors, requests, blocked requests."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def posts(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies POSTed to URLs ending with `path`, oldest first."""
        return [
            json.loads(r.post_data or "{}")
            for r in self.requests
            if r.method == "POST" and urlsplit(r.url).path.endswith(path)
        ]


def watch(context: BrowserContext) -> Watched:
    """A new page of `context` whose errors and requests are recorded; non-loopback requests are
    aborted and listed in `blocked`."""
    page = context.new_page()
    watched = Watched(page, context)

    def route(r: Route) -> None:
        if urlsplit(r.request.url).hostname in LOOPBACK or r.request.url.startswith(
            ("data:", "blob:")
        ):
            r.continue_()
        else:
            watched.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
    page.on("request", lambda r: watched.requests.append(r))
    return watched
