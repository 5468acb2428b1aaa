"""``DELETE /generations/{generation_id}``: erase a generation from the caller's registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from signet.api.auth import CallerDependency
from signet.api.errors import ApiError
from signet.api.provenance.protocol import GENERATION_ID_PATTERN
from signet.api.provenance.recorder import registry_tenant
from signet.api.provenance.search import require_store
from signet.api.responses import problem_responses
from signet.api.state import StateDependency
from signet.registry.store import StoreUnavailable

router = APIRouter(tags=["provenance"])


# A plain ``def``: the store's calls block (SQLite, or synchronous Redis), so FastAPI runs
# this in its thread pool.
@router.delete(
    "/generations/{generation_id}",
    status_code=204,
    summary="Erase a generation from the caller's registry (the right to erasure)",
    responses=problem_responses(404, 503),
)
def erase_generation(
    generation_id: Annotated[str, Path(pattern=GENERATION_ID_PATTERN, description="As a generation response gave it.")],
    state: StateDependency,
    caller: CallerDependency,
) -> Response:
    store = require_store(state, 404, None)
    tenant = caller.queue_tenant
    # One still waiting to be recorded is dropped from the queue instead.
    pending = state.recorder is not None and state.recorder.cancel(tenant, generation_id)
    try:
        erased = store.erase(registry_tenant(tenant), generation_id)
    except StoreUnavailable as error:
        raise ApiError(503, str(error), headers={"Retry-After": "1"}) from error
    if not (erased or pending):
        # The same answer for another tenant's generation as for none: ids are not probed.
        raise ApiError(404, f"no generation {generation_id} in this tenant's registry", "generation_id")
    return Response(status_code=204)
