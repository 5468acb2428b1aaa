"""SynthID-Text (Dathathri et al., Nature 2024) exactly as Hugging Face transformers ships it.

This is transformers' ``SynthIDTextWatermarkLogitsProcessor`` (configured by
``SynthIDTextWatermarkingConfig``), reproduced bit for bit without torch so that text it
watermarks is detected here and text generated here carries its watermark.

g-values: the n-gram ending at a token is hashed with transformers' ``accumulate_hash``
(an int64 LCG that wraps: ``h = (h + x) * M + 1`` per element, from ``h = 1``); each
tournament depth d then hashes its own key ``k_d`` onto that, and the depth's g-value is
``table[hash % table_size]``. The table is ``torch.randint(0, 2, (size,))`` from a CPU
generator seeded with ``sampling_table_seed``: torch draws one 32-bit mt19937 output per
entry and keeps its lowest bit, and seeds mt19937 from the seed's low 32 bits exactly as
numpy's legacy ``RandomState.seed`` does, so numpy reproduces it.

Generation: tournament sampling as transformers' ``update_scores`` computes it:
``p = softmax(logits / T)``, then per depth ``p *= 1 + g - sum(g * p)``, over the ``top_k``
most likely tokens (50 by default), as transformers' ``generate`` runs it (its generation
config's top-k warper, 50 by default, comes before the watermark; synthid-text samples
from a top-k too). ``top_k: 0`` runs it over the whole vocabulary, as the processor alone.
Detection: a token's score is its number of g-values equal to 1; under the null each is
Bernoulli(f), f the table's fraction of ones, so the scored tokens' total is Binomial.

A property of this hashing that decides several choices below: with a power-of-two table
(the default 2**16), ``hash % size`` keeps only the low bits, and the low bits of each
LCG step's output depend only on the low bits of its inputs. So a depth's g-value
depends only on ``(h + k_d) mod size``, h being the n-gram hash: every g-value of a token
depends on ``h mod size`` alone, and each key only modulo the size. (The synthid-text
repository replaced the table by a keyed hash in June 2025; transformers 5.19 still uses it.)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, field_validator, model_validator

from signet.watermark.evidence import TokenEvidence
from signet.watermark.scheme import GenerationRow, KeyEntry, SamplingProblem, WatermarkScheme
from signet.watermark.statistics import BinomialNull
from signet.watermark.strength import integer_bits

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "synthid"
MAX_DEPTH = 64
MAX_TABLE_SIZE = 2**24  # SynthIDTextWatermarkingConfig.validate's bound
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# accumulate_hash's newlib/musl LCG constants.
MULTIPLIER = 6364136223846793005
INCREMENT = 1
_UINT64_MODULUS = 2**64
_MT19937_SEED_MASK = 0xFFFFFFFF  # torch's mt19937 keeps the seed's low 32 bits
# The per-vocabulary g-value table that makes a generation step's g-values one slice (see
# ``_GenerationTable``) is built only up to this size: 13.8 MB for the default table, 30
# depths and a 49,152-token vocabulary; 2**24-entry tables would need 2 GB.
GENERATION_TABLE_BYTES = 64 * 2**20
# The keys of synthid-text's DEFAULT_WATERMARKING_CONFIG; transformers' examples use the first 9.
PUBLISHED_KEYS = frozenset(
    (654, 400, 836, 123, 340, 443, 597, 160, 57, 29, 590, 639, 13, 715, 468)
    + (990, 966, 226, 324, 585, 118, 504, 421, 521, 129, 669, 732, 225, 90, 960)
)


@dataclass(frozen=True)
class SynthIdParameters:
    keys: tuple[int, ...] = field(repr=False)  # the secret, one key per depth: kept out of logs
    ngram_len: int = 5
    sampling_table_size: int = 2**16
    sampling_table_seed: int = field(default=0, repr=False)  # kept out of logs with the keys
    context_history_size: int = 1024
    # The tournament's candidates: the top_k most likely tokens (ties at the k-th kept, as
    # transformers' TopKLogitsWarper keeps them); 0: the whole vocabulary. 50 is transformers'
    # generate default. Measured for V = 49,152 and depth 30: 0.66-0.71 ms a row per step
    # over the whole vocabulary, 7-13% of a 55 ms decode step of 8 rows (the goal is 5%).
    top_k: int = 50

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_DEPTH:
            raise ValueError(f"keys must hold between 1 and {MAX_DEPTH} keys, one per depth")
        if not all(INT64_MIN <= key <= INT64_MAX for key in self.keys):
            raise ValueError("every key must be a signed 64-bit integer, as transformers stores them")
        if len(set(self.effective_keys)) != len(self.keys):
            raise ValueError(
                "keys must differ modulo sampling_table_size when it is a power of two (and differ otherwise): "
                "two depths whose keys agree there carry identical g-values, which the Binomial null does not allow"
            )
        if self.ngram_len < 2:
            raise ValueError("ngram_len must be at least 2")
        if not 2 <= self.sampling_table_size <= MAX_TABLE_SIZE:
            raise ValueError(f"sampling_table_size must lie between 2 and {MAX_TABLE_SIZE}")
        if not 0 <= self.sampling_table_seed < 2**64:
            raise ValueError("sampling_table_seed must be a 64-bit unsigned integer, as torch's manual_seed takes")
        if self.context_history_size < 1:
            raise ValueError("context_history_size must be at least 1")
        if self.top_k < 0:
            raise ValueError("top_k must not be negative (0: the whole vocabulary)")

    @property
    def depth(self) -> int:
        return len(self.keys)

    @property
    def table_is_power_of_two(self) -> bool:
        return self.sampling_table_size & (self.sampling_table_size - 1) == 0

    @property
    def effective_keys(self) -> tuple[int, ...]:
        """What of each key the g-values depend on: its residue for a power-of-two table, else all of it."""
        if self.table_is_power_of_two:
            return tuple(key % self.sampling_table_size for key in self.keys)
        return self.keys


class SynthIdKey(KeyEntry):
    """transformers' SynthID-Text (``SynthIDTextWatermarkingConfig``)."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "keys"
    scheme: Literal["synthid"]
    # Not SecretStr: peers configure a list of integers; repr=False keeps them out of logs.
    # A tuple (the keys file's list) so that a frozen key cannot change after validation.
    keys: tuple[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)], ...] = Field(
        min_length=1, max_length=MAX_DEPTH, repr=False, description="One key per tournament depth."
    )
    ngram_len: int = Field(default=5, ge=2, le=64)
    sampling_table_size: int = Field(default=2**16, ge=2, le=MAX_TABLE_SIZE)
    sampling_table_seed: int = Field(default=0, ge=0, lt=2**64, repr=False)
    context_history_size: int = Field(default=1024, ge=1, le=1_000_000)
    top_k: int = Field(
        default=50, ge=0, le=1_000_000, description="Tournament candidates: the top_k most likely tokens; 0: all."
    )

    @field_validator("keys", mode="before")
    @classmethod
    def _keys_are_integers(cls, keys: object) -> object:
        # pydantic would accept "12" or 12.0; transformers takes ints only.
        if isinstance(keys, list | tuple) and not all(type(key) is int for key in keys):
            raise ValueError("keys must be integers")
        return keys

    @model_validator(mode="after")
    def _parameters_make_a_scheme(self) -> SynthIdKey:
        self.parameters()  # distinct keys, among others: refused when the file loads
        return self

    def parameters(self) -> SynthIdParameters:
        return SynthIdParameters(
            keys=self.keys,
            ngram_len=self.ngram_len,
            sampling_table_size=self.sampling_table_size,
            sampling_table_seed=self.sampling_table_seed,
            context_history_size=self.context_history_size,
            top_k=self.top_k,
        )

    def secret_bits(self) -> float:
        """Bits against someone who holds watermarked text: far fewer than the keys' total.

        Each depth's g-values can be tested alone (a wrong key shows mean g-value f, the
        right one more), so the depths are guessed one after another: the guesses add up,
        they do not multiply. With a power-of-two table only each key's residue counts,
        and every depth draws from the same residues: all the keys fall to the
        ``sampling_table_size`` guesses of one scan, 16 bits by default. Measured: scanning
        the 2**16 residues (one FFT cross-correlation) over 400 tokens watermarked with 30
        random keys put all 30 key residues in its top 30 (22 of them from 100 tokens).
        A seed other than the published 0 would multiply that by its own guesses, but
        /detect reports the table's fraction of ones (``score_mean``), which narrows the
        2**32 seeds torch can use to about 2**24 at once (8 bits for a 2**16 table), and
        each tested answer tells more: the seed is not counted. Keys from the published
        examples need no guess at all.
        """
        parameters = self.parameters()
        if PUBLISHED_KEYS.issuperset(self.keys) and self.sampling_table_seed == 0:
            return 0.0
        if parameters.table_is_power_of_two:
            largest_key_bits = max(integer_bits(abs(key)) for key in self.keys)
            key_bits = min(largest_key_bits, math.log2(self.sampling_table_size))
        else:
            key_bits = math.log2(sum(2.0 ** integer_bits(abs(key)) for key in self.keys))
        return key_bits

    def build_scheme(self, model_vocab_size: int | None) -> SynthIdScheme:
        return SynthIdScheme(self.parameters())

    def public_parameters(self) -> dict[str, float | int]:
        # What WatermarkInfo shows of every scheme: the tokens before each one that key its
        # g-values (ngram_len - 1), and the tournament's layers.
        return {"depth": len(self.keys), "context_width": self.ngram_len - 1}

    def sampling_problem(self, temperature: float, top_p: float) -> SamplingProblem | None:
        if temperature == 0:
            return SamplingProblem("temperature", "tournament sampling needs a distribution: temperature > 0")
        return None


# Hashing ----------------------------------------------------------------------------


def sampling_table(size: int, seed: int) -> np.ndarray:
    """uint8 [size]: ``torch.randint(0, 2, (size,), generator=torch.Generator().manual_seed(seed))``.

    torch's CPU ``randint`` over a range below 2**32 takes one 32-bit mt19937 output per
    entry, modulo the range: for range 2, its lowest bit.
    """
    bit_generator = np.random.MT19937(0)
    np.random.RandomState(bit_generator).seed(seed & _MT19937_SEED_MASK)
    return (bit_generator.random_raw(size) & 1).astype(np.uint8)


def accumulate_hash(current: np.ndarray, data: np.ndarray) -> np.ndarray:
    """transformers' ``accumulate_hash`` on uint64 (two's complement int64) arrays.

    For each element x of ``data``'s last axis: ``h = (h + x) * MULTIPLIER + INCREMENT``,
    wrapping modulo 2**64 as torch's int64 arithmetic does. ``current`` broadcasts against
    ``data[..., i]``.
    """
    hashes = np.asarray(current, dtype=np.uint64)
    for column in np.moveaxis(np.asarray(data, dtype=np.uint64), -1, 0):
        hashes = (hashes + column) * np.uint64(MULTIPLIER) + np.uint64(INCREMENT)
    return hashes


def _as_uint64(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """Signed 64-bit integers in their two's complement, as torch's int64 arithmetic sees them."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def context_hash(context: Sequence[int]) -> int:
    """``accumulate_hash`` of one context from 1, as an unsigned Python int (the per-step form)."""
    hashed = 1
    for token in context:
        hashed = ((hashed + token) * MULTIPLIER + INCREMENT) % _UINT64_MODULUS
    return hashed


def repeated_within(hashes: np.ndarray, history_size: int) -> np.ndarray:
    """bool [N]: whether ``hashes[j]`` equals one of the ``history_size`` hashes before it.

    transformers' context history starts as ``history_size`` zeros, and each step compares
    its hash with the history, then pushes the hash in and the oldest entry out: so step
    j sees hashes j - history_size .. j - 1, the ones before the start reading 0.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    positions = np.arange(len(hashes))
    order = np.argsort(hashes, kind="stable")  # equal hashes stay in position order
    repeated = np.zeros(len(hashes), dtype=bool)
    same_as_previous = hashes[order[1:]] == hashes[order[:-1]]
    repeated[order[1:]] = same_as_previous & (order[1:] - order[:-1] <= history_size)
    repeated |= (hashes == 0) & (positions < history_size)
    return repeated


# Tournament -------------------------------------------------------------------------


def tournament_probabilities(probabilities: np.ndarray, g_values: np.ndarray) -> np.ndarray:
    """float32 [V]: one row of transformers' ``update_scores`` before its log.

    ``probabilities`` is ``softmax(scores)`` [V]; ``g_values`` is [depth, V] in float32
    (0.0 / 1.0), one contiguous row per depth. float32 throughout, as transformers computes.

    The depths run one after another (each g-mass needs the previous depth's update), so
    this is three passes over the vocabulary per depth: a BLAS dot, an add, a multiply.
    For V = 49,152 and depth 30 it takes 0.5 ms on this machine's CPU; the same loop in
    torch took 0.7-1.1 ms (per-op overhead), a fused numba loop 1.2-1.6 ms (it did not
    vectorise), and grouping tokens by their g-bits costs more in gathers and histograms
    (50-110 us each) than it saves.
    """
    probabilities = np.array(probabilities, dtype=np.float32)
    factor = np.empty_like(probabilities)
    for g_at_depth in g_values:
        g_mass = np.float32(g_at_depth @ probabilities)
        np.add(g_at_depth, np.float32(1.0) - g_mass, out=factor)
        probabilities *= factor
    return probabilities


# Scores for benchmarks ----------------------------------------------------------------


def synthid_mean_scores(g_values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """synthid-text's "Mean" score: the mean of the unmasked g-values, per text.

    ``g_values`` [..., seq_len, depth], ``mask`` [..., seq_len] (1: use the position), as
    ``detector_mean.mean_score`` takes them (transformers' ``SynthIDTextWatermarkDetector``
    only runs a trained Bayesian detector; these scores need no training).
    """
    return weighted_mean_score(g_values, mask, weights=np.ones(np.shape(g_values)[-1]))


def weighted_mean_score(g_values: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """synthid-text's "Weighted Mean" score: the mean with depth d's g-values weighted.

    ``weights`` [depth], non-negative, defaults to ``linspace(10, 1, depth)`` (each depth
    leaves less entropy to the next, so early depths carry more watermark); they are
    rescaled to sum to ``depth``, as
    ``detector_mean.weighted_mean_score`` does.
    """
    g_values = np.asarray(g_values, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    depth = g_values.shape[-1]
    weights = np.linspace(10.0, 1.0, depth) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights * (depth / weights.sum())
    weighted_sums = np.einsum("...sd,d,...s->...", g_values, weights, mask)
    return weighted_sums / (depth * mask.sum(axis=-1))


# The scheme -------------------------------------------------------------------------


@dataclass
class _ContextHistory:
    """A request's generation contexts so far, by output position: what transformers'
    ``context_history`` holds, kept by position so that a repeated call is harmless."""

    last_position: dict[int, int] = field(default_factory=dict)  # context hash -> latest output position
    recorded: int = 0  # output positions whose context hashes are in last_position


class SynthIdScheme(WatermarkScheme):
    """One key list's SynthID watermark: tournament sampling for generation, g-values for detection."""

    name = SCHEME_NAME

    def __init__(self, parameters: SynthIdParameters) -> None:
        self.parameters = parameters
        self._table = sampling_table(parameters.sampling_table_size, parameters.sampling_table_seed)
        self._ones = int(self._table.sum(dtype=np.int64))
        if not 0 < self._ones < parameters.sampling_table_size:
            raise ValueError("the sampling table holds a single value: no g-value carries a watermark")
        self._keys = _as_uint64(parameters.keys)
        self._generation_tables: dict[int, _GenerationTable] = {}  # by vocabulary size
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SynthIdScheme({self.parameters}, keys=<redacted>)"

    @property
    def g_value_rate(self) -> float:
        """f: the fraction of ones in the table, each g-value's probability of 1 under the null."""
        return self._ones / self.parameters.sampling_table_size

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> BinomialNull:
        return BinomialNull(self.g_value_rate, trials_per_token=self.parameters.depth)

    def g_values(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 [len - (ngram_len - 1), depth]: transformers' ``compute_g_values`` for one text."""
        return self._g_values_of_hashes(self._ngram_hashes(_checked_token_ids(token_ids)))

    def context_repetition_mask(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """bool [len - (ngram_len - 1)]: transformers' ``compute_context_repetition_mask``, True where
        the n-gram's context (its first ngram_len - 1 tokens) is not among the previous
        ``context_history_size`` contexts."""
        ids = _checked_token_ids(token_ids)
        width = self.parameters.ngram_len - 1
        if len(ids) <= width:
            return np.zeros(0, dtype=bool)
        contexts = sliding_window_view(ids[:-1], width)
        hashes = accumulate_hash(np.uint64(1), contexts)
        return ~repeated_within(hashes, self.parameters.context_history_size)

    def evidence(self, token_ids: Sequence[int] | np.ndarray) -> TokenEvidence:
        """Per token its number of g-values equal to 1 (0 to depth), from the ngram_len-th token on.

        A token counts where transformers' context-repetition mask keeps it, and only the
        first such token of each n-gram hash residue (the hash modulo a power-of-two table,
        else the whole hash): two tokens with one residue carry the very same g-values,
        so the second is no independent evidence and would inflate the Binomial count.
        Watermarked text repeats residues far more than chance, since the tournament
        favours the few residues whose g-values are mostly 1: 100 tokens generated with 30
        keys on random logits lost 7-14 of their 96 n-grams this way (random text: ~0.07).
        transformers' ``SynthIDTextWatermarkDetector`` also drops everything from the first
        EOS token on; texts tokenized for detection carry no EOS, so it is not mirrored.
        """
        ids = _checked_token_ids(token_ids)
        scores = np.zeros(len(ids), dtype=np.float64)
        is_scored = np.zeros(len(ids), dtype=bool)
        offset = self.parameters.ngram_len - 1
        if len(ids) <= offset:
            return TokenEvidence(scores=scores, is_scored=is_scored)
        hashes = self._ngram_hashes(ids)
        candidates = np.flatnonzero(self.context_repetition_mask(ids))
        _, first = np.unique(self._residues(hashes[candidates]), return_index=True)
        scored = candidates[first]
        is_scored[offset + scored] = True
        scores[offset + scored] = self._g_values_of_hashes(hashes[scored]).sum(axis=1)
        return TokenEvidence(scores=scores, is_scored=is_scored)

    def _ngram_hashes(self, ids: np.ndarray) -> np.ndarray:
        """uint64 [len - (ngram_len - 1)]: ``accumulate_hash`` of each full n-gram from 1."""
        if len(ids) < self.parameters.ngram_len:
            return np.zeros(0, dtype=np.uint64)
        return accumulate_hash(np.uint64(1), sliding_window_view(ids, self.parameters.ngram_len))

    def _g_values_of_hashes(self, ngram_hashes: np.ndarray) -> np.ndarray:
        """uint8 [N, depth]: each depth hashes its key onto the n-gram hash, then reads the table."""
        depth_hashes = accumulate_hash(ngram_hashes[:, np.newaxis], self._keys[np.newaxis, :, np.newaxis])
        # torch's % of an int64 by a positive size is never negative, like numpy's.
        return self._table[depth_hashes.view(np.int64) % self.parameters.sampling_table_size]

    def _residues(self, ngram_hashes: np.ndarray) -> np.ndarray:
        """What of an n-gram hash its g-values depend on."""
        if self.parameters.table_is_power_of_two:
            return ngram_hashes & np.uint64(self.parameters.sampling_table_size - 1)
        return ngram_hashes

    # Generation -------------------------------------------------------------------

    def generation_context_hash(self, output_ids: Sequence[int], position: int) -> int:
        """The context hash transformers uses to sample output token ``position``.

        Its state starts as ngram_len - 1 zeros and takes in each generated token, so
        the prompt never enters: the context is the last ngram_len - 1 of
        ``[0] * (ngram_len - 1) + output_ids[:position]``.
        """
        width = self.parameters.ngram_len - 1
        recent = [int(token) for token in output_ids[max(position - width, 0) : position]]
        return context_hash([0] * (width - len(recent)) + recent)

    def generation_g_values(self, context: int, vocab_size: int) -> np.ndarray:
        """float32 [depth, vocab_size]: the g-values of every candidate after a context hash."""
        return self._generation_table(vocab_size).g_values(context)

    def watermarked_probabilities(self, logits: np.ndarray, temperature: float, context: int) -> np.ndarray:
        """float32 [V]: the tournament distribution transformers samples from after this context.

        With ``top_k``, tokens outside the top k have probability 0, as after transformers'
        top-k warper: the tournament runs over the candidates' renormalised probabilities.
        """
        scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
        g_values = self.generation_g_values(context, len(scaled))
        top_k = self.parameters.top_k
        if not 0 < top_k < len(scaled):
            return tournament_probabilities(_softmax(scaled), g_values)
        kth_largest = np.partition(scaled, len(scaled) - top_k)[len(scaled) - top_k]
        candidates = np.flatnonzero(scaled >= kth_largest)
        probabilities = np.zeros(len(scaled), dtype=np.float32)
        probabilities[candidates] = tournament_probabilities(_softmax(scaled[candidates]), g_values[:, candidates])
        return probabilities

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Set each row's logits to ``T * log(p)``, p the tournament distribution: vLLM divides by T next.

        Over the top 50 candidates (``top_k``), as transformers' ``generate`` runs it; over the
        whole vocabulary (``top_k: 0``) it costs 0.66-0.71 ms a row per step for V = 49,152
        and depth 30 (0.5 ms of it the tournament), growing linearly with the batch.
        """
        import torch  # here, not at the top: the API process detects without torch installed

        for index, row in zip(row_indices, rows, strict=True):
            if row.scheme_state is None:
                row.scheme_state = _ContextHistory()
            context = self._next_context(row.output_ids, row.scheme_state)
            # Greedy rows sample as usual; a repeated context keeps its logits, as in transformers.
            if row.temperature <= 0 or context is None:
                continue
            row_logits = logits[index].detach().to("cpu", torch.float32).numpy()
            probabilities = self.watermarked_probabilities(row_logits, row.temperature, context)
            np.maximum(probabilities, 0.0, out=probabilities)  # a g-mass rounded above 1 can leave tiny negatives
            with np.errstate(divide="ignore"):
                watermarked = np.float32(row.temperature) * np.log(probabilities)  # 0 -> -inf: never sampled
            logits[index].copy_(torch.from_numpy(watermarked))

    def _next_context(self, output_ids: list[int], history: _ContextHistory) -> int | None:
        """The context hash for the next output position, or None where transformers finds it
        among the previous ``context_history_size`` ones (its history starts as zeros)."""
        position = len(output_ids)
        for earlier in range(history.recorded, position):
            history.last_position[self.generation_context_hash(output_ids, earlier)] = earlier
        history.recorded = position
        context = self.generation_context_hash(output_ids, position)
        seen_at = history.last_position.get(context)
        window = self.parameters.context_history_size
        if (seen_at is not None and position - seen_at <= window) or (context == 0 and position < window):
            return None
        return context

    def _generation_table(self, vocab_size: int) -> _GenerationTable:
        table = self._generation_tables.get(vocab_size)
        if table is None:
            with self._lock:
                table = self._generation_tables.get(vocab_size)
                if table is None:
                    table = _GenerationTable(self.parameters, self._table, self._keys, vocab_size)
                    self._generation_tables[vocab_size] = table
        return table


class _GenerationTable:
    """Every candidate's g-values after one context, without hashing the vocabulary each step.

    Candidate v's n-gram hash is ``(c + v) * M + 1`` for context hash c. With a
    power-of-two table its g-values depend on ``x = (c + v) mod size`` alone, so one
    table ``extended[d, x]`` over ``size + V`` columns (wrapping around) holds them all:
    the step's g-values are the slice starting at ``c mod size``, rows contiguous for the
    tournament's dot products. Measured for V = 49,152 and depth 30 on this machine's CPU:
    the slice is free, where hashing the vocabulary for 30 depths takes about 7 ms a step;
    building the table takes 30-90 ms, once per scheme and vocabulary size. Other tables
    (not a power of two, or too large to extend) hash every step: 7-11 ms a row.
    """

    def __init__(self, parameters: SynthIdParameters, table: np.ndarray, keys: np.ndarray, vocab_size: int) -> None:
        self._parameters = parameters
        self._table = table
        self._keys = keys
        self._vocab_size = vocab_size
        size = parameters.sampling_table_size
        extended_bytes = 4 * parameters.depth * (size + vocab_size)
        self._extended: np.ndarray | None = None
        if parameters.table_is_power_of_two and extended_bytes <= GENERATION_TABLE_BYTES:
            residues = np.arange(size, dtype=np.uint64)
            by_residue = self._hashed_g_values(residues).astype(np.float32)  # [depth, size]
            self._extended = np.ascontiguousarray(by_residue[:, np.arange(size + vocab_size) % size])

    def g_values(self, context: int) -> np.ndarray:
        if self._extended is not None:
            start = context % self._parameters.sampling_table_size
            return self._extended[:, start : start + self._vocab_size]
        sums = np.uint64(context) + np.arange(self._vocab_size, dtype=np.uint64)
        return self._hashed_g_values(sums).astype(np.float32)

    def _hashed_g_values(self, sums: np.ndarray) -> np.ndarray:
        """uint8 [depth, len(sums)] for candidates whose ``c + v`` (mod 2**64) are ``sums``."""
        ngram_hashes = sums * np.uint64(MULTIPLIER) + np.uint64(INCREMENT)
        depth_hashes = accumulate_hash(ngram_hashes[np.newaxis, :], self._keys[:, np.newaxis, np.newaxis])
        return self._table[depth_hashes.view(np.int64) % self._parameters.sampling_table_size]


def _softmax(scaled: np.ndarray) -> np.ndarray:
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    return probabilities


def _checked_token_ids(token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError("token_ids must be one sequence")
    return ids
