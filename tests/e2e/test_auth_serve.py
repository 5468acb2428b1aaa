"""Authentication in a real ``signet serve``: the tenants file read at start, 401/403/200 over
HTTP, keys kept out of the log; clear one-line refusals of bad auth configurations; the
development mode's warning.

The authenticated server runs in distributed mode (queueing on the test Redis), where the
API process loads no model weights, so it starts in seconds.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
import yaml

from harness.services import free_port, keys_environment, redis_test_url, running_signet_server, signet_command
from signet.tenants import api_key_digest

API_KEY = "sk-signet-e2e-moderation-9d41c07b2e"
TEXT = "The quick brown fox jumps over the lazy dog, twice, and then sits down for tea."


def _tenants_file(folder, key_ids) -> str:
    path = folder / "tenants.yaml"
    api_keys = [{"sha256": api_key_digest(API_KEY), "name": "e2e-bot"}]
    path.write_text(yaml.safe_dump({"tenants": [{"tenant": "moderation", "key_ids": key_ids, "api_keys": api_keys}]}))
    return str(path)


def test_an_authenticated_server(tmp_path, detection_state, redis_namespace):
    # detection_state has prepared the embedded model, so the server does not prepare it
    environment = {
        "SIGNET_REDIS_URL": redis_test_url(),
        "SIGNET_REDIS_NAMESPACE": redis_namespace,
        "SIGNET_API_KEYS_FILE": _tenants_file(tmp_path, ["main", "hf"]),
        "SIGNET_HOST": "127.0.0.1",
    }
    with running_signet_server(tmp_path, **environment) as server, httpx.Client(base_url=server.url) as client:
        refused = client.post("/detect", json={"text": TEXT})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        headers = {"Authorization": f"Bearer {API_KEY}"}
        assert client.post("/detect", json={"text": TEXT}, headers=headers).status_code == 200
        forbidden = client.post("/detect", json={"text": TEXT, "key_id": "wide"}, headers=headers)
        assert forbidden.status_code == 403 and forbidden.json()["field"] == "key_id"
        no_watermark = client.post("/generate?watermark=false", json={"prompt": "Hi."}, headers=headers)
        assert no_watermark.status_code == 403 and no_watermark.json()["field"] == "watermark"
        assert client.get("/readyz").status_code == 200
        log = server.log()
    assert "authentication on: 1 tenants, 1 API keys" in log
    assert "development mode: no SIGNET_API_KEYS_FILE" not in log
    assert API_KEY not in log and api_key_digest(API_KEY) not in log


def _refused_start(tmp_path, **environment) -> str:
    inherited = {
        name: value for name, value in os.environ.items() if name not in ("SIGNET_API_KEYS_FILE", "SIGNET_AUTH")
    }
    completed = subprocess.run(
        signet_command("serve"),
        env={**inherited, **keys_environment(tmp_path), "SIGNET_PORT": str(free_port()), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in completed.stderr.splitlines() if line.startswith("signet: error:")]
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert API_KEY not in completed.stderr and api_key_digest(API_KEY) not in completed.stderr
    return lines[0]


def test_a_tenant_naming_an_unknown_key_stops_the_start(tmp_path, detection_state):
    line = _refused_start(tmp_path, SIGNET_API_KEYS_FILE=_tenants_file(tmp_path, ["main", "nope"]))
    assert "tenant 'moderation' names key_ids the keys file does not have: 'nope'" in line


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"SIGNET_HOST": "0.0.0.0"}, "refusing to serve 0.0.0.0 without authentication"),
        ({"SIGNET_AUTH": "required"}, "SIGNET_AUTH=required but SIGNET_API_KEYS_FILE is not set"),
        ({"SIGNET_AUTH": "sometimes"}, "SIGNET_AUTH: Input should be 'auto', 'required' or 'disabled'"),
    ],
)
def test_an_unauthenticated_start_must_be_asked_for(tmp_path, detection_state, environment, message):
    assert message in _refused_start(tmp_path, **environment)


@pytest.mark.engine
def test_the_development_server_says_it_runs_without_authentication(signet_server):
    assert "development mode: no SIGNET_API_KEYS_FILE, every caller may use every key" in signet_server.log()
