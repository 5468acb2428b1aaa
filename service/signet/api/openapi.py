"""The OpenAPI document: what FastAPI derives, plus what it cannot know.

- Errors: every error is RFC 9457 ``application/problem+json`` with the ``Problem``
  schema, FastAPI's default 422 body included; each route lists the statuses it can
  answer with.
- Limits: the description states the configured limits, so clients see them.

``signet openapi`` writes the document to ``openapi/openapi.json`` (``app.write_document``);
a test fails when the committed file and the app disagree. Routes declare their error
statuses with ``responses.problem_responses``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from signet.api.errors import PROBLEM_MEDIA_TYPE
from signet.api.generate.protocol import GenerateChunk
from signet.api.json_budget import JsonBudget
from signet.api.openai.protocol import ChatCompletionChunk, CompletionResponse
from signet.api.responses import STATUS_MEANING
from signet.settings import Settings

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def limits_description(settings: Settings) -> str:
    return (
        "\n\n**Limits** (this deployment's settings):\n"
        f"- request body: {settings.max_body_bytes:,} bytes (`413`), arriving within "
        f"{settings.body_timeout_seconds:g} s of the headers (`408`)\n"
        f"- JSON shape of a body: {_json_budget(settings)} (`413`)\n"
        f"- request line and headers: {settings.max_header_bytes:,} bytes (`431`), arriving within "
        f"{settings.header_timeout_seconds:g} s (`408`)\n"
        f"- `text`, `token_ids`, prompt: {settings.max_text_chars:,} characters or token ids (`413`)\n"
        f"- `/detect/batch`: {settings.max_batch_items:,} items, {settings.max_batch_chars:,} characters "
        "in all (`413`)\n"
        f"- generated tokens per request (`max_tokens`): {settings.max_new_tokens:,} (`422`)\n"
    )


def _json_budget(settings: Settings) -> str:
    budget = JsonBudget.from_settings(settings)
    return (
        f"{budget.values:,} values, {budget.containers:,} arrays and objects, {budget.keys:,} object keys, "
        f"{budget.strings:,} strings"
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


# The JSON each server-sent event of a streamed route carries, by path.
_STREAM_CHUNKS: dict[str, type[BaseModel]] = {
    "/generate": GenerateChunk,
    "/v1/completions": CompletionResponse,
    "/v1/chat/completions": ChatCompletionChunk,
}


def _describe_event_streams(document: dict[str, Any]) -> None:
    """A stream's events: chunks, a problem (``event: error``), and the closing ``[DONE]``."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path, model in _STREAM_CHUNKS.items():
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
                    response["description"] = STATUS_MEANING[422]
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
