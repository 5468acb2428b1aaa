"""Tenants and their API keys: who may call the service, with which watermark keys.

Loaded from the JSON or YAML file named by ``SIGNET_API_KEYS_FILE``. The file holds
only SHA-256 digests of the API keys, never the keys: ``signet apikey new`` makes a
key and prints the line to paste. A request's key is found by the digest of the token
it presents. Neither keys nor digests are ever logged or put in an error message;
API keys are named by their ``name`` label instead.

File format::

    tenants:
      - tenant: moderation
        key_ids: [main, hf]          # watermark keys it may use (generate + detect); "*": all
        may_disable_watermark: false # POST /generate?watermark=false
        may_see_token_details: false # POST /detect with details: true (every token's green flag)
        may_send_token_ids: false    # POST /detect with token_ids instead of text
        provenance_retention_days: 7 # how long its generations stay in the registry (default:
                                     # SIGNET_PROVENANCE_RETENTION_DAYS)
        api_keys:
          - sha256: "<hex SHA-256 of the API key>"
            name: ci-bot             # a label for logs

Without the file the service runs in development mode, without authentication (see
:func:`resolve_tenants` for when that is allowed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signet.config_files import read_document

if TYPE_CHECKING:
    from signet.settings import Settings

logger = logging.getLogger(__name__)

API_KEY_PREFIX = "sk-signet-"
ALL_KEYS = "*"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class TenantsFileError(Exception):
    """The tenants file is missing or invalid, or the auth settings contradict each other.
    The message never holds an API key or a digest of one."""


@dataclass(frozen=True)
class Tenant:
    name: str
    key_ids: frozenset[str] | None  # None: every key of the registry
    may_disable_watermark: bool
    # Off unless granted: per-token detail for caller-chosen token ids reads out a context's
    # whole green list in one request (docs/SECURITY.md, the detection oracle).
    may_see_token_details: bool = False
    may_send_token_ids: bool = False
    provenance_retention_days: float | None = None  # None: SIGNET_PROVENANCE_RETENTION_DAYS

    def may_use(self, key_id: str) -> bool:
        return self.key_ids is None or key_id in self.key_ids


@dataclass(frozen=True)
class ApiKey:
    """An API key the file lists: its label and its tenant, never the key or its digest."""

    name: str
    tenant: Tenant


def new_api_key() -> str:
    """A fresh random API key: 256 bits, URL-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_digest(api_key: str) -> str:
    """The hex SHA-256 the tenants file stores for ``api_key``."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class _ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9A-Fa-f]{64}$", repr=False)
    name: str = Field(pattern=NAME_PATTERN)

    @field_validator("sha256")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


class _TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(pattern=NAME_PATTERN)
    key_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)
    may_disable_watermark: bool = False
    may_see_token_details: bool = False
    may_send_token_ids: bool = False
    provenance_retention_days: float | None = Field(default=None, gt=0.0, le=3650.0)
    api_keys: list[_ApiKeyEntry] = Field(default_factory=list)

    @field_validator("key_ids", mode="before")
    @classmethod
    def _star_is_a_list(cls, value: object) -> object:
        return [ALL_KEYS] if value == ALL_KEYS else value

    @field_validator("key_ids")
    @classmethod
    def _star_alone(cls, value: list[str]) -> list[str]:
        if ALL_KEYS in value and len(value) > 1:
            raise ValueError('"*" (every key) stands alone')
        return value

    @property
    def every_key(self) -> bool:
        return self.key_ids == [ALL_KEYS]

    @model_validator(mode="after")
    def _unique_names(self) -> _TenantEntry:
        names = [entry.name for entry in self.api_keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"api key names must be unique within a tenant: {', '.join(map(repr, duplicates))}")
        return self


class _TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[_TenantEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> _TenantsFile:
        names = [entry.tenant for entry in self.tenants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tenant names must be unique: {', '.join(map(repr, duplicates))} appear more than once")
        owners: dict[str, str] = {}
        for entry in self.tenants:
            for key in entry.api_keys:
                label = f"{entry.tenant}/{key.name}"
                if key.sha256 in owners:
                    # named by their labels: the digest itself stays out of the message
                    raise ValueError(f"api keys {owners[key.sha256]!r} and {label!r} have the same sha256")
                owners[key.sha256] = label
        return self


class TenantRegistry:
    """API keys by digest, each bound to its tenant."""

    def __init__(self, tenants: list[Tenant], api_keys: dict[str, ApiKey], source: Path) -> None:
        self.tenants = {tenant.name: tenant for tenant in tenants}
        self._api_keys = api_keys
        self.source = source

    @classmethod
    def load(cls, path: Path, known_key_ids: Iterable[str]) -> TenantRegistry:
        """Read and check ``path``; every key_id a tenant names must be in ``known_key_ids``."""
        document = read_document(path, "tenants file", TenantsFileError)
        try:
            parsed = _TenantsFile.model_validate(document)
        except ValidationError as error:
            raise TenantsFileError(f"tenants file {path} is invalid: {_describe(error)}") from None
        known = list(known_key_ids)
        tenants, api_keys = [], {}
        for entry in parsed.tenants:
            key_ids = None if entry.every_key else frozenset(entry.key_ids)
            unknown = [key_id for key_id in dict.fromkeys(entry.key_ids) if key_id not in known]
            if key_ids is not None and unknown:
                raise TenantsFileError(
                    f"tenants file {path} is invalid: tenant {entry.tenant!r} names key_ids the keys file does not "
                    f"have: {', '.join(map(repr, unknown))} (it has {', '.join(map(repr, known))})"
                )
            tenant = Tenant(
                entry.tenant,
                key_ids,
                entry.may_disable_watermark,
                may_see_token_details=entry.may_see_token_details,
                may_send_token_ids=entry.may_send_token_ids,
                provenance_retention_days=entry.provenance_retention_days,
            )
            tenants.append(tenant)
            api_keys.update({key.sha256: ApiKey(key.name, tenant) for key in entry.api_keys})
        return cls(tenants, api_keys, path)

    def authenticate(self, api_key: str | None) -> ApiKey | None:
        """The API key entry for a presented key; None for no key or an unknown one."""
        if not api_key:
            return None
        # A lookup by digest: the table holds no keys, and a SHA-256 preimage cannot be
        # found by timing a dictionary lookup, so no constant-time comparison is needed.
        return self._api_keys.get(api_key_digest(api_key))

    @property
    def num_api_keys(self) -> int:
        return len(self._api_keys)


def _describe(error: ValidationError) -> str:
    # input values are left out on purpose: a misplaced API key would be echoed
    def location(parts: tuple) -> str:
        return ".".join(str(part) for part in parts) or "file"

    return "; ".join(f"{location(item['loc'])}: {item['msg'].removeprefix('Value error, ')}" for item in error.errors())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def resolve_tenants(settings: Settings, known_key_ids: Iterable[str]) -> TenantRegistry | None:
    """The tenants to authenticate callers against; None: no authentication.

    - ``SIGNET_API_KEYS_FILE`` set: every work request needs one of its API keys.
    - unset: development mode, every caller may use every key. Allowed on its own only
      while the service listens on a loopback address; elsewhere it has to be asked
      for with ``SIGNET_AUTH=disabled`` (say, behind a gateway that authenticates).
    - ``SIGNET_AUTH=required`` makes a missing file an error, ``SIGNET_AUTH=disabled``
      with a file is one too: the two settings would contradict each other.
    """
    path = settings.api_keys_file
    if settings.auth == "disabled":
        if path is not None:
            raise TenantsFileError("SIGNET_AUTH=disabled contradicts SIGNET_API_KEYS_FILE: unset one of them")
        logger.warning("authentication disabled (SIGNET_AUTH=disabled): every caller may use every key")
        return None
    if path is None:
        if settings.auth == "required":
            raise TenantsFileError("SIGNET_AUTH=required but SIGNET_API_KEYS_FILE is not set")
        if not is_loopback(settings.host):
            raise TenantsFileError(
                f"no SIGNET_API_KEYS_FILE: refusing to serve {settings.host} without authentication; "
                "set SIGNET_API_KEYS_FILE (keys from `signet apikey new`), or SIGNET_AUTH=disabled to run open"
            )
        logger.warning("development mode: no SIGNET_API_KEYS_FILE, every caller may use every key")
        return None
    registry = TenantRegistry.load(path.expanduser().resolve(), known_key_ids)
    logger.info(
        "authentication on: %d tenants, %d API keys from %s",
        len(registry.tenants),
        registry.num_api_keys,
        registry.source,
    )
    return registry
