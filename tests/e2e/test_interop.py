"""Our generation, the peers' own detectors: the watermarks interoperate bit for bit.

Signet generates on the real engine with a ``kgw-lefthash`` key and a ``gumbel`` key;
Hugging Face transformers' ``WatermarkDetector`` and vLLM's ``GumbelWatermarkDetector``
then score the same token ids, and must flag them with the statistics /detect reports.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

PROMPTS = [
    "Write a long story about a fox who learns to sail.",
    "Explain in detail how a steam engine works.",
    "Describe the streets of an old harbour town at dawn.",
    "Write a detailed guide to keeping bees in a city.",
]
HF_KEY = {"hashing_key": 15485863, "gamma": 0.25, "delta": 2.0}  # the "hf" test key: transformers' defaults
GUMBEL_KEY = 7355608191919  # the "vllm" test key


def _generate(client, key_id, watermark=True):
    def one(item):
        seed, prompt = item
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 200, "seed": seed, "key_id": key_id}
        response = client.post("/generate", params={"watermark": str(watermark).lower()}, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(one, enumerate(PROMPTS)))


def _detect(client, token_ids, key_id):
    response = client.post("/detect", json={"token_ids": token_ids, "key_id": key_id, "alpha": 1e-3})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def transformers_detector():
    from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

    from signet.engine.model_store import prepare_embedded_model
    from signet.settings import Settings

    config = AutoConfig.from_pretrained(prepare_embedded_model(Settings().resolved_cache_dir))
    watermarking = WatermarkingConfig(
        seeding_scheme="lefthash",
        greenlist_ratio=HF_KEY["gamma"],
        bias=HF_KEY["delta"],
        hashing_key=HF_KEY["hashing_key"],
    )
    return WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=True)


def test_transformers_detector_flags_our_lefthash_generations(client, transformers_detector):
    for generation in _generate(client, "hf"):
        token_ids = generation["token_ids"]
        assert len(token_ids) >= 100, generation
        theirs = transformers_detector(torch.tensor([token_ids]), z_threshold=4.0, return_dict=True)
        ours = _detect(client, token_ids, "hf")
        assert bool(theirs.prediction[0]) and ours["verdict"] == "watermarked"
        assert ours["num_scored_tokens"] == theirs.num_tokens_scored[0]
        assert ours["num_green_tokens"] == theirs.num_green_tokens[0]
        assert ours["z_score"] == pytest.approx(theirs.z_score[0], rel=1e-9)


def test_transformers_detector_does_not_flag_unwatermarked_generations(client, transformers_detector):
    # z > 4 without the watermark has probability about 3e-5 per text (the false-failure rate)
    for generation in _generate(client, "hf", watermark=False):
        theirs = transformers_detector(torch.tensor([generation["token_ids"]]), z_threshold=4.0, return_dict=True)
        assert not bool(theirs.prediction[0])
        assert _detect(client, generation["token_ids"], "hf")["z_score"] == pytest.approx(theirs.z_score[0], rel=1e-9)


def test_vllm_detector_flags_our_gumbel_generations(client):
    from vllm.v1.watermarking.gumbel import GumbelWatermarkDetector

    detector = GumbelWatermarkDetector(key=GUMBEL_KEY, context_width=4, p_value_threshold=1e-3)
    for generation in _generate(client, "vllm"):
        token_ids = generation["token_ids"]
        theirs = detector.detect(token_ids)
        ours = _detect(client, token_ids, "vllm")
        assert theirs.is_watermarked and ours["verdict"] == "watermarked"
        assert ours["num_scored_tokens"] == theirs.num_scored_tokens
        assert ours["score"] == pytest.approx(theirs.score, rel=1e-12)
        assert ours["p_value"] == pytest.approx(theirs.p_value, rel=1e-6, abs=1e-300)
    # the other key's detector sees nothing (p < 1e-3 by chance: probability 1e-3)
    other = GumbelWatermarkDetector(key=GUMBEL_KEY + 1, context_width=4, p_value_threshold=1e-3)
    assert not other.detect(token_ids).is_watermarked


def test_gumbel_generation_refuses_greedy_and_top_p(client):
    for extra, field in (({"temperature": 0.0}, "temperature"), ({"top_p": 0.9}, "top_p")):
        body = {"prompt": "Hello", "max_tokens": 8, "key_id": "vllm", **extra}
        response = client.post("/generate", params={"watermark": "true"}, json=body)
        assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_transformers_detector_flags_our_selfhash_generations(client):
    from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

    from harness.services import TEST_KEYS
    from signet.engine.model_store import prepare_embedded_model
    from signet.settings import Settings
    from signet.watermark.selfhash import SelfhashKey

    key = next(key for key in TEST_KEYS["keys"] if key["key_id"] == "selfhash")
    config = AutoConfig.from_pretrained(prepare_embedded_model(Settings().resolved_cache_dir))
    watermarking = WatermarkingConfig(seeding_scheme="selfhash", context_width=key["context_width"])
    detector = WatermarkDetector(config, "cpu", watermarking, ignore_repeated_ngrams=True)
    scheme = SelfhashKey.model_validate(key).build_scheme(config.vocab_size)
    for generation in _generate(client, "selfhash"):
        token_ids = generation["token_ids"]
        theirs = detector(torch.tensor([token_ids]), z_threshold=4.0, return_dict=True)
        ours = _detect(client, token_ids, "selfhash")
        assert bool(theirs.prediction[0]) and ours["verdict"] == "watermarked"
        # /detect scores each (seed, token) once, transformers each n-gram: never more than it
        assert ours["num_scored_tokens"] <= theirs.num_tokens_scored[0]
        by_ngram = scheme.evidence(token_ids, by_seed=False)  # transformers' rule, bit for bit
        assert by_ngram.num_scored_tokens == theirs.num_tokens_scored[0]
        assert by_ngram.score_sum == theirs.num_green_tokens[0]


def test_transformers_synthid_g_values_are_ours_on_our_generations(client):
    """transformers' own processor recomputes our per-token evidence from the token ids, and its
    mean g-value is far above the table's fraction of ones (its detector needs a trained model)."""
    from transformers import SynthIDTextWatermarkLogitsProcessor

    from harness.services import SYNTHID_TEST_KEYS

    processor = SynthIDTextWatermarkLogitsProcessor(
        ngram_len=5,
        keys=SYNTHID_TEST_KEYS,
        sampling_table_size=2**16,
        sampling_table_seed=0,
        context_history_size=1024,
        device="cpu",
    )
    fraction_of_ones = float(processor.sampling_table.float().mean())
    for generation in _generate(client, "synthid"):
        token_ids = generation["token_ids"]
        response = client.post("/detect", json={"token_ids": token_ids, "key_id": "synthid", "details": True})
        ours = response.json()
        assert ours["verdict"] == "watermarked" and ours["p_value"] < 1e-10, ours
        assert ours["score_mean"] == pytest.approx(30 * fraction_of_ones, rel=1e-12)
        g_values = processor.compute_g_values(torch.tensor([token_ids]))[0]  # [positions from ngram_len - 1, depth]
        mask = processor.compute_context_repetition_mask(torch.tensor([token_ids]))[0].bool()
        for token in ours["tokens"]:
            if token["scored"]:
                position = token["index"] - 4
                assert bool(mask[position]) and token["score"] == int(g_values[position].sum())
        # Under the null the unmasked mean is f (sd below 0.01 at 100 tokens x 30 layers): a
        # margin of 0.05 fails with probability below 1e-6 for watermarked text of 200 tokens.
        assert float(g_values[mask].float().mean()) > fraction_of_ones + 0.05


def test_vllm_dual_key_detector_flags_our_generations_and_its_p_value_is_smaller_than_exact(client):
    from vllm.v1.watermarking.gumbel import DualKeyGumbelWatermarkDetector

    from harness.services import TEST_KEYS

    key = next(key for key in TEST_KEYS["keys"] if key["key_id"] == "dualkey")
    detector = DualKeyGumbelWatermarkDetector(key=key["key"], context_width=4, p_value_threshold=1e-3, alpha=0.1)
    for generation in _generate(client, "dualkey"):
        token_ids = generation["token_ids"]
        theirs = detector.detect(token_ids)
        ours = _detect(client, token_ids, "dualkey")
        assert theirs.is_watermarked and ours["verdict"] == "watermarked"
        assert ours["num_scored_tokens"] == theirs.num_scored_tokens
        assert ours["score"] == pytest.approx(theirs.score, rel=1e-12)
        # vLLM moment-matches a Gamma, whose tail is too light: its p-value is below the exact one
        assert ours["p_value"] >= theirs.p_value
