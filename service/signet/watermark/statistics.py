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

# The largest -log(1 - u) a float32 uniform u < 1 gives: u <= 1 - 2**-24.
MAX_GUMBEL_SCORE = 24 * math.log(2)


class NullDistribution(Protocol):
    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """P(sum of ``counts`` null scores >= score_sum), elementwise; 1.0 where count is 0."""
        ...

    @property
    def token_mean(self) -> float:
        """One scored token's mean score without the watermark."""
        ...

    @property
    def token_sd(self) -> float:
        """One scored token's standard deviation without the watermark."""
        ...

    def smallest_p_value(self, count: int) -> float:
        """The p-value of the most extreme outcome ``count`` scored tokens can show.

        A test on ``count`` tokens can reject at alpha only if this is below alpha: it
        is what ``insufficient_evidence`` means.
        """
        ...

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(sum - mean) / sd under the null; NaN where count is 0."""
        ...


class BinomialNull:
    """Counts of successes: Binomial(T * trials_per_token, gamma).

    The KGW family scores one trial per token (green or not); SynthID scores one per
    tournament layer, so a token's score is its number of g-values equal to 1.
    """

    def __init__(self, gamma: float, trials_per_token: int = 1) -> None:
        self.gamma = gamma
        self.trials_per_token = trials_per_token

    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        successes = np.rint(score_sums)  # sums of whole-number scores are whole numbers
        trials = np.asarray(counts) * self.trials_per_token
        return np.where(trials > 0, binom.sf(successes - 1, trials, self.gamma), 1.0)

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        trials = np.asarray(counts) * self.trials_per_token
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score_sums - self.gamma * trials) / np.sqrt(trials * self.gamma * (1.0 - self.gamma))
        return np.where(trials > 0, z, np.nan)

    @property
    def token_mean(self) -> float:
        return self.gamma * self.trials_per_token

    @property
    def token_sd(self) -> float:
        return math.sqrt(self.trials_per_token * self.gamma * (1.0 - self.gamma))

    def smallest_p_value(self, count: int) -> float:
        # every trial a success: gamma ** trials
        return float(self.gamma ** (count * self.trials_per_token))


class GammaNull:
    """Sums of Exp(1) scores: Gamma(T, 1)."""

    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        safe_counts = np.maximum(counts, 1)
        return np.where(counts > 0, gamma.sf(score_sums, safe_counts), 1.0)

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score_sums - counts) / np.sqrt(counts)
        return np.where(counts > 0, z, np.nan)

    token_mean = 1.0  # Exp(1)
    token_sd = 1.0

    def smallest_p_value(self, count: int) -> float:
        # A score is at most -log(2**-24) = 16.64: vLLM's uniforms are float32, below 1 by at
        # least 2**-24. One token's best p is then e^-16.64 = 6.0e-8.
        if count == 0:
            return 1.0
        return float(gamma.sf(MAX_GUMBEL_SCORE * count, count))


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


# Beyond this many scored tokens a test is treated as never able to reach alpha: no
# text a request may carry (at most 200,000 tokens) comes near it.
_MAX_TOKENS_NEEDED = 2**30


def tokens_needed(null: NullDistribution, alpha: float) -> int:
    """The fewest scored tokens whose most extreme outcome has a p-value below ``alpha``.

    With fewer, no outcome can reject: the verdict is insufficient_evidence. KGW family:
    the smallest T with gamma ** T < alpha (5 tokens at gamma 0.25 and alpha 1e-3);
    Gumbel family: 1. The smallest p-value only falls as T grows, so a doubling search
    then a bisection finds T in O(log T) evaluations.
    """
    if null.smallest_p_value(1) < alpha:
        return 1
    low, high = 1, 2  # smallest_p_value(low) >= alpha throughout
    while null.smallest_p_value(high) >= alpha:
        if high >= _MAX_TOKENS_NEEDED:
            return _MAX_TOKENS_NEEDED
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if null.smallest_p_value(middle) < alpha:
            high = middle
        else:
            low = middle
    return high


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
