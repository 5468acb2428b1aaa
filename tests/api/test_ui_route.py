"""The /ui routes in-process (no engine, no browser): the page and its assets come from the
package, with their security headers, and they stay out of the OpenAPI document."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib.resources import files

from signet.api.ui.router import ASSETS, CONTENT_SECURITY_POLICY

STATIC = files("signet.api.ui").joinpath("static")


class _References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self.style_attributes = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href")]
        self.style_attributes += "style" in attributes
        self.inline_scripts += (
            tag == "script" and "src" not in attributes or any(name.startswith("on") for name in attributes)
        )


def test_the_page_and_its_assets_are_served_from_the_package(detect_client):
    page = detect_client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == STATIC.joinpath("index.html").read_bytes()
    for name, media_type in ASSETS.items():
        asset = detect_client.get(f"/ui/static/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == media_type
        assert asset.content == STATIC.joinpath(name).read_bytes()
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY


def test_every_packaged_file_is_served_and_nothing_else(detect_client):
    packaged = {entry.name for entry in STATIC.iterdir()}
    assert packaged == {"index.html", *ASSETS}
    for path in ("/ui/static/index.html", "/ui/static/..%2Frouter.py", "/ui/static/missing.js"):
        response = detect_client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


def test_the_page_needs_no_key_and_a_trailing_slash_redirects(detect_client):
    response = detect_client.get("/ui/", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "../ui"
    assert detect_client.get("/ui/").url.path == "/ui"


def test_the_page_references_only_its_own_assets(detect_client):
    # The CSP would block anything else; this says which reference is wrong, before a browser does.
    references = _References()
    references.feed(STATIC.joinpath("index.html").read_text())
    assert references.inline_scripts == 0 and references.style_attributes == 0
    for url in references.urls:
        assert url in ("data:,", "docs") or url.removeprefix("ui/static/") in ASSETS, url
    script = STATIC.joinpath("app.js").read_text()
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write|\beval\(", script)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script + STATIC.joinpath("style.css").read_text())


def test_the_routes_stay_out_of_the_api_document(detect_client):
    paths = detect_client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]
