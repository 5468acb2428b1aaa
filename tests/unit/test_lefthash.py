"""kgw-lefthash: bit-exact with transformers' WatermarkLogitsProcessor and WatermarkDetector.

transformers' own code runs side by side with ours on the same token ids; every
comparison of green lists and counts is exact.
"""

import sys
import threading

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

from signet.watermark import lefthash
from signet.watermark.lefthash import DEFAULT_HASHING_KEY, LefthashParameters, LefthashScheme
from signet.watermark.randperm import PartialRandperm
from signet.watermark.statistics import BinomialNull

RANDOM = np.random.default_rng(11)
OTHER_HASHING_KEY = 2**63 + 12345  # large enough that hashing_key * token exceeds 2**64 - 1
PARAMETER_GRID = [
    (49_152, DEFAULT_HASHING_KEY),
    (50_257, OTHER_HASHING_KEY),
]


def _transformers_detector(parameters, ignore_repeated_ngrams, bos_token_id=None):
    # WatermarkDetector reads vocab_size, bos_token_id and is_encoder_decoder from the model config.
    config = LlamaConfig(vocab_size=parameters.vocab_size, bos_token_id=bos_token_id)
    watermarking = WatermarkingConfig(
        greenlist_ratio=parameters.gamma,
        bias=parameters.delta,
        hashing_key=parameters.hashing_key,
        seeding_scheme="lefthash",
    )
    return WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=ignore_repeated_ngrams)


def _transformers_green_masks(parameters, previous_tokens):
    """Green masks from the public WatermarkLogitsProcessor call: green logits are the ones it biased."""
    processor = WatermarkLogitsProcessor(
        vocab_size=parameters.vocab_size,
        device="cpu",
        greenlist_ratio=parameters.gamma,
        bias=parameters.delta,
        hashing_key=parameters.hashing_key,
    )
    input_ids = torch.tensor(previous_tokens, dtype=torch.int64).unsqueeze(1)
    scores = torch.zeros(len(previous_tokens), parameters.vocab_size)
    return (processor(input_ids, scores) > 0).numpy()


def _text_with_repeats(vocab_size, length=400, distinct_tokens=40):
    """Token ids drawn from a small pool, so bigrams repeat, plus the vocabulary's edges and an id past it."""
    pool = np.concatenate([RANDOM.integers(0, vocab_size, distinct_tokens - 3), [0, vocab_size - 1, vocab_size + 5]])
    return RANDOM.choice(pool, size=length)


def _z_score(evidence, gamma):
    null = BinomialNull(gamma)
    return float(null.z_scores(np.array([evidence.score_sum]), np.array([evidence.num_scored_tokens]))[0])


@pytest.mark.parametrize(("vocab_size", "hashing_key"), PARAMETER_GRID)
@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_green_masks_equal_transformers_processor(vocab_size, hashing_key, gamma):
    parameters = LefthashParameters(vocab_size=vocab_size, gamma=gamma, hashing_key=hashing_key)
    previous_tokens = [0, 1, vocab_size - 1, *RANDOM.integers(0, vocab_size, 29).tolist()]
    ours = LefthashScheme(parameters).green_mask(previous_tokens)
    np.testing.assert_array_equal(ours, _transformers_green_masks(parameters, previous_tokens))
    assert (ours.sum(axis=1) == parameters.greenlist_size).all()


@pytest.mark.parametrize(("vocab_size", "gamma"), [(2, 0.5), (3, 0.4), (7, 0.9), (1_000, 0.3), (4_099, 0.25)])
def test_green_lists_equal_torch_randperm_on_many_seeds(vocab_size, gamma):
    """The numpy replay of torch's Fisher-Yates shuffle, seed by seed, on small vocabularies (many collisions)."""
    parameters = LefthashParameters(vocab_size=vocab_size, gamma=gamma, hashing_key=OTHER_HASHING_KEY)
    previous_tokens = np.arange(2_000)  # previous tokens past the vocabulary still seed a green list
    ours = LefthashScheme(parameters).green_mask(previous_tokens.tolist())
    generator = torch.Generator()
    for previous_token, green_row in zip(previous_tokens.tolist(), ours, strict=True):
        generator.manual_seed(OTHER_HASHING_KEY * previous_token % (2**64 - 1))  # as transformers seeds
        greenlist = torch.randperm(vocab_size, generator=generator)[: parameters.greenlist_size].numpy()
        assert np.array_equal(np.flatnonzero(green_row), np.sort(greenlist)), previous_token


@pytest.mark.parametrize(("vocab_size", "hashing_key"), PARAMETER_GRID)
@pytest.mark.parametrize("gamma", [0.25, 0.5])
@pytest.mark.parametrize("ignore_repeated_ngrams", [True, False])
def test_evidence_equals_transformers_detector(vocab_size, hashing_key, gamma, ignore_repeated_ngrams):
    parameters = LefthashParameters(vocab_size=vocab_size, gamma=gamma, hashing_key=hashing_key)
    token_ids = _text_with_repeats(vocab_size)
    reference = _transformers_detector(parameters, ignore_repeated_ngrams)(
        torch.tensor(token_ids).unsqueeze(0), return_dict=True
    )
    evidence = LefthashScheme(parameters).evidence(token_ids, ignore_repeated_ngrams=ignore_repeated_ngrams)
    assert evidence.num_scored_tokens == int(reference.num_tokens_scored[0])
    assert evidence.score_sum == float(reference.num_green_tokens[0])
    assert _z_score(evidence, gamma) == pytest.approx(float(reference.z_score[0]), abs=1e-9)
    assert not evidence.is_scored[0]  # the first token has no previous token
    if ignore_repeated_ngrams:
        assert evidence.num_scored_tokens < len(token_ids) - 1  # the text does repeat bigrams


def test_detector_drops_a_leading_bos_token_and_evidence_does_not():
    """The caller strips BOS: transformers' detector drops token 0 when it equals the config's bos_token_id."""
    parameters = LefthashParameters(vocab_size=49_152)
    bos_token_id = 1
    token_ids = np.concatenate([[bos_token_id], _text_with_repeats(parameters.vocab_size, length=200)])
    reference = _transformers_detector(parameters, True, bos_token_id=bos_token_id)(
        torch.tensor(token_ids).unsqueeze(0), return_dict=True
    )
    evidence = LefthashScheme(parameters).evidence(token_ids[1:])
    assert evidence.num_scored_tokens == int(reference.num_tokens_scored[0])
    assert evidence.score_sum == float(reference.num_green_tokens[0])


def test_text_generated_with_green_mask_is_flagged_by_transformers_and_random_text_is_not():
    parameters = LefthashParameters(vocab_size=49_152, gamma=0.25, delta=2.0)
    scheme = LefthashScheme(parameters)
    token_ids = [int(RANDOM.integers(parameters.vocab_size))]
    for _ in range(199):
        logits = RANDOM.standard_normal(parameters.vocab_size) + parameters.delta * scheme.green_mask(token_ids[-1:])[0]
        token_ids.append(int(np.argmax(logits)))
    detector = _transformers_detector(parameters, ignore_repeated_ngrams=True)
    watermarked = detector(torch.tensor([token_ids]), return_dict=True)
    # Each argmax is green unless the best of ~36,900 red N(0,1) logits beats the best of 12,288 green ones
    # by 2, which happens well under 10% of the time; z <= 4 needs <= 74 green of 199 tokens, so the
    # false-failure probability is below P(Binomial(199, 0.9) <= 74) < 1e-50.
    assert watermarked.z_score[0] > 4.0
    random_ids = RANDOM.integers(0, parameters.vocab_size, 200)
    plain = detector(torch.tensor(random_ids).unsqueeze(0), return_dict=True)
    # Unwatermarked: green count ~ Binomial(199, 0.25), so z > 4 has probability ~3e-5 (normal tail).
    assert plain.z_score[0] < 4.0
    evidence = scheme.evidence(token_ids)
    assert evidence.score_sum == float(watermarked.num_green_tokens[0])


def test_cache_returns_identical_masks_and_evidence_after_eviction():
    parameters = LefthashParameters(vocab_size=50_257, gamma=0.25)
    three_rows = 3 * (parameters.packed_row_bytes + lefthash.ROW_BOOKKEEPING_BYTES)
    tiny, roomy, uncached = (LefthashScheme(parameters, cache_bytes=size) for size in (three_rows, 2**26, 0))
    previous_tokens = RANDOM.integers(0, parameters.vocab_size, 20).tolist()
    expected = roomy.green_mask(previous_tokens)
    for _ in range(2):  # the second pass reads evicted and surviving rows alike
        np.testing.assert_array_equal(tiny.green_mask(previous_tokens), expected)
        np.testing.assert_array_equal(uncached.green_mask(previous_tokens), expected)
    assert len(tiny._cache) == 3 and len(uncached._cache) == 0
    # Every previous token is one the masks cached: roomy reads all its rows, tiny the 3 it
    # kept, uncached none; a scheme that never drew a row follows every token.
    token_ids = RANDOM.choice(previous_tokens, size=400)
    expected_evidence = LefthashScheme(parameters).evidence(token_ids)
    for scheme in (tiny, uncached, roomy):
        evidence = scheme.evidence(token_ids)
        np.testing.assert_array_equal(evidence.scores, expected_evidence.scores)
        np.testing.assert_array_equal(evidence.is_scored, expected_evidence.is_scored)


@pytest.fixture
def draw_counter(monkeypatch):
    """Counts whole green lists drawn (generation's rows), not tokens followed."""
    drawn = []
    draw = PartialRandperm.greenlist_rows

    def counting_draw(self, seeds):
        drawn.extend([1] * len(seeds))
        return draw(self, seeds)

    monkeypatch.setattr(PartialRandperm, "greenlist_rows", counting_draw)
    return drawn


def test_one_detection_draws_no_green_list(draw_counter):
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152))
    evidence = scheme.evidence(RANDOM.integers(0, 49_152, 1_000))
    assert evidence.num_scored_tokens > 900
    assert draw_counter == [] and len(scheme._cache) == 0 and scheme._cache._rows is None  # not even allocated


def test_previous_tokens_that_keep_coming_back_earn_a_cached_row(draw_counter, monkeypatch):
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152))
    token_ids = RANDOM.integers(0, 49_152, 50)  # 49 distinct previous tokens, almost surely
    expected = LefthashScheme(LefthashParameters(vocab_size=49_152), cache_bytes=0).evidence(token_ids).scores
    for detection in range(1, lefthash.ADMIT_AFTER + 2):
        np.testing.assert_array_equal(scheme.evidence(token_ids).scores, expected)
        admitted = min(len(np.unique(token_ids[:-1])), lefthash.MAX_ADMITTED_PER_CALL)
        assert len(draw_counter) == (admitted if detection >= lefthash.ADMIT_AFTER else 0)
    followed = []
    follow = scheme._follow
    monkeypatch.setattr(scheme, "_follow", lambda *args: followed.append(1) or follow(*args))
    np.testing.assert_array_equal(scheme.evidence(token_ids).scores, expected)
    assert followed == []  # every row came from the cache


def test_an_evicted_row_must_be_earned_again(draw_counter):
    parameters = LefthashParameters(vocab_size=1_000)
    scheme = LefthashScheme(
        parameters, cache_bytes=2 * (parameters.packed_row_bytes + lefthash.ROW_BOOKKEEPING_BYTES)
    )  # two rows
    for _ in range(lefthash.ADMIT_AFTER):
        scheme.evidence([1, 2, 1, 2])  # previous tokens 1 and 2: admitted on the 4th detection
    assert len(draw_counter) == 2
    for _ in range(lefthash.ADMIT_AFTER):
        scheme.evidence([3, 4, 3, 4])  # 3 and 4 evict them
    assert len(draw_counter) == 4
    for _ in range(lefthash.ADMIT_AFTER - 1):
        scheme.evidence([1, 2, 1, 2])  # followed, not drawn: 1 and 2 start counting again
    assert len(draw_counter) == 4
    scheme.evidence([1, 2, 1, 2])
    assert len(draw_counter) == 6


def test_one_detection_draws_at_most_its_bound_of_rows(draw_counter):
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152))
    token_ids = np.arange(0, 49_152, 97)  # 507 distinct previous tokens
    for _ in range(lefthash.ADMIT_AFTER):
        scheme.evidence(token_ids)
    assert len(draw_counter) == lefthash.MAX_ADMITTED_PER_CALL
    scheme.evidence(token_ids)
    assert len(draw_counter) == 2 * lefthash.MAX_ADMITTED_PER_CALL


def test_detection_reads_the_rows_generation_cached(draw_counter, monkeypatch):
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152))
    token_ids = _text_with_repeats(49_152)
    token_ids = token_ids[token_ids < 49_152]  # the cache holds tokens of the vocabulary only
    expected = scheme.evidence(token_ids)
    scheme.green_mask(token_ids[:-1].tolist())
    assert len(draw_counter) == len(np.unique(token_ids[:-1]))
    followed = []
    follow = scheme._follow
    monkeypatch.setattr(scheme, "_follow", lambda *args: followed.append(1) or follow(*args))
    np.testing.assert_array_equal(scheme.evidence(token_ids).scores, expected.scores)
    assert followed == []  # every previous token's row was cached


@pytest.mark.parametrize("vocab_size", [1_000, 49_152, 100_000, 2**22])  # 2**22: the most a key may name
def test_a_key_holds_at_most_32_mib(vocab_size):
    # Issue 20's bound on a key's memory, with every row of its cache filled.
    scheme = LefthashScheme(LefthashParameters(vocab_size=vocab_size))
    assert scheme._cache.capacity >= 16  # 23 rows of 512 KiB at 2**22 ids, 4,085 at 49,152
    assert scheme._cache.max_bytes + scheme._sightings.nbytes <= 32 * 2**20


def test_a_repeated_bigram_is_followed_once(monkeypatch):
    # The detection budget charges distinct bigrams: work per position would let one cheap
    # text of a repeated bigram cost thousands of follows.
    followed = []
    follow = PartialRandperm.in_greenlists
    monkeypatch.setattr(
        PartialRandperm,
        "in_greenlists",
        lambda self, seeds, starts, tokens: followed.append(len(tokens)) or follow(self, seeds, starts, tokens),
    )
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152), cache_bytes=0)
    evidence = scheme.evidence(np.tile([123, 4_567], 5_000), ignore_repeated_ngrams=False)
    assert followed == [2]  # (123, 4567) and (4567, 123)
    assert evidence.num_scored_tokens == 9_999


def test_cache_evicts_the_least_recently_used_green_list(draw_counter):
    parameters = LefthashParameters(vocab_size=1_000)
    scheme = LefthashScheme(parameters, cache_bytes=2 * (parameters.packed_row_bytes + lefthash.ROW_BOOKKEEPING_BYTES))
    for token in (10, 20, 10, 30):  # 30 evicts 20, the least recently used
        scheme.green_mask([token])
    assert len(draw_counter) == 3
    scheme.green_mask([10])
    assert len(draw_counter) == 3
    scheme.green_mask([20])
    assert len(draw_counter) == 4


def test_concurrent_detection_with_evictions_matches_serial():
    parameters = LefthashParameters(vocab_size=4_099, gamma=0.25)
    texts = [_text_with_repeats(parameters.vocab_size, length=300, distinct_tokens=60) for _ in range(8)]
    expected = [LefthashScheme(parameters).evidence(text).scores for text in texts]
    shared = LefthashScheme(
        parameters, cache_bytes=16 * (parameters.packed_row_bytes + lefthash.ROW_BOOKKEEPING_BYTES)
    )  # far fewer rows than tokens
    matches: list[bool] = []  # an assert inside a thread would not fail the test

    def detect(index):
        for _ in range(5):
            matches.append(np.array_equal(shared.evidence(texts[index]).scores, expected[index]))

    threads = [threading.Thread(target=detect, args=(index,)) for index in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(matches) == 5 * len(texts) and all(matches)


def test_short_texts_have_no_scored_tokens():
    scheme = LefthashScheme(LefthashParameters(vocab_size=1_000))
    for token_ids in ([], [5]):
        evidence = scheme.evidence(token_ids)
        assert evidence.num_tokens == len(token_ids) and evidence.num_scored_tokens == 0


@pytest.mark.parametrize(
    "hashing_key",
    # products below the modulus (numpy's path), just past it, far past it (Python's), zero
    [DEFAULT_HASHING_KEY, (2**64 - 2) // 49_151, (2**64 - 2) // 49_151 + 1, OTHER_HASHING_KEY, 2**64 - 1, 0],
)
def test_seeds_equal_mt19937_seed_on_both_paths(hashing_key):
    scheme = LefthashScheme(LefthashParameters(vocab_size=49_152, hashing_key=hashing_key))
    for tokens in ([0, 1, 49_151], [-3, 5, 49_151], RANDOM.integers(0, 49_152, 300), []):
        tokens = np.asarray(tokens, dtype=np.int64)
        expected = [lefthash.mt19937_seed(hashing_key, token) for token in tokens.tolist()]
        assert scheme._seeds(tokens).tolist() == expected


def test_repr_redacts_the_hashing_key():
    parameters = LefthashParameters(vocab_size=1_000, hashing_key=987_654_321)
    for text in (repr(parameters), repr(LefthashScheme(parameters))):
        assert "987654321" not in text


@pytest.mark.parametrize(
    "arguments",
    [
        {"vocab_size": 0},
        {"vocab_size": 1_000, "gamma": 1.0},
        {"vocab_size": 3, "gamma": 0.2},  # no green token at all
        {"vocab_size": 1_000, "delta": -1.0},
        {"vocab_size": 1_000, "hashing_key": 2**64},
    ],
)
def test_invalid_parameters_are_rejected(arguments):
    with pytest.raises(ValueError):
        LefthashParameters(**arguments)


def test_prewarm_loads_the_kernels_and_draws_nothing(draw_counter):
    scheme = LefthashScheme(LefthashParameters(vocab_size=1_000))
    scheme.prewarm()
    assert "signet.watermark.randperm_kernels" in sys.modules
    assert draw_counter == [] and len(scheme._cache) == 0
