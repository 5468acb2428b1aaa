"""Records for the generation registry's store tests (tests/unit/test_sqlite_registry.py and
tests/redis/test_provenance_store.py): random unit vectors and a record that lives an hour."""

from __future__ import annotations

import time

import numpy as np

from signet.registry.store import GenerationRecord


def unit_rows(seed: int, count: int, dimension: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def record(
    generation_id: str,
    vectors: np.ndarray,
    tenant: str = "acme",
    seconds: float = 3600.0,
    key_id: str | None = "key-1",
    text: str | None = None,
) -> GenerationRecord:
    now = time.time()
    return GenerationRecord(generation_id, tenant, vectors, key_id, now, now + seconds, text)
