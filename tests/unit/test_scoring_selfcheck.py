"""SelfCheckGPT sentence scores on hand-computed cases."""

import math

import numpy as np
import pytest

from signet.scoring.selfcheck import embedding_scores, ngram_scores, support_scores

SENTENCES = [["The", "cat", "sat"], ["the", "dog"]]
SAMPLES = [["the", "cat", "ran"]]


def test_ngram_scores_by_hand():
    # counts over passage + sample (lowercased): the 3, cat 2, sat 1, dog 1, ran 1; 8 tokens
    # sentence 0: -log(3/8), -log(2/8), -log(1/8); sentence 1: -log(3/8), -log(1/8)
    scores = ngram_scores(SENTENCES, SAMPLES)
    sentence_0 = [math.log(8 / 3), math.log(4), math.log(8)]
    sentence_1 = [math.log(8 / 3), math.log(8)]
    np.testing.assert_allclose(scores.sentence_average, [np.mean(sentence_0), np.mean(sentence_1)], rtol=1e-12)
    np.testing.assert_allclose(scores.sentence_max, [math.log(8), math.log(8)], rtol=1e-12)
    assert scores.passage_average == pytest.approx(np.mean(sentence_0 + sentence_1), rel=1e-12)
    assert scores.passage_max == pytest.approx(math.log(8), rel=1e-12)


def test_unigram_options():
    # add-1 smoothing: 8 tokens + 1 * (5 types + <unk>) = 14; p(the) = 4/14, p(dog) = 2/14
    smoothed = ngram_scores(SENTENCES, SAMPLES, smoothing=1.0)
    assert smoothed.sentence_average[1] == pytest.approx((math.log(14 / 4) + math.log(14 / 2)) / 2, rel=1e-12)
    # case-sensitive: "The" (1 of 8) differs from "the" (2 of 8)
    cased = ngram_scores(SENTENCES, SAMPLES, lowercase=False)
    assert cased.sentence_max[0] == pytest.approx(math.log(8), rel=1e-12)
    assert cased.sentence_average[1] == pytest.approx((math.log(4) + math.log(8)) / 2, rel=1e-12)
    # a sentence the samples repeat scores lower than one they do not
    scores = ngram_scores([["a", "b"], ["c", "d"]], [["a", "b"], ["a", "b", "x"]])
    assert scores.sentence_average[0] < scores.sentence_average[1]


def test_bigram_scores_by_hand():
    # bigrams, each token with the one before it (<s> first), lowercased:
    # passage: (<s>,the) (the,cat) (cat,sat) | (<s>,the) (the,dog); sample: (<s>,the) (the,cat) (cat,ran)
    # counts: (<s>,the) 3, (the,cat) 2, (cat,sat) 1, (the,dog) 1, (cat,ran) 1; 8 bigrams
    scores = ngram_scores(SENTENCES, SAMPLES, n=2)
    sentence_0 = [math.log(8 / 3), math.log(4), math.log(8)]
    sentence_1 = [math.log(8 / 3), math.log(8)]
    np.testing.assert_allclose(scores.sentence_average, [np.mean(sentence_0), np.mean(sentence_1)], rtol=1e-12)
    # a known word in a new place: every unigram of "cat the" is common, its bigrams are not
    swapped = [["cat", "the"]]
    evidence = [["the", "cat"], ["the", "cat"]]
    assert ngram_scores(swapped, evidence, n=1).sentence_max[0] < ngram_scores(swapped, evidence, n=2).sentence_max[0]
    with pytest.raises(ValueError, match="n must be a positive integer"):
        ngram_scores(SENTENCES, SAMPLES, n=0)


def test_unigram_bad_input():
    with pytest.raises(ValueError, match="at least one sentence"):
        ngram_scores([], SAMPLES)
    with pytest.raises(ValueError, match="at least one sample"):
        ngram_scores(SENTENCES, [])
    with pytest.raises(ValueError, match="sentence 1 has no tokens"):
        ngram_scores([["a"], []], SAMPLES)
    with pytest.raises(ValueError, match="smoothing"):
        ngram_scores(SENTENCES, SAMPLES, smoothing=-0.5)


def test_embedding_scores_by_hand():
    sentences = [[1.0, 0.0], [0.0, 2.0]]  # lengths do not matter
    samples = [np.array([[3.0, 0.0]]), np.array([[1.0, 1.0], [-1.0, 0.0]])]
    # sentence 0: best cosine 1 in sample 0, 1/sqrt 2 in sample 1; sentence 1: 0 and 1/sqrt 2
    half = 1 / math.sqrt(2)
    np.testing.assert_allclose(
        embedding_scores(sentences, samples), [1 - (1 + half) / 2, 1 - (0 + half) / 2], rtol=1e-12
    )
    np.testing.assert_allclose(embedding_scores(sentences, samples, over_samples="max"), [0.0, 1 - half], atol=1e-12)
    # opposite directions: the largest score, 2
    assert embedding_scores([[1.0, 0.0]], [[[-1.0, 0.0]]])[0] == pytest.approx(2.0)


def test_embedding_bad_input():
    with pytest.raises(ValueError, match="zero vector"):
        embedding_scores([[0.0, 0.0]], [[[1.0, 0.0]]])
    with pytest.raises(ValueError, match=r"sample_sentence_embeddings\[0\] has dimension 3"):
        embedding_scores([[1.0, 0.0]], [[[1.0, 0.0, 0.0]]])
    with pytest.raises(ValueError, match="at least one sample"):
        embedding_scores([[1.0, 0.0]], [])
    with pytest.raises(ValueError, match="over_samples"):
        embedding_scores([[1.0, 0.0]], [[[1.0, 0.0]]], over_samples="median")
    with pytest.raises(ValueError, match="finite"):
        embedding_scores([[math.inf, 0.0]], [[[1.0, 0.0]]])


def test_support_scores_by_hand():
    # sentence 0: p_yes = 0.9 / (0.9 + 0.1) = 0.9 and 0.5 / (0.5 + 0.5) = 0.5 -> 1 - 0.7 = 0.3
    # sentence 1: p_yes = 0.2 / (0.2 + 0.6) = 0.25, and 0 when "yes" has probability 0 -> 1 - 0.125 = 0.875
    yes = [[math.log(0.9), math.log(0.5)], [math.log(0.2), -math.inf]]
    no = [[math.log(0.1), math.log(0.5)], [math.log(0.6), math.log(0.3)]]
    np.testing.assert_allclose(support_scores(yes, no), [0.3, 0.875], rtol=1e-12)
    # only the difference matters: the same labels' logprobs with other mass elsewhere
    np.testing.assert_allclose(support_scores([[math.log(0.09)]], [[math.log(0.01)]]), [0.1], rtol=1e-12)


def test_support_bad_input():
    with pytest.raises(ValueError, match="one value per"):
        support_scores([[-0.1, -0.2]], [[-0.1]])
    with pytest.raises(ValueError, match="both labels probability 0"):
        support_scores([[-math.inf]], [[-math.inf]])
    with pytest.raises(ValueError, match=r"<= 0"):
        support_scores([[0.5]], [[-0.1]])
    with pytest.raises(ValueError, match="2-D array"):
        support_scores([-0.1], [-0.2])
