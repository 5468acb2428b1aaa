"""Reading the configuration files that hold secrets (watermark keys, API key digests, the Redis password)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def read_document(path: Path, what: str, error: type[Exception]) -> object:
    """The file parsed as JSON (a ``.json`` name) or YAML. Failures raise ``error`` naming the
    file and, for a syntax error, the line: never the content, which may hold a secret
    (the parsers' own messages quote the offending line)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as problem:
        raise error(f"cannot read {what} {path}: {problem.strerror}") from None
    is_json = path.suffix == ".json"
    try:
        return json.loads(raw) if is_json else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as problem:
        mark = getattr(problem, "problem_mark", None)
        line = problem.lineno if is_json else (mark.line + 1 if mark else "?")
        raise error(f"{what} {path} is not valid {'JSON' if is_json else 'YAML'} (line {line})") from None


def read_password(path: Path) -> str:
    """A password file's content without its final newline (``echo`` adds one); OSError if unreadable."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")
