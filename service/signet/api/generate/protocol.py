"""Request and response bodies of ``POST /generate``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from signet.api.protocol import KEY_ID_FIELD, MethodScore, Risk, StrictModel, WatermarkInfo
from signet.api.provenance.protocol import GENERATION_ID_FIELD
from signet.settings import MAX_NEW_TOKENS_CEILING


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: str


class PromptInput(StrictModel):
    """A prompt, raw or as chat turns: what generation and scoring requests start from."""

    prompt: str | None = Field(default=None, description="Raw prompt. Give this or messages, not both.")
    messages: list[ChatMessage] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Chat turns, rendered with the model's chat template.",
    )

    @model_validator(mode="after")
    def _one_prompt(self) -> PromptInput:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("prompt must contain non-whitespace text")
        if self.messages is not None and not any(message.content.strip() for message in self.messages):
            raise ValueError("messages must contain non-whitespace text")
        return self

    def turns(self) -> list[dict[str, str]] | None:
        return [message.model_dump() for message in self.messages] if self.messages is not None else None

    def prompt_text(self) -> str:
        """The caller's own text: the prompt, or the turns' contents (no chat template)."""
        return self.prompt if self.prompt is not None else "\n".join(message.content for message in self.messages)


class GenerateRequest(PromptInput):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
                    "max_tokens": 120,
                    "seed": 7,
                },
                {"prompt": "Once upon a time", "max_tokens": 64, "key_id": "main", "stream": True},
            ]
        }
    )

    max_tokens: int = Field(default=256, ge=1, le=MAX_NEW_TOKENS_CEILING, description="Most tokens to generate.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 is greedy decoding.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Fixes sampling for reproducible output.")
    key_id: str | None = KEY_ID_FIELD
    stream: bool = Field(
        default=False,
        description="Send the text as it is generated, as server-sent events: GenerateChunk objects, "
        "the last with usage and watermark, then `data: [DONE]`; an error midway comes as `event: error`.",
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(BaseModel):
    text: str
    token_ids: list[int] = Field(description="The generated tokens: detect these exactly with POST /detect token_ids.")
    finish_reason: str = Field(description="'stop' (end of text) or 'length' (max_tokens reached).")
    usage: Usage
    model: str
    watermark: WatermarkInfo
    generation_id: str = GENERATION_ID_FIELD
    uncertainty: list[MethodScore] | None = Field(
        default=None,
        description="With uncertainty=true: scores from the answer's own logprobs (no extra forward pass); "
        "higher = more uncertain.",
    )
    risk: Risk | None = Field(
        default=None,
        description="With uncertainty=true: the probability that the answer is wrong, calibrated from its own "
        "logprobs for the model and decodings named in docs/SCORING.md#risk (`calibrated` says whether they apply).",
    )


class GenerateChunk(BaseModel):
    """One server-sent event of a streamed ``/generate``."""

    text: str = Field(description="The text this piece adds.")
    token_ids: list[int] = Field(description="The tokens this piece adds.")
    finish_reason: str | None = Field(default=None, description="Set on the last piece only.")
    usage: Usage | None = Field(default=None, description="Last piece only.")
    model: str | None = Field(default=None, description="Last piece only.")
    watermark: WatermarkInfo | None = Field(default=None, description="Last piece only.")
    generation_id: str | None = Field(
        default=None, description="Last piece only: the generation's id in the registry (as GenerateResponse's)."
    )
