"""The Unigram watermark (Zhao et al. 2023, "Provable Robust Watermarking for AI-Generated Text").

KGW with no context: one fixed, keyed green list covers every position. Generation adds
``delta`` to the green logits; detection counts green tokens among the text's distinct
tokens, each token counted once, as the authors' detector does (a token repeated ten
times is one piece of evidence, since its colour never changes).

The trade-off, measured in docs/DETECTION.md: an edit changes the evidence of the edited
token only (KGW's context width 1 also loses the next token's), so the watermark survives
replacements and deletions best; but every generated token shows the same green list,
so counting token frequencies in watermarked text learns it faster than any
context-dependent list (docs/SECURITY.md, watermark stealing).

The green list comes from Signet's keyed PRF (``prf.py``): token t is green when
``uniform_word(seed, token_hash(t)) < gamma * 2**32`` with one fixed seed per key.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field, SecretStr

from signet.watermark.evidence import TokenEvidence
from signet.watermark.prf import WORD_RANGE, PrfKey, context_seed, token_hash, uniform_word
from signet.watermark.scheme import GenerationRow, KeyEntry, WatermarkScheme
from signet.watermark.statistics import BinomialNull

if TYPE_CHECKING:
    import torch

SCHEME_NAME = "unigram"
_KEY_DOMAIN = b"signet-unigram-v1"


@dataclass(frozen=True)
class UnigramParameters:
    gamma: float = 0.25
    delta: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must lie strictly between 0 and 1")
        if self.delta < 0.0:
            raise ValueError("delta must not be negative")

    @property
    def green_threshold(self) -> int:
        return min(round(self.gamma * WORD_RANGE), WORD_RANGE - 1)


class UnigramKey(KeyEntry):
    """A fixed keyed green list (Zhao et al. 2023) on Signet's PRF."""

    scheme_name: ClassVar[str] = SCHEME_NAME
    secret_field: ClassVar[str] = "secret"
    scheme: Literal["unigram"]
    secret: SecretStr = Field(min_length=16)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)

    def build_scheme(self, model_vocab_size: int | None) -> UnigramScheme:
        parameters = UnigramParameters(gamma=self.gamma, delta=self.delta)
        return UnigramScheme(self.secret.get_secret_value().encode(), parameters)

    def public_parameters(self) -> dict[str, float | int]:
        return {"gamma": self.gamma, "delta": self.delta, "context_width": 0}


class UnigramScheme(WatermarkScheme):
    """One key's fixed green list: a logits bias for generation, green flags for detection."""

    name = SCHEME_NAME
    counts_green = True

    def __init__(self, secret: bytes, parameters: UnigramParameters) -> None:
        self.parameters = parameters
        self._key = PrfKey.from_secret(secret, _KEY_DOMAIN)
        self._seed = np.uint32(context_seed(self._key, []))  # the one seed: no context
        # The green list as a boolean mask per (vocab_size, device), built on first use.
        self._masks: dict[tuple[int, object], torch.Tensor] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UnigramScheme({self.parameters}, key=<redacted>)"

    def is_green(self, token_ids: np.ndarray) -> np.ndarray:
        """Boolean flags for int64 token ids in 0..2**32 - 1."""
        hashes = token_hash(self._key, np.asarray(token_ids, dtype=np.int64).astype(np.uint32))
        return uniform_word(self._seed, hashes) < self.parameters.green_threshold

    # Generation -------------------------------------------------------------------

    def apply_watermark(self, logits: torch.Tensor, row_indices: Sequence[int], rows: Sequence[GenerationRow]) -> None:
        """Add ``delta`` to the green logits of every row: one mask for all of them."""
        mask = self._mask(logits.shape[1], logits.device)
        for index in row_indices:
            logits[index].add_(mask, alpha=self.parameters.delta)

    @property
    def device_context_width(self) -> int:
        return 0  # one green list for every position

    def apply_watermark_on_device(
        self, logits: torch.Tensor, row_indices: torch.Tensor, contexts: torch.Tensor
    ) -> None:
        mask = self._mask(logits.shape[1], logits.device).to(logits.dtype)
        logits.index_add_(0, row_indices, mask.expand(len(row_indices), -1), alpha=self.parameters.delta)

    def _mask(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        import torch  # here, not at the top: the API process detects without torch installed

        with self._lock:
            mask = self._masks.get((vocab_size, device))
            if mask is None:
                green = self.is_green(np.arange(vocab_size, dtype=np.int64))
                mask = torch.from_numpy(green).to(device)
                self._masks[(vocab_size, device)] = mask
            return mask

    # Detection --------------------------------------------------------------------

    @property
    def null_distribution(self) -> BinomialNull:
        return BinomialNull(self.parameters.gamma)

    def evidence(self, token_ids: Sequence[int] | np.ndarray) -> TokenEvidence:
        """Green (1.0) or red (0.0) at each token's first occurrence; repeats are not scored.

        Under the null hypothesis the distinct tokens' colours are independent
        Bernoulli(gamma) draws of the keyed PRF, whatever the text repeats.
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= WORD_RANGE):
            raise ValueError(f"token ids must lie between 0 and {WORD_RANGE - 1}")
        is_scored = np.zeros(len(ids), dtype=bool)
        _, first_index = np.unique(ids, return_index=True)
        is_scored[first_index] = True
        scores = np.where(is_scored & self.is_green(ids), 1.0, 0.0)
        return TokenEvidence(scores=scores, is_scored=is_scored)
