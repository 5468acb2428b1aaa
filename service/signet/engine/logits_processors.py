"""A vLLM logits processor that applies each request's watermark.

Three schemes, chosen by the request's key: ``kgw`` (Signet's own) and
``kgw-lefthash`` add ``delta`` to the green logits; ``gumbel`` picks the token vLLM's
native Gumbel-max watermark would pick, ``argmax(logits / T + g)`` with Philox noise
``g``, and leaves only that token possible.

It implements the V1 runner's interface (``vllm.v1.sample.logits_processor``), which
vLLM runs on CPU and, with ``VLLM_USE_V2_MODEL_RUNNER=0``, on GPU. It runs in the
engine-core process, so it loads the key registry itself from the path passed in
``additional_config``; a request names only its ``key_id`` (in
``SamplingParams.extra_args``). Secrets never cross a process boundary.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from signet.engine.vllm_engine import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG
from signet.keys import KeyRegistry
from signet.watermark.gumbel import SCHEME_NAME as GUMBEL
from signet.watermark.gumbel import GumbelScheme
from signet.watermark.lefthash import SCHEME_NAME as LEFTHASH

if TYPE_CHECKING:
    from vllm.config import VllmConfig

# Green masks kept for reuse, per engine process: 64 MiB is about 1,300 masks of a
# 49k vocabulary. Natural text repeats its frequent tokens constantly, and with
# context width 1 a mask depends only on the previous token.
GREEN_MASK_CACHE_BYTES = 64 * 1024 * 1024


class _GreenMaskCache:
    """Least-recently-used boolean masks keyed by (key_id, context tokens)."""

    def __init__(self, max_bytes: int) -> None:
        self._masks: OrderedDict[tuple[str, tuple[int, ...]], torch.Tensor] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0

    def get(self, key: tuple[str, tuple[int, ...]]) -> torch.Tensor | None:
        mask = self._masks.get(key)
        if mask is not None:
            self._masks.move_to_end(key)
        return mask

    def put(self, key: tuple[str, tuple[int, ...]], mask: torch.Tensor) -> None:
        if key in self._masks:
            return
        self._masks[key] = mask
        self._bytes += mask.numel()
        while self._bytes > self._max_bytes:
            _, evicted = self._masks.popitem(last=False)
            self._bytes -= evicted.numel()


@dataclass
class _WatermarkedRow:
    key_id: str
    prompt_ids: list[int]
    output_ids: list[int]  # vLLM's live list: it grows as the request decodes
    temperature: float
    # Gumbel only: the contexts of the output positions already sampled, as vLLM's
    # "single_turn" deduplication sees them; a repeated context is not watermarked.
    seen_contexts: set[tuple[int, ...]] = field(default_factory=set)
    contexts_recorded: int = 0

    def context(self, width: int) -> list[int]:
        """The last ``width`` tokens before the one being sampled, prompt included."""
        generated = self.output_ids[-width:]
        missing = width - len(generated)
        return (self.prompt_ids[-missing:] if missing > 0 else []) + generated

    def record_gumbel_contexts(self, scheme: GumbelScheme) -> tuple[int, ...]:
        """The current generation context; notes earlier positions' contexts as seen."""
        width = scheme.parameters.context_width
        for position in range(self.contexts_recorded, len(self.output_ids)):
            preceding = self.output_ids[max(position - width, 0) : position]  # all a context needs
            self.seen_contexts.add(_generated_context(preceding, scheme))
        self.contexts_recorded = len(self.output_ids)
        return _generated_context(self.output_ids, scheme)


def _generated_context(output_ids: list[int], scheme: GumbelScheme) -> tuple[int, ...]:
    return tuple(int(token) for token in scheme.generation_contexts([output_ids])[0])


class WatermarkLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        keys_file = (vllm_config.additional_config or {}).get(KEYS_FILE_CONFIG)
        model_config = getattr(vllm_config, "model_config", None)
        vocabulary_size = model_config.get_vocab_size() if model_config is not None else None
        self._registry = KeyRegistry.load(Path(keys_file), vocabulary_size) if keys_file else None
        self._rows: dict[int, _WatermarkedRow] = {}
        self._vocabulary_hashes: dict[tuple[str, int], np.ndarray | torch.Tensor] = {}
        self._mask_cache = _GreenMaskCache(GREEN_MASK_CACHE_BYTES)

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
                self._rows[index] = _WatermarkedRow(key_id, list(prompt_ids or []), output_ids, params.temperature)
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
            scheme_name = self._registry.get(key_id).scheme
            if scheme_name == GUMBEL:
                self._apply_gumbel(key_id, indices, logits)
            elif scheme_name == LEFTHASH:
                self._apply_lefthash(key_id, indices, logits)
            else:
                self._apply_kgw(key_id, indices, logits)
        return logits

    def _apply_kgw(self, key_id: str, indices: list[int], logits: torch.Tensor) -> None:
        scheme = self._registry.scheme(key_id)
        contexts = [tuple(self._rows[index].context(scheme.parameters.context_width)) for index in indices]
        for index, mask in zip(indices, self._green_masks(key_id, contexts, logits), strict=True):
            logits[index].add_(mask, alpha=scheme.parameters.delta)

    def _apply_lefthash(self, key_id: str, indices: list[int], logits: torch.Tensor) -> None:
        scheme = self._registry.scheme(key_id)
        previous_tokens = [self._rows[index].context(1)[0] for index in indices]
        # The permutation covers vocab_size ids; logits may be wider (padded) or,
        # with a key made for another model, narrower.
        width = min(scheme.parameters.vocab_size, logits.shape[1])
        masks = torch.from_numpy(scheme.green_mask(previous_tokens)[:, :width]).to(logits.device)
        for row, index in enumerate(indices):
            logits[index, :width].add_(masks[row], alpha=scheme.parameters.delta)

    def _apply_gumbel(self, key_id: str, indices: list[int], logits: torch.Tensor) -> None:
        scheme = self._registry.scheme(key_id)
        watermarked, contexts = [], []
        for index in indices:
            row = self._rows[index]
            context = row.record_gumbel_contexts(scheme)
            # Greedy rows and repeated contexts sample as usual, as in vLLM's own sampler.
            if row.temperature > 0 and context not in row.seen_contexts:
                watermarked.append(index)
                contexts.append(context)
        if not watermarked:
            return
        noise = torch.from_numpy(scheme.gumbel_noise(np.array(contexts, dtype=np.int64), logits.shape[1]))
        rows = torch.tensor(watermarked, device=logits.device)
        temperatures = torch.tensor([self._rows[index].temperature for index in watermarked], device=logits.device)
        scaled = logits[rows].float() / temperatures.unsqueeze(1) + noise.to(logits.device)
        chosen = scaled.argmax(dim=1)
        # Only the chosen token stays possible, whatever temperature the sampler applies next.
        logits[rows] = float("-inf")
        logits[rows, chosen] = 0.0

    def _green_masks(self, key_id: str, contexts: list[tuple[int, ...]], logits: torch.Tensor) -> list[torch.Tensor]:
        """One boolean [V] green mask per context, from the cache or computed together."""
        masks = [self._mask_cache.get((key_id, context)) for context in contexts]
        missing = [position for position, mask in enumerate(masks) if mask is None]
        if missing:
            computed = self._compute_green_rows(key_id, [contexts[position] for position in missing], logits)
            for position, mask in zip(missing, computed, strict=True):
                masks[position] = mask
                # A contiguous copy: a row view would keep its whole batch's array alive
                # after eviction, and the cache's byte bound would not hold.
                self._mask_cache.put((key_id, contexts[position]), mask.clone())
        return masks

    def _compute_green_rows(self, key_id: str, contexts: list[tuple[int, ...]], logits: torch.Tensor) -> torch.Tensor:
        """Boolean [rows, V] green masks on the logits' device."""
        scheme = self._registry.scheme(key_id)
        seeds = scheme.context_seeds(contexts)
        hashes = self._hashes(key_id, logits.shape[1], logits.device)
        if logits.device.type == "cpu":
            return torch.from_numpy(scheme.green_mask(np.array(seeds, dtype=np.uint32)[:, None], hashes))
        return scheme.green_mask(torch.tensor(seeds, dtype=torch.int64, device=logits.device).unsqueeze(1), hashes)

    def _require_key(self, key_id: str) -> None:
        if self._registry is None:
            raise RuntimeError("a watermarked request reached an engine started without a key registry")
        self._registry.get(key_id)  # raises UnknownKeyError

    def _hashes(self, key_id: str, vocabulary_size: int, device: torch.device) -> np.ndarray | torch.Tensor:
        """The key's vocabulary hashes, built once: numpy uint32 on CPU (the same mix32
        runs about 6x faster there than in int64 torch), int64 torch on accelerators."""
        cached = self._vocabulary_hashes.get((key_id, vocabulary_size))
        if cached is None:
            if device.type == "cpu":
                vocabulary = np.arange(vocabulary_size, dtype=np.uint32)
            else:
                vocabulary = torch.arange(vocabulary_size, dtype=torch.int64, device=device)
            cached = self._registry.scheme(key_id).vocabulary_hashes(vocabulary)
            self._vocabulary_hashes[(key_id, vocabulary_size)] = cached
        return cached
