"""Recording generations in the registry, off the request path.

A finished generation is handed to ``Recorder.submit``, which only puts it on a bounded
queue: the response never waits for the embedding model or the store. One task takes
what has queued (up to ``BATCH`` at a time), fingerprints the texts in the thread pool in
one call to the embedding model, and writes the records there too.

What can be lost, and is counted (``signet_provenance_records_total{outcome}``): a
generation that finds the queue full, or waited more than WRITE_DEADLINE_SECONDS to be written
(``dropped``), one whose write fails because the store is unreachable (``failed``), and
those still queued when the process is killed (``SIGTERM`` drains the queue for up to
``DRAIN_SECONDS`` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from signet import metrics
from signet.api.embedding import embed_now
from signet.api.errors import ApiError
from signet.api.state import ServiceState
from signet.provenance import rare_words
from signet.provenance.fingerprint import pieces
from signet.registry.store import WRITE_DEADLINE_SECONDS, GenerationRecord, StoreUnavailable

logger = logging.getLogger(__name__)

# A tenant name cannot hold parentheses (tenants.NAME_PATTERN), so development mode's
# registry never meets a tenant's.
DEVELOPMENT_TENANT = "(development)"
BATCH = 16
DRAIN_SECONDS = 10.0
# A failed erase of a generation erased while it was being written is tried once more, this
# long after: the Redis link refuses every call for a second after a failure (its breaker).
ERASE_RETRY_SECONDS = 1.0
_DAY = 86_400.0


@dataclass(frozen=True)
class PendingRecord:
    tenant: str
    generation_id: str
    text: str
    key_id: str | None
    created_at: float


class Recorder:
    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._queue: asyncio.Queue[PendingRecord] = asyncio.Queue(state.settings.provenance_queue_size)
        self._task: asyncio.Task | None = None
        # (tenant, generation id) of each queued or in-flight record -> whether a DELETE asked
        # to erase it meanwhile; read and written from the loop, the recording thread and
        # the DELETE route's thread.
        self._pending: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="provenance-recorder")

    def submit(self, tenant: str | None, generation_id: str, text: str, key_id: str | None) -> None:
        """Queue a finished generation for recording; never blocks, never raises."""
        tenant = registry_tenant(tenant)
        if not text.strip():
            return  # nothing to fingerprint: an empty or all-blank answer
        try:
            self._queue.put_nowait(PendingRecord(tenant, generation_id, text, key_id, time.time()))
            with self._lock:
                self._pending[(tenant, generation_id)] = False
        except asyncio.QueueFull:
            metrics.count_provenance_records("dropped")
            logger.warning("generation %s not recorded: the registry's queue is full", generation_id)

    def cancel(self, tenant: str | None, generation_id: str) -> bool:
        """Erase a generation that is queued or being recorded: it is dropped, or erased
        right after its write. False when no such generation is pending."""
        tenant = registry_tenant(tenant)
        with self._lock:
            if (tenant, generation_id) not in self._pending:
                return False
            self._pending[(tenant, generation_id)] = True
            return True

    def _settle(self, pending: PendingRecord) -> bool:
        """Forget ``pending``; True when a DELETE asked to erase it."""
        with self._lock:
            return self._pending.pop((pending.tenant, pending.generation_id), False)

    async def stop(self) -> None:
        """Record what is queued, for up to DRAIN_SECONDS, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await run_in_threadpool(self._record, batch)
            except Exception:  # noqa: BLE001 - the recorder must outlive any one batch
                # Only before any record's outcome was counted (splitting, embedding):
                # _record settles each record's failures itself.
                metrics.count_provenance_records("failed", len(batch))
                logger.exception("%d generations not recorded", len(batch))
            finally:
                for pending in batch:
                    self._settle(pending)
                    self._queue.task_done()

    def _record(self, batch: list[PendingRecord]) -> None:
        split = [pieces(pending.text) for pending in batch]
        try:
            vectors = embed_now(self._state, [piece for found in split for piece in found])
        except ApiError as error:  # the embedding model cannot load
            metrics.count_provenance_records("failed", len(batch))
            logger.error("%d generations not recorded: %s", len(batch), error.detail)
            return
        fingerprints = None
        if self._state.settings.provenance_rare_words:
            fingerprints = rare_words.fingerprints([piece for found in split for piece in found])
        start = 0
        for pending, found in zip(batch, split, strict=True):
            stop = start + len(found)
            pending_vectors = vectors[start:stop]
            pending_rare_words = None if fingerprints is None else fingerprints[start:stop]
            start = stop
            with self._lock:
                if self._pending.get((pending.tenant, pending.generation_id)):
                    continue  # erased before it was written: never written
            # A DELETE that reached another API process left a tombstone that refuses this
            # add for TOMBSTONE_SECONDS only (registry/store.py): a record that old might come
            # back after its erasure, so one past WRITE_DEADLINE_SECONDS is never written.
            age = time.time() - pending.created_at
            if age > WRITE_DEADLINE_SECONDS:
                metrics.count_provenance_records("dropped")
                logger.warning("generation %s not recorded: it waited %.0f s to be written", pending.generation_id, age)
                continue
            # Each record's failure is its own: the others of the batch are still written.
            try:
                self._state.generation_store.add(self._record_of(pending, pending_vectors, pending_rare_words))
            except StoreUnavailable as error:
                metrics.count_provenance_records("failed")
                logger.error("generation %s not recorded: %s", pending.generation_id, error)
                continue
            except Exception:  # noqa: BLE001 - a bug in one record must not lose the others
                metrics.count_provenance_records("failed")
                logger.exception("generation %s not recorded", pending.generation_id)
                continue
            metrics.count_provenance_records("recorded")
            if self._settle(pending):  # a DELETE came while it was being written
                self._erase_written(pending)

    def _erase_written(self, pending: PendingRecord) -> None:
        """Erase a record a DELETE asked to erase while it was being written (and was answered
        204): tried twice. The record is written whatever happens here, so its outcome stays
        ``recorded``; a failure is logged, for the operator to erase it by hand."""
        for attempt in range(2):
            try:
                self._state.generation_store.erase(pending.tenant, pending.generation_id)
                return
            except Exception as error:  # noqa: BLE001 - StoreUnavailable, or a bug: the same for the log
                if attempt == 0:
                    logger.warning(
                        "generation %s recorded, but its erasure failed: %s; trying once more",
                        pending.generation_id,
                        error,
                    )
                    time.sleep(ERASE_RETRY_SECONDS)
                else:
                    logger.error(
                        "generation %s recorded, but its erasure failed: %s",
                        pending.generation_id,
                        error,
                        exc_info=not isinstance(error, StoreUnavailable),  # a bug's traceback
                    )

    def _record_of(self, pending: PendingRecord, vectors, fingerprint) -> GenerationRecord:
        settings = self._state.settings
        return GenerationRecord(
            generation_id=pending.generation_id,
            tenant=pending.tenant,
            vectors=vectors,
            key_id=pending.key_id,
            created_at=pending.created_at,
            expires_at=pending.created_at + retention_days(self._state, pending.tenant) * _DAY,
            text=pending.text if settings.provenance_store_text else None,
            rare_words=fingerprint,
        )


def registry_tenant(tenant: str | None) -> str:
    """Whose registry a caller reads and writes: its tenant's (development mode: one of its own)."""
    return DEVELOPMENT_TENANT if tenant is None else tenant


def retention_days(state: ServiceState, tenant: str) -> float:
    """The tenant's own retention, else SIGNET_PROVENANCE_RETENTION_DAYS."""
    own = None
    if state.tenants is not None and tenant in state.tenants.tenants:
        own = state.tenants.tenants[tenant].provenance_retention_days
    return own if own is not None else state.settings.provenance_retention_days
