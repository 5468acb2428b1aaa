"""A vLLM logits processor that applies each request's KGW watermark.

It implements the V1 runner's interface (``vllm.v1.sample.logits_processor``), which
vLLM runs on CPU and, with ``VLLM_USE_V2_MODEL_RUNNER=0``, on GPU. It runs in the
engine-core process, so it loads the key registry itself from the path passed in
``additional_config``; a request names only its ``key_id`` (in
``SamplingParams.extra_args``). Secrets never cross a process boundary.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from signet.engine.vllm_engine import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG
from signet.keys import KeyRegistry

if TYPE_CHECKING:
    from vllm.config import VllmConfig

@dataclass
class _WatermarkedRow:
    key_id: str
    prompt_ids: list[int]
    output_ids: list[int]  # vLLM's live list: it grows as the request decodes

    def context(self, width: int) -> list[int]:
        """The last ``width`` tokens before the one being sampled."""
        generated = self.output_ids[-width:]
        missing = width - len(generated)
        return (self.prompt_ids[-missing:] if missing > 0 else []) + generated


class WatermarkLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        keys_file = (vllm_config.additional_config or {}).get(KEYS_FILE_CONFIG)
        self._registry = KeyRegistry.load(Path(keys_file)) if keys_file else None
        self._rows: dict[int, _WatermarkedRow] = {}
        self._vocabulary_hashes: dict[tuple[str, int], torch.Tensor] = {}
        self._device = device

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        key_id = (sampling_params.extra_args or {}).get(WATERMARK_KEY_ID_ARG)
        if key_id is not None and not isinstance(key_id, str):
            raise ValueError(f"{WATERMARK_KEY_ID_ARG} must be a string")

    def is_argmax_invariant(self) -> bool:
        return False  # the green bias changes which token is most likely

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, prompt_ids, output_ids in batch_update.added:
            key_id = (params.extra_args or {}).get(WATERMARK_KEY_ID_ARG) if params is not None else None
            if key_id is None:
                self._rows.pop(index, None)  # an unwatermarked request took this slot
            else:
                self._require_key(key_id)
                self._rows[index] = _WatermarkedRow(key_id, list(prompt_ids or []), output_ids)
        for source, target, direction in batch_update.moved:
            moving = self._rows.pop(source, None)
            displaced = self._rows.pop(target, None)
            if direction == MoveDirectionality.SWAP and displaced is not None:
                self._rows[source] = displaced
            if moving is not None:
                self._rows[target] = moving

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._rows:
            return logits
        rows_by_key: dict[str, list[int]] = defaultdict(list)
        for index, row in self._rows.items():
            rows_by_key[row.key_id].append(index)
        for key_id, indices in rows_by_key.items():
            scheme = self._registry.scheme(key_id)
            contexts = [self._rows[index].context(scheme.parameters.context_width) for index in indices]
            seeds = torch.tensor(scheme.context_seeds(contexts), dtype=torch.int64, device=logits.device)
            green = scheme.green_mask(seeds.unsqueeze(1), self._hashes(key_id, logits.shape[1], logits.device))
            bias = green.to(logits.dtype).mul_(scheme.parameters.delta)
            logits.index_add_(0, torch.tensor(indices, device=logits.device), bias)
        return logits

    def _require_key(self, key_id: str) -> None:
        if self._registry is None:
            raise RuntimeError("a watermarked request reached an engine started without a key registry")
        self._registry.get(key_id)  # raises UnknownKeyError

    def _hashes(self, key_id: str, vocabulary_size: int, device: torch.device) -> torch.Tensor:
        cached = self._vocabulary_hashes.get((key_id, vocabulary_size))
        if cached is None:
            vocabulary = torch.arange(vocabulary_size, dtype=torch.int64, device=device)
            cached = self._registry.scheme(key_id).vocabulary_hashes(vocabulary)
            self._vocabulary_hashes[(key_id, vocabulary_size)] = cached
        return cached
