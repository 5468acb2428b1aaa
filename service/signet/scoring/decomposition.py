"""Total uncertainty = aleatoric + epistemic, over an ensemble of M predictive distributions.

The members are the same model under different seeds, prompt paraphrases, or several
models, each giving a next-token distribution p_m at the same position of the same
answer. With the ensemble's mean predictive p̄ = (1/M) sum_m p_m:

    total      = H(p̄)                          entropy of the mean predictive
    aleatoric  = (1/M) sum_m H(p_m)             expected entropy: noise every member sees
    epistemic  = (1/M) sum_m KL(p_m || p̄)       mutual information between outcome and member

and ``total = aleatoric + epistemic`` exactly (expand KL(p_m || p̄) = -H(p_m) - sum p_m log p̄
and average over m). This is the standard entropy-based split (Depeweg et al. 2018;
Schweighofer et al., "On Information-Theoretic Measures of Predictive Uncertainty").
Epistemic is computed as the mean KL, a sum of non-negative terms, rather than as a
difference, so it never comes out negative by rounding. Over a sequence the per-token
values are summed (the chain rule, each token conditioned on the same prefix for every
member).

With top-k logprobs the members list different tokens. ``align_top_k`` makes them
comparable by coarse-graining: the outcomes are the tokens every member listed, plus one
"other" outcome holding each member's remaining mass. Every member's probability of every
outcome is then known exactly, so the identity still holds, and since merging outcomes
never raises an entropy or a mutual information, all three values are lower bounds on
their full-vocabulary counterparts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr

from signet.scoring.entropy import shannon_entropy
from signet.scoring.validation import TOLERANCE, logprob_array, probability_array


@dataclass(frozen=True)
class UncertaintyDecomposition:
    total: float  # H(mean predictive)
    aleatoric: float  # mean of the members' entropies
    epistemic: float  # mutual information = total - aleatoric


@dataclass(frozen=True)
class SequenceDecomposition:
    per_token: tuple[UncertaintyDecomposition, ...]
    sequence: UncertaintyDecomposition  # the per-token values summed over the sequence


def decompose(member_probabilities: Sequence[Sequence[float]] | np.ndarray) -> UncertaintyDecomposition:
    """Split one position's uncertainty; ``member_probabilities`` is M x V, each row a distribution."""
    members = probability_array(member_probabilities, "member_probabilities", ndim=2)
    mean_predictive = members.mean(axis=0)
    return UncertaintyDecomposition(
        total=float(shannon_entropy(mean_predictive)),
        aleatoric=float(shannon_entropy(members).mean()),
        epistemic=float(rel_entr(members, mean_predictive).sum(axis=1).mean()),
    )


def decompose_sequence(per_token_member_probabilities: Sequence[np.ndarray]) -> SequenceDecomposition:
    """Decompose every position (each M x V_t, one M for all) and sum over the sequence."""
    if len(per_token_member_probabilities) == 0:
        raise ValueError("per_token_member_probabilities must not be empty")
    per_token = []
    num_members = None
    for position, member_probabilities in enumerate(per_token_member_probabilities):
        try:
            decomposition = decompose(member_probabilities)
        except ValueError as error:
            raise ValueError(f"token {position}: {error}") from error
        members_here = len(member_probabilities)
        if num_members is not None and members_here != num_members:
            raise ValueError(f"token {position} has {members_here} members, token 0 has {num_members}")
        num_members = members_here
        per_token.append(decomposition)
    return SequenceDecomposition(
        per_token=tuple(per_token),
        sequence=UncertaintyDecomposition(
            total=sum(token.total for token in per_token),
            aleatoric=sum(token.aleatoric for token in per_token),
            epistemic=sum(token.epistemic for token in per_token),
        ),
    )


def align_top_k(member_top_logprobs: Sequence[Mapping[int, float]]) -> np.ndarray:
    """M x (|shared| + 1) probabilities: the tokens every member listed (ascending id), then "other".

    ``member_top_logprobs[m]`` maps token id -> logprob as member m's engine listed them.
    """
    if len(member_top_logprobs) == 0:
        raise ValueError("member_top_logprobs must hold at least one member")
    for index, listed in enumerate(member_top_logprobs):
        if len(listed) == 0:
            raise ValueError(f"member_top_logprobs[{index}] lists no tokens")
    shared = sorted(set.intersection(*(set(listed) for listed in member_top_logprobs)))
    rows = []
    for index, listed in enumerate(member_top_logprobs):
        logprobs = logprob_array(list(listed.values()), f"member_top_logprobs[{index}]", allow_zero_probability=True)
        listed_mass = float(np.exp(logprobs).sum())
        if listed_mass > 1.0 + TOLERANCE:
            raise ValueError(f"member_top_logprobs[{index}]: the listed probabilities sum to {listed_mass:.6g} > 1")
        probability_of = dict(zip(listed.keys(), np.exp(logprobs), strict=True))
        shared_probabilities = np.array([probability_of[token] for token in shared], dtype=np.float64)
        other = max(0.0, 1.0 - float(shared_probabilities.sum()))
        rows.append(np.append(shared_probabilities, other))
    return np.array(rows)
