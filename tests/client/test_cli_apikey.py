"""``signet apikey new | hash`` as an operator runs them: real ``signet`` processes (no
server, no engine), checking what they print, that the printed entry admits the key, and
their exit status."""

from __future__ import annotations

import json
import subprocess

import yaml

from harness.services import signet_command
from signet.tenants import API_KEY_PREFIX, TenantRegistry, api_key_digest

KEY_IDS = ["main", "hf", "vllm"]


def _write(tmp_path, document, name="tenants.yaml"):
    path = tmp_path / name
    path.write_text(json.dumps(document) if name.endswith(".json") else yaml.safe_dump(document))
    return path


def test_apikey_new_prints_a_key_and_the_entry_that_admits_it(tmp_path):
    result = subprocess.run(
        signet_command("apikey", "new", "--name", "ci-bot"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    key, *entry = result.stdout.splitlines()
    assert key.startswith(API_KEY_PREFIX)
    api_keys = yaml.safe_load("\n".join(entry))
    assert api_keys == [{"sha256": api_key_digest(key), "name": "ci-bot"}]
    path = _write(tmp_path, {"tenants": [{"tenant": "t", "key_ids": "*", "api_keys": api_keys}]})
    assert TenantRegistry.load(path, KEY_IDS).authenticate(key).name == "ci-bot"
    hashed = subprocess.run(signet_command("apikey", "hash"), input=key + "\n", capture_output=True, text=True)
    assert hashed.returncode == 0 and yaml.safe_load(hashed.stdout) == [{"sha256": api_key_digest(key)}]


def test_apikey_refuses_bad_input():
    bad_name = subprocess.run(signet_command("apikey", "new", "--name", "a b"), capture_output=True, text=True)
    assert bad_name.returncode == 1 and "--name 'a b'" in bad_name.stderr and not bad_name.stdout
    no_key = subprocess.run(signet_command("apikey", "hash"), input="", capture_output=True, text=True)
    assert no_key.returncode == 1 and "no API key on standard input" in no_key.stderr
