"""Request and response bodies of ``POST /detect`` and ``POST /detect/batch``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, field_validator, model_validator

from signet.api.protocol import (
    KEY_ID_FIELD,
    TOKEN_ID_LIMIT,
    Problem,
    StrictModel,
    first_bad_token_id,
    require_visible_text,
)
from signet.api.provenance.protocol import CombinedVerdict, ProvenanceReport
from signet.settings import MAX_TEXT_CHARS_CEILING

Verdict = Literal["watermarked", "not_watermarked", "insufficient_evidence"]
KeyIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1, max_length=256)]


class DetectRequest(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "The river ran past the mill and under the old stone bridge.", "key_id": "main"},
                {"token_ids": [788, 41234, 282, 16804, 506, 10286, 28, 198], "key_ids": "all", "windows": True},
            ]
        }
    )

    text: str | None = Field(
        default=None, min_length=1, description="Text to test. Give this or token_ids.", examples=["Once upon a time"]
    )
    token_ids: list[Annotated[int, Field(ge=0, lt=TOKEN_ID_LIMIT)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT_CHARS_CEILING,
        description="Token ids to test, from the key's tokenizer: for text this service cannot tokenize. A tenant "
        "needs may_send_token_ids (else 403).",
    )
    key_id: str | None = KEY_ID_FIELD
    key_ids: KeyIds | Literal["all"] | None = Field(
        default=None,
        description='Test several keys ("all": every key), correcting for it (Holm-Bonferroni).',
    )
    tokenizer: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The tokenizer the text or token_ids belong to; refused when a key was made with another.",
    )
    alpha: float = Field(
        default=1e-4,
        gt=0.0,
        lt=1.0,
        description="Family-wise significance level: watermarked when the corrected p-value < alpha.",
    )
    windows: bool = Field(
        default=False,
        description="Also search windows for a watermarked passage inside other text (WinMax, corrected); "
        "in a text of at least 50 scored tokens.",
    )
    details: bool = Field(
        default=False,
        description="Report every token's span and score. A tenant needs may_see_token_details (else 403).",
    )
    provenance: bool = Field(
        default=False,
        description="Also search the caller's generation registry for generations this text rewords (text only), "
        "and combine that test with the watermark's (docs/PROVENANCE.md).",
    )

    _text_visible = field_validator("text")(require_visible_text)
    _token_ids_valid = field_validator("token_ids", mode="before")(first_bad_token_id)

    @model_validator(mode="after")
    def _one_input_one_key_choice(self) -> DetectRequest:
        if (self.text is None) == (self.token_ids is None):
            raise ValueError("give exactly one of text and token_ids")
        if self.key_id is not None and self.key_ids is not None:
            raise ValueError("give key_id or key_ids, not both")
        if self.provenance and self.text is None:
            raise ValueError("provenance compares meaning: give text, not token_ids")
        return self


class WindowReport(BaseModel):
    token_start: int = Field(description="First token of the most significant window.")
    token_end: int = Field(description="One past its last token.")
    char_start: int | None = Field(description="Its span in the request's text; null for token_ids.")
    char_end: int | None
    num_scored_tokens: int
    p_value: float = Field(description="That window's own p-value.")
    corrected_p_value: float = Field(description="p_value times num_windows (Bonferroni), at most 1.")
    num_windows: int = Field(description="Windows tested, the whole text included.")


class TokenDetail(BaseModel):
    index: int
    token_id: int
    char_start: int | None = Field(description="Span in the request's text; null for token_ids.")
    char_end: int | None
    scored: bool = Field(description="False for tokens without a full context and for repeated n-grams/contexts.")
    green: bool | None = Field(
        description="KGW schemes (kgw, kgw-lefthash, kgw-selfhash, unigram): the token is green."
    )
    score: float | None = Field(
        description="Other schemes: the token's score, mean score_mean without the watermark. gumbel: "
        "-log(1 - u), Exp(1); gumbel-dual-key: (1 - alpha) and alpha times key A's and key B's; synthid: "
        "the g-values equal to 1 over all tournament layers."
    )


class KeyDetection(BaseModel):
    key_id: str
    scheme: str
    tokenizer: str
    verdict: Verdict
    watermarked: bool = Field(description="verdict == 'watermarked'.")
    corrected_p_value: float = Field(
        description="The p-value compared with alpha: corrected for the windows searched and the keys tested."
    )
    p_value: float = Field(
        description="Whole text: exact binomial tail (KGW) or Gamma(T, 1) tail (Gumbel). 1.0 for "
        "insufficient_evidence unless the caller may see token details."
    )
    z_score: float | None = Field(
        description="Normal-approximation z of the whole text; null when T = 0, and for insufficient_evidence "
        "unless the caller may see token details."
    )
    score: float | None = Field(
        description="The statistic: green tokens (KGW), the sum of the tokens' scores (the others); null for "
        "insufficient_evidence unless the caller may see token details."
    )
    num_green_tokens: int | None = Field(description="KGW schemes only; null as score is.")
    green_fraction: float | None = Field(description="KGW schemes only; null when T = 0, and as score is.")
    gamma: float | None = Field(
        default=None, description="KGW schemes: the green fraction expected without the watermark (the key's gamma)."
    )
    score_mean: float = Field(
        description="One scored token's mean score without the watermark: gamma (KGW schemes), 1 (Gumbel "
        "schemes), depth * the table's fraction of ones (synthid). The score sum's expectation is T times this."
    )
    score_sd: float = Field(description="One scored token's standard deviation without the watermark.")
    num_tokens: int = Field(description="Tokens in the text, repeats and the first context tokens included.")
    num_scored_tokens: int = Field(description="T: tokens that count as evidence.")
    min_scored_tokens: int = Field(
        description="Below this T the verdict is insufficient_evidence: the fewest scored tokens whose most "
        "extreme outcome could reach alpha with this key (gamma ** T < alpha for KGW schemes, 1 for Gumbel), or "
        "the key's own min_scored_tokens where it sets a higher floor."
    )
    window: WindowReport | None = Field(
        default=None,
        description="With windows=true, in a text of at least 50 scored tokens (2 * the key's "
        "min_scored_tokens where it sets one above 25).",
    )
    tokens: list[TokenDetail] | None = Field(default=None, description="With details=true.")


class DetectResponse(KeyDetection):
    """The best-matching key's result at the top level; every key's under ``keys``."""

    alpha: float
    num_keys_tested: int = Field(description="Keys with enough evidence to test; the Holm correction's m.")
    keys: list[KeyDetection] = Field(description="One entry per key, most significant first.")
    cached: bool = Field(
        description="Whether the result came from the cache (results for the same input, keys and options "
        "are kept for a while); false when the cache is off or unreachable. The watermark test only: "
        "provenance is searched anew for every request."
    )
    provenance: ProvenanceReport | None = Field(default=None, description="With provenance: true.")
    combined: CombinedVerdict | None = Field(
        default=None, description="With provenance: true: the watermark and provenance tests as one test at alpha."
    )


class DetectBatchRequest(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"text": "A first text to test."},
                        {"text": "A second one, against every key.", "key_ids": "all"},
                    ]
                }
            ]
        }
    )

    # Items are validated one by one in the route, so one bad item gets its own error
    # entry instead of failing the batch; the schema still documents their shape.
    items: Annotated[list[DetectRequest], SkipValidation] = Field(
        min_length=1, description="Detection requests, each answered independently."
    )

    @field_validator("items", mode="before")
    @classmethod
    def _is_a_list(cls, value: object) -> object:
        if not isinstance(value, list):
            raise ValueError("must be a list of detection requests")
        return value


class DetectBatchItem(BaseModel):
    index: int
    status: int = Field(description="The status this item would have had as a POST /detect.")
    result: DetectResponse | None = None
    error: Problem | None = None


class DetectBatchResponse(BaseModel):
    results: list[DetectBatchItem]
