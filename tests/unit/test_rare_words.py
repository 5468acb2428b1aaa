"""signet.provenance.rare_words: the rare-word fingerprint, its weights and its stored form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse

from signet.provenance import rare_words
from signet.provenance.rare_words import BUCKETS, RARE_WORD_NULL, fingerprints, from_bytes, to_bytes
from tests.registry_records import PIECES, REWORDED_PIECE

FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa quebec romeo "
    "sierra tango"
)  # 20 distinct terms, each once


def test_rows_are_unit_tf_idf_vectors_of_the_pieces_terms():
    matrix = fingerprints([f"The the THE tarball kubectl {FILLER}", "", "3 2024 ! " * 30])
    assert matrix.shape == (3, BUCKETS) and matrix.dtype == np.float32
    first = matrix[0]
    assert first.nnz == 23 and np.all(np.diff(first.indices) > 0)  # sorted columns, each term once
    assert math.isclose(float(first.multiply(first).sum()), 1.0, rel_tol=1e-6)
    assert matrix[1].nnz == 0 and matrix[2].nnz == 0  # no terms (numbers alone are not terms): an all-zero row
    documents, frequencies = rare_words.document_frequencies()
    assert documents == 100_000 and frequencies["the"] > frequencies["tarball"] >= rare_words.MIN_DOCUMENT_FREQUENCY
    assert "kubectl" not in frequencies  # in fewer than 2 of the paragraphs: weighed as unseen
    weight = dict(zip(first.indices.tolist(), first.data.tolist(), strict=True))
    the, tarball, kubectl = (weight[rare_words.column(term)] for term in ("the", "tarball", "kubectl"))
    # "the" three times (1 + ln 3) but in most documents; "tarball" once and rare: it weighs more
    idf = [1 + math.log((documents + 1) / (frequencies.get(term, 0) + 1)) for term in ("the", "tarball", "kubectl")]
    assert tarball / the == pytest.approx(idf[1] / ((1 + math.log(3)) * idf[0]), rel=1e-5)
    assert kubectl / tarball == pytest.approx(idf[2] / idf[1], rel=1e-5) and kubectl > tarball > the


def test_a_piece_of_few_distinct_terms_has_no_fingerprint():
    """A table under a header of 4 words would match any other such table at cosine 1."""
    table = "Year | Revenue | Profit | Employees\n" + "\n".join(
        f"{2000 + n} | {n * 7} | {n * 3} | {n * 11}" for n in range(30)
    )
    table_row, nineteen, twenty = fingerprints([table, " ".join(FILLER.split()[:19]), FILLER])
    assert table_row.nnz == 0 and nineteen.nnz == 0 and twenty.nnz == rare_words.MIN_TERMS
    assert len(table.split()) > 40  # long enough for a verdict: the count that matters is of terms


def test_a_rewording_that_keeps_the_rare_words_is_close_and_another_topic_is_not():
    original, kept, other = fingerprints([*PIECES[:1], REWORDED_PIECE, PIECES[1]])
    assert (original @ kept.T).toarray()[0, 0] > 0.6 > 0.1 > (original @ other.T).toarray()[0, 0]


def test_the_stored_form_round_trips_and_refuses_what_it_is_not():
    matrix = fingerprints([*PIECES, ""])
    back = from_bytes(to_bytes(matrix), 3)
    assert back.shape == matrix.shape and np.array_equal(back.indices, matrix.indices)
    assert np.abs(back.toarray() - matrix.toarray()).max() < 1e-3  # float16 weights
    blob = to_bytes(matrix)
    for damaged, pieces in ((blob[:-1], 3), (blob, 2), (blob[:3], 3), (b"", 1)):
        with pytest.raises(ValueError):
            from_bytes(damaged, pieces)
    out_of_range = scipy.sparse.csr_matrix(([1.0], [0], [0, 1]), shape=(1, BUCKETS))
    out_of_range.indices[0] = BUCKETS  # a column no fingerprint has
    with pytest.raises(ValueError):
        from_bytes(to_bytes(out_of_range), 1)
    repeated = scipy.sparse.csr_matrix(([0.6, 0.8], [7, 7], [0, 2]), shape=(1, BUCKETS))
    repeated.indices[1] = 7  # the constructor keeps them as given: a row with one column twice
    with pytest.raises(ValueError):
        from_bytes(to_bytes(repeated), 1)
    for weight in (float("nan"), 60000.0, 0.01):  # rows are unit or empty: a damaged weight is refused
        damaged = matrix[:1].copy()
        damaged.data[0] = weight
        with pytest.raises(ValueError):
            from_bytes(to_bytes(damaged), 1)


def test_the_null_is_conservative_in_form():
    assert RARE_WORD_NULL.shape >= 0.0 and 1e-4 <= RARE_WORD_NULL.tail_fraction < 1
    assert RARE_WORD_NULL.exceedance(0.5) < RARE_WORD_NULL.exceedance(0.3) < RARE_WORD_NULL.exceedance(0.2) < 1
