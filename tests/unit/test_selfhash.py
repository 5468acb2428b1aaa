"""kgw-selfhash: bit-exact with transformers' WatermarkLogitsProcessor and WatermarkDetector.

transformers' own code runs side by side with ours on the same token ids and logits;
every comparison of seeds, green lists, logits and counts is exact.
"""

import functools
import threading

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

from signet.watermark.lefthash import DEFAULT_HASHING_KEY
from signet.watermark.scheme import GenerationRow
from signet.watermark.selfhash import (
    TABLE_SIZE,
    SelfhashKey,
    SelfhashParameters,
    SelfhashScheme,
    _highest_logits,
)
from signet.watermark.statistics import BinomialNull

RANDOM = np.random.default_rng(17)
OTHER_HASHING_KEY = 0x5DEECE66D1234567  # 63 bits: hashing_key * a alone passes 2**63, so torch wraps at once
VOCAB_SIZE = 49_152


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    """transformers' reference draws hundreds of randperms; torch's multi-threaded one runs
    about 10x slower than its single thread on a busy two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _scheme(vocab_size=VOCAB_SIZE, gamma=0.25, context_width=1, hashing_key=DEFAULT_HASHING_KEY):
    parameters = SelfhashParameters(
        vocab_size=vocab_size, gamma=gamma, context_width=context_width, hashing_key=hashing_key
    )
    return SelfhashScheme(parameters)


@functools.cache
def _processor(vocab_size=VOCAB_SIZE, gamma=0.25, context_width=1, hashing_key=DEFAULT_HASHING_KEY):
    return WatermarkLogitsProcessor(
        vocab_size=vocab_size,
        device="cpu",
        greenlist_ratio=gamma,
        bias=2.0,
        hashing_key=hashing_key,
        seeding_scheme="selfhash",
        context_width=context_width,
    )


def _detector(scheme, ignore_repeated_ngrams):
    # WatermarkDetector reads vocab_size, bos_token_id and is_encoder_decoder from the model config;
    # no bos_token_id, so that it scores the ids exactly as given.
    parameters = scheme.parameters
    config = LlamaConfig(vocab_size=parameters.vocab_size, bos_token_id=None)
    watermarking = WatermarkingConfig(
        greenlist_ratio=parameters.gamma,
        bias=parameters.delta,
        hashing_key=parameters.hashing_key,
        seeding_scheme="selfhash",
        context_width=parameters.context_width,
    )
    return WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=ignore_repeated_ngrams)


def _overflowing_ids(scheme, count):
    """Ids whose table entries are near 10**6: products of two of them pass 2**63 (see test_seeds...)."""
    return np.argsort(scheme.fixed_table())[-count:]


def _ids(scheme, count):
    """Random ids of the vocabulary, overflowing ids, ids past the table and past the vocabulary."""
    pool = np.concatenate(
        [
            RANDOM.integers(0, scheme.vocab_size, 200),
            _overflowing_ids(scheme, 50),
            [0, scheme.vocab_size - 1, scheme.vocab_size, TABLE_SIZE + 7, 3 * TABLE_SIZE - 1],
        ]
    )
    return RANDOM.choice(pool, size=count)


def _windows(scheme, count):
    return _ids(scheme, count * scheme.parameters.context_width).reshape(count, -1)


def _text_with_repeats(vocab_size, length=300, distinct_tokens=12):
    """Ids from a small pool, so that windows repeat, plus the vocabulary's edges and an id past it."""
    pool = np.concatenate([RANDOM.integers(0, vocab_size, distinct_tokens - 3), [0, vocab_size - 1, vocab_size + 5]])
    return RANDOM.choice(pool, size=length)


@functools.cache
def _generated_ids(context_width, length=200):
    """Greedy decoding of N(0,1) logits through our apply_watermark."""
    scheme = _scheme(context_width=context_width)
    prompt = RANDOM.integers(0, VOCAB_SIZE, 4).tolist()
    row = GenerationRow(prompt, [], temperature=1.0)
    for _ in range(length):
        logits = torch.from_numpy(RANDOM.standard_normal((1, VOCAB_SIZE)).astype(np.float32))
        scheme.apply_watermark(logits, [0], [row])
        row.output_ids.append(int(torch.argmax(logits[0])))
    return np.array(row.output_ids)


# The fixed table and seeds ---------------------------------------------------------


@pytest.mark.parametrize("hashing_key", [DEFAULT_HASHING_KEY, 0, OTHER_HASHING_KEY])
def test_fixed_table_equals_torch_randperm(hashing_key):
    generator = torch.Generator().manual_seed(hashing_key)
    expected = torch.randperm(TABLE_SIZE, generator=generator).numpy()
    np.testing.assert_array_equal(_scheme(hashing_key=hashing_key).fixed_table(), expected)


@pytest.mark.parametrize("hashing_key", [DEFAULT_HASHING_KEY, OTHER_HASHING_KEY])
@pytest.mark.parametrize("context_width", [1, 4, 8])
def test_seeds_equal_transformers_set_seed(hashing_key, context_width):
    scheme = _scheme(context_width=context_width, hashing_key=hashing_key)
    processor = _processor(context_width=context_width, hashing_key=hashing_key)
    windows = _windows(scheme, 400)
    expected = []
    for window in windows:
        processor.set_seed(torch.tensor(window))
        expected.append(processor.rng.initial_seed())
    seeds = scheme.manual_seeds(windows)
    assert seeds.tolist() == expected
    # Both branches of the wrap are exercised: a negative int64 minimum becomes s + 2**64 - 1 >= 2**63 - 1.
    wrapped = seeds >= np.uint64(2**63 - 1)
    assert 0 < wrapped.sum() < len(seeds)


@pytest.mark.parametrize("context_width", [1, 4])
def test_green_lists_equal_transformers(context_width):
    scheme, processor = _scheme(context_width=context_width), _processor(context_width=context_width)
    for window in _windows(scheme, 12):
        expected = processor._get_greenlist_ids(torch.tensor(window)).numpy()
        np.testing.assert_array_equal(scheme.green_list(window), expected)


@pytest.mark.parametrize(
    ("vocab_size", "gamma", "context_width"),
    [(VOCAB_SIZE, 0.25, 1), (VOCAB_SIZE, 0.5, 4), (50_257, 0.25, 2), (1_000, 0.9, 3), (7, 0.5, 1)],
)
def test_own_greenlist_membership_equals_transformers(vocab_size, gamma, context_width):
    """The kernel follows one token through the shuffle; small vocabularies at gamma 0.9 move
    most tokens several times before they settle, and the cache of width 1 is read twice."""
    scheme = _scheme(vocab_size=vocab_size, gamma=gamma, context_width=context_width)
    processor = _processor(vocab_size=vocab_size, gamma=gamma, context_width=context_width)
    windows = _windows(scheme, 300 if vocab_size > 1_000 else 1_500)
    expected = [int(window[-1]) in processor._get_greenlist_ids(torch.tensor(window)).tolist() for window in windows]
    for _ in range(2):
        assert scheme.in_own_greenlist(windows).tolist() == expected
    assert 0 < sum(expected) < len(expected)


# Generation ---------------------------------------------------------------------------


@pytest.mark.parametrize("context_width", [1, 4])
@pytest.mark.parametrize("logits_width", [VOCAB_SIZE, VOCAB_SIZE + 64])  # vLLM may pad the vocabulary
def test_apply_watermark_equals_transformers_processor(context_width, logits_width):
    scheme, processor = _scheme(context_width=context_width), _processor(context_width=context_width)
    input_ids = torch.from_numpy(_ids(scheme, 6 * 7).reshape(6, 7))  # transformers takes equal lengths
    scores = torch.from_numpy(RANDOM.standard_normal((6, logits_width)).astype(np.float32))
    expected = processor(input_ids, scores)
    # Our batch interleaves unwatermarked rows; each prompt/output split is as good as another.
    logits = torch.cat([scores, torch.zeros(3, logits_width)])[[0, 6, 1, 2, 7, 3, 4, 8, 5]].clone()
    rows = [GenerationRow(ids[:split].tolist(), ids[split:].tolist(), 1.0) for split, ids in enumerate(input_ids)]
    scheme.apply_watermark(logits, [0, 2, 3, 5, 6, 8], rows)
    assert torch.equal(logits[[0, 2, 3, 5, 6, 8]], expected)
    assert not logits[[1, 4, 7]].any()
    assert (expected != scores).any(dim=1).all()  # every row got some bias


def test_rows_shorter_than_the_context_are_left_alone_as_transformers_does():
    scheme, processor = _scheme(context_width=4), _processor(context_width=4)
    scores = torch.from_numpy(RANDOM.standard_normal((1, VOCAB_SIZE)).astype(np.float32))
    logits = scores.clone()
    scheme.apply_watermark(logits, [0], [GenerationRow([5, 6], [7], 1.0)])
    assert torch.equal(logits, scores)
    assert torch.equal(processor(torch.tensor([[5, 6, 7]]), scores), scores)


def test_candidates_are_the_highest_logits_with_ties_at_the_boundary_to_the_lowest_ids():
    logits = torch.from_numpy(RANDOM.standard_normal((3, 1_000)).astype(np.float32))
    logits[1, [900, 10, 500, 20]] = 50.0  # ties inside the top 40 change nothing
    logits[2, :] = 0.0
    logits[2, 700:738] = torch.arange(38, dtype=torch.float32) + 1.0  # 38 above, then 962 tied at 0.0
    candidates = _highest_logits(logits, [0, 1, 2], 40)
    for row in range(2):
        expected = logits[row].sort(descending=True).indices[:40].numpy()
        assert set(candidates[row].tolist()) == set(expected.tolist())
    assert set(candidates[2].tolist()) == set(range(700, 738)) | {0, 1}
    assert _highest_logits(logits[:, :30], [2], 40).shape == (1, 30)  # narrower than 40: all of it
    # Other dtypes (and devices) go through a float32 copy of the rows.
    np.testing.assert_array_equal(_highest_logits(logits.double(), [2, 0], 40), candidates[[2, 0]])


# Detection ----------------------------------------------------------------------------


def _z_score(evidence, gamma):
    counts = np.array([evidence.num_scored_tokens])
    return float(BinomialNull(gamma).z_scores(np.array([evidence.score_sum]), counts)[0])


@pytest.mark.parametrize("context_width", [1, 4])
@pytest.mark.parametrize("ignore_repeated_ngrams", [True, False])
@pytest.mark.parametrize("text", ["repeats", "random", "generated"])
def test_evidence_equals_transformers_detector(context_width, ignore_repeated_ngrams, text):
    scheme = _scheme(context_width=context_width)
    token_ids = {
        "repeats": lambda: _text_with_repeats(VOCAB_SIZE),
        "random": lambda: RANDOM.integers(0, VOCAB_SIZE + 10, 250),  # a few ids past the vocabulary
        "generated": lambda: _generated_ids(context_width),
    }[text]()
    reference = _detector(scheme, ignore_repeated_ngrams)(torch.tensor(token_ids).unsqueeze(0), return_dict=True)
    evidence = scheme.evidence(token_ids, ignore_repeated_ngrams=ignore_repeated_ngrams, by_seed=False)
    assert evidence.num_scored_tokens == int(reference.num_tokens_scored[0])
    assert evidence.score_sum == float(reference.num_green_tokens[0])
    assert _z_score(evidence, 0.25) == pytest.approx(float(reference.z_score[0]), rel=1e-9)
    assert not evidence.is_scored[: context_width - 1].any()
    assert evidence.is_scored[context_width - 1]  # the first full window, the first token when the width is 1
    if ignore_repeated_ngrams and text == "repeats":
        assert evidence.num_scored_tokens < len(token_ids) - context_width + 1  # the text does repeat windows


@pytest.mark.parametrize("context_width", [1, 4])
def test_generated_text_is_detected_and_random_text_is_not(context_width):
    scheme = _scheme(context_width=context_width)
    evidence = scheme.evidence(_generated_ids(context_width))
    counts = np.array([evidence.num_scored_tokens])
    p_value = float(scheme.null_distribution.p_values(np.array([evidence.score_sum]), counts)[0])
    # A step's argmax is red only if none of the 40 candidates is green (0.75**40 < 1e-5) or a
    # red logit beats the 40th highest (~3.15) by delta = 2: 49,152 * P(N(0,1) > 5.15) < 0.007.
    # So more than 20 of 200 tokens are red with probability < 1e-17; repeated windows are
    # rare (~2 expected), and 150 scored tokens with at most 20 red give p < 1e-56.
    assert evidence.num_scored_tokens >= 150 and p_value < 1e-50
    random_ids = RANDOM.integers(0, VOCAB_SIZE, 200)
    plain = scheme.evidence(random_ids)
    # Unwatermarked: the green count is Binomial(<= 200, 0.25); z > 4 has probability ~3e-5.
    assert _z_score(plain, 0.25) < 4.0


def test_each_seed_and_token_is_scored_once_as_its_colour_depends_on_nothing_else():
    """Windows that differ only in tokens that are not the smallest share their seed: counting
    them as distinct n-grams, as transformers does, repeats one draw as new evidence."""
    scheme = _scheme(context_width=4)
    table = scheme.fixed_table()
    low = int(np.argmin(table[:VOCAB_SIZE]))  # the token whose table entry is smallest: it sets every seed
    fillers = [int(token) for token in RANDOM.integers(0, VOCAB_SIZE, 40) if token != low]
    token_ids = []
    for filler in fillers:
        token_ids += [low, filler, 7, 9]  # windows (low, filler, 7, 9): distinct n-grams, one seed for 9
    windows = np.lib.stride_tricks.sliding_window_view(np.array(token_ids), 4)
    by_ngram = scheme.evidence(token_ids, by_seed=False)
    by_seed = scheme.evidence(token_ids)
    seeds = scheme.manual_seeds(windows) & np.uint64(0xFFFFFFFF)
    distinct_pairs = len(set(zip(seeds.tolist(), windows[:, -1].tolist(), strict=True)))
    assert by_seed.num_scored_tokens == distinct_pairs < by_ngram.num_scored_tokens
    # the scored positions' colours are the same draws either way
    scored = by_seed.is_scored
    np.testing.assert_array_equal(by_seed.scores[scored], by_ngram.scores[scored])


def test_short_texts_score_their_full_windows_only():
    scheme = _scheme(context_width=4)
    for token_ids in ([], [5], [5, 6, 7]):
        evidence = scheme.evidence(token_ids)
        assert evidence.num_tokens == len(token_ids) and evidence.num_scored_tokens == 0
    assert scheme.evidence([5, 6, 7, 8]).num_scored_tokens == 1
    assert _scheme(context_width=1).evidence([5]).num_scored_tokens == 1


def test_concurrent_detection_matches_serial():
    """Threads share the width-1 colour cache and run the kernel without the GIL."""
    texts = [_text_with_repeats(VOCAB_SIZE, length=200, distinct_tokens=60) for _ in range(6)]
    for context_width in (1, 3):
        expected = [_scheme(context_width=context_width).evidence(text).scores for text in texts]
        shared = SelfhashScheme(SelfhashParameters(vocab_size=VOCAB_SIZE, context_width=context_width))
        matches: list[bool] = []  # an assert inside a thread would not fail the test

        def detect(index, scheme=shared, expected=expected, matches=matches):
            for _ in range(3):
                matches.append(np.array_equal(scheme.evidence(texts[index]).scores, expected[index]))

        threads = [threading.Thread(target=detect, args=(index,)) for index in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(matches) == 3 * len(texts) and all(matches)


# The key -------------------------------------------------------------------------------


def test_key_builds_the_scheme_it_describes():
    key = SelfhashKey(key_id="hf-self", scheme="kgw-selfhash", gamma=0.5, delta=3.0, context_width=4)
    assert key.needs_model_vocab_size and key.secret_bits() == 0.0  # the published default key
    assert key.public_parameters() == {"gamma": 0.5, "delta": 3.0, "context_width": 4}
    scheme = key.build_scheme(model_vocab_size=1_000)
    assert scheme.vocab_size == 1_000 and scheme.parameters.hashing_key == DEFAULT_HASHING_KEY
    assert scheme.null_distribution.gamma == 0.5 and scheme.counts_green
    with pytest.raises(ValueError):
        key.build_scheme(model_vocab_size=None)
    private = SelfhashKey(key_id="k", scheme="kgw-selfhash", hashing_key=987_654_321_987, vocab_size=1_000)
    assert private.secret_bits() > 0 and not private.needs_model_vocab_size
    for text in (repr(private), repr(private.build_scheme(None)), repr(private.build_scheme(None).parameters)):
        assert "987654321987" not in text


@pytest.mark.parametrize(
    "arguments",
    [
        {"vocab_size": 1},
        {"vocab_size": 1_000, "gamma": 1.0},
        {"vocab_size": 3, "gamma": 0.2},  # no green token at all
        {"vocab_size": 1_000, "delta": -1.0},
        {"vocab_size": 1_000, "context_width": 0},
        {"vocab_size": 1_000, "context_width": 9},
        {"vocab_size": 1_000, "hashing_key": 2**63},
    ],
)
def test_invalid_parameters_are_rejected(arguments):
    with pytest.raises(ValueError):
        SelfhashParameters(**arguments)
