"""The engine contract's error and context rule, and how the API and the queue carry them."""

from __future__ import annotations

import json

import pytest

from signet.api.generation import engine_problem
from signet.engine.protocol import EngineError, EngineStatus, SamplingOptions, check_context, fits_context
from signet.queue.jobs import JobOutcome


def test_the_context_rule_counts_the_prompt_and_at_least_one_generated_token():
    assert fits_context(prompt_tokens=2000, max_tokens=48, max_model_len=2048)
    assert not fits_context(prompt_tokens=2000, max_tokens=49, max_model_len=2048)
    assert not fits_context(prompt_tokens=2048, max_tokens=0, max_model_len=2048)  # room for nothing


def test_an_engine_refuses_what_does_not_fit_naming_its_own_input():
    check_context([1] * 10, SamplingOptions(max_tokens=6), max_model_len=16)
    with pytest.raises(EngineError) as refused:
        check_context([1] * 10, SamplingOptions(max_tokens=7), max_model_len=16)
    assert refused.value.status is EngineStatus.INVALID and refused.value.field == "max_tokens"
    assert "the prompt is 10 tokens and max_tokens 7" in refused.value.detail


@pytest.mark.parametrize(
    ("status", "http_status"),
    [
        (EngineStatus.INVALID, 422),
        (EngineStatus.UNAVAILABLE, 503),
        (EngineStatus.TIMED_OUT, 504),
        (EngineStatus.FAILED, 502),
    ],
)
def test_each_engine_status_is_one_http_status(status, http_status):
    assert engine_problem(EngineError(status, "why")).status == http_status


def test_the_api_names_fields_and_retry_after_as_its_callers_do():
    mismatch = engine_problem(EngineError(EngineStatus.UNAVAILABLE, "other key", "watermark_key_id", 1.2))
    assert mismatch.field == "key_id" and mismatch.headers == {"Retry-After": "2"}  # whole seconds, never sooner
    too_long = engine_problem(EngineError(EngineStatus.INVALID, "max_tokens: too long", "max_tokens"))
    assert too_long.field == "max_tokens" and too_long.headers is None
    assert engine_problem(EngineError(EngineStatus.FAILED, "lost")).field is None


def test_outcomes_keep_the_numeric_codes_of_the_version_before_engine_statuses():
    # During a rollout, pods of both versions read each other's outcomes.
    for status, code in ((None, 200), (EngineStatus.INVALID, 422), (EngineStatus.FAILED, 502)):
        assert json.loads(JobOutcome(status=status, detail="why").to_json())["status"] == code
    older = '{"value": null, "status": 503, "detail": "busy", "field": "key_id"}'
    assert JobOutcome.from_json(older).status is EngineStatus.UNAVAILABLE
    newer = '{"value": null, "engine_status": "rate_limited", "status": 429, "detail": "slow", "field": null}'
    assert JobOutcome.from_json(newer).status is EngineStatus.FAILED  # unknown to this version: failed for good


def test_a_queued_failure_comes_back_as_the_same_engine_error():
    for status in EngineStatus:
        outcome = JobOutcome.from_json(JobOutcome.failure(EngineError(status, "why", "max_tokens")).to_json())
        with pytest.raises(EngineError) as raised:
            outcome.unwrap(retry_after=3)
        assert (raised.value.status, raised.value.detail, raised.value.field) == (status, "why", "max_tokens")
        # outcomes carry no Retry-After: the API's queue supplies it, and only where a retry may help
        assert raised.value.retry_after == (3 if status is EngineStatus.UNAVAILABLE else None)
