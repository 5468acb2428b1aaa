"""Every scheme round-trips: generated on the real engine, found by one /detect over all keys.

A moderation pipeline does not know which watermark a text may carry: it sends
``key_ids: "all"``, and the key that generated the text must come out on top, with
Holm's correction over the seven keys and more of the test registry.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.services import TEST_KEYS

# One key per scheme, as harness.services.TEST_KEYS names them.
SCHEME_KEYS = {
    "kgw": "main",
    "kgw-lefthash": "hf",
    "gumbel": "vllm",
    "unigram": "unigram",
    "kgw-selfhash": "selfhash",
    "synthid": "synthid",
    "gumbel-dual-key": "dualkey",
}
PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how bread is made, from growing wheat to baking the loaf.",
]
TOKENS = 200
REDRAWS = 3


def _generate(client, key_id: str, seed: int, prompt: str) -> dict:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": TOKENS, "seed": seed, "key_id": key_id}
    response = client.post("/generate", params={"watermark": "true"}, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def generations(client) -> dict[str, list[dict]]:
    """Two generations per scheme, all requested at once: the engine batches the schemes together."""
    jobs = [(key_id, seed, prompt) for key_id in SCHEME_KEYS.values() for seed, prompt in enumerate(PROMPTS)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: _generate(client, *job), jobs))
    # The model may end an answer early with EOS (CI: a 13-token dual-key answer), and which
    # tokens a seed draws depends on the batch: such an answer is drawn again with another seed.
    for index, (key_id, seed, prompt) in enumerate(jobs):
        for redraw in range(1, REDRAWS + 1):
            if results[index]["finish_reason"] == "length":
                break
            results[index] = _generate(client, key_id, seed + redraw * len(PROMPTS), prompt)
    by_key: dict[str, list[dict]] = {}
    for (key_id, _, _), result in zip(jobs, results, strict=True):
        by_key.setdefault(key_id, []).append(result)
    return by_key


def test_the_test_registry_has_one_key_per_scheme():
    schemes = {key["key_id"]: key.get("scheme", "kgw") for key in TEST_KEYS["keys"]}
    assert {schemes[key_id] for key_id in SCHEME_KEYS.values()} == set(SCHEME_KEYS)
    assert all(schemes[key_id] == scheme for scheme, key_id in SCHEME_KEYS.items())


@pytest.mark.parametrize("scheme", SCHEME_KEYS)
def test_all_keys_find_the_generating_key(client, generations, scheme):
    """bench/detection_quality.py found all 100 of 100 completions per scheme at 200 tokens at alpha
    1e-3, and the slowest scheme (kgw-selfhash) reaches p < 1e-3 at a median of 45 tokens: at 200
    the corrected p-value is far below 1e-4 (not quantified exactly: the false-failure chance is
    estimated below 1% per text). An answer the model ended early is drawn again (the fixture)."""
    key_id = SCHEME_KEYS[scheme]
    for generation in generations[key_id]:
        assert generation["watermark"]["scheme"] == scheme and generation["watermark"]["key_id"] == key_id
        assert len(generation["token_ids"]) >= 40, generation
        result = client.post("/detect", json={"text": generation["text"], "key_ids": "all"}).json()
        assert result["verdict"] == "watermarked" and result["key_id"] == key_id, result
        # every key but "foreign", whose gpt2 tokenizer this service does not load for text
        assert result["corrected_p_value"] < 1e-4 and result["num_keys_tested"] == len(TEST_KEYS["keys"]) - 1
        # from the token ids, one key: the same key with at least as much evidence
        own = client.post("/detect", json={"token_ids": generation["token_ids"], "key_id": key_id}).json()
        assert own["verdict"] == "watermarked" and own["scheme"] == scheme, own


@pytest.mark.parametrize("scheme", SCHEME_KEYS)
def test_other_schemes_keys_do_not_flag_a_generation(client, generations, scheme):
    """Each other key's corrected p-value is >= alpha unless chance: with 6 other tested keys
    per text and 2 texts, the false-failure probability is below 12 * 1e-4."""
    key_id = SCHEME_KEYS[scheme]
    generation = generations[key_id][0]
    result = client.post("/detect", json={"text": generation["text"], "key_ids": "all", "alpha": 1e-4}).json()
    flagged = [entry["key_id"] for entry in result["keys"] if entry["verdict"] == "watermarked"]
    assert flagged == [key_id], result
