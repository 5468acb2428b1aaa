"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, on the page that
``signet serve`` serves at /ui. Playwright downloads no browser: it is given this one.

Every page records the requests it makes and the errors it logs (a script error, or a
Content-Security-Policy violation, shows up as a console error); each test fails on any
error, and test_nothing_outside_loads checks the requests of the whole module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SIGNET_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [  # launch(headless=True) adds --headless
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass
class BrowserLog:
    requests: list[str] = field(default_factory=list)  # every URL any page asked for
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions


# Module-scoped, not session: Playwright's sync API runs an event loop in the main thread
# while it is started, and every later test calling asyncio.run() would fail on it.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set SIGNET_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(browser, browser_log, signet_server) -> Iterator:
    """A fresh tab on /ui, 1280 px wide; fails the test on any console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("request", lambda request: browser_log.requests.append(request.url))
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    tab.goto(f"{signet_server.url}/ui")
    tab.wait_for_selector("body[data-ready='true']")
    yield tab
    context.close()
    browser_log.errors.extend(errors)
    # A test that expects an error status logs the failed fetch ("Failed to load resource"):
    # that is the browser's note, not the page's fault.
    unexpected = [error for error in errors if "Failed to load resource" not in error]
    assert not unexpected, f"the page logged errors: {unexpected}"
