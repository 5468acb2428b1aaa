"""Real services for tests and benchmarks: ``signet serve`` and other ``signet`` processes
with the test keys, free ports, and the test Redis. Plain functions and context managers,
no pytest: tests/conftest.py wraps them in fixtures, bench/ calls them directly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 900  # the first start compiles the model (about 1 minute) after preparing it

# 30 tournament layers, each key 19 digits long: distinctive enough to search logs for.
SYNTHID_TEST_KEYS = [1_000_000_000_000_000_000 + 7_919_000_003 * layer for layer in range(30)]
TEST_KEYS = {
    "fingerprint_secret": "e2e-fingerprint-secret-4c81d9f02b6e57a3",
    "job_signing_secrets": ["e2e-job-signing-secret-7d3b90c1a8e2f4650b"],
    "default_key_id": "main",
    "keys": [
        {"key_id": "main", "secret": "e2e-main-secret-5b1d0c7e93a2"},
        {"key_id": "wide", "secret": "e2e-wide-secret-88f2a1c40d9b", "gamma": 0.5, "delta": 2.5, "context_width": 2},
        # transformers' WatermarkingConfig(seeding_scheme="lefthash") defaults: public, so not in TEST_SECRETS
        {"key_id": "hf", "scheme": "kgw-lefthash"},
        {"key_id": "vllm", "scheme": "gumbel", "key": 7355608191919},
        {
            "key_id": "folded",
            "secret": "e2e-folded-secret-1c9e77ab30f2",
            "normalization": ["nfc", "homoglyphs", "whitespace"],
        },
        {"key_id": "foreign", "secret": "e2e-foreign-secret-d04f6e2a91b7", "tokenizer": "gpt2"},
        # one key of each scheme of issue 18
        {"key_id": "unigram", "scheme": "unigram", "secret": "e2e-unigram-secret-3e7a91c05d24"},
        # transformers' WatermarkingConfig(seeding_scheme="selfhash", context_width=4): public hashing key
        {"key_id": "selfhash", "scheme": "kgw-selfhash", "context_width": 4},
        {"key_id": "synthid", "scheme": "synthid", "keys": SYNTHID_TEST_KEYS},
        {"key_id": "dualkey", "scheme": "gumbel-dual-key", "key": 4920183746519},
    ],
}
TEST_SECRETS = [
    TEST_KEYS["fingerprint_secret"],
    *TEST_KEYS["job_signing_secrets"],
    *(str(key.get("secret", key.get("key"))) for key in TEST_KEYS["keys"] if "secret" in key or "key" in key),
    *(str(key) for key in SYNTHID_TEST_KEYS),
]


def signer_for_test_keys():  # -> signet.queue.jobs.JobSigner
    """The job signer of processes that read TEST_KEYS: what a test's queue or worker needs
    to exchange jobs with them."""
    from signet.queue.jobs import JobSigner

    return JobSigner([secret.encode() for secret in TEST_KEYS["job_signing_secrets"]])


class ServiceStartError(RuntimeError):
    """``signet serve`` exited, or was not ready in time, while starting."""


class RedisMissing(RuntimeError):
    """No Redis answers at the test URL. Tests fail on it (never skip): .ci/run always provides one."""


def redis_test_url() -> str:
    """The Redis the tests use: .ci/run exports SIGNET_TEST_REDIS_URL when it starts its own."""
    return os.environ.get("SIGNET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signet_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "signet", *arguments]


@dataclass
class RunningServer:
    url: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def listening_processes(self) -> list:  # of psutil.Process
        """The processes listening on the port: ``serve`` itself, or its API processes
        (``serve --processes``)."""
        import psutil

        parent = psutil.Process(self.process.pid)
        return [
            process
            for process in [parent, *parent.children()]
            if any(connection.laddr.port == self.port for connection in process.net_connections("tcp"))
        ]

    def wait_until_all_listen(self, processes: int, timeout: float = 120) -> None:
        """Until ``processes`` processes listen: with several, the first /readyz proves only one."""
        deadline = time.monotonic() + timeout
        while len(self.listening_processes()) != processes:
            if time.monotonic() > deadline:
                raise ServiceStartError(f"not {processes} processes listening:\n{self.log()[-3000:]}")
            time.sleep(0.5)


@contextmanager
def signet_process(
    command: str, log_path: Path, prefix: Sequence[str] = (), **environment: str
) -> Iterator[subprocess.Popen]:
    """``signet <command>`` in its own process group (vLLM's engine process included), so
    stopping or killing the group leaves nothing behind (``serve --processes``' API processes
    have groups of their own, and die with their parent). ``prefix`` runs it through another
    command that execs it (``ip netns exec <host>``: harness/netns.py)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*prefix, *signet_command(command)],
            env={**os.environ, **environment},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            signal_group(process.pid, signal.SIGKILL)  # stragglers, so no test leaks an engine
            process.wait()


def cores_per_worker(workers: int) -> list[str]:
    """CPUs of their own for each of ``workers`` engines on this machine, as
    VLLM_CPU_OMP_THREADS_BIND takes them ("0", "1", or "0,1"...). vLLM's automatic binding
    puts every engine on the same cores, and there a replacement worker starting beside a
    busy one starved: its engine's model process got 0.7 s of CPU in its first two minutes
    (2 cores; docs/DEPLOY.md, "CPU workers sharing a node")."""
    cpus = sorted(os.sched_getaffinity(0))
    share = max(1, len(cpus) // workers)
    return [
        ",".join(str(cpu) for cpu in cpus[index * share : (index + 1) * share] or cpus[-1:]) for index in range(workers)
    ]


def keys_environment(folder: Path) -> dict[str, str]:
    keys_file = folder / "keys.json"
    keys_file.write_text(json.dumps(TEST_KEYS))
    # Each server records its generations in a registry of its own, not in the cache
    # directory's, which would carry records from one test run into the next.
    return {
        "SIGNET_KEYS_FILE": str(keys_file),
        "SIGNET_MAX_MODEL_LEN": "2048",
        "SIGNET_PROVENANCE_PATH": str(folder / "registry.sqlite3"),
    }


@contextmanager
def running_signet_server(folder: Path, prefix: Sequence[str] = (), **environment: str) -> Iterator[RunningServer]:
    """``signet serve`` with the test keys, until ready; stopped after. ``prefix`` as for
    ``signet_process`` (``taskset -c 0``: bench/provenance_overhead.py)."""
    port = free_port()
    log_path = folder / "server.log"
    environment = {**keys_environment(folder), "SIGNET_PORT": str(port), **environment}
    with signet_process("serve", log_path, prefix, **environment) as process:
        server = RunningServer(f"http://127.0.0.1:{port}", log_path, process)
        wait_until_ready(server)
        yield server


def signal_group(group_id: int, signal_number: int) -> None:
    try:
        os.killpg(group_id, signal_number)
    except ProcessLookupError:
        pass  # the whole group has exited already


def wait_until_ready(server: RunningServer) -> None:
    """Until GET /readyz answers 200; ServiceStartError if the process exits or time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServiceStartError(f"signet serve exited with {server.process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise ServiceStartError(f"signet serve not ready after {STARTUP_TIMEOUT_S} s:\n{server.log()[-3000:]}")


class RedisServer:
    """A private ``redis-server`` on a free loopback port, which a test may stop and start
    again on the same port (tests/e2e/test_distributed.py stops it; tests/images runs the
    images against it)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(command, cwd=self._folder, stdout=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@contextmanager
def fresh_redis_namespace() -> Iterator[str]:
    """A namespace of its own on the test Redis, its keys deleted after. No Redis raises
    RedisMissing, which fails a test (never skips it): .ci/run always provides one."""
    import redis

    client = redis.Redis.from_url(redis_test_url(), socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as error:
        client.close()
        raise RedisMissing(
            f"no Redis at SIGNET_TEST_REDIS_URL (default redis://127.0.0.1:6379/0): {error!r}"
        ) from error
    name = f"signet-test-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        names = list(client.scan_iter(match=f"{name}:*"))
        if names:
            client.delete(*names)
        client.close()
