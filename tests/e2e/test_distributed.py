"""Distributed mode for real: two API processes queueing on Redis, two ``signet worker``
processes with real vLLM engines, and faults caused for real: a worker killed with
SIGKILL, Redis stopped and started again, a job no worker can run.

The cluster uses its own ``redis-server`` (started here on a free port) because one test
stops it; everything else in the suite uses the shared test Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from harness.services import (
    STARTUP_TIMEOUT_S,
    RedisServer,
    RunningServer,
    free_port,
    keys_environment,
    running_signet_server,
    signal_group,
    signer_for_test_keys,
    signet_process,
)
from signet.engine.protocol import EngineError, EngineStatus
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink
from tests.deploy.common import exposed_families, monitored_families

pytestmark = pytest.mark.engine

CLAIM_IDLE_SECONDS = 5
MAX_DELIVERIES = 2
WORKER_CONCURRENCY = 8
PROMPTS = [
    f"Write a few sentences about {topic}."
    for topic in (
        "rivers", "bread", "bicycles", "winter", "libraries", "bees", "trains", "the moon", "gardens", "music",
        "mountains", "coffee", "lighthouses", "chess", "rain", "islands", "clocks", "forests", "maps", "kites",
    )
]  # fmt: skip


@dataclass
class Cluster:
    api: RunningServer
    second_api: RunningServer
    workers: dict[str, subprocess.Popen]
    worker_logs: dict[str, Path]
    worker_metrics: dict[str, str]  # name -> the URL of its SIGNET_WORKER_METRICS_PORT
    redis_server: RedisServer
    namespace: str

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def stats(self, worker_name: str) -> dict[str, float]:
        raw = self.redis().hgetall(f"{self.namespace}:worker:{worker_name}")
        return {key.decode(): float(value) for key, value in raw.items()}

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-3000:]}" for name, path in self.worker_logs.items())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, detection_state) -> Iterator[Cluster]:
    # detection_state has prepared the embedded model, so the processes do not race to.
    folder = tmp_path_factory.mktemp("cluster")
    redis_server = RedisServer(folder)
    redis_server.start()
    namespace = f"signet-test-{uuid.uuid4().hex[:12]}"
    environment = {
        **keys_environment(folder),
        "SIGNET_REDIS_URL": redis_server.url,
        "SIGNET_REDIS_NAMESPACE": namespace,
        "SIGNET_JOB_CLAIM_IDLE_SECONDS": str(CLAIM_IDLE_SECONDS),
        "SIGNET_JOB_MAX_DELIVERIES": str(MAX_DELIVERIES),
        "SIGNET_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "SIGNET_ENGINE_MEMORY_FRACTION": "0.2",
        "SIGNET_ENGINE_EAGER": "1",  # two engines start on two cores: skip the compile
    }
    with ExitStack() as stack:
        stack.callback(redis_server.stop)
        workers, logs, metrics_urls = {}, {}, {}
        for name in ("w1", "w2"):
            logs[name] = folder / f"{name}.log"
            port = free_port()
            metrics_urls[name] = f"http://127.0.0.1:{port}/metrics"
            workers[name] = stack.enter_context(
                signet_process(
                    "worker", logs[name], **environment, SIGNET_WORKER_NAME=name, SIGNET_WORKER_METRICS_PORT=str(port)
                )
            )
        api = stack.enter_context(running_signet_server(folder, **environment))
        second_folder = folder / "second-api"
        second_folder.mkdir()
        second_api = stack.enter_context(running_signet_server(second_folder, **environment))
        cluster = Cluster(api, second_api, workers, logs, metrics_urls, redis_server, namespace)
        _wait_for_workers(cluster, 2)
        yield cluster


def _wait_for_workers(cluster: Cluster, count: int, timeout: float = STARTUP_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in cluster.workers.items():
            if process.poll() is not None:
                pytest.fail(f"worker {name} exited with {process.returncode}:\n{cluster.logs()}")
        ready = httpx.get(f"{cluster.api.url}/readyz", timeout=5).json()
        if ready.get("workers") == count and ready["status"] == "ready":
            return ready
        time.sleep(1)
    pytest.fail(f"{count} workers not ready after {timeout} s:\n{cluster.logs()}")


def _generate(url: str, prompt: str, seed: int, max_tokens: int, temperature: float = 1.0) -> httpx.Response:
    body = {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "key_id": "main", "temperature": temperature}
    return httpx.post(f"{url}/generate", json=body, timeout=600)


# At temperature 2 sampling is nearly uniform over 49k tokens: the end-of-text token
# almost never comes, so a generation runs to max_tokens and is still running when a
# test needs it to be.
LONG_RUNNING = 2.0


def test_twenty_concurrent_generations_through_two_apis_and_two_workers_are_watermarked(cluster):
    urls = [cluster.api.url, cluster.second_api.url]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        responses = list(pool.map(lambda item: _generate(urls[item[0] % 2], item[1], item[0], 48), enumerate(PROMPTS)))
    assert [response.status_code for response in responses] == [200] * len(PROMPTS), responses[0].text
    bodies = [response.json() for response in responses]
    assert all(body["watermark"]["enabled"] and body["token_ids"] for body in bodies)
    # Both workers served: each takes at most WORKER_CONCURRENCY jobs at once. Workers
    # publish their counters with each heartbeat (every CLAIM_IDLE_SECONDS / 3).
    deadline = time.monotonic() + 2 * CLAIM_IDLE_SECONDS
    while True:
        completed = [cluster.stats(name).get("completed", 0) for name in ("w1", "w2")]
        if min(completed) >= 1 and sum(completed) == len(PROMPTS):
            break
        assert time.monotonic() < deadline, completed
        time.sleep(0.2)
    # All the tokens together: over 500 tokens at gamma 0.25 and delta 2 give a z-score far
    # above 10 (p < 1e-20); a threshold of 1e-9 fails by chance with probability < 1e-9.
    pooled = [token for body in bodies for token in body["token_ids"]]
    detection = httpx.post(f"{cluster.api.url}/detect", json={"token_ids": pooled, "key_id": "main"}, timeout=60).json()
    assert detection["watermarked"] and detection["p_value"] < 1e-9, detection


def test_a_stream_through_the_queue_equals_the_whole_answer(cluster):
    client = openai.OpenAI(base_url=f"{cluster.second_api.url}/v1", api_key="unused", max_retries=0)
    arguments = {"model": client.models.list().data[0].id, "prompt": PROMPTS[2], "max_tokens": 32, "seed": 4}
    whole = client.completions.create(**arguments)
    chunks = [chunk for chunk in client.completions.create(**arguments, stream=True) if chunk.choices]
    assert len(chunks) > 1  # pieces, not one block at the end
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def _provenance_ids(url: str, text: str) -> list[str]:
    body = {"text": text, "provenance": True, "alpha": 1e-3}
    response = httpx.post(f"{url}/detect", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return [match["generation_id"] for match in response.json()["provenance"]["matches"]]


def test_the_generation_registry_is_shared_by_the_api_processes(cluster):
    """Generated through one API process, recorded in Redis, found and erased through the
    other, and gone for the first: each pod mirrors the registry's log before it answers."""
    generation = _generate(cluster.api.url, PROMPTS[3], seed=8, max_tokens=48).json()
    generation_id = generation["generation_id"]
    deadline = time.monotonic() + 30
    while generation_id not in _provenance_ids(cluster.second_api.url, generation["text"]):
        assert time.monotonic() < deadline, "the second API process never found the generation"
        time.sleep(0.2)
    assert generation_id in _provenance_ids(cluster.api.url, generation["text"])
    assert len(_record_keys(cluster, generation_id)) == 1  # its fingerprint, in a key of its own
    assert httpx.delete(f"{cluster.second_api.url}/generations/{generation_id}", timeout=30).status_code == 204
    assert generation_id not in _provenance_ids(cluster.api.url, generation["text"])
    assert httpx.delete(f"{cluster.api.url}/generations/{generation_id}", timeout=30).status_code == 404
    # Its fingerprint is gone from Redis itself, not only hidden: its key now holds the empty
    # tombstone that refuses a late add of the id (the log keeps ids and times only).
    assert [cluster.redis().get(key) for key in _record_keys(cluster, generation_id)] == [b""]


def _record_keys(cluster: Cluster, generation_id: str) -> list[bytes]:
    """The registry's keys for one generation: named by the digest of its id (registry/redis.py)."""
    digest = hashlib.sha256(generation_id.encode()).hexdigest()[:32]
    return list(cluster.redis().scan_iter(f"{cluster.namespace}:provenance:*:{digest}"))


def test_scores_gather_samples_and_logprobs_through_the_queue(cluster):
    """/score/uncertainty in distributed mode: the answer with its top-k logprobs, the PMI
    pass (prompt logprobs) and the samples (n answers in one request) are "sample" jobs
    whose logprobs come back from the workers through Redis."""
    body = {"prompt": PROMPTS[1], "samples": 3, "max_tokens": 12, "seed": 5, "similarity": "embedding"}
    response = httpx.post(f"{cluster.api.url}/score/uncertainty", json=body, timeout=600)
    assert response.status_code == 200, response.text
    answer = response.json()
    scores = {score["method"]: score for score in answer["scores"]}
    assert len(answer["samples"]) == 3 and len(answer["semantic_classes"]) == 3
    assert len(scores["max_sequence_probability"]["per_token"]) == answer["response_tokens"] > 0
    assert len(scores["pmi"]["per_token"]) == answer["response_tokens"]
    assert scores["mean_token_entropy"]["bounds"]["lower"] <= scores["mean_token_entropy"]["bounds"]["upper"]
    assert answer["cost"]["engine_requests"] == 3  # answer, PMI pass, samples: embeddings need no judge


def test_workers_export_the_engine_series_the_dashboard_and_alerts_use(cluster):
    """Runs after generations went through both workers. Each worker's metrics port has vLLM's
    series, labelled with the model's name (never its path); the API pods have Signet's."""
    _generate(cluster.api.url, PROMPTS[2], 3, 8).raise_for_status()
    wanted = monitored_families()
    api_families = exposed_families(httpx.get(f"{cluster.api.url}/metrics", timeout=10).text)
    missing = {name for name in wanted if name.startswith("signet_")} - api_families
    assert not missing, f"the API exports no {sorted(missing)}"
    generated = 0.0
    for name, url in cluster.worker_metrics.items():
        exposition = httpx.get(url, timeout=10).text
        missing = {family for family in wanted if family.startswith("vllm:")} - exposed_families(exposition)
        assert not missing, f"worker {name} exports no {sorted(missing)}"
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name.startswith("vllm:") and "model_name" in sample.labels:
                    assert "/" not in sample.labels["model_name"], sample
                if sample.name == "vllm:generation_tokens_total":
                    generated += sample.value
    assert generated >= 8  # the generation above, at least, ran on one of them


def test_a_job_no_worker_can_run_is_dead_lettered_and_its_caller_told(cluster):
    async def submit() -> EngineError:
        link = RedisLink(cluster.redis_server.url, cluster.namespace, timeout_seconds=1.0)
        queue = JobQueue(link, max_jobs=100, retry_after_seconds=1, signer=signer_for_test_keys())
        try:
            with pytest.raises(EngineError) as failed:
                await queue.run("kind-from-a-newer-api", {"x": 1}, timeout_seconds=120)
            return failed.value
        finally:
            await queue.aclose()
            await link.aclose()

    started = time.monotonic()
    error = asyncio.run(submit())
    assert error.status is EngineStatus.FAILED and "set aside" in error.detail
    # Delivered once, taken over MAX_DELIVERIES - 1 times, then set aside on the next take-over.
    assert time.monotonic() - started < (MAX_DELIVERIES + 2) * CLAIM_IDLE_SECONDS + 30
    dead = cluster.redis().xrange(f"{cluster.namespace}:jobs:dead")
    assert [entry[b"kind"] for _, entry in dead] == [b"kind-from-a-newer-api"]
    assert f"delivered {MAX_DELIVERIES + 1} times".encode() in dead[0][1][b"reason"]


def test_a_client_that_hangs_up_cancels_its_job(cluster):
    with httpx.Client(timeout=1.0) as hasty:
        with pytest.raises(httpx.ReadTimeout):
            body = {"prompt": PROMPTS[0], "max_tokens": 2000, "seed": 1, "temperature": LONG_RUNNING}
            hasty.post(f"{cluster.api.url}/generate", json=body)
    # 2000 tokens take minutes here; cancelled, the job leaves the queue within seconds,
    # whether a worker was running it or had not yet taken it.
    client = cluster.redis()
    deadline = time.monotonic() + 30
    while client.xlen(f"{cluster.namespace}:jobs") != 0 or "cancelled by its caller" not in cluster.logs():
        assert time.monotonic() < deadline, f"the job was not cancelled:\n{cluster.logs()}"
        time.sleep(0.2)
    dead = client.xrange(f"{cluster.namespace}:jobs:dead")
    assert b"generate" not in [entry[b"kind"] for _, entry in dead]  # cancelled, not set aside


def test_detect_survives_a_redis_outage_and_generation_recovers_without_restart(cluster):
    api = cluster.api.url
    text = "The river ran past the mill and under the old stone bridge, where children fished on summer evenings."
    cluster.redis_server.stop()
    try:
        detect = httpx.post(f"{api}/detect", json={"text": text}, timeout=10)
        assert detect.status_code == 200 and detect.json()["cached"] is False
        for _ in range(3):
            started = time.monotonic()
            refused = _generate(api, PROMPTS[1], 1, 8)
            assert time.monotonic() - started < 1.0
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert cluster.redis_server.url not in refused.text
        ready = httpx.get(f"{api}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["redis"] == "down"
    finally:
        cluster.redis_server.start()  # empty: no persistence, as after a real restart
    deadline = time.monotonic() + 60
    while (response := _generate(api, PROMPTS[1], 1, 8)).status_code != 200:
        assert time.monotonic() < deadline, f"generation did not recover: {response.text}\n{cluster.logs()}"
        time.sleep(1)
    assert _wait_for_workers(cluster, 2, timeout=60)["redis"] == "up"
    assert httpx.post(f"{api}/detect", json={"text": text}, timeout=10).status_code == 200


def test_a_killed_worker_loses_no_request(cluster):
    """Runs last: it leaves one worker."""
    client = cluster.redis()
    stream, group = f"{cluster.namespace}:jobs", f"{cluster.namespace}:workers"
    with ThreadPoolExecutor(12) as pool:
        futures = [
            pool.submit(_generate, cluster.api.url, prompt, seed, 96, LONG_RUNNING)
            for seed, prompt in enumerate(PROMPTS[:12])
        ]
        deadline = time.monotonic() + 120
        while _pending_of(client, stream, group, "w1") == 0:
            assert time.monotonic() < deadline, "w1 never took a job"
            time.sleep(0.05)
        held = _pending_of(client, stream, group, "w1")
        signal_group(cluster.workers["w1"].pid, signal.SIGKILL)  # the worker and its engine, like a lost pod
        responses = [future.result() for future in futures]
    assert held >= 1
    assert [response.status_code for response in responses] == [200] * 12, [r.text for r in responses]
    assert all(response.json()["token_ids"] for response in responses)
    deadline = time.monotonic() + 2 * CLAIM_IDLE_SECONDS
    while cluster.stats("w2").get("reclaimed", 0) < 1:
        assert time.monotonic() < deadline, cluster.stats("w2")
        time.sleep(0.2)
    assert client.xlen(stream) == 0


def _pending_of(client: redis.Redis, stream: str, group: str, consumer: str) -> int:
    try:
        summary = client.xpending(stream, group)
    except redis.ResponseError:
        return 0  # no group yet
    return sum(entry["pending"] for entry in summary.get("consumers", []) if entry["name"] == consumer.encode())
