"""Scores of one answer from its own logprobs: the methods that need no sampling.

Used by ``POST /score/uncertainty`` and by ``/generate?uncertainty=true``, which gets the
logprobs from the generation itself and so adds no forward pass.
"""

from __future__ import annotations

from signet.api.protocol import Bounds, MethodScore, Risk
from signet.api.risk import risk
from signet.engine.protocol import TokenLogprobs
from signet.scoring.entropy import per_token_bounds
from signet.scoring.risk import answer_features
from signet.scoring.sequence import negative_log_likelihood, perplexity, pointwise_mutual_information

FREE_METHODS = ("max_sequence_probability", "perplexity", "mean_token_entropy", "max_token_entropy")

MEANINGS = {
    "max_sequence_probability": "-log p(answer | prompt) in nats: how unlikely the model finds the whole answer",
    "perplexity": "exp of the mean -log p per answer token: the model is as unsure as choosing among this many",
    "mean_token_entropy": "mean entropy (nats) of the model's next-token distribution over the answer",
    "max_token_entropy": "largest next-token entropy (nats) in the answer: its least certain step",
    "pmi": "minus the mean pointwise mutual information (nats/token) between prompt and answer: "
    "how little the prompt raised the answer's probability",
}


def logprob_scores(
    answer: TokenLogprobs, vocab_size: int, methods: tuple[str, ...] = FREE_METHODS
) -> list[MethodScore]:
    """The free methods among ``methods``, from the answer's top-k logprobs."""
    per_token = per_token_bounds(answer.top, vocab_size)  # (listed, lower, upper) per token
    scores = []
    for method in FREE_METHODS:
        if method not in methods:
            continue
        if method == "max_sequence_probability":
            scores.append(_score(method, negative_log_likelihood(answer.chosen), per_token=[-v for v in answer.chosen]))
        elif method == "perplexity":
            scores.append(_score(method, perplexity(answer.chosen)))
        else:
            # the mean (max) of each bound bounds the mean (max) entropy: scoring/entropy.py
            _, lower, upper = per_token.mean(axis=0) if method == "mean_token_entropy" else per_token.max(axis=0)
            scores.append(
                _score(method, lower, bounds=Bounds(lower=lower, upper=upper), per_token=per_token[:, 1].tolist())
            )
    return scores


def pmi_score(with_prompt: TokenLogprobs, without_prompt: TokenLogprobs) -> MethodScore:
    information = pointwise_mutual_information(with_prompt.chosen, without_prompt.chosen)
    return _score("pmi", -information.mean, per_token=[-float(value) for value in information.per_token])


def _score(method: str, value: float, **fields) -> MethodScore:
    return MethodScore(method=method, value=value, meaning=MEANINGS[method], **fields)


def answer_risk(
    answer: TokenLogprobs,
    vocab_size: int,
    served_model: str,
    *,
    watermarked: bool,
    temperature: float | None,
    top_p: float = 1.0,
) -> Risk:
    """P(the answer is wrong), from its own logprobs: the ``uncertainty`` calibration.
    ``temperature`` None: a caller's answer, whose decoding is unknown, read as greedy."""
    entropies = per_token_bounds(answer.top, vocab_size)[:, 1]  # the proven lower bounds
    features = answer_features(
        [-value for value in answer.chosen], entropies, watermarked=watermarked, sampled=bool(temperature)
    )
    return risk("uncertainty", features, served_model, temperature, top_p)
