"""KGW: generation and detection share one definition of green; p-values hold under H0."""

import numpy as np
import pytest
import torch

from signet.watermark.kgw import KgwParameters, KgwScheme, first_occurrences
from signet.watermark.statistics import p_value

VOCABULARY_SIZE = 49_152
RANDOM = np.random.default_rng(7)


def _scheme(gamma=0.25, delta=2.0, context_width=1, secret=b"kgw-test-secret-0001"):
    return KgwScheme(secret, KgwParameters(gamma=gamma, delta=delta, context_width=context_width))


@pytest.mark.parametrize("context_width", [1, 3])
def test_vocabulary_mask_matches_detection_flags(context_width):
    scheme = _scheme(context_width=context_width)
    token_ids = RANDOM.integers(0, VOCABULARY_SIZE, 200).tolist()
    hashes = scheme.vocabulary_hashes(torch.arange(VOCABULARY_SIZE, dtype=torch.int64))
    contexts = [token_ids[position - context_width : position] for position in range(context_width, len(token_ids))]
    seeds = torch.tensor(scheme.context_seeds(contexts), dtype=torch.int64).unsqueeze(1)
    masks = scheme.green_mask(seeds, hashes)  # what generation biases, row per position
    from_generation = masks[torch.arange(len(contexts)), torch.tensor(token_ids[context_width:])].numpy()
    evidence = scheme.evidence(token_ids, ignore_repeated_ngrams=False)
    np.testing.assert_array_equal(from_generation, evidence.scores[context_width:] == 1.0)
    assert not evidence.is_scored[:context_width].any()
    # each row's green list holds close to gamma of the vocabulary (5 sigma: false failure ~6e-7 per row)
    fractions = masks.float().mean(dim=1).numpy()
    assert np.all(np.abs(fractions - 0.25) < 5 * np.sqrt(0.25 * 0.75 / VOCABULARY_SIZE))


def test_text_of_only_green_tokens_is_detected():
    scheme = _scheme()
    hashes = scheme.vocabulary_hashes(torch.arange(VOCABULARY_SIZE, dtype=torch.int64))
    token_ids = [int(RANDOM.integers(VOCABULARY_SIZE))]
    for _ in range(60):
        seed = torch.tensor(scheme.context_seeds([token_ids]), dtype=torch.int64).unsqueeze(1)
        green_tokens = torch.nonzero(scheme.green_mask(seed, hashes)[0]).flatten()
        token_ids.append(int(green_tokens[RANDOM.integers(len(green_tokens))]))
    evidence = scheme.evidence(token_ids)
    assert evidence.score_sum == evidence.num_scored_tokens == 60
    assert p_value(scheme.null_distribution, evidence) == pytest.approx(0.25**60)
    # another key sees no watermark: p >= 1e-4 except with probability 1e-4
    other = _scheme(secret=b"kgw-test-secret-0002")
    assert p_value(other.null_distribution, other.evidence(token_ids)) > 1e-4


def test_repeated_ngrams_are_scored_once():
    scheme = _scheme()
    token_ids = [11, 22] * 50 + [33]
    deduplicated = scheme.evidence(token_ids)
    assert deduplicated.num_scored_tokens == 3  # (11,22), (22,11), (22,33)
    assert deduplicated.is_scored[[1, 2, 100]].all()
    assert scheme.evidence(token_ids, ignore_repeated_ngrams=False).num_scored_tokens == 100


def test_first_occurrences_marks_only_first_copies():
    rows = np.array([[1, 2], [3, 4], [1, 2], [1, 3], [3, 4]])
    assert first_occurrences(rows).tolist() == [True, True, False, True, False]
    assert first_occurrences(np.empty((0, 2), dtype=np.int64)).tolist() == []


def test_text_shorter_than_the_context_scores_nothing():
    evidence = _scheme(context_width=3).evidence([5, 6, 7])
    assert evidence.num_tokens == 3 and evidence.num_scored_tokens == 0 and evidence.score_sum == 0


def test_p_values_are_valid_on_unwatermarked_sequences():
    # Under H0 the exact binomial test is conservative: P(p < 0.05) <= 0.05. Over 2,000
    # random 200-token sequences the count below 0.05 has mean <= 100 and sd <= 9.8;
    # 150 is 5 sd above: false-failure probability below 1e-6.
    scheme = _scheme()
    p_values = []
    for _ in range(2_000):
        p_values.append(p_value(scheme.null_distribution, scheme.evidence(RANDOM.integers(0, VOCABULARY_SIZE, 200))))
    assert sum(p < 0.05 for p in p_values) <= 150
    assert np.mean(p_values) > 0.45  # the mean of a uniform p-value is 0.5


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        KgwParameters(gamma=1.0)
    with pytest.raises(ValueError):
        KgwParameters(context_width=0)
    assert "kgw-test-secret" not in repr(_scheme())


@pytest.mark.parametrize(("columns", "largest_id"), [(2, 49_152), (4, 49_152), (4, 100_000), (5, 2**31 - 1)])
def test_first_occurrences_agrees_with_a_set_on_both_packings(columns, largest_id):
    # (4, 49_152) packs into uint64, (4, 100_000) and (5, ...) into void scalars; -1 is "no token"
    rows = RANDOM.integers(-1, largest_id, (2_000, columns))
    rows[1_000:] = rows[:1_000]
    rows[::7] = rows[3]
    seen, expected = set(), []
    for row in map(tuple, rows.tolist()):
        expected.append(row not in seen)
        seen.add(row)
    assert first_occurrences(rows).tolist() == expected
