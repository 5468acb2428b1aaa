"""vLLM's ``AsyncLLM`` embedded in this process, with Signet's watermark processor."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from signet.engine.protocol import (
    Completion,
    CompletionDelta,
    EngineError,
    EngineStatus,
    SamplingOptions,
    TokenLogprobs,
    all_or_none,
    check_context,
)


class EngineStartError(Exception):
    """vLLM could not start; vLLM's own log above says why in detail."""


def read_flat_logprobs(sequence_ids: list[int], positions, k: int) -> TokenLogprobs:
    """From vLLM's ``FlatLogprobs``: at each position the token itself and the top k, with ranks."""
    chosen, top_ids, top = [], [], []
    bounds = zip(positions.start_indices, positions.end_indices, strict=True)
    for token_id, (start, end) in zip(sequence_ids, bounds, strict=True):
        ids, logprobs = positions.token_ids[start:end], positions.logprobs[start:end]
        chosen.append(float(logprobs[ids.index(token_id)]))
        # the token itself may also be among the top k: each id once, in rank order
        by_id = dict(zip(ids, zip(positions.ranks[start:end], logprobs, strict=True), strict=True))
        ranked = sorted(by_id.items(), key=lambda item: item[1][0])[:k]
        top_ids.append([int(candidate) for candidate, _ in ranked])
        top.append([float(logprob) for _, (_, logprob) in ranked])
    return TokenLogprobs(chosen, top_ids, top)


@dataclass(frozen=True)
class EngineOptions:
    max_model_len: int | None
    memory_fraction: float
    max_concurrency: int
    eager: bool = False
    # vLLM's Prometheus series (vllm:...); off only to measure what they cost
    # (bench/engine_stats_overhead.py).
    stats: bool = True


def _detokenizes(options: SamplingOptions) -> bool:
    """Whether vLLM should detokenize as it generates. It also decodes every listed logprob
    token, which made a batch of 8 with top-20 logprobs 6% slower; with logprobs, the text is
    decoded once at the end instead (stop strings need vLLM's detokenizer: they keep it)."""
    wants_logprobs = options.logprobs is not None or options.prompt_logprobs is not None
    return not wants_logprobs or bool(options.stop)


def _watermark_processor(v2_model_runner: bool) -> type:
    if v2_model_runner:
        from signet.engine.logits_processors_v2 import WatermarkLogitsProcessorV2

        return WatermarkLogitsProcessorV2
    from signet.engine.logits_processors import WatermarkLogitsProcessor

    return WatermarkLogitsProcessor


class VllmEngine:
    """The ``Engine`` protocol on vLLM's ``AsyncLLM``."""

    def __init__(self, llm, max_model_len: int) -> None:  # llm: vllm.v1.engine.async_llm.AsyncLLM
        self._llm = llm
        self.max_model_len = max_model_len
        self._is_shut_down = False

    @classmethod
    def start(cls, model_dir: Path, keys_file: Path, options: EngineOptions) -> VllmEngine:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.metrics.loggers import PrometheusStatLogger

        from signet.engine.watermark_requests import KEYS_FILE_CONFIG

        arguments = AsyncEngineArgs(
            model=str(model_dir),
            additional_config={KEYS_FILE_CONFIG: str(keys_file)},
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.memory_fraction,
            max_num_seqs=options.max_concurrency,
            enforce_eager=options.eager,
            # With async scheduling, output token lists can hold -1 placeholders when the
            # processor runs (vllm issue 52461); the watermark context must be real tokens.
            async_scheduling=False,
            # On CPU, a seeded request whose prompt is split across steps makes vLLM's V1
            # runner rewind its torch generator, which CPU generators cannot do, and the
            # engine dies ("CPU Generator does not use offset"): prefill whole prompts there.
            enable_chunked_prefill=False if current_platform.is_cpu() else None,
            # vLLM's own series (vllm:num_requests_running, vllm:kv_cache_usage_perc, ...) go
            # into this process's Prometheus registry, which /metrics (embedded) and a worker's
            # metrics port serve. Only the Prometheus logger: the default logging one writes a
            # throughput line every 10 s.
            disable_log_stats=True,
            # The model_name label of those series: the name Signet's responses give the model,
            # never the folder's path.
            served_model_name=model_dir.name,
        )
        try:
            config = arguments.create_engine_config(UsageContext.ENGINE_CONTEXT)
            # vLLM picks its model runner while it builds the config (V2 where Triton is, so
            # on GPUs; V1 on this CPU build), and each runner loads only processors written
            # for its own interface.
            config.model_config.logits_processors = [_watermark_processor(config.use_v2_model_runner)]
            llm = AsyncLLM.from_vllm_config(
                config,
                stat_loggers=[PrometheusStatLogger] if options.stats else None,
                disable_log_stats=arguments.disable_log_stats,
            )
        except Exception as error:  # vLLM raises bare RuntimeError/ValueError
            raise EngineStartError(f"the vLLM engine failed to start: {error}") from error
        return cls(llm, llm.model_config.max_model_len)

    @property
    def is_healthy(self) -> bool:
        return not self._llm.errored

    def check_available(self) -> None:
        if not self.is_healthy:
            raise EngineError(EngineStatus.UNAVAILABLE, "generation is unavailable: no healthy engine in this process")

    async def generate(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> Completion:
        if options.n != 1:
            raise ValueError(f"generate makes one answer; use sample for n={options.n}")
        (completion,) = await self.sample(prompt_token_ids, options, watermark_key_id)
        return completion

    async def generate_batch(
        self,
        prompts: list[list[int]],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        """One answer to each prompt. AsyncLLM takes one prompt per request; handed over
        together, its scheduler runs them in the same steps (up to max_num_seqs at once).
        A failure aborts the others."""
        if options.n != 1:
            raise ValueError(f"generate_batch makes one answer per prompt, not n={options.n}")
        return await all_or_none(self.generate(prompt, options, watermark_key_id) for prompt in prompts)

    async def sample(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> list[Completion]:
        """``options.n`` answers to one prompt, drawn in one engine request (one prefill)."""
        final = None
        async for output in self._outputs(prompt_token_ids, options, watermark_key_id, stream=False):
            final = output
        prompt_logprobs = None
        if options.prompt_logprobs is not None:
            # vLLM lists None for the first prompt token, which has no context.
            prompt_ids, positions = prompt_token_ids[1:], final.prompt_logprobs[1:]
            prompt_logprobs = read_flat_logprobs(prompt_ids, positions, options.prompt_logprobs)
        return [
            Completion(
                text=sequence.text if _detokenizes(options) else self._decode(sequence.token_ids),
                token_ids=list(sequence.token_ids),
                prompt_tokens=len(prompt_token_ids),
                finish_reason=sequence.finish_reason or "stop",
                logprobs=(
                    read_flat_logprobs(list(sequence.token_ids), sequence.logprobs, options.logprobs)
                    if options.logprobs is not None
                    else None
                ),
                prompt_logprobs=prompt_logprobs,
            )
            for sequence in sorted(final.outputs, key=lambda sequence: sequence.index)
        ]

    def _decode(self, token_ids) -> str:
        # As vLLM's own detokenizer does by default (skip_special_tokens=True).
        return self._llm.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    async def stream(
        self,
        prompt_token_ids: list[int],
        options: SamplingOptions,
        watermark_key_id: str | None,
        tenant: str | None = None,
    ) -> AsyncGenerator[CompletionDelta, None]:
        """The generation as it happens; closing the iterator early aborts the request in vLLM.

        Its refusals come before the iterator (the protocol's two steps). vLLM has no queue
        to be full: it takes the request on the iterator's first step, and a closed
        iterator that never stepped leaves nothing to abort."""
        self.check_available()
        check_context(prompt_token_ids, options, self.max_model_len)
        return self._deltas(prompt_token_ids, options, watermark_key_id)

    async def _deltas(
        self, prompt_token_ids: list[int], options: SamplingOptions, watermark_key_id: str | None
    ) -> AsyncGenerator[CompletionDelta, None]:
        started = time.monotonic()  # for the first delta's time_to_first_token (metrics)
        async for output in self._outputs(prompt_token_ids, options, watermark_key_id, stream=True):
            sequence = output.outputs[0]
            finish_reason = (sequence.finish_reason or "stop") if output.finished else None
            first_token = time.monotonic() - started if started is not None and sequence.token_ids else None
            started = None if first_token is not None else started
            yield CompletionDelta(sequence.text, list(sequence.token_ids), finish_reason, first_token)

    async def _outputs(
        self, prompt_token_ids: list[int], options: SamplingOptions, watermark_key_id: str | None, stream: bool
    ) -> AsyncIterator:  # of vllm.RequestOutput
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        from signet.engine.watermark_requests import WATERMARK_KEY_ID_ARG

        # vLLM itself refuses only a prompt that fills the context, with an error of its own,
        # and cuts a longer generation short. Both engines keep the rule the API checks.
        check_context(prompt_token_ids, options, self.max_model_len)
        extra_args = {WATERMARK_KEY_ID_ARG: watermark_key_id} if watermark_key_id is not None else None
        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            seed=options.seed,
            stop=list(options.stop) or None,
            ignore_eos=options.ignore_eos,
            n=options.n,
            logprobs=options.logprobs,
            prompt_logprobs=options.prompt_logprobs,
            flat_logprobs=True,  # a few flat lists per request instead of an object per listed token
            detokenize=_detokenizes(options),
            extra_args=extra_args,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )
        try:
            async for output in self._llm.generate({"prompt_token_ids": prompt_token_ids}, params, uuid.uuid4().hex):
                yield output
        except (EngineDeadError, EngineGenerateError) as error:
            detail = f"generation failed: the engine failed this request: {type(error).__name__}; retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail) from error

    def shutdown(self) -> None:
        """Stop vLLM's engine-core process; safe to call more than once."""
        if not self._is_shut_down:
            self._is_shut_down = True
            self._llm.shutdown()
