"""RedisLink against a real Redis: a burst of callers is not read as Redis being down."""

from __future__ import annotations

import asyncio

import pytest

from signet.redis_link import RedisUnavailable


@pytest.mark.asyncio
async def test_a_burst_of_callers_on_a_fresh_link_all_get_their_answers(link):
    """Each new connection costs the event loop about a millisecond of CPU. 1000 callers at
    once on a fresh link used to open 1000 connections together and run their 0.5 s connect
    timeouts out (bench/redis_burst.py: 1874 of 3000 failed); the breaker then refused
    everyone. The link lets 64 calls run at once, and the rest wait for a turn first."""
    answers = await asyncio.gather(*(link.call_async(lambda client: client.ping()) for _ in range(1000)))
    assert answers == [True] * 1000
    assert link.is_up
    assert len(link.async_client.connection_pool._available_connections) <= 64  # redis-py's idle connections


@pytest.mark.asyncio
async def test_a_call_the_breaker_refuses_says_it_was_never_sent(link):
    """JobQueue cancels a job whose enqueue may have reached Redis; one the breaker refused
    before it left needs no cancellation."""
    link.record_failure(ConnectionError("test"))
    with pytest.raises(RedisUnavailable) as refused:
        await link.call_async(lambda client: client.ping())
    assert refused.value.sent is False
