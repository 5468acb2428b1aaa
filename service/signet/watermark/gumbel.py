"""The Gumbel-max watermark (Aaronson 2023) exactly as vLLM 0.32 generates and detects it.

Generation: at each step the last ``context_width`` generated tokens and the key give
every vocabulary entry a uniform ``u`` (``philox.py``); the sampler emits
``argmax(logits + Gumbel(u))``, which is an exact sample of softmax(logits) whose
randomness the key holder can recompute. Detection: the emitted token's ``u`` is then
unusually close to 1, so ``-log(1 - u)``, Exp(1) for text written without the key, is
large; the sum over n independent tokens is Gamma(n, 1) under that null hypothesis.

Everything here mirrors ``vllm.v1.watermarking`` (``GumbelWatermarker``,
``GumbelWatermarkDetector``, the GPU sampler's context rule) with numpy only, so the API
process detects without vLLM installed and gets the same score vLLM would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from signet.watermark import philox
from signet.watermark.evidence import TokenEvidence
from signet.watermark.kgw import first_occurrences
from signet.watermark.philox_constants import UINT32_MASK
from signet.watermark.scheme import GenerationRow, KeyEntry, SamplingProblem, WatermarkScheme
from signet.watermark.statistics import GammaNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "gumbel"
MAX_CONTEXT_WIDTH = 16  # vLLM warns above 16: each edited token breaks more contexts
NO_TOKEN = -1  # vLLM's context padding before the first generated token
# Token ids are packed as uint32 for context deduplication, where -1 reads as 0xFFFFFFFF.
MAX_TOKEN_ID = UINT32_MASK - 1
_FLOAT32_TINY = np.finfo(np.float32).tiny


@dataclass(frozen=True)
class GumbelParameters:
    context_width: int = 4
    deduplicate_contexts: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.context_width <= MAX_CONTEXT_WIDTH:
            raise ValueError(f"context_width must lie between 1 and {MAX_CONTEXT_WIDTH}")


class GumbelKey(KeyEntry):
    """vLLM's native Gumbel-max watermark (``--watermark-config '{"algorithm": "gumbel", ...}'``)."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "key"
    scheme: Literal["gumbel"]
    key: int = Field(ge=0, le=2**64 - 1, repr=False)
    context_width: int = Field(default=4, ge=1, le=16)

    def build_scheme(self, model_vocab_size: int | None) -> GumbelScheme:
        return GumbelScheme(self.key, GumbelParameters(context_width=self.context_width))

    def public_parameters(self) -> dict[str, float | int]:
        return {"context_width": self.context_width}

    def sampling_problem(self, temperature: float, top_p: float) -> SamplingProblem | None:
        return gumbel_sampling_problem(temperature, top_p)


def gumbel_sampling_problem(temperature: float, top_p: float) -> SamplingProblem | None:
    """The limits of Gumbel-max sampling (gumbel and gumbel-dual-key): it replaces the sampler
    and, like vLLM's own, has no greedy form and does not apply top_p."""
    if temperature == 0:
        return SamplingProblem("temperature", "needs temperature > 0")
    if top_p != 1.0:
        return SamplingProblem("top_p", "samples from the whole vocabulary")
    return None


@dataclass
class SeenContexts:
    """A request's contexts of the output positions already sampled, as vLLM's "single_turn"
    deduplication sees them: a repeated context is not watermarked."""

    contexts: set[tuple[int, ...]] = field(default_factory=set)
    recorded: int = 0  # output positions whose contexts are in ``contexts``


class GumbelScheme(WatermarkScheme):
    """One key's Gumbel-max watermark: noise for generation, per-token evidence for detection."""

    name = SCHEME_NAME

    def __init__(self, key: int, parameters: GumbelParameters) -> None:
        philox.key_words(key)  # validates the 64-bit range as vLLM's PhiloxPRF does
        self.parameters = parameters
        self._key = key

    def __repr__(self) -> str:
        return f"GumbelScheme({self.parameters}, key=<redacted>)"

    # Generation -------------------------------------------------------------------

    def generation_contexts(self, output_ids_per_row: Sequence[Sequence[int]]) -> np.ndarray:
        """int64 [rows, context_width]: each row's last generated tokens, left-padded with -1.

        Prompt tokens never enter a context (vLLM's ``_get_contexts``), so a detector
        that sees only the completion recomputes every context.
        """
        width = self.parameters.context_width
        contexts = np.full((len(output_ids_per_row), width), NO_TOKEN, dtype=np.int64)
        for row, output_ids in enumerate(output_ids_per_row):
            recent = list(output_ids[-width:])
            if recent:
                contexts[row, width - len(recent) :] = recent
        return contexts

    def uniforms(self, contexts: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
        """float32 PRF values for contexts [..., width] and token ids broadcast like vLLM's PRF."""
        return philox.uniform(self._key, self._checked_contexts(contexts), token_ids)

    def gumbel_noise(self, contexts: np.ndarray, vocab_size: int) -> np.ndarray:
        """float32 [rows, V] noise; ``argmax(logits + noise)`` is vLLM's watermarked sample.

        ``-log(-log(max(u, tiny)))`` with float32 intermediates, as
        ``GumbelWatermarker._sample_watermarked`` computes it. The clamp never binds
        (u >= 1 / (2**24 + 1)) but is kept for parity.
        """
        uniforms = philox.vocabulary_uniforms(self._key, self._checked_contexts(contexts), vocab_size)
        uniforms = np.maximum(uniforms, _FLOAT32_TINY)
        return -_float32_log(-_float32_log(uniforms))

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Leave possible only the token vLLM's Gumbel-max sampler would pick, ``argmax(logits / T + g)``."""
        import torch  # here, not at the top: the API process detects without torch installed

        watermarked, contexts, temperatures = [], [], []
        for index, row in zip(row_indices, rows, strict=True):
            if row.scheme_state is None:
                row.scheme_state = SeenContexts()
            seen: SeenContexts = row.scheme_state
            context = self._record_contexts(row.output_ids, seen)
            # Greedy rows and repeated contexts sample as usual, as in vLLM's own sampler.
            if row.temperature > 0 and context not in seen.contexts:
                watermarked.append(index)
                contexts.append(context)
                temperatures.append(row.temperature)
        if not watermarked:
            return
        noise = torch.from_numpy(self.gumbel_noise(np.array(contexts, dtype=np.int64), logits.shape[1]))
        chosen_rows = torch.tensor(watermarked, device=logits.device)
        scale = torch.tensor(temperatures, device=logits.device)
        scaled = logits[chosen_rows].float() / scale.unsqueeze(1) + noise.to(logits.device)
        chosen = scaled.argmax(dim=1)
        # Only the chosen token stays possible, whatever temperature the sampler applies next.
        logits[chosen_rows] = float("-inf")
        logits[chosen_rows, chosen] = 0.0

    def _record_contexts(self, output_ids: list[int], seen: SeenContexts) -> tuple[int, ...]:
        """The current generation context; notes the earlier output positions' contexts as seen."""
        width = self.parameters.context_width
        for position in range(seen.recorded, len(output_ids)):
            preceding = output_ids[max(position - width, 0) : position]  # all a context needs
            seen.contexts.add(self._generation_context(preceding))
        seen.recorded = len(output_ids)
        return self._generation_context(output_ids)

    def _generation_context(self, output_ids: list[int]) -> tuple[int, ...]:
        return tuple(int(token) for token in self.generation_contexts([output_ids])[0])

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> GammaNull:
        return GammaNull()

    def evidence(self, token_ids: Sequence[int] | np.ndarray) -> TokenEvidence:
        """Per-token ``-log(1 - u)`` and whether the token counts, as vLLM's detector decides.

        Token i's context is the ``context_width`` tokens before it, -1 before the
        start. With ``deduplicate_contexts`` a context seen before reuses the same keyed
        uniforms, so its token is not independent evidence and is not scored.
        """
        ids = _checked_token_ids(token_ids)
        contexts = self._detection_contexts(ids)
        if self.parameters.deduplicate_contexts:
            is_scored = first_occurrences(contexts)
        else:
            is_scored = np.ones(len(ids), dtype=bool)
        scores = np.zeros(len(ids), dtype=np.float64)
        scored_uniforms = philox.uniform(self._key, contexts[is_scored], ids[is_scored, np.newaxis])[:, 0]
        scores[is_scored] = -np.log1p(-scored_uniforms.astype(np.float64))
        return TokenEvidence(scores=scores, is_scored=is_scored)

    # Helpers ----------------------------------------------------------------------

    def _detection_contexts(self, ids: np.ndarray) -> np.ndarray:
        """int64 [len(ids), width]: row i holds the ``width`` ids before position i."""
        width = self.parameters.context_width
        padded = np.concatenate([np.full(width, NO_TOKEN, dtype=np.int64), ids])
        return sliding_window_view(padded, width)[: len(ids)]

    def _checked_contexts(self, contexts: np.ndarray) -> np.ndarray:
        # The width is part of the PRF input: a wrong width silently yields another watermark.
        contexts = np.asarray(contexts, dtype=np.int64)
        if contexts.ndim == 0 or contexts.shape[-1] != self.parameters.context_width:
            raise ValueError(f"contexts must have {self.parameters.context_width} columns")
        return contexts


def _checked_token_ids(token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """1-D int64 ids; out-of-range ids would collide with the -1 padding or wrap in the PRF."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError("token_ids must be one sequence")
    if len(ids) and (ids.min() < 0 or ids.max() > MAX_TOKEN_ID):
        raise ValueError(f"token ids must lie between 0 and {MAX_TOKEN_ID}")
    return ids


def _float32_log(values: np.ndarray) -> np.ndarray:
    """float32 natural log, correctly rounded via float64.

    torch's CPU float32 log (Sleef, 1 ulp) is correctly rounded on all but ~0.1% of
    these inputs; numpy's SIMD float32 log differs from it on ~20%. Going through
    float64 keeps the noise bit-identical to vLLM's CPU path almost everywhere (1 ulp
    off elsewhere), so only a near-tie at the argmax could change the sampled token.
    """
    return np.log(values, dtype=np.float64).astype(np.float32)
