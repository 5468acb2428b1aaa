"""POST /detect and /detect/batch in-process: real tokenizer and keys, no engine.

Watermarked inputs come from each scheme's own generator on random logits
(tests/watermarking.py); generation on the real engine is tested in tests/e2e/.
"""

import numpy as np
import pytest

from harness.services import TEST_KEYS, TEST_SECRETS
from signet.watermark.normalization import normalize
from tests.watermarking import watermarked_token_ids

RANDOM = np.random.default_rng(2026)
SCHEME_KEYS = ["main", "hf", "vllm"]  # kgw, kgw-lefthash, gumbel
TEST_KEYS_BY_ID = {key["key_id"]: key for key in TEST_KEYS["keys"]}


def _detect(client, expected_status=200, **body):
    response = client.post("/detect", json=body)
    assert response.status_code == expected_status, response.text
    for secret in TEST_SECRETS:
        assert secret not in response.text
    return response.json()


@pytest.fixture(scope="module")
def watermarked(detection_state):
    return {key_id: watermarked_token_ids(detection_state.keys.scheme(key_id), 150, RANDOM) for key_id in SCHEME_KEYS}


@pytest.mark.parametrize("key_id", SCHEME_KEYS)
def test_each_scheme_finds_its_watermark_and_not_random_tokens(detect_client, watermarked, key_id):
    result = _detect(detect_client, token_ids=watermarked[key_id], key_id=key_id)
    assert result["verdict"] == "watermarked" and result["watermarked"] is True
    assert result["p_value"] < 1e-10 and result["scheme"] == TEST_KEYS_BY_ID[key_id].get("scheme", "kgw")
    # Random tokens: flagged with probability alpha = 1e-4 (the false-failure probability).
    random_ids = RANDOM.integers(0, 49_152, 150).tolist()
    assert _detect(detect_client, token_ids=random_ids, key_id=key_id)["verdict"] == "not_watermarked"


def test_text_and_its_token_ids_give_the_same_statistics(detect_client, detection_state, human_passages):
    text = next(iter(human_passages.values()))
    token_ids = detection_state.tokenizer(text, add_special_tokens=False)["input_ids"]
    for key_id in SCHEME_KEYS:
        from_text = _detect(detect_client, text=text, key_id=key_id)
        from_ids = _detect(detect_client, token_ids=token_ids, key_id=key_id)
        for field in ("p_value", "score", "num_tokens", "num_scored_tokens"):
            assert from_text[field] == from_ids[field]
        assert from_text["verdict"] == "not_watermarked"


def test_all_keys_are_corrected_with_holm_and_the_right_key_is_named(detect_client, watermarked):
    result = _detect(detect_client, token_ids=watermarked["hf"], key_ids="all")
    assert result["key_id"] == "hf" and result["verdict"] == "watermarked"
    tested = [key for key in result["keys"] if key["verdict"] != "insufficient_evidence"]
    assert result["num_keys_tested"] == len(tested) == len(TEST_KEYS["keys"])
    # Holm multiplies the smallest p-value by m
    assert result["corrected_p_value"] == pytest.approx(min(1.0, len(tested) * result["p_value"]), rel=1e-9)
    assert [key["verdict"] for key in result["keys"][1:]] == ["not_watermarked"] * (len(tested) - 1)


def test_all_keys_leaves_out_keys_whose_tokenizer_cannot_read_the_text(detect_client, human_passages):
    result = _detect(detect_client, text=next(iter(human_passages.values())), key_ids="all")
    assert "foreign" not in {key["key_id"] for key in result["keys"]}
    assert result["num_keys_tested"] == len(TEST_KEYS["keys"]) - 1


def test_tokenizer_mismatches_are_refused(detect_client, watermarked):
    refused = _detect(detect_client, 422, text="Some text to test for a watermark.", key_id="foreign")
    assert refused["field"] == "text" and "'gpt2'" in refused["detail"] and "token_ids" in refused["detail"]
    refused = _detect(detect_client, 422, text="Some text to test.", key_id="main", tokenizer="gpt2")
    assert refused["field"] == "tokenizer" and "SmolLM2-135M-Instruct" in refused["detail"]
    # token_ids made with the key's tokenizer are fine: the service needs no tokenizer for them
    accepted = _detect(detect_client, token_ids=watermarked["main"], key_id="foreign", tokenizer="gpt2")
    assert accepted["tokenizer"] == "gpt2" and accepted["verdict"] == "not_watermarked"


def test_token_ids_outside_the_vocabulary_are_refused(detect_client):
    refused = _detect(detect_client, 422, token_ids=[5, 49_152, 7], key_id="main")
    assert refused["field"] == "token_ids" and "49152" in refused["detail"]


def test_a_text_too_short_to_reach_alpha_is_insufficient_evidence_not_a_verdict(detect_client, watermarked):
    # gamma 0.25: 6 green tokens of 6 have p = 0.25 ** 6 = 2.4e-4, above alpha 1e-4
    result = _detect(detect_client, token_ids=watermarked["main"][:7], key_id="main", alpha=1e-4)
    assert result["verdict"] == "insufficient_evidence" and result["watermarked"] is False
    assert result["num_scored_tokens"] == 6 and result["min_scored_tokens"] == 7
    assert result["corrected_p_value"] == 1.0 and result["p_value"] >= 0.25**6


def test_a_short_text_gets_a_verdict_when_its_evidence_can_reach_alpha(detect_client, watermarked):
    """No fixed floor of 25 tokens: 12 watermarked KGW tokens, or a few Gumbel ones, decide."""
    kgw = _detect(detect_client, token_ids=watermarked["main"][:13], key_id="main", alpha=1e-4)
    assert kgw["min_scored_tokens"] == 7 and kgw["num_scored_tokens"] == 12
    assert kgw["verdict"] == ("watermarked" if kgw["p_value"] < 1e-4 else "not_watermarked")
    gumbel = _detect(detect_client, token_ids=watermarked["vllm"][:12], key_id="vllm", alpha=1e-4)
    assert gumbel["min_scored_tokens"] == 1 and gumbel["verdict"] == "watermarked", gumbel
    # a Gumbel token's score is unbounded: one token can reject, so even one is tested
    assert _detect(detect_client, token_ids=watermarked["vllm"][:1], key_id="vllm")["verdict"] != (
        "insufficient_evidence"
    )


def test_window_finds_a_watermarked_passage_in_human_text(detect_client, detection_state, watermarked, human_passages):
    texts = list(human_passages.values())
    before = detection_state.tokenizer(texts[0], add_special_tokens=False)["input_ids"][:500]
    after = detection_state.tokenizer(texts[1], add_special_tokens=False)["input_ids"][:500]
    passage = watermarked["main"][:80]
    token_ids = before + passage + after
    whole_only = _detect(detect_client, token_ids=token_ids, key_id="main")
    windowed = _detect(detect_client, token_ids=token_ids, key_id="main", windows=True)
    window = windowed["window"]
    assert windowed["verdict"] == "watermarked"
    assert window["corrected_p_value"] == pytest.approx(min(1.0, window["p_value"] * window["num_windows"]))
    assert windowed["corrected_p_value"] == window["corrected_p_value"]
    # A tested window may reach half its length past the passage's edges; most of it lies inside.
    inside = min(window["token_end"], len(before) + len(passage)) - max(window["token_start"], len(before))
    assert inside >= 0.5 * (window["token_end"] - window["token_start"]) and inside >= len(passage) / 4
    assert window["char_start"] is None  # token_ids input has no characters
    assert window["p_value"] < whole_only["p_value"]


def test_details_give_each_token_its_span_and_flag(detect_client, detection_state):
    text = "Moderation teams need evidence they can show: which tokens were green, and where they are."
    result = _detect(detect_client, text=text, key_id="main", details=True)
    tokens = result["tokens"]
    assert len(tokens) == result["num_tokens"]
    for token in tokens:
        assert text[token["char_start"] : token["char_end"]] == detection_state.tokenizer.decode([token["token_id"]])
    assert tokens[0]["scored"] is False and tokens[0]["green"] is None  # no context before the first token
    assert sum(token["green"] is True for token in tokens) == result["num_green_tokens"]
    gumbel = _detect(detect_client, text=text, key_id="vllm", details=True)
    scores = [token["score"] for token in gumbel["tokens"] if token["scored"]]
    assert sum(scores) == pytest.approx(gumbel["score"]) and all(token["green"] is None for token in gumbel["tokens"])


def test_normalization_undoes_homoglyphs_and_spacing_for_keys_that_ask(detect_client, detection_state, human_passages):
    decode = detection_state.tokenizer.decode
    clean = next(iter(human_passages.values()))
    attacked = clean.replace("a", "а").replace("o", "о").replace(" ", "  ").replace("e", "e\u200b")  # Cyrillic а, о
    folded_clean = _detect(detect_client, text=clean, key_id="folded", details=True)
    folded_attacked = _detect(detect_client, text=attacked, key_id="folded", details=True)
    assert folded_attacked["score"] == folded_clean["score"]
    assert folded_attacked["num_tokens"] == folded_clean["num_tokens"]
    # spans point into the caller's (attacked) text
    for token in folded_attacked["tokens"][-20:]:
        original = attacked[token["char_start"] : token["char_end"]]
        assert normalize(original, ["homoglyphs", "whitespace"]).text.strip() == decode([token["token_id"]]).strip()
    plain_attacked = _detect(detect_client, text=attacked, key_id="main")
    assert plain_attacked["num_tokens"] > folded_clean["num_tokens"]  # without folding the attack changes the tokens


def test_batch_answers_each_item_on_its_own(detect_client, watermarked):
    items = [
        {"token_ids": watermarked["vllm"], "key_id": "vllm"},
        {"key_id": "main"},  # no input
        {"text": "Some text.", "key_id": "absent"},
        {"text": "Some text.", "key_id": "main", "tokenizer": "gpt2"},
        "not an object",
        {"text": "A short but fine text.", "key_id": "main"},
    ]
    response = detect_client.post("/detect/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [item["status"] for item in results] == [200, 422, 404, 422, 422, 200]
    assert results[0]["result"]["verdict"] == "watermarked"
    assert results[1]["error"]["field"] == "items[1]"
    assert "exactly one of text and token_ids" in results[1]["error"]["detail"]
    assert results[2]["error"]["field"] == "items[2].key_id"
    assert results[3]["error"]["field"] == "items[3].tokenizer"
    assert results[5]["result"]["verdict"] == "insufficient_evidence"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"items": []}, 422, "items"),
        ({"items": "text"}, 422, "items"),
        ({"items": [{"text": "x"}] * 65}, 413, "items"),
        ({"items": [{"text": "x" * 100_000}] * 5}, 413, "items"),
        ({}, 422, "items"),
    ],
)
def test_batch_limits_fail_the_whole_request(detect_client, body, status, field):
    response = detect_client.post("/detect/batch", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x", "token_ids": [1, 2]}, None),
        ({"token_ids": []}, "token_ids"),
        ({"token_ids": [-1]}, "token_ids"),  # one error for the list, naming the item (issue 16)
        ({"token_ids": ["1"]}, "token_ids"),
        ({"text": "x", "key_id": "main", "key_ids": ["hf"]}, None),
        ({"text": "x", "key_ids": "some"}, "key_ids"),
        ({"text": "x", "windows": "yes"}, "windows"),
    ],
)
def test_bad_detect_requests_get_a_clear_422(detect_client, body, field):
    problem = _detect(detect_client, 422, **body)
    assert problem.get("field") == field and problem["detail"]


def test_an_explicit_null_text_is_the_same_as_none(detect_client):
    """Found by schemathesis: ``"text": null`` crashed the visible-text check with a 500."""
    with_ids = detect_client.post("/detect", json={"text": None, "token_ids": [788, 41234, 282]})
    assert with_ids.status_code == 200, with_ids.text
    alone = detect_client.post("/detect", json={"text": None})
    assert alone.status_code == 422 and alone.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/detect", {"token_ids": list(range(1, 40))}), ("/detect/batch", {"items": [{"token_ids": list(range(1, 40))}]})],
)
def test_detections_run_in_their_own_pool_of_detect_threads(detection_state, monkeypatch, threads, path, body):
    """At most SIGNET_DETECT_THREADS detections run at once, each off the event loop's thread."""
    import asyncio
    import dataclasses
    import threading
    import time

    import httpx

    from signet.api.app import create_app
    from signet.api.detect import router

    state = dataclasses.replace(
        detection_state, settings=detection_state.settings.model_copy(update={"detect_threads": threads})
    )
    running, most, threads_seen, lock = 0, 0, set(), threading.Lock()

    def counted(work):
        def run(*args, **kwargs):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
                threads_seen.add(threading.get_ident())
            time.sleep(0.2)  # long enough for the other requests to arrive
            with lock:
                running -= 1
            return work(*args, **kwargs)

        return run

    monkeypatch.setattr(router, "detect", counted(router.detect))
    monkeypatch.setattr(router, "detect_batch", counted(router.detect_batch))

    async def send_eight() -> tuple[list[int], int]:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            responses = await asyncio.gather(*(client.post(path, json=body) for _ in range(8)))
        return [response.status_code for response in responses], threading.get_ident()

    statuses, loop_thread = asyncio.run(send_eight())
    assert statuses == [200] * 8
    assert most == threads and loop_thread not in threads_seen


def _one_thread_with_slow_detections(detection_state, monkeypatch) -> tuple[object, list[tuple]]:
    """An app whose detections run in one thread and take 0.3 s each; the list gets each
    detection's first token id and start as it starts, and its end once it ends."""
    import dataclasses
    import time

    from signet.api.app import create_app
    from signet.api.detect import router

    state = dataclasses.replace(
        detection_state, settings=detection_state.settings.model_copy(update={"detect_threads": 1})
    )
    detected = []
    detect = router.detect

    def slow_detect(*args, **kwargs):
        detected.append([args[1].token_ids[0], time.monotonic(), None])
        time.sleep(0.3)
        result = detect(*args, **kwargs)
        detected[-1][2] = time.monotonic()
        return result

    monkeypatch.setattr(router, "detect", slow_detect)
    return create_app(state), detected


async def _until_detecting(detected: list, count: int) -> None:
    """Until ``count`` detections have started (not a fixed sleep: CI machines are slow)."""
    import asyncio

    for _ in range(1000):
        if len(detected) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the detection did not start within 10 s")


async def _post_raw(app, body: dict, client_leaves) -> int:
    """POST /detect through the ASGI interface, the client disconnecting once ``client_leaves`` is set."""
    import json

    content = json.dumps(body).encode()
    messages = [{"type": "http.request", "body": content, "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await client_leaves.wait()
        return {"type": "http.disconnect"}

    statuses = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(content)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/detect", "raw_path": b"/detect", "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    await app(scope, receive, send)
    return statuses[0]


def test_a_detection_whose_client_left_while_it_waited_for_a_thread_never_runs(detection_state, monkeypatch):
    """One thread, held by a slow detection: a second request whose client disconnects while
    it waits is dropped (499, logged only), and its detection never runs."""
    import asyncio

    app, detected = _one_thread_with_slow_detections(detection_state, monkeypatch)

    async def both() -> tuple[int, int]:
        stays, leaves = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_post_raw(app, {"token_ids": list(range(1, 40))}, stays))
        await _until_detecting(detected, 1)  # the first holds the only thread
        second = asyncio.create_task(_post_raw(app, {"token_ids": list(range(2, 41))}, leaves))
        await asyncio.sleep(0.05)
        leaves.set()
        return await first, await second

    assert asyncio.run(both()) == (200, 499)
    assert [token for token, _, _ in detected] == [1]


def test_a_running_detection_keeps_its_thread_after_its_client_left(detection_state, monkeypatch):
    """Found by review: a cancelled request gave its place in the pool back while its thread
    went on, so clients that hung up could run any number of detections at once."""
    import asyncio

    app, detected = _one_thread_with_slow_detections(detection_state, monkeypatch)

    async def both() -> None:
        leaves, stays = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_post_raw(app, {"token_ids": list(range(1, 40))}, leaves))
        await _until_detecting(detected, 1)  # the first runs in the only thread ...
        leaves.set()  # ... when its client leaves
        await asyncio.sleep(0.05)
        second = await _post_raw(app, {"token_ids": list(range(2, 41))}, stays)
        assert second == 200
        await first

    asyncio.run(both())
    assert [token for token, _, _ in sorted(detected)] == [1, 2]  # both ran to their end ...
    (_, _, first_ended), (_, second_started, _) = sorted(detected)
    assert second_started >= first_ended  # ... one after the other, in the one thread
