"""The OpenAPI document: what FastAPI derives, plus what it cannot know.

- Errors: every error is RFC 9457 ``application/problem+json`` with the ``Problem``
  schema, FastAPI's default 422 body included; each route lists the statuses it can
  answer with.
- Limits: the description states the configured limits, so clients see them.

``signet openapi`` writes the document to ``openapi/openapi.json``; a test fails when
the committed file and the app disagree.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from signet.api.errors import PROBLEM_MEDIA_TYPE
from signet.api.protocol import Problem
from signet.settings import Settings

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_STATUS_MEANING = {
    400: "The body could not be read (not UTF-8).",
    401: "No API key, or an unknown one.",
    403: "The API key's tenant may not use this watermark key, or turn the watermark off.",
    404: "An unknown watermark key_id (or model).",
    413: "The body or a text is over its limit (see the description's limits).",
    422: "An invalid field; `field` names it.",
    429: "Over the caller's rate limit; `Retry-After` says when to try again.",
    502: "The job failed on every delivery and was set aside (distributed mode).",
    503: "No engine or worker can take the request now, or the queue is full; `Retry-After` says when to retry.",
    504: "No result within the job's deadline (distributed mode).",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for routes: each status with the Problem body."""
    return {
        status: {
            "model": Problem,
            "description": _STATUS_MEANING.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for status in statuses
    }


# What a generation route can answer beyond the errors every work route declares.
GENERATION_RESPONSES = {
    200: {
        "description": "The whole answer (JSON), or with `stream` true a stream of server-sent events: "
        "`data: <chunk JSON>` per piece, then `data: [DONE]`; a failure midway comes as `event: error`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **problem_responses(404, 502, 503, 504),
}


def limits_description(settings: Settings) -> str:
    return (
        "\n\n**Limits** (this deployment's settings):\n"
        f"- request body: {settings.max_body_bytes:,} bytes (`413`)\n"
        f"- `text`, `token_ids`, prompt: {settings.max_text_chars:,} characters or token ids (`413`)\n"
        f"- `/detect/batch`: {settings.max_batch_items:,} items, {settings.max_batch_chars:,} characters "
        "in all (`413`)\n"
        f"- generated tokens per request (`max_tokens`): {settings.max_new_tokens:,} (`422`)\n"
    )


def install_openapi(app: FastAPI) -> None:
    """Serve (at /openapi.json) and export the corrected document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _describe_event_streams(document)
            app.openapi_schema = _problems_as_problem_json(document)
        return app.openapi_schema

    app.openapi = openapi


def _stream_chunks() -> dict[str, type]:
    """The JSON each server-sent event of a streamed route carries, by path."""
    from signet.api.generate.protocol import GenerateChunk
    from signet.api.openai.protocol import ChatCompletionChunk, CompletionResponse

    return {
        "/generate": GenerateChunk,
        "/v1/completions": CompletionResponse,
        "/v1/chat/completions": ChatCompletionChunk,
    }


def _describe_event_streams(document: dict[str, Any]) -> None:
    """A stream's events: chunks, a problem (``event: error``), and the closing ``[DONE]``."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path, model in _stream_chunks().items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)
        event = {"anyOf": [{"$ref": f"#/components/schemas/{model.__name__}"}, _PROBLEM_REF, {"const": "[DONE]"}]}
        document["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"] = {"schema": event}


def _problems_as_problem_json(document: dict[str, Any]) -> dict[str, Any]:
    """Error bodies under their real media type, FastAPI's validation-error schema replaced."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
                if status == "422":
                    response["description"] = _STATUS_MEANING[422]
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def write_document(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(openapi_document(), indent=2) + "\n", encoding="utf-8")


def openapi_document() -> dict[str, Any]:
    """The document of an app with the default settings, whatever this process's environment."""
    from signet.api.app import create_app  # the app installs this module's generator
    from signet.api.state import ServiceState

    settings = Settings.model_construct()  # defaults only: SIGNET_* variables must not change the spec
    return create_app(ServiceState(settings, keys=None, tokenizers=None)).openapi()
