"""The committed OpenAPI document is the app's, and it tells clients what they need:
every error as problem+json, an example for every route, the limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signet.api.app import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
OPERATIONS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in OPERATIONS:
                yield path, method, operation


def test_the_committed_document_is_the_apps(document):
    committed = json.loads(COMMITTED.read_text())
    assert committed == document, "openapi/openapi.json is stale: run `.venv/bin/signet openapi`"


def test_every_error_response_is_problem_json(document):
    for path, method, operation in operations(document):
        errors = {status: response for status, response in operation["responses"].items() if status >= "400"}
        for status, response in errors.items():
            assert list(response["content"]) == ["application/problem+json"], (path, method, status)
            assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_route_with_a_body_declares_its_errors_and_has_an_example(document):
    for path, method, operation in operations(document):
        if "requestBody" not in operation:
            continue
        assert {"413", "422"} <= set(operation["responses"]), (path, method)
        content = operation["requestBody"]["content"]["application/json"]
        schema_name = content["schema"]["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][schema_name]
        assert content.get("examples") or schema.get("examples"), f"{method.upper()} {path} has no example"


def test_generation_routes_declare_queue_errors(document):
    for path in ("/generate", "/v1/completions", "/v1/chat/completions"):
        assert {"401", "403", "404", "429", "502", "503", "504"} <= set(document["paths"][path]["post"]["responses"])


def test_the_description_states_the_limits(document):
    description = document["info"]["description"]
    assert "Limits" in description and "413" in description and "max_tokens" in description


def test_every_get_route_shows_an_example_answer(document):
    for path, method, operation in operations(document):
        if method != "get" or path == "/openapi.json":
            continue
        reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]
        assert schema.get("examples"), f"GET {path} has no example"
