"""Top-k token entropy bounds: hand-computed cases and the ordering on random distributions."""

import math

import numpy as np
import pytest

from signet.scoring.entropy import (
    EntropyBounds,
    max_token_entropy,
    mean_token_entropy,
    shannon_entropy,
    tail_mass,
    token_entropy_bounds,
)

LOG2 = math.log(2)


def test_bounds_by_hand_and_both_are_attained():
    # listed 1/2, 1/4 of V = 4 tokens: r = 1/4
    # listed = 1/2 log 2 + 1/4 log 4 = log 2
    # lower = listed - r log r = log 2 + 1/4 log 4 = 1.5 log 2
    # upper = lower + r log(V - k) = 1.5 log 2 + 1/4 log 2 = 1.75 log 2
    bounds = token_entropy_bounds([math.log(0.5), math.log(0.25)], vocab_size=4)
    assert bounds.listed == pytest.approx(LOG2, rel=1e-12)
    assert bounds.lower == pytest.approx(1.5 * LOG2, rel=1e-12)
    assert bounds.upper == pytest.approx(1.75 * LOG2, rel=1e-12)
    assert tail_mass([math.log(0.5), math.log(0.25)]) == pytest.approx(0.25)
    # the tail on one token: (1/2, 1/4, 1/4, 0) has entropy 1.5 log 2 = lower
    assert shannon_entropy(np.array([0.5, 0.25, 0.25, 0.0])) == pytest.approx(bounds.lower, rel=1e-12)
    # the tail spread evenly: (1/2, 1/4, 1/8, 1/8) has 1/2 + 1/2 + 3/4 = 1.75 log 2 = upper
    assert shannon_entropy(np.array([0.5, 0.25, 0.125, 0.125])) == pytest.approx(bounds.upper, rel=1e-12)


def test_no_tail_means_no_gap():
    # the whole vocabulary listed: the entropy is known exactly
    assert token_entropy_bounds([math.log(0.5), math.log(0.5)], vocab_size=2) == EntropyBounds(LOG2, LOG2, LOG2)
    # the listed tokens carry all the mass of a large vocabulary
    bounds = token_entropy_bounds([math.log(0.5), math.log(0.5)], vocab_size=50_000)
    assert bounds.listed == bounds.lower == bounds.upper == pytest.approx(LOG2)
    # a certain token; a listed token with probability 0 (-inf) adds nothing
    assert token_entropy_bounds([0.0, -math.inf], vocab_size=5) == EntropyBounds(0.0, 0.0, 0.0)


def test_one_unlisted_token_has_no_freedom():
    # V - k = 1: the tail is that token, lower = upper = 1/2 log 2 + 1/2 log 2
    bounds = token_entropy_bounds([math.log(0.5)], vocab_size=2)
    assert bounds.listed == pytest.approx(0.5 * LOG2)
    assert bounds.lower == bounds.upper == pytest.approx(LOG2)


def test_listed_sum_rounding_above_one_is_tolerated():
    bounds = token_entropy_bounds(np.log([0.50003, 0.50003]), vocab_size=10)
    assert bounds.lower == bounds.upper == bounds.listed


def test_bounds_hold_on_random_distributions():
    rng = np.random.default_rng(20240611)
    vocab_size = 50
    for concentration in (0.05, 0.5, 5.0):
        for _ in range(40):
            probabilities = rng.dirichlet(np.full(vocab_size, concentration))
            true_entropy = float(shannon_entropy(probabilities))
            with np.errstate(divide="ignore"):  # small concentrations give exact zeros: logprob -inf
                ranked_logprobs = np.log(np.sort(probabilities)[::-1])
            for k in (1, 3, 10, 49, 50):
                top = token_entropy_bounds(ranked_logprobs[:k], vocab_size)
                assert top.listed <= top.lower + 1e-12
                assert top.lower - 1e-9 <= true_entropy <= top.upper + 1e-9
            # vLLM lists the sampled token too when it falls outside the top k: no ordering assumed
            sampled = rng.integers(10, vocab_size)
            extra = token_entropy_bounds(np.append(ranked_logprobs[:5], ranked_logprobs[sampled]), vocab_size)
            assert extra.lower - 1e-9 <= true_entropy <= extra.upper + 1e-9


def test_mean_and_max_over_tokens():
    # token 0: the hand case above (log 2, 1.5 log 2, 1.75 log 2); token 1: certain (0, 0, 0)
    per_token = [[math.log(0.5), math.log(0.25)], [0.0]]
    mean = mean_token_entropy(per_token, vocab_size=4)
    assert (mean.listed, mean.lower, mean.upper) == pytest.approx((0.5 * LOG2, 0.75 * LOG2, 0.875 * LOG2))
    largest = max_token_entropy(per_token, vocab_size=4)
    assert (largest.listed, largest.lower, largest.upper) == pytest.approx((LOG2, 1.5 * LOG2, 1.75 * LOG2))


@pytest.mark.parametrize(
    ("top_logprobs", "vocab_size", "message"),
    [
        ([], 10, "must not be empty"),
        ([math.log(0.5)] * 3, 2, "more than vocab_size"),
        ([math.log(0.7), math.log(0.7)], 10, "sum to 1.4 > 1"),
        ([math.log(0.5), math.log(0.4)], 2, "whole vocabulary but sums to 0.9"),
        ([0.3], 10, r"<= 0"),
        ([math.nan], 10, "NaN"),
        ([-1.0], 0, "positive integer"),
        ([-1.0], 2.5, "positive integer"),
        ([-1.0], True, "positive integer"),
    ],
)
def test_bad_input_raises(top_logprobs, vocab_size, message):
    with pytest.raises(ValueError, match=message):
        token_entropy_bounds(top_logprobs, vocab_size)


def test_sequence_errors_name_the_token():
    with pytest.raises(ValueError, match="must not be empty"):
        mean_token_entropy([], vocab_size=4)
    with pytest.raises(ValueError, match="token 1: .*more than vocab_size"):
        max_token_entropy([[-1.0], [-2.0] * 5], vocab_size=4)
