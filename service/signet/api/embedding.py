"""The sentence-embedding model (all-MiniLM-L6-v2), loaded once per process on first use:
the consistency scores and the generation registry share it."""

from __future__ import annotations

import threading

import numpy as np
from starlette.concurrency import run_in_threadpool

from signet.api.errors import ApiError
from signet.api.state import ServiceState
from signet.engine.model_store import ModelError

_load_lock = threading.Lock()


def sentence_embedder(state: ServiceState):  # -> signet.engine.embeddings.SentenceEmbedder
    """The process's embedder, loading it (about a second) on first use; 503 when it cannot load.

    Call it from a worker thread: loading blocks."""
    if state.embedder is None:
        with _load_lock:
            if state.embedder is None:
                try:
                    from signet.engine.embeddings import SentenceEmbedder

                    state.embedder = SentenceEmbedder.load()
                except (ModelError, OSError, ImportError) as error:  # ImportError: an image without torch
                    raise ApiError(503, f"sentence embeddings are unavailable: {error}") from error
    return state.embedder


def embed_now(state: ServiceState, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, in this thread (the detection routes already run in the pool)."""
    return sentence_embedder(state).embed(texts)


async def embed(state: ServiceState, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, computed in the thread pool."""
    return await run_in_threadpool(embed_now, state, texts)
