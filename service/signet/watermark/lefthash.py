"""KGW "lefthash": the red/green watermark of Hugging Face transformers, TGI and lm-watermarking.

This is the reference implementations' ``WatermarkingConfig(seeding_scheme="lefthash")``
(lm-watermarking's ``simple_1``), reproduced bit for bit so that text watermarked by
any of them is detected here and vice versa. For a previous token ``p`` they seed a
CPU ``torch.Generator`` with ``hashing_key * p`` and take the first
``int(vocab_size * gamma)`` entries of ``torch.randperm(vocab_size)`` as the green list.

We compute the same green lists without torch. torch's CPU ``randperm(n)`` (for
``n < 2**32 / 20``) is a Fisher-Yates shuffle over mt19937: ``r = arange(n)``, then for
each step ``i`` it draws ``j = i + random32() % (n - i)`` and swaps ``r[i]`` and ``r[j]``.
Step ``i`` settles ``r[i]`` for good (later steps only touch positions above it), so
the green list ``r[:k]`` depends only on the first ``k`` draws. torch seeds mt19937
from the low 32 bits of the seed exactly as numpy's legacy ``RandomState.seed`` does,
so numpy reproduces the draws, and ``_greenlist_from_draws`` replays the ``k`` swaps
with whole-array operations; the tests check it against torch and transformers on many
seeds. Per green list of a 49,152-token vocabulary this takes about 150 us at gamma
0.25 and 310 us at gamma 0.5, against about 180 us for a single-threaded
``torch.randperm`` (which shuffles all n entries whatever gamma is). We use it anyway
because torch's default multi-threaded ``randperm`` slows down 5-20x when other
processes (vLLM) keep the cores busy, while numpy's single thread only loses its
share of the CPU; and it keeps torch out of detection.

Green lists are cached per previous token, bit-packed, in a bounded LRU, so detection
draws each distinct previous token's list at most once and generation rarely at all.
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
from signet.watermark.scheme import GenerationRow, KeyEntry, WatermarkScheme
from signet.watermark.statistics import BinomialNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "kgw-lefthash"
DEFAULT_HASHING_KEY = 15485863  # the millionth prime: transformers', TGI's and lm-watermarking's default
# A 49,152-token vocabulary's complete greenlist table is 49,152 rows of 6 KiB: 302 MB.
# Holding all of it means detection never draws a greenlist once warmed; larger
# vocabularies keep their most recently used rows within this budget.
DEFAULT_CACHE_BYTES = 320 * 2**20

# transformers reduces the seed modulo 2**64 - 1 (not 2**64) before torch sees it.
_SEED_MODULUS = 2**64 - 1
# torch's mt19937 keeps only the low 32 bits of its seed.
_MT19937_SEED_MASK = 0xFFFFFFFF
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
    return (hashing_key * previous_token) % _SEED_MODULUS & _MT19937_SEED_MASK


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
        self._steps = np.arange(parameters.greenlist_size, dtype=np.int32)
        # Fisher-Yates step i draws modulo the n - i entries not yet settled.
        self._draw_moduli = (parameters.vocab_size - self._steps).astype(np.uint32)
        self._cache = _PackedGreenlistCache(
            vocab_size=parameters.vocab_size,
            row_bytes=parameters.packed_row_bytes,
            capacity=cache_bytes // parameters.packed_row_bytes,
        )

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

    def prewarm(self, previous_tokens: Sequence[int] | None = None, chunk: int = 256) -> None:
        """Draw and cache green lists before requests need them (seconds: run it in a thread).

        By default the ids the cache can hold, lowest first: in BPE vocabularies low ids
        are the early, frequent merges, so later requests mostly hit.
        """
        if previous_tokens is None:
            previous_tokens = range(min(self._cache.capacity, self.parameters.vocab_size))
        tokens = np.asarray(previous_tokens, dtype=np.int64)[: self._cache.capacity]
        for start in range(0, len(tokens), chunk):
            self._packed_greenlists(np.unique(tokens[start : start + chunk]))

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
        byte_columns = np.where(in_vocabulary, targets, 0) // _BITS_PER_BYTE
        packed_bytes, was_cached = self._cache.read_bytes(previous_tokens, byte_columns)
        if not was_cached.all():
            missing = np.flatnonzero(~was_cached)
            distinct_tokens, row_of_token = np.unique(previous_tokens[missing], return_inverse=True)
            packed = self._draw_and_cache(distinct_tokens)
            packed_bytes[missing] = packed[row_of_token, byte_columns[missing]]
        bits = (packed_bytes >> (targets % _BITS_PER_BYTE).astype(np.uint8)) & 1
        return bits.astype(bool) & in_vocabulary

    def _packed_greenlists(self, distinct_tokens: np.ndarray) -> np.ndarray:
        """uint8 [len(distinct_tokens), packed_row_bytes], from the cache where possible."""
        packed, was_cached = self._cache.read_rows(distinct_tokens)
        if not was_cached.all():
            missing = np.flatnonzero(~was_cached)
            packed[missing] = self._draw_and_cache(distinct_tokens[missing])
        return packed

    def _draw_and_cache(self, distinct_tokens: np.ndarray) -> np.ndarray:
        """Draw the packed green lists of tokens not in the cache, and cache them."""
        packed = np.empty((len(distinct_tokens), self.parameters.packed_row_bytes), dtype=np.uint8)
        bit_generator, legacy_seeding = _thread_mt19937()
        for row, token in enumerate(distinct_tokens.tolist()):
            legacy_seeding.seed(mt19937_seed(self.parameters.hashing_key, token))
            draws = bit_generator.random_raw(self.parameters.greenlist_size).astype(np.uint32)
            is_green = _greenlist_from_draws(draws, self._draw_moduli, self._steps, self.parameters.vocab_size)
            packed[row] = np.packbits(is_green, bitorder="little")
        self._cache.write_rows(distinct_tokens, packed)
        return packed


_per_thread = threading.local()


def _thread_mt19937() -> tuple[np.random.MT19937, np.random.RandomState]:
    """This thread's mt19937 and the legacy front end whose ``seed`` seeds it as torch does.

    One per thread because reseeding a shared generator would race, and building one
    costs about as much as drawing a green list.
    """
    if not hasattr(_per_thread, "mt19937"):
        bit_generator = np.random.MT19937(0)
        _per_thread.mt19937 = (bit_generator, np.random.RandomState(bit_generator))
    return _per_thread.mt19937


def _greenlist_from_draws(draws: np.ndarray, draw_moduli: np.ndarray, steps: np.ndarray, vocab_size: int) -> np.ndarray:
    """Boolean [vocab_size]: the entries that the first k Fisher-Yates swaps bring to r[:k].

    Step i swaps position i with its partner ``j_i = i + draws[i] % (n - i)``, so
    ``j_i >= i``; ``j_i == i`` is a no-op. Call step i a *mover* of position j_i when it
    is a real swap. Just before step i, position i holds ``A[i]``: i itself if no step
    moved it yet, else what its last mover m parked there, which was ``A[m]`` (every
    mover of position i comes before step i, since ``j_m >= m``). Each real swap at step
    i takes position j_i's content into r[i] and parks ``A[i]`` at j_i:

    * the first mover of a position takes its original content, j itself;
    * each later mover takes back what the previous mover parked there;
    * a no-op step keeps ``A[i]`` in r[i].

    So r[:k] = {distinct partners} + {A[m] for steps m that are not the last mover of
    their partner (no-ops included)}, and A resolves by following last movers down.
    """
    offsets = draws % draw_moduli
    partners = offsets.astype(np.intp)  # intp indices spare numpy a cast in every gather and scatter below
    partners += steps
    noop_steps = np.flatnonzero(offsets == 0)
    # No-op steps move nothing: point them at a spare cell past the vocabulary.
    partners[noop_steps] = vocab_size
    last_mover = np.full(vocab_size + 1, -1, dtype=np.int32)
    np.maximum.at(last_mover, partners, steps)  # unbuffered, so repeated partners keep the latest step
    parks_for_good = last_mover[partners] == steps
    parks_for_good[noop_steps] = False
    chain = np.flatnonzero(~parks_for_good)
    while True:  # A[i] = A[last mover of i]; chains are short since few positions below k are moved
        movers = last_mover[chain]
        has_mover = movers >= 0
        if not has_mover.any():
            break
        chain = np.where(has_mover, movers, chain)
    is_green = np.zeros(vocab_size + 1, dtype=bool)
    is_green[partners] = True
    is_green[chain] = True  # a chain ends at the step i whose A[i] is i itself
    return is_green[:vocab_size]


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
        self._rows = np.zeros((self.capacity, row_bytes), dtype=np.uint8)  # pages are committed on first write
        self._slot_of_token = np.full(vocab_size, -1, dtype=np.int32)
        self._token_of_slot = np.full(self.capacity, -1, dtype=np.int64)
        self._last_used = np.zeros(self.capacity, dtype=np.int64)
        self._num_used_slots = 0
        self._tick = 0

    def __len__(self) -> int:
        return self._num_used_slots

    def read_bytes(self, tokens: np.ndarray, byte_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Byte ``byte_columns[i]`` of token i's row (0 where uncached), and which tokens were cached."""
        packed_bytes = np.zeros(len(tokens), dtype=np.uint8)
        with self._lock:
            slots, was_cached = self._touch(tokens)
            packed_bytes[was_cached] = self._rows[slots[was_cached], byte_columns[was_cached]]
        return packed_bytes, was_cached

    def read_rows(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the tokens' rows (zeros where uncached), and which tokens were cached."""
        rows = np.zeros((len(tokens), self._rows.shape[1]), dtype=np.uint8)
        with self._lock:
            slots, was_cached = self._touch(tokens)
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
