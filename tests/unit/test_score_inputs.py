"""The pure pieces between the engine and the scores: vLLM's per-position logprob dicts,
label probabilities read from a reply's first token, and generated MQAG questions."""

from __future__ import annotations

import dataclasses
import math

import pytest
from vllm.logprobs import FlatLogprobs, Logprob

from signet.api.score.consistency import parse_question
from signet.api.score.judge import copies_the_example, label_logprobs
from signet.engine.protocol import Completion, TokenLogprobs
from signet.engine.vllm_engine import read_flat_logprobs


def test_token_logprobs_keep_the_chosen_token_and_the_top_k_by_rank():
    # vLLM lists the chosen token first (rank 5 here, outside the top 2), then the top k;
    # a chosen token among the top k comes twice (position 1).
    positions = FlatLogprobs()
    positions.append({7: Logprob(-3.0, rank=5), 1: Logprob(-0.5, rank=1), 2: Logprob(-1.5, rank=2)})
    positions.append_fast([2, 2, 9], [-0.1, -0.1, -2.9], iter([1, 1, 2]), [None] * 3)
    logprobs = read_flat_logprobs([7, 2], positions, k=2)
    assert logprobs.chosen == [-3.0, -0.1]
    assert logprobs.top_ids == [[1, 2], [2, 9]]
    assert logprobs.top == [[-0.5, -1.5], [-0.1, -2.9]]
    assert read_flat_logprobs([7, 2], positions, k=0).top == [[], []]


def test_a_completion_survives_the_queues_json_round_trip():
    completion = Completion(
        "hi", [5, 6], 3, "length", logprobs=TokenLogprobs([-0.1, -0.2], [[5], [6]], [[-0.1], [-0.2]])
    )
    sent = dataclasses.asdict(completion) | {"field_of_a_newer_worker": 1}
    assert Completion.from_dict(sent) == completion
    assert Completion.from_dict(dataclasses.asdict(Completion("", [], 1, "stop"))).logprobs is None


def test_label_probabilities_sum_spellings_and_bound_unlisted_labels():
    reply = TokenLogprobs(chosen=[-0.7], top_ids=[[10, 11, 12]], top=[[math.log(0.5), math.log(0.2), math.log(0.1)]])
    yes, no, missing = label_logprobs(reply, [frozenset({10, 12}), frozenset({11}), frozenset({99})])
    assert yes == pytest.approx(math.log(0.6))
    assert no == pytest.approx(math.log(0.2))
    # not among the top listed: between 0 and the smallest listed probability, taken as half of it
    assert missing == pytest.approx(math.log(0.05))


@pytest.mark.parametrize(
    "reply",
    [
        "Question: Where is it?\nA) Paris\nB) Rome\nC) Oslo\nD) Bern\n",
        "Question: Where is it?\nOptions:\nA) Paris\nB) Rome\nC) Oslo\nD) Bern",
        "Sure!\nquestion: Where is it?\n  A. Paris\n  B. Rome\n  C. Oslo\n  D. Bern\n\nThe answer is A.",
        "Question: Where is it?\n\nOptions:\n- Paris\n- Rome\n- Oslo\n- Bern",
        "Question: Where is it?\nOption A: Paris\nOption B: Rome\nOption C: Oslo\nOption D: Bern\n",
        "Question: Where is it?\n1. Paris\n2. Rome\n3. Oslo\n4. Bern",
    ],
)
def test_well_formed_questions_are_parsed(reply):
    assert parse_question(reply) == ("Where is it?", ["Paris", "Rome", "Oslo", "Bern"])


@pytest.mark.parametrize(
    "reply",
    [
        "Question: Where is it?\nA) Paris\nB) Rome\nC) Oslo\n",  # three options
        "Question: Where is it?\n- Paris\n- Rome\n\nThe answer is Paris.",  # two
        "Question: In which city, with options: A) Tokyo, B) Paris, C) London, D) Berlin?",  # on one line
        "Answer: D)",
        "",
    ],
)
def test_malformed_questions_are_refused(reply):
    assert parse_question(reply) is None


TEXT = "The Golden Gate Bridge opened in 1937 and spans the strait at San Francisco."


@pytest.mark.parametrize(
    ("question", "options", "copied"),
    [
        ("When did the Golden Gate Bridge open?", ["1937", "1932", "1950", "1910"], False),
        ("In which city does the Eiffel Tower stand?", ["Paris", "London", "Rome", "Berlin"], True),
        ("Where is the bridge?", ["Paris", "London", "San Francisco", "Oslo"], True),  # the example's options
        ("Which option is correct?", ["A", "B", "C", "D"], True),  # no word of the text besides question words
        # on topic: one of the example's cities as a distractor, a plural in the text, a short question
        ("Which city has the Golden Gate Bridge?", ["London", "San Francisco", "Tokyo", "Lima"], False),
        ("When were the bridges opened?", ["1937", "1932", "1950", "1910"], False),
        ("What spans the strait?", ["a bridge", "a ferry", "a tunnel", "nothing"], False),
    ],
)
def test_a_question_about_the_prompts_example_is_recognised(question, options, copied):
    assert copies_the_example(question, options, TEXT) is copied


def test_a_text_about_the_examples_subject_may_name_it():
    text = "Paris has the Eiffel Tower, finished in 1889."
    assert not copies_the_example("When was the Eiffel Tower finished?", ["1889", "1900", "1920", "1850"], text)


def test_every_method_a_request_can_name_has_a_meaning():
    from typing import get_args

    from signet.api import answer_scores
    from signet.api.score import consistency, uncertainty
    from signet.api.score.protocol import ConsistencyMethod, UncertaintyMethod

    meanings = {**answer_scores.MEANINGS, **uncertainty.MEANINGS}
    assert set(get_args(UncertaintyMethod)) == set(meanings)
    assert set(get_args(ConsistencyMethod)) == set(consistency.MEANINGS)
