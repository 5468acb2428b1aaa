"""What ``/generate?uncertainty=true`` adds to the generation it describes, side by side.

    .venv/bin/python -m bench.uncertainty_cost [--rounds 6] [--concurrency 8] [--tokens 128]

Starts ``signet serve`` and runs rounds of ``--concurrency`` concurrent ``/generate``
requests, the same prompts and seeds with and without ``uncertainty=true``, in alternating
order. Seeded sampling draws the same tokens either way (logprobs are read, not used), so
both modes generate the same number of tokens; the bench checks that. The figure to read
is the ratio of wall times (uncertainty / plain) per round: the top-20 logprobs vLLM
gathers at every decode step plus the scores computed from them. A second series sends one
request at a time, where nothing else hides the cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.watermark_overhead import PROMPTS
from harness.services import running_signet_server

MODES = {"plain": "/generate", "uncertainty": "/generate?uncertainty=true"}


def generate(client: httpx.Client, path: str, prompt: str, seed: int, tokens: int) -> int:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "seed": seed}
    response = client.post(path, json=body)
    response.raise_for_status()
    answer = response.json()
    assert (answer.get("uncertainty") is not None) == ("uncertainty" in path)
    return answer["usage"]["completion_tokens"]


def timed_round(client: httpx.Client, path: str, concurrency: int, tokens: int) -> tuple[float, list[int]]:
    prompts = (PROMPTS * concurrency)[:concurrency]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        lengths = list(pool.map(lambda item: generate(client, path, item[1], item[0], tokens), enumerate(prompts)))
    return time.perf_counter() - start, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, running_signet_server(Path(folder)) as server:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for path in MODES.values():  # warm-up
                timed_round(client, path, arguments.concurrency, 8)
            batched: dict[str, list[float]] = {mode: [] for mode in MODES}
            single: dict[str, list[float]] = {mode: [] for mode in MODES}
            for index in range(arguments.rounds):
                order = list(MODES) if index % 2 == 0 else list(reversed(MODES))
                lengths = {}
                for mode in order:
                    seconds, lengths[mode] = timed_round(client, MODES[mode], arguments.concurrency, arguments.tokens)
                    batched[mode].append(seconds)
                    seconds, _ = timed_round(client, MODES[mode], 1, arguments.tokens)
                    single[mode].append(seconds)
                if lengths["plain"] != lengths["uncertainty"]:
                    raise SystemExit(f"round {index}: the modes generated different lengths {lengths}")
    print(
        f"/generate, {arguments.rounds} alternating rounds, {arguments.tokens} max tokens, "
        f"tokens per round {sum(lengths['plain'])} (batched) — same in both modes"
    )
    for name, series in (("batched x" + str(arguments.concurrency), batched), ("one at a time", single)):
        ratios = [
            with_scores / plain for with_scores, plain in zip(series["uncertainty"], series["plain"], strict=True)
        ]
        print(
            f"  {name:14s} wall s median plain {statistics.median(series['plain']):.2f}  uncertainty "
            f"{statistics.median(series['uncertainty']):.2f}   ratio median {statistics.median(ratios):.3f} "
            f"min {min(ratios):.3f} max {max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
