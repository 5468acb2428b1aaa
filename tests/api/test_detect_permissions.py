"""/detect is no green-list oracle: per-token detail and raw token ids are permissions a tenant
must be granted, and a tenant without per-token detail learns nothing from a text too short to
test. In-process, real tokenizer and keys, no engine.

The attack these close: one /detect of ``token_ids`` ``[c, t1, c, t2, ...]`` with
``details: true`` returned every token's green flag, the whole green list of context ``c``.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from fastapi.testclient import TestClient

from signet.api.app import create_app
from signet.cache.detection import MemoryDetectionCache
from signet.tenants import TenantRegistry, api_key_digest

PLAIN_KEY = "sk-signet-test-plain-6f1d2c0b7a"  # no grants: text in, verdicts and counts out
IDS_KEY = "sk-signet-test-ids-91c3e5a7d2"  # may send token ids, may not see token details
FORENSICS_KEY = "sk-signet-test-forensics-2b8e0f4c61"  # both
TENANTS = {
    "tenants": [
        {"tenant": "plain", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(PLAIN_KEY), "name": "bot"}]},
        {
            "tenant": "pipeline",
            "key_ids": "*",
            "may_send_token_ids": True,
            "api_keys": [{"sha256": api_key_digest(IDS_KEY), "name": "bot"}],
        },
        {
            "tenant": "forensics",
            "key_ids": "*",
            "may_see_token_details": True,
            "may_send_token_ids": True,
            "api_keys": [{"sha256": api_key_digest(FORENSICS_KEY), "name": "analyst"}],
        },
    ]
}
CONTEXT = 506  # any token id: the attack's fixed context
ORACLE_IDS = [token for candidate in range(1000, 1100) for token in (CONTEXT, candidate)]
SHORT_TEXT = "The quick brown fox."  # 4 scored tokens: a KGW key (gamma 0.25) needs 7 to reach alpha 1e-4
KGW_KEYS = ["main", "wide", "hf", "folded"]  # a Gumbel key tests even one token: its scores are unbounded
STATISTICS = ("score", "num_green_tokens", "green_fraction", "z_score")


@pytest.fixture(scope="module")
def tenants(detection_state, tmp_path_factory) -> TenantRegistry:
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    return TenantRegistry.load(path, detection_state.keys.key_ids)


@pytest.fixture(scope="module")
def client(detection_state, tenants):
    # a cache, so that the cached path is checked too: it must not hand out what the caller may not see
    cache = MemoryDetectionCache(1000, 3600)
    state = dataclasses.replace(detection_state, tenants=tenants, detection_cache=cache, detect_budget=None)
    with TestClient(create_app(state)) as session:
        yield session


def _post(client, key: str | None, path: str = "/detect", **body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, json=body, headers=headers)


def _forbidden(response, field: str) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Forbidden" and problem["field"] == field
    return problem["detail"]


def test_token_ids_need_the_permission(client):
    detail = _forbidden(_post(client, PLAIN_KEY, token_ids=ORACLE_IDS), "token_ids")
    assert detail == "tenant 'plain' may not send token_ids (may_send_token_ids is not granted); send text"
    response = _post(client, IDS_KEY, token_ids=ORACLE_IDS)
    assert response.status_code == 200, response.text
    assert response.json()["num_scored_tokens"] > 100


def test_token_details_need_the_permission(client):
    for key, tenant in ((PLAIN_KEY, "plain"), (IDS_KEY, "pipeline")):
        detail = _forbidden(_post(client, key, text=SHORT_TEXT, details=True), "details")
        assert detail == f"tenant {tenant!r} may not see per-token details (may_see_token_details is not granted)"
    # the oracle request itself: refused on both counts, token_ids first
    _forbidden(_post(client, PLAIN_KEY, token_ids=ORACLE_IDS, details=True), "token_ids")
    _forbidden(_post(client, IDS_KEY, token_ids=ORACLE_IDS, details=True), "details")


def test_a_tenant_granted_both_reads_every_tokens_flag(client):
    response = _post(client, FORENSICS_KEY, token_ids=ORACLE_IDS, details=True)
    assert response.status_code == 200, response.text
    tokens = response.json()["tokens"]
    assert len(tokens) == len(ORACLE_IDS) and all(token["green"] in (True, False) for token in tokens[1:])


def test_batch_items_are_refused_one_by_one(client):
    items = [{"text": SHORT_TEXT}, {"token_ids": ORACLE_IDS}, {"text": SHORT_TEXT, "details": True}]
    response = _post(client, PLAIN_KEY, "/detect/batch", items=items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["status"] for result in results] == [200, 403, 403]
    assert results[1]["error"]["field"] == "items[1].token_ids"
    assert results[2]["error"]["field"] == "items[2].details"


def test_a_short_text_tells_a_caller_without_details_nothing_but_its_length(client, human_passages):
    for _ in range(2):  # computed, then from the cache
        result = _post(client, PLAIN_KEY, text=SHORT_TEXT, key_ids=KGW_KEYS).json()
        assert result["verdict"] == "insufficient_evidence"
        for entry in [result, *result["keys"]]:
            assert entry["verdict"] == "insufficient_evidence"
            assert entry["p_value"] == entry["corrected_p_value"] == 1.0
            assert all(entry[name] is None for name in STATISTICS), entry
            assert 0 < entry["num_scored_tokens"] < entry["min_scored_tokens"]
    # A text long enough to test keeps every statistic.
    long = _post(client, PLAIN_KEY, text=next(iter(human_passages.values()))).json()
    assert long["verdict"] == "not_watermarked" and long["num_green_tokens"] is not None
    assert long["p_value"] < 1.0 and long["score"] == long["num_green_tokens"]


def test_a_caller_with_details_still_sees_the_statistics_of_a_short_text(client):
    # it sees every green flag anyway: hiding the counts from it would protect nothing
    result = _post(client, FORENSICS_KEY, text=SHORT_TEXT, details=True).json()
    assert result["verdict"] == "insufficient_evidence"
    assert result["num_green_tokens"] == sum(token["green"] is True for token in result["tokens"])
    assert result["score"] == result["num_green_tokens"] and result["p_value"] <= 1.0


def test_windows_are_searched_only_with_room_for_two(client, human_passages):
    """In a text of 26 to 49 scored tokens the windows of 25 starting at the first and second
    scored tokens differ by one token at each end: the best one's count beside the whole
    count told two green flags per request. Below 2 * min_scored_tokens no window is searched."""
    passage = next(iter(human_passages.values()))
    words = passage.split(" ")
    results = [_post(client, PLAIN_KEY, text=" ".join(words[:count]), windows=True).json() for count in (35, 80)]
    short, long = results
    assert 25 < short["num_scored_tokens"] < 50 and short["verdict"] != "insufficient_evidence"
    assert short["window"] is None and short["corrected_p_value"] == short["p_value"]
    assert long["num_scored_tokens"] >= 50 and long["window"]["num_windows"] > 1


def test_an_untested_key_reports_no_window(client, human_passages):
    """At alpha 1e-100 a KGW key needs 167 scored tokens (0.25 ** 167 < 1e-100): a text of
    about 120 is untested, and its best window, whose p-value tells a count, stays hidden."""
    words = next(iter(human_passages.values())).split(" ")
    text = " ".join(words[:90])
    result = _post(client, PLAIN_KEY, text=text, key_id="main", alpha=1e-100, windows=True).json()
    assert result["verdict"] == "insufficient_evidence" and result["min_scored_tokens"] == 167
    assert 50 <= result["num_scored_tokens"] < 167, result
    assert result["window"] is None and result["keys"][0]["window"] is None
    # the same text at the default alpha is tested and gets its window
    tested = _post(client, PLAIN_KEY, text=text, key_id="main", windows=True).json()
    assert tested["verdict"] != "insufficient_evidence" and tested["window"] is not None
