"""A load test of POST /detect next to a trivial route (GET /healthz) of the same server.

    .venv/bin/python -m bench.detect_load [--users 16] [--run-time 20] [--rounds 2] [--tokens 500]
    .venv/bin/python -m bench.detect_load --breakdown   # /detect's parts timed in-process instead

Starts one ``signet serve`` API process in distributed mode (SIGNET_REDIS_URL: the local
Redis, SIGNET_TEST_REDIS_URL or 127.0.0.1:6379, a fresh namespace; no worker, which /detect
and /healthz do not need), with one ``kgw`` key and the detection cache off
(SIGNET_DETECT_CACHE_TTL_SECONDS=0), so every /detect tokenizes and scores its text, and the
per-caller detection budget set far above what a run spends (SIGNET_DETECT_TOKEN_BUDGET=10**12:
still checked in Redis on every /detect, never refusing).
Other settings are the defaults: no API keys (development mode on loopback), no rate limits,
log level info.

Then runs locust (bench/detect_locustfile.py) headless on loopback, one process, as many
times as ``--rounds`` asks for each route, alternating (healthz, detect, detect, healthz, ...),
each run ``--users`` users with no think time for ``--run-time`` seconds, statistics reset
once all users are spawned. The texts are ``--tokens``-token windows of the human test
passages (tests/data/human), cut with the served model's tokenizer; every /detect response
must say ``cached: false`` and the window's token count, or it counts as a failure.

Prints requests/s, p50/p99 latency and failures per route, the ratio detect/healthz, the
CPU share (of one core) the server and locust used during each run, and the server's CPU
time per request (its CPU share / requests/s: the capacity ratio if the server alone had the
machine, less sensitive to what else runs on it). Exits non-zero if any request failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

from bench.watermark_overhead import HUMAN_DIR
from harness.services import redis_test_url, running_signet_server

LOCUSTFILE = Path(__file__).resolve().parent / "detect_locustfile.py"
KEYS = {"default_key_id": "main", "keys": [{"key_id": "main", "secret": "bench-detect-load-secret-5e1f"}]}
USERS = {"healthz": "HealthzUser", "detect": "DetectUser"}


def windows(tokens: int) -> list[str]:
    """Consecutive windows of ``tokens`` tokens of the human passages (joined), cut at token boundaries."""
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    corpus = "\n\n".join(path.read_text().strip() for path in sorted(HUMAN_DIR.glob("*.txt")))
    spans = tokenizer(corpus, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = range(0, len(spans) - tokens + 1, tokens)
    return [corpus[spans[start][0] : spans[start + tokens - 1][1]] for start in starts]


def locust_run(
    folder: Path,
    route: str,
    url: str,
    users: int,
    seconds: int,
    server: psutil.Process,
    redis: psutil.Process | None = None,
) -> dict:
    """One headless locust run; CPU sampled for the server, locust and, if given, Redis."""
    prefix = folder / f"{route}-{time.monotonic_ns()}"
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
        "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix), "--reset-stats",
        "--only-summary", "--loglevel", "WARNING", USERS[route],
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locust = psutil.Process(process.pid)
    samples = []  # (wall, server cpu, locust cpu, redis cpu) every 0.5 s while the load runs
    while process.poll() is None:
        try:
            samples.append((time.monotonic(), _cpu(server), _cpu(locust), _cpu(redis) if redis else 0.0))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    output = process.stdout.read()
    # CPU over the steady part: from 3 s in (locust started, users spawned) to the last sample
    steady = [sample for sample in samples if sample[0] >= samples[0][0] + 3] or samples
    (began, server_began, locust_began, redis_began), (ended, server_ended, locust_ended, redis_ended) = (
        steady[0],
        steady[-1],
    )
    with open(f"{prefix}_stats.csv") as handle:
        (row,) = [row for row in csv.DictReader(handle) if row["Name"] != "Aggregated"]
    return {
        "returncode": process.returncode,
        "output": output,
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p99": float(row["99%"]),
        "server_cpu": (server_ended - server_began) / (ended - began),
        "locust_cpu": (locust_ended - locust_began) / (ended - began),
        "redis_cpu": (redis_ended - redis_began) / (ended - began),
    }


def server_environment(keys_file: Path) -> dict[str, str]:
    """A distributed-mode API on the local Redis, in a namespace of its own, that tokenizes
    and scores every /detect: the detection cache off, the per-caller budget on (its Redis
    round trip is part of every /detect) but far above what a run spends."""
    return {
        "SIGNET_REDIS_URL": redis_test_url(),
        "SIGNET_REDIS_NAMESPACE": f"signet-bench-{uuid.uuid4().hex[:8]}",
        "SIGNET_DETECT_CACHE_TTL_SECONDS": "0",
        "SIGNET_DETECT_TOKEN_BUDGET": str(10**12),
        "SIGNET_KEYS_FILE": str(keys_file),
    }


def share_texts(folder: Path, url: str, texts: list[str]) -> list[int]:
    """Write the texts, and the token counts the server reports for them (which every load
    response must repeat), where the locustfile reads them; returns the counts."""
    with httpx.Client(base_url=url, timeout=60) as client:
        counts = [client.post("/detect", json={"text": text}).json()["num_tokens"] for text in texts]
    (folder / "texts.json").write_text(json.dumps(texts))
    (folder / "tokens.json").write_text(json.dumps(counts))
    os.environ["SIGNET_BENCH_TEXTS"] = str(folder / "texts.json")
    os.environ["SIGNET_BENCH_TOKENS"] = str(folder / "tokens.json")
    return counts


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of the process and its live children (the API processes of ``--processes``)."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def breakdown(texts: list[str], calls: int) -> None:
    """Where one /detect's time goes: its parts timed in this process, one thread, no load."""
    import asyncio

    from signet.api.app import create_app
    from signet.api.auth import Caller
    from signet.api.detect.protocol import DetectRequest
    from signet.api.detect.service import detect
    from signet.api.state import ServiceState
    from signet.engine.model_store import resolve_model_dir
    from signet.settings import Settings
    from signet.watermark.normalization import normalize
    from signet.watermark.statistics import p_value, z_score

    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "bench-keys.json"
        keys_file.write_text(json.dumps(KEYS))
        settings = Settings(detect_cache_ttl_seconds=0, keys_file=keys_file, detect_token_budget=10**12)
        model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
        state = ServiceState.load(settings, model_dir, keys_file)
    tokenizer, scheme = state.tokenizer, state.keys.scheme("main")
    normalized = [normalize(text, ()) for text in texts]
    encoded = [tokenizer(text, add_special_tokens=False, return_offsets_mapping=True) for text in texts]
    evidence = [scheme.evidence(item["input_ids"]) for item in encoded]

    def timed(name: str, call) -> None:
        for index in range(len(texts)):  # warm-up
            call(index)
        began = time.perf_counter()
        for index in range(calls):
            call(index % len(texts))
        print(f"  {name:76s} {(time.perf_counter() - began) / calls * 1e6:8.1f} us", flush=True)

    null, caller = scheme.null_distribution, Caller(None)
    parts = {
        "tokenizer(text, return_offsets_mapping=True) (transformers)": lambda index: tokenizer(
            texts[index], add_special_tokens=False, return_offsets_mapping=True
        ),
        "  of which the Rust encode alone (tokenizer._tokenizer.encode)": lambda index: tokenizer._tokenizer.encode(
            texts[index], add_special_tokens=False
        ),
        "token spans mapped back to the input (NormalizedText.source_span per token)": lambda index: [
            normalized[index].source_span(start, end) for start, end in encoded[index]["offset_mapping"]
        ],
        "KGW scoring (scheme.evidence on the ids)": lambda index: scheme.evidence(encoded[index]["input_ids"]),
        "p-value and z-score": lambda index: (p_value(null, evidence[index]), z_score(null, evidence[index])),
        "service.detect(): the whole route body, no HTTP": lambda index: detect(
            state, DetectRequest(text=texts[index]), caller
        ),
    }
    print(f"/detect's parts, in-process, one thread, mean of {calls} calls over the {len(texts)} texts:")
    for name, call in parts.items():
        timed(name, call)

    async def over_asgi() -> None:
        app = create_app(state)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for route in ("healthz", "detect", "healthz", "detect"):
                began = time.perf_counter()
                for index in range(calls):
                    if route == "healthz":
                        response = await client.get("/healthz")
                    else:
                        response = await client.post("/detect", json={"text": texts[index % len(texts)]})
                    response.raise_for_status()
                elapsed = (time.perf_counter() - began) / calls * 1e6
                print(f"  {'in-process ASGI (httpx client included): ' + route:76s} {elapsed:8.1f} us", flush=True)

    asyncio.run(over_asgi())
    asyncio.run(serialization(state, texts, calls))


async def serialization(state, texts: list[str], calls: int, rounds: int = 16) -> None:
    """The /detect routes serialize their model in the detection thread; FastAPI, given the
    model, would validate it again and serialize it on the event loop. Both, alternating, as
    CPU time of this process per request (threads included)."""
    from signet.api.app import create_app
    from signet.api.detect import router

    own = router._serialized
    variants = {"model returned (FastAPI serializes)": lambda response: response, "serialized in the route": own}
    times: dict[str, list[float]] = {name: [] for name in variants}
    app = create_app(state)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for round_index in range(rounds):
                names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
                for name in names:
                    router._serialized = variants[name]
                    began = time.process_time()
                    for index in range(calls):
                        response = await client.post("/detect", json={"text": texts[index % len(texts)]})
                        response.raise_for_status()
                    times[name].append((time.process_time() - began) / calls * 1e6)
    finally:
        router._serialized = own
    ratios = [
        mine / theirs
        for mine, theirs in zip(
            times["serialized in the route"], times["model returned (FastAPI serializes)"], strict=True
        )
    ]
    for name, values in times.items():
        print(f"  {'in-process ASGI /detect, CPU per request, ' + name:76s} {statistics.median(values):8.1f} us")
    print(
        f"  serialized in the route / model returned: median of {rounds} paired rounds {statistics.median(ratios):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--run-time", type=int, default=20, help="seconds per locust run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per route, alternating")
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument(
        "--breakdown", action="store_true", help="instead of the load test: time /detect's parts in this process"
    )
    arguments = parser.parse_args()

    texts = windows(arguments.tokens)
    if arguments.breakdown:
        breakdown(texts, calls=300)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        keys_file = folder / "bench-keys.json"
        keys_file.write_text(json.dumps(KEYS))
        with running_signet_server(folder, **server_environment(keys_file)) as server:
            counts = share_texts(folder, server.url, texts)
            process = psutil.Process(server.process.pid)
            locust_run(folder, "detect", server.url, arguments.users, 6, process)  # warm-up, not counted
            runs: dict[str, list[dict]] = {route: [] for route in USERS}
            for index in range(arguments.rounds):
                order = list(USERS) if index % 2 == 0 else list(reversed(USERS))
                for route in order:
                    run = locust_run(folder, route, server.url, arguments.users, arguments.run_time, process)
                    runs[route].append(run)
                    print(
                        f"  round {index + 1} {route:8s} {run['rps']:8.1f} req/s  p50 {run['p50']:6.1f} ms  "
                        f"p99 {run['p99']:6.1f} ms  failures {run['failures']}/{run['requests']}  "
                        f"CPU server {run['server_cpu']:.0%} locust {run['locust_cpu']:.0%}  "
                        f"server CPU/request {run['server_cpu'] / run['rps'] * 1e3:.3f} ms",
                        flush=True,
                    )

    print(
        f"{arguments.rounds} alternating rounds per route, locust (1 process, FastHttpUser) x {arguments.users} users, "
        f"no think time, {arguments.run_time} s each; {len(texts)} texts of {min(counts)}-{max(counts)} tokens "
        f"(server's num_tokens), detection cache off"
    )
    print(
        f"{'route':8s} {'req/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'failures':>14s} {'server CPU':>10s} "
        f"{'locust CPU':>10s} {'server CPU ms/request':>21s}"
    )
    cost = {route: statistics.median(run["server_cpu"] / run["rps"] for run in runs[route]) for route in runs}
    for route, route_runs in runs.items():
        print(
            f"{route:8s} {statistics.median(run['rps'] for run in route_runs):8.1f} "
            f"{statistics.median(run['p50'] for run in route_runs):7.1f} "
            f"{max(run['p99'] for run in route_runs):7.1f} "
            f"{sum(run['failures'] for run in route_runs):6d}/{sum(run['requests'] for run in route_runs):7d} "
            f"{statistics.median(run['server_cpu'] for run in route_runs):10.0%} "
            f"{statistics.median(run['locust_cpu'] for run in route_runs):10.0%} "
            f"{cost[route] * 1e3:21.3f}"
        )
    ratios = [detect["rps"] / healthz["rps"] for detect, healthz in zip(runs["detect"], runs["healthz"], strict=True)]
    print(
        f"ratio detect/healthz: requests/s median {statistics.median(ratios):.3f} (per round "
        f"{[round(ratio, 3) for ratio in ratios]}); server CPU per request {cost['healthz'] / cost['detect']:.3f}"
    )
    exit_on_failures([run for route_runs in runs.values() for run in route_runs])


def per_core_table(label: str, runs: dict[object, list[dict]], bound: float) -> None:
    """Per variant, medians over its runs: requests/s, p50, the worst p99, server cores, and
    requests/s per core of server CPU, also as a share of ``bound`` (texts per CPU-second)."""
    header = ["req/s", "p50 ms", "p99 ms", "cores", "per core", "/ tokenizer"]
    print(f"{label:>9s} " + " ".join(f"{name:>11s}" for name in header))
    for variant, variant_runs in runs.items():
        per_core = statistics.median(run["rps"] / run["server_cpu"] for run in variant_runs)
        values = [
            f"{statistics.median(run['rps'] for run in variant_runs):.1f}",
            f"{statistics.median(run['p50'] for run in variant_runs):.1f}",
            f"{max(run['p99'] for run in variant_runs):.1f}",
            f"{statistics.median(run['server_cpu'] for run in variant_runs):.2f}",
            f"{per_core:.0f}",
            f"{per_core / bound:.2f}",
        ]
        print(f"{variant!s:>9s} " + " ".join(f"{value:>11s}" for value in values))


def exit_on_failures(runs: list[dict]) -> None:
    """Exit non-zero, with locust's output, if any run had a failed request or locust failed."""
    failed = [run for run in runs if run["failures"] or run["returncode"]]
    if failed:
        for run in failed:
            print(run["output"][-3000:], file=sys.stderr)
        sys.exit(
            f"FAILED: {sum(run['failures'] for run in failed)} failed requests (locust exit codes "
            f"{[run['returncode'] for run in failed]})"
        )


if __name__ == "__main__":
    main()
