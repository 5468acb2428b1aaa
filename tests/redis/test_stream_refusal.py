"""A streamed generation the job queue refuses (full, the tenant's share held, Redis gone)
is answered 503 with Retry-After, as problem+json, before any byte of the stream: a
refusal that came as ``event: error`` inside a 200 would hide it from every client and
proxy that reads the status, and carry no Retry-After. A stream the queue takes is still
a 200 of server-sent events.

The API runs in-process in distributed mode on a real Redis; the accepted stream's worker
is a stand-in handler in a thread that publishes pieces as the generation handler does.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from harness.services import free_port, redis_test_url
from signet.queue.consumer import PiecePublisher
from signet.queue.generation import KIND
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink
from signet.tenants import TenantRegistry
from tests.api import test_generate_queue, test_score_queue

STREAMED_ROUTES = ["/generate", "/v1/completions", "/v1/chat/completions"]


def streamed_body(path: str, model: str) -> dict:
    if path == "/generate":
        return {"prompt": "Say something.", "max_tokens": 4, "stream": True}
    if path == "/v1/completions":
        return {"model": model, "prompt": "Say something.", "max_tokens": 4, "stream": True}
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 4,
        "stream": True,
    }


def post_streamed(client: TestClient, path: str, headers: dict | None = None) -> tuple[httpx.Response, bytes]:
    """The response and every byte of its body, read as a streaming client reads them."""
    body = streamed_body(path, client.app.state.signet.model_name)
    with client.stream("POST", path, json=body, headers=headers) as response:
        return response, response.read()


def assert_refused_before_the_stream(response: httpx.Response, raw: bytes, retry_after: str, detail: str) -> None:
    assert response.status_code == 503, raw
    assert response.headers["retry-after"] == retry_after
    assert response.headers["content-type"].startswith("application/problem+json")
    assert b"data:" not in raw and b"event:" not in raw  # not one byte of a stream
    problem = json.loads(raw)
    assert problem["status"] == 503 and detail in problem["detail"]


def jobs(client: TestClient) -> int:
    link: RedisLink = client.app.state.signet.redis
    return link.sync.xlen(link.key("jobs"))


@pytest.mark.parametrize("path", STREAMED_ROUTES)
def test_a_full_queue_refuses_a_stream_with_503_before_it_starts(detection_state, redis_namespace, path):
    with test_generate_queue.queued_client(detection_state, redis_test_url(), redis_namespace, max_jobs=1) as client:
        link: RedisLink = client.app.state.signet.redis
        link.sync.xadd(link.key("jobs"), {"request_id": "someone-else", "kind": "generate"})  # the one slot
        response, raw = post_streamed(client, path)
        assert jobs(client) == 1  # nothing of the refused request was queued
    assert_refused_before_the_stream(response, raw, "4", "the job queue is full (1 jobs)")


@pytest.mark.parametrize("path", STREAMED_ROUTES)
def test_a_tenant_over_its_share_is_refused_a_stream_with_503(detection_state, redis_namespace, tmp_path, path):
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(test_score_queue.TENANTS))
    tenants = TenantRegistry.load(tenants_file, detection_state.keys.key_ids)
    with test_score_queue.queued_client(
        detection_state, redis_namespace, tenants=tenants, tenant_share=0.125
    ) as client:
        queue: JobQueue = client.app.state.signet.queue
        # moderation already holds its one job (0.125 of 8), queued by another API process
        queue.link.sync.zadd(queue.keys.tenant_jobs("moderation"), {"another-request": time.time() + 60})
        response, raw = post_streamed(client, path, headers={"X-API-Key": test_score_queue.MOD_KEY})
        assert jobs(client) == 0
    assert_refused_before_the_stream(
        response, raw, "4", "tenant 'moderation' holds its share of the job queue: 1 of 8 jobs"
    )


@pytest.mark.parametrize("path", STREAMED_ROUTES)
def test_an_unreachable_redis_refuses_a_stream_with_503(detection_state, path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with test_generate_queue.queued_client(detection_state, url, "signet-test-unreachable") as client:
        started = time.monotonic()
        response, raw = post_streamed(client, path)
        elapsed = time.monotonic() - started
    assert response.status_code == 503, raw
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"].startswith("application/problem+json")
    assert b"data:" not in raw and b"event:" not in raw
    assert elapsed < 2.0  # the link's timeout is 0.5 s


def stand_in_generation(link: RedisLink):
    """Publishes two pieces as the worker's generation handler does, then the whole answer."""
    publisher = PiecePublisher(link)

    async def generate(job: Job) -> dict:
        pieces = [{"text": "Hello", "token_ids": [1, 2]}, {"text": " world", "token_ids": [3], "finish_reason": "stop"}]
        for number, piece in enumerate(pieces, start=1):
            await publisher.publish(job, "attempt-1", number, piece)
        prompt_tokens = len(job.payload["prompt_token_ids"])
        return {"text": "Hello world", "token_ids": [1, 2, 3], "prompt_tokens": prompt_tokens, "finish_reason": "stop"}

    return generate


@pytest.mark.parametrize("path", STREAMED_ROUTES)
def test_a_stream_the_queue_takes_is_a_200_of_server_sent_events(detection_state, redis_namespace, path):
    # A link first used on the worker's thread, so its connections belong to that thread's event loop.
    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=0.5)
    with test_score_queue.worker_thread(redis_namespace, {KIND: stand_in_generation(link)}):
        with test_score_queue.queued_client(detection_state, redis_namespace, timeout=10.0) as client:
            response, raw = post_streamed(client, path)
            deadline = time.monotonic() + 5
            while jobs(client):  # answered and acknowledged
                assert time.monotonic() < deadline, "the job was left in the queue"
                time.sleep(0.05)
    assert response.status_code == 200, raw
    assert response.headers["content-type"].startswith("text/event-stream")
    events = raw.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and "event: error" not in raw.decode()
    assert "Hello" in raw.decode() and "world" in raw.decode()


async def post_and_hang_up_before_the_first_byte(app, path: str, body: dict, headers: dict) -> list[dict]:
    """POST over ASGI, hanging up while the response's headers are being sent, so the
    stream's iterator never begins; the ASGI messages the app sent."""
    sent, hung_up = [], asyncio.Event()
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            hung_up.set()
            await asyncio.Event().wait()  # the client is gone: this send never completes

    raw_headers = [
        (b"content-type", b"application/json"),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *raw_headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


@pytest.mark.parametrize("path", STREAMED_ROUTES)
def test_a_client_gone_before_the_first_byte_cancels_the_queued_job(detection_state, redis_namespace, tmp_path, path):
    """The job was queued before the response began; nobody reads its pieces, so the
    response's end must cancel it and free the tenant's place, not leave both to its deadline."""
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(test_score_queue.TENANTS))
    tenants = TenantRegistry.load(tenants_file, detection_state.keys.key_ids)
    with test_score_queue.queued_client(detection_state, redis_namespace, tenants=tenants) as client:
        queue: JobQueue = client.app.state.signet.queue
        body = streamed_body(path, client.app.state.signet.model_name)
        headers = {"X-API-Key": test_score_queue.MOD_KEY}
        sent = client.portal.call(post_and_hang_up_before_the_first_byte, client.app, path, body, headers)
        assert [message["type"] for message in sent] == ["http.response.start"]
        assert sent[0]["status"] == 200 and jobs(client) == 1  # taken, then the client left
        assert queue.link.sync.zcard(queue.keys.tenant_jobs("moderation")) == 0
        assert len(queue.link.sync.keys(queue.keys.cancelled("*"))) == 1
