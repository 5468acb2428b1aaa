"""synthid: bit-exact with transformers' SynthIDTextWatermarkLogitsProcessor.

transformers' own code runs side by side with ours on the same token ids and logits:
the sampling table, g-values and repetition masks agree exactly, the tournament to float32
rounding. No trained detector is needed: the Binomial null is checked by simulation.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.stats import binom
from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

from signet.watermark import synthid
from signet.watermark.scheme import GenerationRow, SamplingProblem
from signet.watermark.synthid import (
    MULTIPLIER,
    SynthIdKey,
    SynthIdParameters,
    SynthIdScheme,
    accumulate_hash,
    context_hash,
    sampling_table,
    synthid_mean_scores,
    tournament_probabilities,
    weighted_mean_score,
)

RANDOM = np.random.default_rng(17)
VOCABULARY_SIZE = 49_152
# The one token t with (1 + t) * M + 1 == 0 (mod 2**64): a one-token context that hashes to 0.
_ZERO_HASH_TOKEN = (-pow(MULTIPLIER, -1, 2**64) - 1) % 2**64


def _random_keys(depth):
    return tuple(int(key) for key in RANDOM.integers(-(2**63), 2**63 - 1, depth, dtype=np.int64, endpoint=True))


def _transformers_processor(parameters):
    return SynthIDTextWatermarkLogitsProcessor(
        ngram_len=parameters.ngram_len,
        keys=list(parameters.keys),
        sampling_table_size=parameters.sampling_table_size,
        sampling_table_seed=parameters.sampling_table_seed,
        context_history_size=parameters.context_history_size,
        device="cpu",
    )


def _text_with_repeats(ngram_len, length=300, pool=40, period=37):
    """Random ids from a small pool, then a period-37 pattern: contexts repeat near and far."""
    pattern = RANDOM.integers(0, 2**31, period)
    return np.concatenate([RANDOM.integers(0, pool, length), np.tile(pattern, 4), [2**40, 0]])


def _p_value(scheme, evidence):
    null = scheme.null_distribution
    return float(null.p_values(np.array([evidence.score_sum]), np.array([evidence.num_scored_tokens]))[0])


# The sampling table and g-values --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 + 7, 2**64 - 1])
@pytest.mark.parametrize("size", [1, 2, 999, 2**16, 2**20])
def test_sampling_table_equals_torch_randint(seed, size):
    expected = torch.randint(0, 2, (size,), generator=torch.Generator().manual_seed(seed)).numpy()
    np.testing.assert_array_equal(sampling_table(size, seed), expected)


PARAMETER_GRID = [  # (ngram_len, depth, sampling_table_size, sampling_table_seed)
    (2, 1, 2**16, 0),
    (5, 30, 2**16, 0),
    (3, 9, 1_000, 7),  # not a power of two: the whole hash matters
    (7, 4, 2**10, 2**40 + 5),
    (5, 9, 2**24, 3),
]


@pytest.mark.parametrize(("ngram_len", "depth", "table_size", "seed"), PARAMETER_GRID)
@pytest.mark.parametrize("history", [8, 1024])
def test_g_values_and_repetition_mask_equal_transformers(ngram_len, depth, table_size, seed, history):
    parameters = SynthIdParameters(
        keys=_random_keys(depth),
        ngram_len=ngram_len,
        sampling_table_size=table_size,
        sampling_table_seed=seed,
        context_history_size=history,
    )
    processor = _transformers_processor(parameters)
    scheme = SynthIdScheme(parameters)
    token_ids = _text_with_repeats(ngram_len)
    batch = torch.tensor(token_ids).unsqueeze(0)
    np.testing.assert_array_equal(scheme.g_values(token_ids), processor.compute_g_values(batch)[0].numpy())
    mask = scheme.context_repetition_mask(token_ids)
    np.testing.assert_array_equal(mask, processor.compute_context_repetition_mask(batch)[0].numpy())
    # The period-37 contexts repeat beyond a history of 8, within one of 1024.
    assert mask[-60:].all() == (history < 37)


def test_a_context_hashing_to_zero_counts_as_repeated_within_the_first_history():
    """transformers' history starts as zeros: a context whose hash is 0 counts as seen."""
    zero_token = _ZERO_HASH_TOKEN - 2**64 if _ZERO_HASH_TOKEN >= 2**63 else _ZERO_HASH_TOKEN  # as an int64
    assert context_hash([zero_token]) == 0
    parameters = SynthIdParameters(keys=_random_keys(3), ngram_len=2, context_history_size=4)
    token_ids = np.array([zero_token, 5, 6, 7, 8, 9, zero_token, 11])
    mask = SynthIdScheme(parameters).context_repetition_mask(token_ids)
    processor = _transformers_processor(parameters)
    expected = processor.compute_context_repetition_mask(torch.tensor(token_ids).unsqueeze(0))[0]
    np.testing.assert_array_equal(mask, expected.numpy())
    assert not mask[0] and mask[6]  # zeros fill the history only for its first 4 steps


@pytest.mark.parametrize("table_bytes", [synthid.GENERATION_TABLE_BYTES, 0], ids=["table", "hashed"])
@pytest.mark.parametrize(("table_size", "vocab_size"), [(2**16, 5_000), (2**10, 3_000), (1_000, 2_000)])
def test_generation_g_values_equal_transformers_keys(monkeypatch, table_bytes, table_size, vocab_size):
    """Every candidate's g-values after a context: the extended table (also when V wraps past
    its size) and per-step hashing both equal transformers' ``_compute_keys``."""
    monkeypatch.setattr(synthid, "GENERATION_TABLE_BYTES", table_bytes)
    parameters = SynthIdParameters(keys=_random_keys(9), ngram_len=4, sampling_table_size=table_size)
    processor = _transformers_processor(parameters)
    scheme = SynthIdScheme(parameters)
    for _ in range(3):
        context = RANDOM.integers(0, vocab_size, parameters.ngram_len - 1).tolist()
        keys, _ = processor._compute_keys(torch.tensor([context]), torch.arange(vocab_size).unsqueeze(0))
        expected = processor.sample_g_values(keys)[0].numpy().T
        np.testing.assert_array_equal(scheme.generation_g_values(context_hash(context), vocab_size), expected)


# Generation -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 9, 30])
def test_tournament_equals_transformers_update_scores(depth):
    parameters = SynthIdParameters(keys=_random_keys(depth))
    scores = torch.from_numpy((RANDOM.standard_normal((3, 5_000)) * 3).astype(np.float32))
    g_values = torch.from_numpy(RANDOM.integers(0, 2, (3, 5_000, depth)))
    expected = torch.exp(_transformers_processor(parameters).update_scores(scores, g_values)).numpy()
    for row in range(3):
        probabilities = torch.softmax(scores[row], 0).numpy()
        ours = tournament_probabilities(probabilities, np.ascontiguousarray(g_values[row].numpy().T, np.float32))
        # float32 rounding compounds once per layer: at depth 30, 6 of 5,000 probabilities
        # differed from transformers' by up to 3.5e-4 relative (a run of 2026-12-05; other
        # runs stayed under 1e-4), so the bound grows with the depth. A wrong tournament
        # differs by orders of magnitude.
        np.testing.assert_allclose(ours, expected[row], rtol=max(1e-4, 3e-5 * depth), atol=1e-12)
        assert ours.sum() == pytest.approx(1.0, abs=1e-5)


STEP_CASES = [  # (ngram_len, depth, table_size, vocab_size, temperature, history)
    (2, 5, 2**16, 3_000, 0.7, 3),  # few likely tokens and a one-token context: contexts repeat, some 3 apart
    (3, 9, 2**16, 70_000, 1.3, 4),  # a vocabulary wider than the table
    (4, 30, 1_000, 2_000, 1.0, 1024),  # a table that is not a power of two
]


@pytest.mark.parametrize(("ngram_len", "depth", "table_size", "vocab_size", "temperature", "history"), STEP_CASES)
def test_apply_watermark_follows_transformers_processor_step_by_step(
    ngram_len, depth, table_size, vocab_size, temperature, history
):
    """vLLM divides our logits by T and samples; transformers samples its processor's output
    on logits / T. The two distributions agree at every step, repeated contexts included."""
    parameters = SynthIdParameters(
        keys=_random_keys(depth),
        ngram_len=ngram_len,
        sampling_table_size=table_size,
        context_history_size=history,
        top_k=0,  # the whole vocabulary, as the processor alone
    )
    processor = _transformers_processor(parameters)
    scheme = SynthIdScheme(parameters)
    prompt = [5, 6, 7]  # transformers' context starts from zeros, not from the prompt
    row = GenerationRow(prompt, [], temperature)
    unchanged = 0
    for _ in range(40):
        logits = torch.from_numpy((RANDOM.standard_normal(vocab_size) * 3).astype(np.float32))
        logits[:5] += 8.0
        theirs = processor(torch.tensor([prompt + row.output_ids]), (logits / temperature).unsqueeze(0))[0]
        ours = logits.clone().unsqueeze(0)
        scheme.apply_watermark(ours, [0], [row])
        unchanged += torch.equal(ours[0], logits)
        expected = torch.softmax(theirs.double(), 0)
        sampled = torch.softmax(ours[0].double() / temperature, 0)
        torch.testing.assert_close(sampled, expected, rtol=0, atol=1e-6)
        row.output_ids.append(int(RANDOM.choice(vocab_size, p=sampled.numpy())))
    assert unchanged < 40
    if ngram_len == 2:
        assert unchanged > 0  # the repeated-context path ran


def test_top_k_follows_transformers_top_k_warper_then_processor():
    """transformers' generate runs its top-k warper (50 by default) before the watermark: with
    top_k our distribution is the processor's on the warped logits, ties at the k-th kept."""
    from transformers.generation.logits_process import TopKLogitsWarper

    parameters = SynthIdParameters(keys=_random_keys(30), top_k=50)
    processor, warper = _transformers_processor(parameters), TopKLogitsWarper(top_k=50)
    scheme = SynthIdScheme(parameters)
    row = GenerationRow([5], [], 0.8)
    for step in range(30):
        logits = torch.from_numpy((RANDOM.standard_normal(VOCABULARY_SIZE) * 3).astype(np.float32))
        if step == 0:
            logits[:60] = 30.0  # a tie across the k-th place: all 60 stay candidates
        warped = warper(None, (logits / 0.8).unsqueeze(0))
        theirs = processor(torch.tensor([row.output_ids or [5]]), warped)[0]
        ours = logits.clone().unsqueeze(0)
        scheme.apply_watermark(ours, [0], [row])
        expected = torch.softmax(theirs.double(), 0)
        sampled = torch.softmax(ours[0].double() / 0.8, 0)
        torch.testing.assert_close(sampled, expected, rtol=0, atol=1e-6)
        # only candidates can be sampled (the tournament may also drive some to 0 in float32)
        candidates = warped[0] > -torch.inf
        assert not bool((sampled[~candidates] > 0).any()) and int(candidates.sum()) == (60 if step == 0 else 50)
        row.output_ids.append(int(RANDOM.choice(VOCABULARY_SIZE, p=sampled.numpy())))


def test_a_context_hashing_to_zero_is_not_watermarked_in_generation():
    zero_token = _ZERO_HASH_TOKEN
    scheme = SynthIdScheme(SynthIdParameters(keys=_random_keys(3), ngram_len=2, context_history_size=4))
    logits = torch.randn(1, 1_000)
    watermarked = logits.clone()
    scheme.apply_watermark(watermarked, [0], [GenerationRow([1], [zero_token], 1.0)])
    assert torch.equal(watermarked, logits)
    scheme.apply_watermark(watermarked, [0], [GenerationRow([1], [3, 4, 5, 6, zero_token], 1.0)])
    assert not torch.equal(watermarked, logits)  # position 5: the history's zeros are gone


def test_greedy_rows_keep_their_logits_and_a_repeated_call_repeats_its_result():
    scheme = SynthIdScheme(SynthIdParameters(keys=_random_keys(4)))
    logits = torch.randn(2, 1_000)
    greedy, sampled = GenerationRow([1], [2, 3], 0.0), GenerationRow([1], [2, 3], 0.8)
    first = logits.clone()
    scheme.apply_watermark(first, [0, 1], [greedy, sampled])
    assert torch.equal(first[0], logits[0]) and not torch.equal(first[1], logits[1])
    again = logits.clone()
    scheme.apply_watermark(again, [1], [sampled])  # the same position again (no token appended)
    assert torch.equal(again[1], first[1])


# Detection ------------------------------------------------------------------------------


def test_generated_text_is_detected_by_transformers_and_us_and_random_text_is_not():
    parameters = SynthIdParameters(keys=_random_keys(30))
    scheme = SynthIdScheme(parameters)
    row = GenerationRow([1], [], 1.0)
    for _ in range(100):
        logits = torch.from_numpy((RANDOM.standard_normal((1, VOCABULARY_SIZE)) * 2).astype(np.float32))
        scheme.apply_watermark(logits, [0], [row])
        probabilities = torch.softmax(logits[0].double(), 0).numpy()
        row.output_ids.append(int(RANDOM.choice(VOCABULARY_SIZE, p=probabilities)))
    processor = _transformers_processor(parameters)
    batch = torch.tensor([row.output_ids])
    g_values = processor.compute_g_values(batch).numpy()
    mask = processor.compute_context_repetition_mask(batch).numpy()
    mean_g = float(synthid_mean_scores(g_values, mask)[0])
    # Measured over 6 seeds: mean g-value 0.73-0.76 (f = 0.4996), p-values 1e-109 to 1e-136 on
    # 82-88 scored tokens. A token's score has sd <= sqrt(30 / 4) = 2.7, so the mean over ~85
    # tokens has sd <= 0.01: falling to f + 0.1 is over 10 sd away (false failure < 1e-20).
    assert mean_g > scheme.g_value_rate + 0.1
    evidence = scheme.evidence(row.output_ids)
    assert _p_value(scheme, evidence) < 1e-30
    # Random ids: our p-value is exact under the null, so P(p < 1e-6) <= 1e-6.
    random_ids = RANDOM.integers(0, VOCABULARY_SIZE, 100)
    assert _p_value(scheme, scheme.evidence(random_ids)) > 1e-6


def test_evidence_scores_g_value_counts_once_per_residue_where_transformers_masks_nothing():
    parameters = SynthIdParameters(keys=_random_keys(9), ngram_len=3)
    scheme = SynthIdScheme(parameters)
    # 3,000 random ids: about 3000**2 / 2**17 = 69 n-grams share a residue with an earlier one.
    token_ids = np.concatenate([RANDOM.integers(0, VOCABULARY_SIZE, 3_000), [7, 8, 9, 7, 8, 9]])
    processor = _transformers_processor(parameters)
    g_values = processor.compute_g_values(torch.from_numpy(token_ids).unsqueeze(0))[0].numpy()
    mask = processor.compute_context_repetition_mask(torch.tensor(token_ids).unsqueeze(0))[0].numpy()
    hashes = accumulate_hash(np.uint64(1), np.lib.stride_tricks.sliding_window_view(token_ids, 3))
    residues = hashes & np.uint64(2**16 - 1)
    # The property the deduplication rests on: one residue, one g-vector.
    repeated = 0
    for residue in np.unique(residues):
        positions = np.flatnonzero(residues == residue)
        repeated += len(positions) - 1
        assert (g_values[positions] == g_values[positions[0]]).all()
    assert repeated > 30 and not mask.all()

    evidence = scheme.evidence(token_ids)
    offset = parameters.ngram_len - 1
    assert not evidence.is_scored[:offset].any()
    scored = np.flatnonzero(evidence.is_scored) - offset
    assert mask[scored].all()
    assert len(np.unique(residues[scored])) == len(scored) == len(np.unique(residues[mask]))
    np.testing.assert_array_equal(evidence.scores[offset:][scored], g_values[scored].sum(axis=1))
    assert (evidence.scores[~evidence.is_scored] == 0).all()


@pytest.mark.parametrize("depth", [4, 30])
def test_the_binomial_null_is_calibrated_on_random_text(depth):
    scheme = SynthIdScheme(SynthIdParameters(keys=_random_keys(depth)))
    texts = 3_000
    sums, counts = np.zeros(texts), np.zeros(texts, dtype=np.int64)
    for text in range(texts):
        evidence = scheme.evidence(RANDOM.integers(0, VOCABULARY_SIZE, 64))
        sums[text], counts[text] = evidence.score_sum, evidence.num_scored_tokens
    null = scheme.null_distribution
    p_values = null.p_values(sums, counts)
    for alpha in (0.01, 0.05):
        # P(p <= alpha) <= alpha under the null: exceeding the Binomial(3000, alpha) 1 - 1e-6
        # quantile has probability below 1e-6.
        assert (p_values <= alpha).sum() <= binom.ppf(1 - 1e-6, texts, alpha)
    z = null.z_scores(sums, counts)
    # Mean and variance of 3,000 standardised sums: sd 0.018 and 0.026; the bounds sit over
    # 5 sd out (false failure < 1e-6), and catch a wrong f or dependent depths.
    assert abs(z.mean()) < 0.1 and abs(z.var() - 1.0) < 0.15


def test_short_texts_have_no_scored_tokens():
    scheme = SynthIdScheme(SynthIdParameters(keys=_random_keys(3)))
    for token_ids in ([], [5], [5, 6, 7, 8]):
        evidence = scheme.evidence(token_ids)
        assert evidence.num_tokens == len(token_ids) and evidence.num_scored_tokens == 0
        assert scheme.g_values(token_ids).shape == (0, 3)


def test_mean_scores_as_synthid_text_defines_them():
    g_values = np.array([[[1, 0], [1, 1], [0, 0]]])
    mask = np.array([[1, 1, 0]])
    assert synthid_mean_scores(g_values, mask) == pytest.approx([3 / 4])
    # Default weights linspace(10, 1, 2) = [10, 1], rescaled to sum to 2: [20/11, 2/11].
    assert weighted_mean_score(g_values, mask) == pytest.approx([(20 / 11 + 20 / 11 + 2 / 11) / 4])
    assert weighted_mean_score(g_values, mask, np.array([0.0, 1.0])) == pytest.approx([1 / 4 * 2])
    batch = np.concatenate([g_values, 1 - g_values])
    assert synthid_mean_scores(batch, np.concatenate([mask, mask])) == pytest.approx([3 / 4, 1 / 4])


# The key ----------------------------------------------------------------------------------


def _key(**fields):
    return SynthIdKey(key_id="synthid", scheme="synthid", **{"keys": [654, 400, 836, 123, 340], **fields})


def test_the_keys_never_appear_in_a_repr():
    keys = [987_654_321_012, -123_456_789_987]
    key = _key(keys=keys)
    scheme = key.build_scheme(None)
    for text in (repr(key), str(key), repr(key.parameters()), repr(scheme)):
        assert all(str(abs(value)) not in text for value in keys), text
    assert str(keys[0]).encode() in key.canonical_bytes()  # fingerprints still cover them


@pytest.mark.parametrize(
    "fields",
    [
        {"keys": []},
        {"keys": list(range(65))},
        {"keys": [2**63]},
        {"keys": [-(2**63) - 1]},
        {"keys": ["12"]},
        {"keys": [True, 5]},
        {"keys": [5, 5 + 2**16]},  # equal modulo the table: identical g-values
        {"keys": [5, 5], "sampling_table_size": 1_000},
        {"ngram_len": 1},
        {"sampling_table_size": 2**24 + 1},
        {"sampling_table_seed": -1},
        {"context_history_size": 0},
    ],
)
def test_invalid_keys_are_rejected(fields):
    with pytest.raises(ValidationError):
        _key(**fields)


def test_keys_equal_modulo_a_table_that_is_not_a_power_of_two_are_accepted():
    assert _key(keys=[5, 5 + 1_000], sampling_table_size=1_000).build_scheme(None).parameters.depth == 2


def test_secret_bits_count_what_an_attacker_with_watermarked_text_must_guess():
    random_keys = list(_random_keys(30))
    assert _key(keys=random_keys).secret_bits() == 16  # one scan of the 2**16 residues
    assert _key(keys=[1, 2, 200]).secret_bits() == 8
    assert _key(keys=[654, 400, 836, 123, 340, 443, 597, 160, 57]).secret_bits() == 0  # transformers' example
    # the seed is not counted: /detect's score_mean tells the table's fraction of ones
    assert _key(keys=random_keys, sampling_table_seed=2**32 + 300).secret_bits() == 16
    bits = _key(keys=[2**62 + 1, 2**62 + 3], sampling_table_size=1_000).secret_bits()
    assert bits == pytest.approx(65.0)  # two 64-bit keys guessed one after the other


def test_sampling_problem_and_public_parameters():
    key = _key()
    assert key.sampling_problem(0.0, 1.0) == SamplingProblem(
        "temperature", "tournament sampling needs a distribution: temperature > 0"
    )
    assert key.sampling_problem(0.7, 0.9) is None
    assert key.public_parameters() == {"depth": 5, "context_width": 4}
    scheme = key.build_scheme(None)
    assert scheme.name == "synthid" and not scheme.counts_green and scheme.vocab_size is None
    assert scheme.null_distribution.trials_per_token == 5
    assert scheme.null_distribution.gamma == sampling_table(2**16, 0).mean()


def test_detection_imports_no_torch():
    code = "import sys, signet.watermark.synthid; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
