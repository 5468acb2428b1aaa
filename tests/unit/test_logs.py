"""signet.logs: JSON lines, the request id, the text format, and vLLM's loggers in JSON too."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from signet import logs
from signet.logs import JsonFormatter


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, variable = list(root.handlers), root.level, os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    assert os.environ.get("VLLM_LOGGING_CONFIG_PATH") == variable  # without a folder, vLLM is left alone


def format_record(message: str, *args, exc_info=None, **extra) -> dict:
    logger = logging.getLogger("signet.test.logs")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, args, exc_info, extra=extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line and line.isascii()
    return json.loads(line)


def test_a_record_is_one_json_object_with_time_level_logger_and_message():
    document = format_record("worker %s took %d jobs\nand a second line", "w1", 3)
    assert document["message"] == "worker w1 took 3 jobs\nand a second line"
    assert document["level"] == "WARNING" and document["logger"] == "signet.test.logs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["time"])
    assert "request_id" not in document and "exception" not in document


def test_extra_fields_are_members_and_library_noise_is_not():
    document = format_record("done", route="/detect", status=200, color_message="\x1b[32mdone", vllm_process_name="x")
    assert document["route"] == "/detect" and document["status"] == 200
    assert "color_message" not in document and "vllm_process_name" not in document


def test_the_request_id_bound_for_the_context_is_on_every_line():
    token = logs.bind_request_id("req-42")
    try:
        assert format_record("inside")["request_id"] == "req-42"
        assert logs.current_request_id() == "req-42"
    finally:
        logs.unbind_request_id(token)
    assert "request_id" not in format_record("outside")
    assert logs.current_request_id() is None


def test_an_exception_is_logged_with_its_traceback():
    try:
        raise ValueError("bad value")
    except ValueError:
        document = format_record("failed", exc_info=sys.exc_info())
    assert document["exception"].startswith("Traceback") and "ValueError: bad value" in document["exception"]


def test_a_lone_surrogate_or_an_unserialisable_value_cannot_break_a_line():
    document = format_record("text %s", "a\ud800b", thing=object())
    assert document["message"] == "text a\ud800b" and document["thing"].startswith("<object object")


def test_configure_replaces_its_own_handler_and_sets_the_level(restore_root_logging):
    logs.configure("json", "warning")
    logs.configure("json", "debug")
    root = logging.getLogger()
    assert [handler.get_name() for handler in root.handlers].count("signet") == 1
    assert root.level == logging.DEBUG
    logs.configure("text", "trace")
    assert root.level == 5
    assert not isinstance(next(h for h in root.handlers if h.get_name() == "signet").formatter, JsonFormatter)


def test_the_text_format_is_the_human_one(restore_root_logging, monkeypatch):
    logs.configure("text", "info")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "signet")
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    logging.getLogger("signet.test.logs").info("plain %s", "words")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO signet.test.logs: plain words\n", stream.getvalue())


def test_uvicorn_logs_through_ours_and_its_access_log_is_off(restore_root_logging, monkeypatch):
    import uvicorn

    logs.configure("json", "info")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "signet")
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    uvicorn.Config(app=None, log_level="info", log_config=None, access_log=False).configure_logging()
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.access").info("127.0.0.1 - GET /?text=secret 200")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == ["uvicorn.error"]


def test_vllm_logs_json_in_its_processes_too(tmp_path):
    """vLLM's loggers do not propagate to the root: configure() hands vLLM a logging config
    with the same formatter, through the environment its engine processes inherit."""
    script = (
        f"from signet import logs; from pathlib import Path; logs.configure('json', 'info', Path({str(tmp_path)!r})); "
        "import vllm.logger; vllm.logger.init_logger('vllm.signet_test').info('from %s', 'vllm'); "
        "import os; print(os.environ['VLLM_LOGGING_CONFIG_PATH'])"
    )
    environment = {name: value for name, value in os.environ.items() if not name.startswith("VLLM_")}
    finished = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300, check=True
    )
    line = next(line for line in finished.stderr.splitlines() if "from vllm" in line)
    document = json.loads(line)
    assert document["logger"] == "vllm.signet_test" and document["message"] == "from vllm"
    assert document["level"] == "INFO" and "vllm_process_name" not in document
    assert finished.stdout.strip() == str(tmp_path / "vllm-logging-INFO.json")
    assert [path.name for path in tmp_path.iterdir()] == ["vllm-logging-INFO.json"]  # one file, however many starts


def test_an_operators_own_vllm_logging_config_is_kept(restore_root_logging, monkeypatch, tmp_path):
    monkeypatch.setenv("VLLM_LOGGING_CONFIG_PATH", "/etc/vllm-logging.json")
    monkeypatch.delitem(sys.modules, "vllm.logger", raising=False)
    logs.configure("json", "info", tmp_path)
    assert os.environ["VLLM_LOGGING_CONFIG_PATH"] == "/etc/vllm-logging.json"
    assert not list(tmp_path.iterdir())


def _log_one_line(stderr: int, setting: str) -> None:
    """A fresh process configured with ``setting`` logs one record to ``stderr``."""
    code = (
        "import logging; from signet import logs; "
        f"logs.configure({setting!r}, 'info'); logging.getLogger('signet.test').info('hello')"
    )
    subprocess.run([sys.executable, "-c", code], stderr=stderr, check=True, timeout=60)


@pytest.mark.parametrize(
    ("setting", "at_a_terminal", "expected"),
    [
        ("auto", True, "text"),
        ("auto", False, "json"),
        ("json", True, "json"),
        ("text", False, "text"),
    ],
)
def test_auto_is_text_at_a_terminal_and_json_elsewhere(setting, at_a_terminal, expected):
    # A real pseudo-terminal, as `make serve` in a shell has, against a pipe, as a container has.
    if at_a_terminal:
        controller, terminal = os.openpty()
        try:
            _log_one_line(terminal, setting)
            output = os.read(controller, 65536).decode()
        finally:
            os.close(terminal)
            os.close(controller)
    else:
        reader, writer = os.pipe()
        try:
            _log_one_line(writer, setting)
            os.close(writer)
            output = os.read(reader, 65536).decode()
        finally:
            os.close(reader)
    line = output.strip().splitlines()[-1]
    if expected == "json":
        assert json.loads(line)["message"] == "hello"
    else:
        assert re.fullmatch(r"\S+ \S+ INFO signet.test: hello", line.strip())
