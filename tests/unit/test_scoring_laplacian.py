"""EigValLaplacian on graphs whose spectrum is known in closed form."""

import math

import numpy as np
import pytest

from signet.scoring.laplacian import eig_val_laplacian


def test_one_meaning_and_all_different():
    # W = J (all ones): D = n I, L = I - J / n has eigenvalues 0 (once) and 1 (n - 1 times) -> U = 1
    assert eig_val_laplacian(np.ones((5, 5))) == pytest.approx(1.0, abs=1e-12)
    # W = I: L = 0, all n eigenvalues 0 -> U = n
    assert eig_val_laplacian(np.eye(5)) == pytest.approx(5.0, abs=1e-12)
    # two groups of identical answers, unrelated to each other: two zero eigenvalues, the rest 1 -> U = 2
    blocks = np.kron(np.eye(2), np.ones((3, 3)))
    assert eig_val_laplacian(blocks) == pytest.approx(2.0, abs=1e-12)


def test_two_answers_by_hand():
    # W = [[1, w], [w, 1]]: D = (1 + w) I, W's eigenvalues 1 +- w, so L's are 0 and 1 - (1 - w)/(1 + w) = 2w/(1 + w)
    # U = 1 + max(0, 1 - 2w/(1 + w)) = 1 + (1 - w)/(1 + w); w = 1/2 -> 1 + (1/2)/(3/2) = 4/3
    assert eig_val_laplacian([[1.0, 0.5], [0.5, 1.0]]) == pytest.approx(4 / 3, rel=1e-12)
    # an asymmetric entailment matrix is symmetrised first: (0.8 + 0.2) / 2 = 0.5
    assert eig_val_laplacian([[1.0, 0.8], [0.2, 1.0]]) == pytest.approx(4 / 3, rel=1e-12)
    # the caller's diagonal is replaced by 1
    assert eig_val_laplacian([[0.0, 0.5], [0.5, 0.3]]) == pytest.approx(4 / 3, rel=1e-12)
    assert eig_val_laplacian([[1.0]]) == pytest.approx(1.0)


def test_stays_between_one_and_n():
    rng = np.random.default_rng(3)
    for n in (2, 4, 9):
        for _ in range(20):
            value = eig_val_laplacian(rng.uniform(size=(n, n)))
            assert 1.0 - 1e-9 <= value <= n + 1e-9
    assert math.isfinite(eig_val_laplacian(np.zeros((3, 3))))


@pytest.mark.parametrize(
    ("matrix", "message"),
    [([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5]], "square"), ([[1.0, -0.5], [-0.5, 1.0]], r"\[0, 1\]"), ([[]], "empty")],
)
def test_bad_input(matrix, message):
    with pytest.raises(ValueError, match=message):
        eig_val_laplacian(matrix)
