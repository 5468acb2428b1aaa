"""The scheme interface (watermark/scheme.py) as every registered scheme implements it.

What the API reports about a scheme (its public parameters, green counts, sampling
limits) must not change when the code behind it moves: the expected values here are
what responses showed before the interface existed.
"""

import json
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch

from signet.keys import KeyRegistry, KeyRegistryError, prewarm_schemes
from signet.watermark import kgw
from signet.watermark.gumbel import GumbelScheme
from signet.watermark.registry import DEFAULT_SCHEME, SCHEMES
from signet.watermark.scheme import GenerationRow, SamplingProblem, WatermarkScheme

MODEL_VOCAB_SIZE = 1_000
KEYS = [
    {"key_id": "kgw", "secret": "scheme-test-secret-0001", "gamma": 0.3, "delta": 1.5, "context_width": 2},
    {"key_id": "hf", "scheme": "kgw-lefthash", "gamma": 0.5, "delta": 3.0},
    {"key_id": "vllm", "scheme": "gumbel", "key": 42, "context_width": 3},
    {"key_id": "unigram", "scheme": "unigram", "secret": "scheme-test-secret-0002", "gamma": 0.4},
    {"key_id": "selfhash", "scheme": "kgw-selfhash", "context_width": 4},
    {"key_id": "synthid", "scheme": "synthid", "keys": [11, 22, 33], "ngram_len": 3},
    {"key_id": "dual", "scheme": "gumbel-dual-key", "key": 42, "alpha": 0.2},
]


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": KEYS}))
    return KeyRegistry.load(path, MODEL_VOCAB_SIZE)


def test_schemes_build_without_numba_and_detect_without_torch(tmp_path):
    # vLLM's CPU worker builds every scheme while it starts, before numba may load
    # (randperm_kernels.py and philox_kernels.py say why). The API image has no torch:
    # the key registry and every scheme must load, build and detect without it.
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": KEYS}))
    code = (
        "import sys, signet.keys\n"
        f"registry = signet.keys.KeyRegistry.load(__import__('pathlib').Path({str(path)!r}), {MODEL_VOCAB_SIZE})\n"
        "for key_id in registry.key_ids:\n"
        "    registry.scheme(key_id)\n"
        "assert 'torch' not in sys.modules and 'numba' not in sys.modules\n"
        "for key_id in registry.key_ids:\n"
        "    assert registry.scheme(key_id).evidence(list(range(60))).num_tokens == 60\n"
        "assert 'torch' not in sys.modules and 'vllm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_key_model_names_its_scheme_once():
    assert list(SCHEMES) == [
        "kgw",
        "kgw-lefthash",
        "gumbel",
        "unigram",
        "kgw-selfhash",
        "synthid",
        "gumbel-dual-key",
    ]
    assert DEFAULT_SCHEME == "kgw"
    for name, model in SCHEMES.items():
        assert typing.get_args(model.model_fields["scheme"].annotation) == (name,)


def test_every_key_builds_a_scheme_of_its_name(registry):
    for key_id in registry.key_ids:
        scheme = registry.scheme(key_id)
        assert isinstance(scheme, WatermarkScheme) and scheme.name == registry.get(key_id).scheme


def test_public_parameters_are_what_responses_showed(registry):
    assert registry.get("kgw").public_parameters() == {"gamma": 0.3, "delta": 1.5, "context_width": 2}
    assert registry.get("hf").public_parameters() == {"gamma": 0.5, "delta": 3.0, "context_width": 1}
    assert registry.get("vllm").public_parameters() == {"context_width": 3}
    assert registry.get("unigram").public_parameters() == {"gamma": 0.4, "delta": 2.0, "context_width": 0}
    assert registry.get("selfhash").public_parameters() == {"gamma": 0.25, "delta": 2.0, "context_width": 4}
    assert registry.get("synthid").public_parameters() == {"depth": 3, "context_width": 2}
    assert registry.get("dual").public_parameters() == {"context_width": 4, "key_b_probability": 0.2}


def test_public_parameters_fit_the_watermark_block_of_responses(registry):
    from signet.api.protocol import WatermarkInfo

    for key_id in registry.key_ids:
        parameters = registry.get(key_id).public_parameters()
        assert set(parameters) <= set(WatermarkInfo.model_fields), key_id  # none silently dropped


def test_a_key_reports_its_parameters_without_building_its_scheme(tmp_path):
    # A kgw-lefthash key without vocab_size in a process that knows no model's vocabulary:
    # its scheme cannot be built, but a response can still describe the key.
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"key_id": "hf", "scheme": "kgw-lefthash"}]}))
    registry = KeyRegistry.load(path)
    with pytest.raises(KeyRegistryError):
        registry.scheme("hf")
    assert registry.get("hf").public_parameters() == {"gamma": 0.25, "delta": 2.0, "context_width": 1}
    assert registry.get("hf").sampling_problem(0.0, 0.5) is None


def test_every_green_counting_scheme_reports_its_gamma(registry):
    for key_id in registry.key_ids:
        if registry.scheme(key_id).counts_green:
            assert 0 < registry.get(key_id).public_parameters()["gamma"] < 1


def test_green_counting_schemes_score_only_zero_and_one(registry):
    token_ids = np.random.default_rng(5).integers(0, MODEL_VOCAB_SIZE, 300)
    for key_id, counts_green in (
        ("kgw", True),
        ("hf", True),
        ("vllm", False),
        ("unigram", True),
        ("selfhash", True),
        ("synthid", False),
        ("dual", False),
    ):
        scheme = registry.scheme(key_id)
        assert scheme.counts_green is counts_green
        evidence = scheme.evidence(token_ids)
        scores = evidence.scores[evidence.is_scored]
        assert bool(np.isin(scores, [0.0, 1.0]).all()) == counts_green


def test_vocabulary_bounds(registry):
    assert registry.scheme("hf").vocab_size == MODEL_VOCAB_SIZE
    assert registry.scheme("kgw").vocab_size is None and registry.scheme("vllm").vocab_size is None
    assert registry.get("hf").needs_model_vocab_size
    assert not any(registry.get(key_id).needs_model_vocab_size for key_id in ("kgw", "vllm"))


def test_only_gumbel_limits_sampling(registry):
    gumbel = registry.get("vllm")
    assert gumbel.sampling_problem(0.0, 1.0) == SamplingProblem("temperature", "needs temperature > 0")
    assert gumbel.sampling_problem(0.7, 0.9) == SamplingProblem("top_p", "samples from the whole vocabulary")
    assert gumbel.sampling_problem(0.7, 1.0) is None
    for key_id in ("kgw", "hf"):
        assert registry.get(key_id).sampling_problem(0.0, 0.5) is None


def test_prewarm_runs_for_every_scheme_and_keeps_no_lefthash_table(registry):
    # Start-up must not grow with the number of keys: prewarming loads code, draws no table.
    prewarm_schemes(registry)
    assert len(registry.scheme("hf")._cache) == 0


def test_kgw_masks_follow_the_logits_width(registry):
    # One process-wide mask cache serves every key and width: a mask made for a wide
    # vocabulary must not be handed to a narrower one.
    scheme = registry.scheme("kgw")
    for width in (MODEL_VOCAB_SIZE, 600):
        row = GenerationRow([1, 2], [3], temperature=1.0)
        logits = torch.zeros(1, width)
        scheme.apply_watermark(logits, [0], [row])
        hashes = scheme.vocabulary_hashes(np.arange(width, dtype=np.uint32))
        seeds = np.array(scheme.context_seeds([[2, 3]]), dtype=np.uint32)[:, None]
        expected = torch.from_numpy(scheme.green_mask(seeds, hashes)[0]).float() * 1.5
        assert torch.equal(logits[0], expected)


def test_the_mask_cache_bound_holds_across_keys():
    cache = kgw._GreenMaskCache(max_bytes=3 * 100)
    for key in ("a", "b"):
        for context in range(3):
            cache.put((key, context), torch.ones(100, dtype=torch.bool))
    assert cache._bytes == 300
    assert cache.get(("a", 0)) is None and cache.get(("b", 2)) is not None


def test_gumbel_keeps_its_own_state_on_the_row(registry):
    scheme: GumbelScheme = registry.scheme("vllm")
    row = GenerationRow([9], [5, 6, 7, 5, 6, 7], temperature=1.0)
    logits = torch.zeros(1, MODEL_VOCAB_SIZE)
    scheme.apply_watermark(logits, [0], [row])
    # the next context (5, 6, 7) was already sampled at position 3: not watermarked again
    assert torch.count_nonzero(logits) == 0
    assert row.scheme_state is not None and row.scheme_state.recorded == 6
