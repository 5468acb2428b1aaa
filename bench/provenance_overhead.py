"""/generate throughput with the generation registry recording, against without.

    .venv/bin/python -m bench.provenance_overhead [--rounds 6] [--concurrency 8] [--tokens 128]

Two ``signet serve`` processes on the embedded model, one with ``SIGNET_PROVENANCE=true``
(every generation fingerprinted by all-MiniLM-L6-v2 and written to its SQLite registry)
and one with it off, each engine on all cores. Rounds alternate between them (which goes
first alternates too), one server idle while the other works. A round sends
``--concurrency`` /generate requests at once, each of ``--tokens`` tokens at most
(watermarked, temperature 1, distinct seeds).

A round of the recording server ends only when its registry holds every generation of the
round (read from ``signet_provenance_records_total`` on /metrics), so the recording's work,
done after the responses, is inside its time, not left to slow the next round.

Throughput: completion tokens per second over all rounds of a server. Goal: on / off >= 0.95.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness.services import running_signet_server

PROMPTS = [
    "Write a short story about a lost umbrella.",
    "Explain how tides work.",
    "Describe your ideal weekend.",
    "Give advice to a new gardener.",
]
_RECORDED = re.compile(r'^signet_provenance_records_total\{outcome="recorded"\} (\S+)$', re.M)


def recorded(client: httpx.Client) -> float:
    match = _RECORDED.search(client.get("/metrics").text)
    return float(match.group(1)) if match else 0.0


def round_of(client: httpx.Client, concurrency: int, tokens: int, seed: int, recording: bool) -> tuple[int, float]:
    """(completion tokens, seconds) of one round."""
    before = recorded(client) if recording else 0.0
    began = time.perf_counter()

    def one(index: int) -> tuple[int, bool]:
        body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": tokens, "seed": seed * 100 + index}
        response = client.post("/generate", json=body)
        response.raise_for_status()
        answer = response.json()
        return answer["usage"]["completion_tokens"], bool(answer["text"].strip())

    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(one, range(concurrency)))
    # A blank answer has nothing to fingerprint: the recorder skips it, uncounted.
    to_record = sum(nonblank for _, nonblank in answers)
    while recording and recorded(client) < before + to_record:
        time.sleep(0.05)  # each /metrics is rendered by the server: polled every 10 ms, it cost the server CPU
    return sum(tokens for tokens, _ in answers), time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        on_folder, off_folder = Path(folder) / "on", Path(folder) / "off"
        on_folder.mkdir()
        off_folder.mkdir()
        with (
            running_signet_server(on_folder, SIGNET_PROVENANCE="true") as on_server,
            running_signet_server(off_folder, SIGNET_PROVENANCE="false") as off_server,
            httpx.Client(base_url=on_server.url, timeout=600) as on,
            httpx.Client(base_url=off_server.url, timeout=600) as off,
        ):
            round_of(on, 2, 8, 0, True)  # warm-up: the embedding model loads on first use
            round_of(off, 2, 8, 0, False)
            totals = {"on": [0, 0.0], "off": [0, 0.0]}
            for number in range(arguments.rounds):
                order = [("on", on), ("off", off)] if number % 2 == 0 else [("off", off), ("on", on)]
                for name, client in order:
                    tokens, seconds = round_of(
                        client, arguments.concurrency, arguments.tokens, number + 1, recording=name == "on"
                    )
                    totals[name][0] += tokens
                    totals[name][1] += seconds
                    print(f"round {number + 1} {name}: {tokens} tokens in {seconds:.1f} s", flush=True)
    rate = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print(
        f"\nrecording on: {rate['on']:.1f} tokens/s; off: {rate['off']:.1f} tokens/s; "
        f"ratio {rate['on'] / rate['off']:.3f}"
    )


if __name__ == "__main__":
    main()
