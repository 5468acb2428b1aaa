"""Every Prometheus series Signet exports, in the process's default registry.

Names follow Prometheus' conventions: a ``signet_`` prefix, ``_seconds`` histograms,
``_total`` counters. Labels take values from small fixed sets only (route templates,
methods, status classes, scheme names, verdicts, cache results): never a path, a text,
a key id, a tenant, an API key or a secret, so a series can neither leak them nor grow
without bound.

Any layer may import this module. ``GET /metrics`` (``signet.api.metrics``) exposes the
registry; with several API processes on one port (``signet.processes``) prometheus_client's
multiprocess mode keeps these counters and histograms in files the scrape sums. What
happens to jobs on workers reaches the API in the job's outcome and is observed there; a
worker's own port (SIGNET_WORKER_METRICS_PORT, ``signet.worker``) serves vLLM's series of
its engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from signet.engine.protocol import CompletionDelta

T = TypeVar("T")

# A ``_created`` series beside every counter doubles the output and says little here.
disable_created_metrics()

# From a cached /detect (milliseconds) to a long generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route matched (404)
CACHE_RESULTS = ("hit", "miss", "bypass")

HTTP_REQUESTS = Counter(
    "signet_http_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx; "
    "'none' when the client left before any response).",
    ["route", "method", "status_class"],
)
HTTP_REQUEST_DURATION = Histogram(
    "signet_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response (a streamed response included).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
GENERATED_TOKENS = Counter(
    "signet_generated_tokens",
    "Tokens generated for callers, by whether a watermark key was applied.",
    ["watermarked"],
)
# The engine requests of a score, by score (uncertainty, consistency) and step: what the
# request was for. answer: the answer scored (generated greedily, or the caller's one
# teacher-forced); pmi: the answer after an empty prompt; samples: sampled answers;
# paraphrases: the answer after each paraphrase of the prompt; entailment: uncertainty's
# judge questions (similarity "llm"); selfcheck_llm_support, selfcheck_llm_entailment,
# source_entailment: those methods' judge questions; mqag: MQAG's questions and answers;
# judge_probe: the probe of api/score/judge_probe.py, once per process, in no caller's cost.
SCORING_ENGINE_REQUESTS = Counter(
    "signet_scoring_engine_requests",
    "Engine requests (queue jobs in distributed mode) run for /score/uncertainty and /score/consistency, "
    "by score and step (what the request was for: answer, pmi, samples, paraphrases, entailment, a judged "
    "method's name, mqag, judge_probe: the served model's entailment probe, once per process).",
    ["score", "step"],
)
SCORING_TOKENS = Counter(
    "signet_scoring_tokens",
    "Tokens the engine ran for /score/uncertainty and /score/consistency (never watermarked), by score, "
    "step (as signet_scoring_engine_requests_total) and kind: prompt (prefilled) or generated. Not in "
    "signet_generated_tokens_total.",
    ["score", "step", "kind"],
)
SCORED_TOKENS = Counter(
    "signet_scored_tokens",
    "Tokens scored by /detect and /detect/batch, by watermark scheme; an answer from the detection cache scores none.",
    ["scheme"],
)
DETECTIONS = Counter(
    "signet_detections",
    "Detection answers (each /detect, each successful /detect/batch item, cached or not), "
    "by the verdict and scheme of the reported (most significant) key.",
    ["scheme", "verdict"],
)
DETECT_CACHE_REQUESTS = Counter(
    "signet_detect_cache_requests",
    "Lookups in the /detect result cache: hit, miss, or bypass (Redis unreachable: answered uncached).",
    ["result"],
)
PROVENANCE_RECORDS = Counter(
    "signet_provenance_records_total",
    "Finished generations handed to the generation registry, by outcome: recorded; dropped (the recording "
    "queue was full); failed (the embedding model or the store failed).",
    ["outcome"],
)
PROVENANCE_SEARCH_DURATION = Histogram(
    "signet_provenance_search_seconds",
    "Time to fingerprint a text and search the caller's registry (POST /detect with provenance: true).",
    buckets=LATENCY_BUCKETS,
)
QUEUE_JOB_WAIT = Histogram(
    "signet_queue_job_wait_seconds",
    "Distributed mode: time from a job's entry into the queue to a worker starting it (as the "
    "worker reports in the outcome; a job taken over after its first worker died counts from "
    "its first entry). Jobs that end without an outcome (cancelled, past the deadline unread) "
    "are not observed.",
    buckets=WAIT_BUCKETS,
)
ENGINE_TIME_TO_FIRST_TOKEN = Histogram(
    "signet_engine_time_to_first_token_seconds",
    "Time from handing a streamed generation to the vLLM engine to its first tokens, as the "
    "process running the engine measures it (this one when embedded, a worker when queued).",
    buckets=FIRST_TOKEN_BUCKETS,
)

# Series that should exist at 0 from the start, so rates over them are defined at once.
for _result in CACHE_RESULTS:
    DETECT_CACHE_REQUESTS.labels(_result)
for _watermarked in ("true", "false"):
    GENERATED_TOKENS.labels(_watermarked)


def status_class(status: int | None) -> str:
    return "none" if status is None else f"{status // 100}xx"


def method_label(method: str) -> str:
    """The method, or "other" for anything a client made up."""
    return method if method in HTTP_METHODS else "other"


def observe_request(route: str, method: str, status: int | None, seconds: float) -> None:
    method = method_label(method)
    HTTP_REQUESTS.labels(route, method, status_class(status)).inc()
    HTTP_REQUEST_DURATION.labels(route, method).observe(seconds)


def counted_detection(response: T) -> T:
    """``response`` (a DetectResponse, cached or computed), counted."""
    DETECTIONS.labels(response.scheme, response.verdict).inc()
    return response


def count_scored_tokens(counts: Iterable[tuple[str, int]]) -> None:
    """``counts``: (scheme, tokens scored) per key tested."""
    for scheme, tokens in counts:
        SCORED_TOKENS.labels(scheme).inc(tokens)


def count_cache_lookup(result: str) -> None:
    DETECT_CACHE_REQUESTS.labels(result).inc()


def count_provenance_records(outcome: str, count: int = 1) -> None:
    PROVENANCE_RECORDS.labels(outcome).inc(count)


def count_generated(tokens: int, watermarked: bool) -> None:
    GENERATED_TOKENS.labels("true" if watermarked else "false").inc(tokens)


def count_scoring_request(score: str, step: str, prompt_tokens: int, generated_tokens: int) -> None:
    """One engine request of a score: what it was for and the tokens it prefilled and generated."""
    SCORING_ENGINE_REQUESTS.labels(score, step).inc()
    SCORING_TOKENS.labels(score, step, "prompt").inc(prompt_tokens)
    SCORING_TOKENS.labels(score, step, "generated").inc(generated_tokens)


def observe_generation_piece(delta: CompletionDelta, watermarked: bool) -> None:
    """A piece of a streamed generation; the first one carries the engine's time to first token."""
    count_generated(len(delta.token_ids), watermarked)
    if delta.time_to_first_token is not None:
        ENGINE_TIME_TO_FIRST_TOKEN.observe(delta.time_to_first_token)


def observe_job_wait(seconds: float | None) -> None:
    """``seconds``: JobOutcome.waited_seconds; None from a worker that does not report it."""
    if seconds is not None:
        QUEUE_JOB_WAIT.observe(max(0.0, seconds))


class QueueGauges(Collector):
    """The job queue as last sampled (distributed mode, on each scrape of /metrics).

    Gauges that read Redis cannot be kept current by the code paths that change them
    (workers are other processes), so ``GET /metrics`` samples Redis and hands the
    numbers here. Nothing is exported before the first sample or in embedded mode;
    while Redis does not answer only ``signet_redis_up 0`` is.
    """

    def __init__(self) -> None:
        self._redis_up: bool | None = None
        self._sample: dict[str, int] = {}

    def update(self, *, depth: int, workers_busy: int, workers_idle: int, slots_busy: int, slots_idle: int) -> None:
        sample = {"depth": depth, "workers_busy": workers_busy, "workers_idle": workers_idle}
        self._sample = {**sample, "slots_busy": slots_busy, "slots_idle": slots_idle}
        self._redis_up = True

    def unreachable(self) -> None:
        self._redis_up, self._sample = False, {}

    def clear(self) -> None:
        self._redis_up, self._sample = None, {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        redis_up, sample = self._redis_up, self._sample
        if redis_up is None:
            return
        yield GaugeMetricFamily("signet_redis_up", "Distributed mode: Redis answered the last sample.", int(redis_up))
        if not sample:
            return
        yield GaugeMetricFamily("signet_queue_depth", "Jobs in the queue, waiting or running.", sample["depth"])
        workers = GaugeMetricFamily(
            "signet_workers",
            "Workers with a recent heartbeat: busy (running at least one job) or idle.",
            labels=["state"],
        )
        workers.add_metric(["busy"], sample["workers_busy"])
        workers.add_metric(["idle"], sample["workers_idle"])
        yield workers
        slots = GaugeMetricFamily(
            "signet_worker_slots",
            "Job slots of workers with a recent heartbeat (SIGNET_WORKER_CONCURRENCY each): busy or idle.",
            labels=["state"],
        )
        slots.add_metric(["busy"], sample["slots_busy"])
        slots.add_metric(["idle"], sample["slots_idle"])
        yield slots

    def describe(self) -> list:
        return []  # the series come and go with the mode and Redis; nothing to check at registration


QUEUE = QueueGauges()
REGISTRY.register(QUEUE)
