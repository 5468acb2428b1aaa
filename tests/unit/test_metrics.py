"""signet.metrics and the queue's numbers for it: labels, the queue collector, the heartbeat
summary, and the wait a worker reports in a job's outcome."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from signet import metrics
from signet.engine.protocol import CompletionDelta, EngineStatus
from signet.queue.jobs import JobOutcome, seconds_since_entry
from signet.queue.stats import QueueStats, summarize


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_labels_come_from_small_fixed_sets():
    assert [metrics.status_class(status) for status in (200, 204, 404, 429, 503, None)] == [
        "2xx",
        "2xx",
        "4xx",
        "4xx",
        "5xx",
        "none",
    ]
    assert metrics.method_label("POST") == "POST" and metrics.method_label("PROPFIND") == "other"


def test_series_that_matter_from_the_start_exist_at_zero():
    exposed = generate_latest(REGISTRY).decode()
    for result in ("hit", "miss", "bypass"):
        assert f'signet_detect_cache_requests_total{{result="{result}"}}' in exposed
    assert 'signet_generated_tokens_total{watermarked="true"}' in exposed
    assert "_created" not in exposed


def test_a_streamed_piece_counts_its_tokens_and_the_first_carries_the_time_to_first_token():
    tokens, first_tokens = (
        sample("signet_generated_tokens_total", watermarked="true"),
        sample("signet_engine_time_to_first_token_seconds_count"),
    )
    metrics.observe_generation_piece(CompletionDelta("Hello", [1, 2], time_to_first_token=0.05), watermarked=True)
    metrics.observe_generation_piece(CompletionDelta(" world", [3], "stop"), watermarked=True)
    assert sample("signet_generated_tokens_total", watermarked="true") == tokens + 3
    assert sample("signet_engine_time_to_first_token_seconds_count") == first_tokens + 1


def test_a_job_wait_is_observed_when_reported_and_never_negative():
    count, total = sample("signet_queue_job_wait_seconds_count"), sample("signet_queue_job_wait_seconds_sum")
    metrics.observe_job_wait(None)  # an older worker's outcome
    metrics.observe_job_wait(-0.2)  # clocks a little apart
    metrics.observe_job_wait(1.5)
    assert sample("signet_queue_job_wait_seconds_count") == count + 2
    assert sample("signet_queue_job_wait_seconds_sum") == total + 1.5


def queue_exposition(gauges: metrics.QueueGauges) -> str:
    registry = CollectorRegistry()
    registry.register(gauges)
    return generate_latest(registry).decode()


def test_queue_gauges_export_nothing_until_sampled_then_the_sample():
    gauges = metrics.QueueGauges()
    assert queue_exposition(gauges) == ""
    gauges.update(depth=5, workers_busy=2, workers_idle=1, slots_busy=3, slots_idle=9)
    exposed = queue_exposition(gauges)
    assert "signet_redis_up 1.0" in exposed and "signet_queue_depth 5.0" in exposed
    assert 'signet_workers{state="busy"} 2.0' in exposed and 'signet_workers{state="idle"} 1.0' in exposed
    assert 'signet_worker_slots{state="busy"} 3.0' in exposed and 'signet_worker_slots{state="idle"} 9.0' in exposed


def test_queue_gauges_drop_the_numbers_while_redis_is_down_and_all_when_cleared():
    gauges = metrics.QueueGauges()
    gauges.update(depth=5, workers_busy=2, workers_idle=1, slots_busy=3, slots_idle=9)
    gauges.unreachable()
    exposed = queue_exposition(gauges)
    assert "signet_redis_up 0.0" in exposed and "signet_queue_depth" not in exposed and "signet_workers" not in exposed
    gauges.clear()
    assert queue_exposition(gauges) == ""


def test_heartbeats_summarise_into_busy_and_idle_workers_and_slots():
    heartbeats = [
        (b"3", b"4"),  # busy, one slot free
        (b"0", b"4"),  # idle
        (b"4", b"4"),  # busy, full
        (None, None),  # its hash expired: idle, no slots known
        (b"junk", b"2"),  # unreadable: counted as running nothing
    ]
    assert summarize(7, heartbeats) == QueueStats(
        depth=7, workers_busy=2, workers_idle=3, slots_busy=7, slots_idle=1 + 4 + 0 + 0 + 2
    )
    assert summarize(0, []) == QueueStats(0, 0, 0, 0, 0)


def test_a_stream_entry_id_tells_how_long_ago_it_was_added():
    assert seconds_since_entry(b"1700000000000-0", now=1700000002.5) == 2.5
    assert seconds_since_entry("1700000000000-7", now=1699999999.0) == 0.0  # clocks a little apart
    assert seconds_since_entry(b"not-an-id", now=1.0) is None


def test_an_outcome_carries_the_wait_and_reads_outcomes_without_one():
    outcome = JobOutcome({"text": "hi"}).with_wait(0.25)
    assert JobOutcome.from_json(outcome.to_json()) == outcome
    failed = JobOutcome(status=EngineStatus.INVALID, detail="too long", field="max_tokens")
    assert JobOutcome.from_json(failed.to_json()) == failed
    # A worker not yet upgraded stores HTTP codes and no wait: an API upgraded first reads them.
    older = '{"value": null, "status": 504, "detail": "late", "field": null}'
    assert JobOutcome.from_json(older) == JobOutcome(None, EngineStatus.TIMED_OUT, "late", None, None)
    answered = '{"value": {"text": "hi"}, "status": 200, "detail": "", "field": null}'
    assert JobOutcome.from_json(answered).unwrap() == {"text": "hi"}
