"""Detection speed, side by side with the peers' own detectors on the same token ids.

    .venv/bin/python -m bench.detect_throughput [--texts 100] [--tokens 1000] [--peer-texts 20]

One thread. For each scheme, ours and the peer's score the same ``--tokens``-token
windows of human text (tests/data/corpus/human.jsonl):

* ``kgw-lefthash``: ours (cold: a fresh scheme per text, nothing cached; after the other
  texts: one scheme that first detected the windows the peer does not score, so the
  rows of frequent previous tokens are cached, within the default 24 MiB) vs Hugging
  Face transformers' ``WatermarkDetector`` (lefthash, ignore_repeated_ngrams), all on
  the peer's windows.
* ``gumbel``: ours vs vLLM's ``GumbelWatermarkDetector``.
* ``kgw``: ours alone (no peer implements this PRF); the reference algorithm's cost
  model (a seeded ``randperm(V)`` per token) is printed beside it for scale.

Then the whole ``POST /detect`` call per scheme: the FastAPI app in-process
(detection-only, no engine, prewarmed as ``signet serve`` does at start) through
httpx's ASGI transport, tokenization included.
Ratios are the figures to read; absolute times on shared machines are noisy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goals are stated

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus" / "human.jsonl"
HASHING_KEY, GUMBEL_KEY = 15485863, 918273645
KEYS = {
    "keys": [
        {"key_id": "kgw", "secret": "benchmark-secret-0123456789"},
        {"key_id": "kgw-lefthash", "scheme": "kgw-lefthash", "hashing_key": HASHING_KEY},
        {"key_id": "gumbel", "scheme": "gumbel", "key": GUMBEL_KEY},
    ]
}


def token_texts(tokenizer, count: int, tokens: int) -> list[list[int]]:
    """``count`` windows of ``tokens`` ids from the human corpus."""
    with CORPUS.open() as handle:
        corpus = "\n\n".join(json.loads(line)["text"] for line in handle)
    ids = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    starts = np.random.default_rng(0).integers(0, len(ids) - tokens, count)
    return [ids[start : start + tokens] for start in starts]


def tokens_per_second(score: Callable[[list[int]], object], texts: list[list[int]]) -> float:
    start = time.perf_counter()
    for ids in texts:
        score(ids)
    return sum(len(ids) for ids in texts) / (time.perf_counter() - start)


def lefthash_rows(texts: list[list[int]], peer_texts: list[list[int]], vocab_size: int) -> list[tuple]:
    import torch
    from transformers import LlamaConfig, WatermarkDetector, WatermarkingConfig

    from signet.watermark.lefthash import LefthashParameters, LefthashScheme
    from signet.watermark.statistics import p_value

    parameters = LefthashParameters(vocab_size=vocab_size, hashing_key=HASHING_KEY)
    config = LlamaConfig(vocab_size=vocab_size)
    watermarking = WatermarkingConfig(seeding_scheme="lefthash", hashing_key=HASHING_KEY)
    peer = WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=True)

    def ours_cold(ids):
        scheme = LefthashScheme(parameters)
        return p_value(scheme.null_distribution, scheme.evidence(ids))

    # A busy process: the frequent previous tokens of other texts earned cached rows.
    warm_scheme = LefthashScheme(parameters)
    for ids in texts[len(peer_texts) :]:
        warm_scheme.evidence(ids)

    def ours_warm(ids):
        return p_value(warm_scheme.null_distribution, warm_scheme.evidence(ids))

    theirs = tokens_per_second(lambda ids: peer(torch.tensor([ids]), return_dict=True), peer_texts)
    return [
        ("kgw-lefthash", "transformers WatermarkDetector", theirs, None),
        ("kgw-lefthash", "Signet, cold", tokens_per_second(ours_cold, peer_texts), theirs),
        ("kgw-lefthash", "Signet, after the other texts", tokens_per_second(ours_warm, peer_texts), theirs),
    ]


def gumbel_rows(texts: list[list[int]], peer_texts: list[list[int]]) -> list[tuple]:
    from vllm.v1.watermarking.gumbel import GumbelWatermarkDetector

    from signet.watermark.gumbel import GumbelParameters, GumbelScheme
    from signet.watermark.statistics import p_value

    scheme = GumbelScheme(GUMBEL_KEY, GumbelParameters())
    peer = GumbelWatermarkDetector(key=GUMBEL_KEY, context_width=4)
    peer.detect(texts[0])
    scheme.evidence(texts[0])  # loads (or, on a fresh install, compiles) the numba kernels
    theirs = tokens_per_second(peer.detect, peer_texts)
    ours = tokens_per_second(lambda ids: p_value(scheme.null_distribution, scheme.evidence(ids)), texts)
    return [("gumbel", "vLLM GumbelWatermarkDetector", theirs, None), ("gumbel", "Signet", ours, theirs)]


def kgw_rows(texts: list[list[int]], peer_texts: list[list[int]], vocab_size: int) -> list[tuple]:
    import torch

    from signet.watermark.kgw import KgwParameters, KgwScheme
    from signet.watermark.statistics import p_value

    scheme = KgwScheme(b"benchmark-secret-0123456789", KgwParameters())
    generator = torch.Generator()
    greenlist_size = vocab_size // 4

    def reference_cost_model(ids):
        for previous, token in zip(ids[:-1], ids[1:], strict=True):
            generator.manual_seed(HASHING_KEY * previous)
            bool(token in torch.randperm(vocab_size, generator=generator)[:greenlist_size])

    ours = tokens_per_second(lambda ids: p_value(scheme.null_distribution, scheme.evidence(ids)), texts)
    theirs = tokens_per_second(reference_cost_model, peer_texts)
    return [("kgw", "reference cost model (randperm per token)", theirs, None), ("kgw", "Signet", ours, theirs)]


async def detect_latencies(texts: list[str]) -> dict[str, list[float]]:
    import httpx

    from signet.api.app import create_app
    from signet.api.state import ServiceState
    from signet.engine.model_store import resolve_model_dir
    from signet.keys import prewarm_schemes
    from signet.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(KEYS))
        settings = Settings(keys_file=keys_file)
        state = ServiceState.load(settings, resolve_model_dir(settings.model, settings.resolved_cache_dir), keys_file)
        prewarm_schemes(state.keys)  # what `signet serve` does in a thread at start
        app = create_app(state)
    latencies: dict[str, list[float]] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://signet") as client:
        for key in KEYS["keys"]:
            key_id = key["key_id"]
            await client.post("/detect", json={"text": texts[0], "key_id": key_id})
            latencies[key_id] = []
            for text in texts:
                began = time.perf_counter()
                response = await client.post("/detect", json={"text": text, "key_id": key_id})
                latencies[key_id].append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--peer-texts", type=int, default=20, help="texts for the slow peers (their first ones)")
    arguments = parser.parse_args()

    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    texts = token_texts(tokenizer, arguments.texts, arguments.tokens)
    peer_texts = texts[: arguments.peer_texts]
    vocab_size = len(tokenizer)

    # lefthash last: after transformers is imported and its cache filled, the numpy-only
    # rows measured 3-4x slower in one process (cause not found), so they go first.
    rows = kgw_rows(texts, peer_texts, vocab_size) + gumbel_rows(texts, peer_texts)
    rows += lefthash_rows(texts, peer_texts, vocab_size)
    print(f"{arguments.texts} texts x {arguments.tokens} tokens of human text, one thread")
    print("| scheme | detector | tokens/s | ours / peer |")
    print("|---|---|---|---|")
    for scheme, detector, rate, peer_rate in rows:
        ratio = f"{rate / peer_rate:,.0f}x" if peer_rate else ""
        print(f"| {scheme} | {detector} | {rate:,.0f} | {ratio} |")

    latencies = asyncio.run(detect_latencies([tokenizer.decode(ids) for ids in texts]))
    print(f"\nwhole POST /detect (in-process, text in, tokenization included), {arguments.tokens}-token texts")
    print("| key scheme | p50 ms | p95 ms |")
    print("|---|---|---|")
    for key_id, values in latencies.items():
        print(f"| {key_id} | {statistics.median(values) * 1e3:.2f} | {np.percentile(values, 95) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
