"""The /ui page for a tenant not granted per-token details: headless Chromium against the app
served by uvicorn in a thread (detection only, no engine). The page asks /detect for details;
on the 403 for ``details`` it asks again without them and shows the verdict and counts, with no
error and no token view."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
import yaml

from signet.api.app import create_app
from signet.tenants import TenantRegistry, api_key_digest
from tests.client.test_retries_over_http import serving

API_KEY = "sk-signet-test-ui-plain-58c0e1d7a4"
TENANTS = {
    "tenants": [{"tenant": "plain", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(API_KEY), "name": "ui"}]}]
}


@pytest.fixture(scope="module")
def url(detection_state, tmp_path_factory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    tenants = TenantRegistry.load(path, detection_state.keys.key_ids)
    with serving(create_app(dataclasses.replace(detection_state, tenants=tenants))) as address:
        yield address


@pytest.fixture
def page(browser, url) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    tab.goto(f"{url}/ui")
    tab.wait_for_selector("body[data-ready='true']")
    tab.fill("#api-key", API_KEY)
    yield tab
    context.close()
    assert not errors, errors


def _detect(page, text: str) -> None:
    page.fill("#detect-text", text)
    page.click("#detect-submit")
    page.wait_for_selector("#detect-result:not([aria-busy])", state="attached")


def test_without_the_details_permission_the_page_shows_the_verdict_alone(page, human_passages):
    _detect(page, human_passages["rust-book-ch04-01-what-is-ownership"])
    assert page.get_by_role("alert").count() == 0
    assert page.locator("#detect-result .badge").get_attribute("data-verdict") == "not_watermarked"
    assert re.search(r"green tokens\n\d+, [\d.]+ expected", page.inner_text("#detect-result .stats").lower())
    assert page.locator("#detect-result .tokens").count() == 0  # no per-token view without the permission


def test_a_short_text_shows_no_counts(page):
    _detect(page, "The quick brown fox.")  # 4 scored tokens: the kgw key needs 7 at alpha 1e-4
    assert page.locator("#detect-result .badge").get_attribute("data-verdict") == "insufficient_evidence"
    stats = page.inner_text("#detect-result .stats").lower()
    assert "green tokens\n–" in stats and "z-score, whole text\n–" in stats and "null" not in stats
