"""The Model Runner V2 watermark processor gives the V1 processor's logits, step by step.

Both processors are driven through vLLM's own interface types (``LogitsProcRequestState``,
``LogitsContext``, ``SamplingParams``, ``BatchUpdate``) with CPU tensors. Stand-ins, because
the real ones need CUDA: the model runner's buffers (``StagedWriteTensor`` and
``UvaBackedTensor`` pin memory and write through Triton kernels) are namespaces holding the
same ``.gpu`` / ``.np`` arrays, and a namespace stands in for the VllmConfig (building one
needs a loaded model). This machine's vLLM cannot run Model Runner V2 itself ("Model Runner
V2 requires Triton"); scripts/gpu_check.py runs the processor on CUDA.
"""

import dataclasses
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate
from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext, LogitsProcRequestState

from signet.engine.logits_processors import WatermarkLogitsProcessor
from signet.engine.logits_processors_v2 import SpeculativeDecodingError, WatermarkLogitsProcessorV2
from signet.engine.watermark_requests import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG
from signet.keys import UnknownKeyError
from signet.watermark import gumbel_dual_key

VOCAB_SIZE = 1_000
MAX_REQUESTS = 8
MAX_LENGTH = 96
KEYS = [
    {"key_id": "kgw", "secret": "v2-processor-secret-0001", "delta": 2.5},
    {"key_id": "kgw3", "secret": "v2-processor-secret-0002", "context_width": 3, "gamma": 0.4},
    {"key_id": "unigram", "scheme": "unigram", "secret": "v2-processor-secret-0003", "gamma": 0.3},
    {"key_id": "hf", "scheme": "kgw-lefthash", "delta": 3.0},
    {"key_id": "selfhash", "scheme": "kgw-selfhash", "context_width": 4},
    {"key_id": "gumbel", "scheme": "gumbel", "key": 42, "context_width": 2},
    {"key_id": "dual", "scheme": "gumbel-dual-key", "key": 7, "alpha": 0.3},
    {"key_id": "synthid", "scheme": "synthid", "keys": [11, 22, 33], "ngram_len": 3},
]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": KEYS}))
    return SimpleNamespace(
        additional_config={KEYS_FILE_CONFIG: str(path)},
        model_config=SimpleNamespace(get_vocab_size=lambda: VOCAB_SIZE),
        speculative_config=None,
    )


class Runner:
    """The model runner's side of both interfaces: slots, committed tokens, and each step's
    batch in a new order for V2 (V1 keeps a request at its persistent index, here its slot)."""

    def __init__(self, config) -> None:
        self.tokens = torch.zeros(MAX_REQUESTS, MAX_LENGTH, dtype=torch.int32)
        self.prompt_lengths = np.zeros(MAX_REQUESTS, dtype=np.int32)
        self.state = LogitsProcRequestState(
            device=torch.device("cpu"),
            max_num_reqs=MAX_REQUESTS,
            vocab_size=VOCAB_SIZE,
            all_token_ids=SimpleNamespace(gpu=self.tokens),
            prompt_len=SimpleNamespace(np=self.prompt_lengths),
            prefill_len=SimpleNamespace(np=np.zeros(MAX_REQUESTS, dtype=np.int32)),
            total_len=SimpleNamespace(np=np.zeros(MAX_REQUESTS, dtype=np.int32)),
        )
        self.v1 = WatermarkLogitsProcessor(config, torch.device("cpu"), is_pin_memory=False)
        self.v2 = WatermarkLogitsProcessorV2(config, self.state)
        self.sequences: dict[int, tuple[list[int], list[int]]] = {}  # slot -> (prompt, live output)

    def add(self, slot: int, key_id: str | None, prompt: list[int], output: list[int] = (), temperature=0.8) -> None:
        """A request enters ``slot``; a preempted one comes back with its output so far."""
        params = SamplingParams(temperature=temperature, extra_args={WATERMARK_KEY_ID_ARG: key_id} if key_id else None)
        sequence = (list(prompt), list(output))
        self.sequences[slot] = sequence
        self.v1.update_state(BatchUpdate(MAX_REQUESTS, removed=[], added=[(slot, params, *sequence)], moved=[]))
        self.prompt_lengths[slot] = len(prompt)
        whole = sequence[0] + sequence[1]
        self.tokens[slot, : len(whole)] = torch.tensor(whole, dtype=torch.int32)
        assert self.v2.add_request(slot, params) == (key_id is not None)

    def remove(self, slot: int) -> None:
        del self.sequences[slot]
        self.v1.update_state(BatchUpdate(MAX_REQUESTS, removed=[slot], added=[], moved=[]))

    def step(self, generator: torch.Generator, order: list[int]) -> dict[int, tuple[torch.Tensor, ...]]:
        """One decode step: the same raw logits through both. Returns each request's raw
        logits and the two results, then appends the token sampled from them."""
        raw = torch.randn(MAX_REQUESTS, VOCAB_SIZE, generator=generator)
        v1 = self.v1.apply(raw.clone())
        lengths = np.array([sum(map(len, self.sequences[slot])) for slot in order])
        context = LogitsContext(
            expanded_idx_mapping=torch.tensor(order),
            idx_mapping=torch.tensor(order),
            idx_mapping_np=np.array(order, dtype=np.int32),
            expanded_local_pos=torch.zeros(len(order), dtype=torch.int32),
            input_ids=torch.tensor(
                [self.tokens[slot, length - 1] for slot, length in zip(order, lengths, strict=True)]
            ),
            pos=torch.tensor(lengths - 1),
            seq_lens_upper_bound_np=lengths.astype(np.int32),
        )
        v2 = self.v2.apply(raw[order].clone(), context)
        results = {slot: (raw[slot], v1[slot], v2[position]) for position, slot in enumerate(order)}
        noise = torch.rand(MAX_REQUESTS, VOCAB_SIZE, generator=generator)
        for slot, (_, watermarked, _) in results.items():
            token = int(torch.argmax(watermarked + noise[slot]))
            self.tokens[slot, sum(map(len, self.sequences[slot]))] = token
            self.sequences[slot][1].append(token)
        return results


@pytest.fixture
def runner(config, monkeypatch):
    # gumbel-dual-key routes each token with a generator seeded from OS entropy; the same
    # seed for every request lets both processors draw the same routes.
    seeded = dataclasses.make_dataclass(
        "SeededRoutes",
        [("routes", np.random.Generator, dataclasses.field(default_factory=lambda: np.random.default_rng(5)))],
        bases=(gumbel_dual_key.RoutedContexts,),
    )
    monkeypatch.setattr(gumbel_dual_key, "RoutedContexts", seeded)
    return Runner(config)


def test_every_scheme_gets_the_v1_logits_through_reordering_recycling_and_preemption(runner):
    rng = random.Random(1)
    generator = torch.Generator().manual_seed(2)
    key_ids = [key["key_id"] for key in KEYS]
    prompts = {key_id: [rng.randrange(VOCAB_SIZE) for _ in range(rng.randint(1, 6))] for key_id in key_ids}
    waiting = [*key_ids, None, "kgw3"]  # a plain request, and kgw3 again with a 1-token prompt
    prompts[None] = [5, 6]
    for slot in range(MAX_REQUESTS):
        key_id = waiting.pop(0)
        runner.add(slot, key_id, prompts[key_id])
    changed = {key_id: 0 for key_id in key_ids}  # steps where the watermark changed a request's logits
    for step in range(40):
        order = list(runner.sequences)
        rng.shuffle(order)
        for slot, (raw, v1, v2) in runner.step(generator, order).items():
            assert torch.equal(v1, v2), f"step {step}, slot {slot}"
            if not torch.equal(v1, raw):
                changed[runner.v1._rows[slot].key_id] += 1
        if step == 10:  # the request in slot 0 finishes; the waiting ones take slots
            runner.remove(0)
            runner.add(0, waiting.pop(0), prompts[None])
        if step == 15:
            runner.remove(1)
            runner.add(1, waiting.pop(0), [9])
        if step == 20:  # preempted, then back in another slot with its output so far
            prompt, output = runner.sequences[5]
            runner.remove(5)
            runner.add(5, None, [1, 2])  # a plain request reuses the slot meanwhile
            runner.step(generator, list(runner.sequences))
            runner.remove(5)
            runner.add(5, "gumbel", prompt, output)
    assert all(count >= 5 for count in changed.values()), changed


def test_kgw_and_unigram_rows_change_without_python_reading_a_tensor(runner, monkeypatch):
    """A Python-level read (tolist, item, int(), bool()) would wait for a GPU; a sync inside a
    torch op (boolean-mask indexing, nonzero) cannot be seen on the CPU: scripts/gpu_check.py
    runs these steps with CUDA's sync debug mode raising."""
    runner.add(0, "kgw", [3, 4])
    runner.add(1, "unigram", [8])
    runner.add(2, "kgw3", [1])  # shorter than its context: the V1 context is the one token
    runner.add(3, None, [2, 2])

    def read_back(*args, **kwargs):
        raise AssertionError("the device path read a tensor back into Python")

    for name in ("tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    generator = torch.Generator().manual_seed(4)
    raw = torch.randn(4, VOCAB_SIZE, generator=generator)
    lengths = np.array([2, 1, 1, 2], dtype=np.int32)
    order = [0, 1, 2, 3]
    context = LogitsContext(
        expanded_idx_mapping=torch.arange(4),
        idx_mapping=torch.arange(4),
        idx_mapping_np=np.arange(4, dtype=np.int32),
        expanded_local_pos=torch.zeros(4, dtype=torch.int32),
        input_ids=torch.tensor([4, 8, 1, 2]),
        pos=torch.from_numpy(lengths - 1),
        seq_lens_upper_bound_np=lengths,
    )
    watermarked = runner.v2.apply(raw.clone(), context)
    monkeypatch.undo()
    v1 = runner.v1.apply(raw.clone())
    for row in order:
        assert torch.equal(watermarked[row], v1[row])
    changed = [int(torch.count_nonzero(watermarked[row] != raw[row])) for row in order]
    assert 0.15 * VOCAB_SIZE < changed[0] < 0.35 * VOCAB_SIZE  # gamma 0.25
    assert 0.2 * VOCAB_SIZE < changed[1] < 0.4 * VOCAB_SIZE  # gamma 0.3
    assert changed[3] == 0  # the plain request


def test_a_plain_request_in_a_watermarked_slot_is_left_alone(runner):
    runner.add(0, "kgw", [3, 4])
    runner.add(0, None, [3, 4])
    raw, v1, v2 = runner.step(torch.Generator().manual_seed(0), [0])[0]
    assert torch.equal(v1, raw)
    assert torch.equal(v2, raw)


def test_unknown_keys_and_non_string_key_ids_are_refused(runner):
    with pytest.raises(UnknownKeyError):
        runner.v2.add_request(0, SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: "nope"}))
    with pytest.raises(ValueError, match="must be a string"):
        WatermarkLogitsProcessorV2.validate_params(SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: 5}))


def test_speculative_decoding_is_refused(config, runner):
    speculative = SimpleNamespace(**{**vars(config), "speculative_config": object()})
    with pytest.raises(SpeculativeDecodingError, match="speculative decoding"):
        WatermarkLogitsProcessorV2(speculative, runner.state)
    runner.add(0, "kgw", [3, 4])
    context = LogitsContext(
        expanded_idx_mapping=torch.tensor([0, 0]),
        idx_mapping=torch.tensor([0]),
        idx_mapping_np=np.array([0], dtype=np.int32),
        expanded_local_pos=torch.tensor([0, 1]),
        input_ids=torch.tensor([4, 9]),
        pos=torch.tensor([1, 2]),
        seq_lens_upper_bound_np=np.array([3], dtype=np.int32),
    )
    with pytest.raises(SpeculativeDecodingError):
        runner.v2.apply(torch.zeros(2, VOCAB_SIZE), context)
