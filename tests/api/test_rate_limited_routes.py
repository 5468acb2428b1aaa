"""Rate limits in-process: 429 problem+json with Retry-After, per API key, never on health probes.

The limiter is a RedisRateLimiter on SIGNET_TEST_REDIS_URL (default
redis://127.0.0.1:6379/0) under a fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import dataclasses

import pytest
import redis
from fastapi.testclient import TestClient

from harness.services import redis_test_url
from signet.api.app import create_app
from signet.api.rate_limit import caller_identity
from signet.cache.rate_limit import MemoryRateLimiter, RedisRateLimiter
from signet.redis_link import RedisLink

REDIS_URL = redis_test_url()
PER_MINUTE, BURST = 6, 3  # one request per 10 s after the burst: refusals are certain within a test
DETECT_BODY = {"text": "The quick brown fox jumps over the lazy dog, twice, and then sits down for tea."}


@pytest.fixture(scope="module")
def limited_client(detection_state, module_redis_namespace):
    link = RedisLink(REDIS_URL, module_redis_namespace, 2.0)
    limiter = RedisRateLimiter(link, per_minute=PER_MINUTE, burst=BURST)
    with TestClient(create_app(dataclasses.replace(detection_state, rate_limiter=limiter))) as client:
        yield client
    link.sync.close()


def _detect(client, headers):
    return client.post("/detect", json=DETECT_BODY, headers=headers)


def test_the_request_after_a_burst_gets_429_with_retry_after(limited_client):
    headers = {"Authorization": "Bearer first-caller-token"}
    for _ in range(BURST):
        assert _detect(limited_client, headers).status_code == 200
    refused = _detect(limited_client, headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 10
    body = refused.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"
    assert body["detail"] == (
        f"rate limit exceeded: at most {PER_MINUTE} requests per minute (burst {BURST}); retry in {retry_after} s"
    )
    assert "first-caller-token" not in refused.text
    # both header spellings name the same caller; the batch route counts too
    assert (
        limited_client.post(
            "/detect/batch", json={"items": [DETECT_BODY]}, headers={"X-API-Key": "first-caller-token"}
        ).status_code
        == 429
    )


def test_another_api_key_has_its_own_allowance(limited_client):
    headers = {"X-API-Key": "second-caller-token"}
    assert all(_detect(limited_client, headers).status_code == 200 for _ in range(BURST))
    assert _detect(limited_client, headers).status_code == 429


def test_callers_without_a_key_are_limited_by_address(limited_client):
    statuses = [_detect(limited_client, {}).status_code for _ in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]


def test_health_probes_are_never_limited(limited_client):
    headers = {"Authorization": "Bearer first-caller-token"}
    _detect(limited_client, headers)  # over its limit, if the tests above did not run
    for _ in range(3 * BURST):
        assert limited_client.get("/healthz", headers=headers).status_code == 200
        assert limited_client.get("/readyz", headers=headers).status_code != 429


def test_raw_api_keys_never_reach_redis(limited_client, module_redis_namespace):
    _detect(limited_client, {"Authorization": "Bearer third-caller-token"})
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key.decode() for key in client.scan_iter(match=f"{module_redis_namespace}:*")]
    client.close()
    assert keys and all(":rate:key:" in key or ":rate:ip:" in key for key in keys)
    assert not any("caller-token" in key for key in keys)


def test_no_limiter_means_no_limits(detection_state):
    with TestClient(create_app(dataclasses.replace(detection_state, rate_limiter=None))) as client:
        assert all(_detect(client, {"X-API-Key": "anyone"}).status_code == 200 for _ in range(2 * BURST))


def test_the_embedded_limiter_works_the_same(detection_state):
    limiter = MemoryRateLimiter(per_minute=PER_MINUTE, burst=1)
    with TestClient(create_app(dataclasses.replace(detection_state, rate_limiter=limiter))) as client:
        assert _detect(client, {}).status_code == 200
        refused = _detect(client, {})
        assert refused.status_code == 429 and 9 <= int(refused.headers["retry-after"]) <= 10


class _FakeRequest:
    def __init__(self, headers: dict[str, str], host: str | None = "10.1.2.3") -> None:
        from starlette.datastructures import Address, Headers

        self.headers = Headers(headers)
        self.client = Address(host, 1234) if host else None


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Authorization": "Bearer tok"}, "key:"),
        ({"authorization": "bearer   tok  "}, "key:"),
        ({"X-API-Key": "tok"}, "key:"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "ip:10.1.2.3"),
        ({"Authorization": "Bearer "}, "ip:10.1.2.3"),
        ({}, "ip:10.1.2.3"),
    ],
)
def test_caller_identity(headers, expected):
    identity = caller_identity(_FakeRequest(headers))
    assert identity.startswith(expected) and "tok" not in identity
    if expected == "key:":
        assert identity == caller_identity(_FakeRequest({"X-API-Key": "tok"}))
        assert len(identity) == len("key:") + 32


def test_caller_identity_without_an_address():
    assert caller_identity(_FakeRequest({}, host=None)) == "ip:unknown"
