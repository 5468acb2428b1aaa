"""The labelled evaluation sets in tests/data/scoring, how a question is asked and how an
answer is judged: shared by bench/scoring_eval.py, tests and the data builder.

    from harness.eval_sets import INSTRUCTION, is_correct, load_questions, load_summaries

``load_questions()``: ``{"id", "category", "question", "answers"}`` dicts, ``answers`` the
accepted strings (lower-case). ``load_summaries()``: ``{"id", "source_id", "source",
"summary", "label", "corruption", "changed"}`` dicts. tests/data/scoring/SOURCES.md says
how both files were made (by tests/data/scoring/build_sets.py). ``load_risk_questions()``:
those questions followed by the ones of risk_questions.jsonl (same shape, none shared), more
data for fitting and testing the uncertainty risk.

``load_reference_answers()`` and ``load_reference_summaries()``: ``{"id", "source_id",
"source", "question", "text", "label", "kind", "changed", "split"}`` dicts for reference-mode
consistency (is ``text`` supported by ``source``?), ``label`` "faithful" or "hallucinated",
``split`` "fit" or "test" by whole passage; made by bench/reference_sets.py (SOURCES.md).

``INSTRUCTION`` follows every question in its chat turn (bench/scoring_eval.py and
tests/e2e/test_scoring_eval_live.py ask the same way). ``is_correct`` is the judge for the
questions: an answer is right when one accepted string appears in it as a whole word or
number, case-insensitive. Stdlib only, so the data builder can use it too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "scoring"
INSTRUCTION = "Answer with just the answer, in a few words."

_SPACES = re.compile(r"\s+")
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")  # forty-two, nur-sultan: a hyphen between letters
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def fold(text: str) -> str:
    """Lower-case, accents dropped (Bogotá = bogota), curly quotes straightened, a hyphen
    between letters read as a space (forty-two = forty two), runs of whitespace as one space."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SPACES.sub(" ", _WORD_HYPHEN.sub(" ", plain.casefold())).strip()


def _continues_a_number(text: str, start: int, end: int, *, digit_first: bool, digit_last: bool) -> bool:
    """Whether the match text[start:end] is part of a longer number: 1,234 / 3.14 / 4.5 / -4."""
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    if digit_first and (before.endswith("-") or (len(before) == 2 and before[0].isdigit() and before[1] in ".,")):
        return True
    return digit_last and len(after) == 2 and after[0] in ".," and after[1].isdigit()


def is_correct(answer_text: str, accepted: Sequence[str]) -> bool:
    """True when one accepted string occurs in the answer as a whole word or number.

    "14" does not contain the number 4, nor do "4.5", "4,000", "-4" or "4th"; "4." at the end
    of a sentence and "Four" (when "four" is accepted) do. An answer that names several
    candidates ("4 or 5") counts as right: the judge does not parse hedges.
    """
    text = fold(answer_text)
    for candidate in accepted:
        wanted = fold(candidate)
        if not wanted:
            continue
        for match in re.finditer(rf"(?<!\w){re.escape(wanted)}(?!\w)", text):
            edges = {"digit_first": wanted[0].isdigit(), "digit_last": wanted[-1].isdigit()}
            if not _continues_a_number(text, match.start(), match.end(), **edges):
                return True
    return False


def _load(name: str) -> list[dict[str, Any]]:
    with open(DATA_DIR / name, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def load_questions() -> list[dict[str, Any]]:
    """tests/data/scoring/questions.jsonl: short questions with their accepted answers."""
    return _load("questions.jsonl")


def load_risk_questions() -> list[dict[str, Any]]:
    """For the uncertainty risk (fitting and testing a calibrated "is this answer wrong"
    probability): the questions of questions.jsonl, then the about 400 more of
    risk_questions.jsonl, same shape and categories, none shared (ids ``category-rNN``).
    ``load_questions()`` stays the 202 of questions.jsonl that bench/scoring_eval.py reports on."""
    return load_questions() + _load("risk_questions.jsonl")


def load_summaries() -> list[dict[str, Any]]:
    """tests/data/scoring/summaries.jsonl: faithful and corrupted summaries of corpus passages."""
    return _load("summaries.jsonl")


def load_reference_answers() -> list[dict[str, Any]]:
    """tests/data/scoring/reference_answers.jsonl: a knowledge window, a question and a short
    answer, faithful or hallucinated (bench/reference_sets.py)."""
    return _load("reference_answers.jsonl")


def load_reference_summaries() -> list[dict[str, Any]]:
    """tests/data/scoring/reference_summaries.jsonl: a passage and an abstractive summary,
    faithful or hallucinated (bench/reference_sets.py); ``question`` is always None."""
    return _load("reference_summaries.jsonl")
