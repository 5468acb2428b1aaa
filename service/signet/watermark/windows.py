"""Windowed detection (WinMax): find a watermarked span inside longer human text.

Kirchenbauer et al. ("On the Reliability of Watermarks") take the best z-score over
windows, but the reference reports that window's plain p-value, which ignores that
many windows were tried: with hundreds of windows, some window of human text looks
significant by chance. Here every window tested is counted, and the best window's
p-value is multiplied by that count (Bonferroni). That bound holds whatever the
dependence between overlapping windows, so the false-positive rate stays at or
below alpha (tests/unit/test_windows.py checks it by simulation).

To keep the count small, and the correction mild, windows are not all spans: sizes
double from ``min_window`` (in scored tokens) and starts move by half a window. Any
watermarked span of L >= 2 * min_window scored tokens fully contains a tested window
of at least L / 4 tokens. The whole text is one more window of the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signet.watermark.evidence import TokenEvidence
from signet.watermark.statistics import NullDistribution


@dataclass(frozen=True)
class WindowResult:
    token_start: int  # index of the window's first token in the input
    token_end: int  # one past its last token
    num_scored_tokens: int
    score_sum: float
    p_value: float  # this window alone
    corrected_p_value: float  # min(1, p_value * num_windows)
    num_windows: int  # windows tested, the whole text included


def window_grid(num_scored: int, min_window: int) -> list[tuple[int, int]]:
    """(start, size) pairs over scored-token indices; the whole text comes last."""
    grid: list[tuple[int, int]] = []
    size = min_window
    while size < num_scored:
        stride = max(size // 2, 1)
        starts = list(range(0, num_scored - size + 1, stride))
        if starts[-1] != num_scored - size:
            starts.append(num_scored - size)  # the tail is covered too
        grid.extend((start, size) for start in starts)
        size *= 2
    grid.append((0, num_scored))
    return grid


def best_window(evidence: TokenEvidence, null: NullDistribution, min_window: int) -> WindowResult | None:
    """The most significant window, with its p-value corrected for all windows tried.

    None when the text has no scored token.
    """
    scored_positions = np.flatnonzero(evidence.is_scored)
    num_scored = len(scored_positions)
    if num_scored == 0:
        return None
    grid = np.array(window_grid(num_scored, min_window), dtype=np.int64)
    starts, sizes = grid[:, 0], grid[:, 1]
    cumulative = np.concatenate([[0.0], np.cumsum(evidence.scores[scored_positions])])
    sums = cumulative[starts + sizes] - cumulative[starts]
    p_values = null.p_values(sums, sizes)
    best = int(np.argmin(p_values))
    start, size = int(starts[best]), int(sizes[best])
    # Report the span in token positions: from the first scored token of the window
    # to just after its last one.
    return WindowResult(
        token_start=int(scored_positions[start]),
        token_end=int(scored_positions[start + size - 1]) + 1,
        num_scored_tokens=size,
        score_sum=float(sums[best]),
        p_value=float(p_values[best]),
        corrected_p_value=min(1.0, float(p_values[best]) * len(grid)),
        num_windows=len(grid),
    )
