"""Per-caller rate limits. STUB: interface fixed, implementation pending."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from signet.redis_link import RedisLink


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float  # 0.0 when allowed


class RateLimiter(Protocol):
    def acquire(self, identity: str) -> RateDecision: ...


class MemoryRateLimiter:
    def __init__(self, per_minute: int, burst: int) -> None:
        raise NotImplementedError


class RedisRateLimiter:
    def __init__(self, link: RedisLink, per_minute: int, burst: int) -> None:
        raise NotImplementedError
