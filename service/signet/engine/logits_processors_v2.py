"""vLLM's Model Runner V2 logits processor that applies each request's watermark.

vLLM 0.32 runs Model Runner V2 wherever Triton is present (GPUs). Its processors see the
batch differently from the V1 runner's (``logits_processors.py``): a request keeps a slot
(``add_request``), the committed tokens stay on the device (``req_states.all_token_ids``),
and each step's rows come in a new order (``LogitsContext``). The watermark itself is the
scheme's, shared with the V1 processor through ``WatermarkScheme``:

* a scheme that is a function of the last few tokens (``device_context_width``: kgw, unigram)
  gets those tokens gathered on the device and transforms the logits there
  (``apply_watermark_on_device``). The step never waits for the device: the row indices and
  token positions are known on the host and go up through vLLM's staging buffers;
* any other scheme (kgw-lefthash, kgw-selfhash, gumbel, gumbel-dual-key, synthid) keeps
  per-request state or draws its green lists on the host, so its rows' new tokens are copied
  down into the same ``GenerationRow`` the V1 processor keeps, and ``apply_watermark`` runs
  as on V1. That copy (one for all such rows) waits for the device: a step with any of
  them synchronizes once. A request copies its whole sequence on its first step (and again
  after preemption), one token a step after that.

Speculative decoding is refused when the engine starts: its draft rows would need contexts
that include unverified tokens, and no scheme here is written for that.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcessor

from signet.engine.watermark_requests import check_key_id, load_registry, require_key, watermark_key_id
from signet.watermark.scheme import GenerationRow, WatermarkScheme

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext, LogitsProcRequestState


class SpeculativeDecodingError(ValueError):
    """The engine was configured with speculative decoding, which the watermark does not support."""


@dataclass
class _Slot:
    """A watermarked request in its persistent slot."""

    key_id: str
    scheme: WatermarkScheme
    row: GenerationRow  # filled from the device only for schemes without a device path
    known: int = 0  # tokens of the sequence already copied into ``row``


class WatermarkLogitsProcessorV2(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, req_states: LogitsProcRequestState) -> None:
        if getattr(vllm_config, "speculative_config", None) is not None:
            raise SpeculativeDecodingError(
                "Signet's watermark does not support speculative decoding: "
                "start the engine without a speculative config"
            )
        self._registry = load_registry(vllm_config)
        self._device = req_states.device
        self._all_token_ids = req_states.all_token_ids  # .gpu: [max_num_reqs, max_model_len]
        self._prompt_lengths = req_states.prompt_len  # .np: [max_num_reqs], on the host
        self._slots: dict[int, _Slot] = {}
        self._staging = _Staging(self._device)

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        check_key_id(sampling_params)

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        key_id = watermark_key_id(sampling_params)
        if key_id is None:
            self._slots.pop(req_idx, None)  # a previous occupant's watermark must not carry over
            return False
        require_key(self._registry, key_id)
        row = GenerationRow([], [], sampling_params.temperature)
        self._slots[req_idx] = _Slot(key_id, self._registry.scheme(key_id), row)
        return True

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        batch_slots = ctx.idx_mapping_np.tolist()
        if logits.shape[0] != len(batch_slots):  # one row per request unless drafts add rows
            raise SpeculativeDecodingError("a request has several logits rows: speculative decoding is not supported")
        by_key: dict[str, list[int]] = defaultdict(list)  # key id -> batch positions
        for position, slot in enumerate(batch_slots):
            if slot in self._slots:
                by_key[self._slots[slot].key_id].append(position)
        if not by_key:
            return logits
        # Without drafts this bound is exact: how many tokens the sampled one follows.
        lengths = ctx.seq_lens_upper_bound_np
        upload = _Upload()
        on_device, on_host = [], []  # (scheme, rows' upload index, gather, shape) / (scheme, positions)
        for positions in by_key.values():
            scheme = self._slots[batch_slots[positions[0]]].scheme
            if scheme.device_context_width is None:
                on_host.append((scheme, positions))
                continue
            for group, width in _by_width(positions, lengths, scheme.device_context_width):
                rows = np.array(group, dtype=np.int64)
                ends = lengths[rows].astype(np.int64)[:, None]
                token_positions = ends - width + np.arange(width, dtype=np.int64)
                gather = upload.gather(_slots_of(batch_slots, rows)[:, None], token_positions)
                on_device.append((scheme, upload.add(rows), gather, (len(group), width)))
        pieces = self._new_tokens([p for _, positions in on_host for p in positions], batch_slots, lengths)
        copy_down = upload.gather(*_piece_arrays(pieces)) if pieces else None
        sent = upload.send(self._staging)
        if copy_down is not None:
            self._append(pieces, self._tokens(sent, copy_down).tolist())  # the one device-to-host copy
        for scheme, positions in on_host:
            scheme.apply_watermark(logits, positions, [self._slots[batch_slots[p]].row for p in positions])
        for scheme, rows, gather, shape in on_device:
            contexts = self._tokens(sent, gather).view(shape)
            scheme.apply_watermark_on_device(logits, sent[rows], contexts)
        return logits

    def _new_tokens(self, positions: list[int], batch_slots: list[int], lengths: np.ndarray) -> list[tuple]:
        """(batch position, slot, first, end) of each host-side row's tokens not yet copied down."""
        pieces = []
        for position in positions:
            slot = batch_slots[position]
            end = int(lengths[position])
            if end > self._slots[slot].known:
                pieces.append((position, slot, self._slots[slot].known, end))
        return pieces

    def _append(self, pieces: list[tuple], tokens: list[int]) -> None:
        """Each piece's tokens onto its ``GenerationRow``: prompt, then output."""
        offset = 0
        for _, slot_index, start, end in pieces:
            slot = self._slots[slot_index]
            prompt_length = int(self._prompt_lengths.np[slot_index])
            for token_position, token in zip(range(start, end), tokens[offset : offset + end - start], strict=True):
                (slot.row.prompt_ids if token_position < prompt_length else slot.row.output_ids).append(token)
            offset += end - start
            slot.known = end

    def _tokens(self, sent: list[torch.Tensor], gather: tuple[int, int]) -> torch.Tensor:
        """int64 tokens at the gathered (slot, position) pairs, read on the device.

        Every position before the sampled one is committed in ``all_token_ids`` when
        ``apply`` runs: a prefill's tokens are staged there before the forward pass, and a
        decode's last sampled token is written there (``post_update``) on the same stream
        before the next step, which is also what vLLM's own thinking-budget stage reads.
        """
        slots, positions = (sent[index] for index in gather)
        return self._all_token_ids.gpu[slots, positions].long()


def _by_width(positions: list[int], lengths: np.ndarray, width: int) -> list[tuple[list[int], int]]:
    """Rows by the context they have: the full width, bar sequences still shorter than it."""
    groups: dict[int, list[int]] = defaultdict(list)
    for position in positions:
        groups[min(width, int(lengths[position]))].append(position)
    return [(group, group_width) for group_width, group in groups.items()]


def _slots_of(batch_slots: list[int], rows: np.ndarray) -> np.ndarray:
    return np.array([batch_slots[row] for row in rows], dtype=np.int64)


def _piece_arrays(pieces: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """The (slot, position) of every token the pieces cover."""
    return (
        np.concatenate([np.full(end - start, slot, dtype=np.int64) for _, slot, start, end in pieces]),
        np.concatenate([np.arange(start, end, dtype=np.int64) for _, _, start, end in pieces]),
    )


class _Upload:
    """Every index array one step needs on the device, sent in one copy."""

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []

    def add(self, array: np.ndarray) -> int:
        """The array's place in ``send()``'s list."""
        self._arrays.append(np.ascontiguousarray(array, dtype=np.int64).reshape(-1))
        return len(self._arrays) - 1

    def gather(self, *arrays: np.ndarray) -> tuple[int, ...]:
        """Arrays that broadcast together (slots, positions), flattened alike."""
        return tuple(self.add(array) for array in np.broadcast_arrays(*arrays))

    def send(self, staging: _Staging) -> list[torch.Tensor]:
        if not self._arrays:
            return []
        flat = staging.to_device(np.concatenate(self._arrays))
        return list(torch.split(flat, [len(array) for array in self._arrays]))


class _Staging:
    """A host array to the device without waiting for it: on accelerators through vLLM's
    pinned, round-robin ``UvaBufferPool`` (a pageable copy would synchronize the stream, and
    one copy per step keeps the pool's round robin deeper than the steps in flight); on the
    CPU the array itself."""

    INITIAL_SIZE = 4096  # int64s; the pool grows when a step needs more

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._pool = None

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        if self._device.type == "cpu":
            return torch.from_numpy(array)
        if self._pool is None:
            from vllm.v1.worker.gpu.buffer_utils import UvaBufferPool

            self._pool = UvaBufferPool(self.INITIAL_SIZE, torch.int64)
        return self._pool.copy_to_gpu(array)
