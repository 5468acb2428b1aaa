"""Token entropy when the engine lists only the top-k log-probabilities.

At step t the model has a distribution over the whole vocabulary (V tokens), but the
engine returns k listed log-probabilities (vLLM: ``SamplingParams(logprobs=k)``, at most
``max_logprobs``, plus the sampled token when it is not among them). The unlisted
V - k tokens share the tail mass ``r = 1 - sum_i p_i`` in some unknown way q_1 ... q_{V-k}
(q_j >= 0, sum_j q_j = r), and the entropy splits exactly into

    H = listed + tail,    listed = -sum_i p_i log p_i,    tail = -sum_j q_j log q_j.

``listed`` is known. ``tail`` is a concave function of q over the set {q >= 0, sum q = r},
so over that set it is

* smallest at a vertex: all of r on one unlisted token, ``tail = -r log r``;
* largest at the centre: r spread evenly, q_j = r / (V - k),
  ``tail = -r log(r / (V - k)) = -r log r + r log(V - k)``.

Hence ``listed <= lower = listed - r log r <= H <= upper = lower + r log(V - k)``, with
equality everywhere when r = 0. The gap, ``r log(V - k)``, is what the truncation costs:
about 11 r nats for a 50k vocabulary, so the bounds are tight when the top-k cover
nearly all the mass (confident steps) and loose when they do not.

A tighter lower bound would use that no unlisted token can outweigh a listed one, but
vLLM adds the sampled token to the top-k list when it falls outside it, so the smallest
listed probability does not bound the unlisted ones; these bounds assume nothing about
which tokens were listed, only that they are distinct tokens of the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import entr

from signet.scoring.validation import TOLERANCE, logprob_array


def shannon_entropy(probabilities: np.ndarray) -> np.ndarray:
    """``-sum p log p`` over the last axis, with 0 log 0 = 0 (in nats)."""
    return entr(probabilities).sum(axis=-1)


@dataclass(frozen=True)
class EntropyBounds:
    """Entropy (nats) of a distribution known only through its top-k listed probabilities.

    listed <= lower <= true entropy <= upper.
    """

    listed: float  # -sum p_i log p_i over the listed tokens only: the part we know
    lower: float  # listed + the tail mass on a single unlisted token
    upper: float  # listed + the tail mass spread evenly over all V - k unlisted tokens


def tail_mass(top_logprobs: Sequence[float] | np.ndarray) -> float:
    """``1 - sum of the listed probabilities``: the probability of all unlisted tokens together."""
    probabilities = np.exp(logprob_array(top_logprobs, "top_logprobs", allow_zero_probability=True))
    listed_mass = float(probabilities.sum())
    if listed_mass > 1.0 + TOLERANCE:
        raise ValueError(f"top_logprobs: the listed probabilities sum to {listed_mass:.6g} > 1")
    return max(0.0, 1.0 - listed_mass)


def token_entropy_bounds(top_logprobs: Sequence[float] | np.ndarray, vocab_size: int) -> EntropyBounds:
    """Bounds on one step's entropy from its k listed logprobs (distinct tokens) and the vocabulary size V."""
    logprobs = logprob_array(top_logprobs, "top_logprobs", allow_zero_probability=True)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int | np.integer) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    num_unlisted = vocab_size - logprobs.size
    if num_unlisted < 0:
        raise ValueError(f"top_logprobs lists {logprobs.size} tokens, more than vocab_size = {vocab_size}")
    remaining = tail_mass(logprobs)
    if num_unlisted == 0:
        if remaining > TOLERANCE:
            raise ValueError(f"top_logprobs lists the whole vocabulary but sums to {1.0 - remaining:.6g}, not 1")
        remaining = 0.0  # rounding: no token is left to carry it
    listed = float(shannon_entropy(np.exp(logprobs)))
    lower = listed + float(entr(remaining))
    upper = lower + (remaining * float(np.log(num_unlisted)) if remaining > 0.0 else 0.0)
    return EntropyBounds(listed=listed, lower=lower, upper=upper)


def per_token_bounds(per_token_top_logprobs: Sequence[Sequence[float]], vocab_size: int) -> np.ndarray:
    """[num_tokens, 3] array of each token's (listed, lower, upper)."""
    if len(per_token_top_logprobs) == 0:
        raise ValueError("per_token_top_logprobs must not be empty")
    rows = []
    for position, top_logprobs in enumerate(per_token_top_logprobs):
        try:
            bounds = token_entropy_bounds(top_logprobs, vocab_size)
        except ValueError as error:
            raise ValueError(f"token {position}: {error}") from error
        rows.append((bounds.listed, bounds.lower, bounds.upper))
    return np.array(rows)


def mean_token_entropy(per_token_top_logprobs: Sequence[Sequence[float]], vocab_size: int) -> EntropyBounds:
    """Bounds on the mean entropy over the answer's tokens: the mean of each bound bounds the mean."""
    listed, lower, upper = per_token_bounds(per_token_top_logprobs, vocab_size).mean(axis=0)
    return EntropyBounds(listed=float(listed), lower=float(lower), upper=float(upper))


def max_token_entropy(per_token_top_logprobs: Sequence[Sequence[float]], vocab_size: int) -> EntropyBounds:
    """Bounds on the largest token entropy: max_t lower_t <= max_t H_t <= max_t upper_t.

    (The token with the largest lower bound has H >= that bound; the token with the
    largest entropy has H <= its own upper bound <= the largest upper bound.)
    """
    listed, lower, upper = per_token_bounds(per_token_top_logprobs, vocab_size).max(axis=0)
    return EntropyBounds(listed=float(listed), lower=float(lower), upper=float(upper))
