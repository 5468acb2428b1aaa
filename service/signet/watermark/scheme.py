"""What every watermark scheme provides: the contract between a scheme's module and the rest of Signet.

A scheme is two classes in one module of this package:

* a key model (a ``KeyEntry``): one entry of the keys file, validated by pydantic, that
  builds the scheme;
* the scheme itself (a ``WatermarkScheme``): per-token evidence and its null distribution
  for detection, the logits transform for generation, and the few facts the API reports.

``registry.py`` lists the key models; nothing outside this package asks which scheme it holds.
Detection runs in the API process, which has no torch: nothing here imports it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from signet.watermark.evidence import TokenEvidence
from signet.watermark.normalization import NormalizationStep
from signet.watermark.statistics import NullDistribution
from signet.watermark.strength import integer_bits, text_bits

if TYPE_CHECKING:
    import torch

# ABCs rather than Protocols: no type checker runs on this code, so a Protocol would check
# nothing, while an ABC refuses to build a scheme that lacks a method, and the key registry
# builds every scheme when the keys file loads: a fifth scheme missing a method fails at
# start, not on its first request. The ABCs also carry the defaults most schemes share
# (any token id is valid, no sampling limits, nothing to prewarm).


@dataclass(frozen=True)
class SamplingProblem:
    """A sampling setting a scheme cannot watermark with: the request field and why."""

    field: str
    reason: str


class GenerationRow:
    """One request being generated, as a scheme's logits transform sees it."""

    def __init__(self, prompt_ids: list[int], output_ids: list[int], temperature: float) -> None:
        self.prompt_ids = prompt_ids
        self.output_ids = output_ids  # vLLM's live list: it grows as the request decodes
        self.temperature = temperature
        # The scheme's own per-request state (gumbel: the contexts already sampled); None until it sets one.
        self.scheme_state: Any = None

    def context(self, width: int) -> list[int]:
        """The last ``width`` tokens before the one being sampled, prompt included."""
        generated = self.output_ids[-width:]
        missing = width - len(generated)
        return (self.prompt_ids[-missing:] if missing > 0 else []) + generated


class WatermarkScheme(ABC):
    """One key's watermark: evidence for detection, a logits transform for generation."""

    name: ClassVar[str]  # the keys file's ``scheme`` value, e.g. "kgw"
    # Scores are 1.0 green / 0.0 red (the KGW family): responses report green counts and gamma.
    counts_green: ClassVar[bool] = False

    # Detection --------------------------------------------------------------------

    @abstractmethod
    def evidence(self, token_ids: Sequence[int] | np.ndarray) -> TokenEvidence:
        """Per-token scores and which tokens count, as the scheme's reference detector decides."""

    @property
    @abstractmethod
    def null_distribution(self) -> NullDistribution:
        """How the scored tokens' score sum is distributed in text written without the key."""

    @property
    def vocab_size(self) -> int | None:
        """The token ids the scheme covers (0 to vocab_size - 1); None: any id, bounded by the tokenizer."""
        return None

    # Generation -------------------------------------------------------------------

    @abstractmethod
    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Watermark ``logits[row_indices[i]]``, the next-token logits of ``rows[i]``, in place.

        ``logits`` is vLLM's [batch, V] tensor on the engine's device. Implementations
        import torch inside this method: the API process imports schemes without it.
        """

    # Generation with the tokens on the device (vLLM's Model Runner V2). A scheme whose
    # transform is a function of the last few tokens alone offers it; the others keep state
    # per request on the host (gumbel's seen contexts) or draw green lists there
    # (kgw-lefthash's mt19937), and generate through ``apply_watermark``.

    @property
    def device_context_width(self) -> int | None:
        """How many preceding tokens ``apply_watermark_on_device`` reads; None: it has none."""
        return None

    def apply_watermark_on_device(
        self, logits: torch.Tensor, row_indices: torch.Tensor, contexts: torch.Tensor
    ) -> None:
        """``apply_watermark`` with everything on ``logits``' device, never reading it back.

        ``row_indices``: int64 [rows]. ``contexts``: int64 [rows, width], each row's last
        tokens, prompt included, oldest first; ``width`` is ``device_context_width``, or
        fewer where a sequence is shorter (as ``GenerationRow.context`` gives them). The
        result must equal ``apply_watermark``'s for the same rows, bit for bit.
        """
        raise NotImplementedError(f"{self.name} generates through apply_watermark only")

    def prewarm(self) -> None:
        """Load compiled code before requests need it (servers run it in a thread); never a table per key."""
        return None  # most schemes have nothing to load


class KeyEntry(BaseModel, ABC):
    """One key of the keys file: the fields every scheme shares. Each scheme's key model
    adds its ``scheme`` literal and its own parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    tokenizer: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Name of the tokenizer the generator used; unset: the served model's.",
    )
    normalization: tuple[NormalizationStep, ...] = Field(
        default=(), description="Steps applied to a text before tokenizing it for detection."
    )
    # Optional: by default a verdict needs only as many scored tokens as could reach alpha
    # (``statistics.tokens_needed``); operators who want a floor anyway set one.
    min_scored_tokens: int | None = Field(
        default=None, ge=1, le=100_000, description="Fewer scored tokens than this: insufficient_evidence."
    )

    scheme_name: ClassVar[str]  # the value of the subclass's ``scheme`` literal, for the registry

    # The field that holds the key's secret ("secret", "hashing_key", "key"): a SecretStr or an int.
    secret_field: ClassVar[str]

    def canonical_bytes(self) -> bytes:
        """Every field, secret included, in one fixed serialisation: what the key's fingerprint
        digests (``KeyRegistry.fingerprint``, keyed; never hash it unkeyed, see there)."""
        fields = {name: value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in self}
        return json.dumps(fields, sort_keys=True, default=str).encode()

    def secret_bits(self) -> float:
        """A conservative estimate of the secret's entropy in bits: log2 of the guesses that find it."""
        secret = getattr(self, self.secret_field)
        if isinstance(secret, SecretStr):
            return text_bits(secret.get_secret_value())
        return integer_bits(secret)

    @property
    def needs_model_vocab_size(self) -> bool:
        """Whether ``build_scheme`` needs the served model's vocabulary size."""
        return False

    @abstractmethod
    def build_scheme(self, model_vocab_size: int | None) -> WatermarkScheme:
        """The scheme; raises ValueError for parameters that cannot make one."""

    # What the API asks of a key before it generates: on the key, not the scheme, since
    # they never depend on the vocabulary a scheme may need to be built.

    @abstractmethod
    def public_parameters(self) -> dict[str, float | int]:
        """The parameters a response may show, never the secret; with ``gamma`` (the null's
        green fraction) for every scheme whose ``counts_green`` is True."""

    def sampling_problem(self, temperature: float, top_p: float) -> SamplingProblem | None:
        """Why a request with these sampling settings cannot be watermarked; None: it can."""
        return None
