"""MQAG distances between answer distributions: hand-computed pairs and the true inequalities."""

import math

import numpy as np
import pytest

from signet.scoring.distances import (
    KL_SMOOTHING,
    answer_distances,
    argmax_disagreement,
    hellinger_distance,
    hellinger_squared,
    kl_divergence,
    mqag_score,
    total_variation,
)

P = [0.5, 0.5]
Q = [0.9, 0.1]


def test_distances_by_hand():
    # KL = 1/2 log(0.5/0.9) + 1/2 log(0.5/0.1) = 1/2 log(25/9) = log(5/3)
    assert kl_divergence(P, Q, smoothing=0.0) == pytest.approx(math.log(5 / 3), rel=1e-12)
    assert kl_divergence(P, Q) == pytest.approx(math.log(5 / 3), rel=1e-9)  # eps = 1e-12 barely moves it
    # TV = 1/2 (|0.5 - 0.9| + |0.5 - 0.1|) = 0.4
    assert total_variation(P, Q) == pytest.approx(0.4, rel=1e-12)
    # H^2 = 1 - sum sqrt(p q) = 1 - sqrt(0.45) - sqrt(0.05)
    squared = 1 - math.sqrt(0.45) - math.sqrt(0.05)
    assert hellinger_squared(P, Q) == pytest.approx(squared, rel=1e-12)
    assert hellinger_distance(P, Q) == pytest.approx(math.sqrt(squared), rel=1e-12)
    # both pick option 0 (the tie in P goes to the first option)
    assert argmax_disagreement(P, Q) == 0
    assert argmax_disagreement([0.3, 0.7], [0.6, 0.4]) == 1


def test_identical_and_disjoint():
    same = answer_distances([0.2, 0.3, 0.5], [0.2, 0.3, 0.5])
    assert (same.kl, same.total_variation, same.hellinger, same.hellinger_squared, same.counting) == pytest.approx(
        (0.0, 0.0, 0.0, 0.0, 0.0), abs=1e-12
    )
    apart = answer_distances([1.0, 0.0], [0.0, 1.0])
    assert (apart.total_variation, apart.hellinger, apart.hellinger_squared, apart.counting) == pytest.approx(
        (1.0, 1.0, 1.0, 1.0)
    )
    # smoothed: p = (1 + e, e) / (1 + 2e), q = (e, 1 + e) / (1 + 2e)
    # KL = [(1 + e) log((1 + e)/e) + e log(e/(1 + e))] / (1 + 2e) = log((1 + e)/e) / (1 + 2e), about 27.6
    e = KL_SMOOTHING
    assert apart.kl == pytest.approx(math.log((1 + e) / e) / (1 + 2 * e), rel=1e-12)
    assert kl_divergence([1.0, 0.0], [0.0, 1.0], smoothing=0.0) == math.inf


def test_true_inequalities_on_random_pairs():
    rng = np.random.default_rng(17)
    for options in (2, 4, 10):
        for concentration in (0.2, 1.0, 5.0):
            for _ in range(30):
                p, q = rng.dirichlet(np.full(options, concentration), size=2)
                d = answer_distances(p, q)
                assert d.hellinger_squared <= d.total_variation + 1e-12  # H^2 <= TV
                assert d.total_variation <= math.sqrt(2) * d.hellinger + 1e-12  # TV <= sqrt(2) H
                assert d.kl >= -1e-12
                assert d.total_variation <= math.sqrt(d.kl / 2) + 1e-9  # Pinsker
                assert 0.0 <= d.hellinger <= 1.0 and 0.0 <= d.total_variation <= 1.0
                assert hellinger_distance(p, q) == pytest.approx(hellinger_distance(q, p))


def test_mqag_score_averages_answerable_questions():
    source = [P, [1.0, 0.0, 0.0], [0.3, 0.7]]
    summary = [Q, [0.0, 0.0, 1.0], [0.7, 0.3]]
    # question 2 is dropped; TV: (0.4 + 1.0) / 2 = 0.7; counting: (0 + 1) / 2
    score = mqag_score(source, summary, answerable=[True, True, False])
    assert score.total_variation == pytest.approx(0.7)
    assert score.counting == pytest.approx(0.5)
    assert score.hellinger_squared == pytest.approx((1 - math.sqrt(0.45) - math.sqrt(0.05) + 1.0) / 2)
    assert mqag_score(source, summary).counting == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        ([0.5, 0.5], [0.2, 0.3, 0.5], "same options"),
        ([0.5, 0.4], [0.5, 0.5], "sum to 1"),
        ([1.5, -0.5], [0.5, 0.5], r"\[0, 1\]"),
        ([], [], "must not be empty"),
        ([math.nan, 1.0], [0.5, 0.5], "NaN"),
    ],
)
def test_bad_pairs(p, q, message):
    for distance in (kl_divergence, total_variation, hellinger_distance, hellinger_squared, argmax_disagreement):
        with pytest.raises(ValueError, match=message):
            distance(p, q)


def test_bad_mqag_input():
    with pytest.raises(ValueError, match="at least one question"):
        mqag_score([], [])
    with pytest.raises(ValueError, match="2 source answers but 1 summary"):
        mqag_score([P, P], [Q])
    with pytest.raises(ValueError, match="no answerable question"):
        mqag_score([P], [Q], answerable=[False])
    with pytest.raises(ValueError, match="answerable has 2 flags for 1"):
        mqag_score([P], [Q], answerable=[True, True])
    with pytest.raises(ValueError, match="question 1: .*same options"):
        mqag_score([P, P], [Q, [1.0]])
    with pytest.raises(ValueError, match="smoothing"):
        kl_divergence(P, Q, smoothing=-1.0)
