"""Watermark key registry: key_id -> secret, scheme and parameters.

Loaded from the JSON or YAML file named by ``SIGNET_KEYS_FILE``. Without one, a random
development key is created once under the cache directory. Secrets stay in this
process: models hold them as ``SecretStr`` and schemes redact them in ``repr``.

File format::

    default_key_id: main
    keys:
      - key_id: main
        secret: "at least 16 characters of random text"
        scheme: kgw            # or kgw-lefthash, gumbel (see the key classes below)
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

import hashlib
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, ValidationError, model_validator

from signet.config_files import read_document
from signet.watermark.gumbel import SCHEME_NAME as GUMBEL
from signet.watermark.gumbel import GumbelParameters, GumbelScheme
from signet.watermark.kgw import SCHEME_NAME as KGW
from signet.watermark.kgw import KgwParameters, KgwScheme
from signet.watermark.lefthash import DEFAULT_HASHING_KEY, LefthashParameters, LefthashScheme
from signet.watermark.lefthash import SCHEME_NAME as LEFTHASH
from signet.watermark.normalization import NormalizationStep

logger = logging.getLogger(__name__)

DEVELOPMENT_KEYS_FILENAME = "development-keys.json"
DEVELOPMENT_KEY_ID = "dev"


class KeyRegistryError(Exception):
    """The key registry file is missing or invalid. The message never holds a secret."""


class UnknownKeyError(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key_id {key_id!r}")
        self.key_id = key_id


class _KeyBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    tokenizer: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Name of the tokenizer the generator used; unset: the served model's.",
    )
    normalization: tuple[NormalizationStep, ...] = Field(
        default=(), description="Steps applied to a text before tokenizing it for detection."
    )
    min_scored_tokens: int = Field(
        default=25, ge=1, le=100_000, description="Fewer scored tokens than this: insufficient_evidence."
    )

    @property
    def fingerprint(self) -> str:
        """A one-way digest of the whole key, secret included. It tells versions of a key
        apart (in cache keys, in queued jobs) without revealing the secret."""
        fields = {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in self
        }
        canonical = json.dumps(fields, sort_keys=True, default=str).encode()
        return hashlib.sha256(b"signet key fingerprint v1\0" + canonical).hexdigest()[:32]


class KgwKey(_KeyBase):
    """Signet's own KGW watermark on a keyed counter-based PRF."""

    scheme: Literal["kgw"] = KGW
    secret: SecretStr = Field(min_length=16)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    context_width: int = Field(default=1, ge=1, le=8)

    def build_scheme(self, model_vocab_size: int | None) -> KgwScheme:
        parameters = KgwParameters(gamma=self.gamma, delta=self.delta, context_width=self.context_width)
        return KgwScheme(self.secret.get_secret_value().encode(), parameters)


class LefthashKey(_KeyBase):
    """Hugging Face transformers' / TGI's / lm-watermarking's ``lefthash`` (``simple_1``)."""

    scheme: Literal["kgw-lefthash"]
    # Not a SecretStr because peers configure it as an integer; repr=False keeps it
    # out of logs and tracebacks all the same.
    hashing_key: int = Field(default=DEFAULT_HASHING_KEY, ge=0, lt=2**63, repr=False)
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0)
    delta: float = Field(default=2.0, ge=0.0, le=20.0)
    vocab_size: int | None = Field(
        default=None, ge=2, le=2**22, description="The randperm size; unset: the served model's vocabulary size."
    )

    def build_scheme(self, model_vocab_size: int | None) -> LefthashScheme:
        vocab_size = self.vocab_size or model_vocab_size
        if vocab_size is None:
            raise KeyRegistryError(f"key {self.key_id!r}: vocab_size is needed when no model is loaded")
        parameters = LefthashParameters(
            vocab_size=vocab_size, gamma=self.gamma, delta=self.delta, hashing_key=self.hashing_key
        )
        return LefthashScheme(parameters)


class GumbelKey(_KeyBase):
    """vLLM's native Gumbel-max watermark (``--watermark-config '{"algorithm": "gumbel", ...}'``)."""

    scheme: Literal["gumbel"]
    key: int = Field(ge=0, le=2**64 - 1, repr=False)
    context_width: int = Field(default=4, ge=1, le=16)

    def build_scheme(self, model_vocab_size: int | None) -> GumbelScheme:
        return GumbelScheme(self.key, GumbelParameters(context_width=self.context_width))


def _scheme_tag(value: object) -> str:
    # Keys written before there were several schemes name none: they are KGW keys.
    if isinstance(value, dict):
        return value.get("scheme", KGW)
    return getattr(value, "scheme", KGW)


WatermarkKey = Annotated[
    Annotated[KgwKey, Tag(KGW)] | Annotated[LefthashKey, Tag(LEFTHASH)] | Annotated[GumbelKey, Tag(GUMBEL)],
    Discriminator(
        _scheme_tag,
        custom_error_type="unknown_scheme",
        custom_error_message=f"scheme must be one of {KGW}, {LEFTHASH}, {GUMBEL}",
    ),
]
Scheme = KgwScheme | LefthashScheme | GumbelScheme
_SCHEME_TAGS = (KGW, LEFTHASH, GUMBEL)


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
        self._schemes: dict[str, Scheme] = {}
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
            if isinstance(key, LefthashKey) and key.vocab_size is None and self.model_vocab_size is None:
                continue  # built once a model tells the vocabulary size
            try:
                self.scheme(key.key_id)
            except ValueError as error:
                raise KeyRegistryError(f"keys file {self.source} is invalid: key {key.key_id!r}: {error}") from None

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str | None) -> WatermarkKey:
        resolved = self.default_key_id if key_id is None else key_id
        try:
            return self._keys[resolved]
        except KeyError:
            raise UnknownKeyError(resolved) from None

    def scheme(self, key_id: str) -> Scheme:
        key = self.get(key_id)
        with self._lock:
            if key.key_id not in self._schemes:
                self._schemes[key.key_id] = key.build_scheme(self.model_vocab_size)
            return self._schemes[key.key_id]


def prewarm_greenlists(registry: KeyRegistry) -> None:
    """Fill each ``kgw-lefthash`` key's greenlist cache (seconds per key; run it in a thread)."""
    for key_id in registry.key_ids:
        scheme = registry.scheme(key_id)
        if isinstance(scheme, LefthashScheme):
            scheme.prewarm(range(min(scheme.cache_capacity, scheme.parameters.vocab_size)))
            logger.info("greenlist cache of key %r warmed", key_id)


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
