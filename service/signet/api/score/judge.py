"""The served model as a judge: yes/no questions and multiple-choice answers, read from
the logprobs of its first reply token rather than from parsed text.

No NLI model ships in a wheel, so entailment and support come from the model being
scored. Each question is one chat turn, answered greedily with one token and its top
``MAX_LOGPROBS`` logprobs; a label's probability sums its spellings ("Yes", " yes", ...).
With greedy decoding the listed tokens are exactly the k most likely, so a label that is
not listed has a probability between 0 and the smallest listed one: it is taken as half
of that (and both labels unlisted tells nothing: p = 1/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from starlette.concurrency import run_in_threadpool

from signet.api.score.engine_inputs import CostMeter, ask_batch
from signet.api.state import ServiceState
from signet.engine.model_store import encode_prompt
from signet.engine.protocol import MAX_LOGPROBS, SamplingOptions, TokenLogprobs
from signet.scoring.lexical import words

_YES = ("Yes", "yes", "YES")
_NO = ("No", "no", "NO")
OPTION_LETTERS = "ABCD"


@cache
def _label_ids(tokenizer, spellings: tuple[str, ...]) -> frozenset[int]:
    """Token ids that spell one label on their own, with or without a leading space."""
    ids = set()
    for spelling in spellings:
        for variant in (spelling, " " + spelling):
            encoded = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(encoded[0])
    return frozenset(ids)


def label_logprobs(first_token: TokenLogprobs, labels: Sequence[frozenset[int]]) -> list[float]:
    """Log-probability of each label (a set of token ids) at the reply's first token."""
    listed = dict(zip(first_token.top_ids[0], first_token.top[0], strict=True))
    unlisted = min(listed.values()) - math.log(2.0)
    values = []
    for ids in labels:
        found = [listed[token] for token in ids if token in listed]
        values.append(float(np.logaddexp.reduce(found)) if found else unlisted)
    return values


async def _first_tokens(
    state: ServiceState, meter: CostMeter, questions: Sequence[str], step: str
) -> list[TokenLogprobs]:
    """Each question as one chat turn, answered with one token: in batches (``ask_batch``)."""
    options = SamplingOptions(max_tokens=1, temperature=0.0, logprobs=MAX_LOGPROBS)
    turns = [[{"role": "user", "content": question}] for question in questions]
    prompts = await run_in_threadpool(lambda: [encode_prompt(state.tokenizer, None, turn) for turn in turns])
    return [reply.logprobs for reply in await ask_batch(state, meter, prompts, options, step)]


async def yes_no(
    state: ServiceState, meter: CostMeter, questions: Sequence[str], step: str
) -> list[tuple[float, float]]:
    """(log p(yes), log p(no)) for each question, asked in batches; ``step`` names them in the metrics."""
    labels = (_label_ids(state.tokenizer, _YES), _label_ids(state.tokenizer, _NO))
    replies = await _first_tokens(state, meter, questions, step)
    return [tuple(label_logprobs(reply, labels)) for reply in replies]


async def yes_probabilities(state: ServiceState, meter: CostMeter, questions: Sequence[str], step: str) -> list[float]:
    """p(yes) / (p(yes) + p(no)) for each question."""
    return [1.0 / (1.0 + math.exp(no - yes)) for yes, no in await yes_no(state, meter, questions, step)]


async def option_probabilities(
    state: ServiceState, meter: CostMeter, questions: Sequence[str], option_counts: Sequence[int], step: str
) -> list[list[float]]:
    """For each multiple-choice question, the distribution over its option letters."""
    replies = await _first_tokens(state, meter, questions, step)
    distributions = []
    for reply, count in zip(replies, option_counts, strict=True):
        labels = [_label_ids(state.tokenizer, (letter,)) for letter in OPTION_LETTERS[:count]]
        logprobs = np.array(label_logprobs(reply, labels))
        distributions.append(list(np.exp(logprobs - np.logaddexp.reduce(logprobs))))
    return distributions


def entailment_question(question: str, first: str, second: str) -> str:
    # Farquhar et al. (2024)'s entailment prompt, with the model asked for one word.
    return (
        f'We are evaluating answers to the question "{question}"\n'
        "Here are two possible answers:\n"
        f"Possible Answer 1: {first}\nPossible Answer 2: {second}\n"
        "Does Possible Answer 1 semantically entail Possible Answer 2? Respond with Yes or No."
    )


def support_question(context: str, sentence: str) -> str:
    # SelfCheckGPT's prompt (Manakul et al. 2023, "SelfCheck-Prompt").
    return (
        f"Context: {context}\n\nSentence: {sentence}\n\n"
        "Is the sentence supported by the context above? Answer Yes or No."
    )


def premise_entailment_question(premise: str, hypothesis: str) -> str:
    return (
        f"Premise: {premise}\n\nHypothesis: {hypothesis}\n\nDoes the premise entail the hypothesis? Answer Yes or No."
    )


# A worked example and an answer that starts with "Question:" keep small models to the
# format; without them the embedded 135M model wrote no parseable question at all. With
# them it often asks about the example instead (Paris, the Eiffel Tower): such drafts are
# dropped (``copies_the_example``). No stop string: on the 120 summaries of
# bench/mqag_coverage.py, ending drafts at a blank line left 24 of them with a question, at
# "Text:" 43, and without a stop 113 (a draft is parsed from its start, so what follows its
# option D does not matter).
QUESTION_START = "Question:"
_EXAMPLE_TEXT = "The Eiffel Tower was finished in 1889. It stands in Paris and is 330 metres tall."
_EXAMPLE_QUESTION = "In which city does the Eiffel Tower stand?\nA) Paris\nB) London\nC) Rome\nD) Berlin"
# The example's own names, numbers and things, and its options: a draft that uses them where
# the text does not is about the example.
_EXAMPLE_WORDS = frozenset({"eiffel", "tower", "1889", "pari", "330", "metre"})  # as _plain spells them
_EXAMPLE_OPTIONS = frozenset({"pari", "london", "rome", "berlin"})
# Words of any question: sharing only these with the text does not put a question on its topic.
_QUESTION_WORDS = frozenset(
    "which what when where who whom whose why how does did was were the and for from with that this text "
    "are has have can according".split()
)


def _plain(words_: list[str]) -> set[str]:
    """Words without a plural -s, so that "bridges" in the text meets "bridge" in a question."""
    return {word[:-1] if len(word) > 3 and word.endswith("s") else word for word in words_}


def question_writing_prompt(text: str) -> str:
    return (
        "Write a multiple-choice question about the text, with four options A to D, one of them correct.\n\n"
        f"Text: {_EXAMPLE_TEXT}\nQuestion: {_EXAMPLE_QUESTION}\n\nText: {text}\n"
    )


def copies_the_example(question: str, options: Sequence[str], text: str) -> bool:
    """Whether a drafted question is about the prompt's worked example rather than the text:
    its question names something of the example the text does not, two or more of its options
    are the example's own that the text lacks, or it shares no word of three letters or more
    with the text besides question words."""
    text_words = _plain(words(text))
    if (_plain(words(question)) & _EXAMPLE_WORDS) - text_words:
        return True
    if len((_plain(words(" ".join(options))) & _EXAMPLE_OPTIONS) - text_words) >= 2:
        return True
    topical = {word for word in _plain(words(question)) if len(word) >= 3} - _QUESTION_WORDS
    return not topical & text_words


def answering_prompt(context: str, question: str, options: Sequence[str]) -> str:
    listed = "\n".join(f"{letter}) {option}" for letter, option in zip(OPTION_LETTERS, options, strict=False))
    return (
        f"Text: {context}\n\nAnswer the question from the text only.\n\nQuestion: {question}\n{listed}\n\n"
        "Reply with the letter of the correct option."
    )


def answerable_prompt(source: str, question: str) -> str:
    return f"Text: {source}\n\nQuestion: {question}\n\nCan the question be answered from the text? Answer Yes or No."
