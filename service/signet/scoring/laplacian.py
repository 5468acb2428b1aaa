"""EigValLaplacian (Lin et al. 2023, "Generating with Confidence"): a continuous count of meaning classes.

Sampled answers are the nodes of a graph whose edge weights W[i, j] in [0, 1] say how
similar answers i and j are (entailment probabilities, or any similarity). With
D = diag(row sums of W), the normalised graph Laplacian is

    L = I - D^(-1/2) W D^(-1/2),    U = sum_k max(0, 1 - lambda_k(L)),

as in LM-Polygraph ``estimators/eig_val_laplacian.py``. L's eigenvalues lie in [0, 2]
and the multiplicity of 0 is the number of connected components, so U counts the
clusters: W all ones (one meaning) gives U = 1, W = I (all different) gives U = n, and
weak links between groups give values in between.

Entailment matrices are not symmetric; W is first symmetrised as (W + W^T) / 2, as
LM-Polygraph does. The diagonal is set to 1 (an answer is fully similar to itself,
whatever the caller's NLI model said about the self-pair), which also keeps every
degree >= 1 so that D^(-1/2) exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from signet.scoring.validation import unit_square_matrix


def eig_val_laplacian(similarity: Sequence[Sequence[float]] | np.ndarray) -> float:
    """``sum_k max(0, 1 - lambda_k)`` over the eigenvalues of the normalised Laplacian; in [1, n]."""
    matrix = unit_square_matrix(similarity, "similarity")
    weights = (matrix + matrix.T) / 2.0
    np.fill_diagonal(weights, 1.0)
    inverse_sqrt_degree = 1.0 / np.sqrt(weights.sum(axis=1))
    laplacian = np.eye(len(weights)) - inverse_sqrt_degree[:, None] * weights * inverse_sqrt_degree[None, :]
    eigenvalues = np.linalg.eigvalsh(laplacian)  # L is symmetric: real eigenvalues
    return float(np.maximum(0.0, 1.0 - eigenvalues).sum())
