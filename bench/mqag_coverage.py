"""How many summaries MQAG can score: the coverage of its generated questions.

    PYTHONPATH=. .venv/bin/python -m bench.mqag_coverage [--questions 6] [--concurrency 8] [--limit N]

Starts ``signet serve`` (embedded engine) and scores each summary of
tests/data/scoring/summaries.jsonl against its source with ``/score/consistency`` in
reference mode, MQAG only (``judge: always``: the embedded model fails the judge probe,
and this measures the question writing, not the judge). Per summary: the well-formed,
distinct questions the service kept, how many the source was judged to answer, and
whether MQAG scored the summary at all (at least one answerable question). Prints the
coverage and the warnings' reasons.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.scoring_eval import SEED
from harness.eval_sets import load_summaries
from harness.services import running_signet_server


def score(client: httpx.Client, index: int, item: dict, questions: int) -> dict:
    body = {
        "source": item["source"],
        "text": item["summary"],
        "methods": ["mqag_kl"],
        "questions": questions,
        "seed": SEED + index,
        "judge": "always",
    }
    response = client.post("/score/consistency", json=body)
    response.raise_for_status()
    answer = response.json()
    return {
        "kept": len(answer["questions"]),
        "answerable": sum(question["answerable"] for question in answer["questions"]),
        "scored": any(score["method"] == "mqag_kl" for score in answer["scores"]),
        "warnings": answer["warnings"],
        "requests": answer["cost"]["engine_requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    items = load_summaries()[: arguments.limit]
    with tempfile.TemporaryDirectory() as folder, running_signet_server(Path(folder)) as server:
        client = httpx.Client(base_url=server.url, timeout=900)
        with client, ThreadPoolExecutor(arguments.concurrency) as pool:
            results = list(
                pool.map(lambda pair: score(client, pair[0], pair[1], arguments.questions), enumerate(items))
            )
    count = len(results)
    print(f"summaries scored by MQAG: {sum(r['scored'] for r in results)} of {count}")
    print(f"with at least one well-formed question: {sum(r['kept'] > 0 for r in results)} of {count}")
    print(f"questions kept: {sum(r['kept'] for r in results)} ({arguments.questions} asked per summary)")
    print(f"questions judged answerable: {sum(r['answerable'] for r in results)}")
    print(f"engine requests per summary: {sum(r['requests'] for r in results) / count:.2f}")
    for warning, times in Counter(w for r in results for w in r["warnings"]).most_common():
        print(f"  {times} x {warning}")


if __name__ == "__main__":
    main()
