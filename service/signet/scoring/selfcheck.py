"""SelfCheckGPT (Manakul et al. 2023) sentence scores: is each sentence supported by resampled answers?

The checked passage is split into sentences (``sentences.split_sentences``); N more
answers are sampled for the same prompt. A fact the model knows tends to reappear in the
samples; a hallucinated one tends not to. Every score here is per sentence and higher
means less supported.

* N-gram (SelfCheck-Ngram): fit an n-gram frequency model on the passage and the samples,
  score each sentence by the average and the maximum of -log p(n-gram) over its n-grams
  (one per token, the first ones padded with "<s>"). Rare n-grams, those the samples do
  not repeat, score high; n = 2 also catches a known word in a new place ("is not", a
  swapped name). Unbounded.
* Embedding similarity: 1 - cosine similarity between the sentence's vector and the
  best-matching sentence of each sample, averaged (or maximised) over samples: the
  SelfCheck-BERTScore recipe with sentence embeddings (e.g. all-MiniLM-L6-v2) in place
  of BERTScore.
* Support probability (SelfCheck-Prompt, and SelfCheck-NLI): a model is asked whether the
  sample supports the sentence; from the log-probabilities of its two labels ("Yes"/"No",
  or NLI's entailment/contradiction) p_yes = exp(yes) / (exp(yes) + exp(no)), the softmax
  restricted to the two labels, and the score is 1 - mean over samples of p_yes, in [0, 1].
  (The paper maps the generated label to 0 / 1 / 0.5; the label probabilities give a
  graded version of the same thing.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit

from signet.scoring.validation import float_array, logprob_array


@dataclass(frozen=True)
class NgramScores:
    sentence_average: np.ndarray  # float64 [num_sentences]: mean -log p(n-gram) over each sentence
    sentence_max: np.ndarray  # float64 [num_sentences]: max -log p(n-gram) in each sentence
    passage_average: float  # mean over all of the passage's n-grams
    passage_max: float


_START = "<s>"


def ngram_scores(
    sentence_tokens: Sequence[Sequence[str]],
    sample_tokens: Sequence[Sequence[str]],
    *,
    n: int = 1,
    lowercase: bool = True,
    smoothing: float = 0.0,
) -> NgramScores:
    """SelfCheck-Ngram on the passage (its sentences' tokens) and the samples' tokens.

    Each token list (a passage sentence, or a sample or one of its sentences) is padded on
    the left with n - 1 "<s>" and yields one n-gram per token. As in SelfCheckGPT's
    ``NgramModel``, an n-gram's probability is its frequency among all n-grams counted,
    p(g) = (count(g) + k) / (total count + k (|n-gram types| + 1)): add-k smoothing with
    an extra "<unk>" type, k = 0 by default. The passage is part of the fitted text, so
    every scored n-gram has a count and the score stays finite. Tokens are compared as
    given (after lowercasing).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if len(sentence_tokens) == 0:
        raise ValueError("sentence_tokens must hold at least one sentence")
    if len(sample_tokens) == 0:
        raise ValueError("sample_tokens must hold at least one sample")
    if not smoothing >= 0.0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    for index, tokens in enumerate(sentence_tokens):
        if len(tokens) == 0:
            raise ValueError(f"sentence {index} has no tokens")

    def grams(tokens: Sequence[str]) -> list[tuple[str, ...]]:
        padded = [_START] * (n - 1) + [token.lower() if lowercase else token for token in tokens]
        return [tuple(padded[index : index + n]) for index in range(len(tokens))]

    sentences = [grams(tokens) for tokens in sentence_tokens]
    counts: Counter[tuple[str, ...]] = Counter()
    for sentence in sentences:
        counts.update(sentence)
    for tokens in sample_tokens:
        counts.update(grams(tokens))
    denominator = counts.total() + smoothing * (len(counts) + 1)

    def surprisal(sentence: list[tuple[str, ...]]) -> np.ndarray:
        return -np.log(np.array([(counts[gram] + smoothing) / denominator for gram in sentence]))

    per_sentence = [surprisal(sentence) for sentence in sentences]
    passage = np.concatenate(per_sentence)
    return NgramScores(
        sentence_average=np.array([scores.mean() for scores in per_sentence]),
        sentence_max=np.array([scores.max() for scores in per_sentence]),
        passage_average=float(passage.mean()),
        passage_max=float(passage.max()),
    )


def _unit_rows(vectors: Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    matrix = float_array(vectors, name, 2)
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} must be finite")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0.0).any():
        raise ValueError(f"{name} holds a zero vector: its cosine similarity is undefined")
    return matrix / norms


def embedding_scores(
    sentence_embeddings: Sequence[Sequence[float]] | np.ndarray,
    sample_sentence_embeddings: Sequence[Sequence[Sequence[float]] | np.ndarray],
    *,
    over_samples: Literal["mean", "max"] = "mean",
) -> np.ndarray:
    """Per sentence: 1 - (mean or max over samples of the best cosine similarity to that sample's sentences).

    ``sentence_embeddings`` is S x d; ``sample_sentence_embeddings[n]`` is n_sentences x d
    for sample n (a single row embeds a whole sample). "mean" asks how consistently the
    samples back the sentence (SelfCheck-BERTScore); "max" only whether any sample does.
    Scores lie in [0, 2]; 0 means a sample repeats the sentence's meaning exactly.
    """
    if over_samples not in ("mean", "max"):
        raise ValueError(f"over_samples must be 'mean' or 'max', got {over_samples!r}")
    sentences = _unit_rows(sentence_embeddings, "sentence_embeddings")
    if len(sample_sentence_embeddings) == 0:
        raise ValueError("sample_sentence_embeddings must hold at least one sample")
    best_per_sample = []
    for index, sample in enumerate(sample_sentence_embeddings):
        rows = _unit_rows(sample, f"sample_sentence_embeddings[{index}]")
        if rows.shape[1] != sentences.shape[1]:
            raise ValueError(
                f"sample_sentence_embeddings[{index}] has dimension {rows.shape[1]}, "
                f"sentence_embeddings {sentences.shape[1]}"
            )
        best_per_sample.append((sentences @ rows.T).max(axis=1))
    similarity = np.stack(best_per_sample, axis=1)  # [num_sentences, num_samples]
    combined = similarity.mean(axis=1) if over_samples == "mean" else similarity.max(axis=1)
    return 1.0 - np.clip(combined, -1.0, 1.0)


def support_scores(
    yes_logprobs: Sequence[Sequence[float]] | np.ndarray, no_logprobs: Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """Per sentence: 1 - mean over samples of p_yes, from num_sentences x num_samples label logprobs.

    ``yes_logprobs[s, n]`` is the log-probability of the supporting label when sample n is
    asked about sentence s; ``no_logprobs`` that of the other label. Only their difference
    matters: p_yes = sigmoid(yes - no).
    """
    yes = logprob_array(yes_logprobs, "yes_logprobs", ndim=2, allow_zero_probability=True)
    no = logprob_array(no_logprobs, "no_logprobs", ndim=2, allow_zero_probability=True)
    if yes.shape != no.shape:
        raise ValueError(
            f"yes_logprobs has shape {yes.shape}, no_logprobs {no.shape}: one value per (sentence, sample)"
        )
    if (np.isneginf(yes) & np.isneginf(no)).any():
        raise ValueError("a (sentence, sample) pair gives both labels probability 0: p_yes is undefined")
    with np.errstate(invalid="ignore"):
        p_yes = expit(yes - no)  # -inf - finite = -inf -> 0; finite - (-inf) = inf -> 1
    return 1.0 - p_yes.mean(axis=1)
