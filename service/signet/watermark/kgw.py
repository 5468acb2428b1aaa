"""The KGW red/green watermark (Kirchenbauer et al. 2023) on Signet's keyed PRF.

At each step the previous ``context_width`` tokens seed a PRF; a candidate token is
green when its PRF word falls below ``gamma * 2**32``. Generation adds ``delta`` to
green logits; detection counts green tokens. Both call ``uniform_word`` on the same
(seed, token hash) pair, so they cannot disagree about what is green.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from signet.watermark.evidence import TokenEvidence
from signet.watermark.prf import WORD_RANGE, PrfKey, Words, context_seed, token_hash, uniform_word
from signet.watermark.statistics import BinomialNull

SCHEME_NAME = "kgw"
_KEY_DOMAIN = b"signet-kgw-v1"


@dataclass(frozen=True)
class KgwParameters:
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie strictly between 0 and 1")
        if self.delta < 0.0:
            raise ValueError("delta must not be negative")
        if self.context_width < 1:
            raise ValueError("context_width must be at least 1")

    @property
    def green_threshold(self) -> int:
        """Words below this are green: P(green) = gamma up to 2**-32.

        Clamped to 32 bits so it compares with uint32 arrays as well as int64 ones.
        """
        return min(round(self.gamma * WORD_RANGE), WORD_RANGE - 1)


class KgwScheme:
    """One key's KGW watermark: green lists for generation, green counts for detection."""

    name = SCHEME_NAME

    def __init__(self, secret: bytes, parameters: KgwParameters) -> None:
        self.parameters = parameters
        self._key = PrfKey.from_secret(secret, _KEY_DOMAIN)

    def __repr__(self) -> str:
        return f"KgwScheme({self.parameters}, key=<redacted>)"

    # Generation -------------------------------------------------------------------

    def context_seeds(self, contexts: Sequence[Sequence[int]]) -> list[int]:
        """One seed per row from its last ``context_width`` tokens (Python ints: cheap)."""
        width = self.parameters.context_width
        return [context_seed(self._key, list(context[-width:])) for context in contexts]

    def vocabulary_hashes(self, vocabulary_ids: Words) -> Words:
        """Token hashes of a whole vocabulary, given ``arange(V)`` (torch int64 or numpy
        uint32; the result has the same type). Callers cache it: it depends only on the key."""
        return token_hash(self._key, vocabulary_ids)

    def green_mask(self, seeds_column: Words, vocabulary_hashes: Words) -> Words:
        """Boolean [rows, V] green mask from seeds shaped [rows, 1] and hashes [V].

        Both as int64 (torch or numpy), or both as numpy uint32 (the fast CPU path).
        """
        return uniform_word(seeds_column, vocabulary_hashes) < self.parameters.green_threshold

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> BinomialNull:
        return BinomialNull(self.parameters.gamma)

    def evidence(self, token_ids: Sequence[int] | np.ndarray, ignore_repeated_ngrams: bool = True) -> TokenEvidence:
        """Green flags for every token that has a full context before it."""
        ids = np.asarray(token_ids, dtype=np.int64)
        width = self.parameters.context_width
        num_positions = max(len(ids) - width, 0)
        context_columns = [ids[offset : offset + num_positions] for offset in range(width)]
        targets = ids[width : width + num_positions]
        seeds = context_seed(self._key, context_columns)
        is_green = np.asarray(self.green_mask(seeds, token_hash(self._key, targets)), dtype=bool)
        if ignore_repeated_ngrams:
            is_counted = first_occurrences(np.stack([*context_columns, targets], axis=1))
        else:
            is_counted = np.ones(num_positions, dtype=bool)
        return padded_evidence(len(ids), is_green, is_counted)


def padded_evidence(num_tokens: int, is_green: np.ndarray, is_counted: np.ndarray) -> TokenEvidence:
    """Evidence for KGW-family flags that start after the first ``num_tokens - len(is_green)`` tokens."""
    scores = np.zeros(num_tokens, dtype=np.float64)
    is_scored = np.zeros(num_tokens, dtype=bool)
    offset = num_tokens - len(is_green)
    scores[offset:] = np.where(is_counted & is_green, 1.0, 0.0)
    is_scored[offset:] = is_counted
    return TokenEvidence(scores=scores, is_scored=is_scored)


def first_occurrences(rows: np.ndarray) -> np.ndarray:
    """True where a row of ``rows`` (token ids, -1 allowed) has not appeared earlier.

    Each row packs losslessly into one scalar, and a 1-D ``np.unique`` on those is
    much faster than ``np.unique(axis=0)``: into one uint64 when the ids are small
    enough to share 64 bits (vocabularies under 65,535 ids, contexts up to 4 wide),
    else into a void scalar of 32 bits per id.
    """
    is_first = np.zeros(len(rows), dtype=bool)
    if len(rows) == 0:
        return is_first
    _, first_index = np.unique(_packed_rows(rows), return_index=True)
    is_first[first_index] = True
    return is_first


def _packed_rows(rows: np.ndarray) -> np.ndarray:
    bits_per_id = 64 // rows.shape[1]
    shifted = rows.astype(np.int64) + 1  # -1 (no token) becomes 0
    if bits_per_id < 64 and int(shifted.max()) < (1 << bits_per_id) and int(shifted.min()) >= 0:
        packed = np.zeros(len(rows), dtype=np.uint64)
        for column in range(rows.shape[1]):
            packed |= shifted[:, column].astype(np.uint64) << np.uint64(bits_per_id * column)
        return packed
    return np.ascontiguousarray(rows.astype(np.uint32)).view(np.dtype((np.void, 4 * rows.shape[1]))).ravel()
