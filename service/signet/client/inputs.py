"""What ``signet detect`` reads: whole text files, or JSON Lines of detection requests."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

InputFormat = Literal["auto", "text", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class InputError(Exception):
    """A file that cannot be read at all (missing, not UTF-8)."""


@dataclass
class Item:
    """One text to test. ``source`` says where it came from (``notes.txt``, ``batch.jsonl:12``);
    ``id`` is the line's own ``id`` field, passed through to the output untouched."""

    source: str
    request: dict[str, Any] | None
    id: Any = None
    error: str | None = None  # a line that is not a request: reported, never dropped


def read_items(paths: list[str], input_format: InputFormat) -> list[Item]:
    items: list[Item] = []
    for path in paths:
        name = "<stdin>" if path == "-" else path
        content = read_text(path)
        if _is_jsonl(path, content, input_format):
            items.extend(_jsonl_items(name, content))
        elif content.strip():
            items.append(Item(name, {"text": content}))
        else:
            items.append(Item(name, None, error=f"{name} holds no text"))
    return items


def read_text(path: str) -> str:
    """A file's text, or standard input's for ``-``: UTF-8, or an InputError that says why not."""
    name = "standard input" if path == "-" else path
    try:
        if path == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        return Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise InputError(f"cannot read {name}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{name} is not UTF-8 text (byte {error.start})") from None


def _is_jsonl(path: str, content: str, input_format: InputFormat) -> bool:
    if input_format != "auto":
        return input_format == "jsonl"
    return path.lower().endswith(JSONL_SUFFIXES) or content.lstrip().startswith("{")


def _jsonl_items(name: str, content: str) -> list[Item]:
    items = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            items.append(_jsonl_item(f"{name}:{number}", line))
    return items


def _jsonl_item(source: str, line: str) -> Item:
    """A line is a detection request (``{"text": ...}`` or ``{"token_ids": [...]}``, any other
    /detect field, and an optional ``id``), or just a JSON string of text."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        return Item(source, None, error=f"not JSON: {error.msg} at column {error.colno}")
    if isinstance(value, str):
        return Item(source, {"text": value})
    if not isinstance(value, dict):
        return Item(source, None, error="not a JSON object or string")
    line_id = value.pop("id", None)
    return Item(source, value, id=line_id)
