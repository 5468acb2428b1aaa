"""A soak: distributed mode held at its queue's capacity for minutes, watched for leaks.

    .venv/bin/python -m bench.soak [--minutes 10] [--max-jobs 16] [--clients 24]

One ``signet serve`` API process and two ``signet worker`` processes (real vLLM engines,
SIGNET_WORKER_CONCURRENCY 4 each) on the local Redis (SIGNET_TEST_REDIS_URL or
127.0.0.1:6379, a fresh namespace). ``--clients`` threads send short generations without
pause, more than SIGNET_QUEUE_MAX_JOBS (``--max-jobs``) can hold, so the queue stays full
and some requests get 503 with Retry-After (a client waits 0.2 s and sends again).

Prints:
- the resident memory (RSS, each process with its children: a worker's vLLM engine core)
  of the API and the workers every 30 s, and its slope after the first minute (MB/min);
- the keys in the namespace before the load and after it, once everything the load wrote
  has expired (its jobs' deadlines, SIGNET_JOB_TIMEOUT_SECONDS 30, plus a minute), by
  family: a result, cancellation or stream key left over is a leak;
- answers per second, and the p50/p99 latency of the answered requests in the first
  and the last minute.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from harness.services import (
    cores_per_worker,
    fresh_redis_namespace,
    keys_environment,
    redis_test_url,
    running_signet_server,
    signet_process,
)

JOB_TIMEOUT_SECONDS = 30
KEY_EXPIRY_SECONDS = JOB_TIMEOUT_SECONDS + 60  # outcomes, replies, pieces and marks: a minute past the deadline
SAMPLE_SECONDS = 30
PROMPTS = ["Write one sentence about rivers.", "Name three kinds of bread.", "Say something about trains."]


@dataclass
class Answer:
    sent_at: float
    status: int
    seconds: float


def rss_mb(process: psutil.Process) -> float:
    """The process' resident memory with its children's."""
    members = [process, *process.children(recursive=True)]
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def key_families(client: redis.Redis, namespace: str) -> collections.Counter:
    """The namespace's keys by family: the part after the namespace, ids dropped."""
    families = collections.Counter()
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        parts = key.decode().removeprefix(f"{namespace}:").split(":")
        families[":".join(part for part in parts if not _looks_like_an_id(part))] += 1
    return families


def _looks_like_an_id(part: str) -> bool:
    return len(part) >= 16 and all(character in "0123456789abcdef-" for character in part)


def client_loop(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    with httpx.Client(timeout=JOB_TIMEOUT_SECONDS + 30) as client:
        while not stop.is_set():
            body = {"prompt": random.choice(PROMPTS), "max_tokens": 16, "seed": random.randrange(1 << 30)}
            started = time.monotonic()
            try:
                status = client.post(f"{url}/generate", json=body).status_code
            except httpx.TransportError:
                status = 0
            answers.append(Answer(started, status, time.monotonic() - started))
            if status != 200:
                time.sleep(0.2)


def slope_mb_per_minute(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return float("nan")
    times, values = zip(*samples, strict=True)
    return statistics.linear_regression(times, values).slope * 60


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--max-jobs", type=int, default=16)
    parser.add_argument("--clients", type=int, default=24)
    arguments = parser.parse_args()
    with ExitStack() as stack, fresh_redis_namespace() as namespace:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        client = redis.Redis.from_url(redis_test_url())
        environment = {
            **keys_environment(folder),
            "SIGNET_REDIS_URL": redis_test_url(),
            "SIGNET_REDIS_NAMESPACE": namespace,
            "SIGNET_QUEUE_MAX_JOBS": str(arguments.max_jobs),
            "SIGNET_JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT_SECONDS),
            "SIGNET_WORKER_CONCURRENCY": "4",
            "SIGNET_ENGINE_MEMORY_FRACTION": "0.2",
            "SIGNET_ENGINE_EAGER": "1",
        }
        # Each engine on cores of its own, as docs/DEPLOY.md says to deploy CPU workers.
        workers = [
            stack.enter_context(
                signet_process(
                    "worker",
                    folder / f"w{index}.log",
                    **environment,
                    SIGNET_WORKER_NAME=f"w{index}",
                    VLLM_CPU_OMP_THREADS_BIND=cores,
                )
            )
            for index, cores in enumerate(cores_per_worker(2), 1)
        ]
        api = stack.enter_context(running_signet_server(folder, **environment))
        while httpx.get(f"{api.url}/readyz", timeout=5).json().get("workers") != 2:
            time.sleep(1)
        baseline = key_families(client, namespace)
        processes = {"api": psutil.Process(api.process.pid)} | {
            f"w{index}": psutil.Process(worker.pid) for index, worker in enumerate(workers, 1)
        }

        stop, answers = threading.Event(), []
        threads = [
            threading.Thread(target=client_loop, args=(api.url, stop, answers)) for _ in range(arguments.clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        memory: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
        print("| minute | " + " | ".join(f"{name} RSS MB" for name in processes) + " | answered | 503 |")
        print("|---" * (len(processes) + 3) + "|")
        while (elapsed := time.monotonic() - started) < arguments.minutes * 60:
            for name, process in processes.items():
                memory[name].append((elapsed, rss_mb(process)))
            statuses = collections.Counter(answer.status for answer in list(answers))
            sizes = " | ".join(f"{values[-1][1]:.0f}" for values in memory.values())
            print(f"| {elapsed / 60:.1f} | {sizes} | {statuses[200]} | {statuses[503]} |", flush=True)
            time.sleep(SAMPLE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join()
        ended = time.monotonic()

        answered = [answer for answer in answers if answer.status == 200]
        first = [a.seconds for a in answered if a.sent_at - started < 60]
        last = [a.seconds for a in answered if a.sent_at >= ended - 60]
        statuses = collections.Counter(answer.status for answer in answers)
        print(f"\nrequests {len(answers)}: " + ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())))
        print(f"answers per second: {len(answered) / (ended - started):.2f}")
        print(f"first minute: p50 {percentile(first, 0.5):.2f} s, p99 {percentile(first, 0.99):.2f} s ({len(first)})")
        print(f"last minute:  p50 {percentile(last, 0.5):.2f} s, p99 {percentile(last, 0.99):.2f} s ({len(last)})")
        for name, samples in memory.items():
            steady = [sample for sample in samples if sample[0] >= 60]
            print(f"{name} RSS slope after the first minute: {slope_mb_per_minute(steady):+.2f} MB/min")

        print(f"\nwaiting {KEY_EXPIRY_SECONDS} s for what the load wrote to expire ...", flush=True)
        time.sleep(KEY_EXPIRY_SECONDS)
        after = key_families(client, namespace)
        print(f"keys before the load: {dict(baseline)}")
        print(f"keys after it expired: {dict(after)}")
        leaked = after - baseline
        print(f"left over: {dict(leaked) or 'nothing'}")


if __name__ == "__main__":
    main()
