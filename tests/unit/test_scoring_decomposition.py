"""total = aleatoric + epistemic: hand-computed ensembles, the identity on random ones, top-k alignment."""

import math

import numpy as np
import pytest

from signet.scoring.decomposition import align_top_k, decompose, decompose_sequence

LOG2 = math.log(2)


def test_pure_disagreement_and_pure_noise():
    # two confident members that disagree: mean (1/2, 1/2) -> total log 2, aleatoric 0, epistemic log 2
    disagree = decompose([[1.0, 0.0], [0.0, 1.0]])
    assert (disagree.total, disagree.aleatoric, disagree.epistemic) == pytest.approx((LOG2, 0.0, LOG2))
    # two members that agree on a coin flip: all of it is aleatoric
    agree = decompose([[0.5, 0.5], [0.5, 0.5]])
    assert (agree.total, agree.aleatoric, agree.epistemic) == pytest.approx((LOG2, LOG2, 0.0))


def test_mixed_ensemble_by_hand():
    # p1 = (1, 0), p2 = (1/2, 1/2); mean (3/4, 1/4)
    # total = 3/4 log(4/3) + 1/4 log 4 = 3/4 log(4/3) + 1/2 log 2
    # aleatoric = (0 + log 2) / 2 = 1/2 log 2
    # epistemic = (KL(p1 || mean) + KL(p2 || mean)) / 2 = (log(4/3) + 1/2 log(2/3) + 1/2 log 2) / 2 = 3/4 log(4/3)
    result = decompose([[1.0, 0.0], [0.5, 0.5]])
    assert result.total == pytest.approx(0.75 * math.log(4 / 3) + 0.5 * LOG2, rel=1e-12)
    assert result.aleatoric == pytest.approx(0.5 * LOG2, rel=1e-12)
    assert result.epistemic == pytest.approx(0.75 * math.log(4 / 3), rel=1e-12)


def test_identity_on_random_ensembles():
    rng = np.random.default_rng(11)
    for num_members in (1, 2, 5):
        for vocab in (2, 7, 30):
            for concentration in (0.1, 1.0, 10.0):
                members = rng.dirichlet(np.full(vocab, concentration), size=num_members)
                result = decompose(members)
                assert result.total == pytest.approx(result.aleatoric + result.epistemic, abs=1e-12)
                assert result.epistemic >= 0.0
                assert result.aleatoric <= result.total + 1e-12
                assert result.total <= math.log(vocab) + 1e-12
                if num_members == 1:
                    assert result.epistemic == pytest.approx(0.0, abs=1e-15)


def test_sequence_sums_tokens():
    tokens = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])]
    result = decompose_sequence(tokens)
    assert len(result.per_token) == 2
    # (log 2, 0, log 2) + (log 2, log 2, 0)
    assert (result.sequence.total, result.sequence.aleatoric, result.sequence.epistemic) == pytest.approx(
        (2 * LOG2, LOG2, LOG2)
    )
    assert result.sequence.total == pytest.approx(result.sequence.aleatoric + result.sequence.epistemic, abs=1e-12)


def test_align_top_k_by_hand():
    # member 0 lists tokens 1 (0.5) and 2 (0.3); member 1 lists 1 (0.6) and 3 (0.2): only token 1 is shared
    aligned = align_top_k([{1: math.log(0.5), 2: math.log(0.3)}, {3: math.log(0.2), 1: math.log(0.6)}])
    np.testing.assert_allclose(aligned, [[0.5, 0.5], [0.6, 0.4]], rtol=1e-12)
    # nothing shared: one "other" outcome, no uncertainty left to split
    nothing = align_top_k([{1: -0.1}, {2: -0.1}])
    np.testing.assert_allclose(nothing, [[1.0], [1.0]])
    assert decompose(nothing).total == 0.0


def test_top_k_alignment_gives_lower_bounds_and_keeps_the_identity():
    rng = np.random.default_rng(5)
    vocab, k = 40, 8
    for _ in range(50):
        members = rng.dirichlet(np.full(vocab, 0.3), size=3)
        full = decompose(members)
        listed = [{int(t): float(np.log(row[t])) for t in np.argsort(row)[::-1][:k]} for row in members]
        coarse = decompose(align_top_k(listed))
        assert coarse.total == pytest.approx(coarse.aleatoric + coarse.epistemic, abs=1e-12)
        assert coarse.total <= full.total + 1e-12
        assert coarse.aleatoric <= full.aleatoric + 1e-12
        assert coarse.epistemic <= full.epistemic + 1e-12


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([[0.5, 0.4], [0.5, 0.5]], "must sum to 1, one is off by 0.1"),
        ([[1.2, -0.2]], r"probabilities in \[0, 1\]"),
        ([0.5, 0.5], "2-D array"),
        ([[]], "must not be empty"),
    ],
)
def test_decompose_bad_input(members, message):
    with pytest.raises(ValueError, match=message):
        decompose(members)


def test_sequence_and_alignment_bad_input():
    with pytest.raises(ValueError, match="must not be empty"):
        decompose_sequence([])
    with pytest.raises(ValueError, match="token 1 has 3 members, token 0 has 2"):
        decompose_sequence([np.full((2, 2), 0.5), np.full((3, 2), 0.5)])
    with pytest.raises(ValueError, match="token 1: .*sum to 1"):
        decompose_sequence([np.full((2, 2), 0.5), np.full((2, 2), 0.4)])
    with pytest.raises(ValueError, match="at least one member"):
        align_top_k([])
    with pytest.raises(ValueError, match=r"member_top_logprobs\[1\] lists no tokens"):
        align_top_k([{1: -0.1}, {}])
    with pytest.raises(ValueError, match="sum to 1.4 > 1"):
        align_top_k([{1: math.log(0.7), 2: math.log(0.7)}])
