"""Records for the generation registry's store tests (tests/unit/test_sqlite_registry.py and
tests/redis/test_provenance_store.py): random unit vectors and a record that lives an hour."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse

from signet.registry.store import GenerationRecord

# Pieces of prose with MIN_TERMS distinct terms or more, so each has a rare-word fingerprint, and
# a rewording of the first that keeps its rare words.
PIECES = [
    "Restart the deployment with kubectl rollout restart, then watch the pods come back with kubectl get pods "
    "--watch until every replica reports ready and the old replica set has scaled down to zero.",
    "The gardener pruned the wisteria in late February, before its buds had swollen, cutting each long whip back "
    "to two buds so that next spring the flowers would hang in heavy violet clusters along the pergola.",
]
REWORDED_PIECE = (
    "Watch the pods come back with kubectl get pods --watch after a kubectl rollout restart of the deployment, and "
    "wait until the old replica set has scaled down to zero and every replica reports ready."
)


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
    rare_words: scipy.sparse.csr_matrix | None = None,
) -> GenerationRecord:
    now = time.time()
    return GenerationRecord(generation_id, tenant, vectors, key_id, now, now + seconds, text, rare_words)
