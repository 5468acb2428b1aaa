"""A vLLM logits processor that applies each request's watermark.

Each request's key names its scheme, and the scheme transforms that request's logits
(``WatermarkScheme.apply_watermark``): the KGW family adds ``delta`` to green logits,
``gumbel`` leaves possible only the token vLLM's native Gumbel-max watermark would pick.

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

from signet.keys import KeyRegistry
from signet.watermark.scheme import GenerationRow

if TYPE_CHECKING:
    from vllm.config import VllmConfig

# Names shared with the engine (engine/vllm_engine.py), which passes them to this processor
# across vLLM's process boundary. Defined here because the engine imports this module.
WATERMARK_KEY_ID_ARG = "signet_watermark_key_id"  # in SamplingParams.extra_args
KEYS_FILE_CONFIG = "signet_keys_file"  # in VllmConfig.additional_config


@dataclass
class _WatermarkedRow:
    key_id: str
    row: GenerationRow


class WatermarkLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        keys_file = (vllm_config.additional_config or {}).get(KEYS_FILE_CONFIG)
        model_config = getattr(vllm_config, "model_config", None)
        vocab_size = model_config.get_vocab_size() if model_config is not None else None
        self._registry = KeyRegistry.load(Path(keys_file), vocab_size) if keys_file else None
        self._rows: dict[int, _WatermarkedRow] = {}

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

    def _require_key(self, key_id: str) -> None:
        if self._registry is None:
            raise RuntimeError("a watermarked request reached an engine started without a key registry")
        self._registry.get(key_id)  # raises UnknownKeyError
