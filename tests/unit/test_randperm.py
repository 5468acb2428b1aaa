"""The randperm kernels against torch.randperm itself: every colour, on many seeds.

Small vocabularies make every case frequent: tokens below and above the green list's
size, positions moved more than once, groups of many tokens with repeats, k close to n.
"""

import numpy as np
import pytest
import torch

from signet.watermark.randperm import PartialRandperm

RANDOM = np.random.default_rng(20)


def _torch_green(seed: int, vocab_size: int, greenlist_size: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    green = np.zeros(vocab_size, dtype=bool)
    green[torch.randperm(vocab_size, generator=generator)[:greenlist_size].numpy()] = True
    return green


@pytest.mark.parametrize(("vocab_size", "greenlist_size"), [(7, 1), (50, 12), (50, 49), (1_000, 250), (1_003, 501)])
def test_in_greenlists_and_greenlist_rows_equal_torch_randperm(vocab_size, greenlist_size):
    randperm = PartialRandperm(vocab_size, greenlist_size)
    seeds = np.concatenate([[0, 2**32 - 1], RANDOM.integers(0, 2**32, 60)]).astype(np.uint64)
    expected = np.stack([_torch_green(int(seed), vocab_size, greenlist_size) for seed in seeds])
    np.testing.assert_array_equal(randperm.greenlist_rows(seeds), expected)
    # Groups of 0 to 40 tokens each, repeats included, every token of the vocabulary likely.
    sizes = RANDOM.integers(0, 41, len(seeds))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    tokens = RANDOM.integers(0, vocab_size, starts[-1])
    group = np.repeat(np.arange(len(seeds)), sizes)
    np.testing.assert_array_equal(randperm.in_greenlists(seeds, starts, tokens), expected[group, tokens])
