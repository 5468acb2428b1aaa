"""The vLLM logits processor's batch bookkeeping, driven through vLLM's own BatchUpdate.

The processor reads ``additional_config`` (and ``model_config`` when present) from its
VllmConfig; building a full VllmConfig needs a loaded model, so a namespace stands in. Everything else is
vLLM's real classes. The engine-level behaviour is covered by tests/e2e.
"""

import json
from types import SimpleNamespace

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from signet.engine.logits_processors import WatermarkLogitsProcessor
from signet.engine.watermark_requests import KEYS_FILE_CONFIG, WATERMARK_KEY_ID_ARG
from signet.keys import KeyRegistry

VOCAB_SIZE = 1_000


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys.json"
    keys = [
        {"key_id": "a", "secret": "processor-secret-aaaa"},
        {"key_id": "b", "secret": "processor-secret-bbbb", "delta": 5.0, "context_width": 2},
        {"key_id": "hf", "scheme": "kgw-lefthash", "vocab_size": VOCAB_SIZE, "delta": 3.0},
        {"key_id": "g", "scheme": "gumbel", "key": 99, "context_width": 2},
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


@pytest.fixture
def processor(keys_file):
    config = SimpleNamespace(additional_config={KEYS_FILE_CONFIG: str(keys_file)})
    return WatermarkLogitsProcessor(config, torch.device("cpu"), is_pin_memory=False)


def _params(key_id=None, temperature=1.0):
    return SamplingParams(temperature=temperature, extra_args={WATERMARK_KEY_ID_ARG: key_id} if key_id else None)


def _update(batch_size, added=(), removed=(), moved=()):
    return BatchUpdate(batch_size=batch_size, removed=list(removed), added=list(added), moved=list(moved))


def _expected_bias(keys_file, key_id, context):
    scheme = KeyRegistry.load(keys_file).scheme(key_id)
    seed = torch.tensor(scheme.context_seeds([context]), dtype=torch.int64).unsqueeze(1)
    hashes = scheme.vocabulary_hashes(torch.arange(VOCAB_SIZE, dtype=torch.int64))
    return scheme.green_mask(seed, hashes)[0].float() * scheme.parameters.delta


def test_each_row_gets_its_own_key_and_plain_rows_are_untouched(processor, keys_file):
    outputs_a, outputs_b = [], [40]
    processor.update_state(
        _update(
            3,
            added=[
                (0, _params("a"), [1, 2, 3], outputs_a),
                (1, _params(), [4, 5], []),
                (2, _params("b"), [6, 7], outputs_b),
            ],
        )
    )
    logits = processor.apply(torch.zeros(3, VOCAB_SIZE))
    assert torch.equal(logits[0], _expected_bias(keys_file, "a", [3]))
    assert torch.count_nonzero(logits[1]) == 0
    assert torch.equal(logits[2], _expected_bias(keys_file, "b", [7, 40]))  # prompt tail + output
    assert 0.15 < (logits[0] > 0).float().mean() < 0.35

    outputs_a.append(99)  # vLLM appends to the live list after each step
    logits = processor.apply(torch.zeros(3, VOCAB_SIZE))
    assert torch.equal(logits[0], _expected_bias(keys_file, "a", [99]))


def test_moves_swaps_and_removals_follow_the_rows(processor, keys_file):
    processor.update_state(_update(2, added=[(0, _params("a"), [1], []), (1, _params(), [2], [])]))
    processor.update_state(_update(2, moved=[(0, 1, MoveDirectionality.SWAP)]))
    logits = processor.apply(torch.zeros(2, VOCAB_SIZE))
    assert torch.count_nonzero(logits[0]) == 0
    assert torch.equal(logits[1], _expected_bias(keys_file, "a", [1]))

    processor.update_state(_update(2, moved=[(1, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    logits = processor.apply(torch.zeros(2, VOCAB_SIZE))
    assert torch.equal(logits[0], _expected_bias(keys_file, "a", [1]))
    assert torch.count_nonzero(logits[1]) == 0

    processor.update_state(_update(1, removed=[0]))
    assert torch.count_nonzero(processor.apply(torch.zeros(1, VOCAB_SIZE))) == 0


def test_a_plain_request_reusing_a_slot_clears_the_watermark(processor):
    processor.update_state(_update(1, added=[(0, _params("a"), [1], [])]))
    processor.update_state(_update(1, added=[(0, _params(), [2], [])]))
    assert torch.count_nonzero(processor.apply(torch.zeros(1, VOCAB_SIZE))) == 0


def test_validate_params_rejects_a_non_string_key_id():
    with pytest.raises(ValueError):
        WatermarkLogitsProcessor.validate_params(SamplingParams(extra_args={WATERMARK_KEY_ID_ARG: 5}))
    WatermarkLogitsProcessor.validate_params(_params("a"))


def test_lefthash_rows_get_transformers_greenlists_of_their_previous_token(processor, keys_file):
    outputs = []
    processor.update_state(_update(1, added=[(0, _params("hf"), [5, 6, 7], outputs)]))
    scheme = KeyRegistry.load(keys_file).scheme("hf")
    logits = processor.apply(torch.zeros(1, VOCAB_SIZE))
    assert torch.equal(logits[0], torch.from_numpy(scheme.green_mask([7])[0]).float() * 3.0)
    outputs.append(321)
    logits = processor.apply(torch.zeros(1, VOCAB_SIZE))
    assert torch.equal(logits[0], torch.from_numpy(scheme.green_mask([321])[0]).float() * 3.0)


def test_gumbel_rows_keep_only_the_gumbel_max_token(processor, keys_file):
    scheme = KeyRegistry.load(keys_file).scheme("g")
    outputs = [11]
    processor.update_state(
        _update(
            2,
            added=[(0, _params("g", temperature=0.7), [1, 2, 3], outputs), (1, _params("g", temperature=0.0), [4], [])],
        )
    )
    raw = torch.randn(2, VOCAB_SIZE, generator=torch.Generator().manual_seed(3))
    logits = processor.apply(raw.clone())
    # prompt tokens never enter a Gumbel context (vLLM): the context is [-1, 11]
    noise = torch.from_numpy(scheme.gumbel_noise(scheme.generation_contexts([outputs]), VOCAB_SIZE)[0])
    expected = int(torch.argmax(raw[0] / 0.7 + noise))
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [expected]
    assert torch.equal(logits[1], raw[1])  # greedy: not watermarked, as in vLLM


def test_gumbel_repeated_contexts_sample_as_usual(processor):
    outputs = [5, 6, 5, 6]  # the next context (5, 6) was the context of position 2
    processor.update_state(_update(1, added=[(0, _params("g"), [1], outputs)]))
    raw = torch.randn(1, VOCAB_SIZE)
    assert torch.equal(processor.apply(raw.clone()), raw)
    outputs.append(7)  # context (6, 7) is new
    assert torch.isfinite(processor.apply(raw.clone())).sum() == 1


def test_importing_the_processor_does_not_load_numba():
    # vLLM's CPU worker scans every loaded module while it starts and crashes on
    # llvmlite's FFI objects; the engine-core process imports this module before that.
    import subprocess
    import sys

    code = "import sys, signet.engine.logits_processors; print('llvmlite' in sys.modules, 'numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
