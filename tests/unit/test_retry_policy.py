"""The client's retry policy and its reading of server-sent events: pure functions, no service."""

from __future__ import annotations

import email.utils

import pytest

from signet.client.errors import SignetError
from signet.client.events import EventReader
from signet.client.retry import RetryPolicy, retry_after_seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 2.5 ", 2.5), ("0", 0.0), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_retry_after_in_seconds(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_retry_after_as_an_http_date():
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(header, now=now) == pytest.approx(30.0)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_the_server_s_retry_after_is_a_minimum():
    policy = RetryPolicy(max_retries=3, backoff_seconds=0.1, max_wait_seconds=60)
    assert all(policy.delay(0, "7") == 7.0 for _ in range(20))


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(max_retries=10, backoff_seconds=1.0, max_wait_seconds=5.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (6, 5.0)]:
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered: refused clients do not come back in step


def test_gives_up_after_max_retries_or_when_asked_to_wait_too_long():
    policy = RetryPolicy(max_retries=2, backoff_seconds=0.1, max_wait_seconds=10)
    assert policy.delay(1, None) is not None
    assert policy.delay(2, None) is None
    assert policy.delay(0, "11") is None  # failing now beats coming back before the server said


def test_events_become_chunks_and_done_ends_the_stream():
    reader = EventReader()
    lines = [
        'data: {"text": "Hi", "token_ids": [1]}',
        "",
        'data: {"text": "!", "token_ids": [2], "finish_reason": "stop"}',
    ]
    chunks = [reader.feed(line) for line in [*lines, ""]]
    assert [chunk.text for chunk in chunks if chunk] == ["Hi", "!"]
    assert chunks[-1].finish_reason == "stop"
    assert not reader.done
    reader.feed("data: [DONE]")
    assert reader.feed("") is None and reader.done
    reader.check_complete()


def test_a_stream_cut_before_done_raises():
    reader = EventReader()
    reader.feed('data: {"text": "Hi", "token_ids": [1]}')
    reader.feed("")
    with pytest.raises(SignetError, match="the stream ended before"):
        reader.check_complete()


def test_an_error_event_raises_the_problem():
    reader = EventReader()
    reader.feed("event: error")
    reader.feed('data: {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "engine died"}')
    with pytest.raises(SignetError) as raised:
        reader.feed("")
    assert raised.value.status == 503
    assert str(raised.value) == "503 Service Unavailable: engine died"
