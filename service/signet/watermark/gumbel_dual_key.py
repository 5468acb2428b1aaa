"""vLLM 0.32's dual-key Gumbel-max watermark (``--watermark-config '{"algorithm": "dual_key_gumbel"}'``).

One secret yields two Gumbel-max keys, A and B (``derive_watermark_key``, as vLLM's
config derives them). At each step the sampler emits key A's Gumbel-max token with
probability 1 - alpha and key B's otherwise; vLLM built it for speculative decoding, where
the draft model samples with key A and the target with key B. Detection scores each token
under both keys and weights them as the routing did: ``(1 - alpha) s_A + alpha s_B`` with
``s = -log(1 - u)``, as ``DualKeyGumbelWatermarkDetector._score_tokens`` computes it.

The p-value is where we differ from vLLM: its detector approximates the score sum by a
Gamma with the same mean and variance, which understates p-values in the tail (alpha 0.1,
T = 25: 9.8e-22 where the exact p is 1e-20, 2.9e-108 where it is 1e-100). ``WeightedGammaNull`` is exact.

Each key is a ``GumbelScheme`` (the PRF, noise, context rule and context deduplication of
``gumbel.py``), so the two schemes cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from signet.watermark.evidence import TokenEvidence
from signet.watermark.gumbel import (
    MAX_CONTEXT_WIDTH,
    GumbelParameters,
    GumbelScheme,
    SeenContexts,
    gumbel_sampling_problem,
)
from signet.watermark.scheme import GenerationRow, KeyEntry, SamplingProblem, WatermarkScheme
from signet.watermark.weighted_gamma import WeightedGammaNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "gumbel-dual-key"
KEY_A_DOMAIN = b"key_a"  # vLLM's draft_watermarker; weight 1 - alpha
KEY_B_DOMAIN = b"key_b"  # vLLM's target_watermarker; weight alpha
_KEY_BYTES = 8


def derive_watermark_key(key: int, domain: bytes) -> int:
    """``vllm.config.watermarking.derive_watermark_key``: the first 8 bytes of
    SHA-256(domain + key as 8 big-endian bytes), read big-endian."""
    if not 0 <= key < 2 ** (8 * _KEY_BYTES):
        raise ValueError("Philox keys must fit in 64 bits")
    digest = hashlib.sha256(domain + key.to_bytes(_KEY_BYTES, "big")).digest()
    return int.from_bytes(digest[:_KEY_BYTES], "big")


@dataclass(frozen=True)
class DualKeyGumbelParameters:
    context_width: int = 4
    alpha: float = 0.1  # probability of key B, and its weight in the score; vLLM's default

    def __post_init__(self) -> None:
        if not 1 <= self.context_width <= MAX_CONTEXT_WIDTH:
            raise ValueError(f"context_width must lie between 1 and {MAX_CONTEXT_WIDTH}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must lie between 0 and 1")


class DualKeyGumbelKey(KeyEntry):
    """vLLM's dual-key Gumbel-max watermark: two derived keys, key B used with probability alpha."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "key"
    scheme: Literal["gumbel-dual-key"]
    key: int = Field(ge=0, le=2**64 - 1, repr=False)
    context_width: int = Field(default=4, ge=1, le=MAX_CONTEXT_WIDTH)
    alpha: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Probability of key B at each token, and its weight in the score."
    )

    def build_scheme(self, model_vocab_size: int | None) -> DualKeyGumbelScheme:
        parameters = DualKeyGumbelParameters(context_width=self.context_width, alpha=self.alpha)
        return DualKeyGumbelScheme(self.key, parameters)

    def public_parameters(self) -> dict[str, float | int]:
        # WatermarkInfo names vLLM's alpha for what it is, beside detection's own alpha
        return {"context_width": self.context_width, "key_b_probability": self.alpha}

    def sampling_problem(self, temperature: float, top_p: float) -> SamplingProblem | None:
        return gumbel_sampling_problem(temperature, top_p)  # either key's sampling is gumbel's


@dataclass
class RoutedContexts(SeenContexts):
    """A request's state: gumbel's seen contexts (both keys share one context rule) and the
    generator that routes each of its tokens to key A or B.

    vLLM draws the route from the request's own sampler, which a request seed makes
    reproducible. A ``GenerationRow`` carries no seed, so the routes here come from a
    generator seeded from OS entropy: a seeded request repeats its text only where the
    routes happen to repeat.
    """

    routes: np.random.Generator = field(default_factory=np.random.default_rng)


class DualKeyGumbelScheme(WatermarkScheme):
    """Two Gumbel-max keys from one secret: weighted scores for detection, routed sampling for generation."""

    name = SCHEME_NAME

    def __init__(self, key: int, parameters: DualKeyGumbelParameters) -> None:
        self.parameters = parameters
        gumbel = GumbelParameters(context_width=parameters.context_width, deduplicate_contexts=True)
        self.key_a = GumbelScheme(derive_watermark_key(key, KEY_A_DOMAIN), gumbel)
        self.key_b = GumbelScheme(derive_watermark_key(key, KEY_B_DOMAIN), gumbel)
        self._null = WeightedGammaNull(parameters.alpha)

    def __repr__(self) -> str:
        return f"DualKeyGumbelScheme({self.parameters}, key=<redacted>)"

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> WeightedGammaNull:
        return self._null

    def evidence(self, token_ids: Sequence[int] | np.ndarray) -> TokenEvidence:
        """Per-token ``(1 - alpha) s_A + alpha s_B`` and whether it counts, as vLLM's detector decides.

        Both keys see the same contexts, so they score the same tokens. A key of weight 0
        is not evaluated: vLLM adds 0 * s, which is 0 for every finite s.
        """
        alpha = self.parameters.alpha
        if alpha == 1.0:
            return self.key_b.evidence(token_ids)
        key_a = self.key_a.evidence(token_ids)
        if alpha == 0.0:
            return key_a
        key_b = self.key_b.evidence(token_ids)
        return TokenEvidence(scores=(1.0 - alpha) * key_a.scores + alpha * key_b.scores, is_scored=key_a.is_scored)

    # Generation -------------------------------------------------------------------

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Route each row to key A (probability 1 - alpha) or B, then sample it as gumbel does.

        The route is drawn first, so each row computes one key's noise, as single-key gumbel.
        """
        self.apply_routed(logits, row_indices, rows, self.draw_routes(rows))

    def draw_routes(self, rows: Sequence[GenerationRow]) -> np.ndarray:
        """bool [rows]: True where this step's token comes from key B."""
        alpha = self.parameters.alpha
        for row in rows:
            if row.scheme_state is None:
                row.scheme_state = RoutedContexts()
        if alpha in (0.0, 1.0):  # as in vLLM, one key and no draw
            return np.full(len(rows), alpha == 1.0)
        return np.array([row.scheme_state.routes.random() < alpha for row in rows], dtype=bool)

    def apply_routed(
        self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow], use_key_b: np.ndarray
    ) -> None:
        """``apply_watermark`` with the routes given: key B's Gumbel-max token where ``use_key_b``."""
        for scheme, chosen in ((self.key_a, ~use_key_b), (self.key_b, use_key_b)):
            picked = np.flatnonzero(chosen)
            if len(picked):
                # Both keys share each row's seen contexts: whichever key samples a row records them.
                scheme.apply_watermark(logits, [row_indices[i] for i in picked], [rows[i] for i in picked])
