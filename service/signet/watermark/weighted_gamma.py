"""The exact null distribution of dual-key Gumbel scores: a weighted sum of two Gamma(T, 1).

vLLM's ``dual_key_gumbel`` detector scores a token ``(1 - alpha) * E_A + alpha * E_B``, where
``E_A`` and ``E_B`` are its ``-log(1 - u)`` scores under the two derived keys: independent
Exp(1) in text written without the key. T scored tokens sum to S = a X + b Y with X, Y
independent Gamma(T, 1), a = max(1 - alpha, alpha) and b = min(1 - alpha, alpha) (the sum
is symmetric in the two weights). vLLM's ``_get_p_value`` replaces S by a Gamma with the
same mean and variance; its tail falls like exp(-s / (a^2 + b^2)) where the true one falls
like exp(-s / a), so it understates p-values by orders of magnitude deep in the tail
(at alpha 0.1 and T = 25: 9.8e-22 where the exact p is 1e-20, 2.9e-108 where it is 1e-100;
``bench/dual_key_p_values.py``).

Method: condition on Y, the variable with the smaller weight:

    P(S >= s) = Q(T, s / b) + integral over 0 <= y <= s / b of f_T(y) Q(T, (s - b y) / a) dy

with f_T the Gamma(T, 1) density and Q(T, x) its survival function (``gammaincc``). The
integrand is log-concave: f_T is log-concave for T >= 1, so is the survival function of a
log-concave density, and an affine argument keeps that. So its log g is concave with one
peak y* (found by safeguarded Newton on g'), and we integrate e^g between the points where g has
fallen ``_DEPTH`` = 40 below g(y*), with ``_NODES`` Gauss-Legendre nodes on each side of
the peak, summing in log space so nothing underflows above p = 1e-308.

Why the truncation error is bounded: each edge is a Newton step for g = g(y*) - 40. A
tangent of a concave function lies above it, so every Newton step lands where g is at most
that level, on the far side of the true crossing: the window holds all of the integrand
above e^-40 of its peak. Beyond an edge y_e at depth D, concavity gives
``integral beyond y_e <= e^g(y_e) / |g'(y_e)|`` and ``integral from y* to y_e >=
e^g(y*) (y_e - y*) (1 - e^-D) / D`` with ``|g'(y_e)| >= D / (y_e - y*)``: the part cut off is
at most e^-D / (1 - e^-D) of the part kept, on each side. ``edge`` checks each edge's depth
and accepts D >= 39 (rounding), so that is at most 1.2e-17.

The quadrature error has no such bound; it is measured instead, against an exact mpmath
evaluation of the partial-fraction form of S's tail (finite for integer T, summed at
whatever precision its cancellation needs; ``_exact_tail`` in
``tests/unit/test_gumbel_dual_key.py``, which checks a smaller grid on every run). Over
T in {1, 2, 3, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}, alpha in {0, 0.001, 0.01,
0.1, 0.3, 0.45, 0.49, 0.5, 0.9, 1} and p in {0.5, 1e-2, 1e-6, 1e-20, 1e-100, 1e-300}, and at
400 random (alpha, T <= 5000, 1e-300 < p < 0.9), the largest relative error was 8.6e-12
(the contract is 1e-9). Halving the nodes to 16 a side gives errors up to 2e-7; 24 a side
already stays below 2e-11. What remains is the 1e-12 error of ``gammaincc`` deep in its tail
and the rounding of log f_T(y), whose terms reach 4e4 at T = 5000 (it grows in proportion
to T). alpha 0 and 1 (one key) and 0.5 (S = Gamma(2T, 1) / 2) are Gamma tails.

Cost: about 80 evaluations of ``gammaincc`` per (sum, count) pair, most at the 64 nodes:
500 pairs with T up to 4000 take 8 to 14 ms on one core, as do the 645 windows that
``windows.best_window`` tests on a 4000-token text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import gammaincc, gammaln, xlogy

from signet.watermark.statistics import MAX_GUMBEL_SCORE

_DEPTH = 40.0  # integrand window: where the integrand has fallen to e^-40 of its peak
_NODES = 32  # Gauss-Legendre nodes on each side of the peak
_EDGE_STEPS = 3  # Newton steps towards each window edge
_PEAK_STEPS = 60  # at most; the peak search usually converges in 4 to 6
# gammaincc is accurate to about 1e-12 relative down to here; below, log Q comes from its series.
_DIRECT_FLOOR = 1e-280
_SERIES_TOLERANCE = 1e-17
_SERIES_CHECK_EVERY = 8  # terms between convergence checks: the check costs more than a term
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(_NODES)


class WeightedGammaNull:
    """Sums of ``(1 - alpha) E_A + alpha E_B`` scores, E_A and E_B independent Exp(1): exact tails."""

    token_mean = 1.0

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must lie between 0 and 1")
        self.alpha = alpha
        self._large = max(1.0 - alpha, alpha)
        self._small = min(1.0 - alpha, alpha)

    @property
    def token_sd(self) -> float:
        return math.sqrt((1.0 - self.alpha) ** 2 + self.alpha**2)

    def p_values(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        sums, counts = np.broadcast_arrays(np.asarray(score_sums, dtype=np.float64), np.asarray(counts))
        log_p = np.zeros(sums.shape)  # p = 1: no scored token, or a sum no larger than 0
        log_p[np.isnan(sums)] = np.nan
        log_p[(counts > 0) & np.isposinf(sums)] = -np.inf
        live = (counts > 0) & (sums > 0) & np.isfinite(sums)
        # Near p = 1 the two parts of the tail can sum a few 1e-12 above 1: a probability is at most 1.
        log_p[live] = np.minimum(self.log_survival(sums[live], counts[live]), 0.0)
        return np.exp(log_p)

    def log_survival(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """log P(S >= sum) for finite sums > 0 and counts >= 1 (1-D arrays of one length)."""
        shapes = np.asarray(counts, dtype=np.float64)
        if self._small == 0.0:  # one key: Gamma(T, 1)
            return _gamma_tail(shapes, sums / self._large)[0]
        if self._small == self._large:  # alpha 0.5: Gamma(2T, 1) / 2
            return _gamma_tail(2.0 * shapes, sums / self._large)[0]
        return _Integrand.of(shapes, sums, self._large, self._small).log_integral()

    def z_scores(self, score_sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (score_sums - counts) / (self.token_sd * np.sqrt(counts))
        return np.where(counts > 0, z, np.nan)

    def smallest_p_value(self, count: int) -> float:
        # Each key's score is at most MAX_GUMBEL_SCORE (float32 uniforms), so a token's
        # weighted score is too: the best outcome scores that on every token.
        if count == 0:
            return 1.0
        return float(self.p_values(np.array([MAX_GUMBEL_SCORE * count]), np.array([count]))[0])


@dataclass(frozen=True)
class _Integrand:
    """g(y) = log f_T(y) + log Q(T, u - c y) on 0 <= y <= s / b, one row per (sum, count) pair."""

    shapes: np.ndarray  # T
    u: np.ndarray  # s / a
    y_max: np.ndarray  # s / b: beyond it Q = 1, and that part is Q(T, s / b) in closed form
    log_norm: np.ndarray  # log Gamma(T)
    ratio: float  # c = b / a, in (0, 1)

    @classmethod
    def of(cls, shapes: np.ndarray, sums: np.ndarray, large: float, small: float) -> _Integrand:
        return cls(shapes, sums / large, sums / small, gammaln(shapes), small / large)

    def log_integral(self) -> np.ndarray:
        peak = self.peak()
        g_peak, _, g2 = self.derivatives(peak)
        level = g_peak - _DEPTH
        with np.errstate(divide="ignore"):
            # where a Gaussian of this curvature falls to the level (infinitely far for T = 1)
            width = np.sqrt(2.0 * _DEPTH / np.maximum(-g2, 0.0))
        left = self.edge(peak, np.where(peak > width, peak - width, 0.25 * peak), level, np.zeros_like(peak))
        right = self.edge(peak, np.minimum(peak + width, self.y_max), level, self.y_max)
        terms = [self.gauss_legendre(left, peak), self.gauss_legendre(peak, right)]
        terms.append(_gamma_tail(self.shapes, self.y_max)[0][:, np.newaxis])
        return _log_sum_exp(np.concatenate(terms, axis=1))

    def peak(self) -> np.ndarray:
        """Where g is largest, by Newton's method kept inside a bracket of the root of g'.

        g'(y) = (T - 1) / y - 1 + c h with 0 <= h <= 1 (h is Q's hazard rate), so g' >= 0 at
        y = T - 1 and g' <= 0 at (T - 1) / (1 - c). When s / b <= T - 1, g rises up to the end
        of its domain; for T = 1 it falls from y = 0.
        """
        shapes, y_max = self.shapes, self.y_max
        low = np.minimum(shapes - 1.0, y_max)
        high = np.minimum((shapes - 1.0) / (1.0 - self.ratio), y_max)
        y = 0.5 * (low + high)
        searching = np.flatnonzero(low < high)
        for _ in range(_PEAK_STEPS):
            if len(searching) == 0:
                break
            _, g1, g2 = self._rows(searching).derivatives(y[searching])
            rising = g1 > 0
            low[searching] = np.where(rising, y[searching], low[searching])
            high[searching] = np.where(rising, high[searching], y[searching])
            newton = y[searching] - g1 / g2
            inside = (newton > low[searching]) & (newton < high[searching])
            y[searching] = np.where(inside, newton, 0.5 * (low[searching] + high[searching]))
            # done when the step taken was under 1e-6 of the peak's width
            searching = searching[np.abs(g1) > 1e-6 * np.sqrt(-g2)]
        return y

    def edge(self, peak: np.ndarray, start: np.ndarray, level: np.ndarray, end: np.ndarray) -> np.ndarray:
        """A point between ``peak`` and the domain's ``end`` (0 or s / b) beyond which g < ``level``.

        Newton steps for g(y) = level from ``start``: by concavity every step lands at or
        beyond the crossing (see the module docstring) and the later ones move back towards
        it. A step past 0 goes a quarter of the way there instead; one past s / b stops
        there (and rounding cannot carry a step past the peak). The last point is checked:
        where g is still above the level, the window runs to the end of the domain.
        """
        lowest, highest = np.minimum(peak, end), np.maximum(peak, end)
        y = np.where(peak == end, end, start)
        moving = np.flatnonzero((peak != end) & (y > 0.0))
        for _ in range(_EDGE_STEPS):
            g, g1, _ = self._rows(moving).derivatives(y[moving])
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = y[moving] - (g - level[moving]) / g1
            newton = np.where(newton > 0.0, newton, 0.25 * y[moving])
            newton = np.clip(newton, lowest[moving], highest[moving])
            y[moving] = np.where(np.isfinite(newton), newton, end[moving])
            moving = moving[y[moving] != end[moving]]
        # Rounding can leave g a hair above the level it was solved for: allow 1 of the 40.
        inside = moving[self._rows(moving).log(y[moving]) > level[moving] + 1.0]
        y[inside] = end[inside]
        return y

    def gauss_legendre(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """log of (node weight * e^g(node)) at each Gauss-Legendre node of [start, end], [rows, nodes]."""
        half = 0.5 * (end - start)[:, np.newaxis]
        nodes = (0.5 * (start + end))[:, np.newaxis] + half * _GAUSS_NODES
        with np.errstate(divide="ignore"):
            log_weights = np.log(half * _GAUSS_WEIGHTS)
        return log_weights + self._rows((slice(None), np.newaxis)).log(nodes)

    def log(self, y: np.ndarray) -> np.ndarray:
        log_q, _ = _gamma_tail(self.shapes, np.maximum(self.u - self.ratio * y, 0.0))
        return xlogy(self.shapes - 1.0, y) - y - self.log_norm + log_q

    def derivatives(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """g, g' and g'' at y (one point per row)."""
        shapes, c = self.shapes, self.ratio
        x = np.maximum(self.u - c * y, 0.0)
        log_q, hazard = _gamma_tail(shapes, x)
        g = xlogy(shapes - 1.0, y) - y - self.log_norm + log_q
        g1 = _quotient(shapes - 1.0, y) - 1.0 + c * hazard
        # the hazard's slope: h' = h (h - 1 + (T - 1) / x)
        with np.errstate(invalid="ignore"):
            hazard_slope = np.where(hazard > 0.0, hazard * (hazard - 1.0 + _quotient(shapes - 1.0, x)), 0.0)
        g2 = -_quotient(shapes - 1.0, y * y) - c * c * hazard_slope
        return g, g1, g2

    def _rows(self, index) -> _Integrand:
        """Some of the rows (an index array), or all of them as a column (``(slice(None), None)``)."""
        return replace(
            self, shapes=self.shapes[index], u=self.u[index], y_max=self.y_max[index], log_norm=self.log_norm[index]
        )


def _gamma_tail(shapes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log Q(T, x) and the hazard rate f_T(x) / Q(T, x) of Gamma(T, 1), for whole T >= 1, x >= 0."""
    shapes, x = np.broadcast_arrays(shapes, x)
    q = gammaincc(shapes, x)
    log_density = xlogy(shapes - 1.0, x) - x - gammaln(shapes)
    log_q = np.empty(x.shape)
    hazard = np.empty(x.shape)
    direct = (q > _DIRECT_FLOOR) | ~np.isfinite(x)
    log_q[direct] = np.log(q[direct])
    hazard[direct] = np.exp(log_density[direct] - log_q[direct])
    if not direct.all():
        series = _tail_series(shapes[~direct], x[~direct])
        log_q[~direct] = log_density[~direct] + np.log(series)
        hazard[~direct] = 1.0 / series
    return log_q, hazard


def _tail_series(shapes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Q(T, x) / f_T(x) = sum over k < T of (T-1)(T-2)...(T-k) / x^k, for whole T and x > T.

    Where Q is below 1e-280, x is far above T, so the terms fall at least as fast as
    (T - 1) / x < 1 and all are positive: summing until a term is 1e-17 of the total
    leaves out less than 1e-17 / (1 - (T - 1) / x) of it (about 90 terms at T = 4000).
    """
    term = np.ones(x.shape)
    total = np.ones(x.shape)
    active = np.arange(len(x))
    shapes, x = shapes.copy(), x.copy()  # of the active elements only, from here on
    for k in range(1, int(shapes.max())):
        term *= np.maximum(shapes - k, 0.0) / x
        total[active] += term
        if k % _SERIES_CHECK_EVERY == 0:
            going = term > _SERIES_TOLERANCE * total[active]
            if not going.any():
                break
            active, term, shapes, x = active[going], term[going], shapes[going], x[going]
    return total


def _quotient(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the numerator is 0 (T = 1 has no y^(T-1) factor)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(numerator == 0.0, 0.0, numerator / denominator)


def _log_sum_exp(terms: np.ndarray) -> np.ndarray:
    largest = terms.max(axis=1)
    return largest + np.log(np.exp(terms - largest[:, np.newaxis]).sum(axis=1))
