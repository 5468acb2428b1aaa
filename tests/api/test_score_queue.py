"""The score routes in distributed mode, in-process: the cap on a score's engine sequences
(422 before any job is queued), a failed job cancelling the score's other jobs, and the
caller's tenant reaching the queue's per-tenant share through the Engine seam.

The worker runs in a thread with stand-in handlers instead of vLLM: one job of a score
failing while its siblings run is a fault the real engine cannot be made to produce on
demand. tests/e2e/test_score_abuse.py runs the same routes on a real engine."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from harness.services import redis_test_url, signer_for_test_keys
from signet.api.app import create_app
from signet.api.score.engine_inputs import JUDGE_BATCH, MAX_IN_FLIGHT
from signet.engine.protocol import Completion, EngineError, EngineStatus, TokenLogprobs
from signet.queue.consumer import JobWorker
from signet.queue.generation import RemoteEngine
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink
from signet.tenants import TenantRegistry, api_key_digest
from tests.redis.conftest import worker_options

MOD_KEY = "sk-signet-test-moderation-77c1d0a4e9"  # may not turn the watermark off
RES_KEY = "sk-signet-test-research-3b8e52f160"  # may
TENANTS = {
    "tenants": [
        {"tenant": "moderation", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(MOD_KEY), "name": "m"}]},
        {
            "tenant": "research",
            "key_ids": "*",
            "may_disable_watermark": True,
            "api_keys": [{"sha256": api_key_digest(RES_KEY), "name": "r"}],
        },
    ]
}
SOURCE = "The bridge opened in 1932. It carries eight lanes of traffic and two rail lines."
# 20 sentences x 32 samples x 2 LLM self-checks + 32 samples = 1,312 sequences, over the default 1,100.
OVER_THE_CAP = {
    "prompt": "Describe a bridge.",
    "text": " ".join(f"Sentence number {index} is here." for index in range(20)),
    "samples": 32,
    "methods": ["selfcheck_llm_support", "selfcheck_llm_entailment"],
    "judge": "always",  # the stand-in worker's judge would fail the probe (api/score/judge_probe.py)
}


def queued_client(detection_state, namespace: str, timeout: float = 30.0, **state_fields) -> TestClient:
    link = RedisLink(redis_test_url(), namespace, timeout_seconds=0.5)
    queue = JobQueue(
        link,
        8,
        retry_after_seconds=4,
        tenant_share=state_fields.pop("tenant_share", 1.0),
        signer=signer_for_test_keys(),
    )
    engine = RemoteEngine(queue, detection_state.keys, 2048, timeout)
    state = dataclasses.replace(
        detection_state, redis=link, engine=engine, queue=queue, detection_cache=None, **state_fields
    )
    return TestClient(create_app(state))


@contextmanager
def worker_thread(namespace: str, handlers: dict, concurrency: int = 4) -> Iterator[None]:
    """A JobWorker with ``handlers`` on its own event loop in a thread, stopped after."""
    ready, loop_box = threading.Event(), {}

    async def serve() -> None:
        link = RedisLink(redis_test_url(), namespace, timeout_seconds=0.5)
        stop = asyncio.Event()
        loop_box["stop"], loop_box["loop"] = stop, asyncio.get_running_loop()
        ready.set()
        try:
            options = worker_options(concurrency=concurrency)
            await JobWorker(link, handlers, options, signer=signer_for_test_keys()).run(stop)
        finally:
            await link.aclose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield
    finally:
        loop_box["loop"].call_soon_threadsafe(loop_box["stop"].set)
        thread.join(15)


def _jobs(client: TestClient) -> int:
    link: RedisLink = client.app.state.signet.redis
    return link.sync.xlen(link.key("jobs"))


def test_a_score_over_the_sequence_cap_gets_422_before_any_job(detection_state, redis_namespace):
    with queued_client(detection_state, redis_namespace, timeout=1.0) as client:
        response = client.post("/score/consistency", json=OVER_THE_CAP)
        assert _jobs(client) == 0
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "samples"
    assert "up to 1312 engine sequences, at most 1100 (SIGNET_SCORE_MAX_SEQUENCES)" in problem["detail"]
    assert "draw fewer samples" in problem["detail"]


def test_the_cap_is_a_setting_and_counts_every_ordered_pair_of_samples(detection_state, redis_namespace):
    settings = detection_state.settings.model_copy(update={"score_max_sequences": 100})
    body = {"prompt": "Name a colour.", "samples": 12, "max_tokens": 4}  # 1 + 1 + 12 + 12 x 11 = 146
    with queued_client(detection_state, redis_namespace, timeout=1.0, settings=settings) as client:
        refused = client.post("/score/uncertainty", json=body)
        assert _jobs(client) == 0
        embedding = client.post("/score/uncertainty", json={**body, "similarity": "embedding"})  # 14: no judge
    assert refused.status_code == 422 and "up to 146 engine sequences, at most 100" in refused.json()["detail"]
    assert embedding.status_code == 504  # allowed, queued, and no worker answers


def test_a_score_over_the_prompt_token_budget_gets_422_before_its_judge_runs(detection_state, redis_namespace):
    """Each entailment question of a reference-mode score carries the whole source: 8
    sentences against a source of 50 (over 600 tokens) make over 5,000 prompt tokens in 8
    sequences, far under the sequence cap. Under a 2,000-token budget the score is refused
    before any job is queued; under a budget it fits, the same score runs."""
    prompts_run = []

    async def batch(job: Job) -> dict:
        prompts_run.extend(job.payload["prompts"])
        return {"completions": [_completion("Yes", prompt) for prompt in job.payload["prompts"]]}

    source = " ".join(f"The bridge was painted in {1900 + index} by crew number {index}." for index in range(50))
    text = " ".join(f"The bridge was painted in {1900 + index}." for index in range(8))
    body = {"text": text, "source": source, "methods": ["source_entailment"], "judge": "always"}
    tight = detection_state.settings.model_copy(update={"score_max_tokens": 2000})
    roomy = detection_state.settings.model_copy(update={"score_max_tokens": 100_000})
    with worker_thread(redis_namespace, {"batch": batch}):
        with queued_client(detection_state, redis_namespace, settings=tight) as client:
            refused = client.post("/score/consistency", json=body)
            queued = _jobs(client)
        run_when_refused = len(prompts_run)
        with queued_client(detection_state, redis_namespace, settings=roomy) as client:
            allowed = client.post("/score/consistency", json=body)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["field"] == "source"
    assert "at most 2000 (SIGNET_SCORE_MAX_TOKENS)" in problem["detail"]
    assert "shorter source" in problem["detail"]
    assert (queued, run_when_refused) == (0, 0)
    assert allowed.status_code == 200, allowed.text
    assert len(prompts_run) == 8
    assert 5000 < allowed.json()["cost"]["prompt_tokens"] == sum(len(prompt) for prompt in prompts_run) <= 100_000


def test_the_token_budget_counts_what_samples_may_generate(detection_state, redis_namespace):
    """8 samples of up to 1,024 tokens may generate 8,192 tokens from a short prompt: over a
    4,000-token budget, refused before the samples are queued; 8 of 256 tokens fit."""
    body = {"prompt": "Describe a bridge.", "text": "The bridge opened in 1932.", "samples": 8}
    body["methods"] = ["selfcheck_unigram"]
    budget = detection_state.settings.model_copy(update={"score_max_tokens": 4000})
    with queued_client(detection_state, redis_namespace, timeout=1.0, settings=budget) as client:
        refused = client.post("/score/consistency", json={**body, "max_tokens": 1024})
        queued = _jobs(client)
        fits = client.post("/score/consistency", json={**body, "max_tokens": 256})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "samples"
    detail = refused.json()["detail"]
    planned = int(re.search(r"read and generate up to (\d+) tokens", detail)[1])
    assert 8192 < planned < 8192 + 100  # the samples' 8 x 1,024 and a short prompt
    assert "at most 4000 (SIGNET_SCORE_MAX_TOKENS)" in detail
    assert queued == 0
    assert fits.status_code == 504  # admitted and queued; no worker answers


def test_a_failed_job_cancels_the_other_jobs_of_its_score(detection_state, redis_namespace):
    """MQAG's question-writing job fails while the entailment judge's job runs: the score
    answers 502 and the judge's job is cancelled on the worker, not left running for nobody."""
    running, cancelled = [], []

    async def forever(job: Job) -> dict:
        running.append(job.request_id)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(job.request_id)
            raise
        return {}

    async def sample(job: Job) -> dict:
        if job.payload["options"]["n"] > 1:  # MQAG's questions, all in one request
            await asyncio.sleep(0.5)
            raise EngineError(EngineStatus.FAILED, "the engine failed the questions")
        return await forever(job)

    body = {"text": "The bridge opened in 1932.", "source": SOURCE, "methods": ["source_entailment", "mqag_kl"]}
    body["judge"] = "always"  # the stand-in judge would fail the probe
    with worker_thread(redis_namespace, {"sample": sample, "batch": forever}):
        with queued_client(detection_state, redis_namespace) as client:
            response = client.post("/score/consistency", json=body)
            deadline = time.monotonic() + 5
            while _jobs(client) or len(cancelled) < len(running):
                assert time.monotonic() < deadline, f"jobs left running: {len(running) - len(cancelled)}"
                time.sleep(0.05)
    assert response.status_code == 502 and "failed the questions" in response.json()["detail"]
    assert running and sorted(cancelled) == sorted(running)


def scoring_series(client: TestClient) -> dict[tuple[str, ...], float]:
    """Every consistency series of signet_scoring_*: (name, step[, kind]) -> value."""
    series = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("signet_scoring_") and sample.labels.get("score") == "consistency":
                key = (
                    sample.name,
                    sample.labels["step"],
                    *([sample.labels["kind"]] if "kind" in sample.labels else []),
                )
                series[key] = sample.value
    return series


def _completion(text: str, prompt: list[int]) -> dict:
    """A stand-in engine's answer: three tokens, each listed with one alternative."""
    logprobs = TokenLogprobs([-0.1] * 3, [[5, 6]] * 3, [[-0.1, -2.5]] * 3)
    return dataclasses.asdict(Completion(text, [5, 5, 5], len(prompt), "stop", logprobs))


def test_a_score_runs_its_judge_questions_in_batches_a_few_at_a_time(detection_state, redis_namespace):
    """64 sentences x 8 samples x 2 LLM self-checks: 1,024 judge questions in 16 batch jobs,
    never more than MAX_IN_FLIGHT of them queued or running at once (the queue holds 8)."""
    batches, running, most = [], 0, 0

    async def sample(job: Job) -> dict:
        count, prompt = job.payload["options"]["n"], job.payload["prompt_token_ids"]
        return {"completions": [_completion(f"Answer {index} is about a bridge.", prompt) for index in range(count)]}

    async def batch(job: Job) -> dict:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        batches.append(len(job.payload["prompts"]))
        return {"completions": [_completion("Yes", prompt) for prompt in job.payload["prompts"]]}

    text = " ".join(f"The bridge has {index} lanes." for index in range(64))
    body = {"prompt": "Describe a bridge.", "text": text, "samples": 8, "judge": "always"}
    body["methods"] = ["selfcheck_llm_support", "selfcheck_llm_entailment"]
    with worker_thread(redis_namespace, {"sample": sample, "batch": batch}, concurrency=32):
        with queued_client(detection_state, redis_namespace) as client:
            before = scoring_series(client)
            response = client.post("/score/consistency", json=body)
            after = scoring_series(client)
    assert response.status_code == 200, response.text
    cost = response.json()["cost"]
    added = {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}
    tokens = {kind: sum(v for k, v in added.items() if k[0] == "signet_scoring_tokens_total" and k[2] == kind)
              for kind in ("prompt", "generated")}  # fmt: skip
    assert [tokens["prompt"], tokens["generated"]] == [cost["prompt_tokens"], cost["generated_tokens"]]
    judged = 2 * 64 * 8
    assert sorted(batches) == [JUDGE_BATCH] * (judged // JUDGE_BATCH)
    assert cost["engine_requests"] == 1 + math.ceil(judged / JUDGE_BATCH) and cost["sequences"] == 8 + judged
    # Each engine request is counted under what it was for: one for the samples, half the
    # judge batches for each method's questions.
    requests = {k[1]: v for k, v in added.items() if k[0] == "signet_scoring_engine_requests_total"}
    per_method = judged // 2 // JUDGE_BATCH
    assert requests == {"samples": 1, "selfcheck_llm_support": per_method, "selfcheck_llm_entailment": per_method}
    assert most == MAX_IN_FLIGHT


def test_mqag_asks_again_for_the_drafts_it_dropped_within_three_rounds(detection_state, redis_namespace):
    """Stand-in drafts (the real model's cannot be chosen): the first round's are malformed,
    the second's ask about the prompt's worked example, the third's are good. Three
    question-writing requests, each for the drafts still missing, with a seed of its own."""
    drafts = [
        ["no question here"] * 2,
        ["In which city does the Eiffel Tower stand?\nA) Paris\nB) London\nC) Rome\nD) Berlin"] * 2,
        [" When did the bridge open?\nA) 1932\nB) 1950\nC) 1910\nD) 1899", " What does the bridge carry?\n"
         "A) lanes\nB) boats\nC) trains only\nD) nothing"],
    ]  # fmt: skip
    asked = []

    async def sample(job: Job) -> dict:
        options, prompt = job.payload["options"], job.payload["prompt_token_ids"]
        asked.append((options["n"], options["seed"]))
        texts = drafts[len(asked) - 1][: options["n"]]
        return {"completions": [_completion(text, prompt) for text in texts]}

    async def batch(job: Job) -> dict:
        return {"completions": [_completion("Yes", prompt) for prompt in job.payload["prompts"]]}

    body = {"text": "The bridge opened in 1932.", "source": SOURCE, "methods": ["mqag_kl"], "questions": 2}
    body.update(seed=10, judge="always")
    with worker_thread(redis_namespace, {"sample": sample, "batch": batch}):
        with queued_client(detection_state, redis_namespace) as client:
            response = client.post("/score/consistency", json=body)
    assert response.status_code == 200, response.text
    assert asked == [(2, 10), (2, 11), (2, 12)]
    answer = response.json()
    assert [question["question"] for question in answer["questions"]] == [
        "When did the bridge open?",
        "What does the bridge carry?",
    ]
    # both questions written, in the third round (the stand-in judge's p(yes) of 1/2 finds them unanswerable)
    assert answer["warnings"] == ["MQAG: the source answers none of the generated questions; MQAG scores left out"]
    # One round more would have been over the bound: with only one good draft, the warning says what was dropped.
    drafts[2] = drafts[2][:1] + ["still not a question"]
    asked.clear()
    with worker_thread(redis_namespace, {"sample": sample, "batch": batch}):
        with queued_client(detection_state, redis_namespace) as client:
            short = client.post("/score/consistency", json=body).json()
    assert len(asked) == 3 and len(short["questions"]) == 1
    assert short["warnings"][0] == (
        "MQAG: 1 of 2 questions written; drafts dropped: 3 malformed, 2 about the prompt's example"
    )


def test_the_callers_tenant_takes_its_share_of_the_queue(detection_state, redis_namespace, tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    tenants = TenantRegistry.load(path, detection_state.keys.key_ids)
    with queued_client(detection_state, redis_namespace, timeout=1.0, tenants=tenants, tenant_share=0.125) as client:
        queue: JobQueue = client.app.state.signet.queue
        # moderation already holds its one job (0.125 of 8), queued by another API process
        queue.link.sync.zadd(queue.keys.tenant_jobs("moderation"), {"another-request": time.time() + 60})
        body = {"prompt": "Q: 2 + 2?\nA:", "response": " 4"}
        refused = [
            client.post(path, json=payload, headers={"X-API-Key": MOD_KEY})
            for path, payload in (("/score/uncertainty", body), ("/generate", {"prompt": "Hi.", "max_tokens": 4}))
        ]
        other = client.post("/score/uncertainty", json=body, headers={"X-API-Key": RES_KEY})
    for response in refused:
        assert response.status_code == 503 and response.headers["retry-after"] == "4", response.text
        assert "tenant 'moderation' holds its share of the job queue: 1 of 8 jobs" in response.json()["detail"]
    assert other.status_code == 504  # research's share is free: queued, and no worker answers


@pytest.mark.parametrize("path", ["/score/uncertainty", "/score/consistency"])
def test_the_score_routes_describe_the_withheld_texts(detect_client, path):
    operation = detect_client.get("/openapi.json").json()["paths"][path]["post"]
    assert "texts_withheld" in operation["description"] and "SIGNET_SCORE_MAX_SEQUENCES" in operation["description"]


def test_a_scores_samples_are_held_to_the_deployments_max_new_tokens(detection_state, redis_namespace):
    """SIGNET_MAX_NEW_TOKENS bounds every sequence the service generates: /generate's, and a
    score's answer and samples (before, scores allowed 1,024 whatever the setting)."""
    settings = detection_state.settings.model_copy(update={"max_new_tokens": 16})
    body = {"prompt": "Name a colour.", "samples": 4, "max_tokens": 64}
    consistency = {"prompt": "Name a colour.", "text": "Red is a colour.", "samples": 4, "max_tokens": 64}
    with queued_client(detection_state, redis_namespace, timeout=1.0, settings=settings) as client:
        uncertainty = client.post("/score/uncertainty", json=body)
        self_check = client.post("/score/consistency", json=consistency)
        queued = _jobs(client)
    for response in (uncertainty, self_check):
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "max_tokens"
        assert "at most 16" in response.json()["detail"]
    assert queued == 0
