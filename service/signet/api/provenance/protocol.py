"""What ``POST /detect`` reports with ``provenance: true``, and the shape of the generation ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from signet.provenance.significance import Evidence, Rule

GENERATION_ID_PATTERN = r"^gen-[0-9a-f]{32}$"
GENERATION_ID_FIELD = Field(
    description="This generation's id in the tenant's generation registry: POST /detect with provenance: true "
    "names it when a text rewords it; DELETE /generations/{generation_id} erases it.",
    examples=["gen-6f1c0d5e2b7a4c8e9d3f1a2b3c4d5e6f"],
)


class ProvenanceMatch(BaseModel):
    generation_id: str
    similarity: float = Field(description="Cosine similarity of the closest pieces (all-MiniLM-L6-v2), -1 to 1.")
    p_value: float = Field(
        description="How often text unrelated to every record would match this well in a registry this size: "
        "min(1, comparisons * P(one unrelated pair is this similar)), the union bound over every comparison."
    )
    rare_word_similarity: float | None = Field(
        description="Cosine similarity of the closest pieces' rare words (tf-idf of their terms), 0 to 1: what a "
        "rewording keeps. Evidence to read, not part of any verdict (docs/PROVENANCE.md). 0 for a record kept "
        "without rare words; null where the service keeps none (SIGNET_PROVENANCE_RARE_WORDS=false)."
    )
    rare_word_p_value: float | None = Field(
        description="How often text on another topic than every record would share this many rare words, for a "
        "registry of at least 140,000 vectors: the union bound against its own null. Text on the very topic of a "
        "record (another recipe for the same dish) can share more without rewording it, so no verdict uses it. "
        "Null as rare_word_similarity."
    )
    key_id: str | None = Field(description="The key it was watermarked with; null for an unwatermarked one.")
    created_at: float = Field(description="When it was generated (Unix seconds).")
    text: str | None = Field(
        default=None,
        description="The generation's text, only where the operator keeps texts (SIGNET_PROVENANCE_STORE_TEXT).",
    )


class ProvenanceReport(BaseModel):
    verdict: Literal["match", "no_match", "insufficient_evidence"] = Field(
        description="match: the best p_value is below alpha (this test alone; combined tests each at alpha / 2); "
        "insufficient_evidence: the text has under 40 words, too little to tell a rewording from a stock phrase "
        "(its matches are still listed; p_value is 1)."
    )
    p_value: float = Field(
        description="The smallest p_value among the matches (by meaning); 1.0 when the registry is empty or the text "
        "too short for a verdict."
    )
    smallest_p_value: float = Field(
        description="The smallest p_value this search could have given: a copy (similarity 1) against num_vectors "
        "with num_pieces; 1.0 when the text is too short for a verdict. When it is not below alpha / 2 the registry "
        "cannot decide, and the combined test gives the whole of alpha to the watermark."
    )
    rare_word_p_value: float | None = Field(
        description="The smallest rare_word_p_value among the matches; 1.0 as p_value; null where the service keeps "
        "no rare words. Reported, not combined."
    )
    rare_word_smallest_p_value: float | None = Field(
        description="The smallest rare_word_p_value this search could have given (a copy); null as rare_word_p_value."
    )
    matches: list[ProvenanceMatch] = Field(
        description="The caller's generations closest by meaning (5) and, where rare words are kept, closest by "
        "rare words (5 more at most), most similar by meaning first: the first is the one p_value comes from."
    )
    num_vectors: int = Field(
        description="Stored vectors of the caller's registry compared against (N): one per piece of each generation."
    )
    num_pieces: int = Field(description="Pieces of the text compared (q): the union bound counts q * N comparisons.")
    truncated: bool = Field(
        description="The text had more pieces than are searched (8): 8 spread evenly over it were searched."
    )


class CombinedVerdict(BaseModel):
    verdict: Literal["generated_here", "not_found"] = Field(
        description="generated_here: the watermark test or the provenance test (by meaning) rejects at alpha / 2 "
        "(Bonferroni over the two, so the family-wise false-positive rate stays at most alpha); or, when the "
        "provenance test cannot reject (its smallest_p_value is not below alpha / 2), the watermark test rejects at "
        "alpha. Rare words take no part (ProvenanceMatch.rare_word_p_value says why)."
    )
    p_value: float = Field(
        description="min(1, 2 * min(watermark corrected_p_value, provenance p_value)); the watermark's "
        "corrected_p_value alone when the provenance test cannot reject."
    )
    decided_by: Evidence | None = Field(description="Which evidence rejected; null when neither did.")
    rule: Rule = Field(
        description="both_at_half_alpha: each test at alpha / 2. watermark_at_alpha: the provenance test could not "
        "reject (the text too short for a verdict, or its smallest_p_value not below alpha / 2), so the watermark "
        "had the whole of alpha. Which applies depends only on the text's length, the registry's size and alpha."
    )
    tests: list[Literal["watermark", "meaning"]] = Field(
        description="The tests that took part, each at alpha / len(tests)."
    )
    rejected: list[Literal["watermark", "meaning"]] = Field(description="Those of tests that rejected.")
