"""Bearer-token auth with two roles: admin (everything) and user (sessions, payments)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from csms.api.envelope import ApiError
from csms.config import ApiToken

__all__ = ["Principal", "Admin", "User", "authenticate", "require_admin", "require_user"]

Principal = ApiToken


def authenticate(request: Request) -> ApiToken:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Missing bearer token (Authorization: Bearer <token>)")
    for known in request.app.state.ctx.settings.api_tokens:
        if hmac.compare_digest(known.token, token.strip()):
            return known
    raise ApiError(401, "Unknown API token")


def require_user(request: Request) -> ApiToken:
    return authenticate(request)


def require_admin(request: Request) -> ApiToken:
    who = authenticate(request)
    if who.role != "admin":
        raise ApiError(403, "This action needs an admin token")
    return who


Admin = Annotated[ApiToken, Depends(require_admin)]
User = Annotated[ApiToken, Depends(require_user)]
