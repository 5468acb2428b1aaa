"""Provenance for ``/detect``: find the caller's generations that a text rewords."""

from __future__ import annotations

import time
from typing import TypeVar

import numpy as np

from signet import metrics
from signet.api.auth import Caller
from signet.api.embedding import embed_now
from signet.api.errors import ApiError
from signet.api.provenance.protocol import CombinedVerdict, ProvenanceMatch, ProvenanceReport
from signet.api.provenance.recorder import registry_tenant
from signet.api.state import ServiceState
from signet.provenance import rare_words
from signet.provenance.fingerprint import MIN_PIECE_WORDS, pieces
from signet.provenance.rare_words import MIN_VECTORS, RARE_WORD_NULL
from signet.provenance.significance import Outcome, combine, p_value, smallest_p_value
from signet.registry.store import GenerationStore, StoreUnavailable

R = TypeVar("R")  # a DetectResponse: api/detect imports this module, not the reverse
MATCHES_REPORTED = 5
# A text is searched by at most 8 of its pieces (about 960 words; a longer text by 8 spread
# evenly over it, its first and last included, so a rewording cannot hide behind a long
# preamble): each piece is a forward pass of the embedding model (up to 256 word pieces:
# about 40 ms of two cores here).
MAX_QUERY_PIECES = 8
# Below this many words a text is searched and its matches shown, but it gets no verdict:
# a sentence or two is too little meaning to tell a rewording from a shared stock phrase.
MIN_QUERY_WORDS = MIN_PIECE_WORDS
# Each item that asks for provenance scans the tenant's whole registry once, at a cost that
# grows with the registry, not with the item (1.1 s at a million vectors here, most of it
# converting float16 rows, and 2.6 to 3 times that with SIGNET_PROVENANCE_RARE_WORDS:
# bench/provenance_scale.py): a batch may ask for at most 8 scans,
# as 8 requests would, and so embeds at most 64 pieces (about 2.5 s of CPU).
MAX_BATCH_PROVENANCE_SEARCHES = 8


def require_store(state: ServiceState, status: int = 422, field: str | None = "provenance") -> GenerationStore:
    if state.generation_store is None:
        raise ApiError(status, "the generation registry is off here (SIGNET_PROVENANCE=false)", field)
    return state.generation_store


def query_pieces(text: str) -> tuple[list[str], bool]:
    """The pieces of ``text`` that are searched, and whether some were left out."""
    found = pieces(text, max_pieces=len(text))
    if len(found) <= MAX_QUERY_PIECES:
        return found, False
    chosen = np.linspace(0, len(found) - 1, MAX_QUERY_PIECES).round().astype(int)
    return [found[index] for index in chosen], True


def provenance_report(state: ServiceState, caller: Caller, text: str, alpha: float) -> ProvenanceReport:
    """The caller's generations closest to ``text`` by meaning and by rare words, each with the
    p-values of so close a match among every comparison made (provenance/significance.py).
    Runs in the calling thread."""
    store = require_store(state)
    started = time.perf_counter()
    searched, truncated = query_pieces(text)
    vectors = embed_now(state, searched)
    # Without rare words kept (SIGNET_PROVENANCE_RARE_WORDS=false) none are searched.
    fingerprints = rare_words.fingerprints(searched) if state.settings.provenance_rare_words else None
    try:
        result = store.search(registry_tenant(caller.queue_tenant), vectors, MATCHES_REPORTED, fingerprints)
    except StoreUnavailable as error:
        raise ApiError(503, f"provenance: {error}", "provenance", headers={"Retry-After": "1"}) from error
    comparisons = len(searched) * result.num_vectors
    # Rare words are tested as if the registry were at least MIN_VECTORS large (rare_words.py);
    # a text none of whose pieces has a fingerprint (too few terms) can match nothing.
    rare_word_comparisons = 0
    if result.num_vectors and fingerprints is not None and fingerprints.nnz:
        rare_word_comparisons = len(searched) * max(result.num_vectors, MIN_VECTORS)
    matches = [
        ProvenanceMatch(
            generation_id=match.generation_id,
            similarity=match.similarity,
            p_value=p_value(match.similarity, comparisons),
            rare_word_similarity=None if fingerprints is None else match.rare_word_similarity,
            rare_word_p_value=(
                None
                if fingerprints is None
                else p_value(match.rare_word_similarity, rare_word_comparisons, RARE_WORD_NULL)
            ),
            key_id=match.key_id,
            created_at=match.created_at,
            text=match.text,
        )
        for match in result.matches
    ]
    metrics.PROVENANCE_SEARCH_DURATION.observe(time.perf_counter() - started)
    best = min((match.p_value for match in matches), default=1.0)
    best_rare = min((match.rare_word_p_value for match in matches if match.rare_word_p_value is not None), default=1.0)
    smallest = smallest_p_value(comparisons)
    smallest_rare = smallest_p_value(rare_word_comparisons, RARE_WORD_NULL)
    verdict = "match" if best < alpha else "no_match"
    if len(text.split()) < MIN_QUERY_WORDS:
        verdict, best, smallest, best_rare, smallest_rare = "insufficient_evidence", 1.0, 1.0, 1.0, 1.0
    return ProvenanceReport(
        verdict=verdict,
        p_value=best,
        smallest_p_value=smallest,
        rare_word_p_value=None if fingerprints is None else best_rare,
        rare_word_smallest_p_value=None if fingerprints is None else smallest_rare,
        matches=matches,
        num_vectors=result.num_vectors,
        num_pieces=len(searched),
        truncated=truncated,
    )


def watermark_evidence(response) -> float:
    """A detection response's (DetectResponse) watermark evidence for the combined test: its
    best key's corrected p-value; a key without enough evidence was not tested, so it counts as 1."""
    return 1.0 if response.verdict == "insufficient_evidence" else response.corrected_p_value


def meaning_outcome(report: ProvenanceReport) -> Outcome:
    """The registry's test by meaning, as the combined verdict takes it.

    Only that one: the test by rare words is reported, not combined. Its null (documentation
    against generations) holds for text on another topic than every record, and text on the
    very topic of a record shares its rare words without rewording it: two different banana
    bread recipes, one a person's and one a generation, have a rare-word cosine of 0.664,
    p = 4.2e-5 against a registry of 140,000 vectors; two tables under one header of 4 words,
    1.0. A verdict must hold for such text (docs/PROVENANCE.md)."""
    return Outcome("meaning", report.p_value, report.smallest_p_value)


def with_provenance(response: R, report: ProvenanceReport) -> R:
    """A detection ``response`` (DetectResponse) with the provenance report and the combined test."""
    test = combine(watermark_evidence(response), [meaning_outcome(report)], response.alpha)
    combined = CombinedVerdict(
        verdict="not_found" if test.decided_by is None else "generated_here",
        p_value=test.p_value,
        decided_by=test.decided_by,
        rule=test.rule,
        tests=list(test.tests),
        rejected=list(test.rejected),
    )
    return response.model_copy(update={"provenance": report, "combined": combined})
