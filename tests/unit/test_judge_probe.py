"""The judge probe without an engine: its AUROC, which methods a passing or failing judge
leaves, one probe for concurrent callers, a cache per model name that keeps no failure,
and the probability that a judge with no signal passes.

The passing judge here is a stand-in (p(yes) 0.9 for entailed pairs, 0.1 for contradicted
ones): the embedded 135M model cannot pass (tests/e2e/test_scoring.py). Every
check is deterministic: no false failures.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import get_args

import pytest
from scipy.stats import mannwhitneyu

from signet.api.generation import engine_problem
from signet.api.score.judge_probe import (
    JUDGED_METHODS,
    MIN_JUDGE_AUROC,
    PROBE_PAIRS,
    JudgeProbe,
    probe_auroc,
    probe_judge,
    usable_methods,
)
from signet.api.score.protocol import ConsistencyMethod
from signet.api.state import ServiceState
from signet.engine.protocol import EngineError, EngineStatus
from signet.engine.tokenizers import TokenizerCatalog
from signet.keys import KeyRegistry
from signet.settings import Settings

MODEL = "SmolLM2-135M-Instruct"
ENTAILS = [pair.entails for pair in PROBE_PAIRS]
LEXICAL = ("source_unigram", "source_bigram_novelty")


def service_state(model: str = MODEL) -> ServiceState:
    """A ServiceState with no engine: the probe reads only the model's name and its cache."""
    keys = KeyRegistry([], "none", Path("keys.json"), b"test-fingerprint-secret")
    return ServiceState(Settings(), keys, TokenizerCatalog(model, None))


class StandInJudge:
    """p(yes) for each question from the pair it asks about; counts its calls."""

    def __init__(self, entailed: float, contradicted: float) -> None:
        self.entailed, self.contradicted = entailed, contradicted
        self.calls = 0

    async def __call__(self, questions: list[str]) -> list[float]:
        self.calls += 1
        await asyncio.sleep(0.01)  # an engine's wait, during which other callers arrive
        assert len(questions) == len(PROBE_PAIRS)
        return [self.entailed if entails else self.contradicted for entails in ENTAILS]


async def failing_judge(questions: list[str]) -> list[float]:
    # what judge.yes_probabilities raises when the engine fails: the engine's error as an API problem
    raise engine_problem(EngineError(EngineStatus.UNAVAILABLE, "no healthy engine in this process"))


def test_the_probe_has_8_entailed_and_8_contradicted_pairs_on_the_same_premises():
    entailed = sorted(pair.premise for pair in PROBE_PAIRS if pair.entails)
    contradicted = sorted(pair.premise for pair in PROBE_PAIRS if not pair.entails)
    assert entailed == contradicted and len(set(entailed)) == 8


def test_judged_methods_are_consistency_methods():
    assert set(JUDGED_METHODS) <= set(get_args(ConsistencyMethod))
    assert not set(LEXICAL) & set(JUDGED_METHODS)


def test_the_auroc_ranks_entailed_pairs_above_contradicted_ones():
    assert probe_auroc([0.9 if entails else 0.1 for entails in ENTAILS], ENTAILS) == 1.0
    assert probe_auroc([0.1 if entails else 0.9 for entails in ENTAILS], ENTAILS) == 0.0
    assert probe_auroc([0.5] * len(ENTAILS), ENTAILS) == 0.5  # every pair tied
    # One contradicted pair above 6 of the 8 entailed ones: 64 - 6 of 64 orderings right.
    scores = [0.8 if entails else 0.2 for entails in ENTAILS]
    scores[ENTAILS.index(False)] = 0.85
    scores[ENTAILS.index(True)], scores[ENTAILS.index(True, 2)] = 0.9, 0.95
    assert probe_auroc(scores, ENTAILS) == pytest.approx(58 / 64)


def test_a_judge_with_no_signal_passes_with_probability_15_in_286():
    # Under no signal the 8 entailed pairs' ranks are a uniformly random 8 of 1..16, and the
    # probe passes when U = rank sum - 36 reaches 0.75 * 64 = 48 (judge_probe.py's comment).
    passing = [ranks for ranks in combinations(range(1, 17), 8) if sum(ranks) - 36 >= MIN_JUDGE_AUROC * 64]
    assert Fraction(len(passing), 12870) == Fraction(15, 286)
    assert round(15 / 286, 3) == 0.052
    # scipy's exact null distribution agrees: P(U >= 48) for ranks giving U = 48.
    entailed = next(ranks for ranks in combinations(range(1, 17), 8) if sum(ranks) - 36 == 48)
    contradicted = [rank for rank in range(1, 17) if rank not in entailed]
    test = mannwhitneyu(entailed, contradicted, alternative="greater", method="exact")
    assert test.statistic == 48 and test.pvalue == pytest.approx(15 / 286)


@pytest.mark.asyncio
async def test_a_passing_judge_keeps_the_judged_methods():
    methods = ("source_entailment", "mqag_kl", *LEXICAL)
    assert await usable_methods(service_state(), methods, judge=StandInJudge(0.9, 0.1)) == (methods, [])


@pytest.mark.asyncio
@pytest.mark.parametrize(("entailed", "contradicted", "shown"), [(0.5, 0.5, "0.50"), (0.1, 0.9, "0.00")])
async def test_a_judge_without_signal_is_left_out_with_a_warning(entailed, contradicted, shown):
    methods = ("source_entailment", "source_unigram", "mqag_kl", "source_bigram_novelty")
    kept, warnings = await usable_methods(service_state(), methods, judge=StandInJudge(entailed, contradicted))
    assert kept == LEXICAL
    assert warnings == [
        f"LLM judge left out: the served model {MODEL} scored AUROC {shown} on the built-in entailment probe "
        "(16 easy pairs; at least 0.75 needed); methods left out: source_entailment, mqag_kl"
    ]


@pytest.mark.asyncio
async def test_judge_always_keeps_the_judged_methods_without_a_probe():
    judge = StandInJudge(0.5, 0.5)  # would fail
    methods = ("source_entailment", "source_unigram")
    assert await usable_methods(service_state(), methods, always=True, judge=judge) == (methods, [])
    assert judge.calls == 0


@pytest.mark.asyncio
async def test_concurrent_first_callers_run_one_probe_and_later_ones_none():
    state, judge = service_state(), StandInJudge(0.9, 0.1)
    probes = await asyncio.gather(*(probe_judge(state, judge) for _ in range(10)))
    assert judge.calls == 1
    assert set(probes) == {JudgeProbe(MODEL, 1.0, 16)}
    assert (await usable_methods(state, ("selfcheck_llm_support",), judge=judge))[0] == ("selfcheck_llm_support",)
    assert judge.calls == 1


@pytest.mark.asyncio
async def test_the_cache_is_per_model_name():
    state, judge = service_state(), StandInJudge(0.9, 0.1)
    await probe_judge(state, judge)
    state.tokenizers = TokenizerCatalog("another-model", None)
    assert await probe_judge(state, StandInJudge(0.5, 0.5)) == JudgeProbe("another-model", 0.5, 16)
    assert set(state.judge_probes) == {MODEL, "another-model"}


@pytest.mark.asyncio
async def test_a_probe_that_cannot_run_leaves_the_judge_out_and_is_not_cached():
    state = service_state()
    kept, warnings = await usable_methods(state, ("source_entailment", "source_unigram"), judge=failing_judge)
    assert kept == ("source_unigram",)
    assert warnings == [
        "LLM judge left out: its probe could not run (no healthy engine in this process); "
        "methods left out: source_entailment"
    ]
    assert state.judge_probes == {}
    judge = StandInJudge(0.9, 0.1)
    assert await usable_methods(state, ("source_entailment",), judge=judge) == (("source_entailment",), [])
    assert judge.calls == 1


@pytest.mark.asyncio
async def test_no_probe_when_no_judged_method_is_asked():
    state = service_state()
    assert await usable_methods(state, LEXICAL, judge=failing_judge) == (LEXICAL, [])
    assert state.judge_probes == {}
