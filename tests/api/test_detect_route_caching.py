"""The /detect result cache in-process: real tokenizer and keys, real Redis, no engine.

Each test gets a fresh Redis namespace (the ``redis_link`` fixture), so every test
starts from an empty cache.
"""

import dataclasses
import json
import re
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from harness.services import TEST_SECRETS
from signet.api.app import create_app
from signet.cache.detection import MemoryDetectionCache, RedisDetectionCache
from tests.watermarking import watermarked_token_ids


def _client(detection_state, cache) -> TestClient:
    return TestClient(create_app(dataclasses.replace(detection_state, detection_cache=cache)))


@pytest.fixture
def cached_client(detection_state, redis_link):
    with _client(detection_state, RedisDetectionCache(redis_link, ttl_seconds=300)) as client:
        yield client


@pytest.fixture(scope="module")
def text(human_passages) -> str:
    return next(iter(human_passages.values()))


def _post(client, **body):
    response = client.post("/detect", json=body)
    assert response.status_code == 200, response.text
    return response


def _cached(client, **body) -> bool:
    return _post(client, **body).json()["cached"]


def test_a_repeat_is_answered_from_the_cache_with_the_same_bytes(cached_client, text):
    body = {"text": text, "key_ids": "all", "windows": True}
    first = _post(cached_client, **body)
    second = _post(cached_client, **body)
    assert first.json()["cached"] is False and second.json()["cached"] is True
    # p-values and every other number survive the round trip through the cache exactly
    assert second.text.replace('"cached":true', '"cached":false') == first.text


@pytest.fixture
def memory_cached_client(detection_state):
    with _client(detection_state, MemoryDetectionCache(max_entries=100, ttl_seconds=300)) as client:
        yield client


def test_token_ids_and_details_are_cached_in_memory(memory_cached_client, detection_state):
    token_ids = watermarked_token_ids(detection_state.keys.scheme("main"), 120, np.random.default_rng(7))
    body = {"token_ids": token_ids, "key_id": "main", "details": True, "windows": True}
    first = _post(memory_cached_client, **body).json()
    second = _post(memory_cached_client, **body).json()
    assert first["verdict"] == "watermarked" and len(first["tokens"]) == 120
    assert (first["cached"], second["cached"]) == (False, True)
    assert {**second, "cached": False} == first


def test_details_never_reach_redis(cached_client, redis_link, detection_state):
    """Per-token detail holds each token's green flag: whoever reads Redis would collect green lists."""
    token_ids = watermarked_token_ids(detection_state.keys.scheme("main"), 120, np.random.default_rng(7))
    body = {"token_ids": token_ids, "key_id": "main", "details": True}
    assert [_post(cached_client, **body).json()["cached"] for _ in range(2)] == [False, False]
    assert list(redis_link.sync.scan_iter(match=f"{redis_link.namespace}:*")) == []
    assert [_cached(cached_client, **{**body, "details": False}) for _ in range(2)] == [False, True]


def test_text_differing_in_spacing_hits_only_for_a_key_that_folds_spacing(cached_client, text):
    spaced = text.replace(" ", "  ")
    assert not _cached(cached_client, text=text, key_id="folded")
    assert _cached(cached_client, text=spaced, key_id="folded")
    assert not _cached(cached_client, text=text, key_id="main")
    assert not _cached(cached_client, text=spaced, key_id="main")


def test_spans_point_into_each_callers_own_text(memory_cached_client, text):
    """With spans in the response, texts that normalise alike still get their own results."""
    spaced = text.replace(" ", "  ")
    from_text = _post(memory_cached_client, text=text, key_id="folded", details=True).json()
    from_spaced = _post(memory_cached_client, text=spaced, key_id="folded", details=True).json()
    assert (from_text["cached"], from_spaced["cached"]) == (False, False)
    token_ids = [token["token_id"] for token in from_text["tokens"]]
    assert [token["token_id"] for token in from_spaced["tokens"]] == token_ids
    assert from_spaced["tokens"][-1]["char_end"] > from_text["tokens"][-1]["char_end"]
    assert _cached(memory_cached_client, text=spaced, key_id="folded", details=True)


@pytest.mark.parametrize(
    "change",
    [{"alpha": 0.01}, {"windows": True}, {"key_id": "wide"}, {"key_ids": ["main", "wide"]}],
)
def test_other_options_or_keys_are_a_miss(cached_client, text, change):
    assert not _cached(cached_client, text=text)  # the default key, main
    assert not _cached(cached_client, text=text, **change)
    assert _cached(cached_client, text=text, **change) and _cached(cached_client, text=text, key_id="main")


def test_redis_holds_neither_secrets_nor_texts(cached_client, redis_link, text):
    _post(cached_client, text=text, key_ids="all", windows=True)
    _post(cached_client, text=text.replace(" ", "  "), key_id="folded", windows=True)
    names = [name.decode() for name in redis_link.sync.scan_iter(match=f"{redis_link.namespace}:*")]
    assert len(names) == 2
    for name in names:
        assert re.fullmatch(rf"{redis_link.namespace}:detect:[0-9a-f]{{64}}", name)
        stored = redis_link.sync.get(name).decode()
        for secret in TEST_SECRETS:
            assert secret not in name and secret not in stored
        assert text[:20] not in stored  # the result holds spans, not the text
        assert 0 < redis_link.sync.ttl(name) <= 300


def test_refused_requests_are_not_cached(cached_client, redis_link, text):
    for _ in range(2):
        response = cached_client.post("/detect", json={"text": text, "key_id": "foreign"})
        assert response.status_code == 422 and "cached" not in response.json()
    assert list(redis_link.sync.scan_iter(match=f"{redis_link.namespace}:*")) == []


def test_batch_items_are_cached_one_by_one(cached_client, text):
    items = [
        {"text": text, "key_id": "main"},
        {"text": text, "key_id": "main"},
        {"text": text, "key_id": "absent"},
        {"text": text, "key_id": "wide"},
    ]
    response = cached_client.post("/detect/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [item["status"] for item in results] == [200, 200, 404, 200]
    assert [results[index]["result"]["cached"] for index in (0, 1, 3)] == [False, True, False]
    assert _cached(cached_client, **items[3])


def test_detect_answers_uncached_while_redis_is_unreachable(detection_state, unreachable_redis_link, text):
    with _client(detection_state, RedisDetectionCache(unreachable_redis_link, ttl_seconds=300)) as client:
        for _ in range(2):
            started = time.monotonic()
            result = _post(client, text=text, key_id="main").json()
            assert result["cached"] is False and result["verdict"] == "not_watermarked"
            assert time.monotonic() - started < 1.5


def test_the_memory_cache_of_embedded_mode(detection_state, text):
    with _client(detection_state, MemoryDetectionCache(max_entries=10, ttl_seconds=60)) as client:
        first = _post(client, text=text, key_ids=["main", "vllm"], windows=True)
        second = _post(client, text=text, key_ids=["main", "vllm"], windows=True)
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert json.loads(second.text) == {**json.loads(first.text), "cached": True}


def test_without_a_cache_nothing_is_cached(detection_state, text):
    with _client(detection_state, None) as client:
        assert not _cached(client, text=text, key_id="main")
        assert not _cached(client, text=text, key_id="main")
