"""Tenants file: format, validation without echoing keys or digests, when auth is on.
`signet apikey` (a subprocess) is tested in tests/client/test_cli_apikey.py."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from signet.settings import Settings
from signet.tenants import (
    API_KEY_PREFIX,
    TenantRegistry,
    TenantsFileError,
    api_key_digest,
    is_loopback,
    new_api_key,
    resolve_tenants,
)

KEY_IDS = ["main", "hf", "vllm"]
MOD_KEY = "sk-signet-unit-moderation-3c1f0a9e"
OPS_KEY = "sk-signet-unit-operations-77d2b8c4"


def _document(**changes) -> dict:
    document = {
        "tenants": [
            {
                "tenant": "moderation",
                "key_ids": ["main", "hf"],
                "api_keys": [{"sha256": api_key_digest(MOD_KEY), "name": "ci-bot"}],
            },
            {
                "tenant": "ops",
                "key_ids": "*",
                "may_disable_watermark": True,
                "api_keys": [{"sha256": api_key_digest(OPS_KEY).upper(), "name": "oncall"}],
            },
        ]
    }
    document["tenants"][0].update(changes)
    return document


def _write(tmp_path, document, name="tenants.yaml"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if name.endswith(".json") else yaml.safe_dump(document))
    return path


def _load_error(tmp_path, document, name="tenants.yaml") -> str:
    with pytest.raises(TenantsFileError) as raised:
        TenantRegistry.load(_write(tmp_path, document, name), KEY_IDS)
    return str(raised.value)


def _assert_no_secret(message: str) -> None:
    for key in (MOD_KEY, OPS_KEY):
        assert key not in message
        assert api_key_digest(key) not in message.lower()


@pytest.mark.parametrize("name", ["tenants.yaml", "tenants.json"])
def test_keys_find_their_tenant(tmp_path, name):
    registry = TenantRegistry.load(_write(tmp_path, _document(), name), KEY_IDS)
    moderation = registry.authenticate(MOD_KEY)
    assert moderation.name == "ci-bot" and moderation.tenant.name == "moderation"
    assert moderation.tenant.key_ids == {"main", "hf"} and not moderation.tenant.may_disable_watermark
    assert moderation.tenant.may_use("hf") and not moderation.tenant.may_use("vllm")
    ops = registry.authenticate(OPS_KEY)  # an upper-case digest in the file matches too
    assert ops.tenant.key_ids is None and ops.tenant.may_use("anything") and ops.tenant.may_disable_watermark
    assert registry.authenticate(MOD_KEY + "x") is None
    assert registry.authenticate("") is None and registry.authenticate(None) is None
    assert registry.num_api_keys == 2 and sorted(registry.tenants) == ["moderation", "ops"]


def test_a_yaml_star_list_means_every_key(tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text('tenants:\n  - tenant: all\n    key_ids: ["*"]\n    api_keys: []\n')
    assert TenantRegistry.load(path, KEY_IDS).tenants["all"].key_ids is None


def test_detection_permissions_are_off_unless_granted(tmp_path):
    document = _document(may_see_token_details=True, may_send_token_ids=True)
    granted = TenantRegistry.load(_write(tmp_path, document), KEY_IDS).authenticate(MOD_KEY).tenant
    assert granted.may_see_token_details and granted.may_send_token_ids
    document["tenants"][0]["may_see_token_details"] = False
    partly = TenantRegistry.load(_write(tmp_path, document), KEY_IDS).authenticate(MOD_KEY).tenant
    assert not partly.may_see_token_details and partly.may_send_token_ids
    # not named: neither, even for a tenant with every key and the watermark switch
    ops = TenantRegistry.load(_write(tmp_path, _document()), KEY_IDS).authenticate(OPS_KEY).tenant
    assert not ops.may_see_token_details and not ops.may_send_token_ids
    error = _load_error(tmp_path, _document(may_send_token_ids="sometimes"))
    assert "tenants.0.may_send_token_ids: Input should be a valid boolean" in error


@pytest.mark.parametrize(
    "changes, message",
    [
        # the API key itself pasted where its digest belongs: refused, and not echoed
        ({"api_keys": [{"sha256": MOD_KEY, "name": "ci-bot"}]}, "tenants.0.api_keys.0.sha256: String should match"),
        ({"api_keys": [{"sha256": "ab" * 31, "name": "ci-bot"}]}, "tenants.0.api_keys.0.sha256"),
        ({"api_keys": [{"sha256": api_key_digest(MOD_KEY)}]}, "tenants.0.api_keys.0.name: Field required"),
        ({"key_ids": []}, "tenants.0.key_ids: List should have at least 1 item"),
        ({"key_ids": ["*", "main"]}, 'tenants.0.key_ids: "*" (every key) stands alone'),
        ({"tenant": "ops"}, "tenant names must be unique: 'ops' appear"),
        ({"colour": "blue"}, "tenants.0.colour: Extra inputs are not permitted"),
        ({"tenant": "no spaces"}, "tenants.0.tenant: String should match pattern"),
        (
            {"api_keys": [{"sha256": api_key_digest(OPS_KEY), "name": "copy"}]},
            "api keys 'moderation/copy' and 'ops/oncall' have the same sha256",
        ),
        (
            {
                "api_keys": [
                    {"sha256": api_key_digest(MOD_KEY), "name": "bot"},
                    {"sha256": api_key_digest("another"), "name": "bot"},
                ]
            },
            "api key names must be unique within a tenant: 'bot'",
        ),
    ],
)
def test_invalid_files_are_refused_without_echoing_keys(tmp_path, changes, message):
    error = _load_error(tmp_path, _document(**changes))
    assert message in error
    _assert_no_secret(error)


def test_unknown_key_ids_are_named(tmp_path):
    error = _load_error(tmp_path, _document(key_ids=["main", "nope", "gone"]))
    assert "tenant 'moderation' names key_ids the keys file does not have: 'nope', 'gone'" in error
    assert "(it has 'main', 'hf', 'vllm')" in error
    _assert_no_secret(error)


def test_an_empty_file_and_no_tenants_are_refused(tmp_path):
    assert "file: Input should be a valid dictionary" in _load_error(tmp_path, None)
    assert "tenants: List should have at least 1 item" in _load_error(tmp_path, {"tenants": []})


def test_unparsable_file_names_the_line_not_the_content(tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text(f'tenants:\n  - tenant: a\n    api_keys: [{{sha256: "{api_key_digest(MOD_KEY)}"\n  - : [\n')
    with pytest.raises(TenantsFileError) as raised:
        TenantRegistry.load(path, KEY_IDS)
    assert "is not valid YAML (line" in str(raised.value)
    _assert_no_secret(str(raised.value))
    bad_json = tmp_path / "tenants.json"
    bad_json.write_text('{"tenants": [\n{"sha256": "' + api_key_digest(MOD_KEY) + '",,}]}')
    with pytest.raises(TenantsFileError, match=r"not valid JSON \(line 2\)"):
        TenantRegistry.load(bad_json, KEY_IDS)


def test_missing_file(tmp_path):
    with pytest.raises(TenantsFileError, match="cannot read tenants file"):
        TenantRegistry.load(tmp_path / "absent.yaml", KEY_IDS)


def test_a_file_turns_authentication_on(tmp_path, caplog):
    path = _write(tmp_path, _document())
    with caplog.at_level(logging.INFO, logger="signet.tenants"):
        registry = resolve_tenants(Settings(api_keys_file=path, host="0.0.0.0"), KEY_IDS)
    assert registry is not None and registry.authenticate(MOD_KEY) is not None
    assert "authentication on: 2 tenants, 2 API keys" in caplog.text
    _assert_no_secret(caplog.text)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_without_a_file_loopback_runs_in_development_mode_and_says_so(host, caplog):
    with caplog.at_level(logging.WARNING, logger="signet.tenants"):
        assert resolve_tenants(Settings(api_keys_file=None, host=host), KEY_IDS) is None
    assert "development mode: no SIGNET_API_KEYS_FILE, every caller may use every key" in caplog.text


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "signet.example.com"])
def test_without_a_file_other_addresses_need_auth_disabled_explicitly(host, caplog):
    with pytest.raises(TenantsFileError, match="refusing to serve .* without authentication"):
        resolve_tenants(Settings(api_keys_file=None, host=host), KEY_IDS)
    with caplog.at_level(logging.WARNING, logger="signet.tenants"):
        assert resolve_tenants(Settings(api_keys_file=None, host=host, auth="disabled"), KEY_IDS) is None
    assert "authentication disabled (SIGNET_AUTH=disabled)" in caplog.text


def test_contradicting_auth_settings_are_refused(tmp_path):
    with pytest.raises(TenantsFileError, match="SIGNET_AUTH=required but SIGNET_API_KEYS_FILE is not set"):
        resolve_tenants(Settings(api_keys_file=None, auth="required"), KEY_IDS)
    path = _write(tmp_path, _document())
    with pytest.raises(TenantsFileError, match="SIGNET_AUTH=disabled contradicts SIGNET_API_KEYS_FILE"):
        resolve_tenants(Settings(api_keys_file=path, auth="disabled"), KEY_IDS)
    assert resolve_tenants(Settings(api_keys_file=path, auth="required"), KEY_IDS) is not None


def test_auth_setting_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNET_AUTH", "disabled")
    monkeypatch.setenv("SIGNET_API_KEYS_FILE", str(tmp_path / "t.yaml"))
    settings = Settings()
    assert settings.auth == "disabled" and settings.api_keys_file == tmp_path / "t.yaml"


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("", False)],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_new_api_keys_are_random_and_prefixed():
    first, second = new_api_key(), new_api_key()
    assert first != second and first.startswith(API_KEY_PREFIX) and len(first) >= len(API_KEY_PREFIX) + 43
