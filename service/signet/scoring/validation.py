"""Input checks shared by the scoring functions.

Everything here turns caller input into float64 numpy arrays or raises ``ValueError``
with a message that names the offending argument; the routes turn that into a 422.

Engines compute log-probabilities in float32, so a certain token's logprob can come
back as a tiny positive number and k listed probabilities can sum to slightly more
than 1. ``TOLERANCE`` absorbs that rounding; anything beyond it is a caller error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 1e-4


def float_array(values: Sequence[float] | np.ndarray, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be {'a list' if ndim == 1 else 'a matrix'} of numbers") from error
    if array.ndim != ndim:
        shape = "a flat list" if ndim == 1 else f"a {ndim}-D array"
        raise ValueError(f"{name} must be {shape} of numbers, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN")
    return array


def logprob_array(
    values: Sequence[float] | np.ndarray, name: str, *, ndim: int = 1, allow_zero_probability: bool = False
) -> np.ndarray:
    """Natural-log probabilities: <= 0 (values up to TOLERANCE above 0 are rounding, set to 0).

    ``-inf`` (probability 0) is accepted only where it can occur, e.g. in a top-k list;
    a token that was generated or scored had a positive probability.
    """
    array = float_array(values, name, ndim)
    if np.isposinf(array).any() or array.max() > TOLERANCE:
        raise ValueError(f"{name} must be log-probabilities (<= 0), got a maximum of {array.max()}")
    if not allow_zero_probability and np.isneginf(array).any():
        raise ValueError(f"{name} must be finite log-probabilities (no -inf)")
    return np.minimum(array, 0.0)


def probability_array(
    values: Sequence[float] | np.ndarray, name: str, *, ndim: int = 1, sums_to_one: bool = True
) -> np.ndarray:
    """Probabilities in [0, 1]; with ``sums_to_one`` each distribution (last axis) is renormalised
    after checking that it sums to 1 within TOLERANCE."""
    array = float_array(values, name, ndim)
    if array.min() < -TOLERANCE or array.max() > 1.0 + TOLERANCE:
        raise ValueError(f"{name} must be probabilities in [0, 1], got values in [{array.min()}, {array.max()}]")
    array = np.clip(array, 0.0, 1.0)
    if sums_to_one:
        sums = array.sum(axis=-1, keepdims=True)
        worst = float(np.abs(sums - 1.0).max())
        if worst > TOLERANCE:
            raise ValueError(f"{name}: each distribution must sum to 1, one is off by {worst:.3g}")
        array = array / sums
    return array


def unit_square_matrix(values: Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    """A square n x n matrix of scores in [0, 1] (similarities, entailment probabilities); bools count as 0/1."""
    matrix = probability_array(values, name, ndim=2, sums_to_one=False)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be square (one row and one column per sample), got shape {matrix.shape}")
    return matrix


def label_array(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    """Non-negative integer labels (cluster ids)."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty flat list of integers")
    if not np.issubdtype(array.dtype, np.integer):  # bools are not numpy integers
        raise ValueError(f"{name} must be integers, got {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative")
    return array.astype(np.int64)
