"""The least an ASGI app on uvicorn can do for POST /detect, for bench/detect_floor.py.

Reads the body, parses the JSON, tokenizes the text (as /detect does) and answers its token
count: no routing, validation, authentication, budget, scoring, metrics or logs. Where the
tokenizer runs comes from BARE_DETECT_THREADS: "loop" on the event loop, an integer N in
threads through anyio with at most N at once, "default" in anyio's default pool (40).
Loads the served model's tokenizer at import.
"""

from __future__ import annotations

import json
import os

import anyio
import anyio.to_thread

from signet.engine.model_store import load_tokenizer, resolve_model_dir
from signet.settings import Settings

_settings = Settings()
_tokenizer = load_tokenizer(resolve_model_dir(_settings.model, _settings.resolved_cache_dir))
_WHERE = os.environ.get("BARE_DETECT_THREADS", "default")
_limiter = anyio.CapacityLimiter(int(_WHERE)) if _WHERE.isdigit() else None


def _count_tokens(text: str) -> int:
    return len(_tokenizer(text, add_special_tokens=False)["input_ids"])


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    if scope["path"] == "/detect":
        text = json.loads(body)["text"]
        if _WHERE == "loop":
            count = _count_tokens(text)
        else:
            count = await anyio.to_thread.run_sync(_count_tokens, text, limiter=_limiter)
        answer = json.dumps({"cached": False, "num_tokens": count}).encode()
    else:
        answer = b'{"status":"ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
