"""The generation registry of embedded mode: a SQLite file, and an index per tenant in memory.

The file is the durable copy; a tenant's VectorIndex is read from it at the tenant's first
use and kept in step after. One process owns the file (embedded mode runs one), so nothing
else can change it behind the indexes.

Erasure and retention delete the bytes, not only hide them: rows go with DELETE under
``secure_delete`` (SQLite overwrites the freed content with zeros), and the write-ahead log,
which still holds the old pages, is checkpointed and truncated after each erase and purge.

An erase leaves a row in ``tombstones`` (registry/store.py, TOMBSTONE_SECONDS) that refuses a
later add of the id until it expires; expired ones go with the expired records.

Every sqlite3 error (disk full, a corrupt or locked file) becomes StoreUnavailable, which the
routes answer with 503 and the recorder counts as ``failed``, not an error 500.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse

from signet.provenance import rare_words
from signet.provenance.index import VectorIndex
from signet.registry.store import (
    TOMBSTONE_SECONDS,
    GenerationRecord,
    SearchResult,
    StoreUnavailable,
    checked_fingerprint,
    match_of,
    stored_rare_words,
)

# Expired rows are deleted from the file at most this often (on an add or a search); the
# indexes hide them from the moment they expire.
PURGE_INTERVAL_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    tenant TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    vectors BLOB NOT NULL,  -- float16 [pieces, dimension], little-endian
    key_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    text TEXT,
    rare_words BLOB,  -- rare_words.to_bytes; NULL in a record kept before they were
    PRIMARY KEY (tenant, generation_id)
);
CREATE INDEX IF NOT EXISTS generations_by_expiry ON generations (expires_at);
CREATE TABLE IF NOT EXISTS tombstones (
    tenant TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    expires_at REAL NOT NULL,  -- an add of the id is refused until then
    PRIMARY KEY (tenant, generation_id)
);
CREATE INDEX IF NOT EXISTS tombstones_by_expiry ON tombstones (expires_at);
"""

# A second erase never shortens a tombstone (one left by a record erased with days to live).
_TOMBSTONE = """
INSERT INTO tombstones (tenant, generation_id, expires_at) VALUES (?, ?, ?)
ON CONFLICT (tenant, generation_id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)
"""

# A second add of a live id is ignored; one of an expired id the purge has not reached yet
# replaces it, since that record is gone as far as every caller can tell.
_ADD = """
INSERT INTO generations (tenant, generation_id, vectors, key_id, created_at, expires_at, text, rare_words)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, generation_id) DO UPDATE SET
    vectors = excluded.vectors, key_id = excluded.key_id, created_at = excluded.created_at,
    expires_at = excluded.expires_at, text = excluded.text, rare_words = excluded.rare_words
WHERE generations.expires_at <= ?
"""


class SqliteStore:
    def __init__(self, path: Path, dimension: int) -> None:
        self.dimension = dimension
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # made private before SQLite writes to it
        os.chmod(path, 0o600)  # and kept so if it was not (SQLite gives the -wal file the same mode)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(generations)")}
        if "rare_words" not in columns:  # a file written before rare words were kept
            self._db.execute("ALTER TABLE generations ADD COLUMN rare_words BLOB")
        self._lock = threading.Lock()
        self._indexes: dict[str, VectorIndex] = {}
        self._last_purge = float("-inf")

    def add(self, record: GenerationRecord) -> None:
        now = time.time()
        if record.expires_at <= now:
            return  # nothing to keep
        vectors = checked_fingerprint(record, self.dimension)
        blob = vectors.astype("<f2").tobytes()
        row = (record.tenant, record.generation_id, blob, record.key_id, record.created_at, record.expires_at)
        rare = None if record.rare_words is None else rare_words.to_bytes(record.rare_words)
        with self._lock, _unavailable_on_error():
            tombstoned = self._db.execute(
                "SELECT 1 FROM tombstones WHERE tenant = ? AND generation_id = ? AND expires_at > ?",
                (record.tenant, record.generation_id, now),
            ).fetchone()
            if tombstoned:
                return  # erased already (a DELETE that came before its recording): never written
            index = self._indexes.get(record.tenant)  # not loaded: its first use reads the row
            if index is not None:
                index.drop_expired(now)  # an expired namesake leaves, so the replacement can enter
            written = self._db.execute(_ADD, (*row, record.text, rare, now)).rowcount
            if written and index is not None:
                index.add(
                    record.generation_id,
                    record.key_id,
                    record.created_at,
                    record.expires_at,
                    vectors,
                    record.text,
                    rare_words=record.rare_words,
                )
            self._purge_when_due(now)

    def search(
        self, tenant: str, vectors: np.ndarray, limit: int, rare_words: scipy.sparse.csr_matrix | None = None
    ) -> SearchResult:
        now = time.time()
        with self._lock, _unavailable_on_error():
            index = self._index(tenant, now)
            index.drop_expired(now)
            found, compared = index.search(np.asarray(vectors, np.float32), limit, now, rare_words)
            self._purge_when_due(now)
        return SearchResult([match_of(item) for item in found], compared)

    def erase(self, tenant: str, generation_id: str) -> bool:
        now = time.time()
        with self._lock, _unavailable_on_error():
            # The tombstone first: a failure between the two statements leaves the record and
            # its tombstone (the caller is answered 503 and retries), never a deleted record
            # that a late add could bring back.
            lived_until = self._db.execute(
                "SELECT expires_at FROM generations WHERE tenant = ? AND generation_id = ?", (tenant, generation_id)
            ).fetchone()
            tombstone_until = max(now + TOMBSTONE_SECONDS, lived_until[0] if lived_until else now)
            self._db.execute(_TOMBSTONE, (tenant, generation_id, tombstone_until))
            deleted = self._db.execute(
                "DELETE FROM generations WHERE tenant = ? AND generation_id = ? RETURNING expires_at",
                (tenant, generation_id),
            ).fetchall()
            if tenant in self._indexes:
                self._indexes[tenant].remove(generation_id)
            if deleted:
                self._truncate_log()
            self._purge_when_due(now)  # here too: erases alone (of unknown ids) add tombstones
        return bool(deleted) and deleted[0][0] > now

    def count(self, tenant: str) -> int:
        now = time.time()
        with self._lock, _unavailable_on_error():
            index = self._index(tenant, now)
            index.drop_expired(now)
            return index.num_live_rows

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._indexes.clear()

    def _index(self, tenant: str, now: float) -> VectorIndex:
        """The tenant's index, read from the file at its first use."""
        index = self._indexes.get(tenant)
        if index is None:
            index = VectorIndex(self.dimension, rare_words.BUCKETS)
            rows = self._db.execute(
                "SELECT generation_id, vectors, key_id, created_at, expires_at, text, rare_words FROM generations "
                "WHERE tenant = ? AND expires_at > ? ORDER BY created_at, generation_id",
                (tenant, now),
            )
            for generation_id, blob, key_id, created_at, expires_at, text, rare in rows:
                vectors = np.frombuffer(blob, "<f2").reshape(-1, self.dimension)
                fingerprint = stored_rare_words(rare, len(vectors))
                index.add(generation_id, key_id, created_at, expires_at, vectors, text, rare_words=fingerprint)
            self._indexes[tenant] = index
        return index

    def resident_vectors(self) -> int:
        with self._lock:
            return sum(index.num_live_rows for index in self._indexes.values())

    def _purge_when_due(self, now: float) -> None:
        if time.monotonic() - self._last_purge < PURGE_INTERVAL_SECONDS:
            return
        self._last_purge = time.monotonic()
        for index in self._indexes.values():  # every tenant's, not only the caller's: their bytes go too
            index.drop_expired(now)
        self._db.execute("DELETE FROM tombstones WHERE expires_at <= ?", (now,))  # ids and times only
        if self._db.execute("DELETE FROM generations WHERE expires_at <= ?", (now,)).rowcount:
            self._truncate_log()

    def _truncate_log(self) -> None:
        """Copy the log's pages into the file (where secure_delete zeroed the deleted rows)
        and empty it: until then it holds the pages as they were before the DELETE."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@contextlib.contextmanager
def _unavailable_on_error():
    """sqlite3 errors (disk full, a corrupt or locked file, a closed store) become StoreUnavailable:
    the registry cannot be used now, which callers answer with 503, not a bug's 500. The message
    names the error's class only: SQLite's own words may name the file's path."""
    try:
        yield
    except sqlite3.Error as error:
        raise StoreUnavailable(f"the generation registry cannot be read or written: {type(error).__name__}") from error
