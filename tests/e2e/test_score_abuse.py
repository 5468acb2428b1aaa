"""The score routes against an attacker, on a real engine: a tenant that may not turn the
watermark off gets no unwatermarked generated text from them; judge questions go to the
engine in batches; every token a score runs is counted in a series of its own.

Distributed mode with one ``signet worker`` (the only engine this module starts) and an
API process that authenticates tenants: the judge batches travel as "batch" jobs."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.services import (
    STARTUP_TIMEOUT_S,
    keys_environment,
    redis_test_url,
    running_signet_server,
    signet_process,
)
from signet.api.score.engine_inputs import JUDGE_BATCH
from signet.api.score.protocol import TEXTS_WITHHELD
from signet.tenants import api_key_digest

pytestmark = pytest.mark.engine

MARKED_ONLY = {"X-API-Key": "sk-signet-e2e-marked-only-6f0b9d21c4"}  # may not turn the watermark off
MAY_UNMARK = {"X-API-Key": "sk-signet-e2e-may-unmark-1a7c3e58b0"}
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
SOURCE = (
    "The Golden Gate Bridge opened in 1937. It spans the strait between San Francisco Bay and the "
    "Pacific Ocean. Its main span is 1,280 metres long."
)


def _tenants(folder) -> str:
    tenants = [
        {"tenant": "marked-only", "key_ids": "*", "api_keys": [{"sha256": _digest(MARKED_ONLY), "name": "bot"}]},
        {
            "tenant": "may-unmark",
            "key_ids": "*",
            "may_disable_watermark": True,
            "api_keys": [{"sha256": _digest(MAY_UNMARK), "name": "lab"}],
        },
    ]
    path = folder / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    return str(path)


def _digest(headers: dict[str, str]) -> str:
    return api_key_digest(headers["X-API-Key"])


@pytest.fixture(scope="module")
def api(tmp_path_factory, detection_state, module_redis_namespace) -> Iterator[httpx.Client]:
    # detection_state has prepared the embedded model, so the worker does not prepare it
    folder = tmp_path_factory.mktemp("score-abuse")
    environment = {
        **keys_environment(folder),
        "SIGNET_REDIS_URL": redis_test_url(),
        "SIGNET_REDIS_NAMESPACE": module_redis_namespace,
        "SIGNET_API_KEYS_FILE": _tenants(folder),
        "SIGNET_HOST": "127.0.0.1",
        "SIGNET_ENGINE_EAGER": "1",  # skip the compile: a faster start
    }
    with (
        signet_process("worker", folder / "worker.log", **environment, SIGNET_WORKER_NAME="w1") as worker,
        running_signet_server(folder, **environment) as server,
        httpx.Client(base_url=server.url, timeout=600) as client,
    ):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while client.get("/readyz").json().get("workers") != 1:
            assert worker.poll() is None, (folder / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(1)
        yield client


def _post(client: httpx.Client, path: str, body: dict, headers: dict[str, str]) -> dict:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_tenant_that_may_not_unmark_gets_uncertainty_scores_without_the_generated_texts(api):
    body = {"messages": QUESTION, "samples": 3, "max_tokens": 8, "similarity": "llm"}
    withheld = _post(api, "/score/uncertainty", body, MARKED_ONLY)
    shown = _post(api, "/score/uncertainty", {**body, "seed": 1}, MAY_UNMARK)
    assert withheld["response"] is None and withheld["generated"] is True
    assert withheld["samples"] == [] and withheld["texts_withheld"] is True
    assert withheld["warnings"] == [TEXTS_WITHHELD]
    # The scores are all there: those of the answer and of the (unshown) samples.
    assert {score["method"] for score in withheld["scores"]} == {score["method"] for score in shown["scores"]}
    assert len(withheld["semantic_classes"]) == 3 and withheld["response_tokens"] == shown["response_tokens"] > 0
    assert shown["response"] and len(shown["samples"]) == 3
    assert shown["texts_withheld"] is False and shown["warnings"] == []
    # A caller's own answer is its own text: it comes back.
    given = _post(api, "/score/uncertainty", {"messages": QUESTION, "response": "Paris."}, MARKED_ONLY)
    assert given["response"] == "Paris." and given["texts_withheld"] is False


def test_a_tenant_that_may_not_unmark_gets_consistency_scores_without_samples_or_questions(api):
    text = "Paris is the capital of France. Bananas are a kind of metal."
    # judge "always": the embedded model fails the judge probe, and these texts are what is tested
    body = {"prompt": "Tell me about Paris.", "text": text, "samples": 2, "max_tokens": 24, "judge": "always"}
    body["methods"] = ["selfcheck_unigram", "selfcheck_llm_support"]
    self_check = _post(api, "/score/consistency", body, MARKED_ONLY)
    assert self_check["samples"] == [] and self_check["texts_withheld"] is True
    assert TEXTS_WITHHELD in self_check["warnings"]
    assert all(set(sentence["scores"]) == set(body["methods"]) for sentence in self_check["sentences"])
    assert len(_post(api, "/score/consistency", body, MAY_UNMARK)["samples"]) == 2

    reference = {"source": SOURCE, "text": "The bridge opened in 1937.", "questions": 4, "judge": "always"}
    withheld = _post(api, "/score/consistency", reference, MARKED_ONLY)
    shown = _post(api, "/score/consistency", {**reference, "seed": 2}, MAY_UNMARK)
    assert len(withheld["questions"]) <= 4
    for question in withheld["questions"]:
        assert question["question"] is None and question["options"] == []
        assert sum(question["source_probabilities"]) == pytest.approx(1.0)
    assert all(question["question"] and len(question["options"]) == 4 for question in shown["questions"])
    assert withheld["texts_withheld"] is bool(withheld["questions"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/score/uncertainty", {"messages": QUESTION, "samples": 2, "seed": 1}),
        ("/score/consistency", {"prompt": "Tell me about Paris.", "text": "Paris is in France.", "seed": 5}),
        ("/score/consistency", {"source": SOURCE, "text": "The bridge opened in 1937.", "seed": 2}),
    ],
)
def test_a_tenant_that_may_not_unmark_may_not_fix_the_samples(api, path, body):
    """Withheld samples that repeat from request to request could be rebuilt from their scores."""
    refused = api.post(path, json=body, headers=MARKED_ONLY)
    assert refused.status_code == 403 and refused.json()["field"] == "seed", refused.text


def _metric(client: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def _same_answer_key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()  # as the route groups answers equal up to case and spacing


def test_judge_questions_run_in_batches_and_every_token_is_counted(api):
    """Ten diverse samples judged pairwise: 90 questions in two engine requests (not 90),
    and the tokens of every request in signet_scoring_tokens_total, not in the generated series."""
    steps = ("answer", "pmi", "samples", "entailment")
    counters = [
        *[("signet_scoring_tokens_total", {"score": "uncertainty", "step": step, "kind": "prompt"}) for step in steps],
        *[
            ("signet_scoring_tokens_total", {"score": "uncertainty", "step": step, "kind": "generated"})
            for step in steps
        ],
        ("signet_generated_tokens_total", {"watermarked": "false"}),
        *[("signet_scoring_engine_requests_total", {"score": "uncertainty", "step": step}) for step in steps],
    ]
    before = [_metric(api, name, **labels) for name, labels in counters]
    body = {"prompt": "Write one sentence about anything.", "samples": 10, "temperature": 1.5, "seed": 8}
    scored = _post(api, "/score/uncertainty", {**body, "max_tokens": 12}, MAY_UNMARK)
    after = [_metric(api, name, **labels) for name, labels in counters]
    distinct = len({_same_answer_key(sample) for sample in scored["samples"]})
    assert distinct >= 5, scored["samples"]
    judged = distinct * (distinct - 1)
    cost = scored["cost"]
    # answer, PMI pass, samples (one request), then the judge questions in batches
    assert cost["engine_requests"] == 3 + math.ceil(judged / JUDGE_BATCH)
    assert cost["sequences"] == 2 + 10 + judged
    added = [after[index] - before[index] for index in range(len(counters))]
    assert sum(added[0:4]) == cost["prompt_tokens"]
    assert sum(added[4:8]) == cost["generated_tokens"] > 0
    assert added[8] == 0  # scoring tokens are not generated tokens
    assert added[9:] == [1, 1, 1, math.ceil(judged / JUDGE_BATCH)]  # requests per step
