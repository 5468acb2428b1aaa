"""AUROC and PRR: hand-computed cases, a brute-force pairwise AUROC, LM-Polygraph's PRR formula."""

import itertools

import numpy as np
import pytest

from signet.scoring.evaluation import (
    auroc,
    expected_calibration_error,
    prediction_rejection_ratio,
    reliability_bins,
)


def auroc_by_pairs(scores, positives):
    positive_scores = [s for s, p in zip(scores, positives, strict=True) if p]
    negative_scores = [s for s, p in zip(scores, positives, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(positive_scores, negative_scores))
    return wins / (len(positive_scores) * len(negative_scores))


def polygraph_area(uncertainty, quality, max_rejection=1.0):
    """LM-Polygraph's PredictionRejectionArea (ue_metrics/pred_rej_area.py), without its [0, 1] rescaling."""
    num_obs = len(uncertainty)
    num_rej = int(max_rejection * num_obs)
    sorted_quality = np.asarray(quality)[np.argsort(uncertainty)]
    cumsum = np.cumsum(sorted_quality)[-num_rej:]
    return np.sum((cumsum / np.arange(num_obs - num_rej + 1, num_obs + 1))[::-1]) / num_rej


def test_auroc_extremes():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5] * 5, [True, False, True, False, False]) == 0.5
    assert auroc([3, 1], [1, 0]) == 1.0  # 0/1 labels and integer scores work


def test_auroc_with_ties_by_hand():
    # positives 0.4, 0.8; negatives 0.1, 0.35, 0.4
    # 0.4 beats 0.1 and 0.35 and ties 0.4 (1 + 1 + 1/2); 0.8 beats all three (3) -> 5.5 / 6
    scores = [0.1, 0.4, 0.35, 0.8, 0.4]
    positives = [False, True, False, True, False]
    assert auroc(scores, positives) == pytest.approx(11 / 12, rel=1e-12)
    # ranks: 0.1 -> 1, 0.35 -> 2, 0.4 -> 3.5 (twice), 0.8 -> 5; U = 3.5 + 5 - 3 = 5.5
    assert auroc_by_pairs(scores, positives) == pytest.approx(11 / 12, rel=1e-12)


def test_auroc_matches_the_pairwise_count():
    rng = np.random.default_rng(31)
    for size in (2, 5, 17, 60):
        for _ in range(30):
            scores = rng.integers(0, 6, size).astype(float)  # many ties
            if rng.random() < 0.5:
                scores = rng.normal(size=size)
            positives = rng.random(size) < 0.4
            positives[0], positives[1] = True, False
            assert auroc(scores, positives) == pytest.approx(auroc_by_pairs(scores, positives), abs=1e-12)


def test_auroc_is_symmetric_in_its_labels():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=40)
    positives = rng.random(40) < 0.5
    assert auroc(scores, positives) + auroc(scores, ~positives) == pytest.approx(1.0, abs=1e-12)
    assert auroc(-scores, positives) == pytest.approx(auroc(scores, ~positives), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "positives", "message"),
    [
        ([0.1, 0.2], [True, True], "at least one positive and one negative"),
        ([0.1, 0.2], [False, False], "at least one positive and one negative"),
        ([0.1, 0.2, 0.3], [True, False], "same length"),
        ([0.1, float("inf")], [True, False], "finite"),
        ([0.1, float("nan")], [True, False], "NaN"),
        ([], [], "must not be empty"),
        ([0.1, 0.2], [1, 2], "booleans"),
        ([0.1, 0.2], ["yes", "no"], "booleans"),
        ([[0.1], [0.2]], [True, False], "flat list"),
    ],
)
def test_auroc_rejects(scores, positives, message):
    with pytest.raises(ValueError, match=message):
        auroc(scores, positives)


def test_prr_oracle_and_reversed_oracle():
    quality = [0.9, 0.1, 0.5, 0.7, 0.0, 0.3]
    assert prediction_rejection_ratio([-q for q in quality], quality) == pytest.approx(1.0, rel=1e-12)
    assert prediction_rejection_ratio(quality, quality) < -0.5
    # any decreasing function of the quality is an oracle
    assert prediction_rejection_ratio([1 / (1 + q) for q in quality], quality) == pytest.approx(1.0, rel=1e-12)


def test_prr_four_items_by_hand():
    # by increasing uncertainty: items 0 (q 1), 3 (q 0), 2 (q 1), 1 (q 0)
    # kept 4, 3, 2, 1: means 1/2, 2/3, 1/2, 1 -> area 8/3 / 4 = 2/3 = 16/24
    # oracle 1, 1, 0, 0: means 1/2, 2/3, 1, 1 -> area 19/6 / 4 = 19/24; random = 1/2 = 12/24
    # PRR = (16 - 12) / (19 - 12) = 4/7
    uncertainty = [0.1, 0.4, 0.3, 0.2]
    quality = [1.0, 0.0, 1.0, 0.0]
    assert prediction_rejection_ratio(uncertainty, quality) == pytest.approx(4 / 7, rel=1e-12)


def test_prr_max_rejection_by_hand():
    # n = 4, max_rejection 0.5: kept counts 4 and 3 only
    # by increasing uncertainty: q 1, 0, 0.2, 0.5: means 1.7/4 = 17/40, 1.2/3 = 2/5 -> area 33/80 = 99/240
    # oracle 1, 0.5, 0.2, 0: means 17/40, 1.7/3 = 17/30 -> area 119/240; random 17/40 = 102/240
    # PRR = (99 - 102) / (119 - 102) = -3/17
    uncertainty = [0.1, 0.2, 0.4, 0.3]
    quality = [1.0, 0.0, 0.5, 0.2]
    assert prediction_rejection_ratio(uncertainty, quality, max_rejection=0.5) == pytest.approx(-3 / 17, rel=1e-12)
    # the full curve: means 17/40, 2/5, 1/2, 1 -> area 93/160; oracle 17/40, 17/30, 3/4, 1 -> 329/480
    # random 17/40: PRR = (279 - 204) / (329 - 204) = 75/125 = 3/5
    assert prediction_rejection_ratio(uncertainty, quality) == pytest.approx(3 / 5, rel=1e-12)


def test_prr_averages_the_quality_over_tied_uncertainties():
    # items 1 and 2 are tied: each gets their mean quality 1/2 -> order q 1, 1/2, 1/2, 0
    # means 1/2, 2/3, 3/4, 1 -> area 35/48; oracle 38/48; random 24/48 -> PRR 11/14,
    # the mean of the two tie orders' PRRs: (1, 1, 0, 0) -> 1 and (1, 0, 1, 0) -> 8/14
    quality = [1.0, 1.0, 0.0, 0.0]
    assert prediction_rejection_ratio([0.1, 0.5, 0.5, 0.9], quality) == pytest.approx(11 / 14, rel=1e-12)
    assert prediction_rejection_ratio([0.1, 0.5, 0.5, 0.9], [1.0, 0.0, 1.0, 0.0]) == pytest.approx(11 / 14, rel=1e-12)
    # a constant uncertainty is random: PRR 0
    assert prediction_rejection_ratio([0.3] * 4, quality) == pytest.approx(0.0, abs=1e-12)


def test_prr_matches_lm_polygraph_without_ties():
    rng = np.random.default_rng(11)
    for size in (3, 10, 57):
        for max_rejection in (1.0, 0.5, 0.3):
            if int(max_rejection * size) < 2:
                continue
            uncertainty = rng.normal(size=size)
            quality = rng.random(size) * (rng.random(size) < 0.7)
            random_area = quality.mean()
            oracle_area = polygraph_area(-quality, quality, max_rejection)
            method_area = polygraph_area(uncertainty, quality, max_rejection)
            expected = (method_area - random_area) / (oracle_area - random_area)
            got = prediction_rejection_ratio(uncertainty, quality, max_rejection)
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
            # invariant to a positive affine map of the quality (LM-Polygraph rescales it to [0, 1])
            rescaled = prediction_rejection_ratio(uncertainty, 3 * quality - 1, max_rejection)
            assert rescaled == pytest.approx(got, rel=1e-9, abs=1e-12)


def test_prr_does_not_depend_on_the_input_order():
    rng = np.random.default_rng(2)
    uncertainty = rng.integers(0, 4, 30).astype(float)  # ties
    quality = rng.random(30)
    permutation = rng.permutation(30)
    assert prediction_rejection_ratio(uncertainty[permutation], quality[permutation]) == pytest.approx(
        prediction_rejection_ratio(uncertainty, quality), rel=1e-12
    )


@pytest.mark.parametrize(
    ("uncertainty", "quality", "max_rejection", "message"),
    [
        ([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1.0, "all qualities are equal"),
        ([0.1, 0.2, 0.3], [1.0, 0.0], 1.0, "same length"),
        ([0.1, float("-inf"), 0.3], [1.0, 0.0, 1.0], 1.0, "finite"),
        ([0.1, 0.2, 0.3], [1.0, float("nan"), 1.0], 1.0, "NaN"),
        ([0.1, 0.2, 0.3], [1.0, 0.0, 1.0], 0.0, "max_rejection"),
        ([0.1, 0.2, 0.3], [1.0, 0.0, 1.0], 1.5, "max_rejection"),
        ([0.1, 0.2, 0.3], [1.0, 0.0, 1.0], 0.5, "rejects no answer"),
        ([0.1], [1.0], 1.0, "rejects no answer"),
        ([], [], 1.0, "must not be empty"),
    ],
)
def test_prr_rejects(uncertainty, quality, max_rejection, message):
    with pytest.raises(ValueError, match=message):
        prediction_rejection_ratio(uncertainty, quality, max_rejection)


def test_ece_by_hand():
    # bin [0.1, 0.2): two answers at 0.1 and 0.15, one positive: |0.125 - 0.5| = 0.375, weight 2/4;
    # bin [0.9, 1]: 0.9 and 1.0, both positive: |0.95 - 1| = 0.05, weight 2/4
    probabilities = [0.1, 0.15, 0.9, 1.0]
    positives = [True, False, True, True]
    assert reliability_bins(probabilities, positives) == [(0.125, 0.5, 2), (0.95, 1.0, 2)]
    assert expected_calibration_error(probabilities, positives) == pytest.approx(0.5 * 0.375 + 0.5 * 0.05)


def test_ece_of_a_calibrated_forecast_is_small():
    # Outcomes drawn with the forecast's own probabilities: ECE ~ sqrt(bin variance / n);
    # 20,000 draws put it under 0.02 with overwhelming probability (its mean is about 0.006)
    generator = np.random.default_rng(7)
    probabilities = generator.uniform(size=20_000)
    assert expected_calibration_error(probabilities, generator.uniform(size=20_000) < probabilities) < 0.02
    # a forecast of 0.9 for events that happen half the time is off by 0.4
    assert expected_calibration_error([0.9] * 10, [True, False] * 5) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("probabilities", "positives", "bins"),
    [([], [], 10), ([0.5, 1.5], [True, False], 10), ([0.5], [True, False], 10), ([0.5], [True], 0)],
)
def test_ece_refuses_bad_input(probabilities, positives, bins):
    with pytest.raises(ValueError):
        expected_calibration_error(probabilities, positives, bins)
