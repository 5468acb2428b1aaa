"""/generate in distributed mode, in-process and without workers: how the queue's
refusals reach the client (503 + Retry-After, 504), as problem+json."""

from __future__ import annotations

import dataclasses
import time

from fastapi.testclient import TestClient

from harness.services import free_port, redis_test_url, signer_for_test_keys
from signet.api.app import create_app
from signet.queue.generation import RemoteEngine
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink

PROMPT = {"prompt": "Say something.", "max_tokens": 4}


def queued_client(detection_state, url: str, namespace: str, max_jobs: int = 8, timeout: float = 30.0) -> TestClient:
    link = RedisLink(url, namespace, timeout_seconds=0.5)
    queue = JobQueue(link, max_jobs, retry_after_seconds=4, signer=signer_for_test_keys())
    engine = RemoteEngine(queue, detection_state.keys, 2048, timeout)
    state = dataclasses.replace(detection_state, redis=link, engine=engine, queue=engine.queue, detection_cache=None)
    return TestClient(create_app(state))


def test_a_full_queue_answers_503_with_retry_after(detection_state, redis_namespace):
    with queued_client(detection_state, redis_test_url(), redis_namespace, max_jobs=1) as client:
        link: RedisLink = client.app.state.signet.redis
        link.sync.xadd(link.key("jobs"), {"request_id": "someone-else", "kind": "generate"})  # the one slot
        response = client.post("/generate", json=PROMPT)
    assert response.status_code == 503 and response.headers["retry-after"] == "4"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "full" in response.json()["detail"]


def test_no_worker_within_the_deadline_answers_504(detection_state, redis_namespace):
    with queued_client(detection_state, redis_test_url(), redis_namespace, timeout=0.5) as client:
        started = time.monotonic()
        response = client.post("/generate", json=PROMPT)
        link: RedisLink = client.app.state.signet.redis
        cancelled = link.sync.keys(link.key("cancelled", "*"))
    assert response.status_code == 504 and "deadline" in response.json()["detail"]
    assert time.monotonic() - started < 5
    assert len(cancelled) == 1  # a worker that picks the job up later drops it


def test_an_unreachable_redis_answers_503_at_once_and_detection_goes_on(detection_state):
    url = f"redis://:s3cret-password@127.0.0.1:{free_port()}/0"
    with queued_client(detection_state, url, "signet-test-unreachable") as client:
        started = time.monotonic()
        response = client.post("/generate", json=PROMPT)
        elapsed = time.monotonic() - started
        ready = client.get("/readyz")
        detect = client.post("/detect", json={"text": "Detection needs no queue and no Redis."})
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert elapsed < 1.0 and "s3cret" not in response.text
    assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["redis"] == "down"
    assert detect.status_code == 200
