"""KGW "selfhash": transformers' ``WatermarkingConfig(seeding_scheme="selfhash")``, bit for bit.

This is Algorithm 3 of Kirchenbauer et al. (2023, "On the Reliability of Watermarks")
as Hugging Face transformers implements it. A token's green list is seeded by its own
n-gram: the ``context_width - 1`` tokens before it and the token itself. For a window
``x`` of ``context_width`` ids:

* ``table = randperm(1_000_003)`` of a generator seeded with ``hashing_key``: a fixed
  pseudo-random relabelling of ids, drawn once per key;
* ``a = table[x % 1_000_003] + 1``, ``b = a[-1]`` and ``seed = min(hashing_key * a * b)``
  in torch's int64, which wraps: ``hashing_key`` near 2**24 times two table entries near
  2**20 passes 2**63 for about one pair in ten, and the product comes out negative;
* the green list is the first ``int(vocab_size * gamma)`` entries of ``randperm(vocab_size)``
  of a generator seeded with ``seed % (2**64 - 1)`` (Python's modulo, so non-negative),
  of which torch's mt19937 keeps the low 32 bits;
* the window's last token is green when it is in that list.

Detection scores every window of ``context_width`` tokens, each (with transformers'
``ignore_repeated_ngrams=True``) once. Generation cannot know the token before sampling
it, so transformers tries the 40 highest logits: each candidate whose window (context
plus itself) puts it in its own green list gets ``delta``.

Only membership is ever needed, so instead of drawing the whole permutation we follow
the one token through the first ``greenlist_size`` Fisher-Yates steps, in numba
(``randperm.py``, loaded on first use): 6.6 us a window at gamma 0.25 over a
49,152-token vocabulary (10.5 us at gamma 0.5), against 235 us for a single-threaded
``torch.randperm``. With ``context_width`` 1 the seed is a function of the token alone,
so a token's colour is fixed per key and is cached in a vocabulary-sized array. Wider
windows are not cached: every candidate has its own seed (``b`` is the candidate's), and
the context id it pairs with changes as the context slides. Measured on a busy core
(49,152 ids, gamma 0.25): a decode step costs 0.33 ms a row in a batch of 8 with
``context_width`` 4 (0.39 ms for a single row, 0.56 ms at gamma 0.5), 0.06-0.14 ms with
width 1 once the colours are cached, of which finding the 40 candidates takes 0.05 ms;
a 1,000-token detection takes 7 ms with width 4, 0.3 ms with width 1 once cached.
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
from signet.watermark.lefthash import DEFAULT_HASHING_KEY, MAX_VOCAB_SIZE
from signet.watermark.randperm import MT19937_SEED_MASK, PartialRandperm, kernels
from signet.watermark.scheme import GenerationRow, KeyEntry, WatermarkScheme
from signet.watermark.statistics import BinomialNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "kgw-selfhash"
TABLE_SIZE = 1_000_003  # transformers' WatermarkLogitsProcessor.table_size
# transformers' _score_rejection_sampling tries this many of the highest logits ("taken from orig repo").
REJECTION_CANDIDATES = 40
MAX_CONTEXT_WIDTH = 8

# transformers reduces the seed modulo 2**64 - 1 (not 2**64) before torch sees it.
_SEED_MODULUS = 2**64 - 1
_MT19937_SEED_MASK = np.uint64(MT19937_SEED_MASK)
_UNKNOWN = -1  # a token whose colour the context-width-1 cache does not hold yet


@dataclass(frozen=True)
class SelfhashParameters:
    # transformers: the model config's vocab_size, for generation and detection alike.
    vocab_size: int
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1  # transformers' WatermarkingConfig default
    hashing_key: int = field(default=DEFAULT_HASHING_KEY, repr=False)  # the secret: kept out of logs

    def __post_init__(self) -> None:
        if not 2 <= self.vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"vocab_size must lie between 2 and {MAX_VOCAB_SIZE}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie strictly between 0 and 1")
        if self.greenlist_size < 1:
            raise ValueError("vocab_size * gamma must be at least 1")
        if self.delta < 0.0:
            raise ValueError("delta must not be negative")
        if not 1 <= self.context_width <= MAX_CONTEXT_WIDTH:
            raise ValueError(f"context_width must lie between 1 and {MAX_CONTEXT_WIDTH}")
        if not 0 <= self.hashing_key < 2**63:
            # transformers multiplies an int64 tensor by it: torch refuses larger Python ints there.
            raise ValueError("hashing_key must be a non-negative 63-bit integer")

    @property
    def greenlist_size(self) -> int:
        """Green tokens per seed, truncated exactly as transformers does."""
        return int(self.vocab_size * self.gamma)


class SelfhashKey(KeyEntry):
    """Hugging Face transformers' ``selfhash`` seeding scheme."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "hashing_key"
    scheme: Literal["kgw-selfhash"]
    # Not a SecretStr because transformers configures it as an integer; repr=False keeps
    # it out of logs and tracebacks all the same.
    hashing_key: int = Field(default=DEFAULT_HASHING_KEY, ge=0, lt=2**63, repr=False)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    context_width: int = Field(default=1, ge=1, le=MAX_CONTEXT_WIDTH)
    vocab_size: int | None = Field(
        default=None, ge=2, le=2**22, description="The randperm size; unset: the served model's vocabulary size."
    )

    @property
    def needs_model_vocab_size(self) -> bool:
        return self.vocab_size is None

    def secret_bits(self) -> float:
        # The default is published (transformers' documentation and code): no guess needed.
        return 0.0 if self.hashing_key == DEFAULT_HASHING_KEY else super().secret_bits()

    def build_scheme(self, model_vocab_size: int | None) -> SelfhashScheme:
        vocab_size = self.vocab_size or model_vocab_size
        if vocab_size is None:
            raise ValueError("vocab_size is needed when no model is loaded")
        parameters = SelfhashParameters(
            vocab_size=vocab_size,
            gamma=self.gamma,
            delta=self.delta,
            context_width=self.context_width,
            hashing_key=self.hashing_key,
        )
        return SelfhashScheme(parameters)

    def public_parameters(self) -> dict[str, float | int]:
        return {"gamma": self.gamma, "delta": self.delta, "context_width": self.context_width}


class SelfhashScheme(WatermarkScheme):
    """One hashing key's selfhash watermark: rejection-sampled green candidates for generation,
    green windows for detection."""

    name = SCHEME_NAME
    counts_green = True

    def __init__(self, parameters: SelfhashParameters) -> None:
        self.parameters = parameters
        self._randperm = PartialRandperm(parameters.vocab_size, parameters.greenlist_size)
        # Built on first use, not here: the engine process builds every scheme while it
        # starts, before numba may be loaded (randperm_kernels.py says why).
        self._table_plus_one: np.ndarray | None = None
        self._table_lock = threading.Lock()
        # context_width 1 only: each token's colour, 1 green, 0 red, _UNKNOWN not drawn yet.
        # Concurrent writers store the same value, so it needs no lock.
        self._colour_of_token = np.full(parameters.vocab_size, _UNKNOWN, dtype=np.int8)

    def __repr__(self) -> str:
        return f"SelfhashScheme({self.parameters}, hashing_key=<redacted>)"

    # Seeds ------------------------------------------------------------------------

    def fixed_table(self) -> np.ndarray:
        """transformers' ``fixed_table``: ``torch.randperm(1_000_003)`` seeded with the hashing key (int64)."""
        return (self._table() - np.uint64(1)).astype(np.int64)

    def manual_seeds(self, windows: np.ndarray) -> np.ndarray:
        """uint64 [rows]: what transformers' ``set_seed`` passes to ``manual_seed`` for each window.

        ``windows`` is int [rows, context_width], the scored (or candidate) token last.
        """
        windows = np.asarray(windows, dtype=np.int64)
        factors = self._table()[windows % TABLE_SIZE]  # np.mod, like torch's %, is never negative here
        # uint64 products wrap modulo 2**64 exactly as torch's int64 ones do; read back as int64
        # they are torch's values, negative where the true product passed 2**63.
        products = (np.uint64(self.parameters.hashing_key) * factors * factors[:, -1:]).view(np.int64)
        smallest = products.min(axis=1)
        # Python's seed % (2**64 - 1): a negative s becomes s + 2**64 - 1, i.e. its uint64 bits minus one.
        return smallest.view(np.uint64) - (smallest < 0).astype(np.uint64)

    def green_list(self, window: Sequence[int]) -> np.ndarray:
        """transformers' ``_get_greenlist_ids(window)``: the green ids, in torch's order (int64)."""
        seed = self.manual_seeds(np.asarray(window, dtype=np.int64).reshape(1, -1))[0] & _MT19937_SEED_MASK
        return kernels().randperm(int(seed), self.parameters.vocab_size)[: self.parameters.greenlist_size]

    def in_own_greenlist(self, windows: np.ndarray) -> np.ndarray:
        """bool [rows]: whether each window's last token is in the green list the window seeds."""
        windows = np.asarray(windows, dtype=np.int64).reshape(-1, self.parameters.context_width)
        tokens = windows[:, -1]
        # transformers tests `token in greenlist_ids`: ids outside the vocabulary are red.
        in_vocabulary = np.flatnonzero((tokens >= 0) & (tokens < self.parameters.vocab_size))
        green = np.zeros(len(windows), dtype=bool)
        if len(in_vocabulary) == 0:
            return green
        if self.parameters.context_width > 1:
            green[in_vocabulary] = self._draw(windows[in_vocabulary])
            return green
        # A one-token window seeds from the token alone: its colour never changes.
        colours = self._colour_of_token[tokens[in_vocabulary]]
        unknown = np.unique(tokens[in_vocabulary][colours == _UNKNOWN])
        if len(unknown):
            self._colour_of_token[unknown] = self._draw(unknown[:, None])
            colours = self._colour_of_token[tokens[in_vocabulary]]
        green[in_vocabulary] = colours == 1
        return green

    def _draw(self, windows: np.ndarray) -> np.ndarray:
        """bool [rows] from the kernel; every window's last token in the vocabulary."""
        seeds = self.manual_seeds(windows) & _MT19937_SEED_MASK
        return self._randperm.in_greenlists(seeds, np.arange(len(seeds) + 1), windows[:, -1])

    def _table(self) -> np.ndarray:
        """``fixed_table + 1`` as uint64, drawn on first use in about 10 ms. A process's first
        use also imports numba and loads the kernels from its disk cache (about 1 s; an
        installation's first run compiles them, a few seconds more)."""
        if self._table_plus_one is None:
            with self._table_lock:
                if self._table_plus_one is None:
                    seed = self.parameters.hashing_key & int(_MT19937_SEED_MASK)
                    self._table_plus_one = kernels().randperm(seed, TABLE_SIZE).astype(np.uint64) + np.uint64(1)
        return self._table_plus_one

    # Generation -------------------------------------------------------------------

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Add ``delta`` to each of the 40 highest logits whose own window makes it green.

        transformers runs its watermark processor after temperature and top-k/top-p
        (``_get_logits_processor``), vLLM runs this one before them. Dividing by a
        temperature keeps the order, so the same candidates get the bias, but vLLM then
        divides the bias too: at temperature T the bias here weighs delta / T where
        transformers' weighs delta (as with kgw-lefthash).

        Candidates are the 40 highest logits. Where the 40th is tied with the 41st we
        take the lowest ids, while transformers takes whichever its sort puts first:
        torch's CPU sort is unstable (x86-simd-sort in builds that have it, else
        std::sort), so that order depends on the build and the machine. Where no
        candidate is green transformers fails (it indexes with an empty float tensor);
        we leave the row as it is.
        """
        import torch  # here, not at the top: the API process detects without torch installed

        width = self.parameters.context_width
        # transformers skips a step whose input holds fewer than context_width tokens.
        active = [
            (index, row)
            for index, row in zip(row_indices, rows, strict=True)
            if len(row.prompt_ids) + len(row.output_ids) >= width
        ]
        if not active:
            return
        candidates = _highest_logits(logits, [index for index, _ in active], REJECTION_CANDIDATES)
        # Each candidate's window: the row's last width - 1 tokens, then the candidate.
        windows = np.empty((len(active), candidates.shape[1], width), dtype=np.int64)
        if width > 1:
            windows[:, :, :-1] = np.array([row.context(width - 1) for _, row in active])[:, None, :]
        windows[:, :, -1] = candidates
        green = self.in_own_greenlist(windows.reshape(-1, width)).reshape(candidates.shape)
        for position, (index, _) in enumerate(active):
            green_ids = torch.from_numpy(candidates[position, green[position]]).to(logits.device)
            # transformers' own expression: the same float32 additions.
            logits[index, green_ids] = logits[index, green_ids] + self.parameters.delta

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> BinomialNull:
        return BinomialNull(self.parameters.gamma)

    @property
    def vocab_size(self) -> int:
        """The permutation's size: the token ids this key's green lists cover."""
        return self.parameters.vocab_size

    def evidence(
        self, token_ids: Sequence[int] | np.ndarray, ignore_repeated_ngrams: bool = True, by_seed: bool = True
    ) -> TokenEvidence:
        """Green (1.0) or red (0.0) for every token with ``context_width - 1`` tokens before it,
        as transformers' ``WatermarkDetector`` scores.

        With context width 1 that is every token, the first included. The detector also
        drops a leading BOS token, and refuses a text of exactly ``context_width`` tokens (a
        check shared with lefthash, which needs one more); here the caller drops BOS, and
        that text's one window is scored.

        Which repeats are left out: with ``ignore_repeated_ngrams`` and ``by_seed`` (the
        default, what /detect uses) each distinct (mt19937 seed, token) pair is scored once.
        A token's colour depends on nothing else, and the seed is the smallest product over
        the window, so windows that differ only in tokens that are not the smallest share
        it: repetitive text (CSV, tables) then repeats the same draw under distinct
        n-grams. Measured on the 52 repetitive human texts of tests/data/corpus at context
        width 4: deduplicating by n-gram, as transformers does, flagged 4 of them at alpha
        1e-3 (p down to 2.2e-8); by seed, none. With ``by_seed=False`` only the first
        occurrence of each window is scored, which makes ``num_scored_tokens`` and
        ``score_sum`` the detector's ``num_tokens_scored`` and ``num_green_tokens`` with its
        ``ignore_repeated_ngrams=True`` (its default is False: every window).
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        width = self.parameters.context_width
        scores = np.zeros(len(ids), dtype=np.float64)
        is_scored = np.zeros(len(ids), dtype=bool)
        if len(ids) >= width:
            windows = np.lib.stride_tricks.sliding_window_view(ids, width)
            if ignore_repeated_ngrams and by_seed:
                seeds = (self.manual_seeds(windows) & np.uint64(_MT19937_SEED_MASK)).astype(np.int64)
                is_scored[width - 1 :] = first_occurrences(np.stack([seeds, windows[:, -1]], axis=1))
            elif ignore_repeated_ngrams:
                is_scored[width - 1 :] = first_occurrences(windows)
            else:
                is_scored[width - 1 :] = True
            scored = np.flatnonzero(is_scored)
            scores[scored] = self.in_own_greenlist(windows[scored - (width - 1)])
        return TokenEvidence(scores=scores, is_scored=is_scored)


def _highest_logits(logits: torch.Tensor, row_indices: list[int], count: int) -> np.ndarray:
    """int64 [rows, min(count, V)]: the ids of each row's ``count`` highest logits, ties at the
    boundary to the lowest ids.

    A single-threaded numba pass (``highest_ids``) over a view of the logits, not
    ``torch.topk`` or even a torch row gather: those take 0.04-0.1 ms a 49,152-wide row
    on an idle core, but torch's threads slow each to 1-11 ms when other processes keep
    the cores busy, as vLLM's do.
    """
    import torch  # here, not at the top: the API process detects without torch installed

    rows = np.asarray(row_indices, dtype=np.int64)
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        values = logits.numpy()
    else:
        values, rows = (
            logits[torch.tensor(rows, device=logits.device)].to("cpu", torch.float32).numpy(),
            np.arange(len(rows)),
        )
    candidates = np.empty((len(rows), min(count, values.shape[1])), dtype=np.int64)
    kernels().highest_ids(values, rows, candidates.shape[1], candidates)
    return candidates
