"""The contract between the generation registry's stores and their callers.

A store keeps, per tenant, each generation's fingerprint (one unit vector per piece of its
text, see provenance/fingerprint.py, and each piece's rare words, provenance/rare_words.py),
its key id and times, and its text only when the operator opts in. It answers
nearest-neighbour queries exactly (every live vector of the tenant is compared), so a
reported similarity is the true best one, and the number of vectors compared is the N the
significance is corrected for.

Two stores implement it: ``registry/sqlite.py`` (embedded mode: a SQLite file under the
cache directory) and ``registry/redis.py`` (distributed mode: Redis streams every API
pod reads). Every method is synchronous and thread-safe: the detection routes run in
the thread pool, and the recorder appends from a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse

from signet.provenance import rare_words
from signet.provenance.index import Found

logger = logging.getLogger(__name__)

# How long an erase keeps a generation id from being added (a tombstone), from the erase on.
# Why: a generation is recorded up to about a second after its response, by the recorder of
# the API process that served it (api/provenance/recorder.py); in distributed mode its DELETE
# may reach another process, whose recorder holds nothing to cancel, and the store nothing to
# erase yet. The tombstone refuses the late add. The recorder never writes a record created
# more than WRITE_DEADLINE_SECONDS ago (it drops it, counted), so no add can outlive its
# tombstone: the minute between them covers the write itself (a Redis call may take its
# timeout, a thread may be paused) after the recorder's check.
TOMBSTONE_SECONDS = 600.0
WRITE_DEADLINE_SECONDS = TOMBSTONE_SECONDS - 60.0


@dataclass(frozen=True)
class GenerationRecord:
    generation_id: str
    tenant: str
    vectors: np.ndarray = field(repr=False)  # float32 [pieces, dimension], unit rows
    key_id: str | None  # None: generated without a watermark
    created_at: float  # Unix seconds
    expires_at: float  # Unix seconds: never returned, and deleted, from then on
    text: str | None = field(default=None, repr=False)  # kept only when the operator opts in
    # float32 [pieces, rare_words.BUCKETS] CSR, each piece's rare-word fingerprint; None: none
    # (a record written before they were kept), so its rare-word similarity is 0
    rare_words: scipy.sparse.csr_matrix | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Match:
    generation_id: str
    similarity: float  # the best cosine similarity over the record's pieces and the query's
    key_id: str | None
    created_at: float
    text: str | None = field(default=None, repr=False)
    rare_word_similarity: float = 0.0  # the same for their rare-word fingerprints


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]  # most similar first, at most the limit asked
    num_vectors: int  # the tenant's live vectors compared: N, for the significance


def checked_fingerprint(record: GenerationRecord, dimension: int) -> np.ndarray:
    """The record's vectors as float32; ValueError when they, or its rare words, have the wrong shape."""
    vectors = np.asarray(record.vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dimension or len(vectors) == 0:
        raise ValueError(f"vectors must be [pieces >= 1, {dimension}], not {list(vectors.shape)}")
    expected = (len(vectors), rare_words.BUCKETS)
    if record.rare_words is not None and record.rare_words.shape != expected:
        raise ValueError(f"rare words must be {list(expected)}, not {list(record.rare_words.shape)}")
    return vectors


def stored_rare_words(blob: object, pieces: int) -> scipy.sparse.csr_matrix | None:
    """A record's rare words as a store read them (rare_words.to_bytes); None when it has none or
    they are damaged, which is logged: the record still counts, and matches by meaning."""
    if blob is None:
        return None
    if not isinstance(blob, bytes):  # a SQLite cell of another type (bytes(n) of an int would allocate n bytes)
        logger.warning("generation registry: a record's rare words are unreadable (a %s)", type(blob).__name__)
        return None
    try:
        return rare_words.from_bytes(blob, pieces)
    except ValueError as error:
        logger.warning("generation registry: a record's rare words are unreadable (%s)", error)
        return None


def match_of(found: Found) -> Match:
    record = found.record
    return Match(
        record.generation_id,
        found.similarity,
        record.key_id,
        record.created_at,
        record.text,
        found.rare_word_similarity,
    )


class StoreUnavailable(Exception):
    """The store cannot be read or written now (Redis down); the message says why, without secrets."""


class GenerationStore(Protocol):
    def add(self, record: GenerationRecord) -> None:
        """Keep ``record`` until its ``expires_at``; a second add of the same id is ignored, and
        so is one of an id erased less than TOMBSTONE_SECONDS ago (or erased while it lived)."""

    def search(
        self, tenant: str, vectors: np.ndarray, limit: int, rare_words: scipy.sparse.csr_matrix | None = None
    ) -> SearchResult:
        """The ``limit`` records of ``tenant`` most similar to any row of ``vectors`` (float32
        [pieces, dimension], unit rows), and with ``rare_words`` (their fingerprints) also the
        ``limit`` most similar by rare words; each once, expired and erased ones never."""

    def erase(self, tenant: str, generation_id: str) -> bool:
        """Delete the record everywhere; False when ``tenant`` has no such live record. Either way
        the id is tombstoned: an add of it is ignored for TOMBSTONE_SECONDS, or, if a record
        lived, for as long as that record would have lived if longer (a retried add cannot
        bring it back)."""

    def count(self, tenant: str) -> int:
        """The tenant's live vectors."""

    def resident_vectors(self) -> int:
        """The live vectors this process holds in memory, all tenants together."""

    def close(self) -> None: ...


class GenerationRecorder(Protocol):
    """What records finished generations in the registry, off the request path (api/provenance/recorder.py)."""

    def submit(self, tenant: str | None, generation_id: str, text: str, key_id: str | None) -> None:
        """Queue a finished generation; ``tenant`` None: development mode. Never blocks or raises."""

    def cancel(self, tenant: str | None, generation_id: str) -> bool:
        """Erase a generation still waiting to be recorded; False when none is."""
