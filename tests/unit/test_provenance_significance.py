"""The provenance test's statistics: the null tail, the union bound over comparisons, and
the combination with the watermark test at one alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signet.provenance.fingerprint import MAX_PIECES, MIN_PIECE_WORDS, pieces
from signet.provenance.significance import (
    CALIBRATED_NULL,
    Outcome,
    SimilarityNull,
    bonferroni,
    combine,
    p_value,
    smallest_p_value,
)

NULL = SimilarityNull(threshold=0.6, tail_fraction=1e-4, shape=0.0, scale=0.04)


def test_exceedance_is_one_at_or_below_the_threshold_and_falls_above():
    assert NULL.exceedance(0.2) == 1.0 and NULL.exceedance(0.6) == 1.0
    assert NULL.exceedance(0.64) == pytest.approx(1e-4 * math.exp(-1.0))
    values = [NULL.exceedance(s) for s in np.linspace(0.601, 1.0, 50)]
    assert all(later < earlier for earlier, later in zip(values, values[1:], strict=False))


def test_a_positive_shape_is_the_pareto_tail():
    heavy = SimilarityNull(threshold=0.6, tail_fraction=1e-4, shape=0.5, scale=0.04)
    assert heavy.exceedance(0.64) == pytest.approx(1e-4 * (1 + 0.5) ** -2)
    assert heavy.exceedance(0.8) > NULL.exceedance(0.8)  # heavier than exponential


def test_the_p_value_grows_with_the_comparisons_and_stops_at_one():
    similarity = 0.9
    one = p_value(similarity, 1, NULL)
    assert p_value(similarity, 1000, NULL) == pytest.approx(1000 * one)
    assert p_value(similarity, 10**30, NULL) == 1.0
    assert p_value(similarity, 0, NULL) == 1.0  # an empty registry matches nothing


def test_the_union_bound_holds_by_simulation():
    """Draw N similarities from the null's own tail model, many times: the share of
    searches whose best p-value is below alpha stays at most alpha. 4,000 searches at
    alpha 0.05: a valid test exceeds 0.05 + 4 sd (0.064) with probability below 1e-4."""
    rng = np.random.default_rng(7)
    null, size, searches, alpha = NULL, 2_000, 4_000, 0.05
    # Inverse-CDF draws: S <= threshold with probability 1 - tail_fraction, else threshold + Exp(scale).
    uniform = rng.random((searches, size))
    in_tail = uniform < null.tail_fraction
    excess = -null.scale * np.log(uniform / null.tail_fraction, where=in_tail, out=np.ones_like(uniform))
    similarity = np.where(in_tail, null.threshold + excess, 0.0)
    best = similarity.max(axis=1)
    rejected = np.mean([p_value(float(value), size, null) < alpha for value in best])
    assert rejected <= 0.064


def test_the_calibrated_null_is_conservative_in_form():
    assert CALIBRATED_NULL.shape >= 0.0 and 0 < CALIBRATED_NULL.tail_fraction < 1


def meaning(p: float, smallest: float = 1e-12) -> Outcome:
    return Outcome("meaning", p, smallest)


def rare(p: float, smallest: float = 1e-12) -> Outcome:
    return Outcome("rare_words", p, smallest)


@pytest.mark.parametrize(
    ("watermark", "provenance", "decided_by"),
    [(1e-9, 0.5, "watermark"), (0.5, 1e-9, "provenance"), (1e-9, 1e-9, "both"), (0.5, 0.5, None)],
)
def test_combined_test_names_the_evidence_that_rejected(watermark, provenance, decided_by):
    test = combine(watermark, [meaning(provenance)], alpha=1e-3)
    assert test.decided_by == decided_by and test.rule == "both_at_half_alpha"
    assert test.p_value == min(1.0, 2 * min(watermark, provenance))


def test_each_test_gets_half_of_alpha():
    assert combine(6e-4, [meaning(1.0)], alpha=1e-3).decided_by is None  # below alpha, not below alpha / 2
    assert combine(4e-4, [meaning(1.0)], alpha=1e-3).decided_by == "watermark"


def test_a_provenance_test_that_cannot_reject_leaves_all_of_alpha_to_the_watermark():
    # 2 pieces against 100,000 vectors: even a copy gets p = 1.1e-3, not below alpha / 2
    smallest = smallest_p_value(2 * 100_000)
    assert 5e-4 < smallest == p_value(1.0, 2 * 100_000)
    test = combine(6e-4, [meaning(smallest, smallest)], alpha=1e-3)
    assert test.decided_by == "watermark" and test.p_value == 6e-4 and test.rule == "watermark_at_alpha"
    assert test.tests == ("watermark",)
    assert combine(1.2e-3, [meaning(smallest, smallest)], alpha=1e-3).decided_by is None
    # 2 pieces against 10,000 vectors: a copy would reject, so each test keeps half
    assert 2 * smallest_p_value(2 * 10_000) < 1e-3
    test = combine(6e-4, [meaning(1.0, smallest_p_value(2 * 10_000))], alpha=1e-3)
    assert test.decided_by is None and test.rule == "both_at_half_alpha"


def test_three_tests_share_alpha_in_thirds_and_name_what_rejected():
    test = combine(0.5, [meaning(0.5), rare(3e-4)], alpha=1e-3)
    assert test.tests == ("watermark", "meaning", "rare_words")
    with pytest.raises(ValueError):  # /detect combines two at most: only those splits are named
        _ = test.rule
    assert test.rejected == ("rare_words",) and test.decided_by == "provenance"
    assert test.p_value == pytest.approx(9e-4)
    assert combine(0.5, [meaning(0.5), rare(3.4e-4)], alpha=1e-3).decided_by is None  # not below alpha / 3
    both = combine(1e-9, [meaning(1e-9), rare(0.5)], alpha=1e-3)
    assert both.decided_by == "both" and both.rejected == ("watermark", "meaning")


def test_only_the_registry_tests_that_can_reject_at_their_share_take_part():
    """Taken in order of their smallest p-value, as many as can each reach alpha / (those taking
    part): the choice depends on the sizes only, never on the p-values found."""
    # by meaning a copy reaches 4e-4, below alpha / 2 but not alpha / 3: with rare words (1e-9)
    # both cannot take part at alpha / 3, so rare words, the smaller, take part alone
    test = combine(0.5, [meaning(1e-9, 4e-4), rare(4e-4, 1e-9)], alpha=1e-3)
    assert test.tests == ("watermark", "rare_words") and test.rejected == ("rare_words",)
    # the same sizes decide the same way when meaning's p-value is the copy's own
    assert combine(0.5, [meaning(4e-4, 4e-4), rare(0.5, 1e-9)], alpha=1e-3).tests == ("watermark", "rare_words")
    # neither can: the watermark has all of alpha
    alone = combine(9e-4, [meaning(1.0, 0.6), rare(1.0, 1.0)], alpha=1e-3)
    assert alone.tests == ("watermark",) and alone.rejected == ("watermark",) and alone.p_value == 9e-4


def test_the_registry_alone_shares_alpha_between_its_own_tests():
    assert bonferroni([], [meaning(4e-4), rare(0.5)], alpha=1e-3).rejected == ("meaning",)
    assert bonferroni([], [meaning(6e-4), rare(0.5)], alpha=1e-3).rejected == ()
    assert bonferroni([], [meaning(6e-4, 1e-12), rare(1.0, 1.0)], alpha=1e-3).rejected == ("meaning",)
    assert bonferroni([], [meaning(1.0, 1.0), rare(1.0, 1.0)], alpha=1e-3).tests == ()


def test_a_similarity_over_1_from_rounding_counts_as_a_copy():
    assert p_value(1.0005, 1000) == p_value(1.0, 1000) == smallest_p_value(1000)


def test_pieces_cut_at_sentence_ends_within_the_word_limit():
    text = "One two three four. Five six seven. Eight nine ten eleven twelve. " * 4
    found = pieces(text, piece_words=10)
    assert all(len(piece.split()) <= 10 for piece in found[:-1])
    assert " ".join(found).split() == text.split()  # nothing lost or repeated
    assert all(piece.endswith(".") for piece in found)


def test_a_sentence_longer_than_a_piece_is_cut_and_pieces_are_capped():
    assert [len(piece.split()) for piece in pieces("word " * 25, piece_words=10)] == [10, 10, 5]
    assert [len(piece.split()) for piece in pieces("word " * 21, piece_words=10)] == [10, 11]
    assert len(pieces("word. " * 1000, piece_words=2, max_pieces=7)) == 7
    assert pieces("  \n ") == []


def test_a_short_closing_sentence_is_not_a_piece_of_its_own():
    """Boilerplate alone matched another text's closing line at similarity 0.87."""
    body = "The budget lists every cost of the month in one column. " * 12  # 132 words
    found = pieces(body + "Let me know if you have any other questions!")
    assert [len(piece.split()) for piece in found] == [141]  # 120 + 12 + 9, one piece
    found = pieces(body[: len(body) // 2 * 2] + " " + body)
    assert all(len(piece.split()) >= MIN_PIECE_WORDS for piece in found)


def test_a_short_sentence_anywhere_is_topped_up_not_a_piece_of_its_own():
    """A short sentence before a long run without sentence ends (a code block, a list) was a
    piece of 4 words, outside the null's domain: a stock opening matched at similarity 1."""
    code = "\n".join(f"x{index} = compute(x{index - 1}, step={index})" for index in range(1, 90))
    found = pieces("Here is the code:\n\n" + code)  # 4 + 356 words
    assert [len(piece.split()) for piece in found] == [120, 120, 120]
    assert found[0].startswith("Here is the code: x1 = compute(x0,")
    text = "Thanks for asking. " + "and then some more " * 40 + ". Done."  # 3 words, then 162
    found = pieces(text)
    assert [len(piece.split()) for piece in found] == [120, 45]
    assert " ".join(found).split() == text.split()


def test_pieces_take_linear_time_on_one_unbroken_sentence():
    assert len(pieces("word " * 400_000)) == MAX_PIECES
