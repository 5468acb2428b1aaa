"""Signet against a protected Redis: a redis-server of the test's own that speaks TLS only,
with certificates ``openssl`` makes here (a CA, a server certificate for 127.0.0.1, and an
unrelated CA), and the ACL users of k8s/base/secrets/redis-users.example.acl, the rules
docs/DEPLOY.md quotes. The API's queue and a worker (stand-in handlers, as elsewhere in
tests/redis) each connect as their own user; every command they send must be allowed, and
what their roles do not need must be refused."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.redis_servers import Certificates, make_certificates, running_redis
from harness.services import signer_for_test_keys
from signet.cache.detection import RedisDetectionCache
from signet.cache.rate_limit import RedisRateLimiter
from signet.cli import StartupError, _load_settings
from signet.queue.consumer import JobWorker, PiecePublisher
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.queue.stats import read_stats
from signet.redis_link import RedisCredentials, RedisLink
from signet.settings import Settings
from tests.redis.conftest import worker_options
from tests.redis.test_job_queue import depth_is, wait_until

ROOT = Path(__file__).resolve().parents[2]
ACL_EXAMPLE = ROOT / "k8s/base/secrets/redis-users.example.acl"
NAMESPACE = "signet"  # the namespace the example's patterns are written for
PASSWORDS = {user: secrets.token_hex(16) for user in ("signet-api", "signet-worker", "signet-keda")}


def acl_file(folder: Path) -> Path:
    """The example with each placeholder replaced by the SHA-256 of its user's test password;
    every rule as the example has it."""
    text = ACL_EXAMPLE.read_text()
    for user, password in PASSWORDS.items():
        placeholder = f"#REPLACE-ME-sha256-of-the-{user.removeprefix('signet-')}-password"
        assert placeholder in text
        text = text.replace(placeholder, "#" + hashlib.sha256(password.encode()).hexdigest())
    assert "REPLACE-ME" not in text
    path = folder / "users.acl"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secured_port(tmp_path_factory, certificates) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("secured-redis")
    with running_redis(folder, "--aclfile", str(acl_file(folder)), tls=certificates) as port:
        yield port


def settings_of(user: str, port: int, certificates: Certificates, folder: Path, **changes) -> Settings:
    """A process's settings for ``user``: the password in a file, as a Kubernetes Secret mounts it."""
    password_file = folder / f"{user}.password"
    password_file.write_text(PASSWORDS[user] + "\n")
    fields = {
        "redis_url": f"rediss://127.0.0.1:{port}/0",
        "redis_namespace": NAMESPACE,
        "redis_timeout_seconds": 2.0,
        "redis_ca_file": certificates.ca,
        "redis_username": user,
        "redis_password_file": password_file,
    }
    return Settings(**{**fields, **changes})


@pytest_asyncio.fixture
async def link_as(secured_port, certificates, tmp_path) -> AsyncIterator[Callable[..., RedisLink]]:
    """Makes RedisLinks to the secured Redis as a user (settings changed by keyword); closed after."""
    links: list[RedisLink] = []

    def make(user: str, **changes) -> RedisLink:
        links.append(RedisLink.from_settings(settings_of(user, secured_port, certificates, tmp_path, **changes)))
        return links[-1]

    yield make
    for link in links:
        await link.aclose()


@pytest.mark.asyncio
async def test_api_and_worker_work_over_tls_each_as_its_own_acl_user(link_as, caplog):
    api, worker_link = link_as("signet-api"), link_as("signet-worker")
    queue = JobQueue(api, max_jobs=10, retry_after_seconds=2, signer=signer_for_test_keys())
    publisher = PiecePublisher(worker_link)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def echo(job: Job) -> dict:
        return {"echo": job.payload}

    async def pieces(job: Job) -> dict:
        for n in range(3):
            await publisher.publish(job, "attempt-1", n + 1, {"n": n})
        return {"pieces": 3}

    async def hang(job: Job) -> dict:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    handlers = {"echo": echo, "pieces": pieces, "hang": hang}
    worker = JobWorker(worker_link, handlers, worker_options(), signer=signer_for_test_keys())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        with caplog.at_level(logging.INFO):
            await asyncio.sleep(0.2)  # the group exists
            # A job, a streamed job and a cancelled one, end to end.
            assert await queue.run("echo", {"n": 1}, 10) == {"echo": {"n": 1}}
            assert [piece async for piece in await queue.stream("pieces", {}, 10)] == [{"n": 0}, {"n": 1}, {"n": 2}]
            caller = asyncio.create_task(queue.run("hang", {}, 30))
            await asyncio.wait_for(started.wait(), 10)
            caller.cancel()
            await asyncio.wait_for(cancelled.wait(), 10)
            await wait_until(depth_is(queue, 0))
            # An unsigned job the API user can write (it adds jobs) is dead-lettered by the worker user.
            await api.async_client.xadd(queue.keys.stream, {"request_id": "forged", "kind": "echo", "payload": "{}"})
            await wait_until(depth_is(queue, 0))
            assert worker.counters.dead_lettered == 1
            # What the worker runs on timers, run now: take-over, deliveries, retention, heartbeat.
            await worker._reclaim()
            await worker._deliveries(b"0-1")
            await worker._expire()
            await worker._heartbeat()
            # The API's /readyz and /metrics reads.
            assert await api.ping() and await queue.workers_alive(60) == 1
            assert (await read_stats(queue, 60)).workers_idle == 1
            # The /detect cache and the rate limits (the synchronous client, scripts with TIME).
            cache = RedisDetectionCache(api, ttl_seconds=60)
            cache.put("a-digest", b"a verdict")
            assert cache.get("a-digest") == b"a verdict"
            limiter = RedisRateLimiter(api, per_minute=60, burst=2)
            assert [limiter.acquire("caller").allowed for _ in range(3)] == [True, True, False]
            budget = RedisRateLimiter(api, per_minute=600, burst=100, prefix="detect-budget")
            assert budget.acquire("tenant", cost=100).allowed and not budget.check("tenant", cost=1).allowed
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await queue.aclose()
    assert worker.counters.completed == 2 and worker.counters.dead_lettered == 1
    # A refused command in a worker's loops is logged and retried, not raised: none may be.
    troubles = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "moved to" not in r.getMessage()
    ]
    assert troubles == []


def _client(port: int, certificates: Certificates, user: str | None) -> redis.Redis:
    credentials = {} if user is None else {"username": user, "password": PASSWORDS[user]}
    return redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certificates.ca), socket_timeout=2,
        retry=Retry(NoBackoff(), 0), **credentials,
    )  # fmt: skip


# What each role never does. Keys are the namespace's unless the case says otherwise.
API_REFUSED = {
    "take jobs": lambda c: c.xreadgroup("signet:workers", "thief", {"signet:jobs": ">"}, count=1),
    "read queued prompts": lambda c: c.xrange("signet:jobs"),
    "read queued prompts by XREAD": lambda c: c.xread({"signet:jobs": "0-0"}, count=1),
    "acknowledge jobs": lambda c: c.xack("signet:jobs", "signet:workers", "0-1"),
    "take over jobs": lambda c: c.xautoclaim("signet:jobs", "signet:workers", "thief", 0),
    "delete jobs": lambda c: c.xdel("signet:jobs", "0-1"),
    "trim the stream": lambda c: c.xtrim("signet:jobs", maxlen=0),
    "recreate the group": lambda c: c.xgroup_create("signet:jobs", "signet:other", mkstream=True),
    "write an outcome": lambda c: c.set("signet:result:r1", "forged"),
    "push a reply": lambda c: c.rpush("signet:reply:r1", "forged"),
    "write a piece": lambda c: c.xadd("signet:deltas:r1", {"piece": "forged"}),
    "read dead letters": lambda c: c.xrange("signet:jobs:dead"),
    "fake a heartbeat": lambda c: c.hset("signet:worker:w9", "running", 0),
}
WORKER_REFUSED = {
    "cancel a job": lambda c: c.set("signet:cancelled:r1", 1),
    "publish a cancellation": lambda c: c.publish("signet:cancel", "r1"),
    "take a caller's reply": lambda c: c.blpop(["signet:reply:r1"], timeout=0.01),
    "read an outcome": lambda c: c.get("signet:result:r1"),
    "forge a /detect verdict": lambda c: c.set("signet:detect:some-digest", "not_watermarked"),
    "reset a rate limit": lambda c: c.delete("signet:rate:caller"),
    "fill a tenant's share": lambda c: c.zadd("signet:tenant:t1:jobs", {"r1": 1}),
    "queue through the API's script keys": lambda c: c.zcard("signet:tenant:t1:jobs"),
}
BOTH_REFUSED = {
    "FLUSHALL": lambda c: c.flushall(),
    "FLUSHDB": lambda c: c.flushdb(),
    "CONFIG GET": lambda c: c.config_get("*"),
    "CONFIG SET": lambda c: c.config_set("appendonly", "no"),
    "KEYS": lambda c: c.keys("*"),
    "SCAN": lambda c: c.scan(0),
    "ACL LIST": lambda c: c.acl_list(),
    "EVAL": lambda c: c.eval("return 1", 0),
    "SCRIPT FLUSH": lambda c: c.script_flush(),
    "CLIENT LIST": lambda c: c.client_list(),
    "SHUTDOWN": lambda c: c.execute_command("SHUTDOWN", "NOSAVE"),
    "a key outside the namespace": lambda c: c.set("other:jobs", 1),
    "another namespace's stream": lambda c: c.xadd("signet-other:jobs", {"x": 1}),
    "a channel outside the namespace": lambda c: c.publish("other:cancel", "r1"),
}


@pytest.mark.parametrize(
    "user, attempt",
    [("signet-api", case) for case in (*API_REFUSED, *BOTH_REFUSED)]
    + [("signet-worker", case) for case in (*WORKER_REFUSED, *BOTH_REFUSED)],
)
def test_each_user_is_refused_what_its_role_does_not_do(secured_port, certificates, user, attempt):
    cases = {**BOTH_REFUSED, **(API_REFUSED if user == "signet-api" else WORKER_REFUSED)}
    with _client(secured_port, certificates, user) as client:
        assert client.ping()  # the user works: the refusal below is the rule's
        with pytest.raises(redis.exceptions.NoPermissionError):
            cases[attempt](client)


def test_a_connection_without_a_user_can_do_nothing(secured_port, certificates):
    with _client(secured_port, certificates, None) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "case, change, cause",
    [
        ("a CA that did not sign the server's certificate", "other_ca", "TLS certificate is not trusted"),
        ("the system's CAs", "no_ca", "TLS certificate is not trusted"),
        ("a wrong password", "wrong_password", "refused the user name or password"),
        ("plain TCP to the TLS port", "plain", "ConnectionError"),
    ],
)
async def test_an_untrusted_server_or_a_refused_user_is_redis_down_naming_no_secret(
    link_as, certificates, tmp_path, case, change, cause
):
    changes = {
        "other_ca": {"redis_ca_file": certificates.other_ca},
        "no_ca": {"redis_ca_file": None},
        "wrong_password": {"redis_password_file": _file(tmp_path / "wrong", "not-the-password")},
        "plain": {"redis_ca_file": None},
    }[change]
    link = link_as("signet-api", **changes)
    if change == "plain":
        link = RedisLink(link._url.replace("rediss://", "redis://"), NAMESPACE, 2.0)
    assert not await link.ping()  # what /readyz asks: it then reports "redis": "down"
    assert not link.is_up and cause in link.last_error, link.last_error
    message = str(link.record_failure(RuntimeError()))  # RedisUnavailable as callers see it
    for text in (link.last_error, message, repr(RedisCredentials(password=PASSWORDS["signet-api"]))):
        assert all(password not in text for password in PASSWORDS.values())
    if change == "plain":
        await link.aclose()


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.asyncio
async def test_mutual_tls_needs_the_client_certificate(tmp_path, certificates):
    """``--tls-auth-clients yes``: the server wants a certificate its CA signed."""
    with running_redis(tmp_path, "--tls-auth-clients", "yes", tls=certificates) as port:
        base = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ca_file=certificates.ca)
        without = RedisLink.from_settings(base)
        with_certificate = RedisLink.from_settings(
            base.model_copy(
                update={"redis_cert_file": certificates.client_cert, "redis_key_file": certificates.client_key}
            )
        )
        try:
            assert not await without.ping()
            assert await with_certificate.ping()
            await with_certificate.async_client.set("signet:mtls", 1)
            assert with_certificate.sync.get("signet:mtls") == b"1"  # the synchronous client too
            blocking = with_certificate.blocking_client()
            assert await blocking.blpop(["signet:none"], timeout=0.01) is None  # and a blocking one
            await blocking.aclose()
        finally:
            await without.aclose()
            await with_certificate.aclose()


def _bad_settings(certificates: Certificates, folder: Path) -> dict[str, tuple[dict, str]]:
    """Each case: settings, and the variable its one-line error must name."""
    tls = "rediss://127.0.0.1:6380/0"
    not_pem = _file(folder / "not-a-ca.pem", "not a certificate\n")
    return {
        "missing CA file": ({"redis_url": tls, "redis_ca_file": folder / "absent.pem"}, "SIGNET_REDIS_CA_FILE"),
        "CA file not PEM": ({"redis_url": tls, "redis_ca_file": not_pem}, "SIGNET_REDIS_CA_FILE"),
        "CA file a folder": ({"redis_url": tls, "redis_ca_file": folder}, "SIGNET_REDIS_CA_FILE"),
        "CA file without TLS": (
            {"redis_url": "redis://127.0.0.1:6379/0", "redis_ca_file": certificates.ca},
            "SIGNET_REDIS_CA_FILE",
        ),
        "verification off in the URL": ({"redis_url": tls + "?ssl_cert_reqs=none"}, "SIGNET_REDIS_URL"),
        "certificate without its key": (
            {"redis_url": tls, "redis_cert_file": certificates.client_cert},
            "SIGNET_REDIS_KEY_FILE",
        ),
        "key of another certificate": (
            {"redis_url": tls, "redis_cert_file": certificates.client_cert, "redis_key_file": certificates.server_key},
            "SIGNET_REDIS_KEY_FILE",
        ),
        "missing password file": (
            {"redis_url": tls, "redis_password_file": folder / "absent"},
            "SIGNET_REDIS_PASSWORD_FILE",
        ),
        "empty password file": (
            {"redis_url": tls, "redis_password_file": _file(folder / "empty", "\n")},
            "SIGNET_REDIS_PASSWORD_FILE",
        ),
        "a password in the URL and a file": (
            {
                "redis_url": "rediss://signet-api:hunter2hunter2@127.0.0.1:6380/0",
                "redis_password_file": _file(folder / "password", "hunter2hunter2"),
            },
            "SIGNET_REDIS_PASSWORD_FILE",
        ),
        "a user in the URL and the setting": (
            {"redis_url": "rediss://signet-api@127.0.0.1:6380/0", "redis_username": "signet-worker"},
            "SIGNET_REDIS_USERNAME",
        ),
    }


CASES = [
    "missing CA file",
    "CA file not PEM",
    "CA file a folder",
    "CA file without TLS",
    "verification off in the URL",
    "certificate without its key",
    "key of another certificate",
    "missing password file",
    "empty password file",
    "a password in the URL and a file",
    "a user in the URL and the setting",
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_protection_setting_stops_start_up_in_one_line_naming_it(certificates, tmp_path, case):
    overrides, variable = _bad_settings(certificates, tmp_path)[case]
    with pytest.raises(StartupError) as refused:
        _load_settings(overrides)
    message = str(refused.value)
    assert variable in message and "\n" not in message, message
    assert "hunter2" not in message and "BEGIN" not in message  # no secret, no file content


def test_the_acl_rules_docs_deploy_quotes_are_the_example_file():
    """One source of truth: docs/DEPLOY.md shows the example's rules as they are."""
    deploy = (ROOT / "docs/DEPLOY.md").read_text()
    for line in ACL_EXAMPLE.read_text().splitlines():
        assert line in deploy, line


def test_credentials_keep_the_password_out_of_their_repr():
    text = repr(dataclasses.replace(RedisCredentials(), username="u", password="a-secret-password"))
    assert "a-secret-password" not in text and "u" in text


@pytest.mark.parametrize("trusted", [True, False], ids=["our CA", "an unrelated CA"])
def test_readyz_reports_redis_up_only_behind_a_trusted_certificate(
    detection_state, secured_port, certificates, tmp_path, trusted
):
    from fastapi.testclient import TestClient

    from signet.api.app import create_app
    from signet.queue.generation import RemoteEngine

    ca = certificates.ca if trusted else certificates.other_ca
    settings = settings_of("signet-api", secured_port, certificates, tmp_path, redis_ca_file=ca)
    link = RedisLink.from_settings(settings)
    queue = JobQueue(link, 8, retry_after_seconds=2, signer=signer_for_test_keys())
    engine = RemoteEngine(queue, detection_state.keys, 2048, 30.0)
    state = dataclasses.replace(detection_state, redis=link, engine=engine, queue=queue, detection_cache=None)
    with TestClient(create_app(state)) as api:
        response = api.get("/readyz")
    assert response.status_code == 200 and response.json()["redis"] == ("up" if trusted else "down")
    assert all(password not in response.text for password in PASSWORDS.values())


@pytest.mark.asyncio
async def test_a_user_without_a_needed_command_gets_503_naming_the_acl_not_a_500(link_as):
    """ACL rules that lag behind the code (here: the worker's user in an API process)."""
    from signet.engine.protocol import EngineError, EngineStatus

    queue = JobQueue(link_as("signet-worker"), max_jobs=10, retry_after_seconds=2, signer=signer_for_test_keys())
    try:
        with pytest.raises(EngineError) as refused:
            await queue.run("echo", {}, 10)
    finally:
        await queue.aclose()
    assert refused.value.status is EngineStatus.UNAVAILABLE
    assert "ACL rules" in refused.value.detail
    assert all(password not in refused.value.detail for password in PASSWORDS.values())
    cache = RedisDetectionCache(link_as("signet-worker"), ttl_seconds=60)
    assert cache.get("a-digest") is None  # the cache is bypassed, /detect still answers


@pytest.mark.asyncio
async def test_the_generation_registry_works_as_the_api_user(link_as):
    """The example's signet-api rules allow everything the registry does: its two scripts
    (add, erase), the log reads and the record reads, over TLS."""
    import time

    import numpy as np

    from signet.registry.redis import RedisStore
    from signet.registry.store import GenerationRecord

    store, other_pod = RedisStore(link_as("signet-api"), 4), RedisStore(link_as("signet-api"), 4)
    vector = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    now = time.time()
    store.add(GenerationRecord("gen-" + "7" * 32, "acl-tenant", vector, "main", now, now + 60))
    assert other_pod.search("acl-tenant", vector, 1).matches[0].generation_id == "gen-" + "7" * 32
    assert other_pod.erase("acl-tenant", "gen-" + "7" * 32)
    assert store.search("acl-tenant", vector, 1).matches == []
