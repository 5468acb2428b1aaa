"""One calibrated risk from several scores: a logistic model fitted offline and shipped as numbers.

A pipeline cannot act on eleven raw numbers without a method and a threshold of its own.
The risk is one probability: that an answer is wrong (uncertainty) or that a text is not
supported by its source (consistency). ``bench/fit_risk.py`` fits it on the labelled sets'
fitting split: scikit-learn's ``LogisticRegression`` combines the standardised features, and
an ``IsotonicRegression`` fitted on its out-of-fold predictions maps its probability to a
calibrated one (held out, ECE 0.057 -> 0.024 for the reference risk; 0.029 -> 0.037 for the
uncertainty risk, both within a calibrated forecast's noise on 663 answers). The fitted
numbers are in ``calibrations/<name>.json``; the service only evaluates them here, so it
needs no scikit-learn.

A risk model says which served model its features came from. Its probability describes
that model's answers: served elsewhere, the same formula still ranks answers, but the
probability is not calibrated, and the response says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from signet.scoring.claims import ReferenceCheck, content_word_spans


@dataclass(frozen=True)
class RiskModel:
    name: str  # the calibration file's stem
    predicts: str  # what the probability is of, in words
    model: str | None  # the served model whose outputs it was fitted on; None: its features use none
    features: tuple[str, ...]
    center: tuple[float, ...]  # per feature: subtracted, then divided by scale
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    fitted_on: str  # the data, in words, with its size
    # The decodings of the answers it was fitted on, (temperature, watermarked); None: any text.
    decodings: tuple[tuple[float, bool], ...] | None = None
    # The isotonic map from the logistic probability to the calibrated one: thresholds and
    # values, linear between them, the end values outside.
    isotonic_x: tuple[float, ...] = ()
    isotonic_y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.center), len(self.scale), len(self.coefficients)}
        if len(sizes) != 1:
            raise ValueError(f"risk model {self.name}: features, center, scale and coefficients differ in length")

    def probability(self, features: Mapping[str, float]) -> float:
        """P(positive | features): the logistic of the fitted linear score, through the isotonic map."""
        score = self.intercept + sum(
            weight * (float(features[name]) - center) / scale
            for name, center, scale, weight in zip(
                self.features, self.center, self.scale, self.coefficients, strict=True
            )
        )
        if not self.isotonic_x:
            return _logistic(score)
        return float(np.interp(_logistic(score), self.isotonic_x, self.isotonic_y))

    def calibrated_for(self, served_model: str) -> bool:
        return self.model is None or self.model == served_model


def _logistic(score: float) -> float:
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    exponential = math.exp(score)  # no overflow for a very negative score
    return exponential / (1.0 + exponential)


@cache
def load_risk_model(name: str) -> RiskModel:
    """The shipped calibration ``calibrations/<name>.json``."""
    text = resources.files("signet.scoring").joinpath("calibrations", f"{name}.json").read_text("utf-8")
    fields = json.loads(text)
    return RiskModel(
        name=name,
        predicts=fields["predicts"],
        model=fields["model"],
        features=tuple(fields["features"]),
        center=tuple(fields["center"]),
        scale=tuple(fields["scale"]),
        coefficients=tuple(fields["coefficients"]),
        intercept=float(fields["intercept"]),
        fitted_on=fields["fitted_on"],
        decodings=None if fields["decodings"] is None else tuple((float(t), bool(w)) for t, w in fields["decodings"]),
        isotonic_x=tuple(fields["isotonic"]["x"]),
        isotonic_y=tuple(fields["isotonic"]["y"]),
    )


# The answer's features: from the logprobs of its own tokens, so /generate?uncertainty=true
# gets the risk without another forward pass. Chosen by 5-fold cross-validation (folds by
# question) on the fitting split of the labelled questions (bench/fit_risk.py, 1,143
# answers): the whole answer's mean -log p, mean of its three largest token entropies and
# length (logs of each), with the decoding flags, gave 0.819 AUROC. Its answer-bearing
# tokens (``answer_bearing``) carry most of the signal: their mean -log p alone gives 0.858,
# against 0.802 for the whole answer's, since the words that restate the question are
# near-certain whether the answer is right or wrong. With them, their share and count, and
# logs of the skewed values (log(x + 0.01 nats): a right answer's values crowd near 0),
# 0.875. The decoding flags carry the base rates, which differ: the embedded model answered
# 56% wrong greedily, 63% watermarked, 89% sampled.
ANSWER_FEATURES = (
    "log_mean_negative_logprob",
    "log_top3_token_entropy",
    "log_tokens",
    "log_bearing_mean_negative_logprob",
    "log_bearing_mean_entropy",
    "log_bearing_max_entropy",
    "bearing_share",
    "log_bearing_tokens",
    "watermarked",
    "sampled",
)
# Added before the log: bfloat16 logits put a near-certain token's -log p and entropy at
# 0 to 0.01 nats, a spread that is noise; the fit is the same for 0.001 to 0.1.
_LOG_OFFSET = 0.01


def answer_bearing(token_texts: Sequence[str], prompt: str) -> np.ndarray:
    """Which of an answer's tokens carry what it adds to its prompt: those in a content word
    (the claim rules' words, function words left out) whose stem the prompt does not use.
    After "What is the capital of Sweden?", "The capital of Sweden is Stockholm." bears
    "Stockholm" alone, and "5 + 4 = 11" bears "11". Claim-conditioned probability (Fadeeva et
    al. 2024) and SAR (Duan et al. 2024) weigh tokens by the same idea with a second model;
    this asks nothing but the words. ``token_texts``: each token's text as it reads in the
    answer, so that they join into it; a token with no text (a special token) bears nothing."""
    asked = {stem for _, _, stem in content_word_spans(prompt)}
    lengths = np.array([len(text) for text in token_texts], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    bearing = np.zeros(len(token_texts), dtype=bool)
    for start, end, stem in content_word_spans("".join(token_texts)):
        if stem not in asked:
            # the tokens that overlap [start, end): ending after start, starting before end
            bearing[np.searchsorted(ends, start, side="right") : np.searchsorted(starts, end, side="left")] = True
    return bearing & (lengths > 0)


def answer_features(
    negative_logprobs: Sequence[float],
    token_entropies: Sequence[float],
    bearing: Sequence[bool],
    *,
    watermarked: bool,
    sampled: bool,
) -> dict[str, float]:
    """An answer's risk features from its per-token -log p and next-token entropies (nats),
    and which tokens bear the answer (``answer_bearing``)."""
    # A token of probability 0 in bfloat16 would give -log p = inf, and inf is no JSON number:
    # 100 nats is below any probability a float32 holds (e^-103). A NaN reads the same: NaN is
    # no JSON number either, and no risk can be computed from it.
    values = np.minimum(np.nan_to_num(np.asarray(negative_logprobs, dtype=np.float64), nan=100.0), 100.0)
    entropies = np.asarray(token_entropies, dtype=np.float64)
    bears = np.asarray(bearing, dtype=bool)
    if values.size == 0 or values.shape != entropies.shape or values.shape != bears.shape:
        raise ValueError("an answer needs one -log p, one entropy and one bearing flag per token, at least one token")
    # An answer that only restates its prompt bears nothing of its own: read all its tokens.
    read = bears if bears.any() else np.ones_like(bears)
    return {
        "log_mean_negative_logprob": _log(values.mean()),
        "log_top3_token_entropy": _log(np.sort(entropies)[-3:].mean()),
        "log_tokens": math.log(values.size),
        "log_bearing_mean_negative_logprob": _log(values[read].mean()),
        "log_bearing_mean_entropy": _log(entropies[read].mean()),
        "log_bearing_max_entropy": _log(entropies[read].max()),
        "bearing_share": float(bears.mean()),
        "log_bearing_tokens": math.log1p(int(bears.sum())),
        "watermarked": float(watermarked),
        "sampled": float(sampled),
    }


def _log(value: float) -> float:
    return math.log(max(float(value), 0.0) + _LOG_OFFSET)


# A text's features against its source, per passage: the claim rules' counts by kind (log
# 1 + count: a second unsupported name adds less than the first) and the word overlap,
# mean and worst sentence. None of them reads a model output.
REFERENCE_FEATURES = (
    "entity_claims",
    "number_claims",
    "negation_claims",
    "ngram_claims",
    "novelty_mean",
    "novelty_max",
    "unsupported_words_mean",
    "unsupported_words_max",
)
_NUMBER_KINDS = ("number", "date", "quantity")


def reference_features(check: ReferenceCheck) -> dict[str, float]:
    """A text's risk features from its sentences' check against the source."""
    if not check.claims:
        raise ValueError("a text needs at least one sentence")
    kinds = [claim.kind for claims in check.claims for claim in claims]
    return {
        "entity_claims": math.log1p(kinds.count("entity")),
        "number_claims": math.log1p(sum(kinds.count(kind) for kind in _NUMBER_KINDS)),
        "negation_claims": math.log1p(kinds.count("negation")),
        "ngram_claims": math.log1p(kinds.count("ngram")),
        "novelty_mean": float(np.mean(check.novelty)),
        "novelty_max": float(np.max(check.novelty)),
        "unsupported_words_mean": float(np.mean(check.unsupported_words)),
        "unsupported_words_max": float(np.max(check.unsupported_words)),
    }
