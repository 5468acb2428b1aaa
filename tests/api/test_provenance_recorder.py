"""The recorder: generations are fingerprinted and written off the request path; a DELETE
that comes first wins; a full queue or a failing store loses records only as counted."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import types

import pytest
from prometheus_client import REGISTRY

from signet.api.embedding import embed_now
from signet.api.provenance import recorder as recorder_module
from signet.api.provenance.recorder import DEVELOPMENT_TENANT, Recorder
from signet.provenance import rare_words
from signet.provenance.fingerprint import pieces
from signet.registry.redis import RedisStore
from signet.registry.sqlite import SqliteStore
from signet.registry.store import WRITE_DEADLINE_SECONDS, StoreUnavailable

TEXTS = {  # each with rare_words.MIN_TERMS distinct terms or more, so each has rare words
    "gen-" + "1" * 32: "Owls hunt at night. Their soft feathers let them fly without a sound, and their "
    "ears, set at different heights, tell them where a mouse moves under the snow.",
    "gen-" + "2" * 32: "A sourdough starter is flour and water that wild yeast has colonised. Fed every day "
    "and kept warm, it bubbles, smells sour and can raise a loaf of bread for years.",
    "gen-" + "3" * 32: "The Danube flows through ten countries before it reaches the Black Sea, passing "
    "Vienna, Bratislava, Budapest and Belgrade on its way through the Iron Gates.",
}


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("signet_provenance_records_total", {"outcome": outcome}) or 0.0


def state_with(detection_state, store, **settings):
    # rare words on unless a test says otherwise: they are off by default
    changed = detection_state.settings.model_copy(update={"provenance_rare_words": True, **settings})
    return dataclasses.replace(detection_state, settings=changed, generation_store=store, tenants=None)


def found(state, store, text: str) -> list:
    cut = pieces(text)
    return store.search(DEVELOPMENT_TENANT, embed_now(state, cut), 5, rare_words.fingerprints(cut)).matches


def test_generations_are_recorded_with_their_key_and_without_their_text(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store)
    before = outcomes("recorded")

    async def run() -> None:
        recorder = Recorder(state)
        recorder.start()
        for generation_id, text in TEXTS.items():
            recorder.submit(None, generation_id, text, "main")
        recorder.submit(None, "gen-" + "4" * 32, "  \n", "main")  # nothing to fingerprint: not queued
        await recorder.stop()

    asyncio.run(run())
    assert outcomes("recorded") - before == 3
    for generation_id, text in TEXTS.items():
        best = found(state, store, text)[0]
        assert best.generation_id == generation_id and best.similarity > 0.99
        assert best.rare_word_similarity > 0.99  # its rare words were recorded with it
        assert best.key_id == "main" and best.text is None
    assert store.count(DEVELOPMENT_TENANT) == 3


def record_one(state) -> tuple[str, str]:
    """The first of TEXTS, recorded unwatermarked through a recorder that then drains; its id and text."""
    generation_id, text = next(iter(TEXTS.items()))

    async def run() -> None:
        recorder = Recorder(state)
        recorder.start()
        recorder.submit(None, generation_id, text, None)
        await recorder.stop()

    asyncio.run(run())
    return generation_id, text


def test_the_text_is_kept_only_when_the_operator_opts_in(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store, provenance_store_text=True)
    _, text = record_one(state)
    assert found(state, store, text)[0].text == text


def test_rare_words_are_kept_only_while_the_operator_keeps_them_on(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store, provenance_rare_words=False)
    generation_id, text = record_one(state)
    best = found(state, store, text)[0]  # searched with the text's own rare words
    assert best.generation_id == generation_id and best.similarity > 0.99 and best.rare_word_similarity == 0.0
    store.close()


def test_a_generation_erased_while_queued_is_never_written(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store)
    (first, text), (second, other) = list(TEXTS.items())[:2]

    async def run() -> tuple[bool, bool]:
        recorder = Recorder(state)
        recorder.submit(None, first, text, None)  # queued: the recorder is not started yet
        recorder.submit(None, second, other, None)
        cancelled = recorder.cancel(None, first)
        unknown = recorder.cancel(None, "gen-" + "9" * 32)
        recorder.start()
        await recorder.stop()
        return cancelled, unknown

    assert asyncio.run(run()) == (True, False)
    assert [match.generation_id for match in found(state, store, text)] == [second]


def test_a_full_queue_drops_and_counts(detection_state, tmp_path):
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store, provenance_queue_size=1)
    before = outcomes("dropped")

    async def run() -> None:
        recorder = Recorder(state)
        for generation_id, text in TEXTS.items():
            recorder.submit(None, generation_id, text, None)
        recorder.start()
        await recorder.stop()

    asyncio.run(run())
    assert outcomes("dropped") - before == 2
    assert store.count(DEVELOPMENT_TENANT) == 1


def test_an_unreachable_store_fails_each_record_and_the_recorder_goes_on(detection_state, unreachable_redis_link):
    state = state_with(detection_state, RedisStore(unreachable_redis_link, 384))
    before = outcomes("failed")

    async def run() -> None:
        recorder = Recorder(state)
        recorder.start()
        recorder.submit("alpha", "gen-" + "1" * 32, TEXTS["gen-" + "1" * 32], None)
        await asyncio.sleep(2)  # that batch fails before the next is queued
        recorder.submit("alpha", "gen-" + "2" * 32, TEXTS["gen-" + "2" * 32], None)
        await recorder.stop()

    asyncio.run(run())
    assert outcomes("failed") - before == 2


def test_a_generation_near_a_tombstones_age_is_dropped(detection_state, tmp_path, monkeypatch):
    """A record created more than WRITE_DEADLINE_SECONDS ago could outlive the tombstone of a
    DELETE that reached another API process: it is dropped, and counted so."""
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    state = state_with(detection_state, store)
    (old, text), (new, other) = list(TEXTS.items())[:2]
    dropped, recorded = outcomes("dropped"), outcomes("recorded")

    async def run() -> None:
        recorder = Recorder(state)
        with monkeypatch.context() as patched:  # submitted WRITE_DEADLINE_SECONDS and 1 s ago
            patched.setattr(
                recorder_module, "time", types.SimpleNamespace(time=lambda: time.time() - WRITE_DEADLINE_SECONDS - 1)
            )
            recorder.submit(None, old, text, None)
        recorder.submit(None, new, other, None)
        recorder.start()
        await recorder.stop()

    asyncio.run(run())
    assert (outcomes("dropped") - dropped, outcomes("recorded") - recorded) == (1, 1)
    assert [match.generation_id for match in found(state, store, text)] == [new]


@pytest.mark.parametrize("failures", [1, 2])
def test_an_erasure_failing_after_the_write_is_tried_again_and_the_record_counts_as_recorded(
    detection_state, tmp_path, monkeypatch, caplog, failures
):
    """A DELETE that comes while the record is being written (answered 204) erases it right
    after: a failure of that erase is tried once more, and is not a failure to record."""
    store = SqliteStore(tmp_path / "registry.sqlite3", 384)
    generation_id, text = next(iter(TEXTS.items()))
    erasures: list[str] = []
    recorders: list[Recorder] = []

    class DeletedWhileWritten:
        def add(self, record) -> None:
            store.add(record)
            assert recorders[0].cancel(None, record.generation_id)  # the DELETE, during the write

        def erase(self, tenant: str, generation_id: str) -> bool:
            erasures.append(generation_id)
            if len(erasures) <= failures:
                raise StoreUnavailable("the generation registry is unreachable: ConnectionError")
            return store.erase(tenant, generation_id)

    state = state_with(detection_state, DeletedWhileWritten())
    monkeypatch.setattr(recorder_module, "ERASE_RETRY_SECONDS", 0.0)
    recorded, failed = outcomes("recorded"), outcomes("failed")

    async def run() -> None:
        recorders.append(Recorder(state))
        recorders[0].start()
        recorders[0].submit(None, generation_id, text, None)
        await recorders[0].stop()

    with caplog.at_level(logging.WARNING, logger=recorder_module.__name__):
        asyncio.run(run())
    assert (outcomes("recorded") - recorded, outcomes("failed") - failed) == (1, 0)
    assert erasures == [generation_id, generation_id]
    assert store.count(DEVELOPMENT_TENANT) == (0 if failures == 1 else 1)
    messages = [entry.getMessage() for entry in caplog.records if entry.name == recorder_module.__name__]
    assert all("recorded, but its erasure failed" in message for message in messages)
    assert len(messages) == failures and "not recorded" not in " ".join(messages)
