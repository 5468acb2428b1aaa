"""SynthID detection power: Signet's exact test beside synthid-text's mean and weighted-mean scores.

    .venv/bin/python -m bench.synthid_power [--generations 100] [--tokens 200]

Generates ``--generations`` completions with bench/detection_quality.py's ``synthid`` key
(30 layers, 5-grams) on the embedded vLLM engine (``ignore_eos``, temperature 1, the
tournament over the top 50 tokens), then tests the first T = 25, 50, 100, 200 tokens of
each at alpha = 1e-3 three ways, on the same g-values:

* Signet: the count of g-values equal to 1 at the scored positions (transformers'
  repeated-context mask, then the first of each n-gram hash residue) against
  Binomial(N x depth, f), f the table's fraction of ones: exact.
* synthid-text's mean score, the mean of the unmasked g-values (transformers' mask): its
  null is Binomial(N x depth, f) / (N x depth), so the exact binomial tail thresholds it.
* synthid-text's weighted mean (weights 10 down to 1 over the layers): a weighted sum of
  independent Bernoulli(f) under the null. It is thresholded with the normal approximation
  (N x depth >= 750 terms at T = 25; the tail at z = 3.1 is within a few per cent).

transformers' own ``SynthIDTextWatermarkDetector`` is a Bayesian model trained on the
user's marked and unmarked text: there is nothing to run without training it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.detection_quality import ALPHA, KEYS, PREFIX_LENGTHS, generate_all, make_state, prompts


def three_tests(scheme, token_ids: list[int]) -> tuple[float, float, float]:
    """p-values of Signet's test, the mean score and the weighted mean (normal approximation)."""
    from scipy.stats import binom, norm

    from signet.watermark.statistics import p_value
    from signet.watermark.synthid import synthid_mean_scores, weighted_mean_score

    f = scheme.g_value_rate
    ours = p_value(scheme.null_distribution, scheme.evidence(token_ids))
    g_values = scheme.g_values(token_ids).astype(np.float64)
    mask = scheme.context_repetition_mask(token_ids)
    positions, depth = int(mask.sum()), g_values.shape[-1]
    if positions == 0:
        return ours, 1.0, 1.0
    ones = round(float(synthid_mean_scores(g_values, mask)) * positions * depth)
    mean_p = float(binom.sf(ones - 1, positions * depth, f))
    weights = np.linspace(10.0, 1.0, depth)
    weights *= depth / weights.sum()
    # the weighted mean's null: mean f, variance f (1 - f) sum(w^2) / (depth^2 positions)
    sd = np.sqrt(f * (1 - f) * np.sum(weights**2) / (depth**2 * positions))
    weighted_p = float(norm.sf((float(weighted_mean_score(g_values, mask)) - f) / sd))
    return ours, mean_p, weighted_p


async def run(generations: int, tokens: int) -> None:
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    keys = {"default_key_id": "synthid", "keys": [key for key in KEYS["keys"] if key["key_id"] == "synthid"]}
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(keys))
        state, model_dir = make_state(keys_file)
        engine = VllmEngine.start(model_dir, keys_file, EngineOptions(2048, 0.25, 32, False))
        try:
            completions = await generate_all(
                engine, state.tokenizer, prompts(generations), tokens, "synthid", ignore_eos=True
            )
        finally:
            engine.shutdown()
    scheme = state.keys.scheme("synthid")
    names = ("Signet: exact binomial, deduplicated", "synthid-text mean score", "synthid-text weighted mean")
    detected = {name: {length: 0 for length in PREFIX_LENGTHS} for name in names}
    for completion in completions:
        for length in PREFIX_LENGTHS:
            for name, p in zip(names, three_tests(scheme, completion.token_ids[:length]), strict=True):
                detected[name][length] += p < ALPHA
    print(f"\n### SynthID: true-positive rate at alpha = {ALPHA:g}, {generations} generations, first T tokens\n")
    print("| test | " + " | ".join(f"T = {length}" for length in PREFIX_LENGTHS) + " |")
    print("|---|" + "---|" * len(PREFIX_LENGTHS))
    for name in names:
        rates = " | ".join(f"{detected[name][length] / generations:.2f}" for length in PREFIX_LENGTHS)
        print(f"| {name} | {rates} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.generations, arguments.tokens))


if __name__ == "__main__":
    main()
