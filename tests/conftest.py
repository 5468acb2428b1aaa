"""Shared fixtures. ``signet_server`` runs the real ``signet serve`` (real vLLM engine,
embedded model) once per test session; tests talk to it over HTTP. The plain helpers behind
them (processes, ports, the test keys, the test Redis) are in harness/services.py, which
bench/ uses too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from harness.services import (
    TEST_KEYS,
    RedisMissing,
    RunningServer,
    ServiceStartError,
    free_port,
    fresh_redis_namespace,
    redis_test_url,
    running_signet_server,
)

DATA_DIR = Path(__file__).parent / "data"


@contextmanager
def _failing_on_missing_services() -> Iterator[None]:
    """harness.services' start-up errors as a plain test failure: their message, no traceback."""
    try:
        yield
    except (RedisMissing, ServiceStartError) as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def signet_server(tmp_path_factory) -> Iterator[RunningServer]:
    # Rare words are off by default; on here, so their recording and search are served and checked
    # end to end (tests/e2e/test_provenance.py, tests/ui/test_ui.py).
    folder = tmp_path_factory.mktemp("server")
    with _failing_on_missing_services(), running_signet_server(folder, SIGNET_PROVENANCE_RARE_WORDS="true") as server:
        yield server


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
def detection_state(test_keys_file, tmp_path_factory):
    """The service's state with the real tokenizer and no engine: what a detection-only
    process holds. In-process tests of /detect use it without starting vLLM."""
    from signet.api.state import ServiceState
    from signet.engine.model_store import prepare_embedded_model
    from signet.settings import Settings

    # No detection budget: it would be shared by every test of the session (the false-positive
    # corpus alone is about 1M scored tokens). tests/api/test_detection_budget.py tests it.
    # A registry of its own: the cache directory's would carry records between test runs.
    registry = tmp_path_factory.mktemp("registry") / "registry.sqlite3"
    settings = Settings(keys_file=test_keys_file, detect_token_budget=0, provenance_path=registry)
    return ServiceState.load(settings, prepare_embedded_model(settings.resolved_cache_dir), test_keys_file)


@pytest.fixture(scope="session")
def detect_client(detection_state):
    from fastapi.testclient import TestClient

    from signet.api.app import create_app

    with TestClient(create_app(detection_state)) as session:
        yield session


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A namespace of its own on the test Redis, its keys deleted after. No Redis is an error
    of the test (harness.services.RedisMissing), never a skip: .ci/run always provides one."""
    with _failing_on_missing_services(), fresh_redis_namespace() as name:
        yield name


@pytest.fixture(scope="module")
def module_redis_namespace() -> Iterator[str]:
    with _failing_on_missing_services(), fresh_redis_namespace() as name:
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
