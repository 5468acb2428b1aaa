"""What the Redis queue costs: /generate through API + worker vs the embedded engine, and
/detect with a warm cache vs a cold one, side by side in one run.

    .venv/bin/python -m bench.queue_overhead [--rounds 4] [--concurrency 16] [--tokens 64] [--pings 60]

Starts an embedded ``signet serve`` and, beside it, a distributed one (``signet serve``
with SIGNET_REDIS_URL plus one ``signet worker``) with the same engine settings, both on
the local Redis (SIGNET_TEST_REDIS_URL or 127.0.0.1:6379, a fresh namespace). Both engines
stay loaded and the rounds alternate between the modes, so machine drift hits both alike.

- throughput: rounds of ``--concurrency`` requests of ``--tokens`` tokens (same prompts and
  seeds in both modes), total generated tokens / wall time; p50/p99 request latency;
- added latency: ``--pings`` sequential one-token requests per mode, p50 and p99;
- /detect: each human test passage once (cold: a miss) and again (warm: a hit), per mode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.watermark_overhead import HUMAN_DIR, PROMPTS
from harness.services import keys_environment, redis_test_url, running_signet_server, signet_process

ENGINE = {"SIGNET_ENGINE_MEMORY_FRACTION": "0.2", "SIGNET_ENGINE_MAX_CONCURRENCY": "32"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def generate(url: str, prompt: str, seed: int, tokens: int) -> tuple[float, int]:
    body = {"prompt": prompt, "max_tokens": tokens, "seed": seed}
    began = time.perf_counter()
    response = httpx.post(f"{url}/generate", json=body, timeout=600)
    elapsed = time.perf_counter() - began
    response.raise_for_status()
    return elapsed, response.json()["usage"]["completion_tokens"]


def throughput_round(url: str, concurrency: int, tokens: int) -> tuple[float, list[float]]:
    prompts = (PROMPTS * concurrency)[:concurrency]
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda item: generate(url, item[1], item[0], tokens), enumerate(prompts)))
    wall = time.perf_counter() - began
    return sum(count for _, count in results) / wall, [elapsed for elapsed, _ in results]


def one_token_latencies(url: str, count: int) -> list[float]:
    return [generate(url, PROMPTS[index % len(PROMPTS)], index, 1)[0] for index in range(count)]


def detect_latencies(url: str, texts: list[str]) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        for text in texts:
            for latencies, expect_cached in ((cold, False), (warm, True)):
                began = time.perf_counter()
                response = client.post("/detect", json={"text": text})
                latencies.append(time.perf_counter() - began)
                assert response.json()["cached"] is expect_cached, response.text
    return cold, warm


def summary(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5) * 1e3:8.1f} ms   p99 {percentile(values, 0.99) * 1e3:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--pings", type=int, default=60)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        folder = Path(folder)
        namespace = f"signet-bench-{uuid.uuid4().hex[:8]}"
        queued = {"SIGNET_REDIS_URL": redis_test_url(), "SIGNET_REDIS_NAMESPACE": namespace, **ENGINE}
        stack.enter_context(signet_process("worker", folder / "worker.log", **keys_environment(folder), **queued))
        embedded_folder, queued_folder = folder / "embedded", folder / "queued"
        embedded_folder.mkdir(), queued_folder.mkdir()
        servers = {
            "embedded": stack.enter_context(running_signet_server(embedded_folder, **ENGINE)).url,
            "queued": stack.enter_context(running_signet_server(queued_folder, **queued)).url,
        }
        while httpx.get(f"{servers['queued']}/readyz").json().get("workers") != 1:
            time.sleep(1)
        for url in servers.values():  # warm-up: first requests pay one-time costs
            throughput_round(url, arguments.concurrency, 8)

        rates: dict[str, list[float]] = {mode: [] for mode in servers}
        latencies: dict[str, list[float]] = {mode: [] for mode in servers}
        pings: dict[str, list[float]] = {mode: [] for mode in servers}
        for index in range(arguments.rounds):
            modes = list(servers) if index % 2 == 0 else list(reversed(servers))
            for mode in modes:
                rate, request_latencies = throughput_round(servers[mode], arguments.concurrency, arguments.tokens)
                rates[mode].append(rate)
                latencies[mode].extend(request_latencies)
                pings[mode].extend(one_token_latencies(servers[mode], arguments.pings // arguments.rounds))

        texts = [path.read_text() for path in sorted(HUMAN_DIR.glob("*.txt"))]
        detects = {mode: detect_latencies(url, texts) for mode, url in servers.items()}

    print(
        f"/generate: {arguments.rounds} alternating rounds x {arguments.concurrency} concurrent x "
        f"{arguments.tokens} tokens; one engine each, same settings {ENGINE}"
    )
    for mode in servers:
        print(
            f"  {mode:9s} tokens/s median {statistics.median(rates[mode]):7.1f}  all "
            f"{[round(rate, 1) for rate in rates[mode]]}   request {summary(latencies[mode])}"
        )
    ratios = [queued / embedded for queued, embedded in zip(rates["queued"], rates["embedded"], strict=True)]
    print(f"  throughput ratio queued/embedded: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}")
    print(f"one-token requests, sequential ({len(pings['queued'])} per mode):")
    for mode in servers:
        print(f"  {mode:9s} {summary(pings[mode])}")
    added = percentile(pings["queued"], 0.5) - percentile(pings["embedded"], 0.5)
    print(f"  added p50 latency of the queue: {added * 1e3:.1f} ms")
    print(f"/detect, {len(texts)} human passages, each cold (miss) then warm (hit):")
    for mode, (cold, warm) in detects.items():
        cache = "memory LRU" if mode == "embedded" else "Redis"
        speedup = percentile(cold, 0.5) / percentile(warm, 0.5)
        print(f"  {mode:9s} ({cache:10s}) cold {summary(cold)}   warm {summary(warm)}   p50 speed-up {speedup:.1f}x")


if __name__ == "__main__":
    main()
