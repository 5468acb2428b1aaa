"""The detector's statistics against a direct computation on a hand-made example."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import gamma as gamma_distribution

from signet.watermark.kgw import KgwParameters, KgwScheme
from signet.watermark.prf import PrfKey, context_seed, token_hash, uniform_word
from signet.watermark.statistics import (
    BinomialNull,
    GammaNull,
    binomial_p_value,
    holm_bonferroni,
    p_value,
    tokens_needed,
)


def exact_upper_tail(num_green: int, num_scored: int, gamma: Fraction) -> Fraction:
    return sum(
        math.comb(num_scored, k) * gamma**k * (1 - gamma) ** (num_scored - k) for k in range(num_green, num_scored + 1)
    )


def test_binomial_p_value_and_z_on_a_hand_made_count():
    # 6 green of 10 scored at gamma 1/4: P = sum_{k=6..10} C(10,k) (1/4)^k (3/4)^(10-k) = 20686 / 1048576
    assert exact_upper_tail(6, 10, Fraction(1, 4)) == Fraction(20686, 4**10)
    assert binomial_p_value(6, 10, 0.25) == pytest.approx(20686 / 4**10, rel=1e-12)
    z = BinomialNull(0.25).z_scores(np.array([6.0]), np.array([10]))[0]
    assert z == pytest.approx((6 - 2.5) / math.sqrt(10 * 0.25 * 0.75), rel=1e-12)


def test_edge_counts():
    assert binomial_p_value(0, 50, 0.25) == 1.0
    assert binomial_p_value(0, 0, 0.25) == 1.0
    assert np.isnan(BinomialNull(0.25).z_scores(np.array([0.0]), np.array([0]))[0])
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

    evidence = scheme.evidence(token_ids)
    assert (evidence.num_scored_tokens, evidence.score_sum) == (scored, green)
    assert scored < len(token_ids) - 2  # the example does contain repeats
    assert p_value(scheme.null_distribution, evidence) == pytest.approx(
        float(exact_upper_tail(green, scored, Fraction(1, 4))), rel=1e-12
    )


def test_gamma_null_matches_the_integer_shape_survival_function():
    # P(Gamma(n, 1) >= s) = exp(-s) * sum_{k<n} s^k / k!  for integer n
    for n, s in [(1, 0.5), (5, 3.0), (50, 80.0), (200, 150.0)]:
        direct = math.fsum(math.exp(k * math.log(s) - s - math.lgamma(k + 1)) for k in range(n))
        assert GammaNull().p_values(np.array([s]), np.array([n]))[0] == pytest.approx(direct, rel=1e-10)
    assert GammaNull().p_values(np.array([0.0]), np.array([0]))[0] == 1.0
    assert gamma_distribution.sf(10.0, 10) == pytest.approx(GammaNull().p_values(np.array([10.0]), np.array([10]))[0])


def test_holm_bonferroni_on_a_textbook_example():
    # sorted p: 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06 (monotone step-down)
    assert holm_bonferroni([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm_bonferroni([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_bonferroni([]) == []


def test_tokens_needed_is_the_fewest_tokens_whose_best_outcome_reaches_alpha():
    # gamma ** T < alpha: 0.25 ** 5 = 9.8e-4 < 1e-3 <= 0.25 ** 4
    assert tokens_needed(BinomialNull(0.25), 1e-3) == 5
    assert tokens_needed(BinomialNull(0.25), 0.25**4) == 5  # strictly below alpha
    assert tokens_needed(BinomialNull(0.5), 1e-4) == 14
    # several trials per token (SynthID's tournament layers): 0.5 ** 30 < 1e-4 on one token
    assert tokens_needed(BinomialNull(0.5, trials_per_token=30), 1e-4) == 1
    assert tokens_needed(BinomialNull(0.5, trials_per_token=3), 1e-4) == 5  # 0.5 ** 15 < 1e-4 <= 0.5 ** 12
    # a Gumbel score is at most 24 ln 2 (float32 uniforms): one token reaches p = 6.0e-8
    assert GammaNull().smallest_p_value(1) == pytest.approx(2.0**-24)
    assert tokens_needed(GammaNull(), 1e-4) == 1 and tokens_needed(GammaNull(), 1e-9) == 2
    assert 1 < tokens_needed(GammaNull(), 1e-300) < 100
    for alpha in (0.3, 1e-2, 1e-6, 1e-30):
        needed = tokens_needed(BinomialNull(0.7), alpha)
        assert BinomialNull(0.7).smallest_p_value(needed) < alpha <= BinomialNull(0.7).smallest_p_value(needed - 1)


def test_a_tokens_mean_and_sd_are_the_nulls_per_token_moments():
    null = BinomialNull(0.25, trials_per_token=4)
    assert (null.token_mean, null.token_sd) == (1.0, pytest.approx(math.sqrt(4 * 0.25 * 0.75)))
    z = null.z_scores(np.array([30.0]), np.array([10]))[0]
    assert z == pytest.approx((30 - 10 * null.token_mean) / (null.token_sd * math.sqrt(10)))
    assert (GammaNull().token_mean, GammaNull().token_sd) == (1.0, 1.0)
