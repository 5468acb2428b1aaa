"""``/score/uncertainty``, ``/score/consistency`` and ``/generate?uncertainty=true`` against
``signet serve`` on the real engine. What the methods compute is tested on hand-worked
cases in tests/unit/test_scoring_*.py; these tests check what the routes gather from the
engine: that logprobs, samples and judgments are the model's, and consistent with each other."""

from __future__ import annotations

import math
from typing import get_args

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signet.api.answer_scores import token_texts
from signet.api.risk import GIVEN_TEXT
from signet.api.score.judge_probe import JUDGED_METHODS
from signet.api.score.protocol import ReferenceMethod, SelfCheckMethod
from signet.scoring.risk import answer_bearing, answer_features, load_risk_model

pytestmark = pytest.mark.engine

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
SELFCHECKS = get_args(SelfCheckMethod)
JUDGED = [method for method in get_args(ReferenceMethod) if method in JUDGED_METHODS]
DESCRIBE = [{"role": "user", "content": "Describe the city of Paris in a few long sentences."}]


def _post(client: httpx.Client, path: str, body: dict, status: int = 200) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def _scores(body: dict) -> dict[str, dict]:
    return {score["method"]: score for score in body["scores"]}


def test_a_generation_and_the_same_tokens_scored_later_get_the_same_logprobs(client):
    """Logprobs read while generating (logprobs) and by one prefill over the answer
    (prompt_logprobs) are the same quantities. The model runs in bfloat16, whose spacing
    between 32 and 64 is 0.25: decode and prefill round logits differently, by up to that."""
    generated = _post(
        client,
        "/generate?watermark=false&uncertainty=true",
        {"messages": DESCRIBE, "max_tokens": 12, "temperature": 0.0},
    )
    assert generated["finish_reason"] == "length"  # no end-of-text token: the text holds every token
    scored = _post(client, "/score/uncertainty", {"messages": DESCRIBE, "response": generated["text"]})
    assert scored["response_tokens"] == len(generated["token_ids"])
    while_generating = _scores({"scores": generated["uncertainty"]})
    afterwards = _scores(scored)
    for method in ("max_sequence_probability", "mean_token_entropy"):
        assert afterwards[method]["per_token"] == pytest.approx(while_generating[method]["per_token"], abs=0.25)
    sequence = while_generating["max_sequence_probability"]
    assert sequence["value"] == pytest.approx(sum(sequence["per_token"]))
    perplexity = while_generating["perplexity"]["value"]
    assert perplexity == pytest.approx(math.exp(sequence["value"] / len(generated["token_ids"])))
    for method in ("mean_token_entropy", "max_token_entropy"):
        bounds = while_generating[method]["bounds"]
        assert 0.0 <= bounds["lower"] <= bounds["upper"] <= math.log(49152) + 1e-9
    assert generated["watermark"]["enabled"] is False
    assert set(while_generating) == {
        "max_sequence_probability",
        "perplexity",
        "mean_token_entropy",
        "max_token_entropy",
    }


def test_a_watermarked_generation_reports_the_models_own_logprobs(client):
    """The watermark biases sampling, not the reported distribution (raw logprobs): the
    same greedy tokens score the same with the watermark on and off."""
    body = {"messages": DESCRIBE, "max_tokens": 12, "temperature": 0.0}
    marked = _post(client, "/generate?uncertainty=true", body)
    assert marked["finish_reason"] == "length"
    scored = _post(client, "/score/uncertainty", {"messages": DESCRIBE, "response": marked["text"]})
    if scored["response_tokens"] != len(marked["token_ids"]):
        pytest.fail("the watermarked text re-tokenizes differently; pick another prompt for this test")
    per_token = _scores({"scores": marked["uncertainty"]})["max_sequence_probability"]["per_token"]
    assert _scores(scored)["max_sequence_probability"]["per_token"] == pytest.approx(per_token, abs=0.25)


def test_the_risk_is_the_shipped_calibration_at_the_answers_own_logprobs(client, detection_state):
    body = {"messages": QUESTION, "max_tokens": 8, "temperature": 0.0}
    greedy = _post(client, "/generate?watermark=false&uncertainty=true", body)
    scores = _scores({"scores": greedy["uncertainty"]})
    bearing = answer_bearing(token_texts(detection_state.tokenizer, greedy["token_ids"]), QUESTION[0]["content"])
    assert 0 < bearing.sum() < len(bearing)  # "Paris" bears, "The capital of France is" does not
    features = answer_features(
        scores["max_sequence_probability"]["per_token"],
        scores["mean_token_entropy"]["per_token"],
        bearing,
        watermarked=False,
        sampled=False,
    )
    risk = greedy["risk"]
    assert risk["inputs"] == pytest.approx(features)
    assert risk["value"] == pytest.approx(load_risk_model("uncertainty").probability(features))
    assert (risk["calibrated"], risk["reason"], risk["fitted_for"]) == (True, None, "SmolLM2-135M-Instruct")
    assert risk["predicts"] == "the answer is wrong"
    marked = _post(client, "/generate?uncertainty=true", {**body, "temperature": 1.0, "seed": 4})["risk"]
    assert marked["calibrated"] is True and marked["inputs"]["watermarked"] == marked["inputs"]["sampled"] == 1.0
    cooler = _post(client, "/generate?uncertainty=true", {**body, "temperature": 0.5, "seed": 4})["risk"]
    assert cooler["calibrated"] is False
    assert cooler["reason"] == (
        "fitted on answers decoded greedy, unwatermarked; greedy, watermarked; temperature 1, watermarked; "
        "this one was decoded temperature 0.5, watermarked"
    )
    unmarked = _post(client, "/generate?watermark=false&uncertainty=true", {**body, "temperature": 1.0, "seed": 4})
    assert unmarked["risk"]["calibrated"] is False  # sampled without the watermark: a decoding never fitted
    truncated = _post(client, "/generate?uncertainty=true", {**body, "temperature": 1.0, "top_p": 0.9, "seed": 4})[
        "risk"
    ]
    assert truncated["calibrated"] is False and "top_p 0.9" in truncated["reason"]
    assert _post(client, "/generate?watermark=false", body)["risk"] is None  # only with uncertainty=true


def test_a_wrong_answer_is_less_likely_than_the_right_one(client):
    right = _post(
        client, "/score/uncertainty", {"prompt": "2 + 2 =", "response": " 4", "methods": ["max_sequence_probability"]}
    )
    wrong = _post(
        client, "/score/uncertainty", {"prompt": "2 + 2 =", "response": " 9", "methods": ["max_sequence_probability"]}
    )
    assert [score["method"] for score in right["scores"]] == ["max_sequence_probability"]
    assert right["scores"][0]["value"] < wrong["scores"][0]["value"]
    # the risk reads the answer's logprobs whatever `methods` lists; a given answer's is no probability
    # the isotonic map is a step function: the wrong answer's risk is at least the right one's
    assert (
        right["risk"]["inputs"]["log_bearing_mean_negative_logprob"]
        < wrong["risk"]["inputs"]["log_bearing_mean_negative_logprob"]
    )
    assert right["risk"]["value"] <= wrong["risk"]["value"]
    assert (right["risk"]["calibrated"], right["risk"]["reason"]) == (False, GIVEN_TEXT)
    assert right["cost"] == {
        "engine_requests": 1,
        "sequences": 1,
        "prompt_tokens": right["cost"]["prompt_tokens"],
        "generated_tokens": 1,
    }


@pytest.mark.parametrize("similarity", ["llm", "embedding"])
def test_samples_that_all_agree_have_no_semantic_uncertainty(client, similarity):
    """At temperature 0.01 the samples are the greedy answer: one meaning class."""
    body = _post(
        client,
        "/score/uncertainty",
        {"messages": QUESTION, "samples": 4, "temperature": 0.01, "seed": 3, "max_tokens": 8, "similarity": similarity},
    )
    assert len(set(body["samples"])) == 1, body["samples"]
    scores = _scores(body)
    assert body["semantic_classes"] == [0, 0, 0, 0]
    assert scores["semantic_entropy"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert scores["discrete_semantic_entropy"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert scores["num_semantic_sets"]["value"] == 1.0
    assert scores["eig_val_laplacian"]["value"] == pytest.approx(1.0)
    assert scores["lexical_similarity"]["value"] == pytest.approx(0.0)
    # answer, PMI pass, samples; identical samples need no judge
    assert body["cost"]["engine_requests"] == 3


def test_diverse_samples_are_judged_and_bounded(client):
    body = _post(
        client,
        "/score/uncertainty",
        {"prompt": "Write one sentence about anything.", "samples": 5, "temperature": 1.5, "seed": 8, "max_tokens": 16},
    )
    scores = _scores(body)
    classes = body["semantic_classes"]
    distinct = len(set(body["samples"]))
    assert distinct >= 2, body["samples"]
    assert len(classes) == 5 and classes[0] == 0
    assert 0.0 <= scores["discrete_semantic_entropy"]["value"] <= math.log(5) + 1e-12
    assert 1.0 <= scores["num_semantic_sets"]["value"] <= 5.0
    assert 1.0 - 1e-9 <= scores["eig_val_laplacian"]["value"] <= 5.0 + 1e-9
    assert scores["monte_carlo_sequence_entropy"]["value"] > 0.0
    # answer + PMI + samples, then a judge question per ordered pair of distinct answers, in one batch
    assert body["cost"]["engine_requests"] == 3 + (distinct > 1)
    assert body["cost"]["sequences"] == 2 + 5 + distinct * (distinct - 1)


def test_an_ensemble_of_identical_prompts_has_no_epistemic_uncertainty(client):
    """Members that see the same context predict the same distribution: mutual information 0,
    total = aleatoric. A different wording makes them disagree."""
    prompt = QUESTION[0]["content"]
    same = _post(client, "/score/uncertainty", {"messages": QUESTION, "paraphrases": [prompt, prompt], "max_tokens": 8})
    scores = _scores(same)
    assert scores["epistemic_uncertainty"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert scores["total_uncertainty"]["value"] == pytest.approx(scores["aleatoric_uncertainty"]["value"], abs=1e-3)
    assert len(scores["total_uncertainty"]["per_token"]) == same["response_tokens"]
    other = _post(
        client,
        "/score/uncertainty",
        {"messages": QUESTION, "paraphrases": ["Name the city where the French government sits."], "max_tokens": 8},
    )
    split = _scores(other)
    assert split["epistemic_uncertainty"]["value"] > 1e-3
    assert split["total_uncertainty"]["value"] == pytest.approx(
        split["aleatoric_uncertainty"]["value"] + split["epistemic_uncertainty"]["value"]
    )


def test_self_consistency_scores_every_sentence_with_its_span(client):
    text = "Paris is the capital of France. It lies on the river Seine. Bananas are a kind of metal."
    body = _post(
        client,
        "/score/consistency",
        # judge "always": the embedded model fails the judge probe (below), and the LLM checks are tested here
        {"prompt": "Tell me about Paris.", "text": text, "samples": 3, "seed": 5, "max_tokens": 48, "judge": "always"},
    )
    assert body["mode"] == "self" and len(body["samples"]) == 3
    assert [text[s["start"] : s["end"]] for s in body["sentences"]] == [s["text"] for s in body["sentences"]]
    assert len(body["sentences"]) == 3
    for sentence in body["sentences"]:
        assert set(sentence["scores"]) == set(SELFCHECKS)
        assert 0.0 <= sentence["scores"]["selfcheck_llm_support"] <= 1.0
        assert 0.0 <= sentence["scores"]["selfcheck_llm_entailment"] <= 1.0
        assert 0.0 <= sentence["scores"]["selfcheck_embedding"] <= 2.0
    passage = _scores(body)
    for method in SELFCHECKS:
        assert passage[method]["value"] == pytest.approx(sum(s["scores"][method] for s in body["sentences"]) / 3)
    # samples, then a support and an entailment question per (sentence, sample): a batch each
    assert body["cost"]["engine_requests"] == 1 + 2
    assert body["cost"]["sequences"] == 3 + 2 * 3 * 3
    # Of "Bananas are a kind of metal"'s five word pairs, samples about Paris may hold "a kind"
    # or "kind of", but not "bananas are" or "of metal"
    assert body["sentences"][2]["scores"]["selfcheck_bigram_novelty"] >= 2 / 5


def test_reference_mode_flags_a_sentence_the_source_does_not_hold(client):
    source = (
        "The Golden Gate Bridge opened in 1937. It spans the strait between San Francisco Bay and the "
        "Pacific Ocean. Its main span is 1,280 metres long."
    )
    text = "The Golden Gate Bridge opened in 1937. Penguins designed its purple towers on the moon."
    body = _post(client, "/score/consistency", {"source": source, "text": text, "questions": 4, "seed": 2})
    assert body["mode"] == "reference"
    first, second = body["sentences"]
    assert first["scores"]["source_unigram"] < second["scores"]["source_unigram"]
    assert first["scores"]["source_bigram_novelty"] == 0.0  # copied from the source
    assert second["scores"]["source_bigram_novelty"] == 1.0
    assert first["claims"] == []
    assert [(claim["kind"], claim["text"]) for claim in second["claims"]] == [
        ("ngram", "Penguins designed its purple towers on the moon")
    ]
    # The embedded model fails the judge probe: its LLM-judged methods are left out, and the risk is
    # computed without them (it reads no model output, so it is calibrated for any model).
    assert "source_entailment" not in second["scores"]
    assert not any(score["method"].startswith("mqag_") for score in body["scores"])
    assert body["warnings"][0].startswith("LLM judge left out: the served model SmolLM2-135M-Instruct scored AUROC")
    assert body["warnings"][0].endswith("methods left out: " + ", ".join(JUDGED))
    assert body["cost"]["engine_requests"] == 0  # the probe is in no caller's cost
    risk = body["risk"]
    assert risk["calibrated"] is True and risk["fitted_for"] is None and risk["calibration"] == "reference"
    faithful = _post(client, "/score/consistency", {"source": source, "text": first["text"]})["risk"]
    assert faithful["value"] < 0.5 < risk["value"]


def test_a_changed_fact_is_a_claim_whose_reason_quotes_the_source(client):
    source = "The Golden Gate Bridge opened in 1937. Its main span is 1,280 metres long."
    text = "The Golden Gate Bridge opened in 1947, and its main span is 1,280 metres long."
    body = _post(client, "/score/consistency", {"source": source, "text": text, "methods": ["source_unigram"]})
    (claim,) = body["sentences"][0]["claims"]
    assert (claim["kind"], text[claim["start"] : claim["end"]]) == ("date", "1947")
    assert claim["reason"] == "the source says 1937 where it states this"
    assert body["warnings"] == []  # no judged method asked: no probe, no warning


def test_judge_always_runs_the_judged_methods_on_a_model_that_fails_the_probe(client):
    source = "The Golden Gate Bridge opened in 1937."
    body = {"source": source, "text": "The bridge opened in 1937.", "questions": 2, "seed": 3, "judge": "always"}
    answer = _post(client, "/score/consistency", body)
    assert 0.0 <= answer["sentences"][0]["scores"]["source_entailment"] <= 1.0
    assert not any(warning.startswith("LLM judge") for warning in answer["warnings"])
    assert answer["cost"]["engine_requests"] >= 2  # the entailment batch and MQAG's questions


def test_the_judge_probe_runs_once_per_process(client):
    body = {"source": "The bridge opened in 1937.", "text": "The bridge opened in 1937.", "questions": 1}
    for _ in range(2):
        assert _post(client, "/score/consistency", body)["warnings"][0].startswith("LLM judge left out")
    assert _probe_requests(client) == 1.0


def _probe_requests(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "signet_scoring_engine_requests_total" and sample.labels["step"] == "judge_probe":
                return sample.value
    return 0.0


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/score/uncertainty", {"prompt": "hi", "methods": ["oracle"]}, "methods", "oracle"),
        ("/score/uncertainty", {"prompt": "hi", "samples": 33}, "samples", "32"),
        ("/score/uncertainty", {"prompt": "hi", "samples": 1}, "samples", "2 to 32"),
        ("/score/uncertainty", {"prompt": "hi", "methods": ["semantic_entropy"]}, "samples", "samples >= 2"),
        ("/score/uncertainty", {"prompt": "hi", "methods": ["epistemic_uncertainty"]}, "paraphrases", "paraphrases"),
        ("/score/uncertainty", {"prompt": "hi", "response": "word " * 3000}, "response", "context"),
        ("/score/uncertainty", {"prompt": "hi", "response": "  "}, "response", "non-whitespace"),
        ("/score/consistency", {"text": "A.", "prompt": "p", "source": "s"}, None, "exactly one"),
        ("/score/consistency", {"text": "A.", "source": "s", "methods": ["selfcheck_unigram"]}, "methods", "prompt"),
        ("/score/consistency", {"text": "A. " * 65, "source": "s"}, "text", "at most 64"),
        ("/score/consistency", {"text": "A. " * 40, "prompt": "p", "samples": 32}, "samples", "at most 1100"),
        ("/generate?uncertainty=true", {"prompt": "hi", "stream": True}, "stream", "without stream"),
    ],
)
def test_bad_scoring_requests_get_a_422_naming_the_problem(client, path, body, field, words):
    problem = _post(client, path, body, status=422)
    assert words in problem["detail"], problem
    if field is not None:
        assert problem["field"] == field or field in problem["detail"], problem
