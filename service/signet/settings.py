"""Process settings, read from the environment (prefix ``SIGNET_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The largest max_tokens any deployment accepts; SIGNET_MAX_NEW_TOKENS may lower it.
MAX_NEW_TOKENS_CEILING = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNET_", extra="ignore")

    cache_dir: Path = Field(default=Path("~/.cache/signet"), description="Prepared models and the development key.")
    model: Path | None = Field(default=None, description="A Hugging Face model folder; unset: the embedded SmolLM2.")
    keys_file: Path | None = Field(default=None, description="Watermark key registry (JSON or YAML).")
    api_keys_file: Path | None = Field(
        default=None,
        description="Tenants and the SHA-256 digests of their API keys (JSON or YAML); unset: no authentication "
        "(development mode, on a loopback address only unless SIGNET_AUTH=disabled).",
    )
    auth: Literal["auto", "required", "disabled"] = Field(
        default="auto",
        description="auto: API keys are required when SIGNET_API_KEYS_FILE is set; required: refuse to start "
        "without it; disabled: serve without authentication on any address.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log lines as JSON objects (with request ids), or as human-readable text."
    )

    max_text_chars: int = Field(default=100_000, ge=1, description="Longest text or prompt accepted (characters).")
    max_batch_items: int = Field(default=64, ge=1, le=10_000, description="Most items in one POST /detect/batch.")
    max_batch_chars: int = Field(
        default=400_000, ge=1, description="Most characters (or token ids) in one POST /detect/batch, all items."
    )
    max_new_tokens: int = Field(
        default=MAX_NEW_TOKENS_CEILING,
        ge=1,
        le=MAX_NEW_TOKENS_CEILING,
        description="Largest max_tokens a request may ask for.",
    )

    max_model_len: int | None = Field(default=None, ge=16, description="Engine context length; unset: the model's.")
    engine_memory_fraction: float = Field(
        default=0.25, gt=0.0, le=1.0, description="Share of memory vLLM reserves (weights + KV cache)."
    )
    engine_max_concurrency: int = Field(default=32, ge=1, description="Sequences the engine batches at once.")
    engine_eager: bool = Field(
        default=False, description="Skip vLLM's warm-up compile: a faster start, a slower decode."
    )

    # Distributed mode: API processes queue jobs on Redis for `signet worker` processes.
    redis_url: str | None = Field(
        default=None,
        description="Redis for the job queue, detection cache and rate limits; unset: embedded mode.",
    )
    redis_namespace: str = Field(
        default="signet",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Prefix of every Redis key, so deployments can share one Redis.",
    )
    redis_timeout_seconds: float = Field(
        default=0.5, gt=0.0, le=30.0, description="Connect and command timeout of non-blocking Redis calls."
    )
    queue_max_jobs: int = Field(
        default=256, ge=1, description="Jobs waiting or running in the queue above which new jobs get 503."
    )
    queue_retry_after_seconds: int = Field(
        default=2, ge=1, le=3600, description="Retry-After of a 503 when the queue is full or unreachable."
    )
    job_timeout_seconds: float = Field(
        default=300.0, gt=0.0, le=86_400.0, description="Deadline of a queued job; past it the caller gets 504."
    )
    job_max_deliveries: int = Field(
        default=3, ge=1, le=100, description="Deliveries of a job before it is set aside on the dead-letter stream."
    )
    job_claim_idle_seconds: float = Field(
        default=15.0,
        gt=0.0,
        le=3600.0,
        description="A job no worker has reported on for this long is taken over by another worker.",
    )
    worker_concurrency: int | None = Field(
        default=None, ge=1, description="Jobs one worker runs at once; unset: SIGNET_ENGINE_MAX_CONCURRENCY."
    )
    worker_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="This worker's consumer name in the queue; unset: host name and process id.",
    )
    worker_drain_seconds: float = Field(
        default=25.0, ge=0.0, le=3600.0, description="On SIGTERM, how long a worker finishes its running jobs."
    )
    worker_ready_file: Path | None = Field(
        default=None,
        description="A file the worker creates once its engine is loaded, touches every second while the "
        "engine is healthy, and removes when it starts draining: for exec probes (workers serve no HTTP).",
    )

    detect_cache_ttl_seconds: int = Field(
        default=3600, ge=0, le=30 * 86_400, description="How long a /detect result is cached; 0 turns the cache off."
    )
    detect_cache_entries: int = Field(
        default=10_000, ge=1, description="Results the in-memory cache of embedded mode holds."
    )
    rate_limit_per_minute: int = Field(
        default=0, ge=0, description="Requests a caller may make per minute (sustained); 0 turns limits off."
    )
    rate_limit_burst: int | None = Field(
        default=None, ge=1, description="Requests a caller may make at once; unset: a tenth of the per-minute rate."
    )

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir.expanduser().resolve()

    @property
    def max_body_bytes(self) -> int:
        # JSON may escape one character as a surrogate pair (12 bytes); a text (or a
        # batch) at the character limit must still fit, with room for the other fields.
        # A token id takes at most 12 bytes too ("4294967295, ").
        return 12 * max(self.max_text_chars, self.max_batch_chars) + 64 * 1024
