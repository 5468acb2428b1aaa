"""Who is calling: the request's API key, its tenant, and what that tenant may do.

With tenants (``SIGNET_API_KEYS_FILE``, see signet/tenants.py) every request to the
work routes (/generate, /detect, /detect/batch) needs an API key, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``:

- no key, or one the file does not list: 401, one message for both, with
  ``WWW-Authenticate: Bearer``;
- a key_id outside the tenant's keys (named, or the default key when none is named):
  403. A tenant limited to some keys gets 403 for every other key_id, existing or not,
  so it cannot probe which key_ids other tenants have;
- ``watermark=false`` without ``may_disable_watermark``: 403;
- /detect with ``details: true`` without ``may_see_token_details``, or with ``token_ids``
  without ``may_send_token_ids``: 403 (``field``: ``details`` or ``token_ids``).

Without tenants (development mode) every caller may do everything. The health probes
are never authenticated. Authentication runs before the rate limit (see app.py): a
401 costs a SHA-256 and a dictionary lookup, less than the limiter's round trip to
Redis, and made-up keys get no allowance of their own. On the work routes the same check
(``identify``) runs first in the front door (api/gate.py), from the headers alone: a
request without a known key gets its 401 before a byte of its body is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from signet.api.errors import ApiError
from signet.api.rate_limit import presented_api_key
from signet.api.state import ServiceState, StateDependency
from signet.tenants import Tenant, TenantRegistry

logger = logging.getLogger(__name__)

UNAUTHORIZED_DETAIL = "missing or unknown API key"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="signet"'}

# For the OpenAPI document only (the "Authorize" button of /docs): the header is read by
# presented_api_key, the same parse the rate limiter uses.
_BEARER_SCHEME = HTTPBearer(auto_error=False, description="An API key from SIGNET_API_KEYS_FILE.")
_API_KEY_SCHEME = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, another header.")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller; ``tenant`` None: development mode, allowed everything."""

    tenant: Tenant | None
    api_key_name: str | None = None

    @property
    def label(self) -> str:
        """For logs: tenant and API key name, never the key."""
        return "development mode" if self.tenant is None else f"{self.tenant.name}/{self.api_key_name}"

    @property
    def may_disable_watermark(self) -> bool:
        return self.tenant is None or self.tenant.may_disable_watermark

    @property
    def queue_tenant(self) -> str | None:
        """Whose share of the job queue this caller's jobs take: its tenant's; None in development mode."""
        return None if self.tenant is None else self.tenant.name

    @property
    def may_see_token_details(self) -> bool:
        return self.tenant is None or self.tenant.may_see_token_details

    @property
    def may_send_token_ids(self) -> bool:
        return self.tenant is None or self.tenant.may_send_token_ids

    def may_use(self, key_id: str) -> bool:
        return self.tenant is None or self.tenant.may_use(key_id)

    def usable(self, key_ids: Iterable[str]) -> list[str]:
        """Those of ``key_ids`` this caller may use, in order."""
        return [key_id for key_id in key_ids if self.may_use(key_id)]

    def check_keys(self, key_ids: Iterable[str], field: str, *, default: bool = False) -> None:
        """403 naming the key_ids this caller may not use; ``default``: the key was not named."""
        refused = [key_id for key_id in dict.fromkeys(key_ids) if not self.may_use(key_id)]
        if not refused or self.tenant is None:
            return
        names = ", ".join(map(repr, refused))
        if default:
            allowed = ", ".join(map(repr, sorted(self.tenant.key_ids or ())))
            detail = f"tenant {self.tenant.name!r} may not use the default key {names}; give a key_id: one of {allowed}"
        else:
            noun = "key_id" if len(refused) == 1 else "key_ids"
            detail = f"tenant {self.tenant.name!r} may not use {noun} {names}"
        logger.info("refused %s: %s", self.label, detail)
        raise ApiError(403, detail, field)


DEVELOPMENT_CALLER = Caller(tenant=None)


async def authenticate(
    request: Request,
    state: StateDependency,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER_SCHEME)],
    _api_key: Annotated[str | None, Depends(_API_KEY_SCHEME)],
) -> Caller:
    """A route dependency: the caller, also kept as ``request.state.caller``; 401 without a known key."""
    caller = identify(request, state.tenants)
    if caller is None:
        raise unauthorized()
    request.state.caller = caller
    return caller


def identify(request: Request, tenants: TenantRegistry | None) -> Caller | None:
    """The caller the request's headers name; None: tenants are configured and its API key is missing or unknown.

    The one check, run by the front door (api/gate.py) before the body is read and by ``authenticate``."""
    if tenants is None:
        return DEVELOPMENT_CALLER
    api_key = tenants.authenticate(presented_api_key(request))
    return None if api_key is None else Caller(api_key.tenant, api_key.name)


def unauthorized() -> ApiError:
    """The 401 for a missing or unknown API key: one message for both."""
    return ApiError(401, UNAUTHORIZED_DETAIL, headers=dict(_CHALLENGE))


CallerDependency = Annotated[Caller, Depends(authenticate)]


def authorize_generation(caller: Caller, state: ServiceState, key_id: str | None, watermark: bool) -> None:
    """403 unless ``caller`` may generate with ``key_id`` (None: the default key) and ``watermark``.

    Every generation route calls it before it does any work.
    """
    if not watermark and not caller.may_disable_watermark:
        detail = f"tenant {caller.tenant.name!r} may not turn the watermark off (watermark=false)"
        logger.info("refused %s: %s", caller.label, detail)
        raise ApiError(403, detail, "watermark")
    if key_id is not None:
        caller.check_keys([key_id], "key_id")
    elif watermark:  # without the watermark the default key is not used
        caller.check_keys([state.keys.default_key_id], "key_id", default=True)


def authorize_fixed_samples(caller: Caller, seed: int | None) -> None:
    """403 for a fixed ``seed`` on the score routes unless ``caller`` may turn the watermark off.

    The score routes withhold their unwatermarked texts from such a caller, but each score
    says a little about them (n-gram scores tell which word pairs a sample holds); samples
    that repeat from request to request could be rebuilt from many scores. Without a seed
    every request draws new ones (docs/SECURITY.md, the score routes).
    """
    if seed is not None and not caller.may_disable_watermark:
        _refuse(caller, "may not fix the samples' seed: its generated texts are withheld (leave seed out)", "seed")


def authorize_detection(caller: Caller, *, token_ids: bool, details: bool) -> None:
    """403 unless ``caller`` may send token ids (``token_ids``) and see per-token detail (``details``).

    Both are off for a tenant unless granted: with them one request can ask about any
    (context, token) pair and read each answer (docs/SECURITY.md, the detection oracle).
    """
    if token_ids and not caller.may_send_token_ids:
        _refuse(caller, "may not send token_ids (may_send_token_ids is not granted); send text", "token_ids")
    if details and not caller.may_see_token_details:
        _refuse(caller, "may not see per-token details (may_see_token_details is not granted)", "details")


def _refuse(caller: Caller, what: str, field: str) -> None:
    detail = f"tenant {caller.tenant.name!r} {what}"
    logger.info("refused %s: %s", caller.label, detail)
    raise ApiError(403, detail, field)
