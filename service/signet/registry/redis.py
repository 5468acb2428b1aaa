"""The generation registry of distributed mode: every API pod reads and writes the same Redis.

Per tenant and shard, Redis holds a STREAM, a log of ``add`` and ``erase`` entries, and one
string per record: its float16 vectors, its rare words (rare_words.to_bytes; the add entry's
``r`` is their length), then its text when the operator keeps texts, which
Redis expires itself at the record's ``expires_at`` (SET ... PXAT). Each pod keeps a mirror
per tenant, a VectorIndex and the last entry it read of each stream, and reads what is new
before every search, erase and count: so a record erased through one pod is never returned
by another, which reads the erase entry before it answers.

Why the bytes live outside the stream: XDEL and trimming only flag a stream entry as deleted,
and Redis frees it once every entry of its node (up to 4096 bytes) is gone; until then its
bytes stay in memory and in every RDB snapshot. Measured on Redis 7.0.15: of two records of 1
or 2 pieces added in turn, the first's vector was still in DUMP and in the RDB file after its
XDEL, for as long as the second lived (up to the retention); records of 3 pieces or more fill
a node each, which XDEL frees. A record's own value goes at once when its erasure overwrites
it (with a tombstone, below) or it expires, so erasure and retention delete the vectors and
the text. Stream entries hold ids, key ids and times only.

Erasure leaves a tombstone (registry/store.py, TOMBSTONE_SECONDS): the record's key is SET to
the empty string (a record's value never is: it holds one piece at least) for TOMBSTONE_SECONDS,
or for the erased record's remaining lifetime if longer. An add writes only if the key does not
exist, and its add entry only then (one script): so a generation erased through one pod before
the pod that served it recorded it is never written. Mirrors skip an add whose key holds a
tombstone. An erase entry is written only when a record was there to erase: an erase of an
unknown id (any API key may ask one) leaves only the tombstone, which expires, and so cannot
grow a stream that no add would trim.

Keys: ``<namespace>:provenance:{<tenant digest>:<shard>}`` for a stream, and that followed by
``:<id digest>`` for its records. The braces put a stream and its records in one cluster slot
(one script writes both) and a tenant's shards in different slots, so they spread over the nodes.
A record's shard, and so its keys, depend on the number of shards: a deployment that changes
it no longer finds, nor erases, the records written before, until they expire.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import redis.exceptions
import scipy.sparse
from redis.commands.core import Script

from signet.provenance import rare_words
from signet.provenance.index import VectorIndex
from signet.redis_link import RedisLink, RedisUnavailable
from signet.registry.store import (
    TOMBSTONE_SECONDS,
    GenerationRecord,
    SearchResult,
    StoreUnavailable,
    checked_fingerprint,
    match_of,
    stored_rare_words,
)

T = TypeVar("T")
# Refusals of a Redis that is up: full under its maxmemory (noeviction, the deployment's
# setting), a replica during a failover, a cluster moving or losing slots. An erasure met by
# one must be retried, so it is a 503 with Retry-After, not a 500.
_REFUSED_FOR_NOW = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MasterDownError among them
)
logger = logging.getLogger(__name__)

# Entries read per stream and round trip. An add entry is about 150 bytes, but each one's
# record is fetched in the same round: 1000 records of 20 pieces are 15 MB.
SYNC_BATCH = 1000

Entry = tuple[bytes, dict[bytes, bytes]]  # stream entry id, fields

# A record's key holds this once the record is erased (or its id erased before its add).
TOMBSTONE = b""

# KEYS: the record's key, its stream. ARGV: the record's value, its expiry (PXAT), the stream's
# MINID, then the add entry's fields and values. The entry is written only with the record: an
# add refused (a live record or a tombstone holds the key) writes nothing. A script, not a MULTI,
# since the XADD depends on the SET's reply. 1: written.
_ADD_SCRIPT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then
    return 0
end
redis.call('XADD', KEYS[2], 'MINID', '=', ARGV[3], '*', unpack(ARGV, 4))
return 1
"""

# KEYS: the record's key, its stream. ARGV: the tombstone's shortest lifetime (ms), the record's
# add entry ('' when the mirror lacks it), the generation id, the erase entry's MINID (''
# unknown). A record's value is never empty, so STRLEN tells a record (> 0) from a tombstone or
# no key (0). The tombstone outlives whatever the key held (a record, or an earlier tombstone
# of a longer one), and SET frees the record's bytes as DEL would. The erase entry is written
# only for a record that was there. 1: a record was erased.
_ERASE_SCRIPT = """
local existed = redis.call('STRLEN', KEYS[1]) > 0
local lifetime = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left > lifetime then
    lifetime = left
end
redis.call('SET', KEYS[1], '', 'PX', lifetime)
if ARGV[2] ~= '' then
    redis.call('XDEL', KEYS[2], ARGV[2])
end
if not existed then
    return 0
end
if ARGV[4] ~= '' then
    redis.call('XADD', KEYS[2], 'MINID', '=', ARGV[4], '*', 'op', 'erase', 'id', ARGV[3])
else
    redis.call('XADD', KEYS[2], '*', 'op', 'erase', 'id', ARGV[3])
end
return 1
"""


def shard_of(generation_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(generation_id.encode()).digest()[:8], "big") % shards


def _digest(text: str) -> str:
    """Names of any length and characters become safe key parts; 128 bits: no two collide."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    milliseconds, sequence = entry_id.split(b"-")
    return int(milliseconds), int(sequence)


def _trim_below(now: float, retention_seconds: float) -> str:
    """MINID for an XADD: entries older than the retention go (stream ids are milliseconds)."""
    return str(max(0, int((now - retention_seconds) * 1000)))


# A tenant's mirror unused this long is forgotten at the store's next call: its memory goes,
# and so do the vectors of records erased through other pods or expired since, which only a
# sync or a search of that tenant would have removed. Its next use reads the tenant's log
# again: 3.9 s at 100,000 records, 43 s at a million (bench/provenance_scale.py), so not
# every few minutes.
MIRROR_IDLE_SECONDS = 3600.0


@dataclass
class _Mirror:
    index: VectorIndex
    last_ids: list[bytes | None]  # per shard: the last entry read
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


class RedisStore:
    def __init__(self, link: RedisLink, dimension: int, shards: int = 4) -> None:
        if shards < 1:
            raise ValueError("a registry needs at least one shard")
        self.dimension = dimension
        self.shards = shards
        self._link = link
        self._mirrors: dict[str, _Mirror] = {}
        self._mirrors_lock = threading.Lock()
        self._scripts: dict[str, Script] = {}  # source -> redis-py Script, made at first use

    def stream_key(self, tenant: str, shard: int) -> str:
        return self._link.key("provenance", f"{{{_digest(tenant)}:{shard}}}")

    def record_key(self, tenant: str, generation_id: str) -> str:
        return f"{self.stream_key(tenant, shard_of(generation_id, self.shards))}:{_digest(generation_id)}"

    def add(self, record: GenerationRecord) -> None:
        """One script: the record's key, unless it exists (a second add, or one of an erased
        id, is ignored), and then only its add entry. Atomic, so an add retried after a lost
        reply finds both written or neither."""
        now = time.time()
        if record.expires_at <= now:
            return  # nothing to keep
        vectors = checked_fingerprint(record, self.dimension)
        rare = b"" if record.rare_words is None else rare_words.to_bytes(record.rare_words)
        value = vectors.astype("<f2").tobytes() + rare + (b"" if record.text is None else record.text.encode())
        fields = {"op": "add", "id": record.generation_id, "p": str(len(vectors))}
        if record.rare_words is not None:
            fields["r"] = str(len(rare))
        fields |= {"t": repr(record.created_at), "e": repr(record.expires_at)}
        if record.key_id is not None:
            fields["k"] = record.key_id
        if record.text is not None:
            # "2": the text follows the rare words. A pod of an earlier version reads a text only
            # under "1", from right after the vectors: it skips this one instead of failing on it.
            fields["x"] = "1" if record.rare_words is None else "2"
        self._forget_idle(time.monotonic())
        stream = self.stream_key(record.tenant, shard_of(record.generation_id, self.shards))
        key = self.record_key(record.tenant, record.generation_id)
        trim = _trim_below(now, record.expires_at - record.created_at)
        arguments = [value, math.ceil(record.expires_at * 1000), trim, *itertools.chain.from_iterable(fields.items())]
        self._call(lambda client: self._script(client, _ADD_SCRIPT)(keys=[key, stream], args=arguments, client=client))

    def search(
        self, tenant: str, vectors: np.ndarray, limit: int, rare_words: scipy.sparse.csr_matrix | None = None
    ) -> SearchResult:
        queries = np.asarray(vectors, np.float32)
        mirror = self._mirror(tenant)
        with mirror.lock:
            self._sync(tenant, mirror)
            now = time.time()
            mirror.index.drop_expired(now)
            found, compared = mirror.index.search(queries, limit, now, rare_words)
        return SearchResult([match_of(item) for item in found], compared)

    def erase(self, tenant: str, generation_id: str) -> bool:
        """One script: a tombstone replaces the record's key (its bytes are gone), its add entry
        is XDEL'd, and, when a record was there, an erase entry tells the other pods' mirrors.
        Whether one was is the key's to say, not this mirror's: another pod's mirror may hold a
        record this one lacks (its add entry written after this sync, or trimmed early by a
        later add of a shorter retention while its key lives on)."""
        mirror = self._mirror(tenant)
        with mirror.lock:
            self._sync(tenant, mirror)
            now = time.time()
            record = mirror.index.get(generation_id)
            stream = self.stream_key(tenant, shard_of(generation_id, self.shards))
            key = self.record_key(tenant, generation_id)
            # Entries are kept as long as the record would have been. Its retention is unknown only
            # when this mirror lacks a record the key holds: then the entry trims nothing (there
            # is at most one such entry per record, and later adds trim it).
            trim = "" if record is None else _trim_below(now, record.expires_at - record.created_at)
            locator = "" if record is None or record.locator is None else record.locator
            arguments = [math.ceil(TOMBSTONE_SECONDS * 1000), locator, generation_id, trim]
            erased = self._call(
                lambda client: self._script(client, _ERASE_SCRIPT)(keys=[key, stream], args=arguments, client=client)
            )
            mirror.index.remove(generation_id)
        return bool(erased) or (record is not None and record.expires_at > now)

    def count(self, tenant: str) -> int:
        mirror = self._mirror(tenant)
        with mirror.lock:
            self._sync(tenant, mirror)
            mirror.index.drop_expired(time.time())
            return mirror.index.num_live_rows

    def close(self) -> None:
        """Forget the mirrors; the link is the caller's to close."""
        with self._mirrors_lock:
            self._mirrors.clear()

    def resident_vectors(self) -> int:
        with self._mirrors_lock:
            mirrors = list(self._mirrors.values())
        return sum(mirror.index.num_live_rows for mirror in mirrors)

    def _mirror(self, tenant: str) -> _Mirror:
        """The tenant's mirror, made empty at its first use; mirrors idle for MIRROR_IDLE_SECONDS
        are forgotten first."""
        now = time.monotonic()
        self._forget_idle(now)
        with self._mirrors_lock:
            mirror = self._mirrors.get(tenant)
            if mirror is None:
                index = VectorIndex(self.dimension, rare_words.BUCKETS)
                mirror = self._mirrors[tenant] = _Mirror(index, [None] * self.shards)
            mirror.last_used = now
            return mirror

    def _forget_idle(self, now: float) -> None:
        """Forget the mirrors unused for MIRROR_IDLE_SECONDS (a thread still using one keeps its
        own reference): every call runs this, adds included, so a pod that only records still
        lets them go."""
        with self._mirrors_lock:
            idle = [name for name, mirror in self._mirrors.items() if now - mirror.last_used > MIRROR_IDLE_SECONDS]
            for name in idle:
                del self._mirrors[name]

    def _script(self, client, source: str) -> Script:
        """The script, registered with the client at its first use (a cluster's client is made
        then, RedisLink.sync); it sends EVALSHA, and SCRIPT LOAD when Redis lacks it. Its two
        keys share a slot (the stream's hash tag), so it runs on a cluster too."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)  # threads racing make equal ones
        return script

    def _call(self, operation: Callable[..., T]) -> T:
        try:
            return self._link.call(operation)
        except RedisUnavailable as error:  # its message names the cause only, never the URL
            raise StoreUnavailable(f"the generation registry is unreachable: {error}") from error
        except _REFUSED_FOR_NOW as error:  # Redis is up but cannot take the command at the moment
            raise StoreUnavailable(
                f"the generation registry refused the command for now ({type(error).__name__})"
            ) from error

    def _sync(self, tenant: str, mirror: _Mirror) -> None:
        """Apply every entry written since the mirror's last read, in order: two round trips
        per SYNC_BATCH entries of each stream (the entries, then their records)."""
        streams = [self.stream_key(tenant, shard) for shard in range(self.shards)]
        pending = list(range(self.shards))
        while pending:
            pending = self._sync_round(tenant, mirror, streams, pending)

    def _sync_round(self, tenant: str, mirror: _Mirror, streams: list[str], shards: list[int]) -> list[int]:
        """One batch of each of ``shards``; the shards with more to read."""
        batches = self._call(lambda client: self._read(client, streams, mirror.last_ids, shards))
        values = self._call(lambda client: self._fetch(client, tenant, batches))
        for shard, (entries, oldest), fetched in zip(shards, batches, values, strict=True):
            self._apply(mirror, shard, entries, oldest, fetched)
        return [shard for shard, (entries, _) in zip(shards, batches, strict=True) if len(entries) == SYNC_BATCH]

    def _read(
        self, client, streams: list[str], last_ids: list[bytes | None], shards: list[int]
    ) -> list[tuple[list[Entry], bytes | None]]:
        """Per shard: the entries after its last read, and then the id of its oldest entry."""
        pipe = client.pipeline(transaction=False)
        for shard in shards:
            last = last_ids[shard]
            pipe.xrange(streams[shard], min=b"-" if last is None else b"(" + last, count=SYNC_BATCH)
            pipe.xrange(streams[shard], count=1)
        replies = pipe.execute()
        return [(replies[2 * i], replies[2 * i + 1][0][0] if replies[2 * i + 1] else None) for i in range(len(shards))]

    def _fetch(self, client, tenant: str, batches: list[tuple[list[Entry], bytes | None]]) -> list[list[bytes | None]]:
        """Per shard, the records of its add entries (None: erased or expired since). GETs in a
        pipeline, not an MGET per shard: redis-py's cluster pipelines refuse multi-key commands."""
        wanted = [
            [self.record_key(tenant, fields[b"id"].decode()) for _, fields in entries if fields.get(b"op") == b"add"]
            for entries, _ in batches
        ]
        if not any(wanted):
            return [[] for _ in batches]
        pipe = client.pipeline(transaction=False)
        for keys in wanted:
            for key in keys:
                pipe.get(key)
        replies = iter(pipe.execute())
        return [[next(replies) for _ in keys] for keys in wanted]

    def _apply(
        self, mirror: _Mirror, shard: int, entries: list[Entry], oldest: bytes | None, values: list[bytes | None]
    ) -> None:
        last = mirror.last_ids[shard]
        if last is not None and (oldest is None or _entry_order(oldest) > _entry_order(last)):
            # Trimming takes entries from the front only, so while the last entry read (or an
            # older one) is still there, nothing unread was trimmed. Otherwise an unread erase
            # entry may be gone: the shard's records are forgotten and read again from what
            # the stream holds, which is the truth, since an erased record's add entry is
            # XDEL'd with it. (The stream's oldest was asked after the entries, so the batch
            # read is the stream from its start.)
            self._forget_shard(mirror.index, shard)
            mirror.last_ids[shard] = None
        fetched = iter(values)
        for entry_id, fields in entries:
            operation, generation_id = fields.get(b"op"), fields.get(b"id", b"").decode()
            if operation == b"add":
                self._apply_add(mirror.index, entry_id, fields, next(fetched))
            elif operation == b"erase":
                mirror.index.remove(generation_id)
        if entries:
            mirror.last_ids[shard] = entries[-1][0]

    def _apply_add(self, index: VectorIndex, entry_id: bytes, fields: dict[bytes, bytes], value: bytes | None) -> None:
        if value is None or value == TOMBSTONE:
            return  # erased (its key holds a tombstone) or expired since it was written
        pieces = int(fields[b"p"])
        size = pieces * self.dimension * 2
        if len(value) < size:
            logger.warning("generation registry: a record of %d bytes, short of its %d pieces", len(value), pieces)
            return
        fingerprint, text = None, None
        rare_size = fields.get(b"r", b"0")
        if not rare_size.isdigit() or size + int(rare_size) > len(value):
            # Damaged: where the rare words end, and the text starts, is unknown. The record still
            # counts and matches by meaning.
            logger.warning("generation registry: a record's rare words are unreadable (length %r)", rare_size)
        else:
            end = size + int(rare_size)
            if b"r" in fields:
                fingerprint = stored_rare_words(value[size:end], pieces)
            if fields.get(b"x") in (b"1", b"2"):
                text = value[end:].decode(errors="replace")
        key_id = fields.get(b"k")
        index.add(
            fields[b"id"].decode(),
            None if key_id is None else key_id.decode(),
            float(fields[b"t"]),
            float(fields[b"e"]),
            np.frombuffer(value, "<f2", count=pieces * self.dimension).reshape(pieces, self.dimension),
            text,
            locator=entry_id.decode(),
            rare_words=fingerprint,
        )

    def _forget_shard(self, index: VectorIndex, shard: int) -> None:
        for generation_id in index.generation_ids():
            if shard_of(generation_id, self.shards) == shard:
                index.remove(generation_id)
