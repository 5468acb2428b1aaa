"""Generation throughput with vLLM's Prometheus series on and off: two engines, alternating rounds.

    PYTHONPATH=. .venv/bin/python -m bench.engine_stats_overhead [--rounds 6] [--concurrency 8] [--tokens 128]

Signet starts its engines with vLLM's Prometheus stat logger (the vllm: series of /metrics
and of a worker's metrics port), which makes vLLM collect statistics at every step. This
starts one engine with it and one without, in this process, and runs the same prompts and
seeds on each in turn (ABBA order), plain, with ``ignore_eos`` so every round produces the
same tokens. The ratio of tokens/s (on / off, per pair of rounds) is the figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.watermark_overhead import _round, engine_inputs


async def stats_ratio(rounds: int, concurrency: int, tokens: int) -> None:
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    _, model_dir, keys_file, prompt_ids = engine_inputs(concurrency)
    engines = {
        stats: VllmEngine.start(model_dir, keys_file, EngineOptions(2048, 0.2, concurrency, True, stats=stats))
        for stats in (True, False)
    }
    try:
        for engine in engines.values():  # warm-up
            await _round(engine, prompt_ids, 16, None)
        speeds: dict[bool, list[float]] = {True: [], False: []}
        for index in range(rounds):
            order = (True, False) if index % 2 == 0 else (False, True)
            for stats in order:
                speeds[stats].append(await _round(engines[stats], prompt_ids, tokens, None))
        ratios = [on / off for on, off in zip(speeds[True], speeds[False], strict=True)]
        print(f"{rounds} rounds x {concurrency} concurrent requests x {tokens} tokens, eager engines")
        print("| vLLM's Prometheus series | tokens/s (median) |")
        print("|---|---|")
        for stats in (True, False):
            print(f"| {'on' if stats else 'off'} | {statistics.median(speeds[stats]):.1f} |")
        print(f"\nratio on / off per round: median **{statistics.median(ratios):.3f}**, min {min(ratios):.3f}")
    finally:
        for engine in engines.values():
            engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    arguments = parser.parse_args()
    started = time.perf_counter()
    asyncio.run(stats_ratio(arguments.rounds, arguments.concurrency, arguments.tokens))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
