"""Generate on the real engine, detect over HTTP: watermarked text is found, other text is not."""

from concurrent.futures import ThreadPoolExecutor

import pytest

PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how bread is made, from growing wheat to baking the loaf.",
    "Describe a day in the life of a city bus driver, hour by hour.",
]


def _generate(client, prompt, watermark, seed, **extra):
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 400, "seed": seed, **extra}
    response = client.post("/generate", params={"watermark": str(watermark).lower()}, json=body)
    assert response.status_code == 200, response.text
    return response.json()


# Redraws of an answer the model ended early. The tests need long texts (detection's power
# grows with length), but the model may end an answer with EOS, and which tokens it samples
# depends on how the engine batched the requests: a seed that gave 400 tokens in one run gave
# 64 in another (CI, "bread", watermarked). Such an answer is drawn again with another seed.
REDRAWS = 3


def _generate_all(client, watermark, **extra):
    with ThreadPoolExecutor(len(PROMPTS)) as pool:  # concurrent: the engine batches them
        generations = list(
            pool.map(lambda item: _generate(client, item[1], watermark, item[0], **extra), enumerate(PROMPTS))
        )
    for index, prompt in enumerate(PROMPTS):
        for redraw in range(1, REDRAWS + 1):
            if generations[index]["finish_reason"] == "length":
                break
            generations[index] = _generate(client, prompt, watermark, index + redraw * len(PROMPTS), **extra)
    return generations


@pytest.fixture(scope="module")
def watermarked(client):
    return _generate_all(client, watermark=True)


@pytest.fixture(scope="module")
def plain(client):
    return _generate_all(client, watermark=False)


def test_watermarked_generations_are_detected(client, watermarked):
    for generation in watermarked:
        assert generation["usage"]["completion_tokens"] >= 200, generation
        assert generation["watermark"] == {
            "enabled": True,
            "scheme": "kgw",
            "key_id": "main",
            "gamma": 0.25,
            "delta": 2.0,
            "context_width": 1,
            "key_b_probability": None,
            "depth": None,
        }
        result = client.post("/detect", json={"text": generation["text"]}).json()
        assert result["p_value"] < 1e-6, result
        assert result["watermarked"] is True and result["key_id"] == "main"
        assert result["z_score"] > 4 and result["green_fraction"] > 0.25


def test_unwatermarked_generations_are_not_flagged(client, plain):
    # Under H0 each verdict is a false positive with probability <= alpha = 1e-4:
    # this test fails spuriously with probability <= 3e-4.
    for generation in plain:
        assert generation["watermark"] == {
            "enabled": False,
            "scheme": None,
            "key_id": None,
            "gamma": None,
            "delta": None,
            "context_width": None,
            "key_b_probability": None,
            "depth": None,
        }
        assert generation["usage"]["completion_tokens"] >= 100
        result = client.post("/detect", json={"text": generation["text"]}).json()
        assert result["watermarked"] is False, result


def test_human_passages_are_not_flagged(client, human_passages):
    # 9 passages at alpha = 1e-4: spurious failure probability <= 9e-4.
    assert len(human_passages) >= 8
    for name, text in human_passages.items():
        assert len(text.split()) >= 350, name
        result = client.post("/detect", json={"text": text}).json()
        assert result["num_scored_tokens"] > 250, name
        assert result["watermarked"] is False, (name, result)
        assert result["p_value"] > 1e-4


def test_a_second_key_with_other_parameters_round_trips(client):
    generation = _generate(client, PROMPTS[0], True, seed=11, key_id="wide")
    assert generation["watermark"]["key_id"] == "wide" and generation["watermark"]["context_width"] == 2
    own = client.post("/detect", json={"text": generation["text"], "key_id": "wide"}).json()
    assert own["watermarked"] is True and own["p_value"] < 1e-6, own
    # The default key never saw this text: flagged with probability <= 1e-4.
    other = client.post("/detect", json={"text": generation["text"]}).json()
    assert other["watermarked"] is False and other["key_id"] == "main"


def test_alpha_sets_the_verdict(client, watermarked):
    text = watermarked[0]["text"]
    p_value = client.post("/detect", json={"text": text}).json()["p_value"]
    assert client.post("/detect", json={"text": text, "alpha": p_value}).json()["watermarked"] is False
    assert client.post("/detect", json={"text": text, "alpha": min(p_value * 10, 0.5)}).json()["watermarked"] is True


def test_raw_prompt_and_seed_reproduce(client):
    body = {"prompt": "The history of the printing press begins", "max_tokens": 40, "seed": 5}
    first = client.post("/generate", json=body).json()
    second = client.post("/generate", json=body).json()
    assert first["text"] == second["text"] and first["usage"]["prompt_tokens"] > 3


def test_secrets_never_leave_the_process(client, signet_server, watermarked):
    from harness.services import TEST_SECRETS

    responses = [
        client.post("/generate", json={"prompt": "Say hello", "max_tokens": 5}).text,
        client.post("/detect", json={"text": watermarked[0]["text"]}).text,
        client.post("/detect", json={"text": "x", "key_id": "missing"}).text,
        client.get("/openapi.json").text,
    ]
    for secret in TEST_SECRETS:
        assert all(secret not in body for body in responses)
        assert secret not in signet_server.log()
