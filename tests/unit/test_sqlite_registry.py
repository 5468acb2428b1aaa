"""signet.registry.sqlite: the embedded registry on a real SQLite file in a temporary folder.

Vectors come from fixed seeds; the waits for expiry are on the wall clock, with margins of
0.1 s or more on either side of an expiry (no test depends on a machine being fast)."""

from __future__ import annotations

import functools
import sqlite3
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from signet.provenance import rare_words
from signet.registry import sqlite as sqlite_module
from signet.registry.sqlite import SqliteStore
from signet.registry.store import StoreUnavailable
from tests.registry_records import PIECES, REWORDED_PIECE, record
from tests.registry_records import unit_rows as shared_unit_rows

DIMENSION = 48


unit_rows = functools.partial(shared_unit_rows, dimension=DIMENSION)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "cache" / "registry" / "generations.sqlite"


@pytest.fixture
def store(path):
    store = SqliteStore(path, DIMENSION)
    yield store
    store.close()


def ids(result) -> list[str]:
    return [match.generation_id for match in result.matches]


def test_a_record_is_found_by_its_pieces(store, path):
    store.add(record("g1", unit_rows(1, 3), text="the text"))
    store.add(record("g2", unit_rows(2, 2), key_id=None))
    result = store.search("acme", unit_rows(1, 3)[1:2], 5)
    assert ids(result) == ["g1", "g2"] and result.num_vectors == 5
    best = result.matches[0]
    assert best.similarity == pytest.approx(1.0, abs=1e-3) and best.key_id == "key-1" and best.text == "the text"
    assert result.matches[1].key_id is None and result.matches[1].similarity < 0.9
    assert ids(store.search("acme", unit_rows(2, 2), 1)) == ["g2"]
    assert store.count("acme") == 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # and its parent folders were made


def test_an_erased_record_is_gone_from_the_search_and_the_file(store, path):
    """Before the erase the file holds the text and the vector bytes (so the check can see
    them); after it neither the file nor its write-ahead log does."""
    secret, vectors = "secret-4b1d9c-generated-text", unit_rows(3, 2)
    store.add(record("g1", vectors, text=secret))
    store.add(record("g2", unit_rows(4, 1)))
    files = [path, path.with_name(path.name + "-wal")]
    on_disk = b"".join(file.read_bytes() for file in files if file.exists())
    assert secret.encode() in on_disk and vectors.astype("<f2").tobytes() in on_disk
    assert store.erase("acme", "g1")
    assert ids(store.search("acme", vectors, 5)) == ["g2"] and store.count("acme") == 1
    assert not store.erase("acme", "g1") and not store.erase("acme", "never-there")
    on_disk = b"".join(file.read_bytes() for file in files if file.exists())
    assert secret.encode() not in on_disk and vectors[0].astype("<f2").tobytes() not in on_disk


def test_an_expired_record_is_hidden_then_deleted(store, path, monkeypatch):
    store.add(record("brief", unit_rows(5, 2), seconds=0.5))
    store.add(record("lasting", unit_rows(6, 1)))
    assert ids(store.search("acme", unit_rows(5, 1), 5)) == ["brief", "lasting"]
    time.sleep(0.6)
    assert ids(store.search("acme", unit_rows(5, 1), 5)) == ["lasting"] and store.count("acme") == 1
    assert not store.erase("acme", "brief")  # expired: no live record, though its row was still there

    store.add(record("brief-2", unit_rows(7, 1), seconds=0.2))
    time.sleep(0.3)
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM generations").fetchone()[0] == 2  # not purged: not due
    monkeypatch.setattr(sqlite_module, "PURGE_INTERVAL_SECONDS", 0.0)
    store.search("acme", unit_rows(6, 1), 1)
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT generation_id FROM generations").fetchall() == [("lasting",)]


def test_an_expired_id_may_be_added_again_before_the_purge(store):
    store.add(record("again", unit_rows(8, 1), seconds=0.2, key_id="old"))
    time.sleep(0.3)
    store.add(record("again", unit_rows(8, 1), key_id="new"))
    assert [match.key_id for match in store.search("acme", unit_rows(8, 1), 5).matches] == ["new"]


def test_a_reopened_store_sees_what_is_still_live(path):
    first = SqliteStore(path, DIMENSION)
    first.add(record("kept", unit_rows(9, 2), text="kept text"))
    first.add(record("erased", unit_rows(10, 1)))
    first.add(record("expiring", unit_rows(11, 1), seconds=0.3))
    first.add(record("other tenant", unit_rows(12, 1), tenant="globex"))
    assert first.erase("acme", "erased")
    first.close()
    time.sleep(0.4)
    second = SqliteStore(path, DIMENSION)
    try:
        result = second.search("acme", np.vstack([unit_rows(9, 2), unit_rows(10, 1), unit_rows(11, 1)]), 10)
        assert ids(result) == ["kept"] and result.num_vectors == 2 and result.matches[0].text == "kept text"
        assert result.matches[0].similarity == pytest.approx(1.0, abs=1e-3)
        assert second.count("globex") == 1
    finally:
        second.close()


def test_tenants_never_see_each_others_records(store):
    same = unit_rows(13, 2)
    store.add(record("acme-1", same, tenant="acme"))
    store.add(record("globex-1", same, tenant="globex"))
    store.add(record("globex-2", unit_rows(14, 1), tenant="globex"))
    assert ids(store.search("globex", same, 10)) == ["globex-1", "globex-2"]
    assert ids(store.search("acme", same, 10)) == ["acme-1"]
    assert ids(store.search("initech", same, 10)) == [] and store.count("initech") == 0
    assert not store.erase("globex", "acme-1")
    assert ids(store.search("acme", same, 10)) == ["acme-1"]


def test_a_second_add_of_an_id_is_ignored(store, path):
    store.search("acme", unit_rows(15, 1), 1)  # the tenant's index loaded: the add goes to it too
    store.add(record("same", unit_rows(15, 1), key_id="first"))
    store.add(record("same", unit_rows(16, 3), key_id="second", text="second"))
    result = store.search("acme", unit_rows(15, 1), 5)
    assert [(match.key_id, match.text) for match in result.matches] == [("first", None)]
    assert result.num_vectors == 1 and store.count("acme") == 1
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT key_id, text FROM generations").fetchall() == [("first", None)]


def test_texts_are_kept_only_when_given(store, path):
    store.add(record("with", unit_rows(17, 1), text="kept"))
    store.add(record("without", unit_rows(18, 1)))
    found = {match.generation_id: match.text for match in store.search("acme", unit_rows(17, 1), 5).matches}
    assert found == {"with": "kept", "without": None}
    with sqlite3.connect(path) as reader:
        stored = dict(reader.execute("SELECT generation_id, text FROM generations"))
    assert stored == {"with": "kept", "without": None}


def test_vectors_of_the_wrong_shape_are_refused(store):
    with pytest.raises(ValueError):
        store.add(record("bad", np.zeros((2, DIMENSION + 1), np.float32)))
    assert store.count("acme") == 0


def rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as reader:
        return reader.execute(f"SELECT * FROM {table}").fetchall()


def test_an_erase_before_the_add_refuses_it(store, path):
    """A DELETE of a generation not recorded yet finds nothing (False: the route answers 404),
    and leaves a tombstone that refuses the late add for TOMBSTONE_SECONDS."""
    before = time.time()
    assert not store.erase("acme", "late")
    [(tenant, generation_id, expires_at)] = rows(path, "tombstones")
    assert (tenant, generation_id) == ("acme", "late") and before + 600 <= expires_at <= time.time() + 600
    store.add(record("late", unit_rows(20, 2), text="late text"))
    assert ids(store.search("acme", unit_rows(20, 2), 5)) == [] and store.count("acme") == 0
    assert rows(path, "generations") == []
    store.add(record("late", unit_rows(20, 2), tenant="globex"))  # another tenant's id is its own
    assert ids(store.search("globex", unit_rows(20, 2), 5)) == ["late"]


def test_an_erased_record_cannot_be_added_again(store, path):
    """Its tombstone lasts as long as the record would have, when longer than TOMBSTONE_SECONDS."""
    erased = record("erased", unit_rows(21, 1), seconds=3600.0)
    store.add(erased)
    assert store.erase("acme", "erased")
    assert rows(path, "tombstones") == [("acme", "erased", erased.expires_at)]
    store.add(record("erased", unit_rows(21, 1)))
    assert ids(store.search("acme", unit_rows(21, 1), 5)) == [] and rows(path, "generations") == []
    assert not store.erase("acme", "erased")  # a second erase does not shorten the tombstone
    assert rows(path, "tombstones") == [("acme", "erased", erased.expires_at)]


def test_a_tombstone_expires_then_lets_the_id_in_and_is_purged(store, path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "TOMBSTONE_SECONDS", 0.3)
    assert not store.erase("acme", "g1")
    store.add(record("g1", unit_rows(22, 1)))
    assert store.count("acme") == 0
    time.sleep(0.4)
    store.add(record("g1", unit_rows(22, 1)))
    assert ids(store.search("acme", unit_rows(22, 1), 5)) == ["g1"]
    assert len(rows(path, "tombstones")) == 1  # expired, not purged: not due
    monkeypatch.setattr(sqlite_module, "PURGE_INTERVAL_SECONDS", 0.0)
    store.search("acme", unit_rows(22, 1), 1)
    assert rows(path, "tombstones") == []


def test_sqlite_errors_are_store_unavailable(store, path):
    """A locked file (another process writing) and a closed store: StoreUnavailable (the routes
    answer 503), naming the error's class and not the file."""
    store.add(record("g1", unit_rows(23, 1)))
    store._db.execute("PRAGMA busy_timeout = 0")  # fail at once, not after SQLite's 5 s wait
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        for call in (lambda: store.add(record("g2", unit_rows(24, 1))), lambda: store.erase("acme", "g1")):
            with pytest.raises(StoreUnavailable) as refused:
                call()
            assert str(refused.value) == "the generation registry cannot be read or written: OperationalError"
    finally:
        holder.close()
    assert ids(store.search("acme", unit_rows(23, 1), 5)) == ["g1"]  # nothing half done
    store._db.close()
    for call in (lambda: store.search("globex", unit_rows(23, 1), 5), lambda: store.count("initech")):
        with pytest.raises(StoreUnavailable) as refused:
            call()
        assert "ProgrammingError" in str(refused.value) and str(path) not in str(refused.value)


def test_a_purge_takes_every_tenants_expired_vectors_out_of_memory(store, monkeypatch):
    """An expired record's vectors leave memory at the next purge, whichever tenant's call runs
    it, not only at a search of its own tenant (which may never come)."""
    store.add(record("brief", unit_rows(25, 2), seconds=0.2))
    store.add(record("other", unit_rows(26, 1), tenant="globex"))
    assert store.count("acme") == 2 and store.count("globex") == 1  # both loaded
    assert store.resident_vectors() == 3
    time.sleep(0.3)
    store.search("globex", unit_rows(26, 1), 1)
    assert store.resident_vectors() == 3  # not purged: not due
    monkeypatch.setattr(sqlite_module, "PURGE_INTERVAL_SECONDS", 0.0)
    store.search("globex", unit_rows(26, 1), 1)
    assert store.resident_vectors() == 1


def test_rare_words_are_kept_found_after_a_reopen_and_erased_with_the_record(path):
    fingerprint = rare_words.fingerprints(PIECES)
    store = SqliteStore(path, DIMENSION)
    store.add(record("g1", unit_rows(30, 2), rare_words=fingerprint))
    store.add(record("g2", unit_rows(31, 1)))  # without rare words: its rare-word similarity is 0
    store.close()
    store = SqliteStore(path, DIMENSION)  # read back from the file
    query = rare_words.fingerprints([REWORDED_PIECE])
    result = store.search("acme", unit_rows(32, 1), 1, query)
    similarity = {match.generation_id: match.rare_word_similarity for match in result.matches}
    # the best by meaning (random vectors: either) and the best by rare words (g1)
    assert similarity["g1"] > 0.8 and similarity.get("g2", 0.0) == 0.0
    assert store.erase("acme", "g1")
    files = [path, path.with_name(path.name + "-wal")]
    on_disk = b"".join(file.read_bytes() for file in files if file.exists())
    assert rare_words.to_bytes(fingerprint) not in on_disk and fingerprint.data.astype("<f2").tobytes() not in on_disk
    assert all(match.rare_word_similarity == 0 for match in store.search("acme", unit_rows(32, 1), 5, query).matches)
    store.close()


def test_a_file_from_before_rare_words_is_read_and_then_keeps_them(path):
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE generations (tenant TEXT NOT NULL, generation_id TEXT NOT NULL, vectors BLOB NOT NULL, "
            "key_id TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL, text TEXT, "
            "PRIMARY KEY (tenant, generation_id))"
        )
        now = time.time()
        row = ("acme", "old", unit_rows(33, 1).astype("<f2").tobytes(), None, now, now + 3600, None)
        old.execute("INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    store = SqliteStore(path, DIMENSION)
    store.add(record("new", unit_rows(34, 1), rare_words=rare_words.fingerprints(PIECES[:1])))
    found = store.search("acme", unit_rows(33, 1), 5, rare_words.fingerprints(PIECES[:1])).matches
    assert {match.generation_id: round(match.rare_word_similarity, 2) for match in found} == {"old": 0.0, "new": 1.0}
    store.close()


def test_rare_words_of_the_wrong_shape_are_refused(store):
    with pytest.raises(ValueError):
        store.add(record("g1", unit_rows(35, 2), rare_words=rare_words.fingerprints(PIECES[:1])))
    assert store.count("acme") == 0


@pytest.mark.parametrize("damage", [b"\x05\x00\x01", "text", 10**12])
def test_a_damaged_rare_word_fingerprint_costs_that_record_its_rare_words_only(path, damage):
    """Bytes that are no fingerprint, or a cell of another type (an integer is not read as that
    many bytes)."""
    store = SqliteStore(path, DIMENSION)
    store.add(record("damaged", unit_rows(36, 1), rare_words=rare_words.fingerprints(PIECES[:1])))
    store.close()
    with sqlite3.connect(path) as editor:
        editor.execute("UPDATE generations SET rare_words = ? WHERE generation_id = 'damaged'", (damage,))
    store = SqliteStore(path, DIMENSION)
    (match,) = store.search("acme", unit_rows(36, 1), 5, rare_words.fingerprints(PIECES[:1])).matches
    assert match.generation_id == "damaged" and match.similarity > 0.99 and match.rare_word_similarity == 0.0
    store.close()
