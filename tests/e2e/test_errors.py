"""Every bad input gets its status code and a message naming the field; never a 500."""

import pytest

LIMIT = 100_000  # the default SIGNET_MAX_TEXT_CHARS

CASES = [
    ("/detect", {}, 422, None),  # "give exactly one of text and token_ids"
    ("/detect", {"text": ""}, 422, "text"),
    ("/detect", {"text": "   \n"}, 422, "text"),
    ("/detect", {"text": 42}, 422, "text"),
    ("/detect", {"text": ["a"]}, 422, "text"),
    ("/detect", {"text": "hello", "alpha": 0}, 422, "alpha"),
    ("/detect", {"text": "hello", "alpha": 1.5}, 422, "alpha"),
    ("/detect", {"text": "hello", "alpha": "0.1"}, 422, "alpha"),
    ("/detect", {"text": "hello", "key_id": "nope"}, 404, "key_id"),
    ("/detect", {"text": "hello", "unexpected": 1}, 422, "unexpected"),
    ("/detect", {"text": "a" * (LIMIT + 1)}, 413, "text"),
    ("/detect", {"token_ids": [1] * (LIMIT + 1)}, 413, "token_ids"),
    ("/detect", {"text": "hello", "tokenizer": "gpt2"}, 422, "tokenizer"),
    ("/generate", {}, 422, None),
    ("/generate", {"prompt": ""}, 422, None),
    ("/generate", {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, 422, None),
    ("/generate", {"messages": []}, 422, "messages"),
    ("/generate", {"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages[0].role"),
    ("/generate", {"messages": [{"role": "user"}]}, 422, "messages[0].content"),
    ("/generate", {"prompt": "hi", "max_tokens": 0}, 422, "max_tokens"),
    ("/generate", {"prompt": "hi", "max_tokens": 4097}, 422, "max_tokens"),
    ("/generate", {"prompt": "hi", "max_tokens": 2048}, 422, "max_tokens"),  # 1 + 2048 > the 2048 context
    ("/generate", {"prompt": "hi", "max_tokens": "10"}, 422, "max_tokens"),
    ("/generate", {"prompt": "hi", "temperature": -0.1}, 422, "temperature"),
    ("/generate", {"prompt": "hi", "temperature": 2.5}, 422, "temperature"),
    ("/generate", {"prompt": "hi", "top_p": 0}, 422, "top_p"),
    ("/generate", {"prompt": "hi", "seed": -1}, 422, "seed"),
    ("/generate", {"prompt": "hi", "key_id": "nope"}, 404, "key_id"),
    ("/generate", {"prompt": "a" * (LIMIT + 1)}, 413, "prompt"),
    ("/generate", {"messages": [{"role": "user", "content": "a" * (LIMIT + 1)}]}, 413, "messages"),
]


@pytest.mark.parametrize("route, body, status, field", CASES)
def test_bad_input(client, route, body, status, field):
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    assert problem.get("field") == field
    if field:
        assert field.split("[")[0] in problem["detail"]


def test_bad_query_parameter(client):
    response = client.post("/generate", params={"watermark": "maybe"}, json={"prompt": "hi"})
    assert response.status_code == 422 and response.json()["field"] == "watermark"


def test_body_that_is_not_json(client):
    response = client.post("/detect", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["detail"]


def test_oversized_body_is_refused_before_parsing(client):
    # the byte limit: 12 bytes per character of the larger of the text and batch limits, plus 64 KiB
    body = b'{"text": "' + b"a" * 6_000_000 + b'"}'
    response = client.post("/detect", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "request body" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold while streaming too
        yield b'{"text": "'
        for _ in range(120):
            yield b"a" * 50_000
        yield b'"}'

    response = client.post("/detect", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_text_at_the_limit_is_accepted(client):
    response = client.post("/detect", json={"text": "word " * (LIMIT // 5)})
    assert response.status_code == 200 and response.json()["num_tokens"] > 1000


def test_unknown_route_and_method(client):
    assert client.get("/nothing").status_code == 404
    assert client.get("/detect").status_code == 405


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "mode": "embedded", "engine": "loaded"}
