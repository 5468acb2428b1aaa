"""One error shape for every route: RFC 9457 ``application/problem+json``.

``{"type", "title", "status", "detail", "field"}``: ``field`` names the offending
request field where there is one. Unexpected exceptions become a bare 500 without
details; their traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from signet.api.protocol import Problem
from signet.keys import UnknownKeyError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_LOCATION_KINDS = ("body", "query", "path", "header")
_UNION_MEMBER = re.compile(r"[\[\]'()-]")


class ApiError(Exception):
    def __init__(
        self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers  # e.g. Retry-After of a 429


def retry_after(seconds: float | None) -> dict[str, str] | None:
    """The ``Retry-After`` header for an error: whole seconds, at least 1, never earlier than ``seconds``."""
    return None if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


class PayloadTooLarge(ApiError):
    def __init__(self, field: str, size: int, limit: int, unit: str = "characters") -> None:
        super().__init__(413, f"{field} is {size:,} {unit}; the limit is {limit:,}", field)


def problem_response(status: int, detail: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = Problem.of(status, detail, field).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


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


async def _on_api_error(request: Request, error: ApiError) -> JSONResponse:
    return problem_response(error.status, error.detail, error.field, headers=error.headers)


def unknown_key_problem(error: UnknownKeyError) -> ApiError:
    return ApiError(404, f"no watermark key with key_id {error.key_id!r}", "key_id")


async def _on_unknown_key(request: Request, error: UnknownKeyError) -> JSONResponse:
    problem = unknown_key_problem(error)
    return problem_response(problem.status, problem.detail, problem.field)


def describe_validation_errors(errors: Sequence[dict], prefix: tuple = ()) -> tuple[str, str | None]:
    """(detail, field) of a 422 for pydantic errors; ``prefix`` locates a nested body."""
    errors = [{**item, "loc": (*prefix, *item.get("loc", ()))} for item in errors]
    first = errors[0] if errors else {}
    detail = "; ".join(_validation_detail(item) for item in errors) or "invalid request"
    field = None if first.get("type") == "json_invalid" else _field_name(tuple(first.get("loc", ())))
    return detail, field


async def _on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return problem_response(422, *describe_validation_errors(error.errors()))


async def _on_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return problem_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal error; the server log has details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(UnknownKeyError, _on_unknown_key)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
