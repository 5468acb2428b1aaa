"""Entropy estimates from N answers sampled for one prompt.

Each sample i comes with its sequence log-likelihood ``log p(s_i | x)`` (the sum of its
token logprobs) and, for the semantic variants, a meaning-class label from
``clustering.cluster_by_bidirectional_entailment``.

* Monte-Carlo sequence entropy: ``H(Y | x) = E[-log p(Y | x)]`` estimated by the sample
  mean of ``-log p(s_i | x)`` (LM-Polygraph MonteCarloSequenceEntropy; the
  length-normalised variant, MonteCarloNormalizedSequenceEntropy, divides each sample's
  log-likelihood by its token count first). It counts paraphrases as different answers.
* Semantic entropy (Kuhn et al. 2023, "Semantic Uncertainty"; as computed in Farquhar et
  al. 2024's code): the entropy over meaning classes instead of strings. A class's mass
  is the sum of its members' probabilities, normalised over the classes seen:
  ``P(c) = sum_{i in c} p(s_i) / sum_i p(s_i)``, ``SE = -sum_c P(c) log P(c)``.
  Repeated samples count each time they occur, so frequent answers weigh more.
  (LM-Polygraph's SemanticEntropy instead reports ``-mean_i log sum_{j in c(i)} p(s_j)``,
  unnormalised; the numbers differ.)
* Discrete semantic entropy (Farquhar et al. 2024, "Detecting hallucinations in large
  language models using semantic entropy", Nature): ``P(c) = |c| / N``, for when the
  samples' probabilities are unavailable (black-box models).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

from signet.scoring.entropy import shannon_entropy
from signet.scoring.validation import label_array, logprob_array


def monte_carlo_sequence_entropy(
    sample_token_logprobs: Sequence[Sequence[float]], *, length_normalized: bool = False
) -> float:
    """Mean over samples of ``-log p(s_i | x)`` (or of ``-log p(s_i | x) / len(s_i)``)."""
    if len(sample_token_logprobs) == 0:
        raise ValueError("sample_token_logprobs must hold at least one sample")
    negative_log_likelihoods = []
    for index, token_logprobs in enumerate(sample_token_logprobs):
        logprobs = logprob_array(token_logprobs, f"sample_token_logprobs[{index}]")
        negative_log_likelihoods.append(-logprobs.mean() if length_normalized else -logprobs.sum())
    return float(np.mean(negative_log_likelihoods))


def cluster_masses(sample_logprobs: Sequence[float] | np.ndarray, cluster_ids: Sequence[int]) -> np.ndarray:
    """Normalised probability mass of each class, in order of the class labels' sorted values.

    Computed in log space (log-sum-exp) so that sequence log-likelihoods of -1000 do not underflow.
    """
    logprobs = logprob_array(sample_logprobs, "sample_logprobs")
    labels = label_array(cluster_ids, "cluster_ids")
    if labels.size != logprobs.size:
        raise ValueError(f"cluster_ids has {labels.size} labels for {logprobs.size} samples")
    _, class_of_sample = np.unique(labels, return_inverse=True)
    class_logprobs = np.array(
        [logsumexp(logprobs[class_of_sample == index]) for index in range(class_of_sample.max() + 1)]
    )
    return np.exp(class_logprobs - logsumexp(class_logprobs))


def semantic_entropy(sample_logprobs: Sequence[float] | np.ndarray, cluster_ids: Sequence[int]) -> float:
    """Entropy over meaning classes, each weighted by its members' summed sequence probability.

    ``sample_logprobs[i] = log p(s_i | x)``; pass length-normalised log-likelihoods (mean
    token logprob) instead to weigh long and short answers alike, as Farquhar et al.'s code does.
    0 when all samples share one meaning; at most log(number of classes).
    """
    return float(shannon_entropy(cluster_masses(sample_logprobs, cluster_ids)))


def discrete_semantic_entropy(cluster_ids: Sequence[int]) -> float:
    """Entropy of the classes' frequencies among the N samples: ``-sum_c (|c|/N) log(|c|/N)``."""
    labels = label_array(cluster_ids, "cluster_ids")
    _, counts = np.unique(labels, return_counts=True)
    return float(shannon_entropy(counts / labels.size))
