"""Process settings, read from the environment (prefix ``SIGNET_``)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from signet.config_files import read_password

# The largest max_tokens any deployment accepts; SIGNET_MAX_NEW_TOKENS may lower it.
MAX_NEW_TOKENS_CEILING = 4096
# The largest SIGNET_MAX_TEXT_CHARS; also the request schema's bound on token_ids, so a
# list past it is refused with one error as it is validated (longer lists under it get
# 413 against the setting). FastAPI validates a body on the event loop: 200,000 valid ids
# take about 80 ms there (1,000,000: 200 ms, long enough to stall /healthz).
MAX_TEXT_CHARS_CEILING = 200_000


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
    api_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes sharing the port (distributed mode only; `signet serve --processes`). "
        "Each has its own connection limits; Redis holds what they share.",
    )
    switch_interval_seconds: float = Field(
        default=0.005,
        gt=0.0,
        le=0.1,
        description="sys.setswitchinterval for serve and worker (Python's default: 0.005): how long a thread "
        "keeps the GIL once another asks for it. Shorter lets the event loop in sooner while a request's CPU "
        "work runs in a thread, at a CPU cost (bench/switch_interval.py, docs/BENCHMARKS.md).",
    )
    # The front door (api/gate.py, api/connections.py): what a caller meets before its request is served.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Host names (comma-separated) answered besides localhost, SIGNET_HOST and IP addresses; "
        "other Host headers get 400. Checked in development mode always, with SIGNET_API_KEYS_FILE only when set; "
        "'*' turns the check off.",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        description="Open connections (idle keep-alive ones included) or running requests above which a new "
        "request gets 503.",
    )
    # Above the idle time of common clients' pools (httpx 5 s, aiohttp 15 s): at uvicorn's 5 s,
    # equal to httpx's, a client now and then sent a request on a connection the server was
    # closing at that moment, and got "Server disconnected without sending a response".
    keep_alive_seconds: int = Field(
        default=20, ge=1, le=3600, description="An idle keep-alive connection is closed after this long."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=300.0,
        description="A request's line and headers must arrive within this long of its first byte (or of the "
        "connection opening); else 408 and the connection is closed.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest request line and headers (bytes); over it: 431 and the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="A request's body must arrive within this long of its headers; else 408.",
    )
    log_level: str = "info"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines as JSON objects (with request ids), or as human-readable text; "
        "auto: text when standard error is a terminal, else JSON.",
    )

    max_text_chars: int = Field(
        default=100_000,
        ge=1,
        le=MAX_TEXT_CHARS_CEILING,
        description="Longest text or prompt accepted (characters).",
    )
    max_batch_items: int = Field(default=64, ge=1, le=10_000, description="Most items in one POST /detect/batch.")
    detect_threads: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Threads of an API process that run /detect and /detect/batch (tokenizing, scoring, and "
        "the waits on Redis of the budget and the cache). Fewer hand the GIL around less: 2 answered 13% more "
        "than 40 on 2 cores with Redis on the same host, but 46% less with Redis 1 ms away each way, where 8 "
        "kept 0.94x of 40 (bench/detect_threads.py, docs/BENCHMARKS.md). More cores are used with more processes "
        "(SIGNET_API_PROCESSES).",
    )
    max_batch_chars: int = Field(
        default=400_000, ge=1, description="Most characters (or token ids) in one POST /detect/batch, all items."
    )
    max_new_tokens: int = Field(
        default=MAX_NEW_TOKENS_CEILING,
        ge=1,
        le=MAX_NEW_TOKENS_CEILING,
        description="Largest max_tokens a request may ask for.",
    )
    score_max_sequences: int = Field(
        default=1100,
        ge=2,
        description="Most sequences (answers, samples, judge questions) one /score request may have the engine "
        "run, counted from the request before any engine work; over it: 422.",
    )
    score_max_tokens: int = Field(
        default=1_048_576,
        ge=1,
        description="Most tokens the engine may read and generate for one /score request, over all its "
        "requests: their prompt tokens (judge questions each carry their context: a reference-mode question "
        "the whole source) and max_tokens for each sequence. Checked before each engine request is sent; over "
        "it: 422. The default lets the largest /score/uncertainty (992 judge questions) read samples of about "
        "450 tokens; it is minutes of the embedded model on 2 CPU cores, seconds on a GPU: lower it on CPU "
        "workers.",
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
    redis_cluster: bool = Field(
        default=False,
        description="SIGNET_REDIS_URL names a node of a Redis Cluster; the queue's keys then share one hash slot "
        "({namespace}:...). Checked at start against what Redis says of itself.",
    )
    redis_namespace: str = Field(
        default="signet",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Prefix of every Redis key, so deployments can share one Redis.",
    )
    redis_timeout_seconds: float = Field(
        default=0.5, gt=0.0, le=30.0, description="Connect and command timeout of non-blocking Redis calls."
    )
    # A protected Redis (docs/DEPLOY.md, "Securing Redis"). Files, not values: Kubernetes mounts Secrets as files.
    redis_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) that a rediss:// server's certificate must chain to; unset: the "
        "system's. The server's certificate and host name are always verified.",
    )
    redis_cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for a rediss:// server that asks for one (mutual TLS)."
    )
    redis_key_file: Path | None = Field(default=None, description="The private key of SIGNET_REDIS_CERT_FILE (PEM).")
    redis_username: str | None = Field(
        default=None, pattern=r"^[!-~]{1,128}$", description="Redis ACL user; unset: the URL's, or 'default'."
    )
    redis_password_file: Path | None = Field(
        default=None,
        description="A file holding the Redis password (a final newline is ignored); instead of one in the URL.",
    )
    queue_max_jobs: int = Field(
        default=256, ge=1, description="Jobs waiting or running in the queue above which new jobs get 503."
    )
    queue_retry_after_seconds: int = Field(
        default=2, ge=1, le=3600, description="Retry-After of a 503 when the queue is full or unreachable."
    )
    queue_tenant_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Fraction of SIGNET_QUEUE_MAX_JOBS one tenant may hold waiting or running (at least one "
        "job); over it the tenant gets 503 with Retry-After. Applies with two or more tenants only.",
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
    job_retention_seconds: int = Field(
        default=86_400,
        ge=60,
        le=7 * 86_400,
        description="Jobs (prompts included) and dead letters older than this are deleted from Redis; at least "
        "SIGNET_JOB_TIMEOUT_SECONDS, so no job is deleted before its deadline.",
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
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65_535,
        description="A port where the worker serves its Prometheus metrics (vLLM's own vllm: series: KV-cache use, "
        "requests running and waiting, time to first token, inter-token latency); unset: none.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="The address the worker's metrics port listens on: 0.0.0.0 in a pod, for Prometheus to scrape.",
    )
    worker_ready_file: Path | None = Field(
        default=None,
        description="A file the worker creates once its engine is loaded, touches every second while the "
        "engine is healthy, and removes when it starts draining: for exec probes (workers serve no API).",
    )

    detect_cache_ttl_seconds: int = Field(
        default=3600, ge=0, le=30 * 86_400, description="How long a /detect result is cached; 0 turns the cache off."
    )
    provenance: bool = Field(
        default=True,
        description="Record every generation (its sentence-embedding fingerprint, key id and time; never its text "
        "unless SIGNET_PROVENANCE_STORE_TEXT) in the tenant's generation registry, for POST /detect with "
        "provenance: true (docs/PROVENANCE.md).",
    )
    provenance_retention_days: float = Field(
        default=30.0,
        gt=0.0,
        le=3650.0,
        description="How long a generation stays in the registry, unless the tenant sets its own "
        "provenance_retention_days.",
    )
    provenance_rare_words: bool = Field(
        default=False,
        description="Also keep and search each generation's rare words (its terms, hashed, with tf-idf weights): "
        "/detect then reports, per match, how close its rare words are, evidence that finds the model's own "
        "paraphrases where meaning cannot, outside the verdict. They are the text's vocabulary (docs/SECURITY.md), "
        "and a search costs 2.6 to 3 times as much (docs/PROVENANCE.md).",
    )
    provenance_store_text: bool = Field(
        default=False,
        description="Also keep each generation's text, so the web page can show a match side by side "
        "(docs/SECURITY.md).",
    )
    provenance_path: Path | None = Field(
        default=None,
        description="Embedded mode: the registry's SQLite file (default: "
        "<SIGNET_CACHE_DIR>/provenance/registry.sqlite3).",
    )
    provenance_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Generations waiting to be fingerprinted and recorded; beyond it a generation is not "
        'recorded (counted in signet_provenance_records_total{outcome="dropped"}).',
    )
    provenance_shards: int = Field(
        default=4, ge=1, le=64, description="Distributed mode: Redis streams per tenant (spread over a cluster)."
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
    # The evidence a caller may extract from /detect, in scored tokens per key tested. On by
    # default: every count /detect reports is evidence about the green lists. A moderation
    # pipeline testing one 250-token text a second, day and night, uses 900,000 an hour; an
    # attacker at the full budget learns at most about 232,000 green-list entries an hour
    # (log2(26) bits per 25 scored tokens; 40,000 with the differential attack that
    # bench/green_list_oracle.py runs), against 2.4 billion entries for a 49k vocabulary.
    detect_token_budget: int = Field(
        default=1_000_000,
        ge=0,
        description="Scored tokens (times the keys tested) one tenant, or in development mode one caller, may "
        "have /detect and /detect/batch evaluate per SIGNET_DETECT_TOKEN_BUDGET_SECONDS, cached answers "
        "included; over it: 429 with Retry-After. 0 turns the budget off.",
    )
    detect_token_budget_seconds: int = Field(
        default=3600,
        ge=1,
        le=30 * 86_400,
        description="The window of SIGNET_DETECT_TOKEN_BUDGET: a spent budget refills over this many seconds.",
    )

    @field_validator("job_retention_seconds")
    @classmethod
    def _retention_outlasts_deadlines(cls, seconds: int, info: ValidationInfo) -> int:
        timeout = info.data.get("job_timeout_seconds")  # absent when it failed its own validation
        if timeout is not None and seconds < timeout:
            raise ValueError(f"must be at least SIGNET_JOB_TIMEOUT_SECONDS ({timeout:g})")
        return seconds

    @field_validator("redis_url")
    @classmethod
    def _no_tls_options_in_url(cls, url: str | None) -> str | None:
        # redis-py lets a URL's query override any option, ssl_cert_reqs=none included
        query = parse_qs(urlsplit(url).query, keep_blank_values=True) if url is not None else {}
        if any(name.startswith("ssl") for name in query):
            raise ValueError("TLS options do not go in the URL: use SIGNET_REDIS_CA_FILE (verification stays on)")
        return url

    @field_validator("redis_ca_file")
    @classmethod
    def _ca_loads(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None:
            _require_tls_url(info, "SIGNET_REDIS_CA_FILE")
            problem = f"cannot load CA certificates from {path}"
            _load_tls(lambda context: context.load_verify_locations(cafile=path), problem)
        return path

    @field_validator("redis_key_file")
    @classmethod
    def _client_certificate_loads(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        certificate = info.data.get("redis_cert_file")
        if (key is None) != (certificate is None):
            raise ValueError("SIGNET_REDIS_CERT_FILE and SIGNET_REDIS_KEY_FILE go together")
        if key is not None:
            _require_tls_url(info, "SIGNET_REDIS_CERT_FILE")
            _load_tls(
                lambda context: context.load_cert_chain(certificate, key),
                f"cannot load a certificate and its key from {certificate} and {key}",
            )
        return key

    @field_validator("redis_username")
    @classmethod
    def _one_username(cls, username: str | None, info: ValidationInfo) -> str | None:
        url = info.data.get("redis_url")
        if username is not None and url is not None and urlsplit(url).username:
            raise ValueError("SIGNET_REDIS_URL names a user too: keep one of them")
        return username

    @field_validator("redis_password_file")
    @classmethod
    def _password_readable(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        url = info.data.get("redis_url")
        if url is not None and urlsplit(url).password is not None:
            raise ValueError("SIGNET_REDIS_URL holds a password too: keep one of them")
        try:
            password = read_password(path)
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise ValueError(f"cannot read {path}: {reason}") from None
        if not password:
            raise ValueError(f"{path} is empty")
        return path

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_host_names(cls, value: object) -> object:
        # SIGNET_ALLOWED_HOSTS=a.example,b.example; compared with the Host header's name, lowercase
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [name.strip().lower().removeprefix("[").removesuffix("]") for name in value]
            return [name for name in value if name]
        return value

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir.expanduser().resolve()

    @property
    def resolved_provenance_path(self) -> Path:
        if self.provenance_path is not None:
            return self.provenance_path.expanduser().resolve()
        return self.resolved_cache_dir / "provenance" / "registry.sqlite3"

    @property
    def max_body_bytes(self) -> int:
        # JSON may escape one character as a surrogate pair (12 bytes); a text (or a
        # batch) at the character limit must still fit, with room for the other fields.
        # A token id takes at most 12 bytes too ("4294967295, ").
        return 12 * max(self.max_text_chars, self.max_batch_chars) + 64 * 1024


def _require_tls_url(info: ValidationInfo, setting: str) -> None:
    url = info.data.get("redis_url")
    if url is None or not url.startswith("rediss://"):
        raise ValueError(f"{setting} needs a rediss:// SIGNET_REDIS_URL (TLS)")


def _load_tls(load: Callable[[ssl.SSLContext], object], problem: str) -> None:
    """Load files into a throwaway TLS context now, so a bad one stops start-up naming its
    setting, not every connection later. The messages name files, never their content."""
    try:
        load(ssl.create_default_context())
    except OSError as error:  # ssl.SSLError is one
        reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
        raise ValueError(f"{problem} ({reason})") from None
