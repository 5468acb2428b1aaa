"""Key registry: formats, validation without leaking secrets, the development key."""

import json
import stat

import pytest

from signet.keys import (
    DEVELOPMENT_KEY_ID,
    KeyRegistry,
    KeyRegistryError,
    UnknownKeyError,
    ensure_development_keys,
)

SECRET = "registry-test-secret-7f3a9c"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_registry_with_defaults_and_explicit_default(tmp_path):
    path = _write(
        tmp_path,
        "keys.yaml",
        f"default_key_id: b\nkeys:\n  - key_id: a\n    secret: {SECRET}\n"
        f"  - key_id: b\n    secret: {SECRET}-b\n    gamma: 0.5\n    context_width: 2\n",
    )
    registry = KeyRegistry.load(path)
    assert registry.key_ids == ["a", "b"]
    assert registry.get(None).key_id == "b"
    assert registry.get("a").gamma == 0.25 and registry.get("a").delta == 2.0
    assert registry.scheme("b").parameters.context_width == 2
    with pytest.raises(UnknownKeyError):
        registry.get("c")


def test_json_registry_defaults_to_the_first_key(tmp_path):
    path = _write(tmp_path, "keys.json", json.dumps({"keys": [{"key_id": "only", "secret": SECRET}]}))
    assert KeyRegistry.load(path).default_key_id == "only"


@pytest.mark.parametrize(
    "document, message",
    [
        ({"keys": [{"key_id": "a", "secret": "short"}]}, "keys.0.secret"),
        ({"keys": [{"key_id": "a", "secret": SECRET}, {"key_id": "a", "secret": SECRET}]}, "unique"),
        ({"default_key_id": "z", "keys": [{"key_id": "a", "secret": SECRET}]}, "default_key_id"),
        ({"keys": [{"key_id": "a", "secret": SECRET, "gamma": 1.5}]}, "keys.0.gamma"),
        (
            {"keys": [{"key_id": "a", "secret": SECRET, "scheme": "unknown"}]},
            "keys.0: scheme must be one of kgw, kgw-lefthash, gumbel",
        ),
        ({"keys": []}, "keys"),
    ],
)
def test_invalid_registries_are_refused_without_echoing_secrets(tmp_path, document, message):
    path = _write(tmp_path, "keys.json", json.dumps(document))
    with pytest.raises(KeyRegistryError) as raised:
        KeyRegistry.load(path)
    assert message in str(raised.value)
    assert SECRET not in str(raised.value) and "short" not in str(raised.value).replace("at least", "")


def test_unparsable_file_names_the_line_not_the_content(tmp_path):
    path = _write(tmp_path, "keys.yaml", f"keys:\n  - key_id: a\n    secret: {SECRET}\n  - : [\n")
    with pytest.raises(KeyRegistryError) as raised:
        KeyRegistry.load(path)
    assert "not valid YAML (line 4)" in str(raised.value) and SECRET not in str(raised.value)


def test_missing_file(tmp_path):
    with pytest.raises(KeyRegistryError, match="cannot read keys file"):
        KeyRegistry.load(tmp_path / "absent.yaml")


def test_development_key_is_created_once_and_private(tmp_path):
    path = ensure_development_keys(tmp_path)
    first = path.read_text()
    assert ensure_development_keys(tmp_path) == path and path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry = KeyRegistry.load(path)
    assert registry.default_key_id == DEVELOPMENT_KEY_ID
    secret = registry.get(None).secret.get_secret_value()
    assert len(secret) >= 32
    assert secret not in repr(registry.get(None)) and secret not in repr(registry.scheme(DEVELOPMENT_KEY_ID))


def test_peer_scheme_keys_take_the_model_vocabulary_and_hide_their_keys(tmp_path):
    document = {
        "keys": [
            {"key_id": "hf", "scheme": "kgw-lefthash", "hashing_key": 987654321987, "gamma": 0.5},
            {"key_id": "hf-gpt2", "scheme": "kgw-lefthash", "vocab_size": 50257, "tokenizer": "gpt2"},
            {"key_id": "vllm", "scheme": "gumbel", "key": 123456789123, "normalization": ["nfc"]},
        ]
    }
    registry = KeyRegistry.load(_write(tmp_path, "keys.json", json.dumps(document)), model_vocab_size=49152)
    assert registry.scheme("hf").parameters.vocab_size == 49152
    assert registry.scheme("hf").parameters.gamma == 0.5
    assert registry.scheme("hf-gpt2").parameters.vocab_size == 50257
    assert registry.scheme("vllm").parameters.context_width == 4
    assert registry.get("vllm").normalization == ("nfc",)
    for key_id, secret in (("hf", "987654321987"), ("vllm", "123456789123")):
        assert secret not in repr(registry.get(key_id)) and secret not in repr(registry.scheme(key_id))
    without_model = KeyRegistry.load(_write(tmp_path, "keys.json", json.dumps(document)))
    with pytest.raises(KeyRegistryError, match="vocab_size"):
        without_model.scheme("hf")


def test_parameters_that_cannot_make_a_scheme_fail_at_load(tmp_path):
    # 10 ids x gamma 0.05 leaves an empty greenlist: refused when the file loads, not on a request
    document = {"keys": [{"key_id": "tiny", "scheme": "kgw-lefthash", "vocab_size": 10, "gamma": 0.05}]}
    with pytest.raises(KeyRegistryError, match="key 'tiny'"):
        KeyRegistry.load(_write(tmp_path, "keys.json", json.dumps(document)))
