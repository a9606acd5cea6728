"""Bearer-token auth with two roles: admin (everything) and user (sessions, payments).

Failed tokens are throttled per client address (`csms.core.web_access.TokenThrottle`): an attempt
counts from its start, so guesses sent at once are held as surely as guesses in a row, and a
throttled address is answered 429 before its token is even compared.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from typing import Annotated

from fastapi import Depends, Request

from csms.api.envelope import ApiError
from csms.config import ApiToken
from csms.core.addresses import address_key
from csms.core.web_access import TokenThrottle

__all__ = ["Principal", "Admin", "User", "authenticate", "require_admin", "require_user", "client_address"]

log = logging.getLogger("csms.api")

Principal = ApiToken


def client_address(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For already applied, see csms.api.proxies)."""
    return request.client.host if request.client else "?"


def _throttle(request: Request) -> TokenThrottle:
    return request.app.state.token_throttle  # one per app: made by csms.api.app.create_app


async def authenticate(request: Request) -> ApiToken:
    """The token's holder. Async on purpose: from the throttle's look to its count nothing awaits, so
    parallel requests cannot all pass the look before any is counted (a sync dependency runs in a thread)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Missing bearer token (Authorization: Bearer <token>)")
    throttle, address, now = _throttle(request), client_address(request), time.monotonic()
    key = address_key(address)  # an IPv6 client counts by its /64
    wait = throttle.wait("", key, now)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            f"Too many unknown API tokens from this address: wait {seconds} s before the next attempt",
            headers={"Retry-After": str(seconds)},
        )
    throttle.begin("", key, now)
    given = token.strip().encode("utf-8", "surrogateescape")  # bytes: compare_digest refuses non-ASCII str
    for known in request.app.state.ctx.settings.api_tokens:
        if hmac.compare_digest(known.token.encode(), given):
            throttle.succeeded("", key, now)
            return known
    log.info("api.unknown_token remote=%s", address)
    raise ApiError(401, "Unknown API token")


async def require_user(request: Request) -> ApiToken:
    return await authenticate(request)


async def require_admin(request: Request) -> ApiToken:
    who = await authenticate(request)
    if who.role != "admin":
        raise ApiError(403, "This action needs an admin token")
    return who


Admin = Annotated[ApiToken, Depends(require_admin)]
User = Annotated[ApiToken, Depends(require_user)]
