"""How surprising a similarity is, given how many records were searched.

The best similarity among N unrelated records grows with N, so a fixed threshold flags
more and more human texts as the registry grows. Instead each match gets a p-value that
accounts for every comparison made:

1. **One pair.** ``SimilarityNull.exceedance(s)`` is the probability that one piece of an
   unrelated text and one stored piece have cosine similarity at least ``s``. Above the
   threshold ``u`` (the pairs' 1 - ``tail_fraction`` quantile) it is a generalised Pareto
   tail fitted by peaks over threshold (Pickands; Coles 2001, ch. 4) to the similarities
   of unrelated pairs, ``bench/provenance_calibration.py``. A fitted shape below 0 (a
   bounded tail: cosines cannot pass 1) is raised to 0, the exponential tail, which is
   heavier, so p-values err high. Below ``u`` the exceedance is taken as 1.
2. **The search.** A query of q pieces against a store of N vectors makes M = q N
   comparisons. The best match's p-value is ``min(1, M * exceedance(s))``: the union
   bound, valid whatever the dependence between records (near-duplicates included).

Checked empirically: human texts against a store of 10,000 and 100,000 unrelated records
flag at no more than the nominal rate (docs/PROVENANCE.md).

The registry has two such p-values, each with its own null: by meaning (all-MiniLM-L6-v2
vectors, CALIBRATED_NULL below) and by rare words (provenance/rare_words.py, RARE_WORD_NULL).
``combine`` makes one test at level alpha of the watermark's and any of them; /detect's
combined verdict takes the one by meaning only (api/provenance/search.py says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SimilarityNull:
    threshold: float  # u
    tail_fraction: float  # P(S > u) for one unrelated pair
    shape: float  # xi of the generalised Pareto tail, at least 0 (see the module docstring)
    scale: float  # sigma

    def exceedance(self, similarity: float) -> float:
        """P(S >= similarity) for one unrelated pair of pieces; 1 below the threshold."""
        if similarity <= self.threshold:
            return 1.0
        excess = (similarity - self.threshold) / self.scale
        if self.shape == 0.0:
            return self.tail_fraction * math.exp(-excess)
        return self.tail_fraction * (1.0 + self.shape * excess) ** (-1.0 / self.shape)


# Fitted by `.venv/bin/python -m bench.provenance_calibration` on 2026-12-05 (docs/PROVENANCE.md
# has the run): 196,905,916 pairs of all-MiniLM-L6-v2 vectors of unrelated human-written
# documentation; the 1 - 1e-4 quantile is 0.5657, the fitted shape -0.0249 (raised to 0).
# Against the empirical tail: P(S >= 0.75) 1.15e-6 (model 1.55e-6), P(S >= 0.85) 1.12e-7
# (model 1.61e-7).
CALIBRATED_NULL = SimilarityNull(threshold=0.5657, tail_fraction=1e-4, shape=0.0, scale=0.04421)


def p_value(similarity: float, num_comparisons: int, null: SimilarityNull = CALIBRATED_NULL) -> float:
    """The best of ``num_comparisons`` unrelated pairs reaches ``similarity`` with at most this
    probability (the union bound)."""
    if num_comparisons <= 0:
        return 1.0
    # A cosine is at most 1; float16 rows can read a copy's as 1.0005, which must not beat a
    # copy's own p-value (smallest_p_value).
    return min(1.0, num_comparisons * null.exceedance(min(similarity, 1.0)))


def smallest_p_value(num_comparisons: int, null: SimilarityNull = CALIBRATED_NULL) -> float:
    """The smallest p-value a search of ``num_comparisons`` can give: a copy, similarity 1."""
    return p_value(1.0, num_comparisons, null)


Evidence = Literal["watermark", "provenance", "both"]
# The tests a combined verdict can take part in: the watermark's, and the registry's two, by
# meaning (all-MiniLM-L6-v2 vectors) and by rare words (provenance/rare_words.py).
TestName = Literal["watermark", "meaning", "rare_words"]
# Which levels the tests of /detect's combined verdict had (the watermark and the test by
# meaning): alpha / 2 each, or the whole of alpha for the watermark alone (CombinedTest).
Rule = Literal["both_at_half_alpha", "watermark_at_alpha"]
_RULES: dict[int, Rule] = {1: "watermark_at_alpha", 2: "both_at_half_alpha"}


@dataclass(frozen=True)
class Outcome:
    name: TestName
    p_value: float
    # The smallest p-value this test could have given, whatever the texts compared: it depends
    # only on the sizes (the text's pieces, the registry's vectors), so choosing tests by it
    # spends no level.
    smallest_p_value: float


@dataclass(frozen=True)
class CombinedTest:
    """Several tests as one test at level alpha.

    The tests that take part share alpha equally (Bonferroni), so the combined false-positive
    rate is at most alpha however they relate; ``rejected`` names those whose p-value fell
    below their share.

    A registry test takes part only when it could reject at its share: when even a copy
    (``smallest_p_value``) would not reach it (the registry is empty or large for that kind
    of evidence, or the text too short for a verdict), its share would be spent on a test
    that cannot use it. The optional tests are taken in order of their smallest p-value, as
    many as can each reach alpha / (the number taking part). That choice depends only on the
    text's length and the registry's size, never on the similarities found, so the rate is
    still at most alpha. Without it, a registry of 100,000 records cost the watermark a share
    of its power and added none (docs/PROVENANCE.md)."""

    p_value: float
    tests: tuple[TestName, ...]  # those that took part, each at alpha / len(tests)
    rejected: tuple[TestName, ...]

    @property
    def rule(self) -> Rule:
        """The name of the split, for a test of the watermark and at most one registry test."""
        if len(self.tests) not in _RULES:
            raise ValueError(f"no rule is named for {len(self.tests)} tests")
        return _RULES[len(self.tests)]

    @property
    def decided_by(self) -> Evidence | None:
        """Which kind of evidence rejected: the watermark's, the registry's, or both."""
        watermark = "watermark" in self.rejected
        registry = any(name != "watermark" for name in self.rejected)
        if watermark and registry:
            return "both"
        return "watermark" if watermark else "provenance" if registry else None


def bonferroni(required: Sequence[Outcome], optional: Sequence[Outcome], alpha: float) -> CombinedTest:
    """``required`` and those of ``optional`` that can reject at their share, each at alpha /
    the number taking part (CombinedTest)."""
    candidates = sorted(optional, key=lambda outcome: outcome.smallest_p_value)
    taken = 0
    for count in range(len(candidates), 0, -1):
        if candidates[count - 1].smallest_p_value * (len(required) + count) < alpha:
            taken = count
            break
    chosen = {id(outcome) for outcome in candidates[:taken]}
    tests = [*required, *(outcome for outcome in optional if id(outcome) in chosen)]  # in the caller's order
    if not tests:
        return CombinedTest(1.0, (), ())
    share = alpha / len(tests)
    return CombinedTest(
        min(1.0, len(tests) * min(test.p_value for test in tests)),
        tuple(test.name for test in tests),
        tuple(test.name for test in tests if test.p_value < share),
    )


def combine(watermark_p_value: float, registry: Sequence[Outcome], alpha: float) -> CombinedTest:
    """The watermark test, always, and the registry's tests that can reject, at level alpha."""
    return bonferroni([Outcome("watermark", watermark_p_value, 0.0)], registry, alpha)
