"""What routes declare they answer besides 200: each error status, with the Problem body.

Routers import these declarations; ``openapi.py`` then rewrites the document FastAPI
derives from them. Kept apart from both, so no router depends on the app's assembly.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from signet.api.errors import PROBLEM_MEDIA_TYPE
from signet.api.protocol import Problem

STATUS_MEANING = {
    400: "The body could not be read (not UTF-8).",
    401: "No API key, or an unknown one.",
    403: "The API key's tenant lacks the permission: a watermark key, turning the watermark off, per-token "
    "detail, token_ids, or a fixed seed on the score routes; `field` names it.",
    404: "An unknown watermark key_id (or model).",
    408: "The body did not arrive in time (see the description's limits); the connection is closed.",
    413: "The body or a text is over its limit (see the description's limits).",
    415: "The body is not UTF-8 JSON.",
    422: "An invalid field; `field` names it.",
    429: "Over the caller's rate limit or detection budget; `Retry-After` says when to try again.",
    502: "The job failed on every delivery and was set aside (distributed mode).",
    503: "No engine or worker can take the request now, or the queue is full; `Retry-After` says when to retry.",
    504: "No result within the job's deadline (distributed mode).",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for routes: each status with the Problem body."""
    return {
        status: {
            "model": Problem,
            "description": STATUS_MEANING.get(status, HTTPStatus(status).phrase),
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
