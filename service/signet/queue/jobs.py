"""What travels through the queue: jobs, their outcomes, and the Redis key names.

A job is one entry of a Redis stream, read by workers in one consumer group. Its
outcome goes to ``result:<request_id>`` (kept a while, so a redelivered job is not
run twice) and to ``reply:<request_id>``, a list the waiting API process pops.

What Redis keeps, and for how long (a job's deadline is SIGNET_JOB_TIMEOUT_SECONDS):
the job (its prompt's token ids) until a worker answers it, and, while any worker
runs, never past SIGNET_JOB_RETENTION_SECONDS; a dead letter (the job, and why it
failed) for the retention; the outcome (generated text), its reply, a streaming
job's pieces and a cancelled job's mark until a minute past the deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signet.engine.protocol import EngineError, EngineStatus
from signet.redis_link import RedisLink


class WorkerUnfit(Exception):
    """This worker can run no more jobs (its engine died): it stops and leaves its jobs to others."""


class MalformedJob(ValueError):
    """A stream entry that is not a job this code understands."""


@dataclass(frozen=True)
class QueueKeys:
    """Every Redis key the queue uses, under the deployment's namespace.

    All are ``RedisLink.slot_key``s: on a cluster they share one hash slot, so one node
    holds the whole queue. Its scripts and transactions touch the stream with a job's
    result, reply, pieces and tenant set at once, which a cluster allows only within one
    slot. One node is no bottleneck the queue did not have: every job passes through the
    one stream anyway, and the per-job keys are few (about five per running job) and
    short-lived. The detection cache and rate limits, used one key at a time, stay spread.
    """

    link: RedisLink

    @property
    def stream(self) -> str:
        return self.link.slot_key("jobs")

    @property
    def group(self) -> str:
        return self.link.slot_key("workers")

    @property
    def dead_letters(self) -> str:
        return self.link.slot_key("jobs", "dead")

    @property
    def cancel_channel(self) -> str:
        return self.link.slot_key("cancel")

    @property
    def workers_alive(self) -> str:
        """Sorted set: worker name -> Unix time of its last heartbeat."""
        return self.link.slot_key("workers", "alive")

    def worker_stats(self, worker_name: str) -> str:
        return self.link.slot_key("worker", worker_name)

    def reply(self, request_id: str) -> str:
        return self.link.slot_key("reply", request_id)

    def result(self, request_id: str) -> str:
        return self.link.slot_key("result", request_id)

    def cancelled(self, request_id: str) -> str:
        return self.link.slot_key("cancelled", request_id)

    def tenant_jobs(self, tenant: str) -> str:
        """Sorted set: request id -> deadline of each job a tenant holds (see producer.py)."""
        return self.link.slot_key("tenant", tenant, "jobs")

    def deltas(self, request_id: str) -> str:
        """Stream of a streaming job's pieces, then its outcome."""
        return self.link.slot_key("deltas", request_id)


@dataclass(frozen=True)
class Job:
    request_id: str
    kind: str
    payload: dict[str, Any]
    deadline: float  # Unix time: API and worker clocks are assumed in sync (NTP), as Kubernetes nodes are
    stream: bool = False  # the caller reads pieces as they come (QueueKeys.deltas), not only the outcome
    # The HTTP request id of the call that queued it: the worker's log lines for the job carry
    # it, so one id follows a request through API and worker. Not unique: never a key.
    trace_id: str | None = None

    @property
    def seconds_left(self) -> float:
        return self.deadline - time.time()

    def to_fields(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "deadline": repr(self.deadline),
            "payload": json.dumps(self.payload, separators=(",", ":")),
            "stream": "1" if self.stream else "0",
            "trace_id": self.trace_id or "",
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        try:
            payload = json.loads(fields[b"payload"])
            job = cls(
                fields[b"request_id"].decode(),
                fields[b"kind"].decode(),
                payload,
                float(fields[b"deadline"]),
                fields.get(b"stream") == b"1",
                fields.get(b"trace_id", b"").decode() or None,
            )
        except (KeyError, ValueError, UnicodeDecodeError) as error:
            raise MalformedJob(f"not a job: {type(error).__name__}") from None
        if not isinstance(job.payload, dict) or not job.request_id:
            raise MalformedJob("not a job: payload is not an object or request_id is empty")
        return job


# The fields a job's signature covers: all that the worker reads. In this order, each
# length-prefixed, so no two different jobs encode alike.
SIGNED_FIELDS = ("request_id", "kind", "deadline", "payload", "stream", "trace_id")
SIGNATURE_FIELD = "signature"
_SIGNATURE_DOMAIN = b"signet job signature v1"


class JobSigner:
    """Signs jobs (API processes) and checks them (workers): HMAC-SHA256 of the job's fields
    as they travel, so whoever can write to Redis but lacks the secret cannot queue work.

    ``secrets``: the first signs, every one is accepted, so a new secret can be rolled out
    before it signs (docs/DEPLOY.md, "Securing Redis"). A verbatim replay of a signed job
    keeps its request id, whose stored outcome ends it, and its deadline."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("a job signer needs at least one secret")
        self._secrets = tuple(secrets)

    def sign(self, fields: Mapping[str, str]) -> str:
        """The signature of ``fields`` (Job.to_fields), with the first secret."""
        message = _signed_message([fields[name].encode() for name in SIGNED_FIELDS])
        return _signature(self._secrets[0], message)

    def verify(self, fields: Mapping[bytes, bytes]) -> bool:
        """Whether the stream entry ``fields`` carries a signature one of the secrets made.
        Compared in constant time; a field missing fails."""
        signature = fields.get(SIGNATURE_FIELD.encode())
        values = [fields.get(name.encode()) for name in SIGNED_FIELDS]
        if signature is None or None in values:
            return False
        message = _signed_message(values)
        return any(hmac.compare_digest(_signature(secret, message).encode(), signature) for secret in self._secrets)


def _signed_message(values: list[bytes]) -> bytes:
    return _SIGNATURE_DOMAIN + b"".join(len(value).to_bytes(4, "big") + value for value in values)


def _signature(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class JobOutcome:
    """A value, or the engine error its caller gets instead."""

    value: dict[str, Any] | None = None
    status: EngineStatus | None = None  # None: the job produced its value
    detail: str = ""
    field: str | None = None
    waited_seconds: float | None = None  # from entering the queue to a worker starting it (for metrics)

    @classmethod
    def failure(cls, error: EngineError) -> JobOutcome:
        return cls(status=error.status, detail=error.detail, field=error.field)

    def to_json(self) -> str:
        return json.dumps(
            {
                "value": self.value,
                "engine_status": None if self.status is None else self.status.value,
                "status": _WIRE_CODES[self.status],
                "detail": self.detail,
                "field": self.field,
                "waited_seconds": self.waited_seconds,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobOutcome:
        document = json.loads(raw)
        return cls(
            document["value"],
            _status(document.get("engine_status"), document["status"]),
            document["detail"],
            document["field"],
            document.get("waited_seconds"),
        )

    def with_wait(self, seconds: float | None) -> JobOutcome:
        return dataclasses.replace(self, waited_seconds=seconds)

    def unwrap(self, retry_after: float | None = None) -> dict[str, Any]:
        """The value, or the EngineError; ``retry_after`` for an UNAVAILABLE one (outcomes do not carry it)."""
        if self.status is None:
            return self.value
        seconds = retry_after if self.status is EngineStatus.UNAVAILABLE else None
        raise EngineError(self.status, self.detail, self.field, seconds)


# Outcomes also carry the numeric codes that API pods and workers from before engine
# statuses wrote and read: while a rollout runs both versions side by side, each still
# understands the other's outcomes.
_WIRE_CODES = {
    None: 200,
    EngineStatus.INVALID: 422,
    EngineStatus.UNAVAILABLE: 503,
    EngineStatus.TIMED_OUT: 504,
    EngineStatus.FAILED: 502,
}
_STATUS_OF_CODE = {code: status for status, code in _WIRE_CODES.items()}


def _status(engine_status: str | None, code: int) -> EngineStatus | None:
    """The outcome's status: its engine status, or, from an older worker or for a status this
    version does not know, what its numeric code says (an unknown code: failed for good)."""
    try:
        return EngineStatus(engine_status)
    except ValueError:  # None from an older worker, or a newer worker's status
        return _STATUS_OF_CODE.get(code, EngineStatus.FAILED)


def entry_id_at(unix_seconds: float) -> str:
    """The smallest stream entry id Redis gives at ``unix_seconds`` (``<Unix ms>-0``): entries
    below it are older (``XTRIM ... MINID`` deletes them)."""
    return f"{max(0, int(unix_seconds * 1000))}-0"


def seconds_since_entry(entry_id: bytes | str, now: float | None = None) -> float | None:
    """Seconds since Redis added the stream entry ``entry_id`` (``<Unix ms>-<seq>``, in Redis'
    clock, which like the others is assumed in sync); None for an id of another form."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    milliseconds, _, _ = raw.partition("-")
    if not milliseconds.isdigit():
        return None
    return max(0.0, (time.time() if now is None else now) - int(milliseconds) / 1000)
