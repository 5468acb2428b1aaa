"""The detector's statistics against a direct computation on a hand-made example."""

import math
from fractions import Fraction

import pytest

from signet.watermark.kgw import KgwParameters, KgwScheme
from signet.watermark.prf import PrfKey, context_seed, token_hash, uniform_word
from signet.watermark.statistics import GreenCountTest, binomial_p_value, z_score


def exact_upper_tail(num_green: int, num_scored: int, gamma: Fraction) -> Fraction:
    return sum(
        math.comb(num_scored, k) * gamma**k * (1 - gamma) ** (num_scored - k) for k in range(num_green, num_scored + 1)
    )


def test_binomial_p_value_and_z_on_a_hand_made_count():
    # 6 green of 10 scored at gamma 1/4: P = sum_{k=6..10} C(10,k) (1/4)^k (3/4)^(10-k) = 20686 / 1048576
    assert exact_upper_tail(6, 10, Fraction(1, 4)) == Fraction(20686, 4**10)
    assert binomial_p_value(6, 10, 0.25) == pytest.approx(20686 / 4**10, rel=1e-12)
    assert z_score(6, 10, 0.25) == pytest.approx((6 - 2.5) / math.sqrt(10 * 0.25 * 0.75), rel=1e-12)


def test_edge_counts():
    assert binomial_p_value(0, 50, 0.25) == 1.0
    assert binomial_p_value(0, 0, 0.25) == 1.0
    assert z_score(0, 0, 0.25) is None
    assert GreenCountTest(0, 0, 0.25).green_fraction is None
    assert binomial_p_value(50, 50, 0.25) == pytest.approx(0.25**50, rel=1e-9)


def test_detector_matches_a_direct_count_on_hand_made_tokens():
    secret = b"hand-made-example-secret"
    scheme = KgwScheme(secret, KgwParameters(gamma=0.25, context_width=2))
    token_ids = [101, 7, 2024, 7, 2024, 7, 2024, 5, 9, 100, 7, 2024, 5, 88, 41, 3, 3, 3, 3, 17, 250, 7, 2024, 5]

    # Independent path: scalar PRF calls in plain Python, a set for repeats, exact fractions.
    key = PrfKey.from_secret(secret, b"signet-kgw-v1")
    seen, green, scored = set(), 0, 0
    for position in range(2, len(token_ids)):
        ngram = tuple(token_ids[position - 2 : position + 1])
        if ngram in seen:
            continue
        seen.add(ngram)
        scored += 1
        word = uniform_word(context_seed(key, list(ngram[:2])), token_hash(key, ngram[2]))
        green += word < round(0.25 * 2**32)

    scores = scheme.score(token_ids)
    test = GreenCountTest(scores.num_scored_tokens, scores.num_green_tokens, 0.25)
    assert (test.num_scored_tokens, test.num_green_tokens) == (scored, green)
    assert scored < len(token_ids) - 2  # the example does contain repeats
    assert test.p_value == pytest.approx(float(exact_upper_tail(green, scored, Fraction(1, 4))), rel=1e-12)
    assert test.green_fraction == green / scored
