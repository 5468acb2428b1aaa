"""The KGW red/green watermark (Kirchenbauer et al. 2023) on Signet's keyed PRF.

At each step the previous ``context_width`` tokens seed a PRF; a candidate token is
green when its PRF word falls below ``gamma * 2**32``. Generation adds ``delta`` to
green logits; detection counts green tokens. Both call ``uniform_word`` on the same
(seed, token hash) pair, so they cannot disagree about what is green.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field, SecretStr

from signet.watermark.evidence import TokenEvidence
from signet.watermark.prf import WORD_RANGE, PrfKey, Words, context_seed, token_hash, uniform_word
from signet.watermark.scheme import GenerationRow, KeyEntry, WatermarkScheme
from signet.watermark.statistics import BinomialNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "kgw"
_KEY_DOMAIN = b"signet-kgw-v1"
# Green masks kept for reuse, per process and across keys: 64 MiB is about 1,300 masks of
# a 49k vocabulary. Natural text repeats its frequent tokens constantly, and with context
# width 1 a mask depends only on the previous token.
GREEN_MASK_CACHE_BYTES = 64 * 1024 * 1024
DEVICE_ROWS_PER_PASS = 32  # apply_watermark_on_device's rows per pass


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


class KgwKey(KeyEntry):
    """Signet's own KGW watermark on a keyed counter-based PRF."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "secret"
    scheme: Literal["kgw"] = SCHEME_NAME
    secret: SecretStr = Field(min_length=16)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    context_width: int = Field(default=1, ge=1, le=8)

    def build_scheme(self, model_vocab_size: int | None) -> KgwScheme:
        parameters = KgwParameters(gamma=self.gamma, delta=self.delta, context_width=self.context_width)
        return KgwScheme(self.secret.get_secret_value().encode(), parameters)

    def public_parameters(self) -> dict[str, float | int]:
        return {"gamma": self.gamma, "delta": self.delta, "context_width": self.context_width}


class KgwScheme(WatermarkScheme):
    """One key's KGW watermark: green lists for generation, green counts for detection."""

    name = SCHEME_NAME
    counts_green = True

    def __init__(self, secret: bytes, parameters: KgwParameters) -> None:
        self.parameters = parameters
        self._key = PrfKey.from_secret(secret, _KEY_DOMAIN)
        # Per (vocab_size, device, numpy or torch): built once, since they depend only on the key.
        self._vocabulary_hashes: dict[tuple[int, torch.device, bool], Words] = {}

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

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Add ``delta`` to each row's green logits."""
        width = self.parameters.context_width
        contexts = [tuple(row.context(width)) for row in rows]
        for index, mask in zip(row_indices, self._green_masks(contexts, logits), strict=True):
            logits[index].add_(mask, alpha=self.parameters.delta)

    @property
    def device_context_width(self) -> int:
        return self.parameters.context_width

    def apply_watermark_on_device(
        self, logits: torch.Tensor, row_indices: torch.Tensor, contexts: torch.Tensor
    ) -> None:
        """Add ``delta`` to each row's green logits: seeds, masks and the sum all on the device.

        ``DEVICE_ROWS_PER_PASS`` rows at a time: the PRF's int64 temporaries take about 1.2 MB
        a row at 152k ids, 0.3 GB each for a batch of 256, memory vLLM's start-up profiling
        never reserved (no processor runs while it profiles).
        """
        seeds = context_seed(self._key, list(contexts.T))
        hashes = self._device_vocabulary_hashes(logits.shape[1], logits.device, as_torch=True)
        for start in range(0, len(row_indices), DEVICE_ROWS_PER_PASS):
            chunk = slice(start, start + DEVICE_ROWS_PER_PASS)
            green = self.green_mask(seeds[chunk].unsqueeze(1), hashes)
            logits.index_add_(0, row_indices[chunk], green.to(logits.dtype), alpha=self.parameters.delta)

    def _green_masks(self, contexts: list[tuple[int, ...]], logits: torch.Tensor) -> list[torch.Tensor]:
        """One boolean [V] green mask per context, from the cache or computed together."""
        cache_keys = [(self, logits.shape[1], logits.device, context) for context in contexts]
        masks = [_mask_cache.get(cache_key) for cache_key in cache_keys]
        missing = [position for position, mask in enumerate(masks) if mask is None]
        if missing:
            computed = self._compute_green_rows([contexts[position] for position in missing], logits)
            for position, mask in zip(missing, computed, strict=True):
                masks[position] = mask
                # A contiguous copy: a row view would keep its whole batch's array alive
                # after eviction, and the cache's byte bound would not hold.
                _mask_cache.put(cache_keys[position], mask.clone())
        return masks

    def _compute_green_rows(self, contexts: list[tuple[int, ...]], logits: torch.Tensor) -> torch.Tensor:
        """Boolean [rows, V] green masks on the logits' device."""
        import torch  # here, not at the top: the API process detects without torch installed

        seeds = self.context_seeds(contexts)
        hashes = self._device_vocabulary_hashes(logits.shape[1], logits.device)
        if logits.device.type == "cpu":
            return torch.from_numpy(self.green_mask(np.array(seeds, dtype=np.uint32)[:, None], hashes))
        return self.green_mask(torch.tensor(seeds, dtype=torch.int64, device=logits.device).unsqueeze(1), hashes)

    def _device_vocabulary_hashes(self, vocab_size: int, device: torch.device, as_torch: bool = False) -> Words:
        """The vocabulary hashes, built once: numpy uint32 on CPU (the same mix32 runs
        about 6x faster there than in int64 torch), int64 torch on accelerators or when
        ``as_torch`` asks for torch on the CPU too."""
        import torch  # here, not at the top: the API process detects without torch installed

        as_numpy = device.type == "cpu" and not as_torch
        cached = self._vocabulary_hashes.get((vocab_size, device, as_numpy))
        if cached is None:
            if as_numpy:
                vocabulary = np.arange(vocab_size, dtype=np.uint32)
            else:
                vocabulary = torch.arange(vocab_size, dtype=torch.int64, device=device)
            cached = self.vocabulary_hashes(vocabulary)
            self._vocabulary_hashes[(vocab_size, device, as_numpy)] = cached
        return cached

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


class _GreenMaskCache:
    """Least-recently-used boolean masks keyed by (scheme, vocab_size, device, context tokens).

    One per process, whatever the number of keys, so that its byte bound is the process's.
    """

    def __init__(self, max_bytes: int) -> None:
        self._masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            mask = self._masks.get(key)
            if mask is not None:
                self._masks.move_to_end(key)
            return mask

    def put(self, key: tuple, mask: torch.Tensor) -> None:
        with self._lock:
            if key in self._masks:
                return
            self._masks[key] = mask
            self._bytes += mask.numel()
            while self._bytes > self._max_bytes:
                _, evicted = self._masks.popitem(last=False)
                self._bytes -= evicted.numel()


_mask_cache = _GreenMaskCache(GREEN_MASK_CACHE_BYTES)


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
