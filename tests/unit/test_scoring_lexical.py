"""ROUGE-L lexical similarity: hand-computed pairs and the bit-parallel LCS against the textbook table."""

import random

import numpy as np
import pytest

from signet.scoring.lexical import lcs_length, lexical_similarity, ngram_novelty, rouge_l_f1


def lcs_by_table(first, second):
    table = [[0] * (len(second) + 1) for _ in range(len(first) + 1)]
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            table[i + 1][j + 1] = table[i][j] + 1 if a == b else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_rouge_l_by_hand():
    first = "the cat sat on the mat".split()
    second = "the cat lay on a mat".split()
    # LCS = the cat on mat (4); P = R = 4/6 -> F1 = 2/3
    assert lcs_length(first, second) == 4
    assert rouge_l_f1(first, second) == pytest.approx(2 / 3, rel=1e-12)
    # unequal lengths: LCS(a b c d, a c) = 2, P = 2/2, R = 2/4 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3 = 2 * 2 / (4 + 2)
    assert rouge_l_f1(list("abcd"), list("ac")) == pytest.approx(2 / 3, rel=1e-12)
    assert rouge_l_f1(list("ac"), list("abcd")) == pytest.approx(2 / 3, rel=1e-12)
    assert rouge_l_f1(["x"], ["x"]) == 1.0
    assert rouge_l_f1([], ["x"]) == rouge_l_f1([], []) == 0.0


def test_lexical_similarity_by_hand():
    # pairs: (s0, s1) = 1, (s0, s2) = 0, (s1, s2) = 0 -> mean 1/3
    samples = [["a", "b", "c"], ["a", "b", "c"], ["x", "y"]]
    assert lexical_similarity(samples) == pytest.approx(1 / 3, rel=1e-12)
    assert lexical_similarity([[1, 2, 3], [1, 2, 3]]) == 1.0  # token ids work too
    assert lexical_similarity([[1, 2], []]) == 0.0


def test_bit_parallel_lcs_matches_the_table():
    rng = random.Random(7)
    for _ in range(500):
        alphabet = rng.randrange(1, 6)
        first = [rng.randrange(alphabet) for _ in range(rng.randrange(0, 40))]
        second = [rng.randrange(alphabet) for _ in range(rng.randrange(0, 40))]
        assert lcs_length(first, second) == lcs_by_table(first, second) == lcs_length(second, first)
    # longer than a machine word on both sides
    first = [rng.randrange(3) for _ in range(300)]
    second = [rng.randrange(3) for _ in range(250)]
    assert lcs_length(first, second) == lcs_by_table(first, second)


def test_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        lexical_similarity([["a"]])
    with pytest.raises(ValueError, match="at least 2 samples, got 0"):
        lexical_similarity([])


def test_ngram_novelty_by_hand():
    evidence = [["the", "bridge", "opened", "in", "1937"], ["it", "is", "long"]]
    sentences = [
        ["the", "bridge", "opened", "in", "1937"],  # every bigram known: 0
        ["the", "bridge", "opened", "in", "1938"],  # (in, 1938) new: 1 of 4
        ["it", "is", "not", "long"],  # (is, not), (not, long) new: 2 of 3
        ["long"],  # shorter than n: the gram ("long",) is not a bigram of the evidence
        ["1937", "it"],  # lists do not join: (1937, it) is new
    ]
    np.testing.assert_allclose(ngram_novelty(sentences, evidence, n=2), [0.0, 0.25, 2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(ngram_novelty([["long"], ["short"]], evidence, n=1), [0.0, 1.0])
    with pytest.raises(ValueError, match="sentence 1 has no tokens"):
        ngram_novelty([["a"], []], evidence)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        ngram_novelty([["a"]], evidence, n=0)
