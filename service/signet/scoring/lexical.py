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

``ngram_novelty`` asks the same kind of question of a checked text against its evidence (a
source, or samples): which share of each sentence's n-grams the evidence never uses, the
"novel n-grams" measure of summarisation research. Unlike a frequency model's surprisal it
does not grow with the evidence's length, so scores of different texts compare.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable, Sequence

import numpy as np

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """rouge-score's default tokens: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    """The token list's n-grams; a list shorter than n is one gram of its own."""
    if len(tokens) < n:
        return [tuple(tokens)]
    return [tuple(tokens[index : index + n]) for index in range(len(tokens) - n + 1)]


def ngram_novelty(
    sentence_tokens: Sequence[Sequence[Hashable]], evidence_tokens: Sequence[Sequence[Hashable]], n: int = 2
) -> np.ndarray:
    """Per sentence: the share of its n-grams found in no evidence token list, in [0, 1].

    N-grams do not cross the boundaries of a token list (split evidence into sentences to
    keep them from joining two). A sentence with no tokens is an error.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if len(sentence_tokens) == 0:
        raise ValueError("sentence_tokens must hold at least one sentence")
    for index, tokens in enumerate(sentence_tokens):
        if len(tokens) == 0:
            raise ValueError(f"sentence {index} has no tokens")
    known = {gram for tokens in evidence_tokens if len(tokens) > 0 for gram in _ngrams(tokens, n)}
    novelty = []
    for tokens in sentence_tokens:
        grams = _ngrams(tokens, n)
        novelty.append(sum(gram not in known for gram in grams) / len(grams))
    return np.array(novelty, dtype=np.float64)


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
