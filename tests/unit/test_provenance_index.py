"""signet.provenance.index: the exact search against a brute-force numpy reference.

Every test draws from a fixed seed, so each runs the same way every time: no false failures
by chance. The reference works from the same float16-rounded rows the index keeps, in
float64, so the only differences left are float32 rounding (below 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from signet.provenance import index as index_module
from signet.provenance.index import VectorIndex

DIMENSION = 384
NOW = 1_000_000.0
FAR = NOW + 86_400.0


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    rows = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def filled(rng: np.random.Generator, records: int) -> tuple[VectorIndex, dict[str, np.ndarray]]:
    """An index of ``records`` records of 1 to 5 pieces each, and each one's vectors."""
    index, vectors = VectorIndex(DIMENSION), {}
    for number in range(records):
        generation_id = f"gen-{number:04d}"
        vectors[generation_id] = unit_rows(rng, int(rng.integers(1, 6)))
        assert index.add(generation_id, "key-1", NOW - 10, FAR, vectors[generation_id])
    return index, vectors


def reference(vectors: dict[str, np.ndarray], queries: np.ndarray, rounded: bool = True) -> list[tuple[str, float]]:
    """Every record with its best similarity, most similar first, ties by id."""
    scored = []
    for generation_id, rows in vectors.items():
        rows = rows.astype(np.float16) if rounded else rows
        scored.append((generation_id, float((rows.astype(np.float64) @ queries.astype(np.float64).T).max())))
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def found(index: VectorIndex, queries: np.ndarray, limit: int, now: float = NOW) -> list[tuple[str, float]]:
    results, _ = index.search(queries, limit, now)
    return [(record.generation_id, similarity) for record, similarity in results]


def test_the_search_is_the_brute_force_one():
    rng = np.random.default_rng(1)
    index, vectors = filled(rng, 300)
    # query rows near three records' pieces (paraphrases), and two unrelated rows
    near = [vectors["gen-0007"][0], vectors["gen-0123"][-1], vectors["gen-0250"][0]]
    queries = unit_rows(rng, 2)
    queries = np.vstack([queries, *(row + 0.3 * unit_rows(rng, 1)[0] for row in near)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    expected = reference(vectors, queries)
    results, compared = index.search(queries, 300, NOW)
    assert compared == sum(len(rows) for rows in vectors.values())
    assert [record.generation_id for record, _ in results] == [generation_id for generation_id, _ in expected]
    assert np.allclose([similarity for _, similarity in results], [similarity for _, similarity in expected], atol=1e-5)
    assert {record.generation_id for record, _ in results[:3]} == {"gen-0007", "gen-0123", "gen-0250"}
    assert results[0][0].key_id == "key-1" and results[0][0].created_at == NOW - 10


def test_float16_rows_stay_within_2e_3_of_the_exact_similarity():
    rng = np.random.default_rng(2)
    index, vectors = filled(rng, 200)
    queries = unit_rows(rng, 4)
    exact = dict(reference(vectors, queries, rounded=False))
    worst = max(abs(similarity - exact[generation_id]) for generation_id, similarity in found(index, queries, 200))
    # 2.9e-5 here; at most 2**-11 for unit rows. Above 1e-6, float32's rounding: the rows really are float16
    assert 1e-6 < worst < 2e-3


def test_the_limit_keeps_the_best():
    rng = np.random.default_rng(3)
    index, vectors = filled(rng, 100)
    queries = unit_rows(rng, 3)
    everything = found(index, queries, 100)
    assert found(index, queries, 7) == everything[:7]
    assert found(index, queries, 0) == []
    assert len(found(index, queries, 1000)) == 100


def test_ties_are_ordered_by_generation_id():
    rng = np.random.default_rng(4)
    index, row = VectorIndex(DIMENSION), unit_rows(rng, 1)
    for generation_id in ("c", "a", "d", "b"):
        index.add(generation_id, None, NOW, FAR, row)
    assert [generation_id for generation_id, _ in found(index, row, 3)] == ["a", "b", "c"]


def test_a_chunked_search_equals_one_over_all_rows(monkeypatch):
    """With 7 rows a chunk, records straddle chunks: their best row may lie in either."""
    rng = np.random.default_rng(5)
    index, _ = filled(rng, 60)
    queries = unit_rows(rng, 5)
    whole = index.search(queries, 60, NOW)
    monkeypatch.setattr(index_module, "CHUNK_ROWS", 7)
    chunked = index.search(queries, 60, NOW)
    assert [record.generation_id for record, _ in chunked[0]] == [record.generation_id for record, _ in whole[0]]
    assert np.allclose([s for _, s in chunked[0]], [s for _, s in whole[0]], atol=1e-6)
    assert chunked[1] == whole[1]


def test_expired_records_are_neither_returned_nor_counted():
    rng = np.random.default_rng(6)
    index = VectorIndex(DIMENSION)
    rows = unit_rows(rng, 5)
    index.add("lasting", None, NOW, FAR, rows[:2])
    index.add("brief", "key-2", NOW, NOW + 60, rows[2:5])
    results, compared = index.search(rows, 10, NOW + 59)
    assert {record.generation_id for record, _ in results} == {"lasting", "brief"} and compared == 5
    results, compared = index.search(rows, 10, NOW + 60)  # expires_at itself: gone
    assert [record.generation_id for record, _ in results] == ["lasting"] and compared == 2
    assert index.num_live_rows == 5 and len(index) == 2  # hidden, not yet dropped
    assert index.drop_expired(NOW + 60) == 1
    assert index.num_live_rows == 2 and len(index) == 1 and index.get("brief") is None
    assert index.add("brief", "key-3", NOW + 60, NOW + 120, rows[2:3])  # the id is free again
    assert index.get("brief").key_id == "key-3"


def test_removed_records_are_gone():
    rng = np.random.default_rng(7)
    index, vectors = filled(rng, 20)
    queries = vectors["gen-0003"][:1]
    assert found(index, queries, 1)[0][0] == "gen-0003"
    assert index.remove("gen-0003") and not index.remove("gen-0003")
    del vectors["gen-0003"]
    assert [generation_id for generation_id, _ in found(index, queries, 20)] == [
        generation_id for generation_id, _ in reference(vectors, queries)
    ]
    assert index.num_live_rows == sum(len(rows) for rows in vectors.values()) and len(index) == 19


def test_removed_and_expired_rows_are_zeroed_at_once():
    """Their bytes leave memory as they leave the index, not at a compaction (none happens here)."""
    rng = np.random.default_rng(10)
    index, vectors = filled(rng, 20)
    index.add("brief", None, NOW, NOW + 60, unit_rows(rng, 2))
    spans = {generation_id: index._spans[index._slots[generation_id]] for generation_id in ("gen-0003", "brief")}
    assert index.remove("gen-0003") and index.drop_expired(NOW + 60) == 1
    assert index._dead == sum(pieces for _, pieces in spans.values())  # still there: not compacted
    for start, pieces in spans.values():
        assert pieces and not index._rows[start : start + pieces].any()
    kept = index._rows[: index._used]
    assert not any((kept == row).all(axis=1).any() for row in vectors["gen-0003"].astype(np.float16))
    assert found(index, vectors["gen-0004"][:1], 1)[0][0] == "gen-0004"  # the others untouched


def test_compaction_keeps_the_results():
    """Removing most records compacts the rows (more than half dead); what is left is
    searched as before, and records added afterwards too."""
    rng = np.random.default_rng(8)
    index, vectors = filled(rng, 120)
    capacity = len(index._rows)
    for number in range(0, 120, 3):
        for generation_id in (f"gen-{number:04d}", f"gen-{number + 1:04d}"):
            assert index.remove(generation_id)
            del vectors[generation_id]
    assert len(index._rows) < capacity  # it did compact, and gave memory back
    vectors["late"] = unit_rows(rng, 3)
    index.add("late", None, NOW, FAR, vectors["late"])
    queries = unit_rows(rng, 4)
    expected = reference(vectors, queries)
    assert [generation_id for generation_id, _ in found(index, queries, 100)] == [g for g, _ in expected]
    _, compared = index.search(queries, 1, NOW)
    assert compared == index.num_live_rows == sum(len(rows) for rows in vectors.values())
    index.drop_expired(FAR)  # the expiry heap was rebuilt with the survivors
    assert len(index) == 0 and index.num_live_rows == 0


def test_a_second_add_of_an_id_is_ignored():
    rng = np.random.default_rng(9)
    index = VectorIndex(DIMENSION)
    first, second = unit_rows(rng, 2), unit_rows(rng, 4)
    assert index.add("same", "key-1", NOW, FAR, first, text="first", locator="1-0")
    assert not index.add("same", "key-2", NOW, FAR, second, text="second", locator="2-0")
    record = index.get("same")
    assert (record.key_id, record.text, record.locator) == ("key-1", "first", "1-0")
    assert index.num_live_rows == 2


def test_bad_shapes_and_empty_searches():
    index = VectorIndex(DIMENSION)
    assert index.search(np.zeros((1, DIMENSION), np.float32), 5, NOW) == ([], 0)
    with pytest.raises(ValueError):
        index.add("x", None, NOW, FAR, np.zeros((2, DIMENSION - 1), np.float32))
    with pytest.raises(ValueError):
        index.add("x", None, NOW, FAR, np.zeros((0, DIMENSION), np.float32))
    assert len(index) == 0
