"""Startup failures end ``signet serve`` and ``signet worker`` with one clear line, not a traceback."""

import json
import os
import socket
import subprocess

import pytest

from harness.services import free_port, keys_environment, signet_command


def _serve(tmp_path, **environment):
    environment = {"SIGNET_CACHE_DIR": str(tmp_path), "SIGNET_PORT": str(free_port()), **environment}
    return _one_error_line("serve", environment)


def _one_error_line(command: str, environment: dict[str, str]) -> str:
    completed = subprocess.run(
        signet_command(command),
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in completed.stderr.splitlines() if line.startswith("signet: error:")]
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(lines) == 1, completed.stderr
    return lines[0]


def test_missing_model_folder(tmp_path):
    line = _serve(tmp_path, SIGNET_MODEL=str(tmp_path / "no-such-model"))
    assert "not a Hugging Face model folder" in line


def test_invalid_keys_file_does_not_echo_the_secret(tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"keys": [{"key_id": "a", "secret": "tooshort"}]}))
    (tmp_path / "config.json").write_text("{}")  # a folder that passes the model check
    line = _serve(tmp_path, SIGNET_MODEL=str(tmp_path), SIGNET_KEYS_FILE=str(keys_file))
    assert "keys.0.secret" in line and "tooshort" not in line


@pytest.mark.parametrize(
    "name, value",
    [("SIGNET_ENGINE_MEMORY_FRACTION", "2"), ("SIGNET_MAX_NEW_TOKENS", "5000"), ("SIGNET_PORT", "http")],
)
def test_invalid_setting(tmp_path, name, value):
    line = _serve(tmp_path, **{name: value})
    assert name in line


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = _serve(tmp_path, SIGNET_PORT=str(taken.getsockname()[1]))
    assert "cannot listen" in line


def test_worker_metrics_port_in_use(tmp_path, detection_state):
    # detection_state has prepared the embedded model: the worker gets as far as its port.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environment = {
            **keys_environment(tmp_path),
            "SIGNET_REDIS_URL": "redis://127.0.0.1:6379/0",
            "SIGNET_WORKER_METRICS_PORT": str(taken.getsockname()[1]),
        }
        line = _one_error_line("worker", environment)
    assert "cannot serve metrics" in line and "SIGNET_WORKER_METRICS_PORT" in line


def test_model_prepare_refuses_when_a_model_is_configured(tmp_path):
    completed = subprocess.run(
        signet_command("model", "prepare"),
        env={**os.environ, "SIGNET_MODEL": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1 and "nothing to prepare" in completed.stderr
