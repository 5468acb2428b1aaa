"""``POST /score/consistency``: is each sentence of a text backed by the model's other
answers (self-consistency, SelfCheckGPT) or by a source document (reference: MQAG and
sentence entailment)? Higher scores mean less support."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

import numpy as np
from starlette.concurrency import run_in_threadpool

from signet.api.auth import Caller, authorize_fixed_samples
from signet.api.embedding import embed
from signet.api.errors import ApiError
from signet.api.generation import check_max_tokens, require_engine
from signet.api.limits import check_text_size
from signet.api.protocol import MethodScore
from signet.api.risk import risk
from signet.api.score import judge
from signet.api.score.engine_inputs import (
    CostMeter,
    ask,
    check_fits,
    check_sequences,
    draw_samples,
    encode,
    encode_text,
)
from signet.api.score.judge_probe import usable_methods
from signet.api.score.protocol import (
    TEXTS_WITHHELD,
    Claim,
    ConsistencyRequest,
    ConsistencyResponse,
    QuestionReport,
    ReferenceMethod,
    SelfCheckMethod,
    SentenceScore,
)
from signet.api.state import ServiceState
from signet.engine.protocol import SamplingOptions, all_or_none
from signet.scoring.claims import ReferenceCheck, check_against_source
from signet.scoring.distances import mqag_score
from signet.scoring.lexical import ngram_novelty, words
from signet.scoring.risk import reference_features
from signet.scoring.selfcheck import embedding_scores, ngram_scores, support_scores
from signet.scoring.sentences import SentenceSpan, split_sentences

SELF_METHODS = get_args(SelfCheckMethod)
REFERENCE_METHODS = get_args(ReferenceMethod)
MQAG_METHODS = ("mqag_kl", "mqag_total_variation", "mqag_hellinger", "mqag_hellinger_squared", "mqag_counting")
# SelfCheckGPT's LLM variants: the question asked of each (sentence, sample) pair.
LLM_SELFCHECKS = {
    "selfcheck_llm_support": judge.support_question,  # SelfCheck-Prompt
    "selfcheck_llm_entailment": lambda sample, sentence: judge.premise_entailment_question(sample, sentence),
}
MAX_SENTENCES = 64  # each sentence costs a judge question per sample (or per source check)
QUESTION_TOKENS = 160
# Questions are drawn cooler than answers: at temperature 1 the embedded model kept the
# question format in about a third of its drafts, at 0.7 in most.
QUESTION_TEMPERATURE = 0.7
# Question-writing requests at most per score: the first, and retries for the drafts dropped
# (malformed, about the prompt's example, or repeated), each with a seed of its own.
MQAG_ROUNDS = 3

MEANINGS = {
    "selfcheck_unigram": "mean -log p of the sentence's words under a unigram model fitted on the samples "
    "(and the text): words the samples never use score high",
    "selfcheck_unigram_max": "largest -log p of a word of the sentence under the same unigram model: its rarest word",
    "selfcheck_bigram": "mean -log p of the sentence's word pairs under a bigram frequency model fitted on the "
    "samples (and the text)",
    "selfcheck_bigram_max": "largest -log p of a word pair of the sentence under the same bigram model",
    "selfcheck_bigram_novelty": "share of the sentence's word pairs that no sample uses",
    "selfcheck_embedding": "1 - mean over samples of the best cosine similarity between the sentence and "
    "a sample sentence (all-MiniLM-L6-v2)",
    "selfcheck_llm_support": "1 - mean over samples of P(yes) when the model is asked whether the sample "
    "supports the sentence",
    "selfcheck_llm_entailment": "1 - mean over samples of P(yes) when the model is asked whether the sample, "
    "as premise, entails the sentence",
    "source_unigram": "mean -log p of the sentence's words under a unigram model fitted on the source "
    "(and the text): words the source never uses score high",
    "source_unigram_max": "largest -log p of a word of the sentence under the same unigram model: its rarest word",
    "source_bigram": "mean -log p of the sentence's word pairs under a bigram frequency model fitted on the "
    "source (and the text)",
    "source_bigram_max": "largest -log p of a word pair of the sentence under the same bigram model",
    "source_bigram_novelty": "share of the sentence's word pairs that the source never uses",
    "source_entailment": "1 - P(yes) when the model is asked whether the source entails the sentence",
    "mqag_kl": "MQAG: mean KL(source answers || text answers) over answerable generated questions (nats)",
    "mqag_total_variation": "MQAG: mean total variation 1/2 sum |p - q| between the answers from source and text",
    "mqag_hellinger": "MQAG: mean Hellinger distance between the answers from source and text",
    "mqag_hellinger_squared": "MQAG: mean squared Hellinger distance, 1 - sum sqrt(p q), between the answers",
    "mqag_counting": "MQAG: fraction of answerable questions whose most likely answer differs between source and text",
}


@dataclass
class Gathered:
    sentence_scores: dict[str, list[float]]  # method -> a score per sentence
    passage_scores: list[MethodScore]  # methods with no per-sentence form (MQAG)
    samples: list[str]
    questions: list[QuestionReport]
    warnings: list[str]
    texts_withheld: bool = False
    check: ReferenceCheck | None = None  # reference mode: claims and overlap, for the reasons and the risk


async def score_consistency(state: ServiceState, request: ConsistencyRequest, caller: Caller) -> ConsistencyResponse:
    """The scores; for a caller that may not turn the watermark off, without the texts the
    service generated (samples, MQAG questions: they are generated without it)."""
    authorize_fixed_samples(caller, request.seed)
    _check_sizes(state, request)
    sentences = await run_in_threadpool(split_sentences, request.text)
    if len(sentences) > MAX_SENTENCES:
        raise ApiError(422, f"text: {len(sentences)} sentences, at most {MAX_SENTENCES}", "text")
    methods = resolve_methods(request)
    check_sequences(
        state,
        planned_sequences(request, methods, len(sentences)),
        "draw fewer samples, check a shorter text, or ask for one LLM self-check (each asks a judge "
        "question per sentence and sample)",
        "samples" if request.mode == "self" else "text",
    )
    require_engine(state)
    methods, judge_warnings = await usable_methods(
        state, methods, always=request.judge == "always", tenant=caller.queue_tenant
    )
    if request.mode == "self":
        meter = CostMeter(
            "consistency", caller.queue_tenant, "samples", "draw fewer or shorter samples, or check a shorter text"
        )
    else:
        meter = CostMeter(
            "consistency", caller.queue_tenant, "source", "give a shorter source or text, or ask fewer questions"
        )
    if request.mode == "self":
        gathered = await _self_consistency(state, meter, request, sentences, methods)
    else:
        gathered = await _reference(state, meter, request, sentences, methods)
    if not caller.may_disable_watermark and (gathered.samples or gathered.questions):
        gathered = _without_texts(gathered)
    check = gathered.check
    passage = [
        MethodScore(method=method, value=float(np.mean(values)), meaning=MEANINGS[method])
        for method, values in gathered.sentence_scores.items()
    ]
    return ConsistencyResponse(
        mode=request.mode,
        sentences=[
            SentenceScore(
                start=sentence.start,
                end=sentence.end,
                text=sentence.text,
                scores={method: float(values[index]) for method, values in gathered.sentence_scores.items()},
                claims=_claims(check, index, sentence) if check is not None else [],
            )
            for index, sentence in enumerate(sentences)
        ],
        scores=passage + gathered.passage_scores,
        risk=risk("reference", reference_features(check), state.model_name) if check is not None else None,
        samples=gathered.samples,
        questions=gathered.questions,
        texts_withheld=gathered.texts_withheld,
        warnings=judge_warnings + gathered.warnings,
        cost=meter.report(),
        model=state.model_name,
    )


def _claims(check: ReferenceCheck, index: int, sentence: SentenceSpan) -> list[Claim]:
    """A sentence's claims, their offsets moved from the sentence into the whole text."""
    return [
        Claim(
            kind=claim.kind,
            start=sentence.start + claim.start,
            end=sentence.start + claim.end,
            text=claim.text,
            reason=claim.reason,
        )
        for claim in check.claims[index]
    ]


def planned_sequences(request: ConsistencyRequest, methods: tuple[str, ...], sentences: int) -> int:
    """The most sequences the score can run. Self: the samples, and per LLM self-check a judge
    question per (sentence, sample). Reference: an entailment question per sentence; MQAG's
    questions, each answered from the source and from the text and checked for answerability."""
    if request.mode == "self":
        llm_methods = len(set(methods) & set(LLM_SELFCHECKS))
        return request.samples + llm_methods * sentences * request.samples
    count = sentences if "source_entailment" in methods else 0
    if set(methods) & set(MQAG_METHODS):
        count += (MQAG_ROUNDS + 3) * request.questions  # drafts, then two answers and an answerability check
    return count


def _without_texts(gathered: Gathered) -> Gathered:
    questions = [report.model_copy(update={"question": None, "options": []}) for report in gathered.questions]
    warnings = [*gathered.warnings, TEXTS_WITHHELD]
    return Gathered(gathered.sentence_scores, gathered.passage_scores, [], questions, warnings, True, gathered.check)


def resolve_methods(request: ConsistencyRequest) -> tuple[str, ...]:
    allowed = SELF_METHODS if request.mode == "self" else REFERENCE_METHODS
    if request.methods is None:
        return allowed
    for method in request.methods:
        if method not in allowed:
            needs = "a prompt (self-consistency)" if method in SELF_METHODS else "a source (reference mode)"
            raise ApiError(422, f"methods: {method} needs {needs}", "methods")
    return tuple(dict.fromkeys(request.methods))


def _check_sizes(state: ServiceState, request: ConsistencyRequest) -> None:
    limit = state.settings.max_text_chars
    check_max_tokens(state, request.max_tokens, "max_tokens")
    for field in ("text", "prompt", "source"):
        value = getattr(request, field)
        if value is not None:
            check_text_size(field, len(value), limit)


NGRAM_ORDERS = {"unigram": 1, "bigram": 2}


def _ngram(prefix: str, methods, sentences: list[SentenceSpan], evidence: list[str]) -> dict[str, list[float]]:
    """SelfCheck-Ngram fitted on the evidence (samples, or the source), sentence by sentence, and the text."""
    evidence_sentences = [_words(s.text) for text in evidence for s in split_sentences(text)]
    sentence_words = [_words(s.text) for s in sentences]
    scores = {}
    for name, order in NGRAM_ORDERS.items():
        wanted = [method for method in (f"{prefix}_{name}", f"{prefix}_{name}_max") if method in methods]
        if not wanted:
            continue
        model = ngram_scores(sentence_words, evidence_sentences or [[]], n=order)
        values = {f"{prefix}_{name}": model.sentence_average, f"{prefix}_{name}_max": model.sentence_max}
        scores.update({method: list(values[method]) for method in wanted})
    if f"{prefix}_bigram_novelty" in methods:
        novelty = ngram_novelty(sentence_words, evidence_sentences, n=2)
        scores[f"{prefix}_bigram_novelty"] = list(novelty)
    return scores


def _words(text: str) -> list[str]:
    # A sentence of punctuation alone still needs a token for the unigram model.
    return words(text) or [text.lower()]


async def _self_consistency(
    state: ServiceState, meter: CostMeter, request: ConsistencyRequest, sentences: list[SentenceSpan], methods
) -> Gathered:
    if not methods:  # every method asked for was an LLM judge that failed its probe: no samples to draw
        return Gathered({}, [], [], [], [])
    prompt_ids = await encode(state, None, [{"role": "user", "content": request.prompt}])
    check_fits(state, len(prompt_ids), request.max_tokens, "max_tokens", "the prompt with max_tokens")
    samples = [
        sample.text
        for sample in await draw_samples(
            state, meter, prompt_ids, request.samples, request.max_tokens, request.temperature, request.seed
        )
    ]
    scores: dict[str, list[float]] = {}
    scores.update(await run_in_threadpool(_ngram, "selfcheck", methods, sentences, samples))
    if "selfcheck_embedding" in methods:
        scores["selfcheck_embedding"] = list(await _embedding_support(state, sentences, samples))
    llm_methods = [method for method in LLM_SELFCHECKS if method in methods]
    judged = await all_or_none(_llm_selfcheck(state, meter, method, sentences, samples) for method in llm_methods)
    scores.update(zip(llm_methods, judged, strict=True))
    return Gathered(scores, [], samples, [], [])


async def _llm_selfcheck(
    state: ServiceState, meter: CostMeter, method: str, sentences: list[SentenceSpan], samples: list[str]
) -> list[float]:
    question = LLM_SELFCHECKS[method]
    asked = [question(sample, sentence.text) for sentence in sentences for sample in samples]
    labels = np.array(await judge.yes_no(state, meter, asked, method)).reshape(len(sentences), len(samples), 2)
    return list(support_scores(labels[..., 0], labels[..., 1]))


async def _embedding_support(state: ServiceState, sentences: list[SentenceSpan], samples: list[str]) -> np.ndarray:
    sample_sentences = await run_in_threadpool(
        lambda: [[s.text for s in split_sentences(sample)] or [sample] for sample in samples]
    )
    flat = [s.text for s in sentences] + [text for pieces in sample_sentences for text in pieces]
    vectors = await embed(state, flat)
    sentence_vectors, rest = vectors[: len(sentences)], vectors[len(sentences) :]
    per_sample, start = [], 0
    for pieces in sample_sentences:
        per_sample.append(rest[start : start + len(pieces)])
        start += len(pieces)
    return embedding_scores(sentence_vectors, per_sample)


async def _reference(
    state: ServiceState, meter: CostMeter, request: ConsistencyRequest, sentences: list[SentenceSpan], methods
) -> Gathered:
    scores: dict[str, list[float]] = {}
    scores.update(await run_in_threadpool(_ngram, "source", methods, sentences, [request.source]))
    check = await run_in_threadpool(check_against_source, [s.text for s in sentences], request.source)
    entailment = None
    if "source_entailment" in methods:
        questions = [judge.premise_entailment_question(request.source, s.text) for s in sentences]
        entailment = judge.yes_probabilities(state, meter, questions, "source_entailment")
    mqag = _mqag(state, meter, request) if set(methods) & set(MQAG_METHODS) else None
    results = await all_or_none(task for task in (entailment, mqag) if task is not None)
    if entailment is not None:
        scores["source_entailment"] = [1.0 - probability for probability in results[0]]
    passage, reports, warnings = [], [], []
    if mqag is not None:
        reports, writing_warnings = results[-1]
        passage, warnings = _mqag_scores(reports, methods)
        warnings = writing_warnings + warnings
    return Gathered(scores, passage, [], reports, warnings, check=check)


def _option(letter: str, number: int) -> str:
    """An option line's marker: "A)", "A.", "A:", "Option A:", or a list's "-", "*", "1."."""
    return rf"\s*(?:(?:option\s+)?{letter}[).:]|[-*•]|{number}[.)])\s*(?P<{letter.lower()}>.+?)\s*"


# The four options on lines of their own after the question, with any of the markers above:
# the embedded model wrote a dash list ("Options:\n- Paris\n- London ...") in about one
# draft of ten, which the letters alone left malformed.
_QUESTION = re.compile(
    r"Question:\s*(?P<question>.+?)\s*\n(?:\s*Options?:\s*\n)?"
    + r"\n".join(_option(letter, number) for number, letter in enumerate("ABCD", start=1))
    + r"(?:\n|$)",
    re.IGNORECASE,
)


def parse_question(reply: str) -> tuple[str, list[str]] | None:
    """A generated multiple-choice question and its four options; None when malformed."""
    match = _QUESTION.search(reply)
    if match is None:
        return None
    return match["question"], [match["a"], match["b"], match["c"], match["d"]]


async def _mqag(
    state: ServiceState, meter: CostMeter, request: ConsistencyRequest
) -> tuple[list[QuestionReport], list[str]]:
    """Questions from the text, answered from the source and from the text (Manakul et al. 2023)."""
    questions, warnings = await _write_questions(state, meter, request)
    if not questions:
        return [], warnings
    asks = [
        judge.answering_prompt(context, question, choices)
        for question, choices in questions
        for context in (request.source, request.text)
    ]
    answerable_asks = [judge.answerable_prompt(request.source, question) for question, _ in questions]
    distributions, answerable = await all_or_none(
        [
            judge.option_probabilities(state, meter, asks, [4] * len(asks), "mqag"),
            judge.yes_probabilities(state, meter, answerable_asks, "mqag"),
        ]
    )
    reports = [
        QuestionReport(
            question=question,
            options=options,
            source_probabilities=distributions[2 * index],
            text_probabilities=distributions[2 * index + 1],
            answerable=answerable[index] > 0.5,
        )
        for index, (question, options) in enumerate(questions)
    ]
    return reports, warnings


async def _write_questions(
    state: ServiceState, meter: CostMeter, request: ConsistencyRequest
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Up to ``questions`` well-formed, distinct questions about the text, in at most
    MQAG_ROUNDS requests; a warning says what was dropped when fewer are kept."""
    prompt_ids = await encode(state, None, [{"role": "user", "content": judge.question_writing_prompt(request.text)}])
    prompt_ids += await encode_text(state, judge.QUESTION_START)
    check_fits(state, len(prompt_ids), QUESTION_TOKENS, "text", "the question-writing prompt")
    kept: dict[str, tuple[str, list[str]]] = {}
    dropped = {"malformed": 0, "about the prompt's example": 0, "repeated": 0}
    for round_number in range(MQAG_ROUNDS):
        missing = request.questions - len(kept)
        if missing == 0:
            break
        seed = None if request.seed is None else (request.seed + round_number) % 2**63
        options = SamplingOptions(max_tokens=QUESTION_TOKENS, temperature=QUESTION_TEMPERATURE, seed=seed, n=missing)
        for reply in await ask(state, meter, prompt_ids, options, "mqag"):
            question = parse_question(judge.QUESTION_START + reply.text)
            if question is None:
                dropped["malformed"] += 1
            elif judge.copies_the_example(*question, request.text):
                dropped["about the prompt's example"] += 1
            elif question[0].lower() in kept:
                dropped["repeated"] += 1
            else:
                kept[question[0].lower()] = question
    if len(kept) == request.questions:
        return list(kept.values()), []
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.items() if count) or "none"
    return list(kept.values()), [
        f"MQAG: {len(kept)} of {request.questions} questions written; drafts dropped: {reasons}"
    ]


def _mqag_scores(reports: list[QuestionReport], methods) -> tuple[list[MethodScore], list[str]]:
    if not reports:
        return [], ["MQAG: the model wrote no well-formed multiple-choice question; MQAG scores left out"]
    kept = [report for report in reports if report.answerable]
    if not kept:
        return [], ["MQAG: the source answers none of the generated questions; MQAG scores left out"]
    distances = mqag_score(
        [report.source_probabilities for report in kept], [report.text_probabilities for report in kept]
    )
    values = {
        "mqag_kl": distances.kl,
        "mqag_total_variation": distances.total_variation,
        "mqag_hellinger": distances.hellinger,
        "mqag_hellinger_squared": distances.hellinger_squared,
        "mqag_counting": distances.counting,
    }
    scores = [
        MethodScore(method=method, value=values[method], meaning=MEANINGS[method])
        for method in MQAG_METHODS
        if method in methods
    ]
    return scores, []
