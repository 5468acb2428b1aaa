"""The exact nearest-neighbour index of one tenant's generations, in memory.

Every live row is compared with every query row (no approximation), so the best similarity
reported is the true best one and the rows compared are the N the significance is corrected
for. Rows are kept as float16: 768 bytes per 384-dimensional unit vector, and a cosine
similarity off by less than 1e-3 (each component is rounded to 11 significant bits).
Products are computed in float32, a chunk of rows at a time, so a search needs a bounded
amount of memory whatever the tenant's size.

Each row also has a sparse part, its piece's rare-word fingerprint (provenance/rare_words.py):
column numbers (int32) and weights (float16), 74 of each in a 120-word piece of documentation
(bench/provenance_scale.py), 444 bytes, kept in two flat arrays in row order. A search compares
both parts of every row and reports, per record, the best of each.

Not thread-safe: the stores hold a lock around each index.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

# Rows converted to float32 at once during a search: 16384 x 384 x 4 bytes = 24 MiB.
CHUNK_ROWS = 16384
_MIN_CAPACITY = 64


@dataclass(frozen=True)
class IndexedRecord:
    generation_id: str
    key_id: str | None
    created_at: float
    expires_at: float
    text: str | None = field(default=None, repr=False)
    locator: str | None = None  # the store's own handle (Redis: the stream entry id)


@dataclass(frozen=True)
class Found:
    record: IndexedRecord
    similarity: float  # the best cosine over the record's rows and the query rows
    rare_word_similarity: float  # the same over their rare-word fingerprints; 0 when none were asked


class _QueryTerms:
    """A search's rare-word queries as a lookup: ``position[column]`` is 1 + the column's row in
    ``weights`` (0: no query has it), and ``weights[k]`` that column's weight in each query
    (float32 [distinct columns, q])."""

    def __init__(self, rare_words: scipy.sparse.csr_matrix, buckets: int) -> None:
        columns, inverse = np.unique(rare_words.indices, return_inverse=True)
        # 4 MiB at 2^20 buckets, once per search; int32, since one "word" of a long query may hold
        # thousands of terms ("ab.cd.ef..."), so a query's distinct columns can pass 65,535
        self.position = np.zeros(buckets, np.int32)
        self.position[columns] = np.arange(1, len(columns) + 1)
        self.weights = np.zeros((len(columns), rare_words.shape[0]), np.float32)
        query_rows = np.repeat(np.arange(rare_words.shape[0]), np.diff(rare_words.indptr))
        np.add.at(self.weights, (inverse, query_rows), rare_words.data)


class VectorIndex:
    """Rows in one float16 matrix grown by doubling. A record's rows are contiguous and
    records lie in the order of their slots, so per-record maxima are a ``reduceat`` over
    runs of equal owners. Removed rows are zeroed, marked dead (owner -1) and squeezed out
    once they are more than half of the matrix. Row r's rare-word columns and weights are
    ``_columns`` and ``_weights`` from ``_term_offsets[r]`` to ``_term_offsets[r + 1]``."""

    def __init__(self, dimension: int, buckets: int = 1) -> None:
        self.dimension = dimension
        self.buckets = buckets  # rare-word columns (the stores': rare_words.BUCKETS); 1: rows without any
        self._rows = np.zeros((_MIN_CAPACITY, dimension), np.float16)
        self._owner = np.full(_MIN_CAPACITY, -1, np.int64)  # the row's record slot; -1: removed
        self._expires = np.zeros(_MIN_CAPACITY, np.float64)  # its record's expires_at, for a vectorised mask
        self._term_offsets = np.zeros(_MIN_CAPACITY + 1, np.int64)
        self._columns = np.zeros(_MIN_CAPACITY, np.int32)
        self._weights = np.zeros(_MIN_CAPACITY, np.float16)
        self._used = 0  # rows written, live or dead
        self._dead = 0
        self._records: list[IndexedRecord | None] = []  # by slot; None once removed
        self._spans: list[tuple[int, int]] = []  # by slot: first row, row count
        self._slots: dict[str, int] = {}
        self._expiry: list[tuple[float, str]] = []  # heap: drop_expired pops only what is due

    def __len__(self) -> int:
        """Records held, expired ones included until ``drop_expired``."""
        return len(self._slots)

    @property
    def num_live_rows(self) -> int:
        """Rows of the records held, expired ones included until ``drop_expired``."""
        return self._used - self._dead

    def generation_ids(self) -> list[str]:
        return list(self._slots)

    def get(self, generation_id: str) -> IndexedRecord | None:
        slot = self._slots.get(generation_id)
        return None if slot is None else self._records[slot]

    def add(
        self,
        generation_id: str,
        key_id: str | None,
        created_at: float,
        expires_at: float,
        vectors: np.ndarray,
        text: str | None = None,
        locator: str | None = None,
        rare_words: scipy.sparse.csr_matrix | None = None,
    ) -> bool:
        """Hold a record with ``vectors`` (float [pieces, dimension], unit rows) and their
        ``rare_words`` (float [pieces, buckets] CSR; None: none); False, and nothing changed,
        when ``generation_id`` is already held."""
        if generation_id in self._slots:
            return False
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension or len(vectors) == 0:
            raise ValueError(f"vectors must be [pieces >= 1, {self.dimension}], not {list(vectors.shape)}")
        pieces = len(vectors)
        if rare_words is not None and rare_words.shape != (pieces, self.buckets):
            raise ValueError(f"rare words must be [{pieces}, {self.buckets}], not {list(rare_words.shape)}")
        self._reserve(self._used + pieces)
        start, stop = self._used, self._used + pieces
        slot = len(self._records)
        self._rows[start:stop] = vectors.astype(np.float16)
        self._owner[start:stop] = slot
        self._expires[start:stop] = expires_at
        self._add_rare_words(start, stop, rare_words)
        self._used = stop
        self._records.append(IndexedRecord(generation_id, key_id, created_at, expires_at, text, locator))
        self._spans.append((start, pieces))
        self._slots[generation_id] = slot
        heapq.heappush(self._expiry, (expires_at, generation_id))
        return True

    def _add_rare_words(self, start: int, stop: int, rare_words: scipy.sparse.csr_matrix | None) -> None:
        first = self._term_offsets[start]
        if rare_words is None:
            self._term_offsets[start + 1 : stop + 1] = first
            return
        count = rare_words.nnz
        self._reserve_terms(first + count)
        self._columns[first : first + count] = rare_words.indices
        self._weights[first : first + count] = rare_words.data.astype(np.float16)
        self._term_offsets[start + 1 : stop + 1] = first + rare_words.indptr[1:]

    def remove(self, generation_id: str) -> bool:
        slot = self._slots.pop(generation_id, None)
        if slot is None:
            return False
        start, pieces = self._spans[slot]
        self._owner[start : start + pieces] = -1
        # Zeroed now, not at the next compaction: an erased (or expired) record's vectors must
        # leave memory with it, and a compaction may be a long way off.
        self._rows[start : start + pieces] = 0
        first, last = self._term_offsets[start], self._term_offsets[start + pieces]
        self._columns[first:last], self._weights[first:last] = 0, 0
        self._records[slot] = None
        self._dead += pieces
        if self._dead * 2 > self._used:
            self._compact()
        return True

    def drop_expired(self, now: float) -> int:
        """Remove the records whose ``expires_at <= now``; how many."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, generation_id = heapq.heappop(self._expiry)
            record = self.get(generation_id)
            # a stale heap entry: the id was removed, and perhaps added again with a later expiry
            if record is not None and record.expires_at <= now:
                dropped += self.remove(generation_id)
        return dropped

    def search(
        self, queries: np.ndarray, limit: int, now: float, rare_words: scipy.sparse.csr_matrix | None = None
    ) -> tuple[list[Found], int]:
        """The records most similar to any row of ``queries`` (float [q, dimension], unit
        rows): the ``limit`` best by similarity, and with ``rare_words`` (the queries'
        fingerprints, float [q, buckets] CSR) also the ``limit`` best by rare-word similarity;
        most similar first, ties by generation id. And the live rows compared. Rows of removed
        records and of those expired by ``now`` are neither returned nor counted."""
        queries = np.asarray(queries, np.float32)
        if rare_words is not None and rare_words.shape != (len(queries), self.buckets):
            raise ValueError(f"rare words must be [{len(queries)}, {self.buckets}], not {list(rare_words.shape)}")
        best = np.full(len(self._records), -np.inf, np.float32)  # by slot
        best_rare = np.zeros(len(self._records), np.float32)
        rare_queries = None if rare_words is None else _QueryTerms(rare_words, self.buckets)
        compared = 0
        if len(queries):
            for start in range(0, self._used, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, self._used)
                compared += self._search_chunk(queries, rare_queries, start, stop, now, best, best_rare)
        return self._top(best, best_rare, limit, rare_queries is not None), compared

    def _search_chunk(
        self,
        queries: np.ndarray,
        rare_queries: _QueryTerms | None,
        start: int,
        stop: int,
        now: float,
        best: np.ndarray,
        best_rare: np.ndarray,
    ) -> int:
        """Fold rows [start, stop) into ``best`` and ``best_rare``; how many of them were live."""
        owners = self._owner[start:stop]
        live = (owners >= 0) & (self._expires[start:stop] > now)
        if not live.any():
            return 0
        # The whole chunk is multiplied and dead rows dropped after: slicing keeps the rows
        # contiguous, and at most half of them are dead (compaction). The float16 to float32
        # conversion costs three times the product: 200,000 rows against 8 queries took
        # 0.5 s on the 2-core test machine, 0.38 s of it in astype, in chunks of 16384 or
        # 65536 rows (0.75 s in chunks of 4096). Rows kept as float32 would halve the time
        # and double the memory.
        similarity = (self._rows[start:stop].astype(np.float32) @ queries.T).max(axis=1)
        rare = None if rare_queries is None else self._rare_word_chunk(rare_queries, start, stop)
        if not live.all():
            owners, similarity = owners[live], similarity[live]
            rare = None if rare is None else rare[live]
        # owners is non-decreasing: each run of one owner is one record's rows (a record may
        # straddle two chunks, hence the maximum with what an earlier chunk found)
        runs = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
        slots = owners[runs]
        best[slots] = np.maximum(best[slots], np.maximum.reduceat(similarity, runs))
        if rare is not None:
            best_rare[slots] = np.maximum(best_rare[slots], np.maximum.reduceat(rare.max(axis=1), runs))
        return len(owners)

    def _rare_word_chunk(self, queries: _QueryTerms, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, q]: rows [start, stop)'s rare-word cosines with each query row.
        Only the terms a query has count, so the rows' columns are looked up (one gather over
        them) and only the shared terms multiplied. On
        100,000 rows of 80 terms against 2 query pieces that took 52 to 77 ms here, a scipy
        sparse product of the chunks 100 ms (a throwaway script, 2026-12-06)."""
        offsets = self._term_offsets[start : stop + 1]
        local = queries.position[self._columns[offsets[0] : offsets[-1]]]
        shared = np.flatnonzero(local)
        scores = np.zeros((stop - start, queries.weights.shape[1]), np.float32)
        if len(shared):
            rows = np.searchsorted(offsets, offsets[0] + shared, side="right") - 1
            weights = self._weights[offsets[0] + shared].astype(np.float32)
            products = weights[:, None] * queries.weights[local[shared] - 1]
            for query in range(scores.shape[1]):  # bincount sums per row far faster than np.add.at
                scores[:, query] = np.bincount(rows, weights=products[:, query], minlength=stop - start)
        return scores

    def _top(self, best: np.ndarray, best_rare: np.ndarray, limit: int, rare_asked: bool) -> list[Found]:
        slots = self._best_slots(best, limit)
        if rare_asked:
            slots |= self._best_slots(np.where(best > -np.inf, best_rare, -np.inf), limit)
        found = [
            # float16 rounding can take a product of unit rows a little past 1
            Found(self._records[slot], float(np.clip(best[slot], -1.0, 1.0)), float(min(best_rare[slot], 1.0)))
            for slot in slots
        ]
        return sorted(found, key=lambda item: (-item.similarity, item.record.generation_id))

    def _best_slots(self, best: np.ndarray, limit: int) -> set[int]:
        """The slots of the ``limit`` largest values of ``best`` (ties broken by generation id)."""
        found = np.flatnonzero(best > -np.inf)
        if limit <= 0 or not len(found):
            return set()
        values = best[found]
        if len(found) > limit:
            # everything tied with the limit-th best stays in, so the order by id below decides ties
            kth = np.partition(values, len(found) - limit)[len(found) - limit]
            found, values = found[values >= kth], values[values >= kth]
        records = [self._records[slot] for slot in found]
        order = sorted(range(len(found)), key=lambda i: (-values[i], records[i].generation_id))[:limit]
        return {int(found[i]) for i in order}

    def _reserve(self, rows: int) -> None:
        if rows > len(self._rows):
            self._resize(_doubled_to(len(self._rows), rows))

    def _resize(self, capacity: int) -> None:
        used = self._used
        rows = np.zeros((capacity, self.dimension), np.float16)
        owner = np.full(capacity, -1, np.int64)
        expires = np.zeros(capacity, np.float64)
        offsets = np.zeros(capacity + 1, np.int64)
        rows[:used], owner[:used], expires[:used] = self._rows[:used], self._owner[:used], self._expires[:used]
        offsets[: used + 1] = self._term_offsets[: used + 1]
        self._rows, self._owner, self._expires, self._term_offsets = rows, owner, expires, offsets

    def _reserve_terms(self, count: int) -> None:
        if count > len(self._columns):
            self._resize_terms(_doubled_to(len(self._columns), count))

    def _resize_terms(self, capacity: int) -> None:
        used = self._term_offsets[self._used]
        columns, weights = np.zeros(capacity, np.int32), np.zeros(capacity, np.float16)
        columns[:used], weights[:used] = self._columns[:used], self._weights[:used]
        self._columns, self._weights = columns, weights

    def _compact(self) -> None:
        """Squeeze out dead rows and slots, keeping the order (so runs of owners stay runs),
        and give back memory down to twice the live rows."""
        keep = self._owner[: self._used] >= 0
        term_counts = np.diff(self._term_offsets[: self._used + 1])
        keep_terms = np.repeat(keep, term_counts)
        used_terms = self._term_offsets[self._used]
        self._columns = self._columns[:used_terms][keep_terms]
        self._weights = self._weights[:used_terms][keep_terms]
        live_slots = [slot for slot, record in enumerate(self._records) if record is not None]
        renumber = np.full(len(self._records), -1, np.int64)
        renumber[live_slots] = np.arange(len(live_slots))
        self._rows = self._rows[: self._used][keep]
        self._owner = renumber[self._owner[: self._used][keep]]
        self._expires = self._expires[: self._used][keep]
        self._term_offsets = np.concatenate(([0], np.cumsum(term_counts[keep])))
        self._used, self._dead = len(self._rows), 0
        self._resize(max(_MIN_CAPACITY, 2 * self._used))
        self._resize_terms(max(_MIN_CAPACITY, 2 * len(self._columns)))
        self._records = [self._records[slot] for slot in live_slots]
        spans, start = [], 0
        for slot in live_slots:
            pieces = self._spans[slot][1]
            spans.append((start, pieces))
            start += pieces
        self._spans = spans
        self._slots = {record.generation_id: slot for slot, record in enumerate(self._records)}
        self._expiry = [(record.expires_at, record.generation_id) for record in self._records]
        heapq.heapify(self._expiry)


def _doubled_to(capacity: int, needed: int) -> int:
    """``capacity`` doubled until it holds ``needed``."""
    while capacity < needed:
        capacity *= 2
    return capacity
