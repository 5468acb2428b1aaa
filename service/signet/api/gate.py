"""The front door: what a request meets before the app reads a byte of its body.

Two ASGI middlewares, outside the body limits (api/limits.py):

- ``HostCheck``: 400 for a ``Host`` header naming a host the service does not answer
  to. A web page the developer visits can point its own host name at 127.0.0.1 (DNS
  rebinding) and so call an unauthenticated development service from the browser; the
  page's host name is then in the ``Host`` header, so refusing unknown names closes that
  door. An IP address is always answered: a rebinding page's requests carry its name,
  never an address, and Kubernetes probes name the pod's address. Starlette's
  TrustedHostMiddleware decides by a list alone, and answers in plain text, not
  problem+json.
- ``AuthenticateFirst``: with tenants, a request to a work route (a route with the
  ``authenticate`` dependency) without a known API key gets its 401 from the headers
  alone. Before, FastAPI read and parsed the whole body first: a malformed body got 422,
  and an anonymous caller could make the service read and parse 4.9 MB per request.
  The check is ``auth.identify``, the one the route dependency runs again to set
  ``request.state.caller``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from signet.api.auth import authenticate, identify, unauthorized
from signet.api.errors import problem_response
from signet.settings import Settings
from signet.tenants import TenantRegistry

LOOPBACK_NAME = "localhost"
ANY_HOST = "*"


def allowed_hosts(settings: Settings, tenants: TenantRegistry | None) -> frozenset[str] | None:
    """The host names to answer besides IP addresses: localhost, SIGNET_HOST and
    SIGNET_ALLOWED_HOSTS; None: answer any.

    Development mode (no tenants) always checks: its routes need no key, so a rebinding
    page could use them. With tenants the check is on only when SIGNET_ALLOWED_HOSTS
    names hosts: a page cannot use an API key it does not have, and behind a gateway the
    names it sends are the deployment's to list.
    """
    if ANY_HOST in settings.allowed_hosts or (tenants is not None and not settings.allowed_hosts):
        return None
    names = {LOOPBACK_NAME, *settings.allowed_hosts}
    if not is_address(settings.host):
        names.add(settings.host.lower())
    return frozenset(names)


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_name(scope: Scope) -> str | None:
    """The name in the request's ``Host`` header, lowercase, without port or IPv6 brackets; None without one."""
    for name, value in scope["headers"]:
        if name == b"host":
            if b"@" in value or b"/" in value:  # a Host is a name and a port, never userinfo or a path
                return None
            try:
                return urlsplit("//" + value.decode("latin-1")).hostname
            except ValueError:  # e.g. an unbalanced "[": no name at all
                return None
    return None


class HostCheck:
    """ASGI middleware: 400 unless the ``Host`` header names an IP address or one of ``names``."""

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._answers(host_name(scope)):
            await self.app(scope, receive, send)
            return
        detail = "this service does not answer to the request's Host header; SIGNET_ALLOWED_HOSTS lists more names"
        await problem_response(400, detail)(scope, receive, send)

    def _answers(self, host: str | None) -> bool:
        return host is not None and (host in self.names or is_address(host))


class AuthenticateFirst:
    """ASGI middleware: with tenants, 401 from the headers alone on work routes."""

    def __init__(self, app: ASGIApp, routed: FastAPI) -> None:
        self.app = app
        self.work_routes = [route for route in routed.routes if needs_api_key(route)]
        self.state = routed.state.signet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenants = self.state.tenants
        if (
            scope["type"] != "http"
            or tenants is None
            or not self._is_work_route(scope)
            or identify(Request(scope), tenants) is not None
        ):
            await self.app(scope, receive, send)
            return
        error = unauthorized()
        await problem_response(error.status, error.detail, headers=error.headers)(scope, receive, send)

    def _is_work_route(self, scope: Scope) -> bool:
        # any method: a 405 would tell an anonymous caller which routes exist
        return any(route.matches(scope)[0] is not Match.NONE for route in self.work_routes)


def needs_api_key(route: BaseRoute) -> bool:
    return any(dependency.dependency is authenticate for dependency in getattr(route, "dependencies", ()))
