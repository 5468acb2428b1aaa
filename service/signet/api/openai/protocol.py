"""OpenAI-compatible wire models: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

Field names and shapes follow OpenAI's API, so its client libraries work unchanged.
Signet's additions: request fields ``watermark`` (default true) and ``key_id`` (pass
them with the client's ``extra_body``), and a response member ``signet`` holding the
watermark applied and the generated token ids (to detect exactly with ``POST /detect``).
OpenAI fields Signet cannot honour are refused with a 422 naming them, never ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from signet.api.protocol import KEY_ID_FIELD, StrictModel, WatermarkInfo
from signet.api.provenance.protocol import GENERATION_ID_FIELD
from signet.settings import MAX_NEW_TOKENS_CEILING


class StreamOptions(StrictModel):
    include_usage: bool = False


class _SamplingFields(StrictModel):
    model: str = Field(min_length=1, max_length=256, description="The served model's name (GET /v1/models).")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1, description="Only 1 is supported.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = Field(
        default=None, description="Up to 4 strings that end the generation."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256, description="Accepted for compatibility; unused.")
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Only 0 is supported.")
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Only 0 is supported.")
    # Signet's extensions
    watermark: bool = Field(default=True, description="Signet: apply the key's watermark (default true).")
    key_id: str | None = KEY_ID_FIELD

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not stop for stop in stops):
            raise ValueError("at most 4 non-empty strings")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only with stream true")
        return self


class CompletionRequest(_SamplingFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "SmolLM2-135M-Instruct", "prompt": "Once upon a time", "max_tokens": 32}]
        }
    )

    prompt: str = Field(min_length=1, description="One prompt (lists of prompts are not supported).")
    max_tokens: int = Field(default=16, ge=1, le=MAX_NEW_TOKENS_CEILING)
    echo: bool = Field(default=False, description="Only false is supported.")
    logprobs: int | None = Field(default=None, le=0, description="Not supported: leave unset.")

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str = Field(description="Text content (content parts are not supported).")
    name: str | None = Field(default=None, max_length=64)


class ChatCompletionRequest(_SamplingFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "SmolLM2-135M-Instruct",
                    "messages": [{"role": "user", "content": "Name three rivers."}],
                    "max_completion_tokens": 64,
                    "stream": True,
                }
            ]
        }
    )

    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_CEILING, description="Deprecated by OpenAI.")
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=MAX_NEW_TOKENS_CEILING, description="Unset: as many as the context leaves."
    )
    logprobs: bool = Field(default=False, description="Not supported: leave false.")

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool) -> bool:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_completion_tokens or max_tokens, not both")
        if not any(message.content.strip() for message in self.messages):
            raise ValueError("messages must contain non-whitespace text")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def token_limit_field(self) -> str:
        return "max_tokens" if self.max_tokens is not None else "max_completion_tokens"


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class SignetExtension(BaseModel):
    """What Signet adds to OpenAI's response shape."""

    watermark: WatermarkInfo
    token_ids: list[int] = Field(description="The generated tokens (in a stream: this chunk's).")
    generation_id: str = GENERATION_ID_FIELD


def _response_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class _ResponseBase(BaseModel):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str | None


class CompletionResponse(_ResponseBase):
    id: str = Field(default_factory=lambda: _response_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    signet: SignetExtension | None = None


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatResponseMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletionResponse(_ResponseBase):
    id: str = Field(default_factory=lambda: _response_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: CompletionUsage
    signet: SignetExtension


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_ResponseBase):
    id: str = Field(default_factory=lambda: _response_id("chatcmpl"))
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None
    signet: SignetExtension | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "signet"


class ModelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [
                        {"id": "SmolLM2-135M-Instruct", "object": "model", "created": 1796025600, "owned_by": "signet"}
                    ],
                }
            ]
        }
    )

    object: Literal["list"] = "list"
    data: list[ModelCard]
