"""The floor under POST /detect's throughput: a bare ASGI app on uvicorn, next to the tokenizer loop.

    PYTHONPATH=. .venv/bin/python -m bench.detect_floor [--placements default,2,loop] [--rounds 2] [--run-time 12]

Issue 20 asks for /detect's requests/s per core of server CPU to reach 70% of a tokenizer-only
loop on the same texts. This measures what any Python ASGI server on this stack can reach:
bench/bare_detect_app.py on uvicorn (httptools, asyncio; one process), which parses the body and
tokenizes the text exactly as /detect does and answers the count, with no routing, validation,
authentication, budget, scoring, metrics or logs. ``--placements`` says where it tokenizes: in
anyio's default thread pool (``default``, 40 threads, what a plain ``def`` FastAPI route gets),
in at most N threads (an integer), or on the event loop (``loop``, which the service never
does: a long text would stall every other request). Each placement runs in turn, the order
reversed every other round, driven by locust exactly as bench/detect_load.py drives /detect.

Prints requests/s per core of server CPU for each, and its share of the tokenizer loop's texts
per CPU-second (bench/detect_scaling.py's bound), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.detect_load import exit_on_failures, locust_run, per_core_table, share_texts, windows
from bench.detect_scaling import tokenizer_rates
from harness.services import free_port


def bare_server(port: int, placement: str) -> subprocess.Popen:
    uvicorn = Path(sys.executable).with_name("uvicorn")
    command = [str(uvicorn), "bench.bare_detect_app:app", "--port", str(port), "--http", "httptools"]
    command += ["--loop", "asyncio", "--no-access-log", "--log-level", "warning"]
    environment = {**os.environ, "BARE_DETECT_THREADS": placement}
    server = subprocess.Popen(command, env=environment)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the bare app did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--placements", default="default,2,loop")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--run-time", type=int, default=12, help="seconds per locust run")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    placements = arguments.placements.split(",")

    texts = windows(500)
    bound = tokenizer_rates(texts)["tokenizer"]
    runs: dict[str, list[dict]] = {placement: [] for placement in placements}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for index in range(arguments.rounds):
            for placement in placements if index % 2 == 0 else list(reversed(placements)):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                server = bare_server(port, placement)
                try:
                    if not (folder / "texts.json").exists():
                        share_texts(folder, url, texts)
                    process = psutil.Process(server.pid)
                    locust_run(folder, "detect", url, arguments.users, 4, process)  # warm-up, not counted
                    run = locust_run(folder, "detect", url, arguments.users, arguments.run_time, process)
                finally:
                    server.terminate()
                    server.wait()
                runs[placement].append(run)
                print(
                    f"  round {index + 1} {placement:>8s}: {run['rps']:7.1f} req/s  CPU {run['server_cpu']:.2f} cores  "
                    f"per core {run['rps'] / run['server_cpu']:.0f} req/s  locust {run['locust_cpu']:.2f} cores  "
                    f"failures {run['failures']}/{run['requests']}",
                    flush=True,
                )

    print(f"\ntokenizer loop: {bound:.0f} texts per CPU-second; bare app, locust x {arguments.users} users")
    per_core_table("placement", runs, bound)
    exit_on_failures([run for placement_runs in runs.values() for run in placement_runs])


if __name__ == "__main__":
    main()
