"""Distances between two answer distributions over the same options (MQAG, Manakul et al. 2023).

MQAG asks multiple-choice questions about a summary, answers each from the source and
from the summary, and compares the two answer distributions p (source) and q (summary);
the more they differ, the less the summary agrees with its source. The same distances
compare a passage with a sampled passage in SelfCheckGPT's MQAG variant.

Definitions (textbook ones; SelfCheckGPT's ``utils.py`` differs in two places, noted):

* KL(p || q) = sum_i p_i log(p_i / q_i), after smoothing both: p <- (p + eps) / (1 + n eps),
  eps = 1e-12 as in SelfCheckGPT, so that an option that q rules out but p allows adds
  p_i log(p_i / eps) (large, but finite) instead of inf. Not symmetric.
* total variation TV = ½ sum_i |p_i - q_i|, in [0, 1] (SelfCheckGPT: max_i |p_i - q_i|).
* Hellinger H = sqrt(½ sum_i (sqrt p_i - sqrt q_i)^2), in [0, 1], and its square H^2
  (SelfCheckGPT: sum_i (sqrt p_i - sqrt q_i)^2 / sqrt 2, neither of the two).
  H^2 <= TV <= sqrt(2) H always holds.
* counting: 1 if the two most likely options differ, else 0 (ties go to the first option).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr

from signet.scoring.validation import probability_array

KL_SMOOTHING = 1e-12


def _pair(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = probability_array(p, "p")
    second = probability_array(q, "q")
    if first.shape != second.shape:
        raise ValueError(f"p and q must be over the same options, got {first.size} and {second.size} probabilities")
    return first, second


def kl_divergence(
    p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray, smoothing: float = KL_SMOOTHING
) -> float:
    """KL(p || q) in nats, both smoothed by ``smoothing`` and renormalised first."""
    first, second = _pair(p, q)
    if not smoothing >= 0.0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    first = (first + smoothing) / (1.0 + smoothing * first.size)
    second = (second + smoothing) / (1.0 + smoothing * second.size)
    return float(rel_entr(first, second).sum())


def total_variation(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """½ sum |p - q|: the largest difference in probability the two give to any set of options."""
    first, second = _pair(p, q)
    return float(0.5 * np.abs(first - second).sum())


def hellinger_squared(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """½ sum (sqrt p - sqrt q)^2 = 1 - sum sqrt(p q)."""
    first, second = _pair(p, q)
    return float(0.5 * ((np.sqrt(first) - np.sqrt(second)) ** 2).sum())


def hellinger_distance(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """sqrt(½ sum (sqrt p - sqrt q)^2): a metric on distributions, in [0, 1]."""
    return float(np.sqrt(hellinger_squared(p, q)))


def argmax_disagreement(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> int:
    """MQAG's counting score: 1 if p and q pick different options, else 0."""
    first, second = _pair(p, q)
    return int(np.argmax(first) != np.argmax(second))


@dataclass(frozen=True)
class AnswerDistances:
    kl: float
    total_variation: float
    hellinger: float
    hellinger_squared: float
    counting: float  # 0/1 for one question; the fraction of disagreeing questions in an average


def answer_distances(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> AnswerDistances:
    """All of MQAG's distances between one question's two answer distributions."""
    squared = hellinger_squared(p, q)
    return AnswerDistances(
        kl=kl_divergence(p, q),
        total_variation=total_variation(p, q),
        hellinger=float(np.sqrt(squared)),
        hellinger_squared=squared,
        counting=float(argmax_disagreement(p, q)),
    )


def mqag_score(
    source_answers: Sequence[Sequence[float]],
    summary_answers: Sequence[Sequence[float]],
    answerable: Sequence[bool] | None = None,
) -> AnswerDistances:
    """Each distance averaged over the questions kept (all, or those marked ``answerable``).

    MQAG drops questions the source cannot answer: their answer distributions carry no
    information about consistency. Questions may have different numbers of options.
    """
    if len(source_answers) == 0:
        raise ValueError("source_answers must hold at least one question")
    if len(summary_answers) != len(source_answers):
        raise ValueError(f"{len(source_answers)} source answers but {len(summary_answers)} summary answers")
    if answerable is None:
        answerable = [True] * len(source_answers)
    elif len(answerable) != len(source_answers):
        raise ValueError(f"answerable has {len(answerable)} flags for {len(source_answers)} questions")
    distances = []
    for index, (p, q, keep) in enumerate(zip(source_answers, summary_answers, answerable, strict=True)):
        if not keep:
            continue
        try:
            distances.append(answer_distances(p, q))
        except ValueError as error:
            raise ValueError(f"question {index}: {error}") from error
    if not distances:
        raise ValueError("no answerable question: MQAG needs at least one")
    return AnswerDistances(
        kl=float(np.mean([d.kl for d in distances])),
        total_variation=float(np.mean([d.total_variation for d in distances])),
        hellinger=float(np.mean([d.hellinger for d in distances])),
        hellinger_squared=float(np.mean([d.hellinger_squared for d in distances])),
        counting=float(np.mean([d.counting for d in distances])),
    )
