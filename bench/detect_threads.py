"""POST /detect with each width of the detection thread pool (SIGNET_DETECT_THREADS), side by side.

    PYTHONPATH=. .venv/bin/python -m bench.detect_threads [--threads 40,4,3,2] [--rounds 2] [--run-time 12]

One API process per run, set up as bench/detect_load.py sets it (distributed mode on the local
Redis, one ``kgw`` key, the detection cache off, the budget checked but never refusing), with
SIGNET_DETECT_THREADS at each value of ``--threads`` in turn (the order reversed every other
round), driven by locust as bench/detect_load.py drives it (``--users`` users without think
time, the 500-token windows of the human test passages, every response checked).

``--redis-delay-ms D`` puts Redis behind harness/tcp_proxy.py's proxy process, which holds
each chunk D ms in each direction, as a Redis across a network would: the budget's two round
trips of every /detect then hold a detection thread for 2 x 2 x D ms more. The proxy's own CPU
is not the server's and is not counted in it.

Prints, per width: requests/s, p50/p99, the server's CPU (cores) and requests/s per core of
server CPU, also as a share of the tokenizer-only loop (bench/detect_scaling.py's bound).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench.detect_load import (
    KEYS,
    exit_on_failures,
    locust_run,
    per_core_table,
    server_environment,
    share_texts,
    windows,
)
from bench.detect_scaling import tokenizer_rates
from harness.services import running_signet_server
from harness.tcp_proxy import ProxyProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="40,4,3,2", help="comma-separated SIGNET_DETECT_THREADS values")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--run-time", type=int, default=12, help="seconds per locust run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis-delay-ms", type=float, default=0.0, help="each way, through a TCP proxy")
    arguments = parser.parse_args()
    widths = [int(value) for value in arguments.threads.split(",")]

    texts = windows(500)
    bound = tokenizer_rates(texts)["tokenizer"]
    runs: dict[int, list[dict]] = {width: [] for width in widths}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as proxies:
        folder = Path(folder)
        (folder / "bench-keys.json").write_text(json.dumps(KEYS))
        environment = server_environment(folder / "bench-keys.json")
        if arguments.redis_delay_ms:
            redis = urlsplit(environment["SIGNET_REDIS_URL"])
            proxy = proxies.enter_context(ProxyProcess(redis.hostname, redis.port or 6379, (), folder / "proxy.log"))
            proxy.delay = arguments.redis_delay_ms / 1000
            environment["SIGNET_REDIS_URL"] = proxy.url(environment["SIGNET_REDIS_URL"])
        for index in range(arguments.rounds):
            for width in widths if index % 2 == 0 else list(reversed(widths)):
                run_folder = folder / f"run-{index}-{width}"
                run_folder.mkdir()
                with running_signet_server(run_folder, **environment, SIGNET_DETECT_THREADS=str(width)) as server:
                    if not (folder / "texts.json").exists():
                        share_texts(folder, server.url, texts)
                    process = psutil.Process(server.process.pid)
                    locust_run(folder, "detect", server.url, arguments.users, 4, process)  # warm-up, not counted
                    run = locust_run(folder, "detect", server.url, arguments.users, arguments.run_time, process)
                runs[width].append(run)
                print(
                    f"  round {index + 1} threads {width:3d}: {run['rps']:7.1f} req/s  p50 {run['p50']:5.1f} ms  "
                    f"p99 {run['p99']:5.1f} ms  CPU {run['server_cpu']:.2f} cores  "
                    f"per core {run['rps'] / run['server_cpu']:.0f} req/s  "
                    f"failures {run['failures']}/{run['requests']}",
                    flush=True,
                )

    print(
        f"\ntokenizer loop: {bound:.0f} texts per CPU-second; {arguments.rounds} rounds, locust x {arguments.users} "
        f"users, {arguments.run_time} s each; Redis delayed {arguments.redis_delay_ms:g} ms each way"
    )
    per_core_table("threads", runs, bound)
    exit_on_failures([run for width_runs in runs.values() for run in width_runs])


if __name__ == "__main__":
    main()
