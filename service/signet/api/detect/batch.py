"""``/detect/batch``: each item is validated and detected on its own.

A bad item gets the problem it would have got from ``POST /detect`` in its result
entry; the other items are still answered. Only limits on the batch as a whole
(item count, total size) fail the request.
"""

from __future__ import annotations

from pydantic import ValidationError

from signet.api.auth import Caller
from signet.api.detect.protocol import DetectBatchItem, DetectBatchRequest, DetectBatchResponse, DetectRequest
from signet.api.detect.service import detect
from signet.api.errors import ApiError, PayloadTooLarge, unknown_key_problem
from signet.api.protocol import Problem
from signet.api.provenance.search import MAX_BATCH_PROVENANCE_SEARCHES
from signet.api.state import ServiceState
from signet.api.validation import describe_validation_errors
from signet.keys import UnknownKeyError


def detect_batch(state: ServiceState, request: DetectBatchRequest, caller: Caller) -> DetectBatchResponse:
    items = request.items
    limit = state.settings.max_batch_items
    if not items:
        raise ApiError(422, "items: must hold at least one detection request", "items")
    if len(items) > limit:
        raise ApiError(413, f"items holds {len(items)} requests; the limit is {limit}", "items")
    total = sum(_input_size(item) for item in items)
    if total > state.settings.max_batch_chars:
        raise PayloadTooLarge("items", total, state.settings.max_batch_chars)
    _check_provenance_searches(items)
    return DetectBatchResponse(results=[_detect_item(state, index, item, caller) for index, item in enumerate(items)])


def _input_size(item: object) -> int:
    if not isinstance(item, dict):
        return 0
    value = item.get("text") or item.get("token_ids") or ()
    return len(value) if isinstance(value, str | list) else 0


def _check_provenance_searches(items: list[object]) -> None:
    """413 for a batch that would scan the registry more than MAX_BATCH_PROVENANCE_SEARCHES
    times: each search costs a scan of the tenant's registry and up to MAX_QUERY_PIECES
    forward passes of the embedding model, the costs that bound the batch."""
    searches = sum(
        1
        for item in items
        if isinstance(item, dict) and item.get("provenance") is True and isinstance(item.get("text"), str)
    )  # an item without text is refused on its own (422), searching nothing
    if searches > MAX_BATCH_PROVENANCE_SEARCHES:
        raise ApiError(
            413,
            f"items: {searches} items ask for provenance, and each searches the whole registry; at most "
            f"{MAX_BATCH_PROVENANCE_SEARCHES} per request: split the batch",
            "items",
        )


def _detect_item(state: ServiceState, index: int, item: object, caller: Caller) -> DetectBatchItem:
    prefix = ("items", index)
    try:
        parsed = DetectRequest.model_validate(item)
        return DetectBatchItem(index=index, status=200, result=detect(state, parsed, caller))
    except ValidationError as error:
        detail, field = describe_validation_errors(error.errors(include_url=False), prefix)
        return _failed(index, 422, detail, field)
    except UnknownKeyError as error:
        problem = unknown_key_problem(error)
        return _failed(index, problem.status, problem.detail, _nested(prefix, problem.field))
    except ApiError as error:
        return _failed(index, error.status, error.detail, _nested(prefix, error.field))


def _nested(prefix: tuple, field: str | None) -> str:
    base = f"{prefix[0]}[{prefix[1]}]"
    return base if field is None else f"{base}.{field}"


def _failed(index: int, status: int, detail: str, field: str | None) -> DetectBatchItem:
    return DetectBatchItem(index=index, status=status, error=Problem.of(status, detail, field))
