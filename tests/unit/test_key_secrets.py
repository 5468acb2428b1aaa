"""Keys at rest: keyed fingerprints, the fingerprint secret, and warnings about keys that
hold too few bits to stay secret."""

import hashlib
import json
import logging
import random
import re

import pytest
from pydantic import SecretStr

from signet.keys import KeyRegistry, KeyRegistryError, check_fingerprints_may_be_shared, ensure_development_keys
from signet.watermark.gumbel import GumbelKey

MIN_SECRET_BITS = 64  # the bar of the start-up warning (watermark/strength.py)

STRONG_SECRET = "0f1c6e2b9a47d3855ce0b17a2f6d94c3e81b5a07d6c2f9e4"  # 48 hex digits
FINGERPRINT_SECRET = "9d2e7b41c08fa6357e1d2c94b0a8f63e5d17c2a9b4e0f861"
SMALL_KEY = 42
CANDIDATES = range(1001)  # what anyone can try in well under a second


def write_keys(tmp_path, document, name="keys.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def keys_document(fingerprint_secret=FINGERPRINT_SECRET, gumbel_key=SMALL_KEY, kgw_secret=STRONG_SECRET):
    document = {
        "keys": [
            {"key_id": "main", "secret": kgw_secret},
            {"key_id": "vllm", "scheme": "gumbel", "key": gumbel_key},
        ]
    }
    if fingerprint_secret is not None:
        document["fingerprint_secret"] = fingerprint_secret
    return document


def unkeyed_fingerprint(key: GumbelKey) -> str:
    """The fingerprint of Signet up to a793fa9: a plain SHA-256 of the key's fields."""
    fields = {name: value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in key}
    canonical = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(b"signet key fingerprint v1\0" + canonical).hexdigest()[:32]


@pytest.mark.parametrize("fingerprint_secret", [FINGERPRINT_SECRET, None], ids=["set", "derived"])
def test_a_small_key_is_not_found_by_trying_small_keys_against_its_fingerprint(tmp_path, fingerprint_secret):
    from signet.keys import derived_fingerprint_secret

    registry = KeyRegistry.load(write_keys(tmp_path, keys_document(fingerprint_secret)))
    fingerprint = registry.fingerprint("vllm")
    guesses = [GumbelKey(key_id="vllm", scheme="gumbel", key=candidate) for candidate in CANDIDATES]
    # The attack that worked on a793fa9: the unkeyed digest of each guess.
    assert unkeyed_fingerprint(guesses[SMALL_KEY]) != fingerprint
    assert all(unkeyed_fingerprint(guess) != fingerprint for guess in guesses)
    # Knowing how a missing fingerprint_secret is derived does not help either: it takes
    # every key's secret, and the strong key's is not guessable.
    for guess in guesses:
        alone = KeyRegistry([guess], "vllm", tmp_path, derived_fingerprint_secret([guess]))
        assert alone.fingerprint("vllm") != fingerprint


def test_registries_loaded_from_one_file_agree_on_every_fingerprint(tmp_path):
    for fingerprint_secret in (FINGERPRINT_SECRET, None):
        path = write_keys(tmp_path, keys_document(fingerprint_secret))
        first, second = KeyRegistry.load(path), KeyRegistry.load(path)
        fingerprints = {key_id: first.fingerprint(key_id) for key_id in first.key_ids}
        assert fingerprints == {key_id: second.fingerprint(key_id) for key_id in second.key_ids}
        assert len(set(fingerprints.values())) == 2
        assert first.fingerprint(None) == fingerprints["main"]  # the default key


def test_with_a_fingerprint_secret_changing_one_key_leaves_the_others_fingerprints(tmp_path):
    before = KeyRegistry.load(write_keys(tmp_path, keys_document(), "before.json"))
    after = KeyRegistry.load(write_keys(tmp_path, keys_document(gumbel_key=SMALL_KEY + 1), "after.json"))
    assert after.fingerprint("main") == before.fingerprint("main")
    assert after.fingerprint("vllm") != before.fingerprint("vllm")
    other_secret = KeyRegistry.load(write_keys(tmp_path, keys_document(FINGERPRINT_SECRET[::-1]), "other.json"))
    assert all(other_secret.fingerprint(key_id) != before.fingerprint(key_id) for key_id in before.key_ids)


def test_without_one_changing_any_key_changes_every_fingerprint(tmp_path):
    """The cost of the derived secret (keys.py): a keys-file rollout refuses jobs for every key."""
    before = KeyRegistry.load(write_keys(tmp_path, keys_document(None), "before.json"))
    after = KeyRegistry.load(write_keys(tmp_path, keys_document(None, gumbel_key=SMALL_KEY + 1), "after.json"))
    assert all(after.fingerprint(key_id) != before.fingerprint(key_id) for key_id in before.key_ids)


def test_a_file_without_a_fingerprint_secret_loads_with_a_warning(tmp_path, caplog):
    path = write_keys(tmp_path, keys_document(None, gumbel_key=2**63 + 12345))
    with caplog.at_level(logging.WARNING, logger="signet.keys"):
        KeyRegistry.load(path)
    (record,) = caplog.records
    assert "sets no fingerprint_secret" in record.getMessage() and str(path) in record.getMessage()


def test_a_fingerprint_secret_needs_32_characters_and_is_never_echoed(tmp_path):
    with pytest.raises(KeyRegistryError, match="fingerprint_secret") as error:
        KeyRegistry.load(write_keys(tmp_path, keys_document(FINGERPRINT_SECRET[:31])))
    assert FINGERPRINT_SECRET[:31] not in str(error.value)
    assert KeyRegistry.load(write_keys(tmp_path, keys_document(FINGERPRINT_SECRET[:32]))).key_ids == ["main", "vllm"]


def test_the_development_keys_file_has_its_own_random_fingerprint_secret(tmp_path, caplog):
    first = json.loads(ensure_development_keys(tmp_path / "a").read_text())
    second = json.loads(ensure_development_keys(tmp_path / "b").read_text())
    assert len(first["fingerprint_secret"]) == 64 and first["fingerprint_secret"] != second["fingerprint_secret"]
    with caplog.at_level(logging.WARNING, logger="signet.keys"):
        KeyRegistry.load(tmp_path / "a" / "development-keys.json")
    assert caplog.records == []  # neither derived nor weak


def test_keys_with_few_bits_are_named_at_load_never_their_secrets(tmp_path, caplog):
    weak_secret = "ab" * 12  # 24 characters, but 1 bit each: its letters repeat
    document = {
        "keys": [
            {"key_id": "strong", "secret": STRONG_SECRET},
            {"key_id": "random-int", "scheme": "gumbel", "key": 0xC3A5_9E1F_7B22_D048},
            {"key_id": "repeated", "secret": weak_secret},
            {"key_id": "small", "scheme": "gumbel", "key": 4242},
            {"key_id": "published", "scheme": "kgw-lefthash"},  # transformers' default hashing key
        ],
    }
    with caplog.at_level(logging.WARNING, logger="signet.keys"):
        KeyRegistry.load(write_keys(tmp_path, document))
    messages = [record.getMessage() for record in caplog.records if record.getMessage().startswith("key ")]
    assert [message.split("'")[1] for message in messages] == ["repeated", "small", "published"]
    assert all(f"under {MIN_SECRET_BITS}" in message for message in messages)
    for secret in (weak_secret, "4242", "15485863", STRONG_SECRET, str(0xC3A5_9E1F_7B22_D048)):
        assert all(secret not in record.getMessage() for record in caplog.records)


def test_secret_strength_estimates_err_low():
    from signet.watermark.strength import integer_bits, text_bits

    assert integer_bits(42) == 8 and integer_bits(2**64 - 1) == 64 and integer_bits(0) == 0
    # A random 8-byte key is shorter than 64 bits half the time: whole bytes keep it at 64.
    assert integer_bits(2**63 - 1) == 64 and integer_bits(2**56 - 1) == 56
    assert text_bits("") == 0 and text_bits("0" * 64) == 0
    assert text_bits("ab" * 32) == pytest.approx(64)  # 1 bit per character, not log2(26)
    # 32 random bytes in hex, as `openssl rand -hex 32` makes them (256 bits), score well above
    # the bar, and so do 16 (128 bits); the estimate stays under the true entropy. Fixed
    # draws (seeded), so the test cannot fail by chance.
    draws = random.Random(16)
    assert 200 < text_bits(draws.randbytes(32).hex()) <= 256
    assert MIN_SECRET_BITS < text_bits(draws.randbytes(16).hex()) <= 128


def test_a_detect_cache_name_cannot_be_recomputed_without_the_fingerprint_secret(tmp_path):
    """Whoever reads Redis can guess every field of a cache entry's document but the text,
    and reads fingerprints in queued jobs: a plain digest would confirm a guessed text."""
    from signet.api.detect.caching import cache_key, text_digest

    registry = KeyRegistry.load(write_keys(tmp_path, keys_document(), "a.json"))
    document = {"tenant": "moderation", "keys": [["gumbel", "vllm", registry.fingerprint("vllm"), text_digest("hi")]]}
    name = cache_key(registry, document)
    assert name == cache_key(KeyRegistry.load(write_keys(tmp_path, keys_document(), "b.json")), document)
    other = KeyRegistry.load(write_keys(tmp_path, keys_document(FINGERPRINT_SECRET[::-1]), "c.json"))
    assert cache_key(other, document) != name
    assert re.fullmatch(r"[0-9a-f]{64}", name)  # the shape tests/api/test_detect_route_caching.py expects


def test_fingerprints_derived_from_weak_keys_may_not_be_shared(tmp_path):
    """A secret derived from weak keys alone is as guessable as they are: a keys file holding
    only gumbel key 42 and no fingerprint_secret may not be used where fingerprints go to Redis."""
    weak_only = {"keys": [{"key_id": "vllm", "scheme": "gumbel", "key": SMALL_KEY}]}
    registry = KeyRegistry.load(write_keys(tmp_path, weak_only))
    with pytest.raises(KeyRegistryError, match="sets no fingerprint_secret") as refused:
        check_fingerprints_may_be_shared(registry)
    assert str(SMALL_KEY) not in str(refused.value).replace(str(registry.source), "")
    # a strong key among them, or a fingerprint_secret, makes the derived or given secret safe to share
    check_fingerprints_may_be_shared(KeyRegistry.load(write_keys(tmp_path, keys_document(None), "mixed.json")))
    with_secret = {**weak_only, "fingerprint_secret": FINGERPRINT_SECRET}
    check_fingerprints_may_be_shared(KeyRegistry.load(write_keys(tmp_path, with_secret, "set.json")))
