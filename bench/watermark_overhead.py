"""Generation throughput with and without the watermark, same engine, interleaved rounds.

    .venv/bin/python -m bench.watermark_overhead [--rounds 6] [--concurrency 8] [--tokens 128] [--eager]

Each round runs the same prompts and seeds twice, once watermarked and once not, in
alternating order, with ``ignore_eos`` so both produce the same number of tokens. The
ratio of tokens/s (watermarked / plain) is the figure to read; absolute numbers are noisy.
A second table times the logits processor's ``apply`` alone per decode step.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

HUMAN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "human"

PROMPTS = [
    "Write a story about a lighthouse keeper.",
    "Explain how bread is made.",
    "Describe a day in the life of a bus driver.",
    "Give advice to a new gardener.",
    "Summarise the history of the printing press.",
    "Describe the water cycle to a child.",
    "Write a letter to a friend about a trip to the mountains.",
    "Explain why the sky is blue.",
]


async def _round(engine, prompt_ids, tokens, key_id):
    from signet.engine.protocol import SamplingOptions

    options = [SamplingOptions(max_tokens=tokens, seed=index, ignore_eos=True) for index in range(len(prompt_ids))]
    start = time.perf_counter()
    completions = await asyncio.gather(
        *(engine.generate(ids, option, key_id) for ids, option in zip(prompt_ids, options, strict=True))
    )
    elapsed = time.perf_counter() - start
    return sum(completion.completion_tokens for completion in completions) / elapsed


async def generation_ratio(rounds: int, concurrency: int, tokens: int, eager: bool) -> None:
    from signet.engine.model_store import encode_prompt, load_tokenizer, resolve_model_dir
    from signet.engine.vllm_engine import EngineOptions, VllmEngine
    from signet.keys import KeyRegistry, resolve_keys_file
    from signet.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    keys_file = resolve_keys_file(settings.keys_file, settings.resolved_cache_dir)
    key_id = KeyRegistry.load(keys_file).default_key_id
    tokenizer = load_tokenizer(model_dir)
    prompts = (PROMPTS * concurrency)[:concurrency]
    prompt_ids = [encode_prompt(tokenizer, turns=[{"role": "user", "content": prompt}]) for prompt in prompts]
    started = time.perf_counter()
    engine = VllmEngine.start(
        model_dir,
        keys_file,
        EngineOptions(None, settings.engine_memory_fraction, settings.engine_max_concurrency, eager),
    )
    start_seconds = time.perf_counter() - started
    try:
        await _round(engine, prompt_ids, 16, None)  # warm-up
        await _round(engine, prompt_ids, 16, key_id)
        plain, marked = [], []
        for index in range(rounds):
            order = [(None, plain), (key_id, marked)]
            for run_key, results in order if index % 2 == 0 else reversed(order):
                results.append(await _round(engine, prompt_ids, tokens, run_key))
        ratios = [m / p for m, p in zip(marked, plain, strict=True)]
        mode = "eager" if eager else "compiled"
        print(f"generation ({mode} engine, started in {start_seconds:.1f} s): ", end="")
        print(f"{rounds} rounds x {concurrency} concurrent requests x {tokens} tokens")
        print(f"  plain        tokens/s median {statistics.median(plain):8.1f}  all {[round(x, 1) for x in plain]}")
        print(f"  watermarked  tokens/s median {statistics.median(marked):8.1f}  all {[round(x, 1) for x in marked]}")
        print(f"  ratio watermarked/plain: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}")
    finally:
        engine.shutdown()


def processor_step_cost(steps: int = 300) -> None:
    """Time ``apply`` alone per decode step, each row walking through real text.

    Rows append the next token of the human test passages at every step, so the green
    mask cache sees the hit rate of natural text, not of a repeated context.
    """
    import json
    import tempfile

    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from signet.engine.logits_processors import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG, WatermarkLogitsProcessor
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    corpus = " ".join(path.read_text() for path in sorted(HUMAN_DIR.glob("*.txt")))
    corpus_ids = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    vocab_size = len(tokenizer)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"keys": [{"key_id": "bench", "secret": "benchmark-secret-0123456789"}]}, handle)
    config = SimpleNamespace(additional_config={KEYS_FILE_CONFIG: handle.name})
    params = SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: "bench"})
    print(f"logits processor apply() per decode step: vocabulary {vocab_size}, {steps} steps of real text")
    for batch in (1, 8, 32, 128):
        processor = WatermarkLogitsProcessor(config, torch.device("cpu"), False)
        outputs = [[] for _ in range(batch)]
        starts = [row * len(corpus_ids) // batch for row in range(batch)]
        added = [(row, params, [corpus_ids[starts[row]]], outputs[row]) for row in range(batch)]
        processor.update_state(BatchUpdate(batch_size=batch, removed=[], added=added, moved=[]))
        logits = torch.randn(batch, vocab_size)
        elapsed = 0.0
        for step in range(steps):
            for row in range(batch):
                outputs[row].append(corpus_ids[(starts[row] + step + 1) % len(corpus_ids)])
            start = time.perf_counter()
            processor.apply(logits)
            elapsed += time.perf_counter() - start
        per_step = elapsed / steps
        print(f"  batch {batch:4d}: {per_step * 1e3:7.2f} ms/step, {per_step / batch * 1e6:7.1f} us/row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--skip-engine", action="store_true", help="only time the processor")
    parser.add_argument("--eager", action="store_true", help="skip vLLM's warm-up compile (SIGNET_ENGINE_EAGER)")
    arguments = parser.parse_args()
    processor_step_cost()
    if not arguments.skip_engine:
        asyncio.run(generation_ratio(arguments.rounds, arguments.concurrency, arguments.tokens, arguments.eager))


if __name__ == "__main__":
    main()
