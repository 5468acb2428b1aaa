"""What the scores need from the engine: an answer's logprobs, samples, one-token replies.

Every call goes through ``ask`` or ``ask_batch`` so that the cost of a score (engine
requests, sequences, tokens prefilled and generated) is counted in one place, at most
``MAX_IN_FLIGHT`` of its engine requests run at once, and engine failures become the
same problems generation reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from signet import metrics
from signet.api.errors import ApiError
from signet.api.generation import engine_problem
from signet.api.score.protocol import Cost
from signet.api.state import ServiceState
from signet.engine.model_store import encode_prompt
from signet.engine.protocol import (
    MAX_LOGPROBS,
    Completion,
    EngineError,
    SamplingOptions,
    TokenLogprobs,
    all_or_none,
    fits_context,
)

# Engine requests of one score running at once. Its judge questions go in batches of
# JUDGE_BATCH prompts, one engine request (one queue job) each, so the largest score
# (1,034 sequences) holds at most 4 queue places instead of the 947 it took unbatched.
MAX_IN_FLIGHT = 4
# The engine runs up to SIGNET_ENGINE_MAX_CONCURRENCY (32) sequences per step: 64 keeps a
# batch a few steps long, so one job is neither a trickle nor minutes of a worker's time.
JUDGE_BATCH = 64


@dataclass
class CostMeter:
    """One score's engine requests: for whom (``tenant``, None in development mode), how
    many at once, and what they cost. ``budget_field``: the request field a caller changes to
    fit SIGNET_SCORE_MAX_TOKENS, and ``budget_advice`` says how."""

    score: str  # "uncertainty" or "consistency": the metrics' score label
    tenant: str | None = None
    budget_field: str = "samples"
    budget_advice: str = "ask for fewer samples"
    admitted_tokens: int = 0  # what the engine requests sent or about to be may read and generate
    engine_requests: int = 0
    sequences: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))

    def count(self, step: str, prompt_tokens: int, completions: list[Completion]) -> None:
        """One engine request, for ``step`` (signet.metrics: SCORING_ENGINE_REQUESTS)."""
        generated = sum(completion.completion_tokens for completion in completions)
        self.engine_requests += 1
        self.sequences += len(completions)
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += generated
        metrics.count_scoring_request(self.score, step, prompt_tokens, generated)

    def report(self) -> Cost:
        return Cost(
            engine_requests=self.engine_requests,
            sequences=self.sequences,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
        )


def check_sequences(state: ServiceState, planned: int, how_to_fit: str, field: str = "samples") -> None:
    """422 before any engine work when a score would run more than SIGNET_SCORE_MAX_SEQUENCES;
    ``field``: the request field that drives the count."""
    limit = state.settings.score_max_sequences
    if planned > limit:
        raise ApiError(
            422,
            f"{field}: this score would run up to {planned} engine sequences, at most {limit} "
            f"(SIGNET_SCORE_MAX_SEQUENCES); {how_to_fit}",
            field,
        )


def admit(state: ServiceState, meter: CostMeter, prompt_tokens: int, options: SamplingOptions, sequences: int) -> None:
    """422 instead of an engine request that would take the score past SIGNET_SCORE_MAX_TOKENS:
    the prompt tokens the engine reads and the most it may generate (``max_tokens`` for each
    of ``sequences``), over all the score's requests. Checked before each request is sent,
    since what a score asks depends on what the engine answered (the samples a judge reads,
    MQAG's questions); a score therefore never costs the engine more than the budget.

    Sequences alone did not bound the cost. Each judge question of a reference-mode score
    carries the whole source: 64 sequences of a 2,048-token context took 45 s here, and over
    120 s under load. And 32 samples of 1,024 tokens are 32,768 tokens to generate: fuzzed
    self-consistency scores within 64 sequences and 8,192 prompt tokens still ran past 120 s
    (tests/e2e/test_schema_fuzz.py)."""
    limit = state.settings.score_max_tokens
    planned = meter.admitted_tokens + prompt_tokens + options.max_tokens * sequences
    if planned > limit:
        raise ApiError(
            422,
            f"{meter.budget_field}: this score would have the engine read and generate up to {planned} tokens, "
            f"at most {limit} (SIGNET_SCORE_MAX_TOKENS); {meter.budget_advice}",
            meter.budget_field,
        )
    meter.admitted_tokens = planned


async def ask(
    state: ServiceState, meter: CostMeter, prompt_ids: list[int], options: SamplingOptions, step: str
) -> list[Completion]:
    """One engine request (``options.n`` answers); never watermarked: scores describe the model."""
    admit(state, meter, len(prompt_ids), options, options.n)  # the prompt is read once for all n answers
    async with meter.in_flight:
        try:
            completions = await state.engine.sample(prompt_ids, options, None, meter.tenant)
        except EngineError as error:
            raise engine_problem(error) from error
    meter.count(step, len(prompt_ids), completions)
    return completions


async def ask_batch(
    state: ServiceState, meter: CostMeter, prompts: list[list[int]], options: SamplingOptions, step: str
) -> list[Completion]:
    """One answer to each prompt, JUDGE_BATCH prompts per engine request; never watermarked.
    A failed batch cancels the others."""

    async def one(batch: list[list[int]]) -> list[Completion]:
        async with meter.in_flight:
            try:
                completions = await state.engine.generate_batch(batch, options, None, meter.tenant)
            except EngineError as error:
                raise engine_problem(error) from error
        meter.count(step, sum(len(prompt) for prompt in batch), completions)
        return completions

    admit(state, meter, sum(len(prompt) for prompt in prompts), options, len(prompts))  # all, before any batch runs
    batches = [prompts[start : start + JUDGE_BATCH] for start in range(0, len(prompts), JUDGE_BATCH)]
    return [completion for answers in await all_or_none(one(batch) for batch in batches) for completion in answers]


async def encode(state: ServiceState, prompt: str | None, turns: list[dict[str, str]] | None) -> list[int]:
    return await run_in_threadpool(encode_prompt, state.tokenizer, prompt, turns)


async def encode_text(state: ServiceState, text: str) -> list[int]:
    """A continuation's tokens, as the model would have written them after a prompt."""
    return await run_in_threadpool(lambda: state.tokenizer(text, add_special_tokens=False)["input_ids"])


def check_fits(state: ServiceState, prompt_tokens: int, max_tokens: int, field: str, what: str) -> None:
    """An engine request of ``prompt_tokens`` that generates up to ``max_tokens`` fits the context."""
    if not fits_context(prompt_tokens, max_tokens, state.engine.max_model_len):
        tokens = prompt_tokens + max_tokens
        raise ApiError(
            422,
            f"{field}: {what} is {tokens} tokens, more than the model's context of {state.engine.max_model_len}",
            field,
        )


async def generate_answer(state: ServiceState, meter: CostMeter, prompt_ids: list[int], max_tokens: int) -> Completion:
    """The greedy answer with the top logprobs at every token: the answer the model finds most likely."""
    options = SamplingOptions(max_tokens=max_tokens, temperature=0.0, logprobs=MAX_LOGPROBS)
    (answer,) = await ask(state, meter, prompt_ids, options, "answer")
    return answer


async def teacher_force(
    state: ServiceState, meter: CostMeter, context_ids: list[int], answer_ids: list[int], step: str
) -> TokenLogprobs:
    """The model's logprobs at each answer token after ``context_ids``: one prefill, no sampling."""
    options = SamplingOptions(max_tokens=1, temperature=0.0, prompt_logprobs=MAX_LOGPROBS)
    (completion,) = await ask(state, meter, context_ids + answer_ids, options, step)
    scored = completion.prompt_logprobs  # positions 1.., so the answer is the last len(answer_ids)
    start = len(scored.chosen) - len(answer_ids)
    return TokenLogprobs(scored.chosen[start:], scored.top_ids[start:], scored.top[start:])


async def draw_samples(
    state: ServiceState,
    meter: CostMeter,
    prompt_ids: list[int],
    count: int,
    max_tokens: int,
    temperature: float,
    seed: int | None,
) -> list[Completion]:
    """``count`` answers in one request, each with its tokens' logprobs (logprobs=0: no top list)."""
    options = SamplingOptions(max_tokens=max_tokens, temperature=temperature, seed=seed, n=count, logprobs=0)
    return await ask(state, meter, prompt_ids, options, "samples")
