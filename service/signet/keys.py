"""Watermark key registry: key_id -> secret, scheme and parameters.

Loaded from the JSON or YAML file named by ``SIGNET_KEYS_FILE``. Without one, a random
development key is created once under the cache directory. Secrets stay in this
process: models hold them as ``SecretStr`` and schemes redact them in ``repr``.

File format::

    default_key_id: main
    keys:
      - key_id: main
        secret: "at least 16 characters of random text"
        scheme: kgw
        gamma: 0.25
        delta: 2.0
        context_width: 1
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from signet.watermark.kgw import SCHEME_NAME, KgwParameters, KgwScheme

logger = logging.getLogger(__name__)

DEVELOPMENT_KEYS_FILENAME = "development-keys.json"
DEVELOPMENT_KEY_ID = "dev"


class KeyRegistryError(Exception):
    """The key registry file is missing or invalid. The message never holds a secret."""


class UnknownKeyError(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key_id {key_id!r}")
        self.key_id = key_id


class WatermarkKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    secret: SecretStr = Field(min_length=16)
    scheme: Literal["kgw"] = SCHEME_NAME
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    context_width: int = Field(default=1, ge=1, le=8)

    @property
    def parameters(self) -> KgwParameters:
        return KgwParameters(gamma=self.gamma, delta=self.delta, context_width=self.context_width)

    def build_scheme(self) -> KgwScheme:
        return KgwScheme(self.secret.get_secret_value().encode(), self.parameters)


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
    def __init__(self, keys: list[WatermarkKey], default_key_id: str, source: Path) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._schemes = {key.key_id: key.build_scheme() for key in keys}
        self.default_key_id = default_key_id
        self.source = source

    @classmethod
    def load(cls, path: Path) -> KeyRegistry:
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as error:
            raise KeyRegistryError(f"cannot read keys file {path}: {error.strerror}") from None
        is_json = path.suffix == ".json"
        try:
            document = json.loads(raw) if is_json else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            # The parsers quote the offending line, which may hold a secret: name only its number.
            mark = getattr(error, "problem_mark", None)
            line = error.lineno if is_json else (mark.line + 1 if mark else "?")
            raise KeyRegistryError(
                f"keys file {path} is not valid {'JSON' if is_json else 'YAML'} (line {line})"
            ) from None
        try:
            parsed = _RegistryFile.model_validate(document)
        except ValidationError as error:
            raise KeyRegistryError(f"keys file {path} is invalid: {_describe(error)}") from None
        default = parsed.default_key_id or parsed.keys[0].key_id
        return cls(parsed.keys, default, path)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str | None) -> WatermarkKey:
        resolved = self.default_key_id if key_id is None else key_id
        try:
            return self._keys[resolved]
        except KeyError:
            raise UnknownKeyError(resolved) from None

    def scheme(self, key_id: str) -> KgwScheme:
        return self._schemes[self.get(key_id).key_id]


def _describe(error: ValidationError) -> str:
    # input values are left out on purpose: they may be secrets
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'file'}: {item['msg']}" for item in error.errors()
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
