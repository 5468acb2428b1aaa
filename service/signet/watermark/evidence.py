"""Per-token evidence: the common currency of every watermark scheme's detector.

Each scheme turns a token sequence into one score per token plus a flag saying
whether that token counts as evidence. Statistics (whole text, windows, several
keys) are then computed the same way for every scheme, from these two arrays and
the scheme's null distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenEvidence:
    """One entry per input token.

    ``scores[i]`` is token i's score, distributed under the null hypothesis (text
    written without the key) as the scheme's null distribution says: 1.0 green /
    0.0 red for the KGW family (Bernoulli(gamma)), ``-log(1 - u)`` for Gumbel-max
    (Exp(1)).
    ``is_scored[i]`` is False where token i is no independent evidence: it has no
    full context (KGW's first ``context_width`` tokens), or it repeats an earlier
    (context, token) n-gram or context, as the scheme's reference detector decides.
    Unscored tokens carry score 0.0.
    """

    scores: np.ndarray  # float64 [num_tokens]
    is_scored: np.ndarray  # bool [num_tokens]

    def __post_init__(self) -> None:
        if self.scores.shape != self.is_scored.shape or self.scores.ndim != 1:
            raise ValueError("scores and is_scored must be 1-D arrays of one length")

    @property
    def num_tokens(self) -> int:
        return len(self.scores)

    @property
    def num_scored_tokens(self) -> int:
        return int(self.is_scored.sum())

    @property
    def score_sum(self) -> float:
        """The test statistic: the sum of the scored tokens' scores."""
        return float(self.scores[self.is_scored].sum())
