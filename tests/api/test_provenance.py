"""Provenance in-process: POST /detect with provenance: true finds a rewording of the
caller's own generation, never another tenant's, never an erased or expired one; DELETE
/generations/{id} erases; bad requests get their problem.

Records are written to a real SQLite registry with real all-MiniLM-L6-v2 fingerprints (as
the recorder writes them; tests/api/test_provenance_recorder.py tests the recorder), so
the similarities and p-values are the service's own.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from signet.api.app import create_app
from signet.api.embedding import embed_now
from signet.api.provenance.recorder import DEVELOPMENT_TENANT
from signet.provenance import rare_words
from signet.provenance.fingerprint import pieces
from signet.provenance.rare_words import MIN_VECTORS, RARE_WORD_NULL
from signet.provenance.significance import smallest_p_value
from signet.registry.sqlite import SqliteStore
from signet.registry.store import GenerationRecord
from signet.settings import Settings
from signet.tenants import TenantRegistry, api_key_digest

KEY_A = "sk-signet-test-provenance-a-61d0e2"
KEY_B = "sk-signet-test-provenance-b-7c4f19"
KEY_LARGE = "sk-signet-test-provenance-large-e93a07"
TENANTS = {
    "tenants": [
        {"tenant": "alpha", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(KEY_A), "name": "a"}]},
        {"tenant": "beta", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(KEY_B), "name": "b"}]},
        # a registry too large for the test by meaning at alpha = 1e-4 (LARGE_REGISTRY)
        {"tenant": "large", "key_ids": "*", "api_keys": [{"sha256": api_key_digest(KEY_LARGE), "name": "l"}]},
    ]
}
LARGE_REGISTRY = 10_000  # random vectors beside one generation: 1 piece x 10,001 > 9,232 (docs/PROVENANCE.md)
# The second generation, reworded keeping its rare words (lighthouse, spiral stairs, harbour)
# but few of its phrases: 46 words, one piece.
REWORDED_KEEPING_RARE_WORDS = (
    "Each evening the keeper of the lighthouse went up the spiral stairs and lit the lamp. However hard the "
    "storms rattled its windows, the beam did not fail, and sailors out at sea relied on its steady light to "
    "steer past the rocks into the harbour."
)
GENERATED = {
    "gen-" + "a" * 32: (
        "Regular exercise strengthens the heart and lungs. It also improves sleep and lifts your mood. "
        "Even a brisk twenty-minute walk each day lowers the risk of diabetes and high blood pressure. "
        "Start slowly, choose an activity you enjoy, and build the habit over a few weeks."
    ),
    "gen-" + "b" * 32: (
        "The lighthouse keeper climbed the spiral stairs every evening to light the lamp. Storms rattled "
        "the windows, but the beam never failed. Sailors far out at sea trusted that steady light to "
        "guide them past the rocks and safely into the harbour."
    ),
}
# The first generation, reworded: sentences reordered, most words changed, meaning kept.
REWORDED = (
    "Begin gently, pick a sport you like, and make it routine over several weeks. Working out "
    "regularly makes your heart and lungs stronger, helps you sleep better and raises your spirits. "
    "A quick daily walk of twenty minutes already cuts the chance of diabetes and hypertension."
)
UNRELATED = (
    "The compiler reads each source file, builds a syntax tree, checks the types of every expression "
    "and then emits machine code for the target architecture, linking the object files at the end. "
    "Warnings are printed as it goes, and an error stops the build before anything is written."
)
ALPHA = 1e-3


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def record(generation_id: str, tenant: str, text: str, expires_in: float = 3600.0, keep_text: bool = False):
    now = time.time()
    return GenerationRecord(
        generation_id=generation_id,
        tenant=tenant,
        vectors=embed_now(STATE, pieces(text)),
        key_id=None,
        created_at=now,
        expires_at=now + expires_in,
        text=text if keep_text else None,
        rare_words=rare_words.fingerprints(pieces(text)),
    )


STATE = None  # the module's state, set by the fixture (record() embeds with its embedder)


@pytest.fixture(scope="module")
def state(detection_state, tmp_path_factory):
    global STATE
    folder = tmp_path_factory.mktemp("provenance")
    (folder / "tenants.yaml").write_text(yaml.safe_dump(TENANTS))
    tenants = TenantRegistry.load(folder / "tenants.yaml", detection_state.keys.key_ids)
    store = SqliteStore(folder / "registry.sqlite3", 384)
    settings = detection_state.settings.model_copy(update={"provenance_rare_words": True})  # off by default
    STATE = dataclasses.replace(
        detection_state, settings=settings, tenants=tenants, rate_limiter=None, generation_store=store
    )
    for generation_id, text in GENERATED.items():
        store.add(record(generation_id, "alpha", text))
    store.add(record("gen-" + "b" * 32, "large", GENERATED["gen-" + "b" * 32]))
    rows = np.random.default_rng(5).standard_normal((LARGE_REGISTRY, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    now = time.time()
    for number, row in enumerate(rows):  # without rare words, as records kept before them
        store.add(GenerationRecord(f"gen-{number:032x}", "large", row[None, :], None, now, now + 3600))
    yield STATE
    store.close()


@pytest.fixture(scope="module")
def client(state):
    with TestClient(create_app(state)) as session:
        yield session


def detect(client, text: str, key: str = KEY_A, **options):
    body = {"text": text, "provenance": True, "alpha": ALPHA, **options}
    response = client.post("/detect", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_rewording_of_the_tenants_generation_is_found(client):
    body = detect(client, REWORDED)
    report = body["provenance"]
    best = report["matches"][0]
    assert best["generation_id"] == "gen-" + "a" * 32
    assert best["similarity"] > 0.7 and best["p_value"] < ALPHA
    assert report["verdict"] == "match" and report["p_value"] == best["p_value"]
    assert report["num_vectors"] == 2 and report["num_pieces"] == 1 and report["truncated"] is False
    assert report["smallest_p_value"] == smallest_p_value(1 * 2)  # a copy against 2 vectors: the test can decide
    # rare words are tested as if the registry held MIN_VECTORS pieces at the least
    assert report["rare_word_smallest_p_value"] == smallest_p_value(1 * MIN_VECTORS, RARE_WORD_NULL)
    assert report["rare_word_p_value"] == min(match["rare_word_p_value"] for match in report["matches"])
    assert best["rare_word_similarity"] > max(match["rare_word_similarity"] for match in report["matches"][1:])
    # Unwatermarked text: only the provenance test can reject, and the answer says so.
    assert body["verdict"] != "watermarked"
    assert body["combined"] == {
        "verdict": "generated_here",
        "p_value": 2 * best["p_value"],
        "decided_by": "provenance",
        "rule": "both_at_half_alpha",
        "tests": ["watermark", "meaning"],
        "rejected": ["meaning"],
    }
    assert best["text"] is None  # texts are not kept unless the operator opts in


def test_unrelated_text_matches_nothing(client):
    body = detect(client, UNRELATED)
    assert body["provenance"]["verdict"] == "no_match" and body["provenance"]["p_value"] == 1.0
    assert body["combined"]["verdict"] == "not_found" and body["combined"]["decided_by"] is None


def test_a_text_too_short_for_a_verdict_lists_its_matches_without_one(client):
    body = detect(client, "Regular exercise strengthens the heart and lungs.")
    report = body["provenance"]
    assert report["verdict"] == "insufficient_evidence" and report["p_value"] == 1.0
    assert report["matches"][0]["generation_id"] == "gen-" + "a" * 32  # shown, not decided on
    assert report["smallest_p_value"] == 1.0
    assert body["combined"]["decided_by"] is None and body["combined"]["rule"] == "watermark_at_alpha"


def test_a_registry_that_cannot_decide_leaves_all_of_alpha_to_the_watermark(client):
    """Another tenant's registry is empty: no similarity could reject, so the combined test is
    the watermark's own, its p-value not doubled."""
    body = detect(client, GENERATED["gen-" + "a" * 32], key=KEY_B)
    assert body["provenance"]["smallest_p_value"] == body["provenance"]["rare_word_smallest_p_value"] == 1.0
    assert body["combined"]["tests"] == ["watermark"]
    assert body["combined"]["p_value"] == body["corrected_p_value"]
    assert body["combined"]["decided_by"] == ("watermark" if body["corrected_p_value"] < ALPHA else None)
    assert body["combined"]["rule"] == "watermark_at_alpha"


def test_rare_words_find_a_rewording_where_meaning_cannot_and_decide_nothing(client):
    """In a registry too large for the test by meaning, a rewording that keeps its generation's
    rare words is still listed first, with a small rare-word p-value; the verdict stays the
    watermark's, since text on a record's very topic can share its rare words too."""
    body = detect(client, REWORDED_KEEPING_RARE_WORDS, key=KEY_LARGE, alpha=1e-4)
    report, combined = body["provenance"], body["combined"]
    assert report["num_vectors"] == LARGE_REGISTRY + 1 and report["smallest_p_value"] >= 1e-4 / 2
    best = report["matches"][0]
    assert best["generation_id"] == "gen-" + "b" * 32 and best["rare_word_p_value"] < 1e-4 / 2
    assert report["rare_word_p_value"] == best["rare_word_p_value"]
    assert report["p_value"] == best["p_value"]  # listed by meaning: the first match is the test's
    assert best["rare_word_similarity"] > 0.5 > max(match["rare_word_similarity"] for match in report["matches"][1:])
    assert report["verdict"] == "no_match"  # by meaning, which cannot decide here
    assert combined["tests"] == ["watermark"] and combined["rule"] == "watermark_at_alpha"
    assert combined["p_value"] == body["corrected_p_value"]
    unrelated = detect(client, UNRELATED, key=KEY_LARGE, alpha=1e-4)["provenance"]
    assert unrelated["rare_word_p_value"] == 1.0 and unrelated["matches"][0]["rare_word_similarity"] < 0.2


def test_another_tenant_never_sees_the_generations(client):
    body = detect(client, GENERATED["gen-" + "a" * 32], key=KEY_B)
    assert body["provenance"]["matches"] == [] and body["provenance"]["num_vectors"] == 0
    assert body["provenance"]["verdict"] == "no_match"
    # nor can it erase them: the same 404 as for an id that does not exist
    response = client.delete("/generations/gen-" + "a" * 32, headers=bearer(KEY_B))
    assert response.status_code == 404 and response.json()["field"] == "generation_id"


def test_an_erased_generation_is_never_returned_again(client, state):
    generation_id = "gen-" + "c" * 32
    text = "Bees dance to tell the hive where the flowers are. The angle of the dance points toward the sun."
    state.generation_store.add(record(generation_id, "alpha", text))
    assert detect(client, text)["provenance"]["matches"][0]["generation_id"] == generation_id
    assert client.delete(f"/generations/{generation_id}", headers=bearer(KEY_A)).status_code == 204
    # the watermark part of this answer is cached; the provenance part never is
    after = detect(client, text)
    assert generation_id not in [match["generation_id"] for match in after["provenance"]["matches"]]
    assert client.delete(f"/generations/{generation_id}", headers=bearer(KEY_A)).status_code == 404


def test_an_expired_generation_is_never_returned(client, state):
    text = "Volcanoes form where magma rises through cracks in the crust and erupts as lava and ash."
    state.generation_store.add(record("gen-" + "d" * 32, "alpha", text, expires_in=-1.0))
    ids = [match["generation_id"] for match in detect(client, text)["provenance"]["matches"]]
    assert "gen-" + "d" * 32 not in ids


def test_texts_are_shown_only_where_the_operator_keeps_them(client, state):
    text = "Glaciers carve deep valleys as they slide downhill, grinding the rock beneath them into fine silt."
    state.generation_store.add(record("gen-" + "e" * 32, "beta", text, keep_text=True))
    assert detect(client, text, key=KEY_B)["provenance"]["matches"][0]["text"] == text


def test_development_mode_has_a_registry_of_its_own(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = dataclasses.replace(detection_state, tenants=None, rate_limiter=None, generation_store=store)
    store.add(record("gen-" + "f" * 32, DEVELOPMENT_TENANT, UNRELATED))
    store.add(record("gen-" + "0" * 32, "alpha", REWORDED))
    with TestClient(create_app(state)) as session:
        body = detect(session, UNRELATED, key="unused")
    assert [match["generation_id"] for match in body["provenance"]["matches"]] == ["gen-" + "f" * 32]
    store.close()


def test_rare_words_are_off_by_default():
    assert Settings.model_fields["provenance_rare_words"].default is False


def test_with_rare_words_off_the_registry_tests_by_meaning_alone(state):
    settings = state.settings.model_copy(update={"provenance_rare_words": False})
    with TestClient(create_app(dataclasses.replace(state, settings=settings))) as session:
        body = detect(session, REWORDED)
    report = body["provenance"]
    assert report["rare_word_smallest_p_value"] is None and report["rare_word_p_value"] is None
    assert all(match["rare_word_similarity"] is None is match["rare_word_p_value"] for match in report["matches"])
    assert body["combined"]["tests"] == ["watermark", "meaning"] and body["combined"]["decided_by"] == "provenance"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"token_ids": [1, 2, 3], "provenance": True}, 422, None),
        ({"text": "x", "provenance": "yes"}, 422, "provenance"),
    ],
)
def test_bad_provenance_requests(client, body, status, field):
    response = client.post("/detect", json=body, headers=bearer(KEY_A))
    assert response.status_code == status, response.text
    assert response.json().get("field") == field
    if body.get("token_ids"):
        assert "give text, not token_ids" in response.json()["detail"]


@pytest.mark.parametrize("generation_id", ["gen-123", "gen-" + "A" * 32, "x" * 36])
def test_a_malformed_generation_id_is_refused(client, generation_id):
    response = client.delete(f"/generations/{generation_id}", headers=bearer(KEY_A))
    assert response.status_code == 422 and response.json()["field"] == "generation_id"


def test_erasing_needs_an_api_key(client):
    assert client.delete("/generations/gen-" + "a" * 32).status_code == 401


def test_a_batch_searches_each_item(client):
    items = [{"text": REWORDED, "provenance": True}, {"text": UNRELATED}, {"token_ids": [5], "provenance": True}]
    response = client.post("/detect/batch", json={"items": items}, headers=bearer(KEY_A))
    results = response.json()["results"]
    assert results[0]["result"]["provenance"]["matches"][0]["generation_id"] == "gen-" + "a" * 32
    assert results[1]["result"]["provenance"] is None
    assert results[2]["status"] == 422


def test_a_batch_may_search_the_registry_eight_times(client):
    """Each search scans the tenant's whole registry, whatever the item's length: nine short
    items would cost nine scans."""
    items = [{"text": REWORDED, "provenance": True}] * 8 + [{"text": UNRELATED}]
    response = client.post("/detect/batch", json={"items": items}, headers=bearer(KEY_A))
    assert response.status_code == 200 and all(result["status"] == 200 for result in response.json()["results"])
    items = [{"text": REWORDED, "provenance": True}] * 9
    response = client.post("/detect/batch", json={"items": items}, headers=bearer(KEY_A))
    assert response.status_code == 413 and "9 items ask for provenance" in response.json()["detail"]


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_long_text_is_searched_by_pieces_spread_over_it(client, where):
    """A rewording after a long preamble is still searched: the last piece always is."""
    filler = "This sentence has exactly eight words in it. " * 150
    long_text = f"{REWORDED} {filler}" if where == "start" else f"{filler}{REWORDED}"
    report = detect(client, long_text)["provenance"]
    assert report["num_pieces"] == 8 and report["truncated"] is True
    assert report["matches"][0]["generation_id"] == "gen-" + "a" * 32


def test_provenance_off_is_a_clear_answer(detection_state):
    state = dataclasses.replace(detection_state, tenants=None, rate_limiter=None, generation_store=None)
    with TestClient(create_app(state)) as session:
        response = session.post("/detect", json={"text": UNRELATED, "provenance": True})
        assert response.status_code == 422 and "SIGNET_PROVENANCE=false" in response.json()["detail"]
        assert response.json()["field"] == "provenance"
        response = session.delete("/generations/gen-" + "a" * 32)
        assert response.status_code == 404 and "SIGNET_PROVENANCE=false" in response.json()["detail"]


def test_a_process_without_torch_refuses_to_start_with_the_registry_on(monkeypatch, detection_state):
    """The slim API image (WITH_EMBEDDINGS=false) has no torch: with SIGNET_PROVENANCE on it
    stops at start-up with one line saying what to do, instead of failing every record."""
    import importlib.util

    from signet.api import state as state_module
    from signet.engine.model_store import ModelError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "torch" else real(name, *rest))
    settings = detection_state.settings.model_copy(update={"provenance": True})
    with pytest.raises(ModelError, match="WITH_EMBEDDINGS=true .* or set SIGNET_PROVENANCE=false"):
        state_module._generation_store(settings, None)
    assert state_module._generation_store(settings.model_copy(update={"provenance": False}), None) is None
