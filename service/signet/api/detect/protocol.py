"""Request and response bodies of ``POST /detect``."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from signet.api.protocol import KEY_ID_FIELD, StrictModel, require_visible_text


class DetectRequest(StrictModel):
    text: str = Field(min_length=1, description="Text to test for the watermark.", examples=["Once upon a time..."])
    key_id: str | None = KEY_ID_FIELD
    alpha: float = Field(
        default=1e-4,
        gt=0.0,
        lt=1.0,
        description="Significance level: the text is called watermarked when p_value < alpha.",
    )

    _text_visible = field_validator("text")(require_visible_text)


class DetectResponse(BaseModel):
    watermarked: bool = Field(description="p_value < alpha.")
    p_value: float = Field(description="Exact one-sided binomial p-value: P(Bin(T, gamma) >= green tokens).")
    z_score: float | None = Field(description="(G - gamma T) / sqrt(T gamma (1 - gamma)); null when T = 0.")
    green_fraction: float | None = Field(description="Green tokens / scored tokens; null when T = 0.")
    num_scored_tokens: int = Field(description="T: distinct (context, token) n-grams scored.")
    num_green_tokens: int
    num_tokens: int = Field(description="Tokens in the text, repeats and the first context tokens included.")
    alpha: float
    scheme: str
    key_id: str
