"""The uncertainty evaluation of docs/SCORING.md, re-run live on a quarter of its questions.

bench/scoring_eval.py scored all 202 questions of tests/data/scoring and stored each greedy
answer, its mark and its scores in tests/data/scoring/results/. This test asks the running
service again for every 4th question (51: 28 answered right in the stored run, 23 wrong)
and checks that the live route reproduces the evaluation: the same marks, and perplexity
telling wrong from right answers at the issue's goal, AUROC >= 0.70 (0.911 on this subset
in the stored run). Greedy answers are deterministic up to the rounding of different batch
shapes, which can flip a near-tie token; the thresholds leave room for a few such flips.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.eval_sets import DATA_DIR, INSTRUCTION, is_correct, load_questions
from signet.scoring.evaluation import auroc

pytestmark = pytest.mark.engine


def test_perplexity_tells_wrong_answers_from_right_ones_as_the_stored_evaluation_did(client):
    stored = {
        row["id"]: row for row in map(json.loads, (DATA_DIR / "results" / "uncertainty.jsonl").read_text().splitlines())
    }
    questions = load_questions()[::4]

    def ask(question: dict) -> dict:
        body = {
            "messages": [{"role": "user", "content": f"{question['question']} {INSTRUCTION}"}],
            "max_tokens": 24,
            "methods": ["perplexity"],
        }
        response = client.post("/score/uncertainty", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, questions))
    correct = [
        is_correct(answer["response"], question["answers"]) for answer, question in zip(answers, questions, strict=True)
    ]
    agreeing = sum(mark == stored[question["id"]]["correct"] for mark, question in zip(correct, questions, strict=True))
    assert agreeing >= 0.9 * len(questions), f"{agreeing} of {len(questions)} marks as stored"
    assert 10 <= sum(correct) <= len(questions) - 10, "both right and wrong answers are needed"
    perplexities = [answer["scores"][0]["value"] for answer in answers]
    assert auroc(perplexities, [not mark for mark in correct]) >= 0.70
