"""Signed jobs against a real Redis: a worker runs only what an API process holding the job
signing secret queued. Whoever writes a job straight into the stream (XADD) without the
secret, or alters a signed one, gets it dead-lettered at once, never run, never retried."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.services import TEST_KEYS, signer_for_test_keys
from signet.engine.protocol import EngineError, EngineStatus
from signet.keys import KeyRegistry, KeyRegistryError
from signet.queue.consumer import UNSIGNED_REASON
from signet.queue.jobs import SIGNATURE_FIELD, SIGNED_FIELDS, Job, JobSigner
from signet.queue.producer import JobQueue
from tests.redis.test_job_queue import depth_is, wait_until

OTHER_SECRET = b"another deployment's job signing secret, 41 chars"


@pytest.fixture
def runs():
    """A stand-in handler that counts the jobs it runs."""
    ran: list[Job] = []

    async def record(job: Job) -> dict:
        ran.append(job)
        return {"ran": job.payload}

    return ran, record


def signed(job: Job, signer: JobSigner | None = None) -> dict[str, str]:
    """The fields an API process holding ``signer``'s secret would write for ``job``."""
    fields = job.to_fields()
    return {**fields, SIGNATURE_FIELD: (signer or signer_for_test_keys()).sign(fields)}


def generation_job(**changes) -> Job:
    payload = {"prompt_token_ids": [1, 2, 3], "watermark_key_id": "main", "key_fingerprint": "f" * 32}
    fields = {"request_id": uuid.uuid4().hex, "kind": "echo", "payload": payload, "deadline": time.time() + 30}
    return Job(**{**fields, **changes})


async def dead_letters(link, queue) -> list[dict[bytes, bytes]]:
    await wait_until(depth_is(queue, 0))
    return [fields for _, fields in await link.async_client.xrange(queue.keys.dead_letters)]


@pytest.mark.asyncio
async def test_a_signed_job_runs(link, queue, start_worker, runs):
    ran, record = runs
    await start_worker({"echo": record})
    job = generation_job()
    await link.async_client.xadd(queue.keys.stream, signed(job))
    await wait_until(depth_is(queue, 0))
    assert [each.request_id for each in ran] == [job.request_id]
    assert await link.async_client.xlen(queue.keys.dead_letters) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("signature", [None, "", "0" * 64, "not hex at all"], ids=["none", "empty", "zeros", "junk"])
async def test_a_job_written_without_a_valid_signature_is_dead_lettered_never_run(
    link, queue, start_worker, runs, caplog, signature
):
    ran, record = runs
    worker = await start_worker({"echo": record})
    fields = generation_job(payload={"watermark_key_id": None}).to_fields()  # an unwatermarked generation
    if signature is not None:
        fields[SIGNATURE_FIELD] = signature
    with caplog.at_level(logging.ERROR, logger="signet.queue.consumer"):
        await link.async_client.xadd(queue.keys.stream, fields)
        dead = await dead_letters(link, queue)
    assert ran == [] and worker.counters.dead_lettered == 1
    assert len(dead) == 1 and dead[0][b"reason"] == UNSIGNED_REASON.encode()
    assert await link.async_client.xpending(queue.keys.stream, queue.keys.group) == {
        "pending": 0, "min": None, "max": None, "consumers": []
    }  # fmt: skip  # acknowledged: never delivered again
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "signature is missing or wrong" in logged
    assert all(secret not in logged for secret in TEST_KEYS["job_signing_secrets"])
    # The caller named in the entry hears why at once, rather than waiting out its deadline.
    outcome = json.loads(await link.async_client.get(queue.keys.result(fields["request_id"])))
    assert outcome["status"] == 502 and "signature" in outcome["detail"]
    assert all(secret not in outcome["detail"] for secret in TEST_KEYS["job_signing_secrets"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "field, value",
    [
        ("payload", json.dumps({"prompt_token_ids": [1, 2, 3], "watermark_key_id": None, "key_fingerprint": None})),
        ("kind", "sample"),
        ("deadline", repr(time.time() + 86_400)),
        ("stream", "1"),
        ("request_id", uuid.uuid4().hex),
        ("trace_id", "someone-else"),
    ],
    ids=lambda value: value if value in SIGNED_FIELDS else "",
)
async def test_a_signed_job_altered_in_any_field_is_never_run(link, queue, start_worker, runs, field, value):
    """A captured signature replayed over a changed job: the attacker's way to an unwatermarked
    generation (payload), another kind, a longer deadline, or a fresh request id."""
    ran, record = runs
    await start_worker({"echo": record, "sample": record})
    fields = signed(generation_job())
    assert fields[field] != value
    await link.async_client.xadd(queue.keys.stream, {**fields, field: value})
    dead = await dead_letters(link, queue)
    assert ran == [] and [entry[b"reason"] for entry in dead] == [UNSIGNED_REASON.encode()]


@pytest.mark.asyncio
async def test_a_job_signed_with_another_secret_is_never_run(link, queue, start_worker, runs):
    ran, record = runs
    await start_worker({"echo": record})
    await link.async_client.xadd(queue.keys.stream, signed(generation_job(), JobSigner([OTHER_SECRET])))
    assert len(await dead_letters(link, queue)) == 1 and ran == []


@pytest.mark.asyncio
async def test_a_signed_job_replayed_verbatim_is_not_run_again(link, queue, start_worker, runs):
    """The replay keeps the request id, whose stored outcome ends it; past that outcome's
    life the deadline (signed too) has passed."""
    ran, record = runs
    await start_worker({"echo": record})
    fields = signed(generation_job())
    for _ in range(3):
        await link.async_client.xadd(queue.keys.stream, fields)
        await wait_until(depth_is(queue, 0))
    assert len(ran) == 1 and await link.async_client.xlen(queue.keys.dead_letters) == 0


@pytest.mark.asyncio
async def test_the_api_s_jobs_run_on_a_worker_holding_the_same_secret_only(link, start_worker, runs):
    ran, record = runs
    await start_worker({"echo": record})  # the test signer's secret
    stranger = JobQueue(link, max_jobs=10, retry_after_seconds=2, signer=JobSigner([OTHER_SECRET]))
    try:
        with pytest.raises(EngineError, match="signature") as failed:
            await stranger.run("echo", {"n": 1}, timeout_seconds=10)
        assert failed.value.status is EngineStatus.FAILED  # 502 to its caller, at once
    finally:
        await stranger.aclose()
    assert ran == []


@pytest.mark.asyncio
async def test_a_new_secret_rolls_out_before_it_signs(link, start_worker, runs):
    """Step one of a rotation: workers accept [new, old] while API processes still sign with
    the old one; step two: API processes sign with the new one. Jobs run throughout."""
    ran, record = runs
    new, old = b"the new job signing secret, rolled out first", TEST_KEYS["job_signing_secrets"][0].encode()
    await start_worker({"echo": record}, signer=JobSigner([new, old]))
    for step, signer in enumerate((JobSigner([old]), JobSigner([new, old]))):
        api = JobQueue(link, max_jobs=10, retry_after_seconds=2, signer=signer)
        try:
            assert await api.run("echo", {"step": step}, 10) == {"ran": {"step": step}}
        finally:
            await api.aclose()
    assert len(ran) == 2


def test_the_keys_file_holds_the_signing_secrets_or_derives_one(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(TEST_KEYS))
    assert KeyRegistry.load(path).job_signing_secrets == [TEST_KEYS["job_signing_secrets"][0].encode()]

    without = {name: value for name, value in TEST_KEYS.items() if name != "job_signing_secrets"}
    path.write_text(json.dumps(without))
    derived = KeyRegistry.load(path)
    assert len(derived.job_signing_secrets) == 1
    # Derived under a domain of its own: no fingerprint or cache name equals it, and it is
    # not the fingerprint secret itself.
    secret = derived.job_signing_secrets[0]
    assert secret != TEST_KEYS["fingerprint_secret"].encode()
    assert secret.decode() not in {derived.fingerprint(key_id) for key_id in derived.key_ids}
    changed = {**without, "fingerprint_secret": "a different fingerprint secret of 40 chars"}
    path.write_text(json.dumps(changed))
    assert KeyRegistry.load(path).job_signing_secrets != [secret]


def test_a_short_signing_secret_is_refused_without_echoing_it(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({**TEST_KEYS, "job_signing_secrets": ["short-secret-1234"]}))
    with pytest.raises(KeyRegistryError, match="job_signing_secrets") as refused:
        KeyRegistry.load(path)
    assert "short-secret-1234" not in str(refused.value)


def test_docs_deploy_s_command_prints_the_derived_secret(tmp_path):
    """The command that docs/DEPLOY.md gives for moving from the derived secret to your own."""
    deploy = (Path(__file__).resolve().parents[2] / "docs/DEPLOY.md").read_text()
    [command] = [line.strip() for line in deploy.splitlines() if line.strip().startswith("printf 'signet job signing")]
    environment = {**os.environ, "FINGERPRINT_SECRET": TEST_KEYS["fingerprint_secret"]}
    printed = subprocess.run(["bash", "-c", command], env=environment, capture_output=True, text=True, check=True)
    without = {name: value for name, value in TEST_KEYS.items() if name != "job_signing_secrets"}
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(without))
    assert [printed.stdout.strip().encode()] == KeyRegistry.load(path).job_signing_secrets


def _stored_values(client, namespace: str) -> list[bytes]:
    """Every name and value under ``namespace``, read by type (DUMP would compress them)."""
    values: list[bytes] = []
    for name in client.scan_iter(match=f"{namespace}:*"):
        kind = client.type(name)
        values.append(name)
        if kind == b"string":
            values.append(client.get(name))
        elif kind == b"list":
            values += client.lrange(name, 0, -1)
        elif kind == b"stream":
            values += [part for _, fields in client.xrange(name) for item in fields.items() for part in item]
        elif kind == b"hash":
            values += [part for item in client.hgetall(name).items() for part in item]
        elif kind == b"zset":
            values += client.zrange(name, 0, -1)
    return values


@pytest.mark.asyncio
async def test_the_signing_secret_never_reaches_redis(link, queue, start_worker, runs):
    ran, record = runs
    await start_worker({"echo": record})
    assert await queue.run("echo", {"n": 1}, 10) == {"ran": {"n": 1}}
    caller = JobQueue(link, max_jobs=10, retry_after_seconds=2, signer=JobSigner([OTHER_SECRET]))
    try:
        with pytest.raises(Exception, match="signature"):  # dead-lettered: its fields stay in Redis
            await caller.run("echo", {"n": 2}, 10)
    finally:
        await caller.aclose()
    stored = b"\n".join(_stored_values(link.sync, link.namespace))
    assert b"signature" in stored  # the dead letter is there to be searched
    for secret in (*TEST_KEYS["job_signing_secrets"], OTHER_SECRET.decode()):
        assert secret.encode() not in stored
