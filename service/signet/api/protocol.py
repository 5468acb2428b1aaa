"""Wire-model pieces shared by several endpoint families."""

from __future__ import annotations

from http import HTTPStatus

from pydantic import BaseModel, ConfigDict, Field

KEY_ID_FIELD = Field(
    default=None,
    min_length=1,
    max_length=64,
    description="Watermark key to use; omitted: the registry's default key.",
    examples=["dev"],
)


class StrictModel(BaseModel):
    """Request bodies: unknown fields and type coercions are errors, not guesses."""

    model_config = ConfigDict(extra="forbid", strict=True)


def require_visible_text(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must contain non-whitespace text")
    return value


class WatermarkInfo(BaseModel):
    enabled: bool
    scheme: str | None = None
    key_id: str | None = None
    gamma: float | None = Field(default=None, description="KGW schemes: the green fraction of the vocabulary.")
    delta: float | None = Field(default=None, description="KGW schemes: the bias added to green logits.")
    context_width: int | None = None


class Bounds(BaseModel):
    lower: float
    upper: float


class MethodScore(BaseModel):
    method: str
    value: float = Field(description="Higher means more uncertain (less consistent).")
    meaning: str = Field(description="What the value measures, in one line.")
    bounds: Bounds | None = Field(
        default=None, description="Token entropies from top-k logprobs: the true value lies within these."
    )
    per_token: list[float] | None = Field(default=None, description="The value at each answer token, where defined.")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="The offending request field, where there is one.")

    @classmethod
    def of(cls, status: int, detail: str, field: str | None = None) -> Problem:
        return cls(title=HTTPStatus(status).phrase, status=status, detail=detail, field=field)
