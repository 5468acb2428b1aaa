"""Logging of ``signet serve`` and ``signet worker``: one JSON object per line for log
collectors, the human format for a person at a terminal, and the id of the HTTP request
a line was logged for.

``SIGNET_LOG_FORMAT`` is ``auto`` by default: text when standard error is a terminal (``make
serve`` in a shell), JSON otherwise (a container, a pipe, a file). ``json`` or ``text``
forces one.

A line is ``{"time", "level", "logger", "message"}``, plus ``request_id`` while a request
is served, the fields a caller passed as ``extra=``, and ``exception`` (the traceback)
where there is one. Request bodies are never logged: nothing in Signet passes one to a
logger, and the access line (``signet.access``, see ``signet.api.telemetry``) names the
route template, never the path or query.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

LogFormat = Literal["json", "text"]
LogFormatSetting = Literal["auto", "json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "signet"

# The id of the request being served: set by the HTTP middleware for the request's task
# (and copied into the threads FastAPI runs sync routes in), read by every log line.
_request_id: ContextVar[str | None] = ContextVar("signet_request_id", default=None)

# LogRecord's own attributes; any other one was passed as ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Attributes libraries add to every record: uvicorn's ANSI-coloured copy of the message,
# vLLM's process name.
_IGNORED_ATTRIBUTES = frozenset({"color_message", "vllm_process_name"})


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> Token:
    """Make ``request_id`` the current one; ``unbind_request_id(token)`` restores the previous."""
    return _request_id.set(request_id)


def unbind_request_id(token: Token) -> None:
    _request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id is not None:
            document["request_id"] = request_id
        for name, value in vars(record).items():
            if name in _RECORD_ATTRIBUTES or name in _IGNORED_ATTRIBUTES or name.startswith("_") or name in document:
                continue
            document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a lone surrogate from a client cannot make the line unwritable.
        return json.dumps(document, default=str, ensure_ascii=True)


def resolve_format(setting: LogFormatSetting, stream: TextIO) -> LogFormat:
    """``auto``: text for a person at a terminal, JSON for whatever collects the lines."""
    if setting != "auto":
        return setting
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(log_format: LogFormatSetting = "auto", level: str = "info", vllm_config_dir: Path | None = None) -> None:
    """Send the root logger's records to stderr in ``log_format``; safe to call again.

    ``level`` is SIGNET_LOG_LEVEL (uvicorn's names: critical, error, warning, info, debug,
    trace). In JSON with a ``vllm_config_dir`` (the cache directory), vLLM's loggers (which
    do not propagate to the root) get the same formatter, in this process and in the
    engine processes vLLM starts.
    """
    log_format = resolve_format(log_format, sys.stderr)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(_level_number(level))
    logging.captureWarnings(log_format == "json")  # Python's warnings as log lines, not bare stderr text
    if log_format == "json" and vllm_config_dir is not None:
        _configure_vllm_json_logging(vllm_config_dir)
    elif _vllm_config_path is not None and os.environ.get(_VLLM_CONFIG_VARIABLE) == _vllm_config_path:
        del os.environ[_VLLM_CONFIG_VARIABLE]  # ours, from an earlier call: vLLM's own format again


def _level_number(level: str) -> int:
    if level.lower() == "trace":
        return 5  # uvicorn's TRACE
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


_VLLM_CONFIG_VARIABLE = "VLLM_LOGGING_CONFIG_PATH"
_vllm_config_path: str | None = None  # what this process set the variable to


def _configure_vllm_json_logging(folder: Path) -> None:
    """Point vLLM at a logging config that uses JsonFormatter (VLLM_LOGGING_CONFIG_PATH).

    vLLM reads it when ``vllm.logger`` is first imported, in each of its processes, which
    inherit the variable. The file lives in ``folder`` (the user's own cache directory, not
    a shared temporary one: a logging config names classes to instantiate) under a fixed
    name, rewritten at each start, so no file is left behind per process. Left alone when
    the operator configures vLLM's logging (VLLM_LOGGING_CONFIG_PATH set, or
    VLLM_CONFIGURE_LOGGING=0), when vLLM is imported already, or when the file cannot be
    written (vLLM then keeps its text format).
    """
    global _vllm_config_path
    if "vllm.logger" in sys.modules or os.environ.get("VLLM_CONFIGURE_LOGGING", "1") == "0":
        return
    current = os.environ.get(_VLLM_CONFIG_VARIABLE)
    if current is not None and current != _vllm_config_path:
        return
    level = os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"signet_json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "signet_json": {"class": "logging.StreamHandler", "formatter": "signet_json", "stream": "ext://sys.stderr"}
        },
        "loggers": {"vllm": {"handlers": ["signet_json"], "level": level, "propagate": False}},
    }
    path = folder / f"vllm-logging-{re.sub(r'[^A-Z]', '', level) or 'INFO'}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        staged.write_text(json.dumps(config, indent=1))
        os.replace(staged, path)  # atomic: another process starting now reads a whole file
    except OSError:
        return
    _vllm_config_path = str(path)
    os.environ[_VLLM_CONFIG_VARIABLE] = _vllm_config_path
