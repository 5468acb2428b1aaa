"""Authentication in-process: 401 without a known API key, 403 outside the tenant's keys or
for watermark=false without the permission, and development mode without tenants.

/generate has no engine in-process: a request that passes authentication gets 503 ("no
healthy engine"), which proves it got past the checks.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import redis
import yaml
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from harness.services import TEST_KEYS, redis_test_url
from signet.api.app import create_app
from signet.api.auth import authenticate
from signet.cache.rate_limit import MemoryRateLimiter, RedisRateLimiter
from signet.redis_link import RedisLink
from signet.tenants import TenantRegistry, api_key_digest

MOD_KEY = "sk-signet-test-moderation-5e0c2b71d9"  # main and hf; may not turn the watermark off
RES_KEY = "sk-signet-test-research-a81f4d06c3"  # wide only; may turn it off
ADMIN_KEY = "sk-signet-test-admin-0b9d7e5a12"  # every key
UNKNOWN_KEY = "sk-signet-test-unknown-f3a6c80e44"
ALL_KEYS = (MOD_KEY, RES_KEY, ADMIN_KEY, UNKNOWN_KEY)
TENANTS = {
    "tenants": [
        {
            "tenant": "moderation",
            "key_ids": ["main", "hf"],
            "api_keys": [{"sha256": api_key_digest(MOD_KEY), "name": "mod-bot"}],
        },
        {
            "tenant": "research",
            "key_ids": ["wide"],
            "may_disable_watermark": True,
            "api_keys": [{"sha256": api_key_digest(RES_KEY), "name": "lab"}],
        },
        {
            "tenant": "admin",
            "key_ids": "*",
            "may_disable_watermark": True,
            "api_keys": [{"sha256": api_key_digest(ADMIN_KEY), "name": "root"}],
        },
    ]
}
TEXT = "The quick brown fox jumps over the lazy dog, twice, and then sits down for tea."
PROMPT = {"prompt": "Say something.", "max_tokens": 4}


@pytest.fixture(scope="module")
def tenants(detection_state, tmp_path_factory) -> TenantRegistry:
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    return TenantRegistry.load(path, detection_state.keys.key_ids)


@pytest.fixture(scope="module")
def client(detection_state, tenants):
    state = dataclasses.replace(detection_state, tenants=tenants, rate_limiter=None, detection_cache=None)
    with TestClient(create_app(state)) as session:
        yield session


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body.get("field") == field
    return body


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/detect", {"text": TEXT}),
        ("POST", "/detect/batch", {"items": [{"text": TEXT}]}),
        ("POST", "/generate", PROMPT),
        ("POST", "/generate?watermark=false", PROMPT),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer(UNKNOWN_KEY), {"X-API-Key": UNKNOWN_KEY}, {"Authorization": f"Basic {MOD_KEY}"}, bearer("")],
    ids=["none", "unknown-bearer", "unknown-x-api-key", "basic-scheme", "empty-bearer"],
)
def test_without_a_known_key_every_work_route_answers_401(client, method, path, body, headers):
    response = client.request(method, path, json=body, headers=headers)
    problem = _problem(response, 401)
    assert problem["title"] == "Unauthorized" and problem["detail"] == "missing or unknown API key"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert UNKNOWN_KEY not in response.text and MOD_KEY not in response.text


def test_authentication_comes_before_body_validation(client):
    # an anonymous caller learns nothing about the request's shape
    _problem(client.post("/detect", json={"nonsense": True}), 401)
    assert client.post("/detect", json={"nonsense": True}, headers=bearer(MOD_KEY)).status_code == 422


def test_health_probes_and_docs_need_no_key(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code not in (401, 403)
    schema = client.get("/openapi.json").json()
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.parametrize("headers", [bearer(MOD_KEY), {"X-API-Key": MOD_KEY}, {"authorization": f"bearer  {MOD_KEY} "}])
def test_a_tenants_own_keys_work_with_either_header(client, headers):
    for key_id in (None, "main", "hf"):
        response = client.post("/detect", json={"text": TEXT, "key_id": key_id}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["key_id"] == (key_id or "main")


@pytest.mark.parametrize("key_id", ["wide", "vllm", "no-such-key"])
def test_another_tenants_key_id_is_403_existing_or_not(client, key_id):
    response = client.post("/detect", json={"text": TEXT, "key_id": key_id}, headers=bearer(MOD_KEY))
    problem = _problem(response, 403, "key_id")
    assert problem["title"] == "Forbidden"
    assert problem["detail"] == f"tenant 'moderation' may not use key_id {key_id!r}"


def test_a_tenant_with_every_key_gets_404_for_an_unknown_one(client):
    _problem(
        client.post("/detect", json={"text": TEXT, "key_id": "no-such-key"}, headers=bearer(ADMIN_KEY)), 404, "key_id"
    )


def test_the_default_key_needs_permission_too(client):
    problem = _problem(client.post("/detect", json={"text": TEXT}, headers=bearer(RES_KEY)), 403, "key_id")
    assert problem["detail"] == "tenant 'research' may not use the default key 'main'; give a key_id: one of 'wide'"
    response = client.post("/detect", json={"text": TEXT, "key_id": "wide"}, headers=bearer(RES_KEY))
    assert response.status_code == 200 and response.json()["key_id"] == "wide"


def test_a_key_ids_list_names_every_forbidden_key(client):
    body = {"text": TEXT, "key_ids": ["main", "wide", "vllm", "wide"]}
    problem = _problem(client.post("/detect", json=body, headers=bearer(MOD_KEY)), 403, "key_ids")
    assert problem["detail"] == "tenant 'moderation' may not use key_ids 'wide', 'vllm'"
    body = {"text": TEXT, "key_ids": ["hf", "main"]}
    response = client.post("/detect", json=body, headers=bearer(MOD_KEY))
    assert response.status_code == 200 and {entry["key_id"] for entry in response.json()["keys"]} == {"main", "hf"}


@pytest.mark.parametrize(
    "key, expected",
    [
        (MOD_KEY, {"main", "hf"}),
        (RES_KEY, {"wide"}),
        # every key the service can tokenize this text for ("foreign" is for gpt2)
        (ADMIN_KEY, {"main", "wide", "hf", "vllm", "folded", "unigram", "selfhash", "synthid", "dualkey"}),
    ],
)
def test_all_means_every_key_the_tenant_may_use(client, key, expected):
    response = client.post("/detect", json={"text": TEXT, "key_ids": "all"}, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert {entry["key_id"] for entry in response.json()["keys"]} == expected


def test_a_forbidden_batch_item_gets_its_own_403(client):
    items = [{"text": TEXT, "key_id": "main"}, {"text": TEXT, "key_id": "wide"}, {"text": TEXT, "key_ids": "all"}]
    response = client.post("/detect/batch", json={"items": items}, headers=bearer(MOD_KEY))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["status"] for result in results] == [200, 403, 200]
    assert results[1]["error"] == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "tenant 'moderation' may not use key_id 'wide'",
        "field": "items[1].key_id",
    }
    assert {entry["key_id"] for entry in results[2]["result"]["keys"]} == {"main", "hf"}


def test_generate_checks_the_key_id(client):
    problem = _problem(
        client.post("/generate", json={**PROMPT, "key_id": "wide"}, headers=bearer(MOD_KEY)), 403, "key_id"
    )
    assert problem["detail"] == "tenant 'moderation' may not use key_id 'wide'"
    problem = _problem(client.post("/generate", json=PROMPT, headers=bearer(RES_KEY)), 403, "key_id")
    assert "default key 'main'" in problem["detail"]
    # past the checks: no engine in this process
    for key, body in (
        (MOD_KEY, PROMPT),
        (MOD_KEY, {**PROMPT, "key_id": "hf"}),
        (RES_KEY, {**PROMPT, "key_id": "wide"}),
    ):
        problem = _problem(client.post("/generate", json=body, headers=bearer(key)), 503)
        assert "no healthy engine" in problem["detail"]


def test_turning_the_watermark_off_needs_the_permission(client):
    problem = _problem(client.post("/generate?watermark=false", json=PROMPT, headers=bearer(MOD_KEY)), 403, "watermark")
    assert problem["detail"] == "tenant 'moderation' may not turn the watermark off (watermark=false)"
    for key in (RES_KEY, ADMIN_KEY):
        # research may not use the default key, but without the watermark no key is used
        response = client.post("/generate?watermark=false", json=PROMPT, headers=bearer(key))
        assert response.status_code == 503, response.text
    # a key_id it may not use is refused even so
    response = client.post("/generate?watermark=false", json={**PROMPT, "key_id": "main"}, headers=bearer(RES_KEY))
    _problem(response, 403, "key_id")


def test_development_mode_lets_everyone_do_everything(detection_state):
    state = dataclasses.replace(detection_state, tenants=None, rate_limiter=None)
    with TestClient(create_app(state)) as client:
        assert client.post("/detect", json={"text": TEXT, "key_id": "vllm"}).status_code == 200
        response = client.post("/detect", json={"text": TEXT, "key_ids": "all"}, headers=bearer(UNKNOWN_KEY))
        # every key but "foreign" (gpt2, which this service does not load for text)
        assert response.status_code == 200 and len(response.json()["keys"]) == len(TEST_KEYS["keys"]) - 1
        assert client.post("/generate?watermark=false", json=PROMPT).status_code == 503


def test_unknown_keys_are_refused_before_the_rate_limit_counts_them(detection_state, tenants):
    limiter = MemoryRateLimiter(per_minute=6, burst=1)
    state = dataclasses.replace(detection_state, tenants=tenants, rate_limiter=limiter)
    with TestClient(create_app(state)) as client:
        # by address, these would be over the limit from the second on
        assert [client.post("/detect", json={"text": TEXT}).status_code for _ in range(4)] == [401] * 4
        assert client.post("/detect", json={"text": TEXT}, headers=bearer(UNKNOWN_KEY)).status_code == 401
        assert client.post("/detect", json={"text": TEXT}, headers=bearer(MOD_KEY)).status_code == 200
        assert client.post("/detect", json={"text": TEXT}, headers=bearer(MOD_KEY)).status_code == 429


def test_the_caller_is_kept_on_the_request(detection_state, tenants):
    app = create_app(dataclasses.replace(detection_state, tenants=tenants))

    @app.get("/whoami", dependencies=[Depends(authenticate)])
    def whoami(request: Request) -> dict:
        return {"label": request.state.caller.label}

    with TestClient(app) as client:
        assert client.get("/whoami", headers=bearer(RES_KEY)).json() == {"label": "research/lab"}
        assert client.get("/whoami").status_code == 401


def test_api_keys_reach_neither_logs_nor_redis(detection_state, tenants, redis_namespace, caplog):
    link = RedisLink(redis_test_url(), redis_namespace, 2.0)
    limiter = RedisRateLimiter(link, per_minute=600, burst=100)
    state = dataclasses.replace(detection_state, tenants=tenants, rate_limiter=limiter)
    try:
        with caplog.at_level(logging.DEBUG), TestClient(create_app(state)) as client:
            for key in ALL_KEYS:
                client.post("/detect", json={"text": TEXT}, headers=bearer(key))
                client.post("/detect", json={"text": TEXT, "key_id": "vllm"}, headers={"X-API-Key": key})
                client.post("/generate?watermark=false", json=PROMPT, headers=bearer(key))
        raw = redis.Redis.from_url(redis_test_url())
        stored = []
        for name in raw.scan_iter(match=f"{redis_namespace}:*"):
            stored.append(name.decode())
            stored.extend(str(value) for value in (raw.hgetall(name) if raw.type(name) == b"hash" else {}).items())
            if raw.type(name) == b"string":
                stored.append(str(raw.get(name)))
        raw.close()
    finally:
        link.sync.close()
    assert stored, "the limiter stored nothing: the test checks nothing"
    assert "refused moderation/mod-bot" in caplog.text  # 403s are logged, by label
    for key in ALL_KEYS:
        for text in (caplog.text, *stored):
            assert key not in text and api_key_digest(key) not in text


def test_tenants_do_not_share_cached_results(detection_state, tenants):
    """A shared hit ("cached": true) would tell one tenant which texts another has tested."""
    from signet.cache.detection import MemoryDetectionCache

    cache = MemoryDetectionCache(max_entries=100, ttl_seconds=60)
    state = dataclasses.replace(detection_state, tenants=tenants, rate_limiter=None, detection_cache=cache)
    body = {"text": TEXT + " (cache)", "key_id": "main"}
    with TestClient(create_app(state)) as session:
        assert session.post("/detect", json=body, headers=bearer(MOD_KEY)).json()["cached"] is False
        assert session.post("/detect", json=body, headers=bearer(ADMIN_KEY)).json()["cached"] is False
        assert session.post("/detect", json=body, headers=bearer(MOD_KEY)).json()["cached"] is True
