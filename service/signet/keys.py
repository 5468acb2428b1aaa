"""Watermark key registry: key_id -> secret, scheme and parameters.

Loaded from the JSON or YAML file named by ``SIGNET_KEYS_FILE``. Without one, a random
development key is created once under the cache directory. Secrets stay in this
process: models hold them as ``SecretStr`` and schemes redact them in ``repr``.

File format::

    fingerprint_secret: "at least 32 characters of random text"   # optional, see below
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

Jobs, dead letters and cache keys in Redis name a key by its fingerprint, an HMAC keyed
with ``fingerprint_secret`` (``KeyRegistry.fingerprint``): API processes and workers compare
fingerprints to know they hold the same key, and whoever reads Redis cannot test guesses
of a key against them. A file without one gets one derived from all its keys (an HMAC
over every key's fields, secrets included), which is as hard to guess as all its
secrets together, but changes every fingerprint whenever any key changes: while such a
file rolls out, jobs between processes holding the old and the new file are refused
(503), for every key, not only the changed one. Start-up warns about it, and about keys
whose secret holds under 64 bits (``watermark/strength.py``), naming the key_id only.

Jobs are signed (``queue/jobs.py`` ``JobSigner``) with ``job_signing_secrets``: the first
signs, every one is accepted, so a new secret can be rolled out before it signs. Without
them the signing secret is derived from ``fingerprint_secret`` (an HMAC under a domain of
its own). The keys file holds it because API processes and workers must already share that
file, and whoever reads the file holds the watermark secrets, which are worth more: a
separate file would add a second secret to keep in step and protect nothing further.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, ValidationError, model_validator

from signet.config_files import read_document
from signet.watermark.registry import SCHEMES, scheme_tag
from signet.watermark.scheme import WatermarkScheme
from signet.watermark.strength import MIN_SECRET_BITS

logger = logging.getLogger(__name__)

DEVELOPMENT_KEYS_FILENAME = "development-keys.json"
DEVELOPMENT_KEY_ID = "dev"
_DERIVED_FINGERPRINT_SECRET = b"signet derived fingerprint secret v1"  # the HMAC key of the derivation
_FINGERPRINT_DOMAIN = b"signet key fingerprint v2"  # v1: an unkeyed SHA-256 of the same fields
_JOB_SIGNING_DOMAIN = b"signet job signing secret v1"  # the derivation from fingerprint_secret


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

    fingerprint_secret: SecretStr | None = Field(default=None, min_length=32)
    job_signing_secrets: list[Annotated[SecretStr, Field(min_length=32)]] | None = Field(default=None, min_length=1)
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
        self,
        keys: list[WatermarkKey],
        default_key_id: str,
        source: Path,
        fingerprint_secret: bytes,
        model_vocab_size: int | None = None,
        job_signing_secrets: list[bytes] | None = None,
    ) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._fingerprint_secret = fingerprint_secret
        self._job_signing_secrets = job_signing_secrets
        self._fingerprints = {key.key_id: self._fingerprint(key) for key in keys}
        self._schemes: dict[str, WatermarkScheme] = {}
        self._lock = threading.Lock()
        self.default_key_id = default_key_id
        self.source = source
        self.model_vocab_size = model_vocab_size
        self.derived_secret_bits: float | None = None  # None: the file sets fingerprint_secret

    @classmethod
    def load(cls, path: Path, model_vocab_size: int | None = None) -> KeyRegistry:
        document = read_document(path, "keys file", KeyRegistryError)
        try:
            parsed = _RegistryFile.model_validate(document)
        except ValidationError as error:
            raise KeyRegistryError(f"keys file {path} is invalid: {_describe(error)}") from None
        default = parsed.default_key_id or parsed.keys[0].key_id
        if parsed.fingerprint_secret is not None:
            fingerprint_secret = parsed.fingerprint_secret.get_secret_value().encode()
        else:
            fingerprint_secret = derived_fingerprint_secret(parsed.keys)
            logger.warning(
                "keys file %s sets no fingerprint_secret: one is derived from all its keys, so changing any key "
                "changes every key's fingerprint and, until API and workers hold the same file again, they refuse "
                "each other's jobs. Set fingerprint_secret (e.g. `openssl rand -hex 32`) to keep fingerprints apart",
                path,
            )
        signing = parsed.job_signing_secrets
        signing_secrets = None if signing is None else [secret.get_secret_value().encode() for secret in signing]
        registry = cls(parsed.keys, default, path, fingerprint_secret, model_vocab_size, signing_secrets)
        if parsed.fingerprint_secret is None:
            registry.derived_secret_bits = sum(key.secret_bits() for key in parsed.keys)
        registry._build_schemes()
        _warn_weak_keys(parsed.keys)
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

    def fingerprint(self, key_id: str | None) -> str:
        """The key's fingerprint: equal in every process that loaded the same keys file."""
        return self._fingerprints[self.get(key_id).key_id]

    def _fingerprint(self, key: WatermarkKey) -> str:
        """A keyed digest of the whole key, secret included. It tells versions of a key apart
        (in queued jobs, in cache keys) without revealing the secret. Keyed, because these
        digests sit in Redis: a plain hash of a key that holds few bits (a ``gumbel`` key
        of 42) let anyone who reads Redis find the key by trying small ones."""
        return self.keyed_digest(_FINGERPRINT_DOMAIN, key.canonical_bytes())[:32]

    def keyed_digest(self, domain: bytes, data: bytes) -> str:
        """HMAC-SHA256 of ``data``, keyed with the fingerprint secret, for a name kept in Redis
        (a cache key): equal in every process that loaded the same keys file, and no way for
        whoever reads Redis to confirm a guess of what ``data`` holds (a text, say)."""
        return hmac.new(self._fingerprint_secret, domain + b"\0" + data, hashlib.sha256).hexdigest()

    @property
    def job_signing_secrets(self) -> list[bytes]:
        """The secrets of JobSigner: the file's ``job_signing_secrets``, or one derived from the
        fingerprint secret (distributed mode checks that one with check_fingerprints_may_be_shared)."""
        if self._job_signing_secrets is not None:
            return list(self._job_signing_secrets)
        return [self.keyed_digest(_JOB_SIGNING_DOMAIN, b"").encode()]

    def scheme(self, key_id: str) -> WatermarkScheme:
        key = self.get(key_id)
        with self._lock:
            if key.key_id not in self._schemes:
                try:
                    self._schemes[key.key_id] = key.build_scheme(self.model_vocab_size)
                except ValueError as error:  # parameters that make no scheme (or no vocabulary size known)
                    raise KeyRegistryError(f"key {key.key_id!r}: {error}") from None
            return self._schemes[key.key_id]


def check_fingerprints_may_be_shared(registry: KeyRegistry) -> None:
    """KeyRegistryError when fingerprints written to Redis would give the keys away.

    A fingerprint secret derived from keys that together hold under 64 bits is as easy to
    guess as they are: whoever reads one queued job tries keys until the fingerprint fits
    (a gumbel key of 42 alone fell in under a millisecond). Embedded mode keeps fingerprints
    in the process, so only processes that share Redis call this.
    """
    bits = registry.derived_secret_bits
    if bits is not None and bits < MIN_SECRET_BITS:
        raise KeyRegistryError(
            f"keys file {registry.source} sets no fingerprint_secret and its keys together hold about {bits:.0f} "
            f"bits, under {MIN_SECRET_BITS}: the fingerprints jobs carry in Redis would let whoever reads it find "
            "the keys. Set fingerprint_secret (e.g. `openssl rand -hex 32`) in the keys file of API and workers"
        )


def derived_fingerprint_secret(keys: list[WatermarkKey]) -> bytes:
    """The fingerprint secret of a keys file that sets none: an HMAC over every key's fields,
    secrets included, in key_id order (the order of the file's entries does not matter)."""
    entries = b"\0".join(key.canonical_bytes() for key in sorted(keys, key=lambda key: key.key_id))
    return hmac.new(_DERIVED_FINGERPRINT_SECRET, entries, hashlib.sha256).digest()


def _warn_weak_keys(keys: list[WatermarkKey]) -> None:
    """Name each key whose secret can be guessed: anyone holding one text it marked can try
    guesses offline (detect with each) and, once one fits, forge or strip its mark."""
    for key in keys:
        bits = key.secret_bits()
        if bits < MIN_SECRET_BITS:
            logger.warning(
                "key %r: its secret holds about %d bits, under %d: it can be found by trying keys against a text "
                "it marked. Mark new text with a random one (`openssl rand -hex 32`; an integer key: 8 random bytes)",
                key.key_id,
                bits,
                MIN_SECRET_BITS,
            )


def prewarm_schemes(registry: KeyRegistry) -> None:
    """Load what each key's scheme compiles or caches before a request needs it (run it in a thread).

    Only code is loaded (numba kernels, about 1 s once per process); no scheme draws a
    table per key, so start-up does not grow with the number of keys.
    """
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
        "fingerprint_secret": secrets.token_hex(32),
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
