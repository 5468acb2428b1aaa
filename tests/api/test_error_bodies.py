"""Issue 16: a bad request gets a short 422, whatever its size.

Before, 300,000 invalid token ids (a 1.2 MB body) made a 15.5 MB 422 in 4.4 s: one
error per id, all listed. Now a token id list gets one error (its first bad id), and
any 422 names its first five errors and counts the rest.
"""

import json
import time

import pytest

from signet.api.validation import MAX_REPORTED_ERRORS, describe_validation_errors
from signet.settings import MAX_TEXT_CHARS_CEILING

BAD_ID_LISTS = {
    "300,000 negative ids": [-1] * 300_000,
    "one bad id at the end": [5] * 199_999 + ["x"],
    "over the ceiling": [0] * (MAX_TEXT_CHARS_CEILING + 1),
}


@pytest.mark.parametrize("name", BAD_ID_LISTS)
def test_invalid_token_ids_get_one_short_error(detect_client, name):
    body = json.dumps({"token_ids": BAD_ID_LISTS[name]})
    started = time.perf_counter()
    response = detect_client.post("/detect", content=body, headers={"Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert len(response.content) < 1_000, response.content[:300]
    assert response.json()["field"] == "token_ids"
    # Measured 0.1-0.3 s in-process (JSON parsing included) on a busy 2-core machine;
    # before, the first took 4.4 s. 2 s fails only on a regression.
    assert elapsed < 2.0


def test_the_first_bad_id_is_named(detect_client):
    response = detect_client.post("/detect", json={"token_ids": [1, 2, -7, 4]})
    assert response.status_code == 422
    assert response.json()["detail"] == "token_ids: item 2 is '-7'; token ids are integers from 0 to 2**31 - 1"


def test_many_errors_are_counted_not_listed():
    errors = [{"type": "missing", "loc": ("body", f"field{index}"), "msg": "Field required"} for index in range(12)]
    detail, field = describe_validation_errors(errors)
    assert detail.count("Field required") == MAX_REPORTED_ERRORS
    assert detail.endswith("; and 7 more")
    assert field == "field0"


def test_a_batch_item_with_bad_ids_gets_one_short_error(detect_client):
    items = [{"text": "A first text to test, long enough."}, {"token_ids": [-1] * 50_000}]
    response = detect_client.post("/detect/batch", json={"items": items})
    assert response.status_code == 200
    error = response.json()["results"][1]["error"]
    assert error["status"] == 422 and error["field"] == "items[1].token_ids"
    assert len(error["detail"]) < 200
