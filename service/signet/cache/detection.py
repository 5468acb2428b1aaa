"""Cached /detect results. STUB: interface fixed, implementation pending."""

from __future__ import annotations

from typing import Protocol

from signet.redis_link import RedisLink


class DetectionCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class MemoryDetectionCache:
    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        raise NotImplementedError


class RedisDetectionCache:
    def __init__(self, link: RedisLink, ttl_seconds: int) -> None:
        raise NotImplementedError
