"""Hypothesis tests on per-token watermark evidence.

Under the null hypothesis (text written without the key) the scored tokens' scores
are independent draws from a known distribution:

* KGW family: each token is green with probability ``gamma``, so the green count of
  T scored tokens is Binomial(T, gamma). We use its exact upper tail; the reference
  implementation's normal approximation is reported beside it as ``z``.
* Gumbel-max: each score ``-log(1 - u)`` is Exp(1), so the sum over T tokens is
  Gamma(T, 1) (vLLM's ``GumbelWatermarkDetector`` uses the same survival function).

Both nulls evaluate whole arrays of (score sum, count) pairs at once, which is what
the windowed search needs.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from scipy.stats import binom, gamma

from signet.watermark.evidence import TokenEvidence


class NullDistribution(Protocol):
    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """P(sum of ``counts`` null scores >= score_sum), elementwise; 1.0 where count is 0."""
        ...

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(sum - mean) / sd under the null; NaN where count is 0."""
        ...


class BinomialNull:
    """Green counts: Binomial(T, gamma)."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma

    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        greens = np.rint(score_sums)  # sums of 0/1 scores are whole numbers
        return np.where(counts > 0, binom.sf(greens - 1, counts, self.gamma), 1.0)

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score_sums - self.gamma * counts) / np.sqrt(counts * self.gamma * (1.0 - self.gamma))
        return np.where(counts > 0, z, np.nan)


class GammaNull:
    """Sums of Exp(1) scores: Gamma(T, 1)."""

    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        safe_counts = np.maximum(counts, 1)
        return np.where(counts > 0, gamma.sf(score_sums, safe_counts), 1.0)

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score_sums - counts) / np.sqrt(counts)
        return np.where(counts > 0, z, np.nan)


def p_value(null: NullDistribution, evidence: TokenEvidence) -> float:
    """The whole text's p-value."""
    counts = np.array([evidence.num_scored_tokens])
    return float(null.p_values(np.array([evidence.score_sum]), counts)[0])


def z_score(null: NullDistribution, evidence: TokenEvidence) -> float | None:
    counts = np.array([evidence.num_scored_tokens])
    z = float(null.z_scores(np.array([evidence.score_sum]), counts)[0])
    return None if math.isnan(z) else z


def binomial_p_value(num_green: int, num_scored: int, gamma: float) -> float:
    """P(Binomial(num_scored, gamma) >= num_green): the one-sided exact p-value."""
    return float(BinomialNull(gamma).p_values(np.array([num_green]), np.array([num_scored]))[0])


def holm_bonferroni(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Rejecting every hypothesis whose adjusted p-value is below alpha keeps the
    family-wise error rate at alpha, whatever the dependence between the tests.
    """
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running_max = 0.0
    for rank, index in enumerate(order):
        running_max = max(running_max, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running_max
    return adjusted
