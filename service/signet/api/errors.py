"""One error shape for every route: RFC 9457 ``application/problem+json``.

``{"type", "title", "status", "detail", "field"}``: ``field`` names the offending
request field where there is one. Unexpected exceptions become a bare 500 without
details; their traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from signet.api.protocol import Problem
from signet.api.validation import describe_validation_errors
from signet.keys import UnknownKeyError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


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


async def _on_api_error(request: Request, error: ApiError) -> JSONResponse:
    return problem_response(error.status, error.detail, error.field, headers=error.headers)


def unknown_key_problem(error: UnknownKeyError) -> ApiError:
    return ApiError(404, f"no watermark key with key_id {error.key_id!r}", "key_id")


async def _on_unknown_key(request: Request, error: UnknownKeyError) -> JSONResponse:
    problem = unknown_key_problem(error)
    return problem_response(problem.status, problem.detail, problem.field)


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
