"""How well a score ranks answers: AUROC and the prediction-rejection ratio (PRR); how
well a probability is calibrated: the expected calibration error (ECE).

AUROC and PRR take one score per answer and a label or quality per answer from an
evaluation set; neither depends on the scale of the scores, only on their order. ECE
takes probabilities, and depends on nothing else.

ECE (Naeini et al. 2015; Guo et al. 2017)
    Cut [0, 1] into ``bins`` equal-width bins (a probability of exactly 1 goes in the last);
    in each bin b with n_b of the n answers, compare the mean predicted probability with
    the share of positives:

        ECE = sum_b (n_b / n) |mean(p in b) - share of positives in b|.

    0 = every bin's probability is its observed rate. The same bins draw the reliability
    diagram (``reliability_bins``).

AUROC (area under the ROC curve)
    The probability that a random positive scores higher than a random negative, ties
    counting 1/2. With ``R_i`` the rank of score i among all n scores (1 = lowest, tied
    scores sharing the average of their ranks), the Mann-Whitney statistic is

        U = sum_{i positive} R_i - n_pos (n_pos + 1) / 2,    AUROC = U / (n_pos n_neg),

    which equals the pairwise count ``(#{s_pos > s_neg} + #{s_pos = s_neg} / 2) / (n_pos n_neg)``
    in O(n log n) (Mann & Whitney 1947; Hanley & McNeil 1982). For uncertainty, the
    positives are the wrong answers (or corrupted summaries) and the score is the
    uncertainty: 1 = every wrong answer is more uncertain than every right one, 0.5 = chance.

PRR (prediction-rejection ratio; Malinin 2019, Malinin & Gales 2021; as in LM-Polygraph,
Fadeeva et al. 2023, ``ue_metrics/pred_rej_area.py``)
    Reject answers most uncertain first. The prediction-rejection curve is the mean quality
    of the answers still kept against the fraction rejected. With n answers and
    ``R = floor(max_rejection * n)``, the curve is taken at the R kept counts
    ``k = n, n - 1, ..., n - R + 1`` (rejected fractions 0, 1/n, ..., (R - 1)/n; never 0
    kept), and its area is the mean over those points:

        area(order) = (1 / R) sum_{k = n - R + 1}^{n} (1 / k) sum_{j <= k} q_order(j),

    ``order`` listing the answers from the one kept longest to the one rejected first. This
    is LM-Polygraph's discretisation exactly (for max_rejection = 1: every k from n to 1).
    Three orders are compared:

    * method: by increasing uncertainty (the most uncertain is rejected first);
    * oracle: by decreasing quality (the worst answer is rejected first), the best any
      score can do;
    * random: the expected curve of a random order is the mean quality at every k, so
      area_random = mean(q) (LM-Polygraph estimates it by shuffling; this is its limit).

        PRR = (area_method - area_random) / (area_oracle - area_random)

    1 = the oracle's order, 0 = no better than random, negative = worse than random (a
    reversed oracle is usually well below 0, and not necessarily -1).

    Ties in uncertainty: LM-Polygraph breaks them by ``np.argsort``, i.e. arbitrarily. Here
    each answer in a group of tied uncertainties gets the group's mean quality before the
    curve is computed, which is the expected curve over all orders of the tied answers:
    the result does not depend on the input order, and a constant uncertainty gives PRR 0.
    Ties in quality do not matter to the oracle (equal values in either order).

    PRR does not change when the qualities are shifted or scaled by a positive factor
    (LM-Polygraph normalises them to [0, 1] first; the ratio is the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from signet.scoring.validation import float_array


def _finite_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = float_array(values, name, ndim=1)
    if np.isinf(array).any():
        raise ValueError(f"{name} must be finite numbers (no inf)")
    return array


def _bool_array(values: Sequence[bool] | np.ndarray, name: str) -> np.ndarray:
    """True/False labels; 0/1 numbers are accepted as such."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty flat list of booleans")
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be booleans (or 0/1)")
    return array.astype(bool)


def _same_length(first: np.ndarray, first_name: str, second: np.ndarray, second_name: str) -> None:
    if first.size != second.size:
        raise ValueError(
            f"{first_name} and {second_name} must have the same length, got {first.size} and {second.size}"
        )


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2."""
    values = _finite_array(scores, "scores")
    labels = _bool_array(positives, "positives")
    _same_length(values, "scores", labels, "positives")
    num_positive = int(labels.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError(
            f"AUROC needs at least one positive and one negative, got {num_positive} positive(s) "
            f"and {num_negative} negative(s)"
        )
    ranks = rankdata(values, method="average")
    u_statistic = float(ranks[labels].sum()) - num_positive * (num_positive + 1) / 2
    return u_statistic / (num_positive * num_negative)


def _tie_averaged(quality: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """Each quality replaced by the mean quality of the answers with the same uncertainty."""
    _, group = np.unique(uncertainty, return_inverse=True)
    group_mean = np.bincount(group, weights=quality) / np.bincount(group)
    return group_mean[group]


def _rejection_area(ordered_quality: np.ndarray, num_points: int) -> float:
    """Mean over kept counts k = n, ..., n - num_points + 1 of the mean of the first k qualities."""
    kept = np.arange(ordered_quality.size - num_points + 1, ordered_quality.size + 1)
    prefix_sums = np.cumsum(ordered_quality)[kept - 1]
    return float(np.mean(prefix_sums / kept))


def prediction_rejection_ratio(
    uncertainty: Sequence[float], quality: Sequence[float], max_rejection: float = 1.0
) -> float:
    """(area_method - area_random) / (area_oracle - area_random); higher quality is better."""
    uncertain = _finite_array(uncertainty, "uncertainty")
    scores = _finite_array(quality, "quality")
    _same_length(uncertain, "uncertainty", scores, "quality")
    if isinstance(max_rejection, bool) or not isinstance(max_rejection, int | float) or not 0 < max_rejection <= 1:
        raise ValueError(f"max_rejection must be a fraction in (0, 1], got {max_rejection!r}")
    num_points = math.floor(max_rejection * scores.size)
    if num_points < 2:
        raise ValueError(
            f"max_rejection * n = {max_rejection} * {scores.size} rejects no answer: the curve needs at least 2 points"
        )
    if scores.min() == scores.max():
        raise ValueError("all qualities are equal: the oracle is no better than random and PRR is undefined")
    random_area = float(scores.mean())
    oracle_area = _rejection_area(np.sort(scores)[::-1], num_points)
    by_certainty = np.argsort(uncertain, kind="stable")
    method_area = _rejection_area(_tie_averaged(scores, uncertain)[by_certainty], num_points)
    return (method_area - random_area) / (oracle_area - random_area)


def reliability_bins(
    probabilities: Sequence[float], positives: Sequence[bool], bins: int = 10
) -> list[tuple[float, float, int]]:
    """Per non-empty equal-width bin: (mean predicted probability, share of positives, count)."""
    predicted = _finite_array(probabilities, "probabilities")
    labels = _bool_array(positives, "positives")
    _same_length(predicted, "probabilities", labels, "positives")
    if predicted.size == 0:
        raise ValueError("calibration needs at least one probability")
    if predicted.min() < 0 or predicted.max() > 1:
        raise ValueError("probabilities must lie in [0, 1]")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    return [
        (float(predicted[index == b].mean()), float(labels[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]


def expected_calibration_error(probabilities: Sequence[float], positives: Sequence[bool], bins: int = 10) -> float:
    """sum_b (n_b / n) |mean predicted - observed| over equal-width bins (module docstring)."""
    table = reliability_bins(probabilities, positives, bins)
    total = sum(count for _, _, count in table)
    return sum(count / total * abs(predicted - observed) for predicted, observed, count in table)
