"""Lexical similarity between sampled answers: mean pairwise ROUGE-L F1.

LM-Polygraph's LexicalSimilarity (Fomicheva et al. 2020; metric "rougeL") scores a prompt
by the mean ROUGE-L F-measure over all pairs of sampled answers and reports its negative
as the uncertainty. ``lexical_similarity`` returns the mean similarity itself, in [0, 1]:
1 when all samples are the same token sequence, lower when they diverge.

ROUGE-L (Lin 2004) of a candidate c against a reference r, through their longest common
subsequence (LCS): precision = LCS / |c|, recall = LCS / |r|, F1 = 2 P R / (P + R)
= 2 LCS / (|c| + |r|); it is symmetric, so the order of a pair does not matter, and 0 when
either side is empty (as rouge-score returns). Tokens are compared as given: rouge-score's
default lowercasing, punctuation stripping and Porter stemming are the tokenizer's job.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable, Sequence

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """rouge-score's default tokens: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def lcs_length(first: Sequence[Hashable], second: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence, by the bit-parallel recurrence (Hyyrö 2004).

    After a prefix of ``second`` has been read, bit i of ``unmatched`` is 0 exactly where
    the LCS with that prefix grows by one as ``first[i]`` is added (the textbook table's
    row of 0/1 steps, complemented), so the LCS is the number of zero bits. Each token of
    ``second`` updates all |first| bits in a few big-integer operations: a pair costs
    O(|first| |second| / 64) machine words instead of O(|first| |second|) Python steps.
    """
    positions: dict[Hashable, int] = {}
    for index, token in enumerate(first):
        positions[token] = positions.get(token, 0) | (1 << index)
    all_bits = (1 << len(first)) - 1
    unmatched = all_bits
    for token in second:
        matches = unmatched & positions.get(token, 0)
        unmatched = ((unmatched + matches) | (unmatched - matches)) & all_bits
    return len(first) - unmatched.bit_count()


def rouge_l_f1(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """ROUGE-L F1 of two token sequences: ``2 LCS / (|first| + |second|)``; 0 if either is empty."""
    if len(first) == 0 or len(second) == 0:
        return 0.0
    return 2.0 * lcs_length(first, second) / (len(first) + len(second))


def lexical_similarity(sample_tokens: Sequence[Sequence[Hashable]]) -> float:
    """Mean ROUGE-L F1 over all N (N - 1) / 2 pairs of samples (N >= 2)."""
    if len(sample_tokens) < 2:
        raise ValueError(f"lexical similarity needs at least 2 samples, got {len(sample_tokens)}")
    pairs = list(itertools.combinations(sample_tokens, 2))
    return sum(rouge_l_f1(first, second) for first, second in pairs) / len(pairs)
