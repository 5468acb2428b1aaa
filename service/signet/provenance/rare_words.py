"""A piece's rare words: the fingerprint that tells a rewording from an answer on the same topic.

all-MiniLM-L6-v2 places a rewording of a generation and another answer to the same prompt
about equally close (bench/provenance_headroom.py: at the similarity that finds 0.90 of the
model's paraphrases it also matches 0.250 of other answers to the same prompts). What a
rewording keeps are the words it cannot replace without saying something else: names,
identifiers, technical terms, numbers with units. Those are the rare ones, so each piece
(provenance/fingerprint.py) becomes a tf-idf vector, and two pieces' cosine is their
rare-word similarity (the same bench: 0.015 of other answers at the bar that finds 0.90).

The weights are scikit-learn's TfidfVectorizer formula, sublinear: (1 + ln tf) x
(1 + ln((D + 1) / (df + 1))), rows of unit length. scikit-learn is not a dependency and
this is its one use, so the formula is written out.

- The document frequencies are those of D documentation paragraphs, the registry's
  calibration corpus (bench/provenance_corpus.py), shipped as ``document_frequencies.tsv.gz``
  (bench/rare_word_table.py writes it). A term in fewer than MIN_DOCUMENT_FREQUENCY of them
  is left out of the file and counts as unseen (df 0): the rarest weight.
- Terms are hashed into BUCKETS columns (BLAKE2b), so a fingerprint is a sparse row of
  column numbers and weights, and a term never seen in the table still has a column. Two
  terms share a column with probability 1 / BUCKETS: of 80 terms against 80, 0.6 %.
- The hash is not keyed: anyone holding a fingerprint can test which words a piece has
  (docs/SECURITY.md). It is kept with the same retention and erasure as the vectors.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import math
import re
from functools import cache
from importlib import resources

import numpy as np
import scipy.sparse

from signet.provenance.significance import SimilarityNull

BUCKETS = 1 << 20
MIN_DOCUMENT_FREQUENCY = 2
# A piece with fewer distinct terms has no rare-word fingerprint (an all-zero row): a table under
# a header of 4 words, or a list of numbers, would match any other like it at cosine 1. A piece
# of prose of 40 words (fingerprint.MIN_PIECE_WORDS; only a text shorter than that has a shorter
# piece) has about 30 distinct terms.
MIN_TERMS = 20
TABLE = "document_frequencies.tsv.gz"
# A term: a letter a-z, then letters a-z, digits, apostrophes or hyphens. Lower-cased first.
# Numbers alone are left out: "3" and "2024" are everywhere and a rewording keeps or drops them
# freely. ASCII only: "café" is "caf", and a text in another script has no terms at all.
TERM = re.compile(r"[a-z][a-z0-9'-]+")


@cache
def document_frequencies() -> tuple[int, dict[str, int]]:
    """(D, {term: df}) from the shipped table: its first line is D, then ``term<TAB>df``."""
    table = resources.files(__package__).joinpath(TABLE)
    with table.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        documents = int(next(lines))
        frequencies = {}
        for line in lines:
            term, _, count = line.rstrip("\n").partition("\t")
            frequencies[term] = int(count)
    return documents, frequencies


def column(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little") % BUCKETS


def terms(text: str) -> collections.Counter[str]:
    return collections.Counter(TERM.findall(text.lower()))


def fingerprints(texts: list[str]) -> scipy.sparse.csr_matrix:
    """float32 [len(texts), BUCKETS]: each text's tf-idf row, unit length (all zero for a text
    with fewer than MIN_TERMS distinct terms). Columns are sorted within each row and never repeated."""
    documents, frequencies = document_frequencies()
    indptr, indices, weights = [0], [], []
    for text in texts:
        row: dict[int, float] = collections.defaultdict(float)
        counted = terms(text)
        if len(counted) < MIN_TERMS:
            counted.clear()
        for term, count in counted.items():
            idf = 1.0 + math.log((documents + 1) / (frequencies.get(term, 0) + 1))
            row[column(term)] += (1.0 + math.log(count)) * idf
        order = sorted(row)
        values = np.array([row[index] for index in order], np.float64)
        norm = math.sqrt(float(values @ values)) if len(values) else 1.0
        indices.extend(order)
        weights.extend((values / norm).tolist())
        indptr.append(len(indices))
    return scipy.sparse.csr_matrix(
        (np.array(weights, np.float32), np.array(indices, np.int32), np.array(indptr, np.int64)),
        shape=(len(texts), BUCKETS),
    )


# The registry size a rare-word p-value is computed for, at the least: the pieces of about
# 100,000 generations. A smaller registry is counted as this large, which can only raise
# p-values. Why: the null below is fitted on documentation against generations, mostly on
# other topics, and it is too light for a text on the very prompt of a record. The model's
# other answers to the bench's prompts (other seeds, never recorded) passed alpha / 2 against
# 1,200 generations at 10 of 200 with p-values for those 1,200, and at 0 of 200 with p-values
# for 100,000 (bench/provenance_headroom.py, docs/PROVENANCE.md).
MIN_VECTORS = 140_000
# Fitted by `.venv/bin/python -m bench.provenance_headroom --null-only` (docs/PROVENANCE.md has
# the run): the rare-word cosines of every pair of a stored documentation paragraph (as the
# query) and a piece of one of 1,000 generations, 138,500,000 pairs, a generalised Pareto tail
# above their 1 - 1e-4 quantile (u 0.1461, shape 0.0873, scale 0.01831). Generations, not
# documentation, are the records: documentation against documentation shares its jargon.
# Then tail_fraction is raised from 1e-4 to 4.6e-4: fitted on four fifths of the generations,
# the tail underestimated the fifth left out by up to 4.58 times (at cosine 0.35; the other
# folds were overestimated), so the tail a registry meets depends on its topics this much.
RARE_WORD_NULL = SimilarityNull(threshold=0.1461, tail_fraction=4.6e-4, shape=0.0873, scale=0.01831)


def to_bytes(fingerprint: scipy.sparse.csr_matrix) -> bytes:
    """A fingerprint as stored: each row's term count (uint16), then the columns (int32), then the
    weights (float16), little-endian."""
    counts = np.diff(fingerprint.indptr)
    if len(counts) and counts.max() > np.iinfo(np.uint16).max:  # a generation has at most 4,096 tokens
        raise ValueError("a piece of more than 65,535 distinct terms cannot be stored")
    return (
        counts.astype("<u2").tobytes()
        + fingerprint.indices.astype("<i4").tobytes()
        + fingerprint.data.astype("<f2").tobytes()
    )


def from_bytes(blob: bytes, pieces: int) -> scipy.sparse.csr_matrix:
    """``to_bytes``'s inverse, for a fingerprint of ``pieces`` rows; ValueError when ``blob`` is not one."""
    if len(blob) < 2 * pieces:
        raise ValueError(f"a rare-word fingerprint of {pieces} rows is not {len(blob)} bytes")
    counts = np.frombuffer(blob, "<u2", count=pieces).astype(np.int64)
    total = int(counts.sum())
    if len(blob) != 2 * pieces + 6 * total:
        raise ValueError(f"a rare-word fingerprint of {pieces} rows and {total} terms is not {len(blob)} bytes")
    columns = np.frombuffer(blob, "<i4", count=total, offset=2 * pieces)
    weights = np.frombuffer(blob, "<f2", count=total, offset=2 * pieces + 4 * total)
    if total and (columns.min() < 0 or columns.max() >= BUCKETS):
        raise ValueError("a rare-word fingerprint's column is out of range")
    indptr = np.concatenate(([0], np.cumsum(counts)))
    # Damage, whatever the bytes: each row's columns strictly increase (as fingerprints writes
    # them), and each row is of unit length (float16 weights: within 1%) or empty.
    starts = np.zeros(total, bool)
    starts[indptr[:-1][counts > 0]] = True
    if np.any((np.diff(columns.astype(np.int64)) <= 0) & ~starts[1:]):
        raise ValueError("a rare-word fingerprint repeats or disorders its columns")
    rows = np.repeat(np.arange(pieces), counts)
    squares = np.bincount(rows, weights=weights.astype(np.float64) ** 2, minlength=pieces)
    if not np.all(np.isfinite(squares)) or np.any((counts > 0) & ((squares < 0.99) | (squares > 1.01))):
        raise ValueError("a rare-word fingerprint's rows are not of unit length")
    return scipy.sparse.csr_matrix((weights.astype(np.float32), columns, indptr), shape=(pieces, BUCKETS))
