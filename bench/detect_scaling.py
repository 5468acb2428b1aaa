"""POST /detect with one and with two API processes on one port, next to a tokenizer-only loop.

    PYTHONPATH=. .venv/bin/python -m bench.detect_scaling [--users 16] [--run-time 20] [--rounds 2] [--tokens 500]

The bound: the tokenizer call /detect makes (``tokenizer(text, add_special_tokens=False)``,
transformers' fast tokenizer) in a loop over the same texts, one thread in this process, as
texts per CPU-second. The Rust encode alone is printed beside it.

The load: ``signet serve`` in distributed mode (the local Redis, a fresh namespace, no worker),
one ``kgw`` key, the detection cache off, the detection budget far above what a run spends
(as bench/detect_load.py sets them), with SIGNET_API_PROCESSES 1 and 2 in turn (1, 2, 2,
1, ... for ``--rounds``), each driven by locust exactly as bench/detect_load.py drives it (one
locust process, ``--users`` users without think time, the 500-token windows of the human test
passages, every response checked). CPU is sampled for the server (the parent and its API
processes) and for locust.

Reports, per process count: requests/s, p50/p99, the server's CPU (cores) and locust's, and
per-core throughput (requests/s divided by the server's cores). Then:

* per-core throughput / the tokenizer loop's texts per CPU-second (goal >= 0.70);
* requests/s with 2 processes / with 1 (goal >= 1.7), the same per server core, and the
  ceiling: on this 2-core machine locust and Redis run beside the server, so 2 processes can
  have at most the cores less their share (Redis is found by its port and sampled too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from bench.detect_load import KEYS, exit_on_failures, locust_run, server_environment, share_texts, windows
from harness.services import redis_test_url, running_signet_server


def tokenizer_rates(texts: list[str], seconds: float = 5.0) -> dict[str, float]:
    """Texts per CPU-second for /detect's tokenizer call and for the Rust encode alone."""
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    calls = {
        "tokenizer": lambda text: tokenizer(text, add_special_tokens=False),
        "rust_encode": lambda text: tokenizer._tokenizer.encode(text, add_special_tokens=False),
    }
    rates = {}
    for name, call in calls.items():
        for text in texts:
            call(text)  # warm-up
        done, began = 0, time.process_time()
        while time.process_time() - began < seconds:
            for text in texts:
                call(text)
            done += len(texts)
        rates[name] = done / (time.process_time() - began)
    return rates


def run_load(folder: Path, processes: int, users: int, seconds: int, rounds_index: int) -> dict:
    environment = {**server_environment(folder / "bench-keys.json"), "SIGNET_API_PROCESSES": str(processes)}
    run_folder = folder / f"run-{rounds_index}-{processes}"
    run_folder.mkdir()
    with running_signet_server(run_folder, **environment) as server:
        server.wait_until_all_listen(processes)
        server_process = psutil.Process(server.process.pid)
        locust_run(folder, "detect", server.url, users, 6, server_process)  # warm-up, not counted
        return locust_run(folder, "detect", server.url, users, seconds, server_process, redis_process())


def redis_process() -> psutil.Process | None:
    """The Redis server the runs use (on this machine, it shares the cores)."""
    port = int(redis_test_url().rsplit(":", 1)[1].split("/")[0])
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--run-time", type=int, default=20, help="seconds per locust run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per process count, alternating")
    parser.add_argument("--tokens", type=int, default=500)
    arguments = parser.parse_args()

    texts = windows(arguments.tokens)
    rates = tokenizer_rates(texts)
    print(
        f"tokenizer loop: {rates['tokenizer']:.0f} texts per CPU-second "
        f"({1e6 / rates['tokenizer']:.0f} us each; Rust encode alone {1e6 / rates['rust_encode']:.0f} us)",
        flush=True,
    )
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "bench-keys.json").write_text(json.dumps(KEYS))
        probe = folder / "probe"
        probe.mkdir()
        with running_signet_server(probe, **server_environment(folder / "bench-keys.json")) as server:
            counts = share_texts(folder, server.url, texts)
        for index in range(arguments.rounds):
            for processes in (1, 2) if index % 2 == 0 else (2, 1):
                run = run_load(folder, processes, arguments.users, arguments.run_time, index)
                runs[processes].append(run)
                print(
                    f"  round {index + 1} processes {processes}: {run['rps']:7.1f} req/s  p50 {run['p50']:5.1f} ms  "
                    f"p99 {run['p99']:5.1f} ms  failures {run['failures']}/{run['requests']}  "
                    f"CPU server {run['server_cpu']:.2f} locust {run['locust_cpu']:.2f} "
                    f"Redis {run['redis_cpu']:.2f} cores  "
                    f"per core {run['rps'] / run['server_cpu']:.0f} req/s",
                    flush=True,
                )

    def median(processes: int, field) -> float:
        return statistics.median(field(run) for run in runs[processes])

    print(
        f"\n{arguments.rounds} rounds (1, 2, 2, 1, ...), locust (1 process, FastHttpUser) x {arguments.users} users, "
        f"{arguments.run_time} s each; {len(texts)} texts of {min(counts)}-{max(counts)} tokens, detection cache off"
    )
    print(
        f"{'processes':>9s} {'req/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'server cores':>12s} {'locust cores':>12s} "
        f"{'Redis cores':>11s} {'req/s per core':>14s} {'per core / tokenizer':>20s}"
    )
    for processes in (1, 2):
        per_core = median(processes, lambda run: run["rps"] / run["server_cpu"])
        rps, p50 = median(processes, lambda run: run["rps"]), median(processes, lambda run: run["p50"])
        p99 = max(run["p99"] for run in runs[processes])
        server = median(processes, lambda run: run["server_cpu"])
        locust = median(processes, lambda run: run["locust_cpu"])
        redis = median(processes, lambda run: run["redis_cpu"])
        print(
            f"{processes:9d} {rps:8.1f} {p50:7.1f} {p99:7.1f} {server:12.2f} {locust:12.2f} {redis:11.2f} "
            f"{per_core:14.0f} {per_core / rates['tokenizer']:20.2f}"
        )
    scaling = [two["rps"] / one["rps"] for one, two in zip(runs[1], runs[2], strict=True)]
    # What the server could have had with 2 processes: the cores less locust's and Redis's share,
    # against what one process used.
    ceiling = [
        min(2.0, psutil.cpu_count() - two["locust_cpu"] - two["redis_cpu"]) / one["server_cpu"]
        for one, two in zip(runs[1], runs[2], strict=True)
    ]
    per_core = [
        (two["rps"] / two["server_cpu"]) / (one["rps"] / one["server_cpu"])
        for one, two in zip(runs[1], runs[2], strict=True)
    ]
    print(
        f"2 processes / 1: requests/s {statistics.median(scaling):.2f} (per round {[round(r, 2) for r in scaling]}); "
        f"per server core {statistics.median(per_core):.2f}; the most 2 could gain with locust's and Redis's CPU "
        f"taken out: {statistics.median(ceiling):.2f}x"
    )
    exit_on_failures([run for process_runs in runs.values() for run in process_runs])


if __name__ == "__main__":
    main()
