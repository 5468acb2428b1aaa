"""Hypothesis test for green-token counts.

Under the null hypothesis (text written without the key) each scored token is green
with probability ``gamma``, independently, so the green count is Binomial(T, gamma).
The p-value is that binomial's exact upper tail; the z-score is reported beside it
for comparison with the reference implementation, which uses the normal approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binom


def binomial_p_value(num_green: int, num_scored: int, gamma: float) -> float:
    """P(Binomial(num_scored, gamma) >= num_green): the one-sided exact p-value."""
    if num_scored == 0:
        return 1.0
    return float(binom.sf(num_green - 1, num_scored, gamma))


def z_score(num_green: int, num_scored: int, gamma: float) -> float | None:
    """(G - gamma T) / sqrt(T gamma (1 - gamma)); undefined with no scored tokens."""
    if num_scored == 0:
        return None
    expected = gamma * num_scored
    return (num_green - expected) / math.sqrt(num_scored * gamma * (1.0 - gamma))


@dataclass(frozen=True)
class GreenCountTest:
    num_scored_tokens: int
    num_green_tokens: int
    gamma: float

    @property
    def green_fraction(self) -> float | None:
        if self.num_scored_tokens == 0:
            return None
        return self.num_green_tokens / self.num_scored_tokens

    @property
    def z_score(self) -> float | None:
        return z_score(self.num_green_tokens, self.num_scored_tokens, self.gamma)

    @property
    def p_value(self) -> float:
        return binomial_p_value(self.num_green_tokens, self.num_scored_tokens, self.gamma)
