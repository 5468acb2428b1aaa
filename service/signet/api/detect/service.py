"""``/detect`` logic: tokenize, score with the key's scheme, test."""

from __future__ import annotations

from signet.api.detect.protocol import DetectRequest, DetectResponse
from signet.api.limits import check_text_size
from signet.api.state import ServiceState
from signet.watermark.statistics import GreenCountTest


def detect(state: ServiceState, request: DetectRequest) -> DetectResponse:
    check_text_size("text", len(request.text), state.settings.max_text_chars)
    key = state.keys.get(request.key_id)
    token_ids = state.tokenizer(request.text, add_special_tokens=False)["input_ids"]
    scores = state.keys.scheme(key.key_id).score(token_ids)
    test = GreenCountTest(scores.num_scored_tokens, scores.num_green_tokens, key.gamma)
    p_value = test.p_value
    return DetectResponse(
        watermarked=p_value < request.alpha,
        p_value=p_value,
        z_score=test.z_score,
        green_fraction=test.green_fraction,
        num_scored_tokens=test.num_scored_tokens,
        num_green_tokens=test.num_green_tokens,
        num_tokens=len(token_ids),
        alpha=request.alpha,
        scheme=key.scheme,
        key_id=key.key_id,
    )
