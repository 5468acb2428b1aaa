"""Detection throughput: the scoring core alone, and the whole ``POST /detect`` call.

    .venv/bin/python -m bench.detect_throughput [--texts 200] [--tokens 1000]

Core: KGW scoring + exact binomial test on token ids, one thread, tokenization
excluded. Whole call: the FastAPI app in-process (detection-only, no engine) through
httpx's ASGI transport, so JSON parsing, validation and tokenization are included but
no network. Beside ours, the same token ids go through the reference algorithm's
per-token cost model (one seeded ``torch.randperm(V)`` per scored token, as in
lm-watermarking and transformers' detector), so the ratio reads on the same inputs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal is stated

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

HUMAN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "human"


def _token_texts(tokenizer, count: int, tokens: int) -> list[list[int]]:
    """``count`` windows of ``tokens`` ids cut from the human passages, cycled."""
    corpus = " ".join(path.read_text() for path in sorted(HUMAN_DIR.glob("*.txt")))
    ids = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    while len(ids) < tokens * 4:
        ids = ids + ids
    starts = np.random.default_rng(0).integers(0, len(ids) - tokens, count)
    return [ids[start : start + tokens] for start in starts]


def core_throughput(token_texts: list[list[int]]) -> float:
    from signet.watermark.kgw import KgwParameters, KgwScheme
    from signet.watermark.statistics import GreenCountTest

    scheme = KgwScheme(b"benchmark-secret-0123456789", KgwParameters())
    arrays = [np.asarray(ids) for ids in token_texts]
    scheme.score(arrays[0])
    p_values = []
    start = time.perf_counter()
    for ids in arrays:
        scores = scheme.score(ids)
        p_values.append(GreenCountTest(scores.num_scored_tokens, scores.num_green_tokens, 0.25).p_value)
    return sum(len(ids) for ids in arrays) / (time.perf_counter() - start)


def reference_cost_model_throughput(token_texts: list[list[int]], vocabulary_size: int) -> float:
    """lm-watermarking's detector loop: reseed, randperm(V), membership test, per token."""
    import torch

    generator = torch.Generator()
    greenlist_size = int(vocabulary_size * 0.25)
    scored = 0
    start = time.perf_counter()
    for ids in token_texts:
        for previous, token in zip(ids[:-1], ids[1:], strict=True):
            generator.manual_seed(15485863 * previous)
            greenlist = torch.randperm(vocabulary_size, generator=generator)[:greenlist_size]
            bool(token in greenlist)
            scored += 1
    return scored / (time.perf_counter() - start)


async def whole_call(texts: list[str], tokens_per_text: int) -> tuple[float, list[float]]:
    import httpx

    from signet.api.app import create_app
    from signet.api.state import ServiceState
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.keys import KeyRegistry, resolve_keys_file
    from signet.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    keys = KeyRegistry.load(resolve_keys_file(settings.keys_file, settings.resolved_cache_dir))
    app = create_app(ServiceState(settings, keys, load_tokenizer(model_dir), model_dir.name, engine=None))
    latencies = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://signet") as client:
        await client.post("/detect", json={"text": texts[0]})
        start = time.perf_counter()
        for text in texts:
            began = time.perf_counter()
            response = await client.post("/detect", json={"text": text})
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
        elapsed = time.perf_counter() - start
    return len(texts) * tokens_per_text / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--reference-texts", type=int, default=3, help="texts for the slow randperm loop")
    arguments = parser.parse_args()

    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    token_texts = _token_texts(tokenizer, arguments.texts, arguments.tokens)

    core = core_throughput(token_texts)
    reference = reference_cost_model_throughput(token_texts[: arguments.reference_texts], len(tokenizer))
    texts = [tokenizer.decode(ids) for ids in token_texts]
    call_rate, latencies = asyncio.run(whole_call(texts, arguments.tokens))

    print(f"{arguments.texts} texts x {arguments.tokens} tokens (human passages), one thread")
    print(f"  core scoring + exact test      {core:14,.0f} tokens/s")
    print(f"  reference per-token randperm   {reference:14,.0f} tokens/s   (core is {core / reference:,.0f}x)")
    print(f"  whole POST /detect (in-process){call_rate:14,.0f} tokens/s")
    print(
        f"  /detect latency per {arguments.tokens}-token text: p50 {statistics.median(latencies) * 1e3:.2f} ms, "
        f"p95 {np.percentile(latencies, 95) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
