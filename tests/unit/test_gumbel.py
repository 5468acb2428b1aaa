"""Gumbel-max: the numpy scheme reproduces vLLM 0.32's PRF, sampler and detector exactly.

vLLM is the reference here (the service code itself must not import it). Its CPU PRF
runs at about 7 us per (context, token) pair, so whole-vocabulary comparisons use few rows.
"""

import numpy as np
import pytest
import scipy.stats
import torch
from vllm.v1.watermarking.gumbel import GumbelWatermarkDetector, GumbelWatermarker
from vllm.v1.watermarking.prfs.philox import PhiloxPRF

from signet.watermark import philox
from signet.watermark.gumbel import GumbelParameters, GumbelScheme

VOCABULARY_SIZE = 49_152
KEYS = [0, 42, 2**40 + 7, 2**64 - 1]
WIDTHS = [1, 3, 4, 5, 9]  # one, two and three Philox context blocks, full and padded
RANDOM = np.random.default_rng(20260512)


def _scheme(key=42, context_width=4, deduplicate_contexts=True):
    return GumbelScheme(key, GumbelParameters(context_width=context_width, deduplicate_contexts=deduplicate_contexts))


def _random_contexts(rows: int, width: int) -> np.ndarray:
    """Random ids with -1 as vLLM pads them (leading) and anywhere else, to cover the mask."""
    contexts = RANDOM.integers(0, VOCABULARY_SIZE, (rows, width))
    for row in range(min(rows, width + 1)):
        contexts[row, :row] = -1
    contexts[RANDOM.random((rows, width)) < 0.1] = -1
    return contexts


def _vllm_uniforms(key: int, contexts: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    return PhiloxPRF(key).uniform(torch.from_numpy(contexts), torch.from_numpy(token_ids)).numpy()


# PRF ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("width", WIDTHS)
def test_uniforms_equal_vllm_for_scattered_ids(key, width):
    contexts = _random_contexts(64, width)
    token_ids = np.concatenate([[0, 1, 2, 3, VOCABULARY_SIZE - 1], RANDOM.integers(0, 2**31, 11)])
    ours = _scheme(key, width).uniforms(contexts, token_ids)
    assert ours.dtype == np.float32 and ours.shape == (64, 16)
    np.testing.assert_array_equal(ours, _vllm_uniforms(key, contexts, token_ids))
    # the detector's layout: one target per context row
    targets = RANDOM.integers(0, VOCABULARY_SIZE, (64, 1))
    np.testing.assert_array_equal(
        _scheme(key, width).uniforms(contexts, targets), _vllm_uniforms(key, contexts, targets)
    )


@pytest.mark.parametrize(("key", "width"), [(0, 1), (42, 3), (42, 4), (2**40 + 7, 5), (2**64 - 1, 9)])
def test_uniforms_equal_vllm_over_the_whole_vocabulary(key, width):
    contexts = _random_contexts(2, width)[1:]  # one row (vLLM's PRF is slow), with a leading -1
    vocabulary = np.arange(VOCABULARY_SIZE)
    expected = _vllm_uniforms(key, contexts, vocabulary)
    np.testing.assert_array_equal(_scheme(key, width).uniforms(contexts, vocabulary), expected)
    # the grouped path, one Philox call per four ids, that gumbel_noise uses
    np.testing.assert_array_equal(philox.vocabulary_uniforms(key, contexts, VOCABULARY_SIZE), expected)
    assert expected.min() > 0.0 and expected.max() < 1.0


def test_vocabulary_uniforms_handles_a_size_that_is_not_a_multiple_of_four():
    contexts = _random_contexts(3, 4)
    np.testing.assert_array_equal(
        philox.vocabulary_uniforms(7, contexts, 1_001), philox.uniform(7, contexts, np.arange(1_001))
    )


# Detection ------------------------------------------------------------------------


def _assert_evidence_matches_vllm(token_ids, key=42, context_width=4, deduplicate_contexts=True):
    evidence = _scheme(key, context_width, deduplicate_contexts).evidence(token_ids)
    detector = GumbelWatermarkDetector(key, context_width, deduplicate_contexts=deduplicate_contexts)
    detection = detector.detect(list(token_ids))
    assert evidence.num_tokens == len(token_ids)
    assert evidence.num_scored_tokens == detection.num_scored_tokens
    assert evidence.score_sum == pytest.approx(detection.score, rel=1e-12, abs=0.0)
    # token by token: the same tokens scored, with the same scores
    contexts, targets = detector._prepare_inputs(list(token_ids))
    np.testing.assert_array_equal(np.asarray(token_ids)[evidence.is_scored], targets.numpy())
    np.testing.assert_allclose(
        evidence.scores[evidence.is_scored], detector._score_tokens(contexts, targets), rtol=1e-15
    )
    assert np.all(evidence.scores[~evidence.is_scored] == 0.0)
    return evidence, detection


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("width", [1, 4, 9])
@pytest.mark.parametrize("deduplicate_contexts", [True, False])
def test_evidence_equals_vllm_detector_on_random_text(key, width, deduplicate_contexts):
    token_ids = RANDOM.integers(0, VOCABULARY_SIZE, 300).tolist()
    _assert_evidence_matches_vllm(token_ids, key, width, deduplicate_contexts)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_evidence_equals_vllm_detector_on_repetitive_text(width):
    loop = [11, 22, 33] * 40
    few_tokens = RANDOM.integers(0, 3, 200).tolist()
    token_ids = [5] + loop + few_tokens + loop[:7] + [0, 0, 0, 0, 0]
    evidence, _ = _assert_evidence_matches_vllm(token_ids, context_width=width)
    assert evidence.num_scored_tokens < len(token_ids) // 2
    _assert_evidence_matches_vllm(token_ids, context_width=width, deduplicate_contexts=False)


def test_repeated_contexts_count_once():
    evidence = _scheme(context_width=2).evidence([7, 8] * 10)
    # contexts (-1,-1), (-1,7), (7,8), (8,7): every later one repeats one of these
    assert evidence.is_scored.tolist() == [True, True, True, True] + [False] * 16


def test_empty_text_has_no_evidence():
    evidence = _scheme().evidence([])
    detection = GumbelWatermarkDetector(42).detect([])
    assert evidence.num_tokens == evidence.num_scored_tokens == detection.num_scored_tokens == 0
    assert evidence.score_sum == detection.score == 0.0


def test_rejects_token_ids_that_would_collide_with_padding():
    for bad in ([-1, 5], [2**32 - 1], [[1, 2]]):
        with pytest.raises(ValueError):
            _scheme().evidence(bad)


# Generation -----------------------------------------------------------------------


def test_noised_argmax_equals_vllm_watermarked_sample():
    scheme = _scheme(key=2**40 + 7)
    contexts = scheme.generation_contexts([RANDOM.integers(0, VOCABULARY_SIZE, length) for length in range(8)])
    logits = (RANDOM.standard_normal((8, VOCABULARY_SIZE)) * 3).astype(np.float32)
    noise = scheme.gumbel_noise(contexts, VOCABULARY_SIZE)
    assert noise.dtype == np.float32 and noise.shape == (8, VOCABULARY_SIZE)
    sample = GumbelWatermarker(2**40 + 7)._sample_watermarked(torch.from_numpy(logits), torch.from_numpy(contexts))
    np.testing.assert_array_equal(np.argmax(logits + noise, axis=-1), sample.token_ids.numpy())
    # the noise itself, computed from the (bit-exact) uniforms as vLLM's CPU path does
    uniforms = torch.from_numpy(scheme.uniforms(contexts, np.arange(VOCABULARY_SIZE)))
    torch_noise = -torch.log(-torch.log(uniforms.clamp_min(torch.finfo(torch.float32).tiny)))
    # torch's float32 log is not correctly rounded (Sleef, 1 ulp), ours is: 1-ulp
    # differences, which near noise 0 (where -log(u) ~ 1) are about one ulp of 1.0 absolute.
    # How often they occur depends on the CPU's vector path (under 1% of values on the
    # machine this was written on, 14% on an AMD EPYC), so only their size is asserted.
    np.testing.assert_allclose(noise, torch_noise.numpy(), rtol=2.5e-7, atol=2.5e-7)


def test_generation_contexts_hold_the_last_generated_tokens():
    contexts = _scheme(context_width=3).generation_contexts([[], [5], [1, 2, 3, 4, 5]])
    assert contexts.dtype == np.int64
    assert contexts.tolist() == [[-1, -1, -1], [-1, -1, 5], [3, 4, 5]]


def _generate(scheme: GumbelScheme, num_tokens: int, support: int) -> tuple[list[int], int]:
    """Sample like vLLM's GPU sampler at temperature 1, with random logits on ``support`` ids.

    Contexts hold only generated tokens; a context seen earlier in this output is
    sampled without the watermark (vLLM's default "single_turn" deduplication).
    Returns the tokens and how many were sampled without the watermark.
    """
    output: list[int] = []
    seen_contexts: set[tuple[int, ...]] = set()
    num_unwatermarked = 0
    for _ in range(num_tokens):
        logits = np.full(VOCABULARY_SIZE, -np.inf, dtype=np.float32)
        logits[:support] = RANDOM.standard_normal(support).astype(np.float32)
        contexts = scheme.generation_contexts([output])
        context = tuple(contexts[0].tolist())
        if context in seen_contexts:
            noise = RANDOM.gumbel(size=VOCABULARY_SIZE).astype(np.float32)
            num_unwatermarked += 1
        else:
            noise = scheme.gumbel_noise(contexts, VOCABULARY_SIZE)[0]
        seen_contexts.add(context)
        output.append(int(np.argmax(logits + noise)))
    return output, num_unwatermarked


@pytest.mark.parametrize(("context_width", "support"), [(4, VOCABULARY_SIZE), (1, 64)])
def test_generated_text_is_detected_by_vllm_and_random_text_is_not(context_width, support):
    key = 2**64 - 1
    scheme = _scheme(key, context_width)
    token_ids, num_unwatermarked = _generate(scheme, 200, support)
    if support == 64:
        assert num_unwatermarked > 100  # width 1 over 64 ids: most contexts repeat
    detection = GumbelWatermarkDetector(key, context_width).detect(token_ids)
    assert detection.num_scored_tokens == 200 - num_unwatermarked
    assert detection.p_value < 1e-6
    evidence = scheme.evidence(token_ids)
    assert scipy.stats.gamma.sf(evidence.score_sum, evidence.num_scored_tokens) == pytest.approx(
        detection.p_value, rel=1e-6
    )
    # Without the watermark p is Uniform(0, 1): each of these two checks fails by
    # chance with probability 1e-4 (a fixed seed makes the run deterministic anyway).
    random_ids = RANDOM.integers(0, support, 200).tolist()
    assert GumbelWatermarkDetector(key, context_width).detect(random_ids).p_value > 1e-4
    assert GumbelWatermarkDetector(key - 1, context_width).detect(token_ids).p_value > 1e-4


@pytest.mark.parametrize("num_tokens", [1, 10, 200, 1_000])
def test_gamma_survival_equals_vllm_p_value_on_unwatermarked_text(num_tokens):
    token_ids = RANDOM.integers(0, VOCABULARY_SIZE, num_tokens).tolist()
    evidence, detection = _assert_evidence_matches_vllm(token_ids)
    p_value = scipy.stats.gamma.sf(evidence.score_sum, evidence.num_scored_tokens)
    assert p_value == pytest.approx(detection.p_value, rel=1e-6)


# Construction ---------------------------------------------------------------------


def test_parameters_and_key_are_validated_and_the_key_never_printed():
    for width in (0, 17):
        with pytest.raises(ValueError):
            GumbelParameters(context_width=width)
    for key in (-1, 2**64):
        with pytest.raises(ValueError):
            GumbelScheme(key, GumbelParameters())
    scheme = GumbelScheme(123_456_789_012, GumbelParameters())
    assert "123456789012" not in repr(scheme) and "redacted" in repr(scheme)
    with pytest.raises(ValueError):
        scheme.uniforms(np.zeros((2, 3), dtype=np.int64), np.arange(5))  # width 3, scheme 4
