"""Process settings, read from the environment (prefix ``SIGNET_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The largest max_tokens any deployment accepts; SIGNET_MAX_NEW_TOKENS may lower it.
MAX_NEW_TOKENS_CEILING = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNET_", extra="ignore")

    cache_dir: Path = Field(default=Path("~/.cache/signet"), description="Prepared models and the development key.")
    model: Path | None = Field(default=None, description="A Hugging Face model folder; unset: the embedded SmolLM2.")
    keys_file: Path | None = Field(default=None, description="Watermark key registry (JSON or YAML).")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"

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

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir.expanduser().resolve()

    @property
    def max_body_bytes(self) -> int:
        # JSON may escape one character as a surrogate pair (12 bytes); a text (or a
        # batch) at the character limit must still fit, with room for the other fields.
        # A token id takes at most 12 bytes too ("4294967295, ").
        return 12 * max(self.max_text_chars, self.max_batch_chars) + 64 * 1024
