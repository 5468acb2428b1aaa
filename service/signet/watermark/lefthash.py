"""KGW "lefthash": the red/green watermark of Hugging Face transformers, TGI and lm-watermarking.

This is the reference implementations' ``WatermarkingConfig(seeding_scheme="lefthash")``
(lm-watermarking's ``simple_1``), reproduced bit for bit so that text watermarked by
any of them is detected here and vice versa. For a previous token ``p`` they seed a
CPU ``torch.Generator`` with ``hashing_key * p`` and take the first
``int(vocab_size * gamma)`` entries of ``torch.randperm(vocab_size)`` as the green list.

We compute the same green lists without torch, in numba (``randperm.py``). torch's
CPU ``randperm(n)`` (for ``n < 2**32 / 20``) is a Fisher-Yates shuffle over mt19937:
``r = arange(n)``, then for each step ``i`` it draws ``j = i + random32() % (n - i)``
and swaps ``r[i]`` and ``r[j]``. Step ``i`` settles ``r[i]`` for good, so the green list
``r[:k]`` depends only on the first ``k`` draws, and one token's colour can be decided
by following it through those ``k`` swaps without shuffling anything else.

* **Detection** follows each scored token through its previous token's draws: about
  4.5 us a previous token at gamma 0.25 over 49,152 ids (the draws are made once for all
  the tokens after it; 12,288 mt19937 words and remainders are most of it). Nothing is
  filled at start, so a key costs no start-up time, and at most 24 MiB (below).
* **Generation** needs whole green lists: about 42 us each, against about 180 us for a
  single-threaded ``torch.randperm``. They are cached per previous token, bit-packed, in
  a bounded LRU (24 MiB by default, about 4,000 rows of a 49,152-token vocabulary; all a
  key holds stays within 32 MiB whatever the vocabulary), which detection also reads.
* **Detection caches the frequent rows too**, in the same LRU: a previous token that
  keeps coming back earns its whole row (``_admit_frequent``), so a busy process answers
  most tokens from the cache without having filled anything at start.

An earlier version kept every green list of a key (302 MB for 49,152 ids) and filled it
at start, about 8 s per key; drawing cold in numpy cost 150 us a previous token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from signet.watermark.evidence import TokenEvidence
from signet.watermark.kgw import first_occurrences
from signet.watermark.randperm import MT19937_SEED_MASK, PartialRandperm
from signet.watermark.scheme import GenerationRow, KeyEntry, WatermarkScheme
from signet.watermark.statistics import BinomialNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "kgw-lefthash"
DEFAULT_HASHING_KEY = 15485863  # the millionth prime: transformers', TGI's and lm-watermarking's default
# Green lists cached for generation and for detection's frequent previous tokens: 4,085
# rows of a 49,152-token vocabulary (6 KiB and 16 bytes of bookkeeping each). A decode
# step needs one row per sequence.
DEFAULT_CACHE_BYTES = 24 * 2**20
# All a key may hold, bookkeeping included (issue 20): the rows get what the per-token
# arrays leave, so even a 2**22-token vocabulary stays within it.
MAX_KEY_BYTES = 32 * 2**20
# Detection caches a previous token's green list on its 4th detection without one, at most
# 64 lists per call (2.7 ms at 49,152 ids), and at most 16 MiB of unpacked rows per call
# (4 rows of a 2**22-token vocabulary): see LefthashScheme._admit_frequent.
ADMIT_AFTER = 4
MAX_ADMITTED_PER_CALL = 64
_MAX_ADMITTED_BYTES = 16 * 2**20
# A cached row's bookkeeping besides its bytes: its token (int64) and its last use (int64).
ROW_BOOKKEEPING_BYTES = 16

# transformers reduces the seed modulo 2**64 - 1 (not 2**64) before torch sees it.
_SEED_MODULUS = 2**64 - 1
# Above ~2**32 / 20 torch's randperm switches to another shuffle; real vocabularies are
# far below this bound, and staying below it keeps every index in int32.
MAX_VOCAB_SIZE = 2**24
_BITS_PER_BYTE = 8


@dataclass(frozen=True)
class LefthashParameters:
    # transformers: the model config's vocab_size; lm-watermarking: len(tokenizer); TGI: the logits' width.
    vocab_size: int
    gamma: float = 0.25
    delta: float = 2.0
    hashing_key: int = field(default=DEFAULT_HASHING_KEY, repr=False)  # the secret: kept out of logs

    def __post_init__(self) -> None:
        if not 1 <= self.vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"vocab_size must lie between 1 and {MAX_VOCAB_SIZE}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie strictly between 0 and 1")
        if self.greenlist_size < 1:
            raise ValueError("vocab_size * gamma must be at least 1")
        if self.delta < 0.0:
            raise ValueError("delta must not be negative")
        if not 0 <= self.hashing_key < 2**64:
            raise ValueError("hashing_key must be a 64-bit unsigned integer, as torch.Generator.manual_seed takes")

    @property
    def greenlist_size(self) -> int:
        """Green tokens per previous token, truncated exactly as the reference implementations do."""
        return int(self.vocab_size * self.gamma)

    @property
    def packed_row_bytes(self) -> int:
        """Bytes of one green list stored one bit per vocabulary entry."""
        return -(-self.vocab_size // _BITS_PER_BYTE)


def mt19937_seed(hashing_key: int, previous_token: int) -> int:
    """The 32-bit mt19937 seed that transformers' ``WatermarkLogitsProcessor`` ends up using.

    TGI and lm-watermarking seed with ``hashing_key * previous_token`` unreduced; that is
    the same seed whenever the product stays below ``2**64 - 1``, as it does for the
    default key and any real vocabulary.
    """
    return (hashing_key * previous_token) % _SEED_MODULUS & MT19937_SEED_MASK


class LefthashKey(KeyEntry):
    """Hugging Face transformers' / TGI's / lm-watermarking's ``lefthash`` (``simple_1``)."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "hashing_key"
    scheme: Literal["kgw-lefthash"]
    # Not a SecretStr because peers configure it as an integer; repr=False keeps it
    # out of logs and tracebacks all the same.
    hashing_key: int = Field(default=DEFAULT_HASHING_KEY, ge=0, lt=2**63, repr=False)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    vocab_size: int | None = Field(
        default=None, ge=2, le=2**22, description="The randperm size; unset: the served model's vocabulary size."
    )

    @property
    def needs_model_vocab_size(self) -> bool:
        return self.vocab_size is None

    def secret_bits(self) -> float:
        # The default is published (transformers, TGI, lm-watermarking): no guess needed.
        return 0.0 if self.hashing_key == DEFAULT_HASHING_KEY else super().secret_bits()

    def build_scheme(self, model_vocab_size: int | None) -> LefthashScheme:
        vocab_size = self.vocab_size or model_vocab_size
        if vocab_size is None:
            raise ValueError("vocab_size is needed when no model is loaded")
        parameters = LefthashParameters(
            vocab_size=vocab_size, gamma=self.gamma, delta=self.delta, hashing_key=self.hashing_key
        )
        return LefthashScheme(parameters)

    def public_parameters(self) -> dict[str, float | int]:
        return {"gamma": self.gamma, "delta": self.delta, "context_width": LefthashScheme.context_width}


class LefthashScheme(WatermarkScheme):
    """One hashing key's lefthash watermark: green masks for generation, green flags for detection."""

    name = SCHEME_NAME
    counts_green = True
    context_width = 1

    def __init__(self, parameters: LefthashParameters, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.parameters = parameters
        self._randperm = PartialRandperm(parameters.vocab_size, parameters.greenlist_size)
        # cache_bytes pays for rows with their bookkeeping; the per-token arrays (the cache's
        # slot, int32, and the sightings, uint8) come out of MAX_KEY_BYTES first.
        room = min(cache_bytes, MAX_KEY_BYTES - 5 * parameters.vocab_size)
        self._cache = _PackedGreenlistCache(
            vocab_size=parameters.vocab_size,
            row_bytes=parameters.packed_row_bytes,
            capacity=max(room, 0) // (parameters.packed_row_bytes + ROW_BOOKKEEPING_BYTES),
        )
        # Detections each previous token went without a cached row, up to ADMIT_AFTER (_admit_frequent).
        self._sightings = np.zeros(parameters.vocab_size, dtype=np.uint8)

    def __repr__(self) -> str:
        return f"LefthashScheme({self.parameters}, hashing_key=<redacted>)"

    # Generation -------------------------------------------------------------------

    def green_mask(self, previous_tokens: Sequence[int]) -> np.ndarray:
        """Boolean [rows, vocab_size]: row r is green where ``previous_tokens[r]`` seeds it."""
        tokens = np.asarray(previous_tokens, dtype=np.int64).reshape(-1)
        distinct_tokens, row_of_token = np.unique(tokens, return_inverse=True)
        packed = self._packed_greenlists(distinct_tokens)
        unpacked = np.unpackbits(packed, axis=1, count=self.parameters.vocab_size, bitorder="little")
        return unpacked.view(bool)[row_of_token]

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Add ``delta`` to the green logits of each row's previous token."""
        import torch  # here, not at the top: the API process detects without torch installed

        previous_tokens = [row.context(self.context_width)[0] for row in rows]
        # The permutation covers vocab_size ids; logits may be wider (padded) or,
        # with a key made for another model, narrower.
        width = min(self.parameters.vocab_size, logits.shape[1])
        masks = torch.from_numpy(self.green_mask(previous_tokens)[:, :width]).to(logits.device)
        for position, index in enumerate(row_indices):
            logits[index, :width].add_(masks[position], alpha=self.parameters.delta)

    def prewarm(self) -> None:
        """Load the compiled kernels (about 1 s, once per process), so the first request does not wait.

        Nothing is drawn per key: detection needs no table, and generation caches the
        rows it uses.
        """
        self._randperm.in_greenlists(np.zeros(1), np.array([0, 1]), np.zeros(1))

    @property
    def cache_capacity(self) -> int:
        """Green lists the cache holds."""
        return self._cache.capacity

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> BinomialNull:
        return BinomialNull(self.parameters.gamma)

    @property
    def vocab_size(self) -> int:
        """The permutation's size: the token ids this key's green lists cover."""
        return self.parameters.vocab_size

    def evidence(self, token_ids: Sequence[int] | np.ndarray, ignore_repeated_ngrams: bool = True) -> TokenEvidence:
        """Green (1.0) or red (0.0) for every token after the first, as transformers' ``WatermarkDetector`` scores.

        With ``ignore_repeated_ngrams`` only the first occurrence of each (previous token,
        token) bigram is scored, which makes ``num_scored_tokens`` and ``score_sum`` the
        detector's ``num_tokens_scored`` and ``num_green_tokens`` (its own default is False).
        The detector also drops a leading BOS token before scoring; callers must do the same.
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        scores = np.zeros(len(ids), dtype=np.float64)
        is_scored = np.zeros(len(ids), dtype=bool)
        if len(ids) > self.context_width:
            previous_tokens, targets = ids[:-1], ids[1:]
            if ignore_repeated_ngrams:
                is_scored[1:] = first_occurrences(np.stack([previous_tokens, targets], axis=1))
            else:
                is_scored[1:] = True
            scores[1:] = self._is_green(previous_tokens, targets) & is_scored[1:]
        return TokenEvidence(scores=scores, is_scored=is_scored)

    # Green lists ------------------------------------------------------------------

    def _is_green(self, previous_tokens: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """For each position, whether ``targets[i]`` is in ``previous_tokens[i]``'s green list."""
        # The reference tests `target in greenlist_ids`: ids outside the vocabulary are red.
        in_vocabulary = (targets >= 0) & (targets < self.parameters.vocab_size)
        targets = np.where(in_vocabulary, targets, 0)
        green, was_cached = self._cached_bits(previous_tokens, targets)
        missing = np.flatnonzero(~was_cached & in_vocabulary)
        if len(missing) and self._admit_frequent(previous_tokens[missing]):
            green[missing], was_cached[missing] = self._cached_bits(previous_tokens[missing], targets[missing])
            missing = missing[~was_cached[missing]]
        if len(missing):
            green[missing] = self._follow(previous_tokens[missing], targets[missing])
        return green & in_vocabulary

    def _cached_bits(self, previous_tokens: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each target's bit in its previous token's cached row (False where none), and which rows were cached."""
        packed_bytes, was_cached = self._cache.read_bytes(previous_tokens, targets // _BITS_PER_BYTE)
        return ((packed_bytes >> (targets % _BITS_PER_BYTE).astype(np.uint8)) & 1).astype(bool), was_cached

    def _admit_frequent(self, previous_tokens: np.ndarray) -> bool:
        """Draw and cache the green lists of previous tokens that keep coming back; whether any was.

        A whole list costs about nine follows (42 us against about 4.5 us a previous token),
        so a previous token earns one on its ``ADMIT_AFTER``-th detection without it. In
        text, previous tokens are Zipf-distributed: the rows that pass are the frequent
        ones, and a detecting process converges on them without a table filled at start.
        At most ``MAX_ADMITTED_PER_CALL`` rows (and 16 MiB of unpacked rows) are drawn per
        call, so a text made of many distinct tokens cannot make one request draw thousands
        of rows. An admitted token starts counting again: if its row is evicted, it must
        earn it anew, so texts that name every token cannot keep the cache churning.
        """
        if self._cache.capacity == 0:
            return False
        limit = min(MAX_ADMITTED_PER_CALL, self._cache.capacity, max(1, _MAX_ADMITTED_BYTES // self.vocab_size))
        distinct_tokens = np.unique(previous_tokens)
        distinct_tokens = distinct_tokens[(distinct_tokens >= 0) & (distinct_tokens < self.parameters.vocab_size)]
        # Unlocked: a lost increment between threads only delays an admission.
        sightings = self._sightings[distinct_tokens].astype(np.int64) + 1
        self._sightings[distinct_tokens] = np.minimum(sightings, ADMIT_AFTER)
        due = distinct_tokens[sightings >= ADMIT_AFTER][:limit]
        if len(due) == 0:
            return False
        self._sightings[due] = 0
        self._draw_and_cache(due)
        return True

    def _follow(self, previous_tokens: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether each target is green, following it through its previous token's draws.

        Each distinct (previous token, target) pair is followed once, so a text that
        repeats one bigram costs one follow, not one per position: the work stays in
        proportion to the distinct bigrams, which is what the detection budget charges.
        Pairs are grouped by previous token so that each one's draws are made once.
        """
        distinct_tokens, token_index = np.unique(previous_tokens, return_inverse=True)
        # Targets lie in [0, vocab_size) here, so this numbers each distinct pair, sorted by previous token.
        pairs, pair_of_position = np.unique(token_index * self.vocab_size + targets, return_inverse=True)
        group_starts = np.searchsorted(pairs // self.vocab_size, np.arange(len(distinct_tokens) + 1))
        green_pairs = self._randperm.in_greenlists(self._seeds(distinct_tokens), group_starts, pairs % self.vocab_size)
        return green_pairs[pair_of_position]

    def _packed_greenlists(self, distinct_tokens: np.ndarray) -> np.ndarray:
        """uint8 [len(distinct_tokens), packed_row_bytes], from the cache where possible."""
        packed, was_cached = self._cache.read_rows(distinct_tokens)
        if not was_cached.all():
            missing = np.flatnonzero(~was_cached)
            packed[missing] = self._draw_and_cache(distinct_tokens[missing])
        return packed

    def _draw_and_cache(self, distinct_tokens: np.ndarray) -> np.ndarray:
        """Draw the packed green lists of tokens not in the cache, and cache them."""
        is_green = self._randperm.greenlist_rows(self._seeds(distinct_tokens))
        packed = np.packbits(is_green, axis=1, bitorder="little")
        self._cache.write_rows(distinct_tokens, packed)
        return packed

    def _seeds(self, previous_tokens: np.ndarray) -> np.ndarray:
        """uint64: the mt19937 seed of each previous token, as ``mt19937_seed`` computes it."""
        key = self.parameters.hashing_key
        if len(previous_tokens) and previous_tokens.min() >= 0 and key * int(previous_tokens.max()) < _SEED_MODULUS:
            # No product reaches the modulus, so none is reduced: numpy's exact uint64
            # products give the same seeds without a Python call per token (387 previous
            # tokens: 3.6 us against 35 us).
            return previous_tokens.astype(np.uint64) * np.uint64(key) & np.uint64(MT19937_SEED_MASK)
        # Python integers: the product passes 2**64 (a large key), or a token is negative
        return np.array([mt19937_seed(key, token) for token in previous_tokens.tolist()], dtype=np.uint64)


class _PackedGreenlistCache:
    """A bounded LRU of bit-packed green lists, keyed by previous token, safe across threads.

    Rows live in one preallocated slab and are found through a dense token -> slot
    array, so a whole text's lookups are a few vectorised gathers rather than a dict
    lookup per token. Recency is a per-slot tick; eviction takes the oldest slots.
    Callers get copies, never views, so a later eviction cannot change what they read.
    """

    def __init__(self, vocab_size: int, row_bytes: int, capacity: int) -> None:
        self.capacity = max(capacity, 0)
        self._vocab_size = vocab_size
        self._lock = threading.Lock()
        self._row_bytes = row_bytes
        # Allocated on the first write: a process that never generates nor sees a previous token
        # come back holds none, and a fresh scheme costs no 24 MiB allocation (0.9 ms, measured).
        self._rows: np.ndarray | None = None
        self._slot_of_token = np.full(vocab_size, -1, dtype=np.int32)
        self._token_of_slot = np.full(self.capacity, -1, dtype=np.int64)
        self._last_used = np.zeros(self.capacity, dtype=np.int64)
        self._num_used_slots = 0
        self._tick = 0

    def __len__(self) -> int:
        return self._num_used_slots

    @property
    def max_bytes(self) -> int:
        """The most memory the cache can hold: the full slab and its bookkeeping."""
        bookkeeping = self._slot_of_token.nbytes + self._token_of_slot.nbytes + self._last_used.nbytes
        return self.capacity * self._row_bytes + bookkeeping

    def read_bytes(self, tokens: np.ndarray, byte_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Byte ``byte_columns[i]`` of token i's row (0 where uncached), and which tokens were cached."""
        packed_bytes = np.zeros(len(tokens), dtype=np.uint8)
        with self._lock:
            slots, was_cached = self._touch(tokens)
            if self._rows is not None:
                packed_bytes[was_cached] = self._rows[slots[was_cached], byte_columns[was_cached]]
        return packed_bytes, was_cached

    def read_rows(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the tokens' rows (zeros where uncached), and which tokens were cached."""
        rows = np.zeros((len(tokens), self._row_bytes), dtype=np.uint8)
        with self._lock:
            slots, was_cached = self._touch(tokens)
            if self._rows is not None:
                rows[was_cached] = self._rows[slots[was_cached]]
        return rows, was_cached

    def write_rows(self, distinct_tokens: np.ndarray, rows: np.ndarray) -> None:
        """Cache rows for distinct tokens, evicting the least recently used rows when full."""
        storable = (distinct_tokens >= 0) & (distinct_tokens < self._vocab_size)
        tokens, rows = distinct_tokens[storable], rows[storable]
        if self.capacity == 0:
            return
        with self._lock:
            is_new = self._slot_of_token[tokens] < 0  # another thread may have cached some meanwhile
            tokens, rows = tokens[is_new][-self.capacity :], rows[is_new][-self.capacity :]
            if len(tokens) == 0:
                return
            if self._rows is None:
                self._rows = np.zeros((self.capacity, self._row_bytes), dtype=np.uint8)
            self._tick += 1
            slots = self._free_slots(len(tokens))
            self._slot_of_token[tokens] = slots
            self._token_of_slot[slots] = tokens
            self._last_used[slots] = self._tick
            self._rows[slots] = rows

    def _touch(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots of cached tokens (marked as just used) and the cached mask. Hold the lock."""
        in_vocabulary = (tokens >= 0) & (tokens < self._vocab_size)
        slots = np.where(in_vocabulary, self._slot_of_token[np.where(in_vocabulary, tokens, 0)], -1)
        was_cached = slots >= 0
        self._tick += 1
        self._last_used[slots[was_cached]] = self._tick
        return slots, was_cached

    def _free_slots(self, count: int) -> np.ndarray:
        """``count`` (<= capacity) slots to overwrite: unused first, then least recently used. Hold the lock."""
        num_unused = min(count, self.capacity - self._num_used_slots)
        unused = np.arange(self._num_used_slots, self._num_used_slots + num_unused)
        self._num_used_slots += num_unused
        num_evicted = count - num_unused
        if num_evicted == 0:
            return unused
        self._last_used[unused] = self._tick  # so that eviction cannot hand them out a second time
        evicted = np.argpartition(self._last_used, num_evicted - 1)[:num_evicted]
        self._slot_of_token[self._token_of_slot[evicted]] = -1
        return np.concatenate([unused, evicted])
