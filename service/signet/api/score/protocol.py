"""Request and response bodies of ``POST /score/uncertainty`` and ``POST /score/consistency``."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from signet.api.generate.protocol import PromptInput
from signet.api.protocol import MethodScore, Risk, StrictModel, require_visible_text
from signet.scoring.claims import ClaimKind

MAX_SAMPLES = 32
MAX_PARAPHRASES = 8

# From the answer's own logprobs: no extra engine request (PMI: one prefill without the prompt).
LogprobMethod = Literal["max_sequence_probability", "perplexity", "mean_token_entropy", "max_token_entropy", "pmi"]
# From `samples` answers drawn in one engine request.
SampleMethod = Literal[
    "monte_carlo_sequence_entropy",
    "semantic_entropy",
    "discrete_semantic_entropy",
    "lexical_similarity",
    "num_semantic_sets",
    "eig_val_laplacian",
]
# Over the prompt and its `paraphrases` (an ensemble), teacher-forcing the same answer.
DecompositionMethod = Literal["total_uncertainty", "aleatoric_uncertainty", "epistemic_uncertainty"]
# One Literal, so that a wrong name gets one message listing every right one.
UncertaintyMethod = Literal[get_args(LogprobMethod) + get_args(SampleMethod) + get_args(DecompositionMethod)]

SelfCheckMethod = Literal[
    "selfcheck_unigram",
    "selfcheck_unigram_max",
    "selfcheck_bigram",
    "selfcheck_bigram_max",
    "selfcheck_bigram_novelty",
    "selfcheck_embedding",
    "selfcheck_llm_support",
    "selfcheck_llm_entailment",
]
ReferenceMethod = Literal[
    "mqag_kl",
    "mqag_total_variation",
    "mqag_hellinger",
    "mqag_hellinger_squared",
    "mqag_counting",
    "source_entailment",
    "source_unigram",
    "source_unigram_max",
    "source_bigram",
    "source_bigram_max",
    "source_bigram_novelty",
]
ConsistencyMethod = Literal[get_args(SelfCheckMethod) + get_args(ReferenceMethod)]
Similarity = Literal["llm", "embedding"]


class UncertaintyRequest(PromptInput):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "What is the capital of France?"}], "samples": 8},
                {
                    "prompt": "Q: What is 17 + 25?\nA:",
                    "response": " 42",
                    "methods": ["max_sequence_probability", "mean_token_entropy"],
                },
            ]
        }
    )

    response: str | None = Field(
        default=None, description="The answer to score; omitted: the service generates one (greedy)."
    )
    samples: int = Field(
        default=0,
        ge=0,
        le=MAX_SAMPLES,
        description="Answers to draw (at `temperature`) for the sample-based methods: 0 (none) or 2 to 32.",
    )
    methods: list[UncertaintyMethod] | None = Field(
        default=None,
        min_length=1,
        max_length=len(get_args(UncertaintyMethod)),
        description="Methods to run; omitted: every method the inputs allow (sample methods need samples "
        ">= 2, the decomposition needs paraphrases).",
    )
    paraphrases: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PARAPHRASES,
        description="Rephrasings of the prompt (of the last user message, with messages): with the prompt "
        "they form the ensemble whose total uncertainty splits into aleatoric + epistemic.",
    )
    similarity: Similarity = Field(
        default="llm",
        description="How samples are judged equivalent: 'llm' asks the served model whether each pair "
        "entail each other (label-token probabilities); 'embedding' uses all-MiniLM-L6-v2 cosine similarity.",
    )
    max_tokens: int = Field(default=64, ge=1, le=1024, description="Longest generated answer and sample.")
    temperature: float = Field(default=1.0, gt=0.0, le=2.0, description="Sampling temperature of the samples.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Fixes the samples.")

    _visible_response = field_validator("response")(require_visible_text)

    @field_validator("paraphrases")
    @classmethod
    def _visible_paraphrases(cls, value: list[str] | None) -> list[str] | None:
        for paraphrase in value or []:
            require_visible_text(paraphrase)
        return value


class Cost(BaseModel):
    engine_requests: int = Field(
        description="Requests the engine ran for this score: the answer, the samples (all in one), "
        "and the judge questions in batches of up to 64 (in distributed mode, one queue job each)."
    )
    sequences: int = Field(
        description="Sequences those requests ran (answers, samples, judge questions): what "
        "SIGNET_SCORE_MAX_SEQUENCES caps, checked against the request before any engine work."
    )
    prompt_tokens: int = Field(
        description="Tokens prefilled, over all engine requests. SIGNET_SCORE_MAX_TOKENS caps these plus the "
        "most tokens the requests may generate."
    )
    generated_tokens: int = Field(description="Tokens generated (answer, samples, judge labels, questions).")


TEXTS_WITHHELD = (
    "generated texts withheld: this tenant may not turn the watermark off, and the scores' texts are "
    "generated without it; the scores are complete. To see an answer, generate it watermarked with "
    "/generate and send it as `response`."
)
TEXTS_WITHHELD_FIELD = (
    "True when the texts the service generated for this score (the answer, samples, MQAG questions) are "
    "left out: the caller's tenant may not turn the watermark off, and these texts are generated without it."
)


class UncertaintyResponse(BaseModel):
    response: str | None = Field(
        description="The answer scored: the caller's, or the generated one (null when texts_withheld)."
    )
    generated: bool = Field(description="True when the service generated the answer.")
    response_tokens: int
    scores: list[MethodScore]
    risk: Risk = Field(
        description="The probability that the answer is wrong, from its own logprobs (whatever `methods` lists): "
        "docs/SCORING.md#risk. A `response` you send is read as a greedy, unwatermarked answer."
    )
    samples: list[str] = Field(
        default_factory=list, description="The sampled answers (none when texts_withheld, though they were scored)."
    )
    semantic_classes: list[int] | None = Field(
        default=None, description="The meaning class of each sample (0, 1, ... in order of first appearance)."
    )
    texts_withheld: bool = Field(default=False, description=TEXTS_WITHHELD_FIELD)
    warnings: list[str] = Field(default_factory=list, description="What was left out of the response, and why.")
    cost: Cost
    model: str


class ConsistencyRequest(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Who was Ada Lovelace?",
                    "text": "Ada Lovelace was an English mathematician. She wrote the first computer program.",
                    "samples": 6,
                },
                {
                    "text": "The bridge opened in 1932 and carries eight lanes.",
                    "source": "The bridge, opened in 1932, carries eight lanes of traffic and two rail lines.",
                },
            ]
        }
    )

    text: str = Field(description="The passage to check, split into sentences.")
    prompt: str | None = Field(
        default=None,
        description="Self-consistency: the prompt that produced `text`, sent as one user chat turn; "
        "the samples are drawn from it.",
    )
    source: str | None = Field(default=None, description="Reference mode: the document `text` should agree with.")
    samples: int = Field(default=6, ge=1, le=MAX_SAMPLES, description="Self-consistency: answers to draw.")
    methods: list[ConsistencyMethod] | None = Field(
        default=None,
        min_length=1,
        max_length=len(get_args(ConsistencyMethod)),
        description="Methods to run; omitted: every method of the mode.",
    )
    questions: int = Field(default=6, ge=1, le=16, description="Reference mode: MQAG questions to generate.")
    max_tokens: int = Field(default=128, ge=1, le=1024, description="Self-consistency: longest sample.")
    temperature: float = Field(default=1.0, gt=0.0, le=2.0, description="Self-consistency: temperature of the samples.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Fixes the samples and the questions.")
    judge: Literal["probed", "always"] = Field(
        default="probed",
        description="'probed': the LLM-judged methods (entailment, support, MQAG) run only if the served model "
        "passes a built-in entailment probe (AUROC >= 0.75 on 16 easy pairs, run once per model); otherwise they "
        "are left out with a warning. 'always': run them without the probe, whatever the model.",
    )

    _visible = field_validator("text", "prompt", "source")(require_visible_text)

    @model_validator(mode="after")
    def _one_mode(self) -> ConsistencyRequest:
        if (self.prompt is None) == (self.source is None):
            raise ValueError("give exactly one of prompt (self-consistency) or source (reference)")
        return self

    @property
    def mode(self) -> Literal["self", "reference"]:
        return "self" if self.prompt is not None else "reference"


class Claim(BaseModel):
    kind: ClaimKind = Field(
        description="entity, number, date or quantity (absent from the source, or other than the source's), "
        "negation (added or dropped against the source sentence restated), ngram (a run of words the source "
        "never uses)."
    )
    start: int = Field(description="Character offset of the claim in `text`.")
    end: int = Field(description="One past its last character.")
    text: str
    reason: str = Field(description="Why the source does not support it, quoting the source where it differs.")


class SentenceScore(BaseModel):
    start: int = Field(description="Character offset of the sentence in `text`.")
    end: int = Field(description="One past its last character.")
    text: str
    scores: dict[str, float] = Field(description="Method -> score; higher = less supported.")
    claims: list[Claim] = Field(
        default_factory=list, description="Reference mode: the sentence's claims the source does not support."
    )


class QuestionReport(BaseModel):
    question: str | None = Field(description="The generated question (null when texts_withheld).")
    options: list[str] = Field(description="Its four generated options (none when texts_withheld).")
    source_probabilities: list[float]
    text_probabilities: list[float]
    answerable: bool = Field(description="False: the source cannot answer it; left out of the averages.")


class ConsistencyResponse(BaseModel):
    mode: Literal["self", "reference"]
    sentences: list[SentenceScore]
    scores: list[MethodScore] = Field(description="Passage-level scores; higher = less consistent.")
    risk: Risk | None = Field(
        default=None,
        description="Reference mode: the probability that the text is not supported by the source, from the "
        "claims and word overlap (docs/SCORING.md#risk); whatever `methods` lists. Null in self-consistency mode, "
        "which has no calibration.",
    )
    samples: list[str] = Field(
        default_factory=list, description="Self-consistency: the sampled answers (none when texts_withheld)."
    )
    questions: list[QuestionReport] = Field(default_factory=list, description="Reference mode: MQAG questions.")
    texts_withheld: bool = Field(default=False, description=TEXTS_WITHHELD_FIELD)
    warnings: list[str] = Field(default_factory=list, description="Methods or texts left out, and why.")
    cost: Cost
    model: str
