"""The client's retries against the real app over real HTTP (uvicorn in a thread, no engine):
429 from a real rate limit is waited out as Retry-After says; 503 from a service without an
engine is retried, then raised; a service that is not there is named."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from harness.services import free_port
from signet.api.app import create_app
from signet.cache.rate_limit import MemoryRateLimiter
from signet.client import RetryPolicy, Signet, SignetError
from signet.metrics import HTTP_REQUESTS

TEXT = "The quick brown fox."  # too short to tell: 4 scored tokens, where the kgw key needs 7 at alpha 1e-4


@pytest.fixture(scope="module")
def limited_url(detection_state) -> Iterator[str]:
    """One request a second, no burst beyond one: the second request at once gets 429, Retry-After: 1."""
    limiter = MemoryRateLimiter(per_minute=60, burst=1)
    with serving(create_app(dataclasses.replace(detection_state, rate_limiter=limiter))) as url:
        yield url


@pytest.fixture(scope="module")
def engineless_url(detection_state) -> Iterator[str]:
    """No engine, no rate limit: /generate answers 503 every time."""
    with serving(create_app(detection_state)) as url:
        yield url


@contextmanager
def serving(app) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the in-process server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _refusals(route: str, status_class: str, at_least: float = 0) -> float:
    """The server thread counts a request just after sending its response: give it a moment."""
    deadline = time.monotonic() + 2
    while True:
        count = HTTP_REQUESTS.labels(route, "POST", status_class)._value.get()
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def test_429_is_waited_out_as_retry_after_says(limited_url):
    refused_before = _refusals("/detect", "4xx")
    with Signet(limited_url) as client:
        started = time.monotonic()
        answers = [client.detect(TEXT) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert [answer.verdict for answer in answers] == ["insufficient_evidence"] * 3
    refused = _refusals("/detect", "4xx", at_least=refused_before + 2) - refused_before
    assert refused >= 2  # the second and third were each refused at least once, then answered
    assert elapsed >= 1.9  # each waited the second the server asked for


def test_without_retries_the_429_is_raised_with_its_problem(limited_url):
    with Signet(limited_url, retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(SignetError) as raised:
            for _ in range(3):
                client.detect(TEXT)
    assert raised.value.status == 429
    assert raised.value.problem.title == "Too Many Requests"
    assert str(raised.value).startswith("429 Too Many Requests: rate limit exceeded")


def test_503_is_retried_then_raised(engineless_url):
    before = _refusals("/generate", "5xx")
    policy = RetryPolicy(max_retries=2, backoff_seconds=0.05, max_wait_seconds=5)
    with Signet(engineless_url, retry=policy) as client:
        with pytest.raises(SignetError) as raised:
            client.generate("Hello", max_tokens=4)
    assert raised.value.status == 503
    assert _refusals("/generate", "5xx", at_least=before + 3) - before == 3  # the first try and two retries


def test_the_async_twin_retries_the_same_way(limited_url):
    async def three_detections() -> list[str]:
        async with Signet(limited_url) as client:
            return [(await client.adetect(TEXT)).verdict for _ in range(3)]

    time.sleep(1.1)
    assert asyncio.run(three_detections()) == ["insufficient_evidence"] * 3


def test_an_unreachable_service_is_named_after_its_retries():
    url = f"http://127.0.0.1:{free_port()}"
    with Signet(url, retry=RetryPolicy(max_retries=1, backoff_seconds=0.01)) as client:
        with pytest.raises(SignetError) as raised:
            client.detect(TEXT)
    assert raised.value.status is None
    assert f"cannot reach Signet at {url}" in str(raised.value)


def test_a_request_the_service_would_refuse_is_refused_before_sending():
    with Signet(f"http://127.0.0.1:{free_port()}") as client:  # nothing listens: nothing was sent
        with pytest.raises(SignetError) as raised:
            client.detect("some text", token_ids=[1, 2])
    assert raised.value.status == 422
    assert str(raised.value) == "422 Unprocessable Entity: give exactly one of text and token_ids"
