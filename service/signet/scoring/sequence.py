"""Scores from one answer's own token log-probabilities: no extra model call.

``token_logprobs[t] = log p(y_t | x, y_<t)`` for each generated token, as the engine
returns it with ``logprobs`` requested (``logprobs_mode="raw_logprobs"`` keeps the
model's distribution rather than a watermarked or temperature-scaled one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from signet.scoring.validation import logprob_array


def negative_log_likelihood(token_logprobs: Sequence[float] | np.ndarray) -> float:
    """``-sum_t log p(y_t | x, y_<t)`` = ``-log p(y | x)``: higher means a less likely answer.

    LM-Polygraph calls this estimator MaximumSequenceProbability (the uncertainty of the
    answer the decoder picked as most probable). It grows with length; see ``perplexity``.
    """
    return float(-logprob_array(token_logprobs, "token_logprobs").sum())


def perplexity(token_logprobs: Sequence[float] | np.ndarray) -> float:
    """``exp(-mean_t log p(y_t | ...))``: the length-normalised likelihood, in [1, inf).

    1 means every token was certain; a perplexity of P is as uncertain as a uniform
    choice among P tokens at every step. (LM-Polygraph's Perplexity estimator reports the
    log of this, the mean negative logprob.) Overflows to inf for absurdly unlikely answers.
    """
    logprobs = logprob_array(token_logprobs, "token_logprobs")
    with np.errstate(over="ignore"):
        return float(np.exp(-logprobs.mean()))


@dataclass(frozen=True)
class PointwiseMutualInformation:
    per_token: np.ndarray  # float64 [num_tokens]: log p(y_t | x, y_<t) - log p(y_t | y_<t)
    total: float  # sum over tokens: log p(y | x) - log p(y)
    mean: float  # total / num_tokens


def pointwise_mutual_information(
    logprobs_with_prompt: Sequence[float] | np.ndarray, logprobs_without_prompt: Sequence[float] | np.ndarray
) -> PointwiseMutualInformation:
    """How much the prompt raised the answer's probability: ``log p(y | x) - log p(y)``.

    Takes the same answer tokens scored twice: after the prompt (the generation's own
    logprobs) and with no prompt (one extra prompt-logprobs pass over the answer alone).
    Positive: the prompt made the answer more likely; near 0: the model would have said
    it anyway (a generic or prompt-independent answer). Per token, summed and averaged.
    """
    conditional = logprob_array(logprobs_with_prompt, "logprobs_with_prompt")
    marginal = logprob_array(logprobs_without_prompt, "logprobs_without_prompt")
    if conditional.shape != marginal.shape:
        raise ValueError(
            "logprobs_with_prompt and logprobs_without_prompt must score the same answer tokens, "
            f"got {conditional.size} and {marginal.size} values"
        )
    per_token = conditional - marginal
    return PointwiseMutualInformation(per_token=per_token, total=float(per_token.sum()), mean=float(per_token.mean()))
