"""Green lists as transformers draws them: the first ``k`` entries of ``torch.randperm(n)``.

kgw-lefthash and kgw-selfhash both seed torch's CPU mt19937 and take the head of a
``randperm`` as the green list. ``PartialRandperm`` answers the two questions they ask
of it, through the numba kernels of ``randperm_kernels.py``:

* detection: is token t in the green list of seed s? About 3.5 us a seed at gamma 0.25
  over 49,152 ids (its 12,288 draws), and about 0.9 us more for each further token of
  the same seed;
* generation: the whole green list of seed s, as a row of a boolean mask: about 42 us.

No table is kept here: a scheme caches what it wants to.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import numpy as np

# torch's mt19937 keeps only the low 32 bits of its seed.
MT19937_SEED_MASK = 0xFFFFFFFF


class PartialRandperm:
    """The first ``greenlist_size`` entries of ``torch.randperm(vocab_size)``, for any seed."""

    def __init__(self, vocab_size: int, greenlist_size: int) -> None:
        self.vocab_size = vocab_size
        self.greenlist_size = greenlist_size
        # Fisher-Yates step i draws modulo the n - i entries not yet settled; the kernels
        # divide by multiplying with these constants (randperm_kernels._fast_remainders).
        self._moduli = (vocab_size - np.arange(greenlist_size)).astype(np.uint64)
        self._magics = np.uint64(2**64 - 1) // self._moduli + np.uint64(1)

    def in_greenlists(self, seeds: np.ndarray, group_starts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """bool [len(tokens)]: token t of group g (``group_starts[g] <= t < group_starts[g + 1]``)
        is green for ``seeds[g]``. Seeds are mt19937 seeds (32 bits); tokens lie in the vocabulary."""
        green = np.empty(len(tokens), dtype=bool)
        kernels().in_greenlists(
            np.ascontiguousarray(seeds, dtype=np.uint64),
            np.ascontiguousarray(group_starts, dtype=np.int64),
            np.ascontiguousarray(tokens, dtype=np.int64),
            self._magics,
            self._moduli,
            green,
        )
        return green

    def greenlist_rows(self, seeds: np.ndarray) -> np.ndarray:
        """bool [len(seeds), vocab_size]: row r is True on the green list of ``seeds[r]``."""
        green = np.zeros((len(seeds), self.vocab_size), dtype=bool)
        kernels().greenlist_rows(np.ascontiguousarray(seeds, dtype=np.uint64), self._magics, self._moduli, green)
        return green


@functools.cache
def kernels() -> ModuleType:
    """The compiled kernels, imported on first use (randperm_kernels.py says why)."""
    return importlib.import_module("signet.watermark.randperm_kernels")
