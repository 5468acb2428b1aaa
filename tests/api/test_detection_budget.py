"""The detection budget in-process: scored tokens (times the keys tested) per tenant per window,
429 with Retry-After once spent; requests as such cost nothing. Real tokenizer and keys, no
engine; the budget is the in-memory GCRA on a fake clock (the Redis one is tested in
tests/redis/test_token_budget.py), so every number below is exact.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from fastapi.testclient import TestClient

from signet.api.app import create_app
from signet.cache.detection import MemoryDetectionCache
from signet.cache.rate_limit import MemoryRateLimiter
from signet.settings import Settings
from signet.tenants import TenantRegistry, api_key_digest
from tests.redis.test_rate_limiters import FakeClock

BUDGET, WINDOW = 300, 3600  # scored tokens per hour: one token back every 12 s
MOD_BOT, MOD_UI = "sk-signet-test-budget-bot-4e1a9c", "sk-signet-test-budget-ui-b70d3f"
OTHER = "sk-signet-test-budget-other-2c58e1"
TENANTS = {
    "tenants": [
        {
            "tenant": "moderation",
            "key_ids": "*",
            "api_keys": [
                {"sha256": api_key_digest(MOD_BOT), "name": "bot"},
                {"sha256": api_key_digest(MOD_UI), "name": "ui"},
            ],
        },
        {"tenant": "other", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(OTHER), "name": "bot"}]},
    ]
}


@pytest.fixture(scope="module")
def tenants(detection_state, tmp_path_factory) -> TenantRegistry:
    path = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    path.write_text(yaml.safe_dump(TENANTS))
    return TenantRegistry.load(path, detection_state.keys.key_ids)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _client(detection_state, tenants, clock, cache=None) -> TestClient:
    settings = Settings(keys_file=detection_state.settings.keys_file, detect_token_budget=BUDGET)
    budget = MemoryRateLimiter(BUDGET * 60 / WINDOW, BUDGET, clock=clock)
    state = dataclasses.replace(
        detection_state, settings=settings, tenants=tenants, detect_budget=budget, detection_cache=cache
    )
    return TestClient(create_app(state))


@pytest.fixture
def client(detection_state, tenants, clock):
    with _client(detection_state, tenants, clock) as session:
        yield session


@pytest.fixture(scope="module")
def texts(human_passages) -> list[str]:
    """Human passages cut to about 200 characters: some 40 scored tokens each."""
    return [passage[:200] for passage in human_passages.values()]


@pytest.fixture(scope="module")
def unlimited(detection_state):
    """The same keys without a budget: what a request costs, measured without spending any."""
    with TestClient(create_app(dataclasses.replace(detection_state, tenants=None, detect_budget=None))) as session:
        yield session


def _price(unlimited, **body) -> int:
    return _cost(unlimited.post("/detect", json=body))


def _detect(client, key: str | None, path: str = "/detect", **body):
    headers = {"X-API-Key": key} if key else {}
    return client.post(path, json=body, headers=headers)


def _cost(response) -> int:
    """Each key's scored tokens, at least 25 for a key with any."""
    assert response.status_code == 200, response.text
    return sum(min(key["num_scored_tokens"], 1) * max(key["num_scored_tokens"], 25) for key in response.json()["keys"])


def _refused(response, cost: int, who: str = "tenant 'moderation'") -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    retry_after = int(response.headers["retry-after"])
    assert response.json()["detail"] == (
        f"detection budget spent: this request evaluated {cost:,} scored tokens (times the keys tested); {who} may "
        f"have {BUDGET:,} evaluated per {WINDOW:,} s; retry in {retry_after} s"
    )
    return retry_after


def test_the_budget_counts_scored_tokens_then_answers_429_with_retry_after(client, unlimited, clock, texts):
    spent, answered = 0, 0
    for text in texts:
        response = _detect(client, MOD_BOT, text=text)
        if response.status_code == 429:
            break
        spent += _cost(response)
        answered += 1
    else:
        pytest.fail("the budget was never spent")
    cost = _price(unlimited, text=text)  # what the refused request cost
    assert spent <= BUDGET < spent + cost and answered >= 5
    # The refused answer was computed, so it is paid for all the same. The bucket refills one
    # token per WINDOW / BUDGET = 12 s: the request fits again once the tokens it was missing
    # and its own cost are back.
    missing = spent + cost - BUDGET
    retry_after = _refused(response, cost)
    assert retry_after == (missing + cost) * 12
    clock.now += retry_after
    assert _detect(client, MOD_BOT, text=text).status_code == 200


def test_a_refused_answer_is_paid_for_so_its_repeats_are_refused_before_any_work(client, unlimited, texts):
    """Found by review: when a refusal took nothing, a caller a little short of a large
    request's cost could send it again and again, each copy tokenized and scored in full."""
    assert [_detect(client, MOD_BOT, text="Hello there.").status_code for _ in range(10)] == [200] * 10  # 250
    large = " ".join(texts[1:5])
    _refused(_detect(client, MOD_BOT, text=large), _price(unlimited, text=large))
    for _ in range(3):  # in debt now: refused at admission, before the text is looked at
        refused = _detect(client, MOD_UI, text=large, key_id="absent")  # an unknown key: 404 after any work
        assert refused.status_code == 429 and "none is left" in refused.json()["detail"]


def test_requests_cost_nothing_but_their_scored_tokens(client, unlimited, texts):
    # A hundred requests of one token (no context before it: nothing scored): all answered,
    # nothing spent; then ten of 25 tokens each (two-token texts, charged as 25): 250 of 300 ...
    assert [_cost(_detect(client, MOD_BOT, text="Hello")) for _ in range(100)] == [0] * 100
    assert [_cost(_detect(client, MOD_BOT, text="Hello there.")) for _ in range(10)] == [25] * 10
    # ... so what is left depends on tokens, not on the request count: a text of fewer than
    # 50 scored tokens still fits, one of more does not.
    small, large = texts[0], " ".join(texts[1:5])
    assert _price(unlimited, text=small) <= 50 < _price(unlimited, text=small) + _price(unlimited, text=large)
    assert _detect(client, MOD_BOT, text=small).status_code == 200
    _refused(_detect(client, MOD_BOT, text=large), _price(unlimited, text=large))


def test_a_short_text_costs_25_scored_tokens(client, unlimited):
    """A KGW verdict needs only 7 scored tokens at alpha 1e-4 (0.25 ** 7 < 1e-4), but each key
    with a scored token is charged at least 25: an answer tells at most log2(T + 1) bits per 25.
    An untested key too: kgw-selfhash's T itself depends on its key."""
    tested, untested = "The quick brown fox jumps over the lazy dog.", "The quick brown fox."
    short = unlimited.post("/detect", json={"text": tested}).json()
    assert short["verdict"] != "insufficient_evidence" and short["num_scored_tokens"] == 9
    assert [_detect(client, MOD_BOT, text=tested).status_code for _ in range(10)] == [200] * 10  # 250 of 300
    for _ in range(2):  # 4 scored tokens each, charged as 25: 300 spent (at 4 each, 258)
        response = _detect(client, MOD_BOT, text=untested)
        assert response.json()["verdict"] == "insufficient_evidence" and response.json()["num_scored_tokens"] == 4
    refused = _detect(client, MOD_BOT, text=tested)
    assert refused.status_code == 429 and "none is left" in refused.json()["detail"]


def test_a_tenants_api_keys_share_its_budget_and_other_tenants_keep_theirs(client, texts):
    spent = 0
    for number, text in enumerate(texts):
        key = (MOD_BOT, MOD_UI)[number % 2]
        response = _detect(client, key, text=text)
        if response.status_code == 429:
            break
        spent += _cost(response)
    assert BUDGET - 60 < spent <= BUDGET  # both keys drew on one budget
    assert _detect(client, MOD_UI, text=texts[0]).status_code == 429
    assert _detect(client, MOD_BOT, text=texts[0]).status_code == 429
    assert _detect(client, OTHER, text=texts[0]).status_code == 200


def test_each_key_tested_is_charged(client, unlimited, texts):
    five = ["main", "wide", "hf", "vllm", "folded"]
    keys = _detect(client, MOD_BOT, text=texts[0], key_ids=five)
    assert len(keys.json()["keys"]) == 5 and _cost(keys) >= 4 * _price(unlimited, text=texts[0])
    # 5 keys of some 40 scored tokens: the second such request does not fit in 300
    response = _detect(client, MOD_BOT, text=texts[1], key_ids=five)
    _refused(response, _price(unlimited, text=texts[1], key_ids=five))
    # paid for all the same (5 keys' worth twice is over 300): the caller is in debt
    assert "none is left" in _detect(client, MOD_BOT, text=texts[1]).json()["detail"]


def test_batch_items_are_charged_together(client, unlimited, texts):
    items = [{"text": text} for text in texts[:12]]
    costs = [_price(unlimited, text=text) for text in texts[:12]]
    assert sum(costs[:4]) <= BUDGET < sum(costs[:4]) + sum(costs[4:])
    # each item costs what it would alone; failed items (here a 404) cost nothing
    first = _detect(client, MOD_BOT, "/detect/batch", items=[*items[:4], {"text": "x", "key_id": "absent"}])
    assert [item["status"] for item in first.json()["results"]] == [200] * 4 + [404]
    # the rest does not fit: the whole batch is refused, no item answered
    _refused(_detect(client, MOD_BOT, "/detect/batch", items=items[4:]), sum(costs[4:]))
    assert _detect(client, OTHER, "/detect/batch", items=items[4:]).status_code == 200


def test_cached_answers_are_charged_too(detection_state, tenants, clock, texts):
    with _client(detection_state, tenants, clock, cache=MemoryDetectionCache(100, 3600)) as client:
        cost = _cost(_detect(client, MOD_BOT, text=texts[0]))
        repeats = 0
        while (response := _detect(client, MOD_BOT, text=texts[0])).status_code == 200:
            assert response.json()["cached"] is True
            repeats += 1
        assert repeats == BUDGET // cost - 1
        _refused(response, cost)


def test_development_mode_keeps_both_permissions_within_a_budget_per_caller(detection_state, clock):
    settings = Settings(keys_file=detection_state.settings.keys_file, detect_token_budget=BUDGET)
    budget = MemoryRateLimiter(BUDGET * 60 / WINDOW, BUDGET, clock=clock)
    state = dataclasses.replace(detection_state, settings=settings, tenants=None, detect_budget=budget)
    oracle = [token for candidate in range(1000, 1100) for token in (506, candidate)]
    with TestClient(create_app(state)) as client:
        response = _detect(client, None, token_ids=oracle, details=True)
        cost = _cost(response)
        assert BUDGET // 2 < cost <= BUDGET and len(response.json()["tokens"]) == len(oracle)
        _refused(_detect(client, None, token_ids=oracle, details=True), cost, "this caller")
        # in development mode each caller (API key, else address) has a budget of its own
        assert _detect(client, "dev-caller-two", token_ids=oracle, details=True).status_code == 200
        _refused(_detect(client, "dev-caller-two", token_ids=oracle), cost, "this caller")


def test_a_caller_in_debt_is_refused_before_any_work(client, clock, human_passages):
    """One request larger than the budget is answered from a full bucket and leaves a debt;
    until it is paid, requests get 429 before their text is looked at (an unknown key_id, a
    404 for anyone else, gets the 429: nothing was tokenized or scored)."""
    text = " ".join(human_passages.values())[:6000]  # about 1,200 scored tokens: four budgets
    assert _detect(client, MOD_BOT, text=text).status_code == 200
    refused = _detect(client, MOD_UI, text="Hello there.", key_id="absent")
    assert refused.status_code == 429, refused.text
    assert "none is left" in refused.json()["detail"]
    assert _detect(client, OTHER, text="Hello there.", key_id="absent").status_code == 404
    clock.now += int(refused.headers["retry-after"])  # the debt is paid: work resumes
    assert _detect(client, MOD_UI, text="Hello there.", key_id="absent").status_code == 404
