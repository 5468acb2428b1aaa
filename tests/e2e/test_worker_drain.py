"""SIGTERM drains a real ``signet worker``: it stops taking jobs at once, finishes the
ones it runs, and leaves the queue's other jobs to other workers. Its ready file (the
exec probe's evidence) appears once the engine is loaded and goes when draining starts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from harness.services import (
    STARTUP_TIMEOUT_S,
    fresh_redis_namespace,
    keys_environment,
    redis_test_url,
    signer_for_test_keys,
    signet_process,
)
from signet.engine.model_store import encode_prompt
from signet.engine.protocol import EngineError, SamplingOptions
from signet.queue.jobs import QueueKeys
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink

pytestmark = pytest.mark.engine

DRAIN_SECONDS = 120  # far longer than the jobs: a drain that waits for them ends when they do


def _payload(tokenizer, seed: int) -> dict:
    prompt_ids = encode_prompt(tokenizer, turns=[{"role": "user", "content": "Tell me a long story about a fox."}])
    options = SamplingOptions(max_tokens=64, seed=seed, ignore_eos=True)
    return {
        "prompt_token_ids": prompt_ids,
        "options": dataclasses.asdict(options),
        "watermark_key_id": None,
        "key_fingerprint": None,
    }


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sigterm_finishes_running_jobs_and_leaves_new_ones_queued(tmp_path: Path, detection_state):
    ready_file = tmp_path / "probe" / "worker-ready"
    with fresh_redis_namespace() as namespace:
        environment = {
            **keys_environment(tmp_path),
            "SIGNET_REDIS_URL": redis_test_url(),
            "SIGNET_REDIS_NAMESPACE": namespace,
            "SIGNET_ENGINE_MEMORY_FRACTION": "0.2",
            "SIGNET_ENGINE_EAGER": "1",
            "SIGNET_WORKER_NAME": "drainer",
            "SIGNET_WORKER_CONCURRENCY": "2",
            "SIGNET_WORKER_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "SIGNET_WORKER_READY_FILE": str(ready_file),
        }
        log_path = tmp_path / "worker.log"
        with signet_process("worker", log_path, **environment) as worker:
            _wait_for(lambda: ready_file.exists() or worker.poll() is not None, STARTUP_TIMEOUT_S, "the ready file")
            assert worker.poll() is None, log_path.read_text()[-3000:]
            asyncio.run(_drain_while_running(worker, ready_file, namespace, detection_state.tokenizer))
            assert worker.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        assert "finishing 2 running jobs" in log_path.read_text()
        assert not ready_file.exists()


async def _drain_while_running(worker, ready_file: Path, namespace: str, tokenizer) -> None:
    link = RedisLink(redis_test_url(), namespace, timeout_seconds=2.0)
    queue = JobQueue(link, max_jobs=10, retry_after_seconds=1, signer=signer_for_test_keys())
    keys = QueueKeys(link)
    client = redis.Redis.from_url(redis_test_url())
    try:
        running = [asyncio.create_task(queue.run("generate", _payload(tokenizer, seed), 300)) for seed in (1, 2)]
        deadline = time.monotonic() + 60
        while client.xpending(keys.stream, keys.group)["pending"] < 2:  # both delivered to the worker
            assert time.monotonic() < deadline, "the worker did not take the two jobs"
            await asyncio.sleep(0.05)

        os.kill(worker.pid, signal.SIGTERM)  # the worker's own process, as Kubernetes signals it
        deadline = time.monotonic() + 10
        while ready_file.exists():  # intake stops and the probe fails at once
            assert time.monotonic() < deadline, "the ready file outlived the SIGTERM"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        late = asyncio.create_task(queue.run("generate", _payload(tokenizer, 3), 30))

        finished = await asyncio.wait_for(asyncio.gather(*running), timeout=DRAIN_SECONDS)
        assert [len(result["token_ids"]) for result in finished] == [64, 64]
        while worker.poll() is None:
            await asyncio.sleep(0.1)
        # The late job was never run: it is still in the stream (finished jobs are deleted
        # from it) for another worker, and its caller has no answer yet.
        assert client.xlen(keys.stream) == 1
        assert not late.done()
        late.cancel()
        with pytest.raises((asyncio.CancelledError, EngineError)):
            await late
    finally:
        client.close()
        await queue.aclose()
        await link.aclose()
