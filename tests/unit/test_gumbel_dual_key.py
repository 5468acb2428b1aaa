"""Dual-key Gumbel-max: vLLM 0.32's dual_key_gumbel reproduced, with an exact p-value.

vLLM is the reference for the keys, the scores and the sampled tokens (the service code
must not import it). For the p-value, which vLLM only approximates, the reference is an
exact mpmath evaluation of the partial-fraction form of the score sum's tail.
"""

import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from vllm.config.watermarking import derive_watermark_key as vllm_derive_watermark_key
from vllm.v1.watermarking.gumbel import DualKeyGumbelWatermarkDetector, DualKeyGumbelWatermarker

from signet.watermark.gumbel_dual_key import (
    DualKeyGumbelKey,
    DualKeyGumbelParameters,
    DualKeyGumbelScheme,
    derive_watermark_key,
)
from signet.watermark.scheme import GenerationRow
from signet.watermark.weighted_gamma import WeightedGammaNull

VOCABULARY_SIZE = 49_152
KEYS = [0, 42, 2**40 + 7, 2**64 - 1]
ALPHAS = [0.0, 0.1, 0.5, 0.9, 1.0]
RANDOM = np.random.default_rng(20260604)


def _scheme(key=42, context_width=4, alpha=0.1):
    return DualKeyGumbelScheme(key, DualKeyGumbelParameters(context_width=context_width, alpha=alpha))


def _generate(scheme, num_tokens: int, support: int = VOCABULARY_SIZE, vocabulary: int = VOCABULARY_SIZE) -> list[int]:
    """Tokens sampled through ``apply_watermark`` from random logits on the first ``support`` ids.

    Where the scheme leaves one token possible it is the watermarked choice; a repeated
    context leaves the logits alone and the token is sampled from their softmax.
    """
    row = GenerationRow(prompt_ids=[1, 2, 3], output_ids=[], temperature=1.0)
    for _ in range(num_tokens):
        logits = torch.full((1, vocabulary), -math.inf)
        logits[0, :support] = torch.from_numpy(RANDOM.standard_normal(support).astype(np.float32) * 2.0)
        scheme.apply_watermark(logits, [0], [row])
        probabilities = torch.softmax(logits[0].double(), dim=0).numpy()
        row.output_ids.append(int(RANDOM.choice(vocabulary, p=probabilities / probabilities.sum())))
    return row.output_ids


# Keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_key_derivation_equals_vllm(key):
    for domain in (b"key_a", b"key_b"):
        assert derive_watermark_key(key, domain) == vllm_derive_watermark_key(key, domain)
    assert derive_watermark_key(key, b"key_a") != derive_watermark_key(key, b"key_b")
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            derive_watermark_key(bad, b"key_a")


def test_key_model_validates_reports_and_never_prints_the_key():
    entry = DualKeyGumbelKey(key_id="dual", scheme="gumbel-dual-key", key=123_456_789_012, alpha=0.25)
    assert entry.public_parameters() == {"context_width": 4, "key_b_probability": 0.25}
    assert "123456789012" not in repr(entry)
    scheme = entry.build_scheme(None)
    assert isinstance(scheme, DualKeyGumbelScheme) and scheme.name == "gumbel-dual-key"
    assert "123456789012" not in repr(scheme) and "redacted" in repr(scheme)
    assert scheme.null_distribution.alpha == 0.25
    assert DualKeyGumbelKey(key_id="d", scheme="gumbel-dual-key", key=1).alpha == 0.1  # vLLM's default
    for bad in ({"key": -1}, {"key": 2**64}, {"alpha": -0.1}, {"alpha": 1.5}, {"context_width": 17}):
        with pytest.raises(ValueError):
            DualKeyGumbelKey(**{"key_id": "d", "scheme": "gumbel-dual-key", "key": 1, **bad})
    assert entry.sampling_problem(0.0, 1.0).field == "temperature"
    assert entry.sampling_problem(0.7, 0.9).field == "top_p"
    assert entry.sampling_problem(0.7, 1.0) is None


def test_detection_imports_neither_torch_nor_vllm():
    code = (
        "import sys, signet.watermark.gumbel_dual_key; assert 'torch' not in sys.modules and 'vllm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Detection ------------------------------------------------------------------------


def _assert_evidence_matches_vllm(token_ids, key, context_width, alpha):
    evidence = _scheme(key, context_width, alpha).evidence(token_ids)
    detector = DualKeyGumbelWatermarkDetector(key, context_width, alpha=alpha)
    detection = detector.detect(list(token_ids))
    assert evidence.num_tokens == len(token_ids)
    assert evidence.num_scored_tokens == detection.num_scored_tokens
    assert evidence.score_sum == pytest.approx(detection.score, rel=1e-12, abs=0.0)
    # token by token: the same tokens scored, with the same weighted scores
    contexts, targets = detector._prepare_inputs(list(token_ids))
    np.testing.assert_array_equal(np.asarray(token_ids)[evidence.is_scored], targets.numpy())
    expected_scores = detector._score_tokens(contexts, targets).numpy()
    np.testing.assert_allclose(evidence.scores[evidence.is_scored], expected_scores, rtol=1e-14)
    assert np.all(evidence.scores[~evidence.is_scored] == 0.0)
    return evidence, detection


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize(("key", "width"), [(0, 1), (42, 4), (2**64 - 1, 9)])
def test_evidence_equals_vllm_detector_on_random_text(key, width, alpha):
    _assert_evidence_matches_vllm(RANDOM.integers(0, VOCABULARY_SIZE, 300).tolist(), key, width, alpha)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
@pytest.mark.parametrize(("width", "support"), [(4, VOCABULARY_SIZE), (1, 24)])
def test_evidence_equals_vllm_detector_on_generated_text(width, support, alpha):
    key = 2**40 + 7
    token_ids = _generate(_scheme(key, width, alpha), 120, support)
    evidence, _ = _assert_evidence_matches_vllm(token_ids, key, width, alpha)
    if support == 24:
        assert evidence.num_scored_tokens < 60  # width 1 over 24 ids: most contexts repeat


def test_empty_text_has_no_evidence():
    evidence = _scheme().evidence([])
    assert evidence.num_tokens == evidence.num_scored_tokens == 0
    assert DualKeyGumbelWatermarkDetector(42).detect([]).num_scored_tokens == 0


def test_generated_text_is_detected_under_its_key_only():
    key, alpha = 2**64 - 1, 0.1
    scheme = _scheme(key, alpha=alpha)
    token_ids = _generate(scheme, 50)
    evidence = scheme.evidence(token_ids)
    assert evidence.num_scored_tokens == 50
    null = scheme.null_distribution
    assert null.p_values(np.array([evidence.score_sum]), np.array([50]))[0] < 1e-12
    # Under another key, or for random text, p is Uniform(0, 1): each of these two checks
    # fails by chance with probability 1e-4 (the fixed seed makes the run deterministic).
    for other in (_scheme(key - 1, alpha=alpha).evidence(token_ids), scheme.evidence(RANDOM.integers(0, 2**15, 50))):
        assert null.p_values(np.array([other.score_sum]), np.array([other.num_scored_tokens]))[0] > 1e-4


# Generation -----------------------------------------------------------------------


def _forced_routes(routes: np.ndarray):
    """Stands in for vLLM's seeded RandomSampler, which needs Triton: returns the given routes
    (0: key A, 1: key B), as ``sampler(routing_logits)`` would have drawn them."""

    def sampler(routing_logits: torch.Tensor) -> torch.Tensor:
        assert routing_logits.shape == (len(routes), 2)
        return torch.from_numpy(routes.astype(np.int64))

    return sampler


@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.3])
def test_chosen_tokens_equal_vllm_dual_key_watermarker(alpha):
    vocabulary, rows = 4_096, 8  # vLLM's CPU PRF runs ~7 us per (context, token): a small vocabulary
    key = 2**40 + 7
    scheme = _scheme(key, context_width=4, alpha=alpha)
    outputs = [RANDOM.integers(0, vocabulary, length).tolist() for length in range(rows)]  # padded contexts too
    generation_rows = [GenerationRow([9, 9, 9], output, 1.0) for output in outputs]
    logits = torch.from_numpy(RANDOM.standard_normal((rows, vocabulary)).astype(np.float32) * 3.0)
    # alpha 0 and 1 route every row to one key; otherwise both keys, half the rows each
    routes = scheme.draw_routes(generation_rows) if alpha in (0.0, 1.0) else np.arange(rows) % 2 == 1
    watermarked = logits.clone()
    scheme.apply_routed(watermarked, list(range(rows)), generation_rows, routes)
    assert torch.isfinite(watermarked).sum(dim=1).tolist() == [1] * rows  # one possible token per row

    contexts = torch.from_numpy(scheme.key_a.generation_contexts(outputs))
    sampler = None if alpha in (0.0, 1.0) else _forced_routes(routes)  # vLLM draws no route at alpha 0 or 1
    expected = DualKeyGumbelWatermarker(key, 4, alpha=alpha).sample(logits, contexts, sampler).token_ids
    assert watermarked.argmax(dim=1).tolist() == expected.tolist()


def test_a_repeated_context_is_sampled_without_the_watermark():
    scheme = _scheme(context_width=2, alpha=0.5)
    row = GenerationRow([1], [5, 6, 7, 5, 6], 1.0)  # context (5, 6) was seen before position 2
    logits = torch.from_numpy(RANDOM.standard_normal((1, 100)).astype(np.float32))
    untouched = logits.clone()
    scheme.apply_watermark(logits, [0], [row])
    assert torch.equal(logits, untouched)
    row.output_ids.append(8)  # context (6, 8) is new: one token left possible
    scheme.apply_watermark(logits, [0], [row])
    assert torch.isfinite(logits).sum() == 1


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_key_a_is_chosen_with_probability_one_minus_alpha(alpha):
    # Each emitted token is compared with both keys' Gumbel-max choices for its logits and
    # context; where the two agree the route cannot be told and the token is left out
    # (agreement does not depend on the route, which is drawn independently).
    rows, steps, vocabulary = 200, 20, 512
    scheme = _scheme(key=7, alpha=alpha)
    generation_rows = [GenerationRow([0], [], 1.0) for _ in range(rows)]
    from_a = from_b = 0
    for _ in range(steps):
        logits = torch.from_numpy(RANDOM.standard_normal((rows, vocabulary)).astype(np.float32) * 2.0)
        contexts = scheme.key_a.generation_contexts([row.output_ids for row in generation_rows])
        choice_a = np.argmax(logits.numpy() + scheme.key_a.gumbel_noise(contexts, vocabulary), axis=1)
        choice_b = np.argmax(logits.numpy() + scheme.key_b.gumbel_noise(contexts, vocabulary), axis=1)
        scheme.apply_watermark(logits, list(range(rows)), generation_rows)
        emitted = logits.argmax(dim=1).numpy()
        assert np.all((emitted == choice_a) | (emitted == choice_b))
        from_a += int(np.sum((emitted == choice_a) & (choice_a != choice_b)))
        from_b += int(np.sum((emitted == choice_b) & (choice_a != choice_b)))
        for row, token in zip(generation_rows, emitted, strict=True):
            row.output_ids.append(int(token))
    # Binomial(n, 1 - alpha): outside these bounds with probability below 1e-6.
    n = from_a + from_b
    assert n > 0.8 * rows * steps
    low, high = scipy.stats.binom.ppf([5e-7, 1 - 5e-7], n, 1 - alpha)
    assert low <= from_a <= high


# The exact p-value ----------------------------------------------------------------


def _exact_tail(score: float, count: int, alpha: float, log_p_guess: float) -> mpmath.mpf:
    """P((1 - alpha) X + alpha Y >= score), X, Y independent Gamma(count, 1), exactly.

    For whole T the moment generating function (1 - a t)^-T (1 - b t)^-T splits into
    partial fractions: sum over k <= T of A_k (1 - a t)^-k + B_k (1 - b t)^-k, so the tail
    is sum A_k Q(k, s / a) + B_k Q(k, s / b). The terms cancel heavily: the sum is taken
    with enough digits for the largest coefficient over the result (``log_p_guess`` only
    sizes that), and again with 30 more; the two must agree to 1e-20, else the digits double.
    """
    digits = 30 + int(max(0.0, _log_largest_coefficient(count, alpha) - log_p_guess) / math.log(10))
    while True:
        with mpmath.workdps(digits):
            first = _partial_fractions(score, count, alpha)
        with mpmath.workdps(digits + 30):
            second = _partial_fractions(score, count, alpha)
        if second > 0 and abs(first / second - 1) < mpmath.mpf(10) ** -20:
            return second
        digits *= 2


def _log_largest_coefficient(count: int, alpha: float) -> float:
    """log of the largest |A_k| or |B_k| (see ``_pole_terms``); 0 where there are no poles to split."""
    if alpha in (0.0, 0.5, 1.0):
        return 0.0
    m = np.arange(count)
    largest = -np.inf
    for d in (alpha / (1 - alpha), (1 - alpha) / alpha):
        log_binomial = scipy.special.gammaln(count + m) - scipy.special.gammaln(m + 1) - scipy.special.gammaln(count)
        log_terms = -count * math.log(abs(1 - d)) + log_binomial + m * math.log(d / abs(1 - d))
        largest = max(largest, float(log_terms.max()))
    return largest


def _partial_fractions(score: float, count: int, alpha: float) -> mpmath.mpf:
    score, alpha = mpmath.mpf(score), mpmath.mpf(alpha)
    a, b = 1 - alpha, alpha
    if b == 0 or a == 0:
        return mpmath.gammainc(count, score / (a + b), mpmath.inf, regularized=True)
    if a == b:
        return mpmath.gammainc(2 * count, score / a, mpmath.inf, regularized=True)
    return _pole_terms(score, count, a, b) + _pole_terms(score, count, b, a)


def _pole_terms(score, count, scale, other):
    """sum over m < T of C_m Q(T - m, s / scale), the pole at t = 1 / scale.

    With d = other / scale: C_m = (1 - d)^-T binom(T + m - 1, m) (-d / (1 - d))^m.
    """
    d = other / scale
    x = score / scale
    # Q(k, x) for k = 1..T by the upward recurrence Q(k + 1) = Q(k) + e^-x x^k / k!
    term = mpmath.exp(-x)
    upper = [term]
    for k in range(1, count):
        term = term * x / k
        upper.append(upper[-1] + term)
    coefficient, total = (1 - d) ** -count, mpmath.mpf(0)
    for m in range(count):
        if m:
            coefficient = coefficient * (count + m - 1) / m * (-d / (1 - d))
        total += coefficient * upper[count - m - 1]
    return total


def _scores_at(null: WeightedGammaNull, counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Score sums whose p-value under ``null`` is ``targets``, by bisection on log p."""
    low, high = np.zeros(len(counts)), 3.0 * counts + 1_000.0
    assert np.all(null.log_survival(high, counts) < np.log(targets))
    for _ in range(60):
        middle = 0.5 * (low + high)
        above = null.log_survival(middle, counts) > np.log(targets)
        low, high = np.where(above, middle, low), np.where(above, high, middle)
    return 0.5 * (low + high)


TARGETS = np.array([0.5, 1e-2, 1e-6, 1e-20, 1e-100, 1e-300])


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.1, 0.3, 0.45, 0.5, 0.9, 1.0])
def test_p_value_equals_the_exact_tail(alpha):
    # rel 1e-9 is the contract; the docstring of watermark/weighted_gamma.py gives the measured
    # error. The reference's cost grows with T and with alpha near 0.5 (more cancellation):
    # T = 1000 runs at two weights only, T = 5000 below.
    null = WeightedGammaNull(alpha)
    counts = [1, 2, 3, 7, 25, 100] + ([1_000] if alpha in (0.1, 0.9) else [])
    counts = np.repeat(counts, len(TARGETS))
    scores = _scores_at(null, counts, np.resize(TARGETS, len(counts)))
    ours = null.p_values(scores, counts)
    for score, count, p in zip(scores, counts, ours, strict=True):
        exact = _exact_tail(score, int(count), alpha, math.log(p))
        assert p == pytest.approx(float(exact), rel=1e-9), (score, count)


def test_p_value_equals_the_exact_tail_at_5000_tokens():
    null = WeightedGammaNull(0.1)
    counts = np.array([5_000, 5_000])
    scores = _scores_at(null, counts, np.array([1e-3, 1e-300]))
    for score, p in zip(scores, null.p_values(scores, counts), strict=True):
        assert p == pytest.approx(float(_exact_tail(score, 5_000, 0.1, math.log(p))), rel=1e-9)


def test_special_weights_are_gamma_tails():
    scores, counts = np.array([0.5, 30.0, 400.0, 4_000.0]), np.array([1, 25, 300, 2_500])
    for alpha in (0.0, 1.0):  # one key: Gamma(T, 1)
        # scipy's gammaincc is good to about 1e-12 this deep (4.9e-285 for the last pair)
        ours = WeightedGammaNull(alpha).p_values(scores, counts)
        np.testing.assert_allclose(ours, scipy.stats.gamma.sf(scores, counts), rtol=1e-10)
    # alpha 0.5: (X + Y) / 2 with X + Y ~ Gamma(2T, 1)
    half = WeightedGammaNull(0.5).p_values(scores, counts)
    np.testing.assert_allclose(half, scipy.stats.gamma.sf(2 * scores, 2 * counts), rtol=1e-10)
    # the weights are symmetric: alpha and 1 - alpha give one distribution
    mirrored = WeightedGammaNull(0.9).p_values(scores, counts)
    np.testing.assert_allclose(WeightedGammaNull(0.1).p_values(scores, counts), mirrored)


def _vllm_style_p_value(score: float, count: int, alpha: float) -> float:
    """vLLM's ``DualKeyGumbelWatermarkDetector._get_p_value``: the Gamma with the sum's mean and
    variance, shape T / v and scale v with v = (1 - alpha)^2 + alpha^2."""
    variance = (1 - alpha) ** 2 + alpha**2
    return float(scipy.special.gammaincc(count / variance, score / variance))


@pytest.mark.parametrize("count", [10, 25, 100, 1_000])
def test_vllm_p_value_is_a_moment_match_that_understates_the_tail(count):
    alpha = 0.1
    null = WeightedGammaNull(alpha)
    detector = DualKeyGumbelWatermarkDetector(42, alpha=alpha)
    scores = _scores_at(null, np.full(3, count), np.array([1e-2, 1e-6, 1e-20]))
    vllm = [detector._get_p_value(float(score), count) for score in scores]
    # vLLM calls torch's gammaincc, which differs from scipy's by up to ~1e-9 relative here
    np.testing.assert_allclose(vllm, [_vllm_style_p_value(score, count, alpha) for score in scores], rtol=1e-8)
    ratios = np.array(vllm) / null.p_values(scores, np.full(3, count))
    # Its tail falls like exp(-s / 0.82) where the true one falls like exp(-s / 0.9), so it
    # reports more significance than the scores carry, the more so the further out
    # (bench/dual_key_p_values.py: at p = 1e-20 it says 5.8e-22 for T = 10, 5.6e-21 for T = 1000).
    assert ratios[2] < ratios[1] < ratios[0] < 1
    assert ratios[2] < 0.6


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_vllm_p_value_is_exact_where_the_sum_is_a_gamma(alpha):
    null = WeightedGammaNull(alpha)
    detector = DualKeyGumbelWatermarkDetector(42, alpha=alpha)
    counts = np.array([1, 25, 200])
    for score, count, p in zip(counts * 2.5, counts, null.p_values(counts * 2.5, counts), strict=True):
        assert p == pytest.approx(detector._get_p_value(float(score), int(count)), rel=1e-9)


def test_exact_null_is_calibrated():
    # 20,000 sums of T = 25 simulated scores: the fraction of p-values below each level is
    # Binomial(20,000, level) / 20,000. Each count lies within its bounds except with
    # probability below 1e-6, so the test fails by chance with probability below 4e-6.
    alpha, count, trials = 0.1, 25, 20_000
    scores = (1 - alpha) * RANDOM.exponential(size=(trials, count)) + alpha * RANDOM.exponential(size=(trials, count))
    p_values = WeightedGammaNull(alpha).p_values(scores.sum(axis=1), np.full(trials, count))
    for level in (0.5, 0.1, 0.01, 0.001):
        low, high = scipy.stats.binom.ppf([5e-7, 1 - 5e-7], trials, level)
        assert low <= np.sum(p_values < level) <= high, level


def test_edge_cases_and_z_scores():
    null = WeightedGammaNull(0.1)
    sums = np.array([0.0, -3.0, 5.0, np.inf, 12.0, 1e6])
    counts = np.array([4, 4, 0, 4, 4, 4])
    p = null.p_values(sums, counts)
    assert p[:3].tolist() == [1.0, 1.0, 1.0] and p[3] == 0.0 and 0 < p[4] < 1 and p[5] == 0.0
    # a token's weighted score is at most 24 ln 2, as each key's is (float32 uniforms)
    best = float(null.p_values(np.array([24 * np.log(2)]), np.array([1]))[0])
    assert null.smallest_p_value(0) == 1.0 and null.smallest_p_value(1) == best and 0 < best < 1e-7
    sd = math.sqrt(0.9**2 + 0.1**2)
    assert (null.token_mean, null.token_sd) == (1.0, pytest.approx(sd))
    z = null.z_scores(np.array([30.0, 1.0]), np.array([25, 0]))
    assert z[0] == pytest.approx((30 - 25) / math.sqrt(25 * sd**2)) and math.isnan(z[1])
    # whole arrays at once, any shape, each entry as computed alone
    grid_sums, grid_counts = np.array([[20.0, 40.0], [80.0, 400.0]]), np.array([[10, 25], [60, 300]])
    grid = null.p_values(grid_sums, grid_counts)
    assert grid.shape == (2, 2)
    for index in np.ndindex(2, 2):
        alone = null.p_values(np.array([grid_sums[index]]), np.array([grid_counts[index]]))[0]
        assert grid[index] == pytest.approx(alone, rel=1e-14)
    # decreasing in the score
    ladder = null.p_values(np.linspace(25, 200, 400), np.full(400, 50))
    assert np.all(np.diff(ladder) < 0)
    with pytest.raises(ValueError):
        WeightedGammaNull(1.5)
