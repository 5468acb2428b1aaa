"""How pydantic's validation errors read in a 422: one line, naming the field.

Pure pydantic-error handling, no web framework: the Python client uses it too, so a request it
refuses before sending reads exactly as the service's answer would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LOCATION_KINDS = ("body", "query", "path", "header")
_UNION_MEMBER = re.compile(r"[\[\]'()-]")


# A 422 names this many errors, then counts the rest: before issue 16, 300,000 bad
# token ids made a 15.5 MB error body in 4.4 s.
MAX_REPORTED_ERRORS = 5


def describe_validation_errors(errors: Sequence[dict], prefix: tuple = ()) -> tuple[str, str | None]:
    """(detail, field) of a 422 for pydantic errors; ``prefix`` locates a nested body."""
    shown = [{**item, "loc": (*prefix, *item.get("loc", ()))} for item in errors[:MAX_REPORTED_ERRORS]]
    first = shown[0] if shown else {}
    detail = "; ".join(_validation_detail(item) for item in shown) or "invalid request"
    if len(errors) > len(shown):
        detail += f"; and {len(errors) - len(shown):,} more"
    field = None if first.get("type") == "json_invalid" else _field_name(tuple(first.get("loc", ())))
    return detail, field


def _is_union_member(part: str | int) -> bool:
    return isinstance(part, str) and _UNION_MEMBER.search(part) is not None


def _field_name(location: tuple) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'."""
    # pydantic names the member of a union it tried, e.g. "list[constrained-str]": not a field
    parts = [part for part in location if part not in _LOCATION_KINDS and not _is_union_member(part)]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _validation_detail(error: dict) -> str:
    if error.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    field = _field_name(tuple(error.get("loc", ())))
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if error.get("type") in ("literal_error", "enum") and isinstance(error.get("input"), str):
        message += f", got {error['input'][:40]!r}"  # say which name was wrong, not only the right ones
    return f"{field}: {message}" if field else message
