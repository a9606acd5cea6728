"""Signing in and out, and the people who may: users with roles, managed by admins.

People sign in with a user name and password (`csms users add NAME --role admin` makes the
first); machines and benches may still sign in with an admin API token. Failed sign-ins are
throttled per name and per address (`csms.core.web_access.SignInThrottle`): past the limit
the answer comes at once, without checking the password.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

import trio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from csms.core.web_access import ROLES, user_name_problem, user_password_problem
from csms.db.web_user_store import add_user, admins_left, get_user, list_users, revoke_session, update_user
from csms.ui import auth
from csms.ui.web import (
    Refused,
    audit_action,
    checked_form,
    ctx_of,
    current_session,
    flash,
    page,
    read_form,
    redirect,
    same_origin,
    secure,
    signed_in,
    site_key,
    ui_of,
)

__all__ = ["router"]

log = logging.getLogger("csms.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)
_LOGIN_COOKIE = "unstuck_ui_login"
_WHY = {
    "ended": "Your session ended: it expired after 8 hours, you signed out, or your password or role changed. "
    "Sign in again.",
    "signed_out": "You signed out.",
}


def _safe_next(url: str) -> str:
    return url if url.startswith("/ui/") and not url.startswith("//") and "\\" not in url else "/ui/"


async def _login_form(
    request: Request, next_url: str, *, status: int = 200, error: str | None = None, note=None, user: str = ""
):
    key = await site_key(request)
    nonce = secrets.token_urlsafe(16)
    response = page(
        request,
        "login.html",
        None,
        status=status,
        next=_safe_next(next_url),
        login_csrf=auth.csrf_token(key, auth.UiSession("", "", "login:" + nonce, 0)),
        error=error,
        note=note,
        user=user,
    )
    response.set_cookie(
        _LOGIN_COOKIE, nonce, max_age=1800, path="/ui", httponly=True, samesite="strict", secure=secure(request)
    )
    return response


@router.get("/login")
async def login_page(request: Request, next: str = "/ui/", why: str = ""):
    if await current_session(request) is not None:
        return redirect(_safe_next(next))
    return await _login_form(request, next, note=_WHY.get(why))


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.post("/login")
async def login(request: Request):
    form = await read_form(request)
    ctx = ctx_of(request)
    ui = ui_of(request)
    key = await site_key(request)
    nonce = request.cookies.get(_LOGIN_COOKIE, "")
    expected = auth.csrf_token(key, auth.UiSession("", "", "login:" + nonce, 0))
    given = form.get("csrf", "").encode()
    if not nonce or not same_origin(request) or not secrets.compare_digest(expected.encode(), given):
        raise Refused(
            403,
            "Refused",
            "The sign-in form is out of date (no valid CSRF token). Reload the sign-in page and try again.",
        )
    next_url = form.get("next", "/ui/")
    by_token = "token" in form
    name = "(token)" if by_token else form.get("user", "").strip()[:64]
    address = _address(request)
    now = time.time()
    wait = ui.throttle.wait(name, address, now)
    if wait == 0:
        ui.throttle.begin(name, address, now)  # before any await: attempts at once count as surely as in a row
    else:
        log.warning("ui.sign_in_throttled remote=%s user=%s wait=%.0f", address, name, wait)
        return await _login_form(
            request,
            next_url,
            status=429,
            error=f"Too many failed sign-ins: wait {int(wait) + 1} s, then try again.",
            user="" if by_token else name,
        )
    if by_token:
        token = auth.find_token(ctx.settings.api_tokens, form.get("token", ""))
        ok = token is not None and token.role == "admin"
        if ok and token is not None:
            value, session = auth.issue(key, "token", token.name, "admin", token.token, now)
    else:
        user = await ctx.db.read(lambda s: get_user(s, name))
        password = form.get("password", "")[:256]
        encoded = None if user is None or user.disabled else user.password_hash
        async with ui.hashing:
            ok = await trio.to_thread.run_sync(auth.verify_password, encoded, password)
        if ok and user is not None:
            value, session = auth.issue(key, "user", user.name, user.role, user.password_hash, now)
    if not ok:
        log.warning("ui.sign_in_refused remote=%s user=%s", address, name)
        await trio.sleep(0.3)
        error = (
            "Sign-in failed: that admin token is not valid. Check it and try again."
            if by_token
            else "Sign-in failed: unknown user name or wrong password (or the user is disabled)."
        )
        return await _login_form(request, next_url, status=401, error=error, user="" if by_token else name)
    ui.throttle.succeeded(name, address, now)
    log.info("ui.signed_in actor=%s kind=%s", session.name, session.kind)
    audit_action(ctx, session, "ui.signed_in")
    response = redirect(_safe_next(next_url))
    response.set_cookie(
        auth.COOKIE,
        value,
        max_age=auth.LIFETIME_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    response.delete_cookie(_LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request):
    session = await signed_in(request)
    await checked_form(request, session)
    ctx = ctx_of(request)
    now = ctx.clock.now()
    expires = datetime.fromtimestamp(session.expires, UTC)
    await ctx.db.write(lambda s: revoke_session(s, session.sid, expires, now))
    audit_action(ctx, session, "ui.signed_out")
    response = redirect("/ui/login?why=signed_out")
    response.delete_cookie(auth.COOKIE, path="/ui")
    return response


# ------------------------------------------------------------------ people
async def _users_page(request: Request, session: auth.UiSession):
    users = await ctx_of(request).db.read(list_users)
    return page(request, "users.html", session, users=users)


def _back_to_users(request: Request, session: auth.UiSession, why: str) -> Response:
    """A refused change: said on the users page, reached by a redirect (a reload sends nothing again)."""
    flash(request, session, "warn", why)
    return redirect("/ui/users")


@router.get("/users")
async def users_page(request: Request) -> Response:
    return await _users_page(request, await signed_in(request, "admin"))


def _checked_role(role: str) -> str:
    if role not in ROLES:
        raise Refused(400, "Unknown role", f"A role is one of {', '.join(ROLES)}, not {role!r}.")
    return role


@router.post("/users")
async def add_user_form(request: Request) -> Response:
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    name, password = form.get("name", "").strip(), form.get("password", "")
    role = _checked_role(form.get("role", "viewer"))
    problem = user_name_problem(name) or user_password_problem(password)
    if problem:
        return _back_to_users(request, session, f"Not added: {problem}.")
    async with ui_of(request).hashing:
        encoded = await trio.to_thread.run_sync(auth.hash_password, password)
    now = ctx.clock.now()
    if not await ctx.db.write(lambda s: add_user(s, name, role, encoded, now)):
        return _back_to_users(request, session, f"Not added: there is a user {name!r} already.")
    audit_action(ctx, session, "ui.user_added", subject=name, role=role)
    flash(request, session, "ok", f"Added {name} ({role}). They can sign in now.")
    return redirect("/ui/users")


@router.post("/users/{name}")
async def change_user(request: Request, name: str) -> Response:
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    now = ctx.clock.now()
    role = _checked_role(form["role"]) if form.get("role") else None
    disabled = {"disable": True, "enable": False}.get(form.get("state", ""))
    encoded = None
    if form.get("password"):
        problem = user_password_problem(form["password"])
        if problem:
            return _back_to_users(request, session, f"Not changed: {problem}.")
        async with ui_of(request).hashing:
            encoded = await trio.to_thread.run_sync(auth.hash_password, form["password"])
    demotes = (role is not None and role != "admin") or disabled is True

    def work(s):
        user = get_user(s, name)
        if user is None:
            return "missing"
        if demotes and user.role == "admin" and admins_left(s, without=name) == 0:
            return "last_admin"
        update_user(s, name, now, role=role, password_hash=encoded, disabled=disabled)
        return "ok"

    outcome = await ctx.db.write(work)
    if outcome == "missing":
        raise Refused(404, "Not found", f"No user {name!r}.")
    if outcome == "last_admin":
        return _back_to_users(request, session, f"Not changed: {name} is the last admin; make another admin first.")
    what = [
        w
        for w, on in (
            ("role " + str(role), role),
            ("password", encoded),
            ("disabled" if disabled else "enabled", disabled is not None),
        )
        if on
    ]
    audit_action(ctx, session, "ui.user_changed", subject=name, changed=what)
    flash(request, session, "ok", f"Changed {name}: {', '.join(what) or 'nothing'}. Their open sessions end.")
    return redirect("/ui/users")
