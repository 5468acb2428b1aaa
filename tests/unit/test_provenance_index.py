"""signet.provenance.index: the exact search against a brute-force numpy reference.

Every test draws from a fixed seed, so each runs the same way every time: no false failures
by chance. The reference works from the same float16-rounded rows the index keeps, in
float64, so the only differences left are float32 rounding (below 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

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
    return [(item.record.generation_id, item.similarity) for item in results]


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
    assert [item.record.generation_id for item in results] == [generation_id for generation_id, _ in expected]
    assert np.allclose([item.similarity for item in results], [similarity for _, similarity in expected], atol=1e-5)
    assert {item.record.generation_id for item in results[:3]} == {"gen-0007", "gen-0123", "gen-0250"}
    assert results[0].record.key_id == "key-1" and results[0].record.created_at == NOW - 10
    assert all(item.rare_word_similarity == 0.0 for item in results)  # none were asked


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
    assert [item.record.generation_id for item in chunked[0]] == [item.record.generation_id for item in whole[0]]
    assert np.allclose([item.similarity for item in chunked[0]], [item.similarity for item in whole[0]], atol=1e-6)
    assert chunked[1] == whole[1]


def test_expired_records_are_neither_returned_nor_counted():
    rng = np.random.default_rng(6)
    index = VectorIndex(DIMENSION)
    rows = unit_rows(rng, 5)
    index.add("lasting", None, NOW, FAR, rows[:2])
    index.add("brief", "key-2", NOW, NOW + 60, rows[2:5])
    results, compared = index.search(rows, 10, NOW + 59)
    assert {item.record.generation_id for item in results} == {"lasting", "brief"} and compared == 5
    results, compared = index.search(rows, 10, NOW + 60)  # expires_at itself: gone
    assert [item.record.generation_id for item in results] == ["lasting"] and compared == 2
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


# ---------------------------------------------------------------- rare words: the sparse part of each row

BUCKETS = 5000


def sparse_rows(rng: np.random.Generator, count: int, terms: int = 40) -> scipy.sparse.csr_matrix:
    """``count`` unit rows of ``terms`` distinct columns each, positive weights (as tf-idf rows are)."""
    columns = np.stack([rng.choice(BUCKETS, terms, replace=False) for _ in range(count)])
    columns.sort(axis=1)
    weights = rng.random((count, terms)).astype(np.float32) + 0.1
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    indptr = np.arange(0, count * terms + 1, terms)
    return scipy.sparse.csr_matrix((weights.ravel(), columns.ravel(), indptr), shape=(count, BUCKETS))


def filled_with_rare_words(rng: np.random.Generator, records: int):
    """An index of ``records`` records of 1 to 5 pieces, each piece with its rare words; and
    each record's (vectors, rare words)."""
    index, rows = VectorIndex(DIMENSION, BUCKETS), {}
    for number in range(records):
        generation_id, pieces = f"gen-{number:04d}", int(rng.integers(1, 6))
        rows[generation_id] = (unit_rows(rng, pieces), sparse_rows(rng, pieces))
        assert index.add(generation_id, None, NOW - 10, FAR, rows[generation_id][0], rare_words=rows[generation_id][1])
    return index, rows


def rare_reference(rows, rare_queries: scipy.sparse.csr_matrix) -> dict[str, float]:
    """Each record's best rare-word cosine, in float64 from the float16-rounded weights the index
    keeps, at most 1 (rounding can take a copy's a little past it; the index clips it as the reference does)."""
    queries = rare_queries.toarray().astype(np.float64)
    best = {}
    for generation_id, (_, fingerprint) in rows.items():
        rounded = fingerprint.toarray().astype(np.float16).astype(np.float64)
        best[generation_id] = min(1.0, float((rounded @ queries.T).max()))
    return best


def found_rare(index: VectorIndex, queries: np.ndarray, rare_queries, limit: int) -> dict[str, float]:
    results, _ = index.search(queries, limit, NOW, rare_queries)
    return {item.record.generation_id: item.rare_word_similarity for item in results}


def test_rare_word_similarities_are_the_brute_force_ones():
    rng = np.random.default_rng(11)
    index, rows = filled_with_rare_words(rng, 200)
    # queries sharing most of two records' pieces' columns (rewordings), and one unrelated
    near = [rows["gen-0017"][1][0], rows["gen-0150"][1][-1]]
    rare_queries = scipy.sparse.vstack([sparse_rows(rng, 1), *near]).tocsr()
    queries = unit_rows(rng, 3)
    expected = rare_reference(rows, rare_queries)
    got = found_rare(index, queries, rare_queries, 200)
    assert got.keys() == expected.keys()
    assert max(abs(got[generation_id] - expected[generation_id]) for generation_id in got) < 1e-5
    assert got["gen-0017"] > 0.99 and got["gen-0150"] > 0.99  # a copy's rows: cosine 1 up to float16


def test_the_limit_keeps_the_best_by_either_similarity():
    """The ``limit`` best by meaning and the ``limit`` best by rare words: a rewording that
    keeps the rare words but not the meaning's vector is still returned."""
    rng = np.random.default_rng(12)
    index, rows = filled_with_rare_words(rng, 100)
    queries = rows["gen-0040"][0][:1]  # closest by meaning: gen-0040
    rare_queries = rows["gen-0077"][1][:1]  # closest by rare words: gen-0077
    results, _ = index.search(queries, 1, NOW, rare_queries)
    assert [item.record.generation_id for item in results] == ["gen-0040", "gen-0077"]
    assert results[1].rare_word_similarity > 0.99 > results[1].similarity
    assert [item.record.generation_id for item in index.search(queries, 1, NOW)[0]] == ["gen-0040"]


def test_a_chunked_rare_word_search_equals_one_over_all_rows(monkeypatch):
    rng = np.random.default_rng(13)
    index, rows = filled_with_rare_words(rng, 60)
    queries, rare_queries = unit_rows(rng, 3), scipy.sparse.vstack([rows["gen-0005"][1][:1], sparse_rows(rng, 2)])
    whole = found_rare(index, queries, rare_queries.tocsr(), 60)
    monkeypatch.setattr(index_module, "CHUNK_ROWS", 7)
    chunked = found_rare(index, queries, rare_queries.tocsr(), 60)
    assert chunked.keys() == whole.keys()
    assert max(abs(chunked[generation_id] - whole[generation_id]) for generation_id in whole) < 1e-6


def test_removed_rare_words_are_zeroed_and_compaction_keeps_the_others():
    rng = np.random.default_rng(14)
    index, rows = filled_with_rare_words(rng, 90)
    slot = index._slots["gen-0003"]
    start, pieces = index._spans[slot]
    first, last = index._term_offsets[start], index._term_offsets[start + pieces]
    assert index.remove("gen-0003")
    del rows["gen-0003"]
    assert last > first and not index._columns[first:last].any() and not index._weights[first:last].any()
    for number in range(0, 90, 3):  # most of the rest: the index compacts
        for generation_id in (f"gen-{number + 1:04d}", f"gen-{number + 2:04d}"):
            assert index.remove(generation_id)
            del rows[generation_id]
    used = index._used
    assert used < sum(len(vectors) for vectors, _ in rows.values()) * 2  # it compacted: 1/3 of 90 records is left
    live_terms = np.diff(index._term_offsets[: used + 1])[index._owner[:used] >= 0]
    assert live_terms.sum() == sum(fingerprint.nnz for _, fingerprint in rows.values())
    rows["late"] = (unit_rows(rng, 2), sparse_rows(rng, 2))
    index.add("late", None, NOW, FAR, rows["late"][0], rare_words=rows["late"][1])
    rare_queries = scipy.sparse.vstack([rows["gen-0006"][1][:1], rows["late"][1][1:], sparse_rows(rng, 1)]).tocsr()
    expected = rare_reference(rows, rare_queries)
    got = found_rare(index, unit_rows(rng, 3), rare_queries, 100)
    assert got.keys() == expected.keys()
    assert max(abs(got[generation_id] - expected[generation_id]) for generation_id in got) < 1e-5


def test_records_without_rare_words_score_zero_and_bad_shapes_are_refused():
    rng = np.random.default_rng(15)
    index = VectorIndex(DIMENSION, BUCKETS)
    index.add("old", None, NOW, FAR, unit_rows(rng, 2))  # kept before rare words were
    index.add("new", None, NOW, FAR, unit_rows(rng, 1), rare_words=sparse_rows(rng, 1))
    assert found_rare(index, unit_rows(rng, 1), sparse_rows(rng, 1), 5)["old"] == 0.0
    with pytest.raises(ValueError):
        index.add("x", None, NOW, FAR, unit_rows(rng, 2), rare_words=sparse_rows(rng, 1))
    assert len(index) == 2
