"""Wire-model pieces shared by several endpoint families."""

from __future__ import annotations

from http import HTTPStatus

from pydantic import BaseModel, ConfigDict, Field

from signet.settings import MAX_TEXT_CHARS_CEILING

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


TOKEN_ID_LIMIT = 2**31


def first_bad_token_id(value: object) -> object:
    """A pydantic "before" validator for a token id list: one error, for the first id that is no
    integer in [0, 2**31), instead of pydantic's one per id.

    Measured before issue 16: 300,000 bad ids made 300,000 errors, 2.4 s to list them and
    a 15.5 MB 422. A valid list is checked at C speed; finding the first bad id costs about
    100 ns an id. A list over the ceiling is refused at once: pydantic's own max_length
    check comes after validating every item (0.12 s for 1,000,001).
    """
    if not isinstance(value, list):
        return value
    if len(value) > MAX_TEXT_CHARS_CEILING:
        raise ValueError(f"at most {MAX_TEXT_CHARS_CEILING:,} token ids, got {len(value):,}")
    if set(map(type, value)) <= {int} and (not value or 0 <= min(value) <= max(value) < TOKEN_ID_LIMIT):
        return value  # the common case, at C speed
    for index, item in enumerate(value):
        if type(item) is not int or not 0 <= item < TOKEN_ID_LIMIT:
            raise ValueError(f"item {index} is {str(item)[:40]!r}; token ids are integers from 0 to 2**31 - 1")
    return value


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
    context_width: int | None = Field(
        default=None, description="Tokens before each one that key its randomness (synthid: ngram_len - 1; unigram: 0)."
    )
    key_b_probability: float | None = Field(
        default=None, description="gumbel-dual-key: the probability that a token is sampled with key B (vLLM's alpha)."
    )
    depth: int | None = Field(default=None, description="synthid: tournament layers, one key each.")


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


class Risk(BaseModel):
    """One probability a pipeline can threshold: the calibrated combination of the scores."""

    value: float = Field(ge=0.0, le=1.0, description="The probability that `predicts` is true, in [0, 1].")
    predicts: str = Field(description="What the probability is of, e.g. 'the answer is wrong'.")
    calibrated: bool = Field(
        description="True when the served model and the decoding are those the calibration was fitted for, so "
        "the value is a probability; false: it still ranks texts, but read `reason` before thresholding it."
    )
    reason: str | None = Field(default=None, description="Why the value is not calibrated, when it is not.")
    calibration: str = Field(description="The shipped calibration used (docs/SCORING.md#risk).")
    fitted_for: str | None = Field(
        description="The model whose outputs the calibration was fitted on; null: it reads no model output."
    )
    inputs: dict[str, float] = Field(description="The features the risk was computed from.")


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
