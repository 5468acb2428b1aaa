"""The calibrated risk (signet.scoring.risk): the logistic model, its features, and that the
shipped calibrations are what bench/fit_risk.py fits from the labelled sets."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from signet.api.risk import GIVEN_TEXT, Decoding, risk
from signet.scoring.claims import Claim, ReferenceCheck
from signet.scoring.risk import (
    ANSWER_FEATURES,
    REFERENCE_FEATURES,
    RiskModel,
    answer_bearing,
    answer_features,
    load_risk_model,
    reference_features,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def model(**fields) -> RiskModel:
    defaults = dict(
        name="test",
        predicts="x",
        model="m",
        features=("a", "b"),
        center=(1.0, 0.0),
        scale=(2.0, 1.0),
        coefficients=(1.0, -0.5),
        intercept=0.25,
        fitted_on="by hand",
    )
    return RiskModel(**{**defaults, **fields})


def test_the_probability_is_the_logistic_of_the_standardised_linear_score():
    # 0.25 + 1.0 * (3 - 1) / 2 - 0.5 * (4 - 0) / 1 = -0.75
    assert model().probability({"a": 3.0, "b": 4.0}) == pytest.approx(1 / (1 + math.exp(0.75)))
    extreme = model(intercept=-1e6)
    assert extreme.probability({"a": 1.0, "b": 0.0}) == 0.0  # no overflow
    assert model(intercept=1e6).probability({"a": 1.0, "b": 0.0}) == 1.0


def test_a_model_knows_what_it_was_fitted_for():
    assert model().calibrated_for("m") and not model().calibrated_for("other")
    assert model(model=None).calibrated_for("anything")  # its features read no model output
    with pytest.raises(ValueError, match="differ in length"):
        model(coefficients=(1.0,))


def test_the_shipped_calibrations_load():
    uncertainty = load_risk_model("uncertainty")
    assert uncertainty.features == ANSWER_FEATURES and uncertainty.model == "SmolLM2-135M-Instruct"
    assert uncertainty.decodings == ((0.0, False), (0.0, True), (1.0, True))
    reference = load_risk_model("reference")
    assert reference.features == REFERENCE_FEATURES and reference.model is None and reference.decodings is None


def test_answer_features_by_hand():
    bearing = [False, True, False, True]
    features = answer_features([0.5, 1.5, 0.1, 2.0], [1.0, 0.2, 0.3, 0.4], bearing, watermarked=True, sampled=False)
    assert features == pytest.approx(
        {
            "log_mean_negative_logprob": math.log(1.025 + 0.01),
            "log_top3_token_entropy": math.log((1.0 + 0.3 + 0.4) / 3 + 0.01),
            "log_tokens": math.log(4),
            "log_bearing_mean_negative_logprob": math.log((1.5 + 2.0) / 2 + 0.01),
            "log_bearing_mean_entropy": math.log((0.2 + 0.4) / 2 + 0.01),
            "log_bearing_max_entropy": math.log(0.4 + 0.01),
            "bearing_share": 0.5,
            "log_bearing_tokens": math.log(3),
            "watermarked": 1.0,
            "sampled": 0.0,
        }
    )
    with pytest.raises(ValueError):
        answer_features([], [], [], watermarked=False, sampled=False)
    with pytest.raises(ValueError):
        answer_features([0.5, 0.5], [0.1, 0.2], [True], watermarked=False, sampled=False)


def test_an_answer_that_bears_nothing_is_read_whole():
    features = answer_features([0.5, 1.5], [0.7, 0.2], [False, False], watermarked=False, sampled=False)
    assert features["log_bearing_mean_negative_logprob"] == features["log_mean_negative_logprob"]
    assert features["log_bearing_max_entropy"] == pytest.approx(math.log(0.7 + 0.01))
    assert features["bearing_share"] == features["log_bearing_tokens"] == 0.0


@pytest.mark.parametrize(
    ("prompt", "tokens", "bearing"),
    [
        # the restated question bears nothing; the new name, split in two tokens, bears both
        (
            "What is the capital of Sweden?",
            ["The", " capital", " of", " Sweden", " is", " Stock", "holm", ".", ""],
            [0, 0, 0, 0, 0, 1, 1, 0, 0],
        ),
        ("What is 5 + 4?", ["5", " +", " ", "4", " =", " ", "1", "1", ""], [0, 0, 0, 0, 0, 0, 1, 1, 0]),
        # case does not matter; a function word the prompt lacks bears nothing either
        ("Who wrote WAR AND PEACE?", ["War", " and", " Peace", " was", " by", " Tolstoy"], [0, 0, 0, 0, 0, 1]),
        # a token that spans a word's end and the next word's start bears if either word does
        ("Name a colour like blue.", [" red", "dish blue"], [1, 1]),
        # contractions and possessives are one word each: "it's" a function word, "Sweden's" restated
        (
            "What is Sweden's capital?",
            ["It", "'s", " Paris", ".", " Sweden", "'s", " capital", " isn", "'t", " Oslo", ".", ""],
            [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        ),
        # another ending of a prompt word restates it
        ("Which capitals are in Europe?", [" Capital", " cities", ":", " Paris"], [0, 1, 0, 1]),
        ("Name a colour.", [], []),
        ("Say hi.", ["", " hi", ""], [0, 0, 0]),
    ],
)
def test_answer_bearing_tokens(prompt, tokens, bearing):
    assert answer_bearing(tokens, prompt).tolist() == [bool(flag) for flag in bearing]


def test_reference_features_by_hand():
    check = ReferenceCheck(
        claims=[
            [Claim("entity", 0, 3, "Bob", "r"), Claim("date", 5, 9, "1999", "r"), Claim("quantity", 9, 11, "3", "r")],
            [Claim("entity", 0, 3, "Eve", "r")],
        ],
        novelty=[0.5, 0.1],
        unsupported_words=[0.2, 0.0],
    )
    assert reference_features(check) == pytest.approx(
        {
            "entity_claims": math.log(3),
            "number_claims": math.log(3),
            "negation_claims": 0.0,
            "ngram_claims": 0.0,
            "novelty_mean": 0.3,
            "novelty_max": 0.5,
            "unsupported_words_mean": 0.1,
            "unsupported_words_max": 0.2,
        }
    )


def test_the_shipped_calibrations_are_a_refit_of_the_labelled_sets():
    """Whoever changes a feature, a rule or a set must refit: `python -m bench.fit_risk`."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.fit_risk", "--check"],
        cwd=REPOSITORY,
        env={"PYTHONPATH": str(REPOSITORY), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_impossible_token_gives_a_finite_risk():
    features = answer_features([math.inf, 0.5], [0.1, 0.2], [True, False], watermarked=False, sampled=False)
    assert all(math.isfinite(value) for value in features.values())
    assert 0.0 <= load_risk_model("uncertainty").probability(features) <= 1.0


def test_the_isotonic_map_is_applied_and_clamped():
    stepped = model(isotonic_x=(0.2, 0.8), isotonic_y=(0.1, 0.9))
    assert stepped.probability({"a": 1.0, "b": 0.0}) == pytest.approx(
        0.1 + (1 / (1 + math.exp(-0.25)) - 0.2) / 0.6 * 0.8
    )
    assert stepped.probability({"a": 1.0, "b": 100.0}) == 0.1  # below the first threshold: its value


@pytest.mark.parametrize(
    ("served", "decoding", "reason"),
    [
        ("SmolLM2-135M-Instruct", Decoding(0.0, False), None),
        ("SmolLM2-135M-Instruct", Decoding(1.0, True), None),
        ("SmolLM2-135M-Instruct", None, GIVEN_TEXT),
        ("SmolLM2-135M-Instruct", Decoding(1.0, True, top_p=0.5), "sampled with top_p 0.5"),
        ("SmolLM2-135M-Instruct", Decoding(1.0, False), "this one was decoded temperature 1, unwatermarked"),
        ("Llama-3-8B", Decoding(0.0, False), "fitted for SmolLM2-135M-Instruct, and this service runs Llama-3-8B"),
    ],
)
def test_when_the_uncertainty_risk_is_calibrated(served, decoding, reason):
    features = answer_features([0.5], [0.5], [True], watermarked=False, sampled=False)
    answer = risk("uncertainty", features, served, decoding)
    assert answer.calibrated is (reason is None)
    assert reason is None or reason in answer.reason


def test_the_reference_risk_is_calibrated_for_any_model():
    check = ReferenceCheck(claims=[[]], novelty=[0.0], unsupported_words=[0.0])
    answer = risk("reference", reference_features(check), "any-model")
    assert answer.calibrated and answer.fitted_for is None and answer.value < 0.5
