"""The embedded model's greedy and watermarked answers to the labelled questions, with the
per-token values the uncertainty risk is computed from: the data bench/fit_risk.py fits on.

    PYTHONPATH=. .venv/bin/python -m bench.risk_answers [--concurrency 8]

Starts ``signet serve`` (embedded engine) and asks each question of
tests/data/scoring/questions.jsonl through ``POST /generate?uncertainty=true`` (the route
whose answers the default risk describes) under each decoding the risk is fitted for:
greedy without the watermark (what ``/score/uncertainty`` generates), greedy with the
default key's watermark, and sampled at temperature 1 with it (a seed per question). Each
answer is marked right or wrong by ``is_correct``. Writes
tests/data/scoring/results/uncertainty_answers.jsonl: the question's id and category, the
prompt's words, the answer, its mark, each of its tokens' text (``token_texts``, as the
service reads them) and the ``uncertainty`` scores the route returned, per-token values
included. The questions are ``load_risk_questions()``: both labelled question files.
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.scoring_eval import RESULTS_DIR, SEED, write_jsonl
from harness.eval_sets import INSTRUCTION, is_correct, load_risk_questions
from harness.services import running_signet_server
from signet.api.answer_scores import token_texts
from signet.engine.model_store import load_tokenizer, resolve_model_dir
from signet.settings import Settings

ANSWERS_PATH = RESULTS_DIR / "uncertainty_answers.jsonl"
MAX_TOKENS = 24  # as bench/scoring_eval.py: the questions want a few words
DECODINGS = {
    "greedy": {"watermark": False, "temperature": 0.0},
    "greedy_watermarked": {"watermark": True, "temperature": 0.0},
    "sampled_watermarked": {"watermark": True, "temperature": 1.0},
}


def ask(client: httpx.Client, tokenizer, index: int, question: dict) -> list[dict]:
    rows = []
    prompt = f"{question['question']} {INSTRUCTION}"
    for decoding, options in DECODINGS.items():
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
            "temperature": options["temperature"],
            "seed": SEED + index,
        }
        params = {"watermark": str(options["watermark"]).lower(), "uncertainty": "true"}
        response = client.post("/generate", params=params, json=body)
        response.raise_for_status()
        answer = response.json()
        rows.append(
            {
                "id": question["id"],
                "category": question["category"],
                "decoding": decoding,
                "prompt": prompt,
                "answer": answer["text"],
                "correct": is_correct(answer["text"], question["answers"]),
                "token_texts": token_texts(tokenizer, answer["token_ids"]),
                "uncertainty": answer["uncertainty"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    questions = load_risk_questions()
    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    with tempfile.TemporaryDirectory() as folder, running_signet_server(Path(folder)) as server:
        client = httpx.Client(base_url=server.url, timeout=600)
        with client, ThreadPoolExecutor(arguments.concurrency) as pool:
            answered = list(pool.map(lambda pair: ask(client, tokenizer, *pair), enumerate(questions)))
    rows = [row for rows in answered for row in rows]
    write_jsonl(ANSWERS_PATH, rows)
    for decoding in DECODINGS:
        marked = [row["correct"] for row in rows if row["decoding"] == decoding]
        print(f"{decoding}: {sum(marked)} of {len(marked)} right")


if __name__ == "__main__":
    main()
