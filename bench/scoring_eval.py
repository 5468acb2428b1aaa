"""AUROC and PRR of every uncertainty and consistency method on the labelled sets in
tests/data/scoring, through the service's own routes on the embedded model.

    .venv/bin/python -m bench.scoring_eval [--samples 6] [--limit N] [--concurrency 8] [--part all]

Starts ``signet serve`` (embedded engine) and runs:

- uncertainty: each question as one chat turn; ``/score/uncertainty`` generates the greedy
  answer and draws ``--samples`` samples, once with ``similarity`` "llm" and once with
  "embedding" (same seed); the answer is marked right or wrong by ``is_correct``. AUROC:
  how well each method's value ranks wrong answers above right ones; PRR with quality =
  right (1) or wrong (0).
- consistency: each summary against its source with ``/score/consistency``, in reference
  mode (the source given) and in self-consistency mode (4 samples of the model's own
  summary of the source); AUROC of each passage score at ranking corrupted summaries above
  faithful ones, overall and per corruption type (that type's corrupted summaries against
  all faithful ones).

Per-item results go to tests/data/scoring/results/ (the answers, their marks and every
score), so the tables can be recomputed without the engine:
``.venv/bin/python -m bench.scoring_eval --from-results``.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness.eval_sets import DATA_DIR, INSTRUCTION, is_correct, load_questions, load_summaries
from harness.services import running_signet_server
from signet.scoring.evaluation import auroc, prediction_rejection_ratio

RESULTS_DIR = DATA_DIR / "results"
SEED = 20261130


def ask_uncertainty(client: httpx.Client, index: int, question: dict, arguments: argparse.Namespace) -> dict:
    messages = [{"role": "user", "content": f"{question['question']} {INSTRUCTION}"}]
    result = {"id": question["id"], "category": question["category"]}
    for similarity in ("llm", "embedding"):
        # A seed per question: one seed for all would draw correlated samples across questions.
        seed = SEED + index
        body = {
            "messages": messages,
            "samples": arguments.samples,
            "max_tokens": 24,
            "seed": seed,
            "similarity": similarity,
        }
        response = client.post("/score/uncertainty", json=body)
        response.raise_for_status()
        answer = response.json()
        result.setdefault("answer", answer["response"])
        result.setdefault("samples", answer["samples"])
        scores = {score["method"]: score["value"] for score in answer["scores"]}
        if similarity == "llm":
            result["scores"] = scores
            result["cost"] = answer["cost"]
        else:  # only the methods that depend on how samples are judged equivalent
            for method in ("semantic_entropy", "discrete_semantic_entropy", "num_semantic_sets", "eig_val_laplacian"):
                result["scores"][f"{method} (embedding)"] = scores[method]
    result["correct"] = is_correct(result["answer"], question["answers"])
    return result


def ask_consistency(client: httpx.Client, index: int, item: dict, arguments: argparse.Namespace) -> dict:
    """Reference mode against the source, and self-consistency against the model's own
    summaries of it (prompt: the summarising instruction with the source)."""
    result = {"id": item["id"], "label": item["label"], "corruption": item["corruption"], "scores": {}}
    bodies = {
        "reference": {"source": item["source"], "text": item["summary"], "questions": 6, "seed": SEED + index},
        "self": {
            "prompt": f"Summarize the text below in two sentences.\n\n{item['source']}",
            "text": item["summary"],
            "samples": 4,
            "max_tokens": 96,
            "seed": SEED + index,
        },
    }
    for mode, body in bodies.items():
        response = client.post("/score/consistency", json=body)
        response.raise_for_status()
        answer = response.json()
        result["scores"].update({score["method"]: score["value"] for score in answer["scores"]})
        result[f"{mode}_cost"] = answer["cost"]
        result[f"{mode}_warnings"] = answer["warnings"]
    return result


def run(arguments: argparse.Namespace) -> None:
    """Score the sets through a fresh server; each part's results replace its stored file."""
    parts = {"uncertainty": (load_questions, ask_uncertainty), "consistency": (load_summaries, ask_consistency)}
    chosen = parts if arguments.part == "all" else {arguments.part: parts[arguments.part]}
    with tempfile.TemporaryDirectory() as folder, running_signet_server(Path(folder)) as server:
        client = httpx.Client(base_url=server.url, timeout=1800)
        with client, ThreadPoolExecutor(arguments.concurrency) as pool:
            for name, (load, ask) in chosen.items():
                items = load()[: arguments.limit]
                rows = list(pool.map(functools.partial(ask, client, arguments=arguments), range(len(items)), items))
                RESULTS_DIR.mkdir(exist_ok=True)
                write_jsonl(RESULTS_DIR / f"{name}.jsonl", rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def methods_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(method for row in rows for method in row["scores"]))


def uncertainty_table(rows: list[dict]) -> str:
    wrong = [not row["correct"] for row in rows]
    lines = [
        f"{len(rows)} questions, {sum(wrong)} answered wrong, {len(rows) - sum(wrong)} right.",
        "",
        "| method | AUROC (wrong vs right) | PRR |",
        "| --- | --- | --- |",
    ]
    for method in methods_of(rows):
        values = [row["scores"][method] for row in rows]
        quality = [float(row["correct"]) for row in rows]
        lines.append(
            f"| {method} | {auroc(values, wrong):.3f} | {prediction_rejection_ratio(values, quality, 0.5):.3f} |"
        )
    lines += ["", "| category | questions | right |", "| --- | --- | --- |"]
    by_category = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row["correct"])
    lines += [f"| {name} | {len(marks)} | {sum(marks)} |" for name, marks in by_category.items()]
    return "\n".join(lines)


def consistency_table(rows: list[dict]) -> str:
    faithful = [row for row in rows if row["label"] == "faithful"]
    kinds = sorted({row["corruption"] for row in rows if row["corruption"]})
    header = " | ".join(["all", *kinds])
    lines = [
        f"{len(rows)} summaries: {len(faithful)} faithful, {len(rows) - len(faithful)} corrupted.",
        "",
        f"| method | scored | AUROC {header} |",
        "| --- | --- | " + " | ".join("---" for _ in ["all", *kinds]) + " |",
    ]
    for method in methods_of(rows):
        scored = [row for row in rows if method in row["scores"]]
        cells = [_consistency_auroc(scored, method, None)]
        cells += [_consistency_auroc(scored, method, kind) for kind in kinds]
        lines.append(f"| {method} | {len(scored)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _consistency_auroc(rows: list[dict], method: str, kind: str | None) -> str:
    chosen = [row for row in rows if row["label"] == "faithful" or kind is None or row["corruption"] == kind]
    corrupted = [row["label"] == "corrupted" for row in chosen]
    if all(corrupted) or not any(corrupted):
        return "n/a"
    return f"{auroc([row['scores'][method] for row in chosen], corrupted):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="first N questions and summaries only")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--part", choices=["all", "uncertainty", "consistency"], default="all")
    parser.add_argument("--from-results", action="store_true", help="recompute the tables from stored results")
    arguments = parser.parse_args()
    if not arguments.from_results:
        run(arguments)
    print("## Uncertainty\n\n" + uncertainty_table(read_jsonl(RESULTS_DIR / "uncertainty.jsonl")))
    print("\n## Consistency\n\n" + consistency_table(read_jsonl(RESULTS_DIR / "consistency.jsonl")))


if __name__ == "__main__":
    main()
