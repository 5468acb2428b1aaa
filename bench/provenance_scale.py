"""The generation registry at 10,000, 100,000 and 1,000,000 records: ingest throughput,
query latency (p50, p99) and memory per record, for both stores.

    .venv/bin/python -m bench.provenance_scale [--sizes 10000,100000,1000000] [--queries 100]

Synthetic vectors: random unit vectors of all-MiniLM-L6-v2's 384 dimensions, one piece per
record, and queries of 2 pieces (a 120-to-240-word text). Search is exact, so its cost does not
depend on what the vectors hold. Rare words are real: the fingerprints of 120-word pieces of the
stored documentation paragraphs (bench/provenance_corpus.py, run together and cut as
provenance/fingerprint.py cuts), repeated as needed, and queries of 2 pieces of the calibration
paragraphs. Their cost does depend on what they hold: real text shares its common words with
every record, where random columns share almost none.

- *embedded*: a SqliteStore in a temporary folder, one ``add`` per record (as the recorder
  writes). Its first search loads the tenant's index from the file ("cold"); then
  ``--queries`` searches are timed one by one (a quarter as many at 1,000,000 records).
- *distributed*: a RedisStore on a private ``redis-server`` (harness.redis_servers), one
  ``add`` per record (one MULTI round trip each). A second RedisStore, another pod, reads
  the whole log on its first search ("cold"); then the timed searches, each of which first
  asks Redis for new entries (one round trip per shard).

Memory: the process's resident set before and after the cold search (the index), per
record; the SQLite file's size per record; Redis's ``used_memory`` per record.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse

from bench.provenance_calibration import split
from bench.provenance_corpus import load_fillers
from harness.redis_servers import running_redis
from signet.provenance import rare_words
from signet.provenance.fingerprint import FINGERPRINT_DIMENSION, pieces
from signet.redis_link import RedisLink
from signet.registry.redis import RedisStore
from signet.registry.sqlite import SqliteStore
from signet.registry.store import GenerationRecord, GenerationStore

TENANT = "bench"
YEAR = 365 * 86_400.0
BATCH = 10_000  # vectors drawn at a time


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, FINGERPRINT_DIMENSION), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class RareWordRows:
    """Real rare-word fingerprints: ``records`` for the store, ``queries`` to search with."""

    def __init__(self) -> None:
        fillers = load_fillers()
        stored, calibration = split(fillers)
        self.records = self._cut(fillers, stored)
        self.queries = self._cut(fillers, calibration)
        self._rows = [self.records[row : row + 1] for row in range(self.records.shape[0])]  # sliced before timing

    @staticmethod
    def _cut(fillers: list[dict], chosen: np.ndarray) -> scipy.sparse.csr_matrix:
        text = " ".join(fillers[index]["text"] for index in chosen)
        return rare_words.fingerprints(pieces(text, max_pieces=len(text)))

    def record(self, number: int) -> scipy.sparse.csr_matrix:
        return self._rows[number % len(self._rows)]

    def query(self, rng: np.random.Generator) -> scipy.sparse.csr_matrix:
        start = int(rng.integers(0, self.queries.shape[0] - 1))
        return self.queries[start : start + 2]


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def ingest(store: GenerationStore, size: int, rng: np.random.Generator, rows: RareWordRows | None) -> float:
    """Records per second; with ``rows``' rare words, or none."""
    now = time.time()
    began = time.perf_counter()
    for start in range(0, size, BATCH):
        vectors = unit_vectors(rng, min(BATCH, size - start))
        for offset, vector in enumerate(vectors):
            generation_id = f"gen-{start + offset:032x}"
            rare = None if rows is None else rows.record(start + offset)
            store.add(GenerationRecord(generation_id, TENANT, vector[None, :], None, now, now + YEAR, rare_words=rare))
    return size / (time.perf_counter() - began)


def timed_searches(
    reader: GenerationStore, size: int, queries: int, rng: np.random.Generator, rows: RareWordRows | None
) -> str:
    resident = resident_bytes()
    began = time.perf_counter()
    result = reader.search(TENANT, unit_vectors(rng, 2), 5, None if rows is None else rows.query(rng))
    cold = time.perf_counter() - began
    assert result.num_vectors == size, (result.num_vectors, size)
    index_bytes = (resident_bytes() - resident) / size
    latencies = []
    for _ in range(queries if size < 1_000_000 else max(1, queries // 4)):
        query, rare = unit_vectors(rng, 2), None if rows is None else rows.query(rng)
        began = time.perf_counter()
        reader.search(TENANT, query, 5, rare)
        latencies.append(time.perf_counter() - began)
    p50, p99 = np.quantile(latencies, [0.5, 0.99]) * 1000
    return f"{cold:.1f} s | {p50:.1f} | {p99:.1f} | {index_bytes:.0f}"


def embedded(size: int, queries: int, rng: np.random.Generator, rows: RareWordRows | None) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "registry.sqlite3"
        writer = SqliteStore(path, FINGERPRINT_DIMENSION)
        rate = ingest(writer, size, rng, rows)
        writer.close()
        file_bytes = sum(part.stat().st_size for part in Path(folder).iterdir()) / size
        reader = SqliteStore(path, FINGERPRINT_DIMENSION)  # a restart: the index is read from the file
        row = timed_searches(reader, size, queries, rng, rows)
        reader.close()
    return f"| embedded (SQLite) | {switch(rows)} | {size:,} | {rate:,.0f} | {row} | {file_bytes:.0f} (file) |"


def distributed(size: int, queries: int, rng: np.random.Generator, rows: RareWordRows | None) -> str:
    with tempfile.TemporaryDirectory() as folder, running_redis(Path(folder)) as port:
        url = f"redis://127.0.0.1:{port}/0"
        writer_link, reader_link = RedisLink(url, "bench", 10.0), RedisLink(url, "bench", 10.0)
        used = _used_memory(writer_link)
        rate = ingest(RedisStore(writer_link, FINGERPRINT_DIMENSION), size, rng, rows)
        redis_bytes = (_used_memory(writer_link) - used) / size
        row = timed_searches(RedisStore(reader_link, FINGERPRINT_DIMENSION), size, queries, rng, rows)
    return f"| distributed (Redis) | {switch(rows)} | {size:,} | {rate:,.0f} | {row} | {redis_bytes:.0f} (Redis) |"


def switch(rows: RareWordRows | None) -> str:
    return "off" if rows is None else "on"


def _used_memory(link: RedisLink) -> int:
    return int(link.call(lambda client: client.info("memory"))["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--stores", default="embedded,distributed")
    parser.add_argument(
        "--rare-words", default="off,on", help="without and with rare words (SIGNET_PROVENANCE_RARE_WORDS)"
    )
    arguments = parser.parse_args()
    Run = Callable[[int, int, np.random.Generator, RareWordRows | None], str]
    runs: dict[str, Run] = {"embedded": embedded, "distributed": distributed}
    rows = RareWordRows()  # made before anything is timed
    print(
        f"rare words: {rows.records.shape[0]:,} record pieces ({rows.records.nnz:,} terms), "
        f"{rows.queries.shape[0]:,} query pieces",
        flush=True,
    )
    print(
        "| store | rare words | records | ingest (records/s) | cold first search | p50 ms | p99 ms "
        "| index bytes/record (pod) | stored bytes/record |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in (int(value) for value in arguments.sizes.split(",")):
        for name in arguments.stores.split(","):
            for rare in arguments.rare_words.split(","):
                with_rows = rows if rare == "on" else None
                print(runs[name](size, arguments.queries, np.random.default_rng(size), with_rows), flush=True)


if __name__ == "__main__":
    main()
