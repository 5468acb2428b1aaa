"""Watermarked token ids without an engine: each scheme's generator on random logits.

For tests that need watermarked input for the detector quickly. The engine's own
generation is tested end to end in tests/e2e/.
"""

from __future__ import annotations

import numpy as np

from signet.watermark.gumbel import GumbelScheme
from signet.watermark.kgw import KgwScheme
from signet.watermark.lefthash import LefthashScheme

VOCABULARY_SIZE = 49_152


def watermarked_token_ids(scheme, length: int, rng: np.random.Generator, start: int = 1_000) -> list[int]:
    """``length`` tokens after ``start``, sampled from random logits with the scheme's watermark."""
    token_ids = [start]
    output: list[int] = []
    for _ in range(length):
        logits = rng.normal(size=VOCABULARY_SIZE).astype(np.float32) * 2.0
        if isinstance(scheme, GumbelScheme):
            contexts = scheme.generation_contexts([output])
            choice = int(np.argmax(logits + scheme.gumbel_noise(contexts, VOCABULARY_SIZE)[0]))
        else:
            choice = _biased_sample(logits + scheme.parameters.delta * _green(scheme, token_ids), rng)
        token_ids.append(choice)
        output.append(choice)
    return output


def _green(scheme, token_ids: list[int]) -> np.ndarray:
    if isinstance(scheme, LefthashScheme):
        return scheme.green_mask([token_ids[-1]])[0, :VOCABULARY_SIZE]
    assert isinstance(scheme, KgwScheme)
    width = scheme.parameters.context_width
    seeds = np.array(scheme.context_seeds([token_ids[-width:]]), dtype=np.uint32)[:, None]
    hashes = scheme.vocabulary_hashes(np.arange(VOCABULARY_SIZE, dtype=np.uint32))
    return scheme.green_mask(seeds, hashes)[0]


def _biased_sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return int(rng.choice(len(logits), p=probabilities))
