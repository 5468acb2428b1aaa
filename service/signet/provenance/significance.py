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
"""

from __future__ import annotations

import math
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
# Which levels the two tests had: alpha / 2 each, or the whole of alpha for the watermark
# because the registry could not decide (CombinedTest).
Rule = Literal["both_at_half_alpha", "watermark_at_alpha"]


@dataclass(frozen=True)
class CombinedTest:
    """The watermark test and the provenance test as one test at level alpha.

    Each is tested at alpha / 2 (Bonferroni over the two), so the combined false-positive
    rate is at most alpha however the two relate; ``decided_by`` names the evidence that
    rejected.

    Unless the provenance test cannot reject at all: when even a copy (similarity 1) would
    not reach alpha / 2 (``smallest_p_value``: the registry is empty or large, or the text
    too short for a verdict), its half of alpha would be spent on a test that cannot use it,
    so the watermark is tested at the whole of alpha. Which case applies depends only on the
    text's length and the registry's size, never on the similarities found, so the rate is
    still at most alpha: in either case the two levels sum to alpha. Without it, a registry
    of 100,000 records cost the watermark a share of its power and added none (docs/PROVENANCE.md)."""

    p_value: float
    decided_by: Evidence | None
    rule: Rule


def combine(
    watermark_p_value: float, provenance_p_value: float, provenance_smallest_p_value: float, alpha: float
) -> CombinedTest:
    if 2.0 * provenance_smallest_p_value >= alpha:
        decided: Evidence | None = "watermark" if watermark_p_value < alpha else None
        return CombinedTest(min(1.0, watermark_p_value), decided, "watermark_at_alpha")
    rejects_watermark = 2.0 * watermark_p_value < alpha
    rejects_provenance = 2.0 * provenance_p_value < alpha
    decided_by: Evidence | None = None
    if rejects_watermark and rejects_provenance:
        decided_by = "both"
    elif rejects_watermark:
        decided_by = "watermark"
    elif rejects_provenance:
        decided_by = "provenance"
    return CombinedTest(min(1.0, 2.0 * min(watermark_p_value, provenance_p_value)), decided_by, "both_at_half_alpha")
