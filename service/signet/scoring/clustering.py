"""Meaning classes among sampled answers, from pairwise entailment.

Two answers mean the same thing when each entails the other (bidirectional entailment,
Kuhn et al. 2023). The caller supplies ``entailment[i, j]``: the probability (or a
boolean verdict) that answer i, as premise, entails answer j, as hypothesis, from an
NLI model or the served LLM's label logprobs. The diagonal is ignored: every answer
entails itself.

A probability counts as entailment when it is above ``threshold`` (0.5 by default: the
entailment label is more likely than not). Booleans are 1.0 / 0.0, so any threshold
in [0, 1) reads them as given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse.csgraph import connected_components

from signet.scoring.validation import unit_square_matrix

ENTAILMENT_THRESHOLD = 0.5


def mutual_entailment(
    entailment: Sequence[Sequence[float]] | np.ndarray, threshold: float = ENTAILMENT_THRESHOLD
) -> np.ndarray:
    """Boolean n x n matrix: answers i and j entail each other (True on the diagonal)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    entails = unit_square_matrix(entailment, "entailment") > threshold
    both_ways = entails & entails.T
    np.fill_diagonal(both_ways, True)
    return both_ways


def cluster_by_bidirectional_entailment(
    entailment: Sequence[Sequence[float]] | np.ndarray, threshold: float = ENTAILMENT_THRESHOLD
) -> list[int]:
    """A class label per answer (0, 1, ... in order of first appearance), by greedy clustering.

    Answers are taken in order; each joins the first existing class whose first member
    (its representative) it entails both ways, or starts a new class. This is Kuhn et
    al.'s algorithm (also LM-Polygraph's and Farquhar et al.'s). Entailment judged by a
    model need not be transitive, so the result can depend on the answers' order.
    """
    equivalent = mutual_entailment(entailment, threshold)
    representatives: list[int] = []
    labels: list[int] = []
    for answer in range(equivalent.shape[0]):
        for label, representative in enumerate(representatives):
            if equivalent[representative, answer]:
                labels.append(label)
                break
        else:
            labels.append(len(representatives))
            representatives.append(answer)
    return labels


def num_semantic_sets(
    entailment: Sequence[Sequence[float]] | np.ndarray, threshold: float = ENTAILMENT_THRESHOLD
) -> int:
    """NumSemSets (Lin et al. 2023, "Generating with Confidence"): how many meaning classes.

    Counted as LM-Polygraph's NumSemSets does: connected components of the graph whose
    edges join answers that entail each other, which does not depend on the order of the
    answers. It can be smaller than the number of greedy classes when entailment is not
    transitive (a ~ b and b ~ c but not a ~ c: one set here, possibly two greedy classes).
    LM-Polygraph draws an edge when P(entail) > P(contradict) both ways; here, when
    P(entail) > threshold both ways.
    """
    count, _ = connected_components(mutual_entailment(entailment, threshold), directed=False)
    return int(count)
