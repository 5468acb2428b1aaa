"""Generation throughput with and without the watermark, same engine, interleaved rounds.

    .venv/bin/python -m bench.watermark_overhead [--rounds 6] [--concurrency 8] [--tokens 128] [--eager]
        [--key-ids a,b,...]

Each round runs the same prompts and seeds plain and once per key (the keys file's default
key unless ``--key-ids`` names keys of ``SIGNET_KEYS_FILE``), in an order that rotates
from round to round, with ``ignore_eos`` so every run produces the same number of tokens.
The ratio of tokens/s (watermarked / plain, per round) is the figure to read; absolute
numbers are noisy.
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


def engine_inputs(concurrency: int) -> tuple[object, Path, Path, list[list[int]]]:
    """What an engine bench needs: the settings, the model and keys file they name, and
    ``concurrency`` chat prompts (PROMPTS, repeated as needed) as token ids."""
    from signet.engine.model_store import encode_prompt, load_tokenizer, resolve_model_dir
    from signet.keys import resolve_keys_file
    from signet.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.resolved_cache_dir)
    keys_file = resolve_keys_file(settings.keys_file, settings.resolved_cache_dir)
    tokenizer = load_tokenizer(model_dir)
    prompts = (PROMPTS * concurrency)[:concurrency]
    prompt_ids = [encode_prompt(tokenizer, turns=[{"role": "user", "content": prompt}]) for prompt in prompts]
    return settings, model_dir, keys_file, prompt_ids


async def generation_ratio(rounds: int, concurrency: int, tokens: int, eager: bool, key_ids: list[str]) -> None:
    from signet.engine.vllm_engine import EngineOptions, VllmEngine
    from signet.keys import KeyRegistry

    settings, model_dir, keys_file, prompt_ids = engine_inputs(concurrency)
    key_ids = key_ids or [KeyRegistry.load(keys_file).default_key_id]
    started = time.perf_counter()
    engine = VllmEngine.start(
        model_dir,
        keys_file,
        EngineOptions(None, settings.engine_memory_fraction, settings.engine_max_concurrency, eager),
    )
    start_seconds = time.perf_counter() - started
    try:
        runs: list[str | None] = [None, *key_ids]
        for run_key in runs:  # warm-up: compiles, and fills each scheme's caches
            await _round(engine, prompt_ids, 16, run_key)
        speeds: dict[str | None, list[float]] = {run_key: [] for run_key in runs}
        for index in range(rounds):
            shift = index % len(runs)
            for run_key in runs[shift:] + runs[:shift]:
                speeds[run_key].append(await _round(engine, prompt_ids, tokens, run_key))
        plain = speeds[None]
        mode = "eager" if eager else "compiled"
        print(f"generation ({mode} engine, started in {start_seconds:.1f} s): ", end="")
        print(f"{rounds} rounds x {concurrency} concurrent requests x {tokens} tokens")
        print("| key | tokens/s (median) | ratio to plain, per round: median | min |")
        print("|---|---|---|---|")
        print(f"| plain | {statistics.median(plain):.1f} | | |")
        for key_id in key_ids:
            ratios = [marked / base for marked, base in zip(speeds[key_id], plain, strict=True)]
            print(
                f"| {key_id} | {statistics.median(speeds[key_id]):.1f} | **{statistics.median(ratios):.3f}** "
                f"| {min(ratios):.3f} |"
            )
    finally:
        engine.shutdown()


def processor_step_cost(steps: int = 300) -> None:
    """Time ``apply`` alone per decode step, each row walking through real text, for one key
    of each scheme (bench/detection_quality.py's keys).

    Rows append the next token of the human test passages at every step, so the green
    mask cache sees the hit rate of natural text, not of a repeated context.
    """
    import json
    import tempfile

    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from bench.detection_quality import KEYS
    from signet.engine.logits_processors import WatermarkLogitsProcessor
    from signet.engine.model_store import load_tokenizer, resolve_model_dir
    from signet.engine.watermark_requests import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG
    from signet.settings import Settings

    settings = Settings()
    tokenizer = load_tokenizer(resolve_model_dir(settings.model, settings.resolved_cache_dir))
    corpus = " ".join(path.read_text() for path in sorted(HUMAN_DIR.glob("*.txt")))
    corpus_ids = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    vocab_size = len(tokenizer)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(KEYS, handle)
    config = SimpleNamespace(
        additional_config={KEYS_FILE_CONFIG: handle.name},
        model_config=SimpleNamespace(get_vocab_size=lambda: vocab_size),  # kgw-lefthash keys need it
    )
    print(f"logits processor apply() per decode step: vocabulary {vocab_size}, {steps} steps of real text")
    for key_id, batch in ((key["key_id"], batch) for key in KEYS["keys"] for batch in (1, 8, 32)):
        params = SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: key_id})
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
        print(f"  {key_id:16s} batch {batch:4d}: {per_step * 1e3:7.2f} ms/step, {per_step / batch * 1e6:7.1f} us/row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--skip-engine", action="store_true", help="only time the processor")
    parser.add_argument("--skip-processor", action="store_true", help="only the generation ratio")
    parser.add_argument("--eager", action="store_true", help="skip vLLM's warm-up compile (SIGNET_ENGINE_EAGER)")
    parser.add_argument("--key-ids", default="", help="comma-separated keys of SIGNET_KEYS_FILE to compare")
    arguments = parser.parse_args()
    key_ids = [key_id for key_id in arguments.key_ids.split(",") if key_id]
    if not arguments.skip_processor:
        processor_step_cost()
    if not arguments.skip_engine:
        asyncio.run(
            generation_ratio(arguments.rounds, arguments.concurrency, arguments.tokens, arguments.eager, key_ids)
        )


if __name__ == "__main__":
    main()
