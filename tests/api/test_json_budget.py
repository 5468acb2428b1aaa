"""The JSON shape budget (api/json_budget.py): a body whose shape would stall the event loop
in ``json.loads`` gets 413 before it is parsed, and every legitimate request at the limits
still fits. In-process over ``detect_client`` (real tokenizer and keys, no engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from signet.api.json_budget import JsonBudget
from signet.settings import Settings

SETTINGS = Settings()
BUDGET = JsonBudget.from_settings(SETTINGS)
SIZE = SETTINGS.max_body_bytes - 64  # just under the body limit: only the shape can refuse it


def filled(unit: bytes) -> bytes:
    """A JSON list of ``unit`` (which ends in a comma) as long as the body limit allows."""
    return b'{"text": "x", "token_ids": [' + (unit * (SIZE // len(unit)))[:-1] + b"]}"


# The first three took 0.2-1.3 s of the event loop each to parse at this size (measured on
# a793fa9); the last two are small bodies over the other two limits.
OVER_BUDGET = {
    "values": filled(b"0,"),
    "values ": filled(b"[0],"),  # the commas come before the brackets
    "strings": filled(b'"",'),
    "arrays and objects": b'{"text": "x", "token_ids": [' + b",".join([b"[]"] * 2 * BUDGET.containers) + b"]}",
    "object keys": b'{"text": "x", "extra": {' + b",".join(b'"k%d":0' % i for i in range(2 * BUDGET.keys)) + b"}}",
}


@pytest.mark.parametrize("name", OVER_BUDGET)
def test_a_body_over_the_shape_budget_gets_413_before_it_is_parsed(detect_client, name: str):
    body = OVER_BUDGET[name]
    assert len(body) <= SETTINGS.max_body_bytes
    response = detect_client.post("/detect", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert f"JSON {name.strip()};" in detail and "the limit is" in detail, detail


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_the_budget_holds_for_a_body_streamed_in_pieces(detect_client):
    """Chunked, without Content-Length: the pieces are joined before the count, so a
    string literal or a run of separators cut across two pieces is counted once."""
    body = OVER_BUDGET["values"]
    response = detect_client.post(
        "/detect", content=_chunks(body, 65_537), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "JSON values" in response.json()["detail"], response.text[:300]


def _batch(items: list[dict]) -> bytes:
    return json.dumps({"items": items}).encode()


def _legitimate_bodies() -> dict[str, bytes]:
    items = SETTINGS.max_batch_items
    per_item = SETTINGS.max_batch_chars // items
    key_ids = [f"key-{index}" for index in range(256)]
    return {
        "a batch of max_batch_chars token ids, 256 key ids an item": _batch(
            [{"token_ids": [1000 + i for i in range(per_item)], "key_ids": key_ids}] * items
        ),
        "a batch of texts of separators": _batch([{"text": "[{,:"[i % 4] * per_item} for i in range(items)]),
        'a batch of texts of "\\': _batch([{"text": '"\\' * (per_item // 2)}] * items),
        "a chat of 256 messages of separators": json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "[{,:\"'" * 60}] * 256}
        ).encode(),
        "a text at max_text_chars of commas": json.dumps({"text": "," * SETTINGS.max_text_chars}).encode(),
    }


@pytest.mark.parametrize("name", _legitimate_bodies())
def test_legitimate_requests_at_the_limits_fit_the_budget(name: str):
    body = _legitimate_bodies()[name]
    assert len(body) <= SETTINGS.max_body_bytes, "not a request the service accepts"
    assert BUDGET.excess(body) is None


def test_a_batch_at_the_limits_is_answered_not_refused(detect_client):
    """The largest batch (every id of max_batch_chars, 256 key ids an item) passes the
    middleware and reaches the route: its items are answered one by one (unknown keys)."""
    body = _legitimate_bodies()["a batch of max_batch_chars token ids, 256 key ids an item"]
    response = detect_client.post("/detect/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert len(results) == SETTINGS.max_batch_items and all(result["status"] != 413 for result in results)


def test_escapes_do_not_hide_separators():
    """A quote escaped inside a literal does not end it; an escaped backslash before a quote
    does. Counted as json.loads reads them."""
    budget = JsonBudget(values=3, containers=10, keys=10, strings=10)
    inside = b'["a\\",\\",\\",\\",\\",\\"", 1]'  # one literal full of escaped quotes and commas
    assert budget.excess(inside) is None and len(json.loads(inside)) == 2
    outside = b'["a\\\\", 1, 2, 3]'  # the literal ends after the escaped backslash: 4 values
    assert len(json.loads(outside)) == 4
    assert budget.excess(outside) == "the request body holds 4 JSON values; the limit is 3"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_a_body_in_another_encoding_gets_415_before_it_is_counted_or_parsed(detect_client, encoding: str):
    """``json.loads`` reads UTF-16 and UTF-32 too, and in UTF-16 a character can hold a ``"``
    byte (U+2241 is ``41 22``), which hid a UTF-16 body of ``[0],...`` inside a "string":
    it passed the count and took 0.44 s to parse on the event loop."""
    text = '{"text": "\u2241", "token_ids": [' + ",".join(["[0]"] * 200_000) + "]}"
    body = text.encode(encoding)[: SETTINGS.max_body_bytes]
    response = detect_client.post("/detect", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 415, response.text[:300]
    assert "UTF-8" in response.json()["detail"]


def test_utf8_with_a_byte_order_mark_is_still_read():
    assert JsonBudget.encoding_problem(b'\xef\xbb\xbf{"text": "x"}') is None
    assert JsonBudget.encoding_problem(b'{"text": "x"}') is None
