"""The answer judge of the evaluation sets (harness/eval_sets.py) and the shape of the data files."""

import re

import pytest

from harness.eval_sets import fold, is_correct, load_questions, load_risk_questions, load_summaries


@pytest.mark.parametrize(
    ("answer", "accepted", "expected"),
    [
        ("4", ["4", "four"], True),
        ("The answer is 4.", ["4", "four"], True),
        ("Four", ["4", "four"], True),
        ("2 + 2 = 4", ["4"], True),
        ("(4)", ["4"], True),
        ("14", ["4", "four"], False),
        ("41 apples", ["4"], False),
        ("4th", ["4"], False),
        ("4.5", ["4"], False),
        ("4,000", ["4"], False),
        ("-4", ["4"], False),
        ("3.4", ["4"], False),
        ("fourteen", ["four"], False),
        ("It is 1,234.", ["1234", "1,234"], True),
        ("It is 1234", ["1,234"], False),
        ("Forty-two", ["forty two"], True),
        ("forty two", ["forty-two"], True),
        ("The capital is Bogotá.", ["bogota"], True),
        ("N\u2019Djamena", ["n'djamena"], True),
        ("Paris, France", ["paris"], True),
        ("Parisian", ["paris"], False),
        ("Ottawa\nis the capital", ["ottawa"], True),
        ("Washington, D.C.", ["washington, d.c."], True),
        ("I don't know", ["4"], False),
        ("", ["4"], False),
        ("4", [], False),
        ("4", [""], False),
    ],
)
def test_is_correct(answer, accepted, expected):
    assert is_correct(answer, accepted) is expected


def test_the_question_file():
    questions = load_questions()
    assert 180 <= len(questions) <= 230
    assert len({q["id"] for q in questions}) == len(questions)
    for question in questions:
        assert set(question) == {"id", "category", "question", "answers"}
        assert question["answers"] and all(a == a.lower() for a in question["answers"])
        assert not is_correct(question["question"], question["answers"]), question  # no answer given away


def test_the_risk_question_file():
    questions = load_questions()
    both = load_risk_questions()
    assert both[: len(questions)] == questions  # old first, unchanged
    risk = both[len(questions) :]
    assert 350 <= len(risk) <= 450
    assert {q["category"] for q in risk} == {q["category"] for q in questions}
    for question in risk:
        assert set(question) == {"id", "category", "question", "answers"}
        assert re.fullmatch(rf"{question['category']}-r\d{{2}}", question["id"]), question
        assert question["answers"] and all(a == a.lower() for a in question["answers"])
        assert not is_correct(question["question"], question["answers"]), question  # no answer given away
    assert len({q["id"] for q in both}) == len(both)  # ids unique across both files
    assert len({fold(q["question"]) for q in both}) == len(both)  # no shared question text


def test_the_risk_questions_share_no_operands():
    """No arithmetic question of risk_questions.jsonl repeats the operation and unordered operands of one of
    questions.jsonl (3 + 5 and 5 + 3 are the same question)."""

    def pairs(questions):
        matches = (re.fullmatch(r"What is (\d+) (\+|-|times) (\d+)\?", q["question"]) for q in questions)
        return [(m.group(2), frozenset((m.group(1), m.group(3)))) for m in matches if m]

    old, both = pairs(load_questions()), pairs(load_risk_questions())
    assert len(old) == 70 and len(both) > len(old)
    assert len(set(both)) == len(both)


def test_the_summary_file():
    summaries = load_summaries()
    assert len(summaries) == 120
    assert {s["label"] for s in summaries} == {"faithful", "corrupted"}
    for faithful, corrupted in zip(summaries[::2], summaries[1::2], strict=True):
        assert faithful["source_id"] == corrupted["source_id"] and faithful["source"] == corrupted["source"]
        assert len(faithful["source"]) <= 1200
        assert faithful["label"] == "faithful" and faithful["corruption"] is None and faithful["changed"] is None
        assert " ".join(faithful["source"].split()).find(faithful["summary"]) >= 0  # extractive
        assert corrupted["label"] == "corrupted" and corrupted["corruption"] in {"number", "negation", "entity"}
        old, new = corrupted["changed"]
        assert (
            corrupted["summary"] != faithful["summary"] and old in faithful["summary"] and new in corrupted["summary"]
        )
