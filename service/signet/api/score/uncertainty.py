"""``POST /score/uncertainty``: gather an answer's logprobs, samples and an ensemble from
the engine, then hand them to the pure methods in ``signet.scoring``."""

from __future__ import annotations

import re
from functools import partial
from typing import get_args

import numpy as np
from starlette.concurrency import run_in_threadpool

from signet.api.answer_scores import FREE_METHODS, AnswerWords, answer_scores, pmi_score
from signet.api.auth import Caller, authorize_fixed_samples
from signet.api.embedding import embed
from signet.api.errors import ApiError
from signet.api.generation import check_max_tokens, check_prompt_size, require_engine
from signet.api.limits import check_text_size
from signet.api.protocol import MethodScore
from signet.api.risk import Decoding
from signet.api.score import judge
from signet.api.score.engine_inputs import (
    CostMeter,
    check_fits,
    check_sequences,
    draw_samples,
    encode,
    encode_text,
    generate_answer,
    teacher_force,
)
from signet.api.score.protocol import (
    TEXTS_WITHHELD,
    DecompositionMethod,
    SampleMethod,
    UncertaintyRequest,
    UncertaintyResponse,
)
from signet.api.state import ServiceState
from signet.engine.protocol import Completion, TokenLogprobs, all_or_none
from signet.scoring.clustering import cluster_by_bidirectional_entailment, num_semantic_sets
from signet.scoring.decomposition import SequenceDecomposition, align_top_k, decompose_sequence
from signet.scoring.laplacian import eig_val_laplacian
from signet.scoring.lexical import lexical_similarity, words
from signet.scoring.samples import discrete_semantic_entropy, monte_carlo_sequence_entropy, semantic_entropy

SAMPLE_METHODS = get_args(SampleMethod)
DECOMPOSITION_METHODS = get_args(DecompositionMethod)
# Cosine similarity of all-MiniLM-L6-v2 above which two answers count as entailing each
# other when `similarity` is "embedding" (used as the entailment probability's threshold).
EMBEDDING_EQUIVALENCE = 0.8

MEANINGS = {
    "monte_carlo_sequence_entropy": "mean -log p(sample | prompt) over the samples (nats): "
    "a Monte-Carlo estimate of the entropy of the model's answers",
    "semantic_entropy": "entropy (nats) over the samples' meaning classes, each weighted by its samples' "
    "length-normalised probabilities",
    "discrete_semantic_entropy": "entropy (nats) of how often each meaning class occurs among the samples",
    "lexical_similarity": "1 - mean ROUGE-L F1 between pairs of samples: how much their wording differs",
    "num_semantic_sets": "number of meaning classes among the samples (components of mutual entailment)",
    "eig_val_laplacian": "sum over the samples' similarity-graph Laplacian eigenvalues of max(0, 1 - eigenvalue): "
    "a continuous count of meanings",
    "total_uncertainty": "entropy (nats) of the ensemble's mean next-token distribution, summed over the answer",
    "aleatoric_uncertainty": "mean entropy (nats) of each prompt wording's own distribution, summed over the "
    "answer: uncertainty every wording shares",
    "epistemic_uncertainty": "mutual information (nats) between next token and prompt wording, summed over the "
    "answer: how much the wordings disagree",
}


async def score_uncertainty(state: ServiceState, request: UncertaintyRequest, caller: Caller) -> UncertaintyResponse:
    """The scores; for a caller that may not turn the watermark off, without the texts the
    service generated (they are generated without it)."""
    authorize_fixed_samples(caller, request.seed)
    _check_sizes(state, request)
    methods = resolve_methods(request)
    check_sequences(
        state,
        planned_sequences(request, methods),
        "ask for fewer samples (with similarity 'llm' every ordered pair of samples is a judge question: "
        "samples x (samples - 1)), or use similarity 'embedding'",
    )
    require_engine(state)
    meter = CostMeter(
        "uncertainty",
        caller.queue_tenant,
        "samples",
        "ask for fewer or shorter samples (max_tokens), give a shorter prompt, or use similarity 'embedding'",
    )
    prompt_ids = await encode(state, request.prompt, request.turns())
    wants_samples = bool(set(methods) & set(SAMPLE_METHODS))
    if request.response is None or wants_samples:
        check_fits(state, len(prompt_ids), request.max_tokens, "max_tokens", "the prompt with max_tokens")
    answer_ids, answer, text = await _answer(state, meter, request, prompt_ids)
    # A generated answer is greedy and unwatermarked; a caller's has no known decoding.
    decoding = Decoding(temperature=0.0, watermarked=False) if request.response is None else None
    scores, risk = await run_in_threadpool(
        partial(
            answer_scores,
            answer,
            AnswerWords(state.tokenizer, answer_ids, request.prompt_text()),
            state.vocab_size,
            state.model_name,
            decoding,
            methods,
        )
    )
    pmi, samples, ensemble = await all_or_none(
        [
            _pmi(state, meter, request, answer_ids, answer) if "pmi" in methods else _nothing(),
            _samples(state, meter, request, prompt_ids) if wants_samples else _nothing(),
            _decomposition(state, meter, request, answer_ids, answer)
            if set(methods) & set(DECOMPOSITION_METHODS)
            else _nothing(),
        ]
    )
    classes = None
    if pmi is not None:
        scores.append(pmi)
    if samples is not None:
        sample_scores, classes = await _sample_scores(state, meter, request, samples, methods)
        scores.extend(sample_scores)
    if ensemble is not None:
        scores.extend(score for score in ensemble if score.method in methods)
    withheld = not caller.may_disable_watermark and (request.response is None or bool(samples))
    return UncertaintyResponse(
        response=None if withheld and request.response is None else text,
        generated=request.response is None,
        response_tokens=len(answer_ids),
        scores=scores,
        risk=risk,
        samples=[] if withheld else [sample.text for sample in samples or []],
        semantic_classes=classes,
        texts_withheld=withheld,
        warnings=[TEXTS_WITHHELD] if withheld else [],
        cost=meter.report(),
        model=state.model_name,
    )


def planned_sequences(request: UncertaintyRequest, methods: tuple[str, ...]) -> int:
    """The most sequences the score can run: the answer, the PMI pass, the samples, a judge
    question per ordered pair of samples (all distinct, at worst), a pass per paraphrase."""
    count = 1 + ("pmi" in methods)
    if set(methods) & set(SAMPLE_METHODS):
        count += request.samples
        if request.similarity == "llm":
            count += request.samples * (request.samples - 1)
    if set(methods) & set(DECOMPOSITION_METHODS):
        count += len(request.paraphrases)
    return count


def resolve_methods(request: UncertaintyRequest) -> tuple[str, ...]:
    """The requested methods, or all the inputs allow; 422 for one they do not allow."""
    if request.samples == 1:
        raise ApiError(422, "samples: one sample has nothing to disagree with; give 0, or 2 to 32", "samples")
    allowed = {method: None for method in (*FREE_METHODS, "pmi")}
    if request.samples >= 2:
        allowed.update(dict.fromkeys(SAMPLE_METHODS))
    if request.paraphrases:
        allowed.update(dict.fromkeys(DECOMPOSITION_METHODS))
    if request.methods is None:
        return tuple(allowed)
    for method in request.methods:
        if method in SAMPLE_METHODS and method not in allowed:
            raise ApiError(422, f"methods: {method} needs samples >= 2, got {request.samples}", "samples")
        if method in DECOMPOSITION_METHODS and method not in allowed:
            raise ApiError(422, f"methods: {method} needs paraphrases of the prompt", "paraphrases")
    return tuple(dict.fromkeys(request.methods))


def _check_sizes(state: ServiceState, request: UncertaintyRequest) -> None:
    limit = state.settings.max_text_chars
    check_max_tokens(state, request.max_tokens, "max_tokens")
    check_prompt_size(state, request.prompt, request.turns())
    if request.response is not None:
        check_text_size("response", len(request.response), limit)
    check_text_size("paraphrases", sum(len(text) for text in request.paraphrases or []), limit)


async def _nothing() -> None:
    return None


async def _answer(
    state: ServiceState, meter: CostMeter, request: UncertaintyRequest, prompt_ids: list[int]
) -> tuple[list[int], TokenLogprobs, str]:
    if request.response is not None:
        answer_ids = await encode_text(state, request.response)
        check_fits(state, len(prompt_ids) + len(answer_ids), 1, "response", "the prompt with the response")
        return answer_ids, await teacher_force(state, meter, prompt_ids, answer_ids, "answer"), request.response
    answer = await generate_answer(state, meter, prompt_ids, request.max_tokens)
    return answer.token_ids, answer.logprobs, answer.text


async def _pmi(
    state: ServiceState, meter: CostMeter, request: UncertaintyRequest, answer_ids: list[int], answer: TokenLogprobs
) -> MethodScore:
    """The same answer after an empty prompt: an empty user turn, or the start-of-text token."""
    if request.messages is not None:
        context = await encode(state, None, [{"role": "user", "content": ""}])
    else:
        tokenizer = state.tokenizer
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        context = [start]
    return pmi_score(answer, await teacher_force(state, meter, context, answer_ids, "pmi"))


async def _samples(
    state: ServiceState, meter: CostMeter, request: UncertaintyRequest, prompt_ids: list[int]
) -> list[Completion]:
    return await draw_samples(
        state, meter, prompt_ids, request.samples, request.max_tokens, request.temperature, request.seed
    )


async def _sample_scores(
    state: ServiceState,
    meter: CostMeter,
    request: UncertaintyRequest,
    samples: list[Completion],
    methods: tuple[str, ...],
) -> tuple[list[MethodScore], list[int]]:
    texts = [sample.text for sample in samples]
    if request.similarity == "llm":
        entailment = await entailment_matrix(state, meter, question_of(request), texts)
        threshold = 0.5
    else:
        vectors = await embed(state, texts)
        entailment = np.clip(vectors @ vectors.T, 0.0, 1.0)
        threshold = EMBEDDING_EQUIVALENCE
    # Off the event loop: ROUGE-L over every pair of 32 samples of 1,024 tokens is
    # about half a billion steps, and the clustering and eigenvalues add more.
    return await run_in_threadpool(_sample_method_scores, samples, texts, entailment, threshold, methods)


def _sample_method_scores(
    samples: list[Completion], texts: list[str], entailment: np.ndarray, threshold: float, methods: tuple[str, ...]
) -> tuple[list[MethodScore], list[int]]:
    classes = cluster_by_bidirectional_entailment(entailment, threshold)
    # Length-normalised, as Farquhar et al.'s code weighs classes: long answers are not penalised.
    mean_logprobs = [float(np.mean(sample.logprobs.chosen)) for sample in samples]
    values = {
        "monte_carlo_sequence_entropy": lambda: monte_carlo_sequence_entropy(
            [sample.logprobs.chosen for sample in samples]
        ),
        "semantic_entropy": lambda: semantic_entropy(mean_logprobs, classes),
        "discrete_semantic_entropy": lambda: discrete_semantic_entropy(classes),
        "lexical_similarity": lambda: 1.0 - lexical_similarity([words(text) for text in texts]),
        "num_semantic_sets": lambda: float(num_semantic_sets(entailment, threshold)),
        "eig_val_laplacian": lambda: eig_val_laplacian(entailment),
    }
    scores = [
        MethodScore(method=method, value=values[method](), meaning=MEANINGS[method])
        for method in SAMPLE_METHODS
        if method in methods
    ]
    return scores, classes


def question_of(request: UncertaintyRequest) -> str:
    """What the samples answer: the prompt, or the last user turn (else the last turn)."""
    if request.prompt is not None:
        return request.prompt
    users = [message.content for message in request.messages if message.role == "user"]
    return users[-1] if users else request.messages[-1].content


def _same_answer_key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


async def entailment_matrix(state: ServiceState, meter: CostMeter, question: str, answers: list[str]) -> np.ndarray:
    """P(answer i entails answer j), judged by the served model; answers equal up to case,
    spacing and punctuation entail each other without asking."""
    keys = [_same_answer_key(answer) for answer in answers]
    distinct = list(dict.fromkeys(keys))
    first_answer = {key: answers[keys.index(key)] for key in distinct}
    pairs = [(i, j) for i in range(len(distinct)) for j in range(len(distinct)) if i != j]
    probabilities = await judge.yes_probabilities(
        state,
        meter,
        [judge.entailment_question(question, first_answer[distinct[i]], first_answer[distinct[j]]) for i, j in pairs],
        "entailment",
    )
    between_distinct = np.eye(len(distinct))
    for (i, j), probability in zip(pairs, probabilities, strict=True):
        between_distinct[i, j] = probability
    index = [distinct.index(key) for key in keys]
    return between_distinct[np.ix_(index, index)]


async def _decomposition(
    state: ServiceState, meter: CostMeter, request: UncertaintyRequest, answer_ids: list[int], answer: TokenLogprobs
) -> list[MethodScore]:
    """Teacher-force the answer after each paraphrase; the prompt's own logprobs are the first member."""
    contexts = [await encode(state, *_paraphrased(request, paraphrase)) for paraphrase in request.paraphrases]
    for context in contexts:
        check_fits(state, len(context) + len(answer_ids), 1, "paraphrases", "a paraphrase with the answer")
    members = [answer, *await all_or_none(teacher_force(state, meter, c, answer_ids, "paraphrases") for c in contexts)]
    split = await run_in_threadpool(_decompose, members, len(answer_ids))
    parts = {
        "total_uncertainty": (split.sequence.total, [token.total for token in split.per_token]),
        "aleatoric_uncertainty": (split.sequence.aleatoric, [token.aleatoric for token in split.per_token]),
        "epistemic_uncertainty": (split.sequence.epistemic, [token.epistemic for token in split.per_token]),
    }
    return [
        MethodScore(method=method, value=value, meaning=MEANINGS[method], per_token=per_token_values)
        for method, (value, per_token_values) in parts.items()
    ]


def _decompose(members: list[TokenLogprobs], answer_tokens: int) -> SequenceDecomposition:
    per_token = [
        align_top_k([dict(zip(member.top_ids[t], member.top[t], strict=True)) for member in members])
        for t in range(answer_tokens)
    ]
    return decompose_sequence(per_token)


def _paraphrased(request: UncertaintyRequest, paraphrase: str) -> tuple[str | None, list[dict[str, str]] | None]:
    if request.prompt is not None:
        return paraphrase, None
    turns = request.turns()
    users = [index for index, turn in enumerate(turns) if turn["role"] == "user"]
    if not users:
        raise ApiError(422, "paraphrases: messages hold no user turn to rephrase", "paraphrases")
    last_user = users[-1]
    turns[last_user] = {**turns[last_user], "content": paraphrase}
    return None, turns
