"""signet.registry.redis against a real Redis: two RedisStore instances, each on a RedisLink of
its own with the same settings, are two API pods sharing one registry.

Vectors come from fixed seeds. Waits for expiry are on the wall clock with 0.1 s or more of
margin; Redis expires a record's key at its PXAT by its own clock, the same machine's here."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.redis_cluster import RunningCluster, running_redis_cluster
from harness.redis_servers import running_redis
from harness.services import redis_test_url
from signet.provenance import rare_words
from signet.provenance.index import VectorIndex
from signet.redis_link import RedisLink
from signet.registry import redis as registry_module
from signet.registry.redis import RedisStore, shard_of
from signet.registry.store import StoreUnavailable
from tests.registry_records import PIECES, REWORDED_PIECE, record
from tests.registry_records import unit_rows as shared_unit_rows

DIMENSION = 384


unit_rows = functools.partial(shared_unit_rows, dimension=DIMENSION)


def ids(result) -> list[str]:
    return [match.generation_id for match in result.matches]


def closed(link: RedisLink) -> None:
    asyncio.run(link.aclose())


@pytest.fixture
def pod_a(redis_link) -> RedisStore:
    return RedisStore(redis_link, DIMENSION)


@pytest.fixture
def pod_b(redis_namespace) -> Iterator[RedisStore]:
    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=2.0)
    yield RedisStore(link, DIMENSION)
    closed(link)


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client, to look at what Redis holds."""
    client = redis.Redis.from_url(redis_test_url())
    yield client
    client.close()


def add_entries(raw: redis.Redis, store: RedisStore, tenant: str, generation_id: str) -> list[bytes]:
    """The ids of the add entries for ``generation_id`` in its stream."""
    stream = store.stream_key(tenant, shard_of(generation_id, store.shards))
    return [
        entry_id
        for entry_id, fields in raw.xrange(stream)
        if fields[b"op"] == b"add" and fields[b"id"] == generation_id.encode()
    ]


def test_a_record_added_through_one_pod_is_found_through_the_other(pod_a, pod_b):
    pod_a.add(record("g1", unit_rows(1, 3), text="the text"))
    pod_a.add(record("g2", unit_rows(2, 2), key_id=None))
    result = pod_b.search("acme", unit_rows(1, 3)[1:2], 5)
    assert ids(result) == ["g1", "g2"] and result.num_vectors == 5
    assert result.matches[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert (result.matches[0].key_id, result.matches[0].text) == ("key-1", "the text")
    assert (result.matches[1].key_id, result.matches[1].text) == (None, None)
    pod_b.add(record("g3", unit_rows(3, 1)))  # and the other way round, after A's mirror exists
    assert pod_a.count("acme") == 6 and ids(pod_a.search("acme", unit_rows(3, 1), 1)) == ["g3"]


def test_an_erase_through_one_pod_hides_the_record_from_the_other_and_deletes_its_bytes(pod_a, pod_b, raw):
    """Before the erase DUMP shows the record's text and vector bytes (so the check below can
    see them); after it no key of the namespace holds them, in any form Redis would save. The
    record that stays shares the erased one's stream: were vectors kept in stream entries, the
    XDEL'd one would still be in the DUMP of that stream (see the module's docstring)."""
    secret, vectors = "secret-7f3e-generated-text", unit_rows(4, 2)
    shard = shard_of("gone", pod_a.shards)
    stays = next(f"stays-{n}" for n in range(1000) if shard_of(f"stays-{n}", pod_a.shards) == shard)
    fingerprint = rare_words.fingerprints(PIECES)
    pod_a.add(record("gone", vectors, text=secret, rare_words=fingerprint))
    pod_a.add(record(stays, unit_rows(5, 1)))
    assert ids(pod_a.search("acme", vectors, 5)) == ["gone", stays]  # A's mirror holds both
    key = pod_a.record_key("acme", "gone")
    assert secret.encode() in raw.dump(key) and vectors[0].astype("<f2").tobytes() in raw.dump(key)
    assert rare_words.to_bytes(fingerprint) in raw.dump(key)

    assert pod_b.erase("acme", "gone")
    assert ids(pod_a.search("acme", vectors, 5)) == [stays] and pod_a.count("acme") == 1
    assert not pod_a.erase("acme", "gone") and not pod_b.erase("acme", "never-there")
    assert raw.get(key) == registry_module.TOMBSTONE and add_entries(raw, pod_a, "acme", "gone") == []
    names = list(raw.scan_iter(match=f"{pod_a._link.namespace}:*"))
    assert names  # the streams and the other record
    for name in names:
        dumped = raw.dump(name)
        assert secret.encode() not in dumped and vectors[0].astype("<f2").tobytes() not in dumped
        assert fingerprint.data.astype("<f2").tobytes() not in dumped


def test_rare_words_and_texts_travel_between_pods(pod_a, pod_b):
    """A record's value is its vectors, its rare words, then its text: each read back whole."""
    pod_a.add(record("g1", unit_rows(40, 2), text="the text", rare_words=rare_words.fingerprints(PIECES)))
    pod_a.add(record("g2", unit_rows(41, 1), text="no rare words kept"))
    query = rare_words.fingerprints([REWORDED_PIECE])
    matches = {match.generation_id: match for match in pod_b.search("acme", unit_rows(42, 1), 5, query).matches}
    assert matches["g1"].rare_word_similarity > 0.7 and matches["g1"].text == "the text"
    assert matches["g2"].rare_word_similarity == 0.0 and matches["g2"].text == "no rare words kept"


def test_a_second_add_of_an_id_is_ignored(pod_a, pod_b, raw):
    pod_a.add(record("same", unit_rows(6, 1), key_id="first"))
    pod_b.add(record("same", unit_rows(7, 3), key_id="second", text="second"))
    result = pod_b.search("acme", unit_rows(6, 1), 5)
    assert [(match.key_id, match.text) for match in result.matches] == [("first", None)]
    assert result.matches[0].similarity == pytest.approx(1.0, abs=1e-3)  # the first's vector too
    assert result.num_vectors == 1 and pod_a.count("acme") == 1
    assert len(add_entries(raw, pod_a, "acme", "same")) == 1  # the refused add wrote nothing
    assert pod_a.erase("acme", "same") and pod_b.count("acme") == 0


def same_shard(store: RedisStore, generation_id: str, prefix: str) -> str:
    """An id of another generation whose records and entries share ``generation_id``'s stream."""
    shard = shard_of(generation_id, store.shards)
    return next(f"{prefix}-{n}" for n in range(1000) if shard_of(f"{prefix}-{n}", store.shards) == shard)


def test_an_erase_before_the_add_refuses_it_and_writes_no_entry(pod_a, pod_b, raw):
    """A DELETE through pod B of a generation pod A has not recorded yet: B finds nothing
    (False: the route answers 404), writes no stream entry (an erase of an unknown id, which
    any API key may ask, must not grow a stream), and A's late add then writes nothing."""
    stream = pod_a.stream_key("acme", shard_of("late", pod_a.shards))
    pod_a.add(record(same_shard(pod_a, "late", "other"), unit_rows(20, 1)))  # the stream exists
    assert raw.xlen(stream) == 1
    assert not pod_b.erase("acme", "late")
    key = pod_a.record_key("acme", "late")
    assert raw.xlen(stream) == 1 and raw.get(key) == registry_module.TOMBSTONE
    assert 599_000 < raw.pttl(key) <= 600_000  # TOMBSTONE_SECONDS
    pod_a.add(record("late", unit_rows(21, 2), text="late text"))
    assert raw.xlen(stream) == 1 and raw.get(key) == registry_module.TOMBSTONE  # nothing written
    for pod in (pod_a, pod_b):
        assert "late" not in ids(pod.search("acme", unit_rows(21, 2), 5)) and pod.count("acme") == 1
    assert not pod_a.erase("acme", "late") and raw.xlen(stream) == 1 and raw.pttl(key) > 599_000


def test_an_erased_record_cannot_be_added_again(pod_a, pod_b, raw):
    """The tombstone of a record lasts its remaining lifetime when longer than TOMBSTONE_SECONDS:
    a retried add of the record, however late, cannot bring it back."""
    pod_a.add(record("erased", unit_rows(22, 1), seconds=3600.0))
    stream = pod_a.stream_key("acme", shard_of("erased", pod_a.shards))
    assert pod_b.erase("acme", "erased")
    entries = raw.xrange(stream)
    assert [fields[b"op"] for _, fields in entries] == [b"erase"]  # the add entry XDEL'd
    key = pod_a.record_key("acme", "erased")
    assert 3_500_000 < raw.pttl(key) <= 3_600_000
    pod_a.add(record("erased", unit_rows(22, 1)))
    pod_b.add(record("erased", unit_rows(22, 1)))
    assert raw.xrange(stream) == entries and raw.get(key) == registry_module.TOMBSTONE
    assert ids(pod_a.search("acme", unit_rows(22, 1), 5)) == [] and pod_b.count("acme") == 0


def test_a_tombstone_expires_and_then_lets_the_id_in(pod_a, pod_b, raw, monkeypatch):
    monkeypatch.setattr(registry_module, "TOMBSTONE_SECONDS", 0.5)
    assert not pod_b.erase("acme", "g1")
    pod_a.add(record("g1", unit_rows(23, 1)))
    assert pod_b.count("acme") == 0
    time.sleep(0.6)
    assert not raw.exists(pod_a.record_key("acme", "g1"))  # Redis expired the tombstone itself
    pod_a.add(record("g1", unit_rows(23, 1)))
    assert ids(pod_b.search("acme", unit_rows(23, 1), 5)) == ["g1"]


def test_a_mirror_skips_an_add_entry_whose_key_holds_a_tombstone(pod_a, pod_b, raw, caplog):
    """An add entry the eraser's mirror had not read (written after its sync) is not XDEL'd:
    another mirror reading it finds the tombstone, and skips the record without a warning."""
    pod_a.add(record("raced", unit_rows(26, 1)))
    raw.set(pod_a.record_key("acme", "raced"), registry_module.TOMBSTONE, keepttl=True)  # as such an erase leaves it
    assert len(add_entries(raw, pod_a, "acme", "raced")) == 1
    assert ids(pod_b.search("acme", unit_rows(26, 1), 5)) == [] and pod_b.count("acme") == 0
    assert not [entry for entry in caplog.records if entry.name == registry_module.__name__]


def test_an_erase_entry_trims_by_its_records_retention(pod_a, raw):
    """An erase entry is written with MINID, the erased record's retention (1 s) before now: the
    add entry of a record of 0.3 s, written 1.1 s earlier, goes with it."""
    brief = record("brief", unit_rows(24, 1), seconds=0.3)
    pod_a.add(brief)
    time.sleep(0.6)
    erased = same_shard(pod_a, "brief", "erased")
    pod_a.add(record(erased, unit_rows(25, 1), seconds=1.0))  # MINID 0.4 s before brief: kept
    assert len(add_entries(raw, pod_a, "acme", "brief")) == 1
    assert pod_a.count("acme") == 1  # the mirror holds the record to erase (brief has expired)
    time.sleep(max(0.0, brief.created_at + 1.1 - time.time()))
    assert pod_a.erase("acme", erased)
    stream = pod_a.stream_key("acme", shard_of("brief", pod_a.shards))
    assert [fields[b"op"] for _, fields in raw.xrange(stream)] == [b"erase"]


def test_an_expired_record_is_never_returned_and_a_later_add_trims_it(pod_a, pod_b, raw):
    """A record of 1 s: found before its expiry; after it, its key is gone (Redis's PXAT) and
    neither pod returns or counts it. Its add entry stays in the stream until the next XADD
    to that stream, here of a second 1 s record: MINID (exact) = now - 1 s removes it."""
    brief = record("brief", unit_rows(8, 2), seconds=1.0)
    pod_a.add(brief)
    pod_a.add(record("lasting", unit_rows(9, 1)))
    assert ids(pod_b.search("acme", unit_rows(8, 1), 5)) == ["brief", "lasting"]
    time.sleep(max(0.0, brief.expires_at - time.time()) + 0.1)
    assert ids(pod_a.search("acme", unit_rows(8, 1), 5)) == ["lasting"]
    assert ids(pod_b.search("acme", unit_rows(8, 1), 5)) == ["lasting"] and pod_b.count("acme") == 1
    assert not raw.exists(pod_a.record_key("acme", "brief"))
    assert len(add_entries(raw, pod_a, "acme", "brief")) == 1  # no XADD to its stream since

    shard = shard_of("brief", pod_a.shards)
    later = next(f"later-{n}" for n in range(1000) if shard_of(f"later-{n}", pod_a.shards) == shard)
    pod_b.add(record(later, unit_rows(10, 1), seconds=1.0))
    assert add_entries(raw, pod_a, "acme", "brief") == []
    assert len(add_entries(raw, pod_a, "acme", later)) == 1
    assert not pod_a.erase("acme", "brief")


def test_tenants_never_see_each_others_records(pod_a, pod_b):
    same = unit_rows(11, 2)
    pod_a.add(record("acme-1", same, tenant="acme"))
    pod_a.add(record("globex-1", same, tenant="globex"))
    pod_a.add(record("globex-2", unit_rows(12, 1), tenant="globex"))
    assert ids(pod_b.search("globex", same, 10)) == ["globex-1", "globex-2"]
    assert ids(pod_b.search("acme", same, 10)) == ["acme-1"]
    assert ids(pod_b.search("initech", same, 10)) == [] and pod_b.count("initech") == 0
    assert not pod_b.erase("globex", "acme-1")
    assert ids(pod_a.search("acme", same, 10)) == ["acme-1"]


def test_a_mirror_that_missed_a_trimmed_erase_entry_reads_its_streams_again(pod_a, pod_b, raw):
    """An idle pod whose unread erase entry was trimmed away cannot hear of the erase: it sees
    that nothing it read is left in the stream, forgets that shard and reads it again."""
    pod_a.add(record("erased", unit_rows(13, 1)))
    assert ids(pod_a.search("acme", unit_rows(13, 1), 5)) == ["erased"]
    assert pod_b.erase("acme", "erased")
    stream = pod_a.stream_key("acme", shard_of("erased", pod_a.shards))
    raw.xtrim(stream, minid=str(int(time.time() * 1000) + 1000), approximate=False)  # the erase entry too
    assert raw.xlen(stream) == 0
    assert ids(pod_a.search("acme", unit_rows(13, 1), 5)) == [] and pod_a.count("acme") == 0
    pod_b.add(record("after", unit_rows(14, 1)))
    assert ids(pod_a.search("acme", unit_rows(14, 1), 5)) == ["after"]


def test_many_entries_are_read_in_rounds(pod_a, pod_b, monkeypatch):
    monkeypatch.setattr(registry_module, "SYNC_BATCH", 3)
    for number in range(20):
        pod_a.add(record(f"g{number:02d}", unit_rows(100 + number, 1 + number % 3)))
    assert pod_a.erase("acme", "g05")
    result = pod_b.search("acme", unit_rows(107, 2), 30)
    assert len(result.matches) == 19 and "g05" not in ids(result) and ids(result)[0] == "g07"
    assert result.num_vectors == sum(1 + number % 3 for number in range(20)) - (1 + 5 % 3)


def test_an_unreachable_redis_is_store_unavailable(unreachable_redis_link):
    store = RedisStore(unreachable_redis_link, DIMENSION)
    with pytest.raises(StoreUnavailable) as refused:
        store.add(record("g1", unit_rows(15, 1)))
    assert "the generation registry is unreachable" in str(refused.value)
    for call in (
        lambda: store.search("acme", unit_rows(15, 1), 5),
        lambda: store.erase("acme", "g1"),
        lambda: store.count("acme"),
    ):
        with pytest.raises(StoreUnavailable):
            call()


def test_a_redis_that_stops_is_store_unavailable_and_no_message_names_its_password(tmp_path: Path):
    with running_redis(tmp_path, "--requirepass", "hunter2") as port:
        link = RedisLink(f"redis://:hunter2@127.0.0.1:{port}/0", "signet-test-stopping", timeout_seconds=0.5)
        store = RedisStore(link, DIMENSION)
        store.add(record("g1", unit_rows(16, 1)))
        assert ids(store.search("acme", unit_rows(16, 1), 5)) == ["g1"]
    try:
        with pytest.raises(StoreUnavailable) as refused:
            store.search("acme", unit_rows(16, 1), 5)
        link.record_success()  # else the breaker refuses the next call before it reaches Redis
        with pytest.raises(StoreUnavailable):
            store.add(record("g2", unit_rows(17, 1)))
        assert "hunter2" not in str(refused.value) and str(port) not in str(refused.value)
    finally:
        closed(link)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    with running_redis_cluster() as running:
        yield running


def test_pods_on_a_cluster_share_the_registry_spread_over_its_nodes(cluster):
    namespace = f"signet-test-provenance-{time.time_ns()}"
    links = [RedisLink(cluster.url, namespace, timeout_seconds=0.5, cluster=True) for _ in range(2)]
    try:
        pod_a, pod_b = (RedisStore(link, DIMENSION, shards=8) for link in links)
        for number in range(40):
            pod_a.add(record(f"g{number:02d}", unit_rows(200 + number, 2)))
        assert pod_b.count("acme") == 80
        assert pod_b.erase("acme", "g07")  # one script on the record's and its stream's slot
        pod_a.add(record("g07", unit_rows(207, 2)))  # refused by its tombstone, in a script too
        assert not pod_a.erase("acme", "never-there")
        assert ids(pod_a.search("acme", unit_rows(207, 1), 3))[0] != "g07"
        assert ids(pod_a.search("acme", unit_rows(208, 1), 1)) == ["g08"] and pod_a.count("acme") == 78
        held = {
            port for port in cluster.ports if cluster.cli("--scan", "--pattern", f"{namespace}:*", port=port).split()
        }
        assert len(held) > 1  # 40 records on one of three nodes by chance: 3 * (1/3)**40, never
    finally:
        for link in links:
            closed(link)


def test_a_full_redis_refuses_for_now_and_the_store_says_so(tmp_path: Path):
    """A Redis at its maxmemory (noeviction, as deployed) refuses writes with OOM: an erase then
    must be retried, so it is StoreUnavailable (a 503), not a bug's 500; reads still work."""
    with running_redis(tmp_path) as port:
        link = RedisLink(f"redis://127.0.0.1:{port}/0", "signet-test-full", timeout_seconds=2.0)
        client = redis.Redis(port=port)
        try:
            store = RedisStore(link, DIMENSION)
            store.add(record("g1", unit_rows(18, 1)))
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", 1)  # every write is now over the limit
            with pytest.raises(StoreUnavailable) as refused:
                store.erase("acme", "g1")
            assert "refused the command for now (OutOfMemoryError)" in str(refused.value)
            with pytest.raises(StoreUnavailable):
                store.add(record("g2", unit_rows(19, 1)))
            assert ids(store.search("acme", unit_rows(18, 1), 5)) == ["g1"]
            client.config_set("maxmemory", 0)
            assert store.erase("acme", "g1")
            assert ids(store.search("acme", unit_rows(18, 1), 5)) == []
        finally:
            client.close()
            closed(link)


def test_an_idle_mirror_is_forgotten_with_the_erased_vectors_it_held(pod_a, pod_b, monkeypatch):
    """Pod B mirrored acme, then acme's record was erased through pod A; B never searches acme
    again. At B's next call, after MIRROR_IDLE_SECONDS, acme's mirror and its vectors are gone,
    and a later search of acme reads its log anew."""
    pod_a.add(record("g1", unit_rows(27, 2)))
    assert ids(pod_b.search("acme", unit_rows(27, 2), 5)) == ["g1"]
    assert pod_b.resident_vectors() == 2
    assert pod_a.erase("acme", "g1")
    monkeypatch.setattr(registry_module, "MIRROR_IDLE_SECONDS", 0.2)
    time.sleep(0.3)
    pod_b.add(record("g9", unit_rows(29, 1), tenant="globex"))  # another tenant's call, an add
    assert pod_b.resident_vectors() == 0
    pod_a.add(record("g2", unit_rows(28, 1)))
    assert ids(pod_b.search("acme", unit_rows(28, 1), 5)) == ["g2"]
    assert pod_b.resident_vectors() == 1


@pytest.mark.parametrize("length", [b"x1", b"999999", b"-3"])
def test_a_record_whose_rare_words_are_damaged_still_counts_and_matches_by_meaning(pod_a, length, caplog):
    """A rare-word length Redis holds that cannot be right: the record is kept, by meaning, and its
    text (whose start is unknown) and rare words are left out, logged, never a failed search."""
    vectors = unit_rows(50, 2)
    value = vectors.astype("<f2").tobytes() + rare_words.to_bytes(rare_words.fingerprints(PIECES)) + b"the text"
    fields = {b"op": b"add", b"id": b"damaged", b"p": b"2", b"t": b"1.0", b"e": b"1e12", b"r": length, b"x": b"2"}
    index = VectorIndex(DIMENSION, rare_words.BUCKETS)
    pod_a._apply_add(index, b"1-0", fields, value)
    record = index.get("damaged")
    assert record is not None and record.text is None and "rare words are unreadable" in caplog.text
    (found,), _ = index.search(vectors[:1], 5, 2.0, rare_words.fingerprints(PIECES[:1]))
    assert found.similarity > 0.99 and found.rare_word_similarity == 0.0
