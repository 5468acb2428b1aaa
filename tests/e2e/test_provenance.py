"""The generation registry end to end, on the real engine and the real embedding model:
what /generate, a stream and /v1 generate is recorded under its generation_id, /detect
with provenance finds a rewording of it, and DELETE erases it for good.

The session server runs in development mode with a registry of its own
(harness.services.keys_environment). Recording is asynchronous, so each test waits for
the record to appear (it takes well under a second here; the wait allows 30 s).
"""

from __future__ import annotations

import json
import re
import time

import pytest

PROMPT = "Write a short paragraph about why people keep houseplants."
ALPHA = 1e-3


def _generate(client, **extra) -> dict:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 120, "seed": 11, **extra}
    response = client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _matches(client, text: str) -> list[dict]:
    response = client.post("/detect", json={"text": text, "provenance": True, "alpha": ALPHA})
    assert response.status_code == 200, response.text
    return response.json()["provenance"]["matches"]


def _wait_until_recorded(client, generation_id: str, text: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [match for match in _matches(client, text) if match["generation_id"] == generation_id]
        if found:
            return found[0]
        time.sleep(0.2)
    pytest.fail(f"{generation_id} was not recorded within 30 s")


def _reordered(text: str) -> str:
    """The same sentences, last first: a rewording the watermark's n-grams partly survive,
    and that any meaning-based fingerprint must."""
    sentences = [sentence for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence]
    return " ".join(reversed(sentences)) if len(sentences) > 1 else text.upper()


@pytest.fixture(scope="module")
def generation(client) -> dict:
    return _generate(client)


def test_a_generation_is_recorded_and_its_rewording_found(client, generation):
    assert re.fullmatch(r"gen-[0-9a-f]{32}", generation["generation_id"])
    _wait_until_recorded(client, generation["generation_id"], generation["text"])
    body = client.post(
        "/detect", json={"text": _reordered(generation["text"]), "provenance": True, "alpha": ALPHA}
    ).json()
    best = body["provenance"]["matches"][0]
    assert best["generation_id"] == generation["generation_id"]
    assert best["p_value"] < ALPHA and best["key_id"] == "main" and best["text"] is None
    # the same words in another order: its rare words were recorded (the session server keeps
    # them), and match whole; they are reported, and the verdict is the watermark's and meaning's
    assert best["rare_word_similarity"] > 0.95 and best["rare_word_p_value"] < ALPHA
    assert body["combined"]["verdict"] == "generated_here" and body["combined"]["tests"] == ["watermark", "meaning"]


def test_unwatermarked_generations_are_recorded_too(client):
    plain = client.post(
        "/generate",
        params={"watermark": "false"},
        json={"prompt": "The history of the bicycle began", "max_tokens": 80, "seed": 3},
    ).json()
    match = _wait_until_recorded(client, plain["generation_id"], plain["text"])
    assert match["key_id"] is None


def test_streams_and_openai_routes_carry_and_record_their_ids(client):
    with client.stream(
        "POST", "/generate", json={"prompt": "Tell me about owls.", "max_tokens": 60, "stream": True}
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    last = events[-1]
    assert all("generation_id" not in event for event in events[:-1])
    text = "".join(event["text"] for event in events)
    _wait_until_recorded(client, last["generation_id"], text)

    model = client.get("/v1/models").json()["data"][0]["id"]
    chat = client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Name three rivers."}], "max_tokens": 60},
    ).json()
    _wait_until_recorded(client, chat["signet"]["generation_id"], chat["choices"][0]["message"]["content"])


def test_an_erased_generation_is_gone(client):
    generation = _generate(client, seed=29)
    generation_id = generation["generation_id"]
    _wait_until_recorded(client, generation_id, generation["text"])
    assert client.delete(f"/generations/{generation_id}").status_code == 204
    assert generation_id not in [match["generation_id"] for match in _matches(client, generation["text"])]
    assert client.delete(f"/generations/{generation_id}").status_code == 404


def test_a_generation_erased_before_it_is_recorded_never_appears(client):
    """DELETE right after the response: the record is still queued (or being written) and
    is dropped or erased, never left behind."""
    generation = _generate(client, seed=41)
    assert client.delete(f"/generations/{generation['generation_id']}").status_code == 204
    time.sleep(2)  # longer than recording takes here
    assert generation["generation_id"] not in [match["generation_id"] for match in _matches(client, generation["text"])]
