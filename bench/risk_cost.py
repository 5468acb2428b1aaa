"""What the default risk adds to ``/generate?uncertainty=true``, side by side in one run.

    PYTHONPATH=. .venv/bin/python -m bench.risk_cost [--requests 8] [--tokens 128]

The risk is computed from logprobs the generation gathers anyway, so it adds no engine work;
what it adds is Python time in the API process. This bench starts ``signet serve``, times
``--requests`` sequential ``/generate?uncertainty=true`` requests of ``--tokens`` tokens
(seeded, so every run draws the same tokens), and in the same process times what the route
computes from such an answer's top-20 logprobs: the four logprob scores alone (as before the
risk) and with the risk (``answer_scores``, which also decodes each of the answer's tokens with
the served model's tokenizer to find the answer-bearing ones). The figure to read is the risk's
added time as a share of a request's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import httpx
import numpy as np

from bench.watermark_overhead import PROMPTS
from harness.services import running_signet_server
from signet.api.answer_scores import FREE_METHODS, AnswerWords, answer_scores
from signet.api.answer_scores import _logprob_scores as scores_alone
from signet.api.risk import Decoding
from signet.engine.model_store import load_tokenizer, resolve_model_dir
from signet.engine.protocol import MAX_LOGPROBS, TokenLogprobs
from signet.scoring.entropy import per_token_bounds
from signet.settings import Settings

VOCAB_SIZE = 49152  # the embedded model's


def answer_logprobs(tokens: int) -> TokenLogprobs:
    """Top-20 logprobs of the shape vLLM returns, at every one of ``tokens`` positions."""
    generator = np.random.default_rng(0)
    top = np.sort(np.log(generator.dirichlet(np.ones(200), size=tokens))[:, :MAX_LOGPROBS], axis=1)[:, ::-1]
    ids = generator.integers(0, VOCAB_SIZE, size=(tokens, MAX_LOGPROBS))
    return TokenLogprobs(top[:, 0].tolist(), ids.tolist(), top.tolist())


def seconds_per_call(function, repeat: int = 200) -> float:
    return min(timeit.repeat(function, number=repeat, repeat=5)) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, running_signet_server(Path(folder)) as server:
        client = httpx.Client(base_url=server.url, timeout=600)
        with client:
            times = []
            for index in range(arguments.requests + 1):
                body = {"messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}], "seed": index}
                body.update(max_tokens=arguments.tokens, temperature=1.0)
                start = time.perf_counter()
                response = client.post("/generate?uncertainty=true", json=body)
                response.raise_for_status()
                if index:  # the first warms the engine up
                    times.append(time.perf_counter() - start)
    answer = answer_logprobs(arguments.tokens)
    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    words = AnswerWords(tokenizer, [ids[0] for ids in answer.top_ids], PROMPTS[0])
    scores = seconds_per_call(lambda: scores_alone(answer, per_token_bounds(answer.top, VOCAB_SIZE), FREE_METHODS))
    both = seconds_per_call(
        lambda: answer_scores(answer, words, VOCAB_SIZE, "SmolLM2-135M-Instruct", Decoding(1.0, watermarked=True))
    )
    request = statistics.median(times)
    added = both - scores
    print(f"/generate?uncertainty=true, {arguments.tokens} tokens: median {request * 1000:.0f} ms of {len(times)}")
    print(f"logprob scores alone: {scores * 1e6:.0f} us; with the risk: {both * 1e6:.0f} us")
    print(f"the risk adds {added * 1e6:.0f} us: {added / request:.4%} of a request")


if __name__ == "__main__":
    main()
