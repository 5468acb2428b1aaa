"""``/detect`` logic: pick keys, tokenize as each key needs, test, correct, report.

Results are cached (``state.detection_cache``) under a digest of the normalised
input, the keys and the options, so a repeat, or a text that differs only in what
the keys' normalisation folds away, is answered without tokenizing or scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signet import metrics
from signet.api.auth import Caller, authorize_detection
from signet.api.detect.caching import cache_key, cached_response, store, text_digest, token_ids_digest
from signet.api.detect.protocol import (
    DetectRequest,
    DetectResponse,
    KeyDetection,
    TokenDetail,
    Verdict,
    WindowReport,
)
from signet.api.errors import ApiError
from signet.api.limits import check_text_size
from signet.api.provenance.search import provenance_report, with_provenance
from signet.api.state import ServiceState
from signet.keys import WatermarkKey
from signet.watermark.evidence import TokenEvidence
from signet.watermark.normalization import NormalizationStep, NormalizedText, normalize
from signet.watermark.scheme import WatermarkScheme
from signet.watermark.statistics import holm_bonferroni, p_value, tokens_needed, z_score
from signet.watermark.windows import WindowResult, best_window

# The smallest window the windowed search tests, in scored tokens, unless a key sets a
# larger min_scored_tokens. Windows are searched only in texts with room for two of them.
MIN_WINDOW_SCORED_TOKENS = 25


@dataclass(frozen=True)
class Tokens:
    ids: list[int]
    char_spans: list[tuple[int, int]] | None  # in the request's text; None for token_ids input


@dataclass(frozen=True)
class KeyInput:
    """A key to test, and the request's input as that key reads it."""

    key: WatermarkKey
    tokenizer: str  # the resolved name
    text: NormalizedText | None  # normalised as the key asks; None for token_ids input


@dataclass(frozen=True)
class KeyTest:
    key: WatermarkKey
    scheme: WatermarkScheme
    tokenizer: str
    tokens: Tokens
    evidence: TokenEvidence
    p_value: float
    z_score: float | None
    window: WindowResult | None
    # The fewest scored tokens whose most extreme outcome could reach alpha, or the key's
    # own floor where it sets a higher one.
    min_scored_tokens: int

    @property
    def has_enough_evidence(self) -> bool:
        return self.evidence.num_scored_tokens >= self.min_scored_tokens

    @property
    def decision_p_value(self) -> float:
        return self.p_value if self.window is None else self.window.corrected_p_value


def detect(state: ServiceState, request: DetectRequest, caller: Caller) -> DetectResponse:
    response = _detect_watermark(state, request, caller)
    if not request.provenance:
        return response
    # After the cache: a cached answer must not name a generation erased since.
    return with_provenance(response, provenance_report(state, caller, request.text, request.alpha))


def _detect_watermark(state: ServiceState, request: DetectRequest, caller: Caller) -> DetectResponse:
    authorize_detection(caller, token_ids=request.token_ids is not None, details=request.details)
    _check_input_size(state, request)
    # Refusals (unknown or forbidden keys, tokenizer mismatches) come before the cache is
    # asked, so a request that fails never gets a cached answer; failures are never stored.
    inputs = _key_inputs(state, request, caller)
    cache = state.detection_cache
    # Per-token detail lists each token's green flag: a sample of the key's green lists.
    # Such results stay out of a cache others can read (Redis): whoever reads Redis would
    # collect the green lists of every text tested with details.
    if cache is None or (request.details and not cache.private):
        return metrics.counted_detection(_as_seen_by(caller, _run(state, request, inputs)))
    entry = _cache_key(state, request, inputs, caller)
    response = cached_response(cache, entry)
    if response is None:
        response = _run(state, request, inputs)
        store(cache, entry, response)
    return metrics.counted_detection(_as_seen_by(caller, response))


# What an insufficient_evidence result shows a caller without per-token detail. Its counts
# are evidence like any other: a two-token text's green count is one green-list entry.
# Without them an untested key says nothing but T, and every key with a scored token is
# charged at least budget.MIN_CHARGED_SCORED_TOKENS (25) however short its text, so each
# answer still tells at most log2(T + 1) bits of counts per 25 tokens of budget, 4.7 at
# T = 25 (KGW family). A caller with
# per-token detail sees the green flags themselves, so hiding counts from it would
# protect nothing.
_UNTESTED_STATISTICS = {
    "window": None,
    "p_value": 1.0,
    "z_score": None,
    "score": None,
    "num_green_tokens": None,
    "green_fraction": None,
}


def _as_seen_by(caller: Caller, response: DetectResponse) -> DetectResponse:
    """``response``, without the statistics of untested keys unless ``caller`` may see token details.

    Applied after the cache: a cached entry stays right when a tenant's permissions change."""
    if caller.may_see_token_details:
        return response
    untested = [key.verdict == "insufficient_evidence" for key in response.keys]
    if not any(untested):
        return response
    keys = [
        key.model_copy(update=_UNTESTED_STATISTICS) if hide else key
        for key, hide in zip(response.keys, untested, strict=True)
    ]
    top = _UNTESTED_STATISTICS if response.verdict == "insufficient_evidence" else {}
    return response.model_copy(update={**top, "keys": keys})


def _check_input_size(state: ServiceState, request: DetectRequest) -> None:
    if request.text is not None:
        check_text_size("text", len(request.text), state.settings.max_text_chars)
    else:
        # a token is at least one character: the text limit bounds token_ids too
        check_text_size("token_ids", len(request.token_ids), state.settings.max_text_chars, "token ids")


def _run(state: ServiceState, request: DetectRequest, inputs: list[KeyInput]) -> DetectResponse:
    tokens_by_recipe: dict[tuple, Tokens] = {}
    tests = [_test_key(state, item, request, tokens_by_recipe) for item in inputs]
    metrics.count_scored_tokens((test.key.scheme, test.evidence.num_scored_tokens) for test in tests)
    tested = [test for test in tests if test.has_enough_evidence]
    adjusted = holm_bonferroni([test.decision_p_value for test in tested])
    adjusted_by_key = {test.key.key_id: value for test, value in zip(tested, adjusted, strict=True)}
    # A key without enough evidence is not tested at all: it cannot reject, so it is
    # left out of Holm's m and keeps the other keys' power.
    detections = [_report(test, adjusted_by_key.get(test.key.key_id, 1.0), request) for test in tests]
    detections.sort(key=_significance_order)
    best = detections[0]
    return DetectResponse(
        **best.model_dump(), alpha=request.alpha, num_keys_tested=len(tested), keys=detections, cached=False
    )


def _key_inputs(state: ServiceState, request: DetectRequest, caller: Caller) -> list[KeyInput]:
    """The keys to test with the input as each reads it; a text is normalised once per set of steps."""
    normalized: dict[tuple[NormalizationStep, ...], NormalizedText] = {}
    inputs = []
    for key in _keys_to_test(state, request, caller):
        problem = _tokenizer_problem(state, key, request)
        if problem is not None:
            raise ApiError(422, problem, "tokenizer" if request.tokenizer is not None else "text")
        text = None
        if request.text is not None:
            if key.normalization not in normalized:
                normalized[key.normalization] = normalize(request.text, key.normalization)
            text = normalized[key.normalization]
        inputs.append(KeyInput(key, state.tokenizers.resolve_name(key.tokenizer), text))
    return inputs


def _keys_to_test(state: ServiceState, request: DetectRequest, caller: Caller) -> list[WatermarkKey]:
    # The caller's permission is checked before a key is looked up: a tenant limited to
    # some keys gets 403 for any other key_id, whether it exists or not.
    if request.key_ids is None:
        default = request.key_id is None
        caller.check_keys([state.keys.default_key_id if default else request.key_id], "key_id", default=default)
        return [state.keys.get(request.key_id)]
    if request.key_ids != "all":
        caller.check_keys(request.key_ids, "key_ids")
        return [state.keys.get(key_id) for key_id in dict.fromkeys(request.key_ids)]
    # "all": every key this caller may use
    keys = [state.keys.get(key_id) for key_id in caller.usable(state.keys.key_ids)]
    # "all" means every key this input can be tested against: a key made with another
    # tokenizer than the request names, or one this service cannot tokenize text for,
    # is left out rather than failing the request.
    usable = [key for key in keys if _tokenizer_problem(state, key, request) is None]
    if not usable:
        raise ApiError(422, "no key can test this input: " + _tokenizer_problem(state, keys[0], request), "tokenizer")
    return usable


def _tokenizer_problem(state: ServiceState, key: WatermarkKey, request: DetectRequest) -> str | None:
    name = state.tokenizers.resolve_name(key.tokenizer)
    if request.tokenizer is not None and request.tokenizer != name:
        return f"key {key.key_id!r} was made with tokenizer {name!r}, not {request.tokenizer!r}"
    if request.text is not None and state.tokenizers.get(name) is None:
        return (
            f"key {key.key_id!r} was made with tokenizer {name!r}, which this service does not load; "
            "send token_ids made with it instead of text"
        )
    return None


def _cache_key(state: ServiceState, request: DetectRequest, inputs: list[KeyInput], caller: Caller) -> str:
    """Everything the response depends on; texts and secrets only as digests. Each tenant
    has entries of its own: a shared hit ("cached": true) would tell one tenant which
    texts another has tested."""
    digests = _input_digests(request, inputs)
    return cache_key(
        state.keys,
        {
            "tenant": caller.tenant.name if caller.tenant is not None else None,
            "alpha": request.alpha,
            "windows": request.windows,
            "details": request.details,
            "tokenizer": request.tokenizer,
            # the permutation size of kgw-lefthash keys that leave vocab_size unset
            "model_vocab_size": state.keys.model_vocab_size,
            "raw_text": _raw_text_digest(request, inputs),
            "keys": [
                [item.key.scheme, item.key.key_id, state.keys.fingerprint(item.key.key_id), item.tokenizer, digest]
                for item, digest in zip(inputs, digests, strict=True)
            ],
        },
    )


def _input_digests(request: DetectRequest, inputs: list[KeyInput]) -> list[str]:
    """Per key, the digest of what it tokenizes: its normalised text, or the token ids."""
    if request.token_ids is not None:
        return ["token_ids:" + token_ids_digest(request.token_ids)] * len(inputs)
    by_steps: dict[tuple[NormalizationStep, ...], str] = {}
    for item in inputs:
        if item.key.normalization not in by_steps:
            by_steps[item.key.normalization] = "text:" + text_digest(item.text.text)
    return [by_steps[item.key.normalization] for item in inputs]


def _raw_text_digest(request: DetectRequest, inputs: list[KeyInput]) -> str | None:
    """The caller's own text, where the response depends on more than its normalised forms.

    Window and token spans are offsets into the caller's text: two texts that normalise
    alike but differ (in spacing, say) need their own results when spans are reported.
    """
    if request.text is None or not (request.windows or request.details):
        return None
    if all(item.text.text == request.text for item in inputs):
        return None  # the normalised texts are the caller's, and their digests already pin it down
    return text_digest(request.text)


def _test_key(
    state: ServiceState, item: KeyInput, request: DetectRequest, tokens_by_recipe: dict[tuple, Tokens]
) -> KeyTest:
    key, tokenizer_name = item.key, item.tokenizer
    recipe = (tokenizer_name, key.normalization)
    if recipe not in tokens_by_recipe:
        tokens_by_recipe[recipe] = _tokenize(state, item, request)
    tokens = tokens_by_recipe[recipe]
    scheme = state.keys.scheme(key.key_id)
    _check_vocabulary(state, key, tokenizer_name, tokens.ids, scheme.vocab_size)
    evidence = scheme.evidence(tokens.ids)
    null = scheme.null_distribution
    # Windows are searched only with room for two of the smallest size: in a shorter text the
    # windows starting at its first and second scored tokens differ by one token at each end,
    # and the best one's count beside the whole count told both green flags
    # (bench/green_list_oracle.py: two green-list entries per 26-token request, against one).
    # No fixed floor: every p-value here is exact, so a test is run whenever some outcome on
    # this many tokens could reach alpha (a 23-token Gumbel text can show p = 4.6e-24).
    needed = max(tokens_needed(null, request.alpha), key.min_scored_tokens or 1)
    min_window = max(MIN_WINDOW_SCORED_TOKENS, key.min_scored_tokens or 0)
    # An untested key reports no window either: its window would tell a count (found when
    # alpha 1e-100 left a 120-token text untested but searched).
    searchable = evidence.num_scored_tokens >= max(2 * min_window, needed)
    window = best_window(evidence, null, min_window) if request.windows and searchable else None
    return KeyTest(
        key,
        scheme,
        tokenizer_name,
        tokens,
        evidence,
        p_value(null, evidence),
        z_score(null, evidence),
        window,
        needed,
    )


def _tokenize(state: ServiceState, item: KeyInput, request: DetectRequest) -> Tokens:
    normalized = item.text
    if normalized is None:
        return Tokens(list(request.token_ids), None)
    tokenizer = state.tokenizers.get(item.tokenizer)
    # Spans are reported only with windows or details; mapping each token back through the
    # normalisation is a Python loop over the tokens, so the default request skips it.
    with_spans = tokenizer.is_fast and (request.windows or request.details)
    encoded = tokenizer(normalized.text, add_special_tokens=False, return_offsets_mapping=with_spans)
    spans = None
    if with_spans:
        spans = [normalized.source_span(start, end) for start, end in encoded["offset_mapping"]]
    return Tokens(encoded["input_ids"], spans)


def _check_vocabulary(
    state: ServiceState, key: WatermarkKey, tokenizer_name: str, ids: list[int], scheme_vocab_size: int | None
) -> None:
    """Ids the key's tokenizer cannot have produced mean the caller used another tokenizer."""
    limit = scheme_vocab_size or state.tokenizers.vocab_size(tokenizer_name)
    if limit is not None and ids and max(ids) >= limit:
        raise ApiError(
            422,
            f"token id {max(ids)} is outside the vocabulary of key {key.key_id!r} ({limit} ids, tokenizer "
            f"{tokenizer_name!r})",
            "token_ids",
        )


def _report(test: KeyTest, corrected_p_value: float, request: DetectRequest) -> KeyDetection:
    evidence = test.evidence
    counts_green = test.scheme.counts_green
    verdict: Verdict
    if not test.has_enough_evidence:
        verdict = "insufficient_evidence"
    else:
        verdict = "watermarked" if corrected_p_value < request.alpha else "not_watermarked"
    num_scored = evidence.num_scored_tokens
    return KeyDetection(
        key_id=test.key.key_id,
        scheme=test.key.scheme,
        tokenizer=test.tokenizer,
        verdict=verdict,
        watermarked=verdict == "watermarked",
        corrected_p_value=corrected_p_value,
        p_value=test.p_value,
        z_score=test.z_score,
        score=evidence.score_sum,
        num_green_tokens=round(evidence.score_sum) if counts_green else None,
        green_fraction=(evidence.score_sum / num_scored if num_scored else None) if counts_green else None,
        gamma=test.key.public_parameters()["gamma"] if counts_green else None,
        score_mean=test.scheme.null_distribution.token_mean,
        score_sd=test.scheme.null_distribution.token_sd,
        num_tokens=evidence.num_tokens,
        num_scored_tokens=num_scored,
        min_scored_tokens=test.min_scored_tokens,
        window=_window_report(test.window, test.tokens),
        tokens=_token_details(test) if request.details else None,
    )


def _window_report(window: WindowResult | None, tokens: Tokens) -> WindowReport | None:
    if window is None:
        return None
    spans = tokens.char_spans
    return WindowReport(
        token_start=window.token_start,
        token_end=window.token_end,
        char_start=spans[window.token_start][0] if spans else None,
        char_end=spans[window.token_end - 1][1] if spans else None,
        num_scored_tokens=window.num_scored_tokens,
        p_value=window.p_value,
        corrected_p_value=window.corrected_p_value,
        num_windows=window.num_windows,
    )


def _token_details(test: KeyTest) -> list[TokenDetail]:
    counts_green = test.scheme.counts_green
    spans = test.tokens.char_spans
    scores: np.ndarray = test.evidence.scores
    is_scored: np.ndarray = test.evidence.is_scored
    return [
        TokenDetail(
            index=index,
            token_id=token_id,
            char_start=spans[index][0] if spans else None,
            char_end=spans[index][1] if spans else None,
            scored=bool(is_scored[index]),
            green=bool(scores[index] == 1.0) if counts_green and is_scored[index] else None,
            score=float(scores[index]) if not counts_green and is_scored[index] else None,
        )
        for index, token_id in enumerate(test.tokens.ids)
    ]


def _significance_order(detection: KeyDetection) -> tuple:
    insufficient = detection.verdict == "insufficient_evidence"
    return (detection.verdict != "watermarked", insufficient, detection.corrected_p_value)
