"""Shared fixtures. ``signet_server`` runs the real ``signet serve`` (real vLLM engine,
embedded model) once per test session; tests talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

DATA_DIR = Path(__file__).parent / "data"
STARTUP_TIMEOUT_S = 900  # the first start compiles the model (about 1 minute) after preparing it

TEST_KEYS = {
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
    ],
}
TEST_SECRETS = [str(key.get("secret", key.get("key"))) for key in TEST_KEYS["keys"] if "secret" in key or "key" in key]


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


@contextmanager
def signet_process(command: str, log_path: Path, **environment: str) -> Iterator[subprocess.Popen]:
    """``signet <command>`` in its own process group (vLLM's engine process included), so
    stopping or killing the group leaves nothing behind."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            signet_command(command),
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


def keys_environment(folder: Path) -> dict[str, str]:
    keys_file = folder / "keys.json"
    keys_file.write_text(json.dumps(TEST_KEYS))
    return {"SIGNET_KEYS_FILE": str(keys_file), "SIGNET_MAX_MODEL_LEN": "2048"}


@contextmanager
def running_signet_server(folder: Path, **environment: str) -> Iterator[RunningServer]:
    """``signet serve`` with the test keys, until ready; stopped after."""
    port = free_port()
    log_path = folder / "server.log"
    environment = {**keys_environment(folder), "SIGNET_PORT": str(port), **environment}
    with signet_process("serve", log_path, **environment) as process:
        server = RunningServer(f"http://127.0.0.1:{port}", log_path, process)
        _wait_until_ready(server)
        yield server


def signal_group(group_id: int, signal_number: int) -> None:
    try:
        os.killpg(group_id, signal_number)
    except ProcessLookupError:
        pass  # the whole group has exited already


@pytest.fixture(scope="session")
def signet_server(tmp_path_factory) -> Iterator[RunningServer]:
    with running_signet_server(tmp_path_factory.mktemp("server")) as server:
        yield server


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"signet serve exited with {server.process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"signet serve not ready after {STARTUP_TIMEOUT_S} s:\n{server.log()[-3000:]}")


@pytest.fixture(scope="session")
def client(signet_server) -> httpx.Client:
    with httpx.Client(base_url=signet_server.url, timeout=300) as session:
        yield session


@pytest.fixture(scope="session")
def human_passages() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((DATA_DIR / "human").glob("*.txt"))}


@pytest.fixture(scope="session")
def test_keys_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps(TEST_KEYS))
    return path


@pytest.fixture(scope="session")
def detection_state(test_keys_file):
    """The service's state with the real tokenizer and no engine: what a detection-only
    process holds. In-process tests of /detect use it without starting vLLM."""
    from signet.api.state import ServiceState
    from signet.engine.model_store import prepare_embedded_model
    from signet.settings import Settings

    settings = Settings(keys_file=test_keys_file)
    return ServiceState.load(settings, prepare_embedded_model(settings.resolved_cache_dir), test_keys_file)


@pytest.fixture(scope="session")
def detect_client(detection_state):
    from fastapi.testclient import TestClient

    from signet.api.app import create_app

    with TestClient(create_app(detection_state)) as session:
        yield session


@contextmanager
def fresh_redis_namespace() -> Iterator[str]:
    """A namespace of its own on the test Redis, its keys deleted after. No Redis fails the
    test (never skips it): .ci/run always provides one."""
    import uuid

    import redis

    client = redis.Redis.from_url(redis_test_url(), socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"no Redis at SIGNET_TEST_REDIS_URL (default redis://127.0.0.1:6379/0): {error!r}")
    name = f"signet-test-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        names = list(client.scan_iter(match=f"{name}:*"))
        if names:
            client.delete(*names)
        client.close()


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    with fresh_redis_namespace() as name:
        yield name


@pytest.fixture(scope="module")
def module_redis_namespace() -> Iterator[str]:
    with fresh_redis_namespace() as name:
        yield name


@pytest.fixture
def redis_link(redis_namespace):
    """A RedisLink to the test Redis under a namespace of its own."""
    import asyncio

    from signet.redis_link import RedisLink

    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=2.0)
    yield link
    asyncio.run(link.aclose())


@pytest.fixture
def unreachable_redis_link():
    """A RedisLink to a port nothing listens on: connections are refused at once."""
    import asyncio

    from signet.redis_link import RedisLink

    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", "signet-test-unreachable", timeout_seconds=0.5)
    yield link
    asyncio.run(link.aclose())
