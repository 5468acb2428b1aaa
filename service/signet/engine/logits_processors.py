"""vLLM's V1-runner logits processor that applies each request's watermark.

Each request's key names its scheme, and the scheme transforms that request's logits
(``WatermarkScheme.apply_watermark``): the KGW family adds ``delta`` to green logits,
``gumbel`` leaves possible only the token vLLM's native Gumbel-max watermark would pick.

It implements the V1 runner's interface (``vllm.v1.sample.logits_processor``), which vLLM
runs on CPU and, with ``VLLM_USE_V2_MODEL_RUNNER=0``, on GPU; ``logits_processors_v2.py`` is
the same watermark for Model Runner V2. How a request names its key and where the registry
comes from: ``watermark_requests.py``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from signet.engine.watermark_requests import check_key_id, load_registry, require_key, watermark_key_id
from signet.watermark.scheme import GenerationRow

if TYPE_CHECKING:
    from vllm.config import VllmConfig


@dataclass
class _WatermarkedRow:
    key_id: str
    row: GenerationRow


class WatermarkLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        self._registry = load_registry(vllm_config)
        self._rows: dict[int, _WatermarkedRow] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        check_key_id(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False  # the green bias changes which token is most likely

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for index, params, prompt_ids, output_ids in batch_update.added:
            key_id = watermark_key_id(params)
            if key_id is None:
                self._rows.pop(index, None)  # an unwatermarked request took this slot
            else:
                require_key(self._registry, key_id)
                row = GenerationRow(list(prompt_ids or []), output_ids, params.temperature)
                self._rows[index] = _WatermarkedRow(key_id, row)
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
        indices_by_key: dict[str, list[int]] = defaultdict(list)
        for index, watermarked in self._rows.items():
            indices_by_key[watermarked.key_id].append(index)
        for key_id, indices in indices_by_key.items():
            rows = [self._rows[index].row for index in indices]
            self._registry.scheme(key_id).apply_watermark(logits, indices, rows)
        return logits
