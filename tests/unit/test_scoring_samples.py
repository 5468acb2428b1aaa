"""Sample-based entropies and entailment clustering, on hand-computed cases."""

import math

import numpy as np
import pytest

from signet.scoring.clustering import cluster_by_bidirectional_entailment, mutual_entailment, num_semantic_sets
from signet.scoring.samples import (
    cluster_masses,
    discrete_semantic_entropy,
    monte_carlo_sequence_entropy,
    semantic_entropy,
)

LOG2 = math.log(2)


def test_monte_carlo_sequence_entropy_by_hand():
    # sample 0: p = 1/2 * 1/2 -> -log p = 2 log 2 over 2 tokens; sample 1: p = 1/4 -> 2 log 2 over 1 token
    samples = [[math.log(0.5), math.log(0.5)], [math.log(0.25)]]
    assert monte_carlo_sequence_entropy(samples) == pytest.approx(2 * LOG2, rel=1e-12)
    # length-normalised: mean of (2 log 2) / 2 = log 2 and (2 log 2) / 1 -> 1.5 log 2
    assert monte_carlo_sequence_entropy(samples, length_normalized=True) == pytest.approx(1.5 * LOG2, rel=1e-12)


def test_semantic_entropy_by_hand():
    # p(s) = 0.4, 0.2, 0.1, 0.1 in classes {0, 1}, {2}, {3}: masses 0.6, 0.1, 0.1 of 0.8
    # -> P = 3/4, 1/8, 1/8; SE = 3/4 log(4/3) + 2 * 1/8 log 8 = 3/4 (log(4/3) + log 2) = 3/4 log(8/3)
    logprobs = np.log([0.4, 0.2, 0.1, 0.1])
    np.testing.assert_allclose(cluster_masses(logprobs, [0, 0, 1, 2]), [0.75, 0.125, 0.125], rtol=1e-12)
    assert semantic_entropy(logprobs, [0, 0, 1, 2]) == pytest.approx(0.75 * math.log(8 / 3), rel=1e-12)
    # labels are names, not positions
    assert semantic_entropy(logprobs, [7, 7, 3, 9]) == pytest.approx(0.75 * math.log(8 / 3), rel=1e-12)
    # discrete: frequencies 2/4, 1/4, 1/4 -> 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
    assert discrete_semantic_entropy([0, 0, 1, 2]) == pytest.approx(1.5 * LOG2, rel=1e-12)


def test_semantic_entropy_edge_cases():
    # one meaning: no uncertainty, whatever the probabilities
    assert semantic_entropy(np.log([0.3, 0.01, 0.2]), [4, 4, 4]) == 0.0
    assert discrete_semantic_entropy([1]) == 0.0
    # long answers: sequence log-likelihoods far below exp's range must not underflow to 0/0
    assert semantic_entropy([-1000.0, -1000.0], [0, 1]) == pytest.approx(LOG2, rel=1e-12)
    assert semantic_entropy([-1000.0, -1000.0 - math.log(3)], [0, 1]) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel=1e-12
    )
    # N different meanings, equally likely: log N, the maximum
    assert discrete_semantic_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4), rel=1e-12)


@pytest.mark.parametrize(
    ("logprobs", "labels", "message"),
    [
        ([-1.0, -2.0], [0], "1 labels for 2 samples"),
        ([-1.0], [-1], "non-negative"),
        ([-1.0], [0.5], "integers"),
        ([-1.0], [], "non-empty"),
        ([], [], "must not be empty"),
        ([0.5], [0], r"<= 0"),
    ],
)
def test_semantic_entropy_bad_input(logprobs, labels, message):
    with pytest.raises(ValueError, match=message):
        semantic_entropy(logprobs, labels)


def test_monte_carlo_bad_input():
    with pytest.raises(ValueError, match="at least one sample"):
        monte_carlo_sequence_entropy([])
    with pytest.raises(ValueError, match=r"sample_token_logprobs\[1\] must not be empty"):
        monte_carlo_sequence_entropy([[-1.0], []])


# entailment[i, j] = P(answer i entails answer j)
ENTAILMENT = np.array(
    [
        [1.0, 0.9, 0.2, 0.1],  # 0 and 1 entail each other (0.9, 0.8)
        [0.8, 1.0, 0.3, 0.1],
        [0.7, 0.6, 1.0, 0.2],  # 2 entails 0 and 1, but they do not entail it: a different meaning
        [0.1, 0.1, 0.1, 1.0],  # 3 stands alone
    ]
)


def test_greedy_clustering_by_hand():
    assert cluster_by_bidirectional_entailment(ENTAILMENT) == [0, 0, 1, 2]
    assert num_semantic_sets(ENTAILMENT) == 3
    # a looser threshold: 0 -> 2 at 0.2 and 2 -> 0 at 0.7 both exceed 0.15, so 2 joins class 0
    assert cluster_by_bidirectional_entailment(ENTAILMENT, threshold=0.15) == [0, 0, 0, 1]
    # booleans read as given; the diagonal is ignored
    verdicts = ENTAILMENT > 0.5
    np.fill_diagonal(verdicts, False)
    assert cluster_by_bidirectional_entailment(verdicts) == [0, 0, 1, 2]


def test_threshold_is_strict():
    # P(entail) = 0.5 both ways is a coin flip, not entailment
    assert cluster_by_bidirectional_entailment([[1.0, 0.5], [0.5, 1.0]]) == [0, 1]
    assert cluster_by_bidirectional_entailment([[1.0, 0.51], [0.51, 1.0]]) == [0, 0]


def test_non_transitive_entailment():
    # a ~ b and b ~ c, but not a ~ c
    chain = [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    # greedy, in order a, b, c: b joins a's class; c does not match the representative a
    assert cluster_by_bidirectional_entailment(chain) == [0, 0, 1]
    # in order b, a, c the representative b matches both: one class. Greedy depends on order ...
    assert cluster_by_bidirectional_entailment([[1, 1, 1], [1, 1, 0], [1, 0, 1]]) == [0, 0, 0]
    # ... the connected components do not: one semantic set either way
    assert num_semantic_sets(chain) == 1
    assert mutual_entailment(chain).tolist() == [[True, True, False], [True, True, True], [False, True, True]]


def test_single_answer():
    assert cluster_by_bidirectional_entailment([[0.0]]) == [0]
    assert num_semantic_sets([[1.0]]) == 1


@pytest.mark.parametrize(
    ("matrix", "threshold", "message"),
    [
        ([[1.0, 0.5]], 0.5, "square"),
        ([[1.0, 1.5], [0.2, 1.0]], 0.5, r"probabilities in \[0, 1\]"),
        ([[1.0, math.nan], [0.2, 1.0]], 0.5, "NaN"),
        ([], 0.5, "2-D array|must not be empty"),
        ([[1.0]], 1.0, r"threshold must be in \[0, 1\)"),
    ],
)
def test_clustering_bad_input(matrix, threshold, message):
    with pytest.raises(ValueError, match=message):
        cluster_by_bidirectional_entailment(matrix, threshold)
    with pytest.raises(ValueError, match=message):
        num_semantic_sets(matrix, threshold)
