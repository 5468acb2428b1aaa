"""How Python's GIL switch interval trades the event loop's latency against a request's CPU work.

    .venv/bin/python -m bench.switch_interval [--rounds 6] [--intervals 0.005,0.001,0.0005,0.0001]

Starts one ``signet serve`` API process per interval (SIGNET_SWITCH_INTERVAL_SECONDS), side by
side, in distributed mode (the local Redis, SIGNET_TEST_REDIS_URL or 127.0.0.1:6379, a fresh
namespace; no worker: /detect and /healthz need none), the detection cache off, with one key
that folds NFC, homoglyphs and whitespace: normalization is pure Python, so the thread doing it
competes with the event loop for the GIL the whole time.

Each round sends every server, in turn, the same kind of request: a ``/detect/batch`` of
SIGNET_MAX_BATCH_ITEMS items of prose filling SIGNET_MAX_BATCH_CHARS (a different text each
round, so nothing is cached), while a process of its own polls that server's ``/healthz``
every 10 ms. Prints, per interval: the slowest and median /healthz during the batches, the
batch's wall time and the server's CPU time per batch, and their ratios to Python's default
interval (5 ms). Then each server gets ``--clients`` concurrent batches at once (threads
competing for the GIL with one another, where a shorter interval means more switches) and
the same figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil

from harness.services import redis_test_url, running_signet_server

DEFAULT_INTERVAL = 0.005  # sys.getswitchinterval() of a fresh interpreter
KEYS = {
    "default_key_id": "folded",
    "keys": [
        {
            "key_id": "folded",
            "secret": "bench-switch-interval-secret-8a41",
            "normalization": ["nfc", "homoglyphs", "whitespace"],
        }
    ],
}
POLLER = textwrap.dedent(
    """
    import sys, time, httpx
    with httpx.Client(timeout=30) as client, open(sys.argv[2], "w", buffering=1) as out:
        while True:
            start = time.monotonic()
            client.get(sys.argv[1])
            out.write(f"{start:.6f} {time.monotonic() - start:.6f}\\n")
            time.sleep(0.010)
    """
)


def batch(round_index: int) -> bytes:
    from signet.settings import Settings

    settings = Settings()
    per_item = settings.max_batch_chars // settings.max_batch_items
    text = f"Round {round_index}. " + "The river ran past the old mill, and the miller watched it. " * per_item
    items = [{"text": f"{index} {text}"[:per_item]} for index in range(settings.max_batch_items)]
    return json.dumps({"items": items}).encode()


def polled_batches(url: str, bodies: list[bytes], folder: Path) -> tuple[list[float], float]:
    """Sends ``bodies`` at once (one thread each) while /healthz is polled; the polls'
    latencies during them and the wall time they took."""
    polls = folder / f"polls-{uuid.uuid4().hex}.txt"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, f"{url}/healthz", str(polls)])
    try:
        time.sleep(1.0)

        def send(body: bytes) -> None:
            with httpx.Client(timeout=300) as client:
                response = client.post(
                    f"{url}/detect/batch", content=body, headers={"content-type": "application/json"}
                )
            response.raise_for_status()
            assert all(item["status"] == 200 for item in response.json()["results"]), response.text[:500]

        start = time.monotonic()
        with ThreadPoolExecutor(len(bodies)) as pool:
            list(pool.map(send, bodies))
        end = time.monotonic()
        time.sleep(0.1)
    finally:
        poller.terminate()
        poller.wait()
    lines = [line.split() for line in polls.read_text().split("\n")[:-1]]
    during = [
        float(seconds) for began, seconds in lines if float(began) <= end and float(began) + float(seconds) >= start
    ]
    return during, end - start


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(servers: dict[float, tuple[str, psutil.Process]], rounds: int, clients: int, folder: Path) -> dict:
    results: dict[float, dict[str, list[float]]] = {
        interval: {"polls": [], "slowest": [], "wall": [], "cpu": []} for interval in servers
    }
    for round_index in range(rounds):
        bodies = [batch(round_index * clients + client) for client in range(clients)]
        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
        for interval in order:
            url, process = servers[interval]
            cpu_before = cpu_seconds(process)
            polls, wall = polled_batches(url, bodies, folder)
            result = results[interval]
            result["polls"] += polls
            result["slowest"].append(max(polls))
            result["wall"].append(wall)
            result["cpu"].append((cpu_seconds(process) - cpu_before) / clients)
    return results


def report(title: str, results: dict) -> None:
    print(title)
    print(
        f"  {'interval':>9s} {'slowest /healthz':>17s} {'median of rounds':>17s} {'median poll':>12s} "
        f"{'batch wall':>11s} {'ratio':>6s} {'CPU/batch':>10s} {'ratio':>6s}"
    )
    base = results[DEFAULT_INTERVAL] if DEFAULT_INTERVAL in results else next(iter(results.values()))
    base_wall, base_cpu = statistics.median(base["wall"]), statistics.median(base["cpu"])
    for interval, result in results.items():
        wall, cpu = statistics.median(result["wall"]), statistics.median(result["cpu"])
        print(
            f"  {interval * 1e3:7.2f}ms {max(result['slowest']) * 1e3:14.0f} ms "
            f"{statistics.median(result['slowest']) * 1e3:14.0f} ms {statistics.median(result['polls']) * 1e3:9.1f} ms "
            f"{wall:9.3f} s {wall / base_wall:6.3f} {cpu:8.3f} s {cpu / base_cpu:6.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=4, help="concurrent batches in the second part")
    parser.add_argument("--intervals", default="0.005,0.001,0.0005,0.0001", help="seconds, comma-separated")
    arguments = parser.parse_args()
    intervals = [float(value) for value in arguments.intervals.split(",")]

    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        folder = Path(folder)
        keys_file = folder / "bench-keys.json"
        keys_file.write_text(json.dumps(KEYS))
        servers = {}
        for interval in intervals:
            environment = {
                "SIGNET_REDIS_URL": redis_test_url(),
                "SIGNET_REDIS_NAMESPACE": f"signet-bench-{uuid.uuid4().hex[:8]}",
                "SIGNET_DETECT_CACHE_TTL_SECONDS": "0",
                "SIGNET_DETECT_TOKEN_BUDGET": "0",
                "SIGNET_KEYS_FILE": str(keys_file),
                "SIGNET_SWITCH_INTERVAL_SECONDS": str(interval),
            }
            server_folder = folder / f"server-{interval}"
            server_folder.mkdir()
            server = stack.enter_context(running_signet_server(server_folder, **environment))
            servers[interval] = (server.url, psutil.Process(server.process.pid))
        measure(servers, 1, 1, folder)  # warm-up (first use of the tokenizer and the key), not counted
        print(
            f"{len(intervals)} signet serve processes (distributed mode, no engine), {arguments.rounds} rounds "
            "alternating between them; /healthz polled every 10 ms from a process of its own"
        )
        report(
            "one /detect/batch at a time (64 items of normalized prose, 400,000 chars):",
            measure(servers, arguments.rounds, 1, folder),
        )
        report(
            f"{arguments.clients} such batches at once (CPU per batch: the server's CPU / {arguments.clients}):",
            measure(servers, arguments.rounds, arguments.clients, folder),
        )


if __name__ == "__main__":
    main()
