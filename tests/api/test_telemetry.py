"""In-process: GET /metrics (route templates, detections, cache, the queue's gauges), request
ids (X-Request-ID in and out, on every log line of the request) and what logs never hold.

Counters live in the process's default registry, shared by every test: each test compares
the values before and after what it does.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from harness.services import TEST_SECRETS, free_port, redis_test_url, signer_for_test_keys
from signet.api.app import create_app
from signet.cache.detection import MemoryDetectionCache
from signet.cache.rate_limit import MemoryRateLimiter
from signet.engine.protocol import Completion, CompletionDelta
from signet.logs import JsonFormatter
from signet.queue.generation import RemoteEngine
from signet.queue.jobs import QueueKeys
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink

API_KEY = "sk-telemetry-test-9f3e1d2c7b6a"
HEX_ID = re.compile(r"[0-9a-f]{32}")


def a_text() -> str:
    """A text no other test sends, so its detection is computed, not cached."""
    return f"Telemetry counts what happens, never what was said: sample {uuid.uuid4().hex} ends here."


@pytest.fixture(scope="module")
def client(detection_state) -> Iterator[TestClient]:
    state = dataclasses.replace(detection_state, detection_cache=MemoryDetectionCache(100, 60))
    app = create_app(state)

    @app.get("/test/log-inside")
    def log_inside() -> dict:  # a sync route: FastAPI runs it in its thread pool
        logging.getLogger("signet.test").info("inside the route")
        return {}

    @app.get("/test/boom")
    async def boom() -> dict:
        raise RuntimeError("an unexpected failure")

    with TestClient(app, raise_server_exceptions=False) as session:
        yield session


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every record at INFO and above, formatted as ``signet serve`` logs them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def increase(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_detect_is_counted_under_its_route_template_with_its_detection(client):
    before = scrape(client)
    response = client.post("/detect", json={"text": a_text()})
    assert response.status_code == 200
    result = response.json()
    after = scrape(client)

    route = {"route": "/detect", "method": "POST"}
    assert increase(before, after, "signet_http_requests_total", **route, status_class="2xx") == 1
    assert increase(before, after, "signet_http_request_duration_seconds_count", **route) == 1
    verdict = {"scheme": result["scheme"], "verdict": result["verdict"]}
    assert increase(before, after, "signet_detections_total", **verdict) == 1
    scored = increase(before, after, "signet_scored_tokens_total", scheme=result["scheme"])
    assert scored == result["num_scored_tokens"] > 0
    assert increase(before, after, "signet_detect_cache_requests_total", result="miss") == 1


def test_a_repeated_detect_is_a_cache_hit_that_scores_no_tokens(client):
    body = {"text": a_text()}
    first = client.post("/detect", json=body).json()
    before = scrape(client)
    again = client.post("/detect", json=body).json()
    after = scrape(client)
    assert again["cached"] is True
    assert increase(before, after, "signet_detect_cache_requests_total", result="hit") == 1
    assert increase(before, after, "signet_scored_tokens_total", scheme=first["scheme"]) == 0
    verdict = {"scheme": first["scheme"], "verdict": first["verdict"]}
    assert increase(before, after, "signet_detections_total", **verdict) == 1


def test_each_batch_item_answered_counts_as_a_detection(client):
    items = [{"text": a_text()}, {"text": a_text()}, {"text": "x", "key_id": "no-such-key"}]
    before = scrape(client)
    results = client.post("/detect/batch", json={"items": items}).json()["results"]
    after = scrape(client)
    assert [item["status"] for item in results] == [200, 200, 404]
    verdicts = [(item["result"]["scheme"], item["result"]["verdict"]) for item in results[:2]]
    for scheme, verdict in set(verdicts):
        counted = increase(before, after, "signet_detections_total", scheme=scheme, verdict=verdict)
        assert counted == verdicts.count((scheme, verdict))


def test_a_request_no_route_matches_is_counted_as_unmatched_never_by_its_path(client):
    path = f"/no-such-route/{uuid.uuid4().hex}"
    before = scrape(client)
    assert client.get(path).status_code == 404
    after = scrape(client)
    labels = {"route": "unmatched", "method": "GET", "status_class": "4xx"}
    assert increase(before, after, "signet_http_requests_total", **labels) == 1
    assert path not in after and path.rsplit("/", 1)[1] not in after


def test_refusals_before_or_at_routing_keep_the_route_template(detection_state):
    settings = detection_state.settings.model_copy(update={"max_text_chars": 10, "max_batch_chars": 10})
    with TestClient(create_app(dataclasses.replace(detection_state, settings=settings))) as small:
        before = scrape(small)
        too_large = small.post("/detect", content=b"x" * (settings.max_body_bytes + 1))
        wrong_method = small.get("/detect")
        after = scrape(small)
    assert too_large.status_code == 413 and wrong_method.status_code == 405
    for method in ("POST", "GET"):
        labels = {"route": "/detect", "method": method, "status_class": "4xx"}
        assert increase(before, after, "signet_http_requests_total", **labels) == 1


def test_made_up_methods_share_one_label(client):
    before = scrape(client)
    client.request("BREW", "/detect")
    after = scrape(client)
    labels = {"route": "/detect", "method": "other", "status_class": "4xx"}
    assert increase(before, after, "signet_http_requests_total", **labels) == 1
    assert "BREW" not in after


def test_metrics_are_never_rate_limited_and_stay_out_of_the_api_schema(detection_state):
    limiter = MemoryRateLimiter(per_minute=1, burst=1)
    with TestClient(create_app(dataclasses.replace(detection_state, rate_limiter=limiter))) as limited:
        assert all(limited.get("/metrics").status_code == 200 for _ in range(5))
        assert "/metrics" not in limited.get("/openapi.json").json()["paths"]


def test_metrics_and_logs_hold_no_secret_text_or_api_key(client, log_lines):
    text = a_text()
    headers = {"Authorization": f"Bearer {API_KEY}", "X-API-Key": API_KEY}
    assert client.post("/detect", json={"text": text, "key_ids": "all"}, headers=headers).status_code == 200
    assert client.post("/detect", json={"text": text, "alpha": "not a number"}, headers=headers).status_code == 422
    assert client.post("/detect/batch", json={"items": [{"text": text}]}, headers=headers).status_code == 200
    exposed = scrape(client)
    logged = log_lines.getvalue()
    assert logged  # the access lines, at least
    for output in (exposed, logged):
        assert text not in output and "Telemetry counts" not in output
        assert API_KEY not in output
        for secret in TEST_SECRETS:
            assert secret not in output


def test_the_request_id_is_echoed_or_made(client):
    given = "req-2024.07_ab-CD"
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    assert HEX_ID.fullmatch(client.get("/healthz").headers["x-request-id"])
    for invalid in ("has spaces in it", "x" * 129, "semi;colon", "ünï"):
        echoed = client.get("/healthz", headers={"X-Request-ID": invalid.encode()}).headers["x-request-id"]
        assert HEX_ID.fullmatch(echoed), invalid


def test_every_log_line_of_a_request_carries_its_id(client, log_lines):
    response = client.get("/test/log-inside", headers={"X-Request-ID": "trace-me-1"})
    assert response.headers["x-request-id"] == "trace-me-1"
    lines = parsed_lines(log_lines)
    inside = [line for line in lines if line["message"] == "inside the route"]
    assert len(inside) == 1 and inside[0]["request_id"] == "trace-me-1"
    assert inside[0]["logger"] == "signet.test" and inside[0]["level"] == "INFO"
    access = [line for line in lines if line["logger"] == "signet.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "trace-me-1"
    assert access[0]["route"] == "/test/log-inside" and access[0]["status"] == 200 and access[0]["method"] == "GET"
    assert access[0]["duration_ms"] >= 0


def test_an_unhandled_error_answers_500_with_its_id_counted_and_logged_with_it(client, log_lines):
    before = scrape(client)
    response = client.get("/test/boom")
    after = scrape(client)
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(request_id)
    labels = {"route": "/test/boom", "method": "GET", "status_class": "5xx"}
    assert increase(before, after, "signet_http_requests_total", **labels) == 1
    errors = [line for line in parsed_lines(log_lines) if line["level"] == "ERROR"]
    assert errors and errors[0]["request_id"] == request_id
    assert "RuntimeError: an unexpected failure" in errors[0]["exception"]
    assert "an unexpected failure" not in response.text  # the client sees no details


def test_probes_and_scrapes_are_not_logged_at_info(client, log_lines):
    client.get("/healthz")
    client.get("/metrics")
    assert not [line for line in parsed_lines(log_lines) if line["logger"] == "signet.access"]


def test_metrics_sample_the_queue_and_the_workers_heartbeats(detection_state, redis_namespace):
    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=0.5)
    engine = RemoteEngine(
        JobQueue(link, 8, retry_after_seconds=2, signer=signer_for_test_keys()), detection_state.keys, 2048, 30.0
    )
    state = dataclasses.replace(detection_state, redis=link, engine=engine, queue=engine.queue, detection_cache=None)
    keys = QueueKeys(link)
    now = link.sync.time()[0]
    for name, running in (("busy-worker", 2), ("idle-worker", 0)):
        link.sync.zadd(keys.workers_alive, {name: now})
        link.sync.hset(keys.worker_stats(name), mapping={"running": running, "concurrency": 4})
    link.sync.zadd(keys.workers_alive, {"long-gone": now - 3600})
    link.sync.xadd(keys.stream, {"request_id": "waiting", "kind": "generate"})
    with TestClient(create_app(state)) as queued:
        text = scrape(queued)
    assert value(text, "signet_redis_up") == 1
    assert value(text, "signet_queue_depth") == 1
    assert value(text, "signet_workers", state="busy") == 1 and value(text, "signet_workers", state="idle") == 1
    assert value(text, "signet_worker_slots", state="busy") == 2
    assert value(text, "signet_worker_slots", state="idle") == 6
    assert "busy-worker" not in text and redis_namespace not in text


def test_an_unreachable_redis_shows_as_down_without_stale_queue_numbers(detection_state):
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", "signet-test-unreachable", timeout_seconds=0.5)
    engine = RemoteEngine(
        JobQueue(link, 8, retry_after_seconds=2, signer=signer_for_test_keys()), detection_state.keys, 2048, 30.0
    )
    state = dataclasses.replace(detection_state, redis=link, engine=engine, queue=engine.queue, detection_cache=None)
    with TestClient(create_app(state)) as queued:
        text = scrape(queued)
    assert "signet_redis_up 0.0" in text
    assert "signet_queue_depth" not in text and "signet_workers{" not in text


def test_embedded_mode_exports_no_queue_gauges(client):
    text = scrape(client)
    assert "signet_redis_up" not in text and "signet_queue_depth" not in text


class _FakeEngine:
    """Stands in for vLLM: /generate's tokens and the first piece's time to first token."""

    max_model_len = 2048
    is_healthy = True

    def check_available(self) -> None:
        pass

    async def generate(self, prompt_token_ids, options, watermark_key_id, tenant=None):
        return Completion("Hi there", [11, 12, 13], len(prompt_token_ids), "length")

    async def stream(self, prompt_token_ids, options, watermark_key_id, tenant=None):
        return self._pieces()

    async def _pieces(self):
        yield CompletionDelta("Hi", [11], time_to_first_token=0.2)
        yield CompletionDelta(" there", [12, 13], "length")

    def shutdown(self) -> None:
        pass


def test_generated_tokens_and_the_engines_time_to_first_token_are_counted(detection_state):
    with TestClient(create_app(dataclasses.replace(detection_state, engine=_FakeEngine()))) as generating:
        before = scrape(generating)
        whole = generating.post("/generate", json={"prompt": "Say hi.", "max_tokens": 3})
        unmarked = generating.post("/generate?watermark=false", json={"prompt": "Say hi.", "max_tokens": 3})
        streamed = generating.post("/generate", json={"prompt": "Say hi.", "max_tokens": 3, "stream": True})
        after = scrape(generating)
    assert whole.status_code == unmarked.status_code == streamed.status_code == 200
    assert increase(before, after, "signet_generated_tokens_total", watermarked="true") == 3 + 3
    assert increase(before, after, "signet_generated_tokens_total", watermarked="false") == 3
    assert increase(before, after, "signet_engine_time_to_first_token_seconds_count") == 1
    assert increase(before, after, "signet_engine_time_to_first_token_seconds_sum") == pytest.approx(0.2)
    assert (
        increase(before, after, "signet_http_requests_total", route="/generate", method="POST", status_class="2xx") == 3
    )
