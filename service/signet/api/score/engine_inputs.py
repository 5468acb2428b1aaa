"""What the scores need from the engine: an answer's logprobs, samples, one-token replies.

Every call goes through ``ask`` so that the cost of a score (engine requests, tokens
prefilled and generated) is counted in one place, and engine failures become the same
problems generation reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from signet.api.errors import ApiError
from signet.api.generation import engine_problem
from signet.api.score.protocol import Cost
from signet.api.state import ServiceState
from signet.engine.model_store import ModelError, encode_prompt
from signet.engine.protocol import MAX_LOGPROBS, Completion, EngineError, SamplingOptions, TokenLogprobs, fits_context


@dataclass
class CostMeter:
    engine_requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0

    def count(self, prompt_tokens: int, completions: list[Completion]) -> None:
        self.engine_requests += 1
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += sum(completion.completion_tokens for completion in completions)

    def report(self) -> Cost:
        return Cost(
            engine_requests=self.engine_requests,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens,
        )


async def ask(
    state: ServiceState, meter: CostMeter, prompt_ids: list[int], options: SamplingOptions
) -> list[Completion]:
    """One engine request (``options.n`` answers); never watermarked: scores describe the model."""
    try:
        completions = await state.engine.sample(prompt_ids, options, None)
    except EngineError as error:
        raise engine_problem(error) from error
    meter.count(len(prompt_ids), completions)
    return completions


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
    (answer,) = await ask(state, meter, prompt_ids, options)
    return answer


async def teacher_force(
    state: ServiceState, meter: CostMeter, context_ids: list[int], answer_ids: list[int]
) -> TokenLogprobs:
    """The model's logprobs at each answer token after ``context_ids``: one prefill, no sampling."""
    options = SamplingOptions(max_tokens=1, temperature=0.0, prompt_logprobs=MAX_LOGPROBS)
    (completion,) = await ask(state, meter, context_ids + answer_ids, options)
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
    return await ask(state, meter, prompt_ids, options)


_embedder_lock = asyncio.Lock()


async def embed(state: ServiceState, texts: list[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings; the model loads on first use (about a second)."""
    if state.embedder is None:
        async with _embedder_lock:
            if state.embedder is None:
                from signet.engine.embeddings import SentenceEmbedder

                try:
                    state.embedder = await run_in_threadpool(SentenceEmbedder.load)
                except (ModelError, OSError, ImportError) as error:  # ImportError: an image without torch
                    raise ApiError(503, f"embedding similarity is unavailable: {error}") from error
    return await run_in_threadpool(state.embedder.embed, texts)
