"""What a caller meets before its request is served, in-process (TestClient, real tokenizer
and keys, no engine): authentication from the headers alone, the Host check, and a /docs
page that loads nothing from another host.

Over real sockets (slow or endless heads and bodies, the connection limit):
test_server_limits.py.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient

from signet.api.app import create_app
from signet.api.gate import allowed_hosts
from signet.tenants import TenantRegistry, api_key_digest

API_KEY = "sk-signet-test-front-door-3b8c0e5f17"
TENANTS = {"tenants": [{"tenant": "t", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(API_KEY), "name": "k"}]}]}
MALFORMED = b'{"text": "unterminated'


def one_tenant(detection_state, tmp_path_factory) -> TenantRegistry:
    """A tenant with every watermark key and one API key, API_KEY (test_server_limits.py uses it too)."""
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    return TenantRegistry.load(path, detection_state.keys.key_ids)


@pytest.fixture(scope="module")
def tenants(detection_state, tmp_path_factory) -> TenantRegistry:
    return one_tenant(detection_state, tmp_path_factory)


@pytest.fixture(scope="module")
def client(detection_state, tenants):
    state = dataclasses.replace(detection_state, tenants=tenants, rate_limiter=None, detection_cache=None)
    with TestClient(create_app(state)) as session:
        yield session


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


# Authentication before the body


@pytest.mark.parametrize("path", ["/detect", "/detect/batch", "/generate", "/score/uncertainty", "/v1/completions"])
def test_malformed_json_without_a_key_gets_401_not_422(client, path):
    response = client.post(path, content=MALFORMED, headers={"Content-Type": "application/json"})
    assert _problem(response, 401)["detail"] == "missing or unknown API key"
    assert response.headers["www-authenticate"] == 'Bearer realm="signet"'
    # with a key, the same body gets its 422 as before
    response = client.post(path, content=MALFORMED, headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert "not valid JSON" in _problem(response, 422)["detail"]


def test_an_anonymous_caller_cannot_tell_which_methods_a_work_route_has(client):
    assert _problem(client.get("/detect"), 401)["detail"] == "missing or unknown API key"
    assert client.get("/detect", headers={"X-API-Key": API_KEY}).status_code == 405
    # routes that need no key are not gated, and a path no route has is still a 404
    for path in ("/healthz", "/openapi.json", "/ui"):
        assert client.get(path).status_code == 200, path
    assert _problem(client.post("/no-such-route", content=b"x" * 1000), 404)


# The Host check


def test_development_mode_answers_localhost_and_the_listen_name_besides_addresses(detection_state):
    settings = detection_state.settings
    assert allowed_hosts(settings, None) == {"localhost"}  # and any IP address
    assert allowed_hosts(settings.model_copy(update={"host": "signet.local"}), None) == {"localhost", "signet.local"}
    extra = settings.model_copy(update={"allowed_hosts": ["signet.internal"]})
    assert allowed_hosts(extra, None) == {"localhost", "signet.internal"}
    assert allowed_hosts(settings.model_copy(update={"allowed_hosts": ["*"]}), None) is None


def test_with_tenants_the_host_is_checked_only_when_names_are_given(detection_state, tenants):
    settings = detection_state.settings
    assert allowed_hosts(settings, tenants) is None
    named = allowed_hosts(settings.model_copy(update={"allowed_hosts": ["api.example.com"]}), tenants)
    assert named == {"localhost", "api.example.com"}


def test_allowed_hosts_are_read_from_a_comma_separated_variable(monkeypatch):
    from signet.settings import Settings

    monkeypatch.setenv("SIGNET_ALLOWED_HOSTS", "API.example.com, [fd00::1] ,")
    assert Settings().allowed_hosts == ["api.example.com", "fd00::1"]


@pytest.fixture(scope="module")
def development_client(detection_state):
    app = create_app(detection_state, allowed_hosts(detection_state.settings, None))
    with TestClient(app, base_url="http://127.0.0.1:8000") as session:
        yield session


@pytest.mark.parametrize(
    "host", ["rebind.attacker.example:8000", "127.0.0.1.nip.io", "localhost.attacker.example", "", "evil@127.0.0.1"]
)
def test_other_hosts_get_400_before_anything_else(development_client, host):
    for method, path in (("GET", "/healthz"), ("POST", "/detect")):
        response = development_client.request(method, path, headers={"Host": host}, json={"text": "x"})
        assert "Host header" in _problem(response, 400)["detail"]
    # while localhost and IP addresses (a rebinding page's requests name its own host, never an
    # address; Kubernetes probes name the pod's), with or without a port, are answered
    for answered in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1", "10.1.2.3:8000"):
        assert development_client.get("/healthz", headers={"Host": answered}).status_code == 200, answered


# /docs


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline_scripts += tag == "script" and not dict(attrs).get("src")


def test_docs_load_nothing_from_another_host(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = _References()
    references.feed(page.text)
    assert references.urls and references.inline_scripts == 0
    for url in references.urls:
        absolute = urljoin("http://127.0.0.1:8000/docs", url)
        assert urlsplit(absolute).netloc == "127.0.0.1:8000", url
        asset = client.get(urlsplit(absolute).path)
        assert asset.status_code == 200 and asset.content, url
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"


def test_docs_run_swagger_ui_from_the_service(client):
    start = client.get("/docs/static/start.js").text
    assert 'url: "openapi.json"' in start and "validatorUrl: null" in start
    bundle = client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in bundle.content
    assert client.get("/docs/static/../../settings.py").status_code == 404
    assert client.get("/docs/static/redoc.standalone.js").status_code == 404  # a fixed list of files
    assert client.get("/redoc").status_code == 404  # FastAPI's /redoc loads a CDN script and Google Fonts
