"""Per-caller rate limits on the work routes (/generate, /detect): a 429 with Retry-After.

A caller is its API key when it sends one (``Authorization: Bearer <token>`` or
``X-API-Key: <token>``), else its address. Only a SHA-256 prefix of a key is kept (as
the Redis key and in memory), never the key itself. With ``SIGNET_API_KEYS_FILE`` set,
authentication runs first (api/auth.py): an unknown key gets 401 without being counted,
so only real keys have allowances. Without it (development mode) keys are not checked:
a caller that makes up a new one each time gets a fresh allowance each time, so behind
a gateway that does not authenticate callers the address is the limit that holds.
The address is the TCP peer, or the client a trusted proxy names when uvicorn runs
with ``--proxy-headers``/``--forwarded-allow-ips``.
"""

from __future__ import annotations

import hashlib

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from signet.api.errors import ApiError, retry_after
from signet.api.state import StateDependency

_KEY_DIGEST_CHARS = 32  # 128 bits of SHA-256: no collisions between real callers


def caller_identity(request: Request) -> str:
    """``key:<sha256 prefix>`` for a caller with an API key, else ``ip:<address>``."""
    token = presented_api_key(request)
    if token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:_KEY_DIGEST_CHARS]
    host = request.client.host if request.client is not None else None
    return f"ip:{host or 'unknown'}"


def presented_api_key(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, else of ``X-API-Key``; None without one."""
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key", "").strip() or None


async def enforce_rate_limit(request: Request, state: StateDependency) -> None:
    """A route dependency: 429 when the caller is over its limit; nothing when limits are off.

    ``async`` so that with limits off it costs no hop to the thread pool; the limiter
    itself (a blocking Redis round trip) runs there."""
    limiter = state.rate_limiter
    if limiter is None:
        return
    decision = await run_in_threadpool(limiter.acquire, caller_identity(request))
    if decision.allowed:
        return
    headers = retry_after(decision.retry_after_seconds)
    per_minute, burst = getattr(limiter, "per_minute", None), getattr(limiter, "burst", None)
    limit = f"at most {per_minute} requests per minute (burst {burst})" if per_minute and burst else "too many requests"
    raise ApiError(429, f"rate limit exceeded: {limit}; retry in {headers['Retry-After']} s", headers=headers)
