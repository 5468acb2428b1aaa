"""The exact nearest-neighbour index of one tenant's generations, in memory.

Every live row is compared with every query row (no approximation), so the best similarity
reported is the true best one and the rows compared are the N the significance is corrected
for. Rows are kept as float16: 768 bytes per 384-dimensional unit vector, and a cosine
similarity off by less than 1e-3 (each component is rounded to 11 significant bits).
Products are computed in float32, a chunk of rows at a time, so a search needs a bounded
amount of memory whatever the tenant's size.

Not thread-safe: the stores hold a lock around each index.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

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


class VectorIndex:
    """Rows in one float16 matrix grown by doubling. A record's rows are contiguous and
    records lie in the order of their slots, so per-record maxima are a ``reduceat`` over
    runs of equal owners. Removed rows are zeroed, marked dead (owner -1) and squeezed out
    once they are more than half of the matrix."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._rows = np.zeros((_MIN_CAPACITY, dimension), np.float16)
        self._owner = np.full(_MIN_CAPACITY, -1, np.int64)  # the row's record slot; -1: removed
        self._expires = np.zeros(_MIN_CAPACITY, np.float64)  # its record's expires_at, for a vectorised mask
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
    ) -> bool:
        """Hold a record with ``vectors`` (float [pieces, dimension], unit rows); False, and
        nothing changed, when ``generation_id`` is already held."""
        if generation_id in self._slots:
            return False
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension or len(vectors) == 0:
            raise ValueError(f"vectors must be [pieces >= 1, {self.dimension}], not {list(vectors.shape)}")
        pieces = len(vectors)
        self._reserve(self._used + pieces)
        start, stop = self._used, self._used + pieces
        slot = len(self._records)
        self._rows[start:stop] = vectors.astype(np.float16)
        self._owner[start:stop] = slot
        self._expires[start:stop] = expires_at
        self._used = stop
        self._records.append(IndexedRecord(generation_id, key_id, created_at, expires_at, text, locator))
        self._spans.append((start, pieces))
        self._slots[generation_id] = slot
        heapq.heappush(self._expiry, (expires_at, generation_id))
        return True

    def remove(self, generation_id: str) -> bool:
        slot = self._slots.pop(generation_id, None)
        if slot is None:
            return False
        start, pieces = self._spans[slot]
        self._owner[start : start + pieces] = -1
        # Zeroed now, not at the next compaction: an erased (or expired) record's vectors must
        # leave memory with it, and a compaction may be a long way off.
        self._rows[start : start + pieces] = 0
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

    def search(self, queries: np.ndarray, limit: int, now: float) -> tuple[list[tuple[IndexedRecord, float]], int]:
        """The ``limit`` records most similar to any row of ``queries`` (float [q, dimension],
        unit rows), most similar first, ties by generation id; and the live rows compared.
        A record's similarity is the best over its rows and the query rows. Rows of removed
        records and of those expired by ``now`` are neither returned nor counted."""
        queries = np.asarray(queries, np.float32)
        best = np.full(len(self._records), -np.inf, np.float32)  # by slot
        compared = 0
        if len(queries):
            for start in range(0, self._used, CHUNK_ROWS):
                compared += self._search_chunk(queries, start, min(start + CHUNK_ROWS, self._used), now, best)
        return self._top(best, limit), compared

    def _search_chunk(self, queries: np.ndarray, start: int, stop: int, now: float, best: np.ndarray) -> int:
        """Fold rows [start, stop) into ``best``; how many of them were live."""
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
        if not live.all():
            owners, similarity = owners[live], similarity[live]
        # owners is non-decreasing: each run of one owner is one record's rows (a record may
        # straddle two chunks, hence the maximum with what an earlier chunk found)
        runs = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
        slots = owners[runs]
        best[slots] = np.maximum(best[slots], np.maximum.reduceat(similarity, runs))
        return len(owners)

    def _top(self, best: np.ndarray, limit: int) -> list[tuple[IndexedRecord, float]]:
        found = np.flatnonzero(best > -np.inf)
        if limit <= 0 or not len(found):
            return []
        values = best[found]
        if len(found) > limit:
            # everything tied with the limit-th best stays in, so the order by id below decides ties
            kth = np.partition(values, len(found) - limit)[len(found) - limit]
            found, values = found[values >= kth], values[values >= kth]
        records = [self._records[slot] for slot in found]
        order = sorted(range(len(found)), key=lambda i: (-values[i], records[i].generation_id))[:limit]
        # float16 rounding can take a product of unit rows a little past 1
        return [(records[i], float(np.clip(values[i], -1.0, 1.0))) for i in order]

    def _reserve(self, rows: int) -> None:
        capacity = len(self._rows)
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2
        self._resize(capacity)

    def _resize(self, capacity: int) -> None:
        used = self._used
        rows = np.zeros((capacity, self.dimension), np.float16)
        owner = np.full(capacity, -1, np.int64)
        expires = np.zeros(capacity, np.float64)
        rows[:used], owner[:used], expires[:used] = self._rows[:used], self._owner[:used], self._expires[:used]
        self._rows, self._owner, self._expires = rows, owner, expires

    def _compact(self) -> None:
        """Squeeze out dead rows and slots, keeping the order (so runs of owners stay runs),
        and give back memory down to twice the live rows."""
        keep = self._owner[: self._used] >= 0
        live_slots = [slot for slot, record in enumerate(self._records) if record is not None]
        renumber = np.full(len(self._records), -1, np.int64)
        renumber[live_slots] = np.arange(len(live_slots))
        self._rows = self._rows[: self._used][keep]
        self._owner = renumber[self._owner[: self._used][keep]]
        self._expires = self._expires[: self._used][keep]
        self._used, self._dead = len(self._rows), 0
        self._resize(max(_MIN_CAPACITY, 2 * self._used))
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
