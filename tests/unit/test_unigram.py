"""Unigram: one fixed keyed green list; each distinct token is evidence once; p-values hold under H0."""

import numpy as np
import pytest
import torch

from signet.watermark.scheme import GenerationRow
from signet.watermark.statistics import p_value
from signet.watermark.unigram import UnigramKey, UnigramParameters, UnigramScheme

VOCABULARY_SIZE = 49_152
RANDOM = np.random.default_rng(11)


def _scheme(secret: bytes = b"unigram-test-secret-01", gamma: float = 0.25) -> UnigramScheme:
    return UnigramScheme(secret, UnigramParameters(gamma=gamma))


def test_the_green_list_is_one_fixed_set_of_about_gamma_of_the_vocabulary():
    scheme = _scheme()
    green = scheme.is_green(np.arange(VOCABULARY_SIZE))
    # 5 sigma of a binomial fraction: false failure about 6e-7
    assert abs(green.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / VOCABULARY_SIZE)
    np.testing.assert_array_equal(green, scheme.is_green(np.arange(VOCABULARY_SIZE)))
    other = _scheme(b"unigram-test-secret-02").is_green(np.arange(VOCABULARY_SIZE))
    # another key's list overlaps as two independent ones do: gamma ** 2 of the vocabulary
    assert abs((green & other).mean() - 0.0625) < 5 * np.sqrt(0.0625 * 0.9375 / VOCABULARY_SIZE)


def test_generation_adds_delta_to_exactly_the_green_tokens_detection_counts():
    scheme = _scheme()
    logits = torch.zeros(3, VOCABULARY_SIZE)
    rows = [GenerationRow([1], [], 1.0), GenerationRow([2], [5, 6], 0.7)]
    scheme.apply_watermark(logits, [0, 2], rows)
    green = scheme.is_green(np.arange(VOCABULARY_SIZE))
    for row in (0, 2):
        np.testing.assert_array_equal(logits[row].numpy(), np.where(green, 2.0, 0.0))
    assert not logits[1].any()  # an unwatermarked row of the batch is untouched


def test_each_distinct_token_is_scored_once():
    scheme = _scheme()
    token_ids = [7, 8, 7, 7, 9, 8]
    evidence = scheme.evidence(token_ids)
    np.testing.assert_array_equal(evidence.is_scored, [True, True, False, False, True, False])
    green = scheme.is_green(np.array([7, 8, 9]))
    assert evidence.score_sum == green.sum() and evidence.num_scored_tokens == 3
    # the first token needs no context: it is evidence like any other
    assert scheme.evidence([7]).num_scored_tokens == 1


def test_text_sampled_with_the_bias_is_detected_and_random_text_is_not():
    scheme = _scheme()
    green = scheme.is_green(np.arange(VOCABULARY_SIZE))
    logits = RANDOM.normal(size=(300, VOCABULARY_SIZE)) * 2.0 + 2.0 * green
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    cumulative = probabilities.cumsum(axis=1)
    token_ids = [int(np.searchsorted(row, RANDOM.random())) for row in cumulative]
    assert p_value(scheme.null_distribution, scheme.evidence(token_ids)) < 1e-20
    # under H0 the p-value is >= 1e-4 except with probability 1e-4 (the false-failure rate)
    random_ids = RANDOM.integers(0, VOCABULARY_SIZE, 300)
    assert p_value(scheme.null_distribution, scheme.evidence(random_ids)) > 1e-4


def test_p_values_are_valid_over_many_random_texts():
    """4,000 texts of 100 random tokens: the fraction with p < 0.01 is at most 0.01 plus 4
    binomial sigmas (false failure about 3e-5); the binomial test is conservative."""
    scheme = _scheme()
    null = scheme.null_distribution
    flagged = sum(p_value(null, scheme.evidence(RANDOM.integers(0, VOCABULARY_SIZE, 100))) < 0.01 for _ in range(4_000))
    assert flagged / 4_000 <= 0.01 + 4 * np.sqrt(0.01 * 0.99 / 4_000)


def test_the_key_model_builds_the_scheme_and_hides_the_secret():
    key = UnigramKey(key_id="u", scheme="unigram", secret="unigram-test-secret-01", gamma=0.3, delta=1.5)
    scheme = key.build_scheme(None)
    assert scheme.parameters == UnigramParameters(gamma=0.3, delta=1.5)
    assert key.public_parameters() == {"gamma": 0.3, "delta": 1.5, "context_width": 0}
    assert "unigram-test-secret-01" not in repr(key) + repr(scheme)
    with pytest.raises(ValueError):
        UnigramKey(key_id="u", scheme="unigram", secret="too short")
    with pytest.raises(ValueError):
        scheme.evidence([-1, 5])
