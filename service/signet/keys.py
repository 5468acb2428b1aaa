"""Watermark key registry: key_id -> secret, scheme and parameters.

Loaded from the JSON or YAML file named by ``SIGNET_KEYS_FILE``. Without one, a random
development key is created once under the cache directory. Secrets stay in this
process: models hold them as ``SecretStr`` and schemes redact them in ``repr``.

File format::

    default_key_id: main
    keys:
      - key_id: main
        secret: "at least 16 characters of random text"
        scheme: kgw            # or kgw-lefthash, gumbel (the key models in watermark/registry.py)
        gamma: 0.25
        delta: 2.0
        context_width: 1
      - key_id: hf
        scheme: kgw-lefthash   # transformers' WatermarkingConfig(seeding_scheme="lefthash")
        hashing_key: 15485863
      - key_id: vllm
        scheme: gumbel         # vLLM's native Gumbel-max watermark
        key: 42
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from signet.config_files import read_document
from signet.watermark.registry import SCHEMES, scheme_tag
from signet.watermark.scheme import WatermarkScheme

logger = logging.getLogger(__name__)

DEVELOPMENT_KEYS_FILENAME = "development-keys.json"
DEVELOPMENT_KEY_ID = "dev"


class KeyRegistryError(Exception):
    """The key registry file is missing or invalid. The message never holds a secret."""


class UnknownKeyError(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key_id {key_id!r}")
        self.key_id = key_id


# The keys file's entries: one key model per scheme (watermark/registry.py), told apart by "scheme".
WatermarkKey = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in SCHEMES.items())],  # noqa: UP007 (built from a list)
    Discriminator(
        scheme_tag,
        custom_error_type="unknown_scheme",
        custom_error_message=f"scheme must be one of {', '.join(SCHEMES)}",
    ),
]
_SCHEME_TAGS = tuple(SCHEMES)


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_key_id: str | None = None
    keys: list[WatermarkKey] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_ids(self) -> _RegistryFile:
        ids = [key.key_id for key in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("key_id values must be unique")
        if self.default_key_id is not None and self.default_key_id not in ids:
            raise ValueError(f"default_key_id {self.default_key_id!r} is not among the keys")
        return self


class KeyRegistry:
    """Keys by id, and each key's scheme, built on first use.

    ``model_vocab_size`` is the served model's vocabulary size: the default size of
    a ``kgw-lefthash`` key's permutation.
    """

    def __init__(
        self, keys: list[WatermarkKey], default_key_id: str, source: Path, model_vocab_size: int | None = None
    ) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._schemes: dict[str, WatermarkScheme] = {}
        self._lock = threading.Lock()
        self.default_key_id = default_key_id
        self.source = source
        self.model_vocab_size = model_vocab_size

    @classmethod
    def load(cls, path: Path, model_vocab_size: int | None = None) -> KeyRegistry:
        document = read_document(path, "keys file", KeyRegistryError)
        try:
            parsed = _RegistryFile.model_validate(document)
        except ValidationError as error:
            raise KeyRegistryError(f"keys file {path} is invalid: {_describe(error)}") from None
        default = parsed.default_key_id or parsed.keys[0].key_id
        registry = cls(parsed.keys, default, path, model_vocab_size)
        registry._build_schemes()
        return registry

    def _build_schemes(self) -> None:
        """Build every scheme now, so a bad combination of parameters (a vocabulary too
        small for its gamma, say) fails at start, not as a 500 on a request."""
        for key in self._keys.values():
            if key.needs_model_vocab_size and self.model_vocab_size is None:
                continue  # built once a model tells the vocabulary size
            try:
                self.scheme(key.key_id)
            except KeyRegistryError as error:
                raise KeyRegistryError(f"keys file {self.source} is invalid: {error}") from None

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str | None) -> WatermarkKey:
        resolved = self.default_key_id if key_id is None else key_id
        try:
            return self._keys[resolved]
        except KeyError:
            raise UnknownKeyError(resolved) from None

    def scheme(self, key_id: str) -> WatermarkScheme:
        key = self.get(key_id)
        with self._lock:
            if key.key_id not in self._schemes:
                try:
                    self._schemes[key.key_id] = key.build_scheme(self.model_vocab_size)
                except ValueError as error:  # parameters that make no scheme (or no vocabulary size known)
                    raise KeyRegistryError(f"key {key.key_id!r}: {error}") from None
            return self._schemes[key.key_id]


def prewarm_schemes(registry: KeyRegistry) -> None:
    """Fill each key's scheme caches (seconds per ``kgw-lefthash`` key; run it in a thread)."""
    for key_id in registry.key_ids:
        registry.scheme(key_id).prewarm()
    logger.info("watermark schemes of %d keys prewarmed", len(registry.key_ids))


def _describe(error: ValidationError) -> str:
    # input values are left out on purpose: they may be secrets
    # the scheme tag pydantic adds to a key's location ("keys.0.kgw.secret") is noise
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'] if part not in _SCHEME_TAGS) or 'file'}: {item['msg']}"
        for item in error.errors()
    )


def ensure_development_keys(cache_dir: Path) -> Path:
    """Create (once) and return a keys file with one random development key."""
    path = cache_dir / DEVELOPMENT_KEYS_FILENAME
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "default_key_id": DEVELOPMENT_KEY_ID,
        "keys": [{"key_id": DEVELOPMENT_KEY_ID, "secret": secrets.token_hex(32)}],
    }
    temporary = cache_dir / f".{DEVELOPMENT_KEYS_FILENAME}.{os.getpid()}"
    file_descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(file_descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    try:
        # link() refuses to replace: of two processes starting at once, one key wins for both.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path


def resolve_keys_file(keys_file: Path | None, cache_dir: Path) -> Path:
    if keys_file is not None:
        return keys_file.expanduser().resolve()
    path = ensure_development_keys(cache_dir)
    logger.warning("development mode: no SIGNET_KEYS_FILE set, using the generated watermark key in %s", path)
    return path
