"""One answer's logprob scores against hand-computed values."""

import math

import numpy as np
import pytest

from signet.scoring.sequence import negative_log_likelihood, perplexity, pointwise_mutual_information

LOG2 = math.log(2)


def test_negative_log_likelihood_and_perplexity_by_hand():
    # p(y_t) = 1/2, 1/4, 1/2: -log p(y) = log 2 + log 4 + log 2 = 4 log 2
    logprobs = [math.log(0.5), math.log(0.25), math.log(0.5)]
    assert negative_log_likelihood(logprobs) == pytest.approx(4 * LOG2, rel=1e-12)
    # perplexity = exp(4 log 2 / 3) = 2^(4/3)
    assert perplexity(logprobs) == pytest.approx(2 ** (4 / 3), rel=1e-12)


def test_certain_answer_and_float32_rounding():
    assert negative_log_likelihood([0.0, 0.0]) == 0.0
    assert perplexity([0.0]) == 1.0
    # float32 engines can return a certain token's logprob as a hair above 0: read as 0
    assert negative_log_likelihood(np.array([5e-5, -1.0])) == pytest.approx(1.0)


def test_pointwise_mutual_information_by_hand():
    # with the prompt p = 0.8, 0.5; without: 0.2, 0.5 -> per token log(0.8/0.2) = log 4, log 1 = 0
    pmi = pointwise_mutual_information([math.log(0.8), math.log(0.5)], [math.log(0.2), math.log(0.5)])
    np.testing.assert_allclose(pmi.per_token, [math.log(4), 0.0], atol=1e-12)
    assert pmi.total == pytest.approx(math.log(4), rel=1e-12)
    assert pmi.mean == pytest.approx(LOG2, rel=1e-12)
    # a prompt can also make an answer less likely: gains and losses cancel here
    opposite = pointwise_mutual_information([math.log(0.5), math.log(0.25)], [math.log(0.25), math.log(0.5)])
    np.testing.assert_allclose(opposite.per_token, [LOG2, -LOG2], atol=1e-12)
    assert opposite.total == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("logprobs", "message"),
    [
        ([], "must not be empty"),
        ([-0.5, 0.1], r"log-probabilities \(<= 0\)"),
        ([-0.5, math.nan], "NaN"),
        ([-0.5, -math.inf], "no -inf"),
        ([math.inf], r"<= 0"),
        ([[-0.5], [-0.2]], "flat list"),
        (["a"], "list of numbers"),
    ],
)
def test_bad_logprobs_raise(logprobs, message):
    with pytest.raises(ValueError, match=message):
        negative_log_likelihood(logprobs)
    with pytest.raises(ValueError, match=message):
        perplexity(logprobs)


def test_pmi_needs_the_same_tokens():
    with pytest.raises(ValueError, match="same answer tokens"):
        pointwise_mutual_information([-0.1, -0.2], [-0.1])
