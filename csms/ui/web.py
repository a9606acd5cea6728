"""What every dashboard page shares: templates, who is signed in and may do what, forms, flashes, audit.

Every page needs a signed-in user (or admin API token) whose role includes what the page
needs (`csms.core.web_access`); every POST carries the session's CSRF token and comes from
this origin; every action is audited with the user's name as the actor.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import trio
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError

from csms.context import Context
from csms.core.times import as_utc, parse_iso
from csms.core.web_access import ROLES, SignInThrottle, may
from csms.db.cleanup_store import audit
from csms.db.web_user_store import get_user, read_session_key, session_key, session_revoked
from csms.ui import auth, store
from csms.ui.timeline import details_text
from csms.ui.words import action_words, clock_time, exact_time

__all__ = [
    "templates",
    "UiState",
    "SignInNeeded",
    "Refused",
    "ctx_of",
    "site_now",
    "ui_of",
    "site_key",
    "current_session",
    "signed_in",
    "checked_form",
    "read_form",
    "page",
    "fragment",
    "redirect",
    "flash",
    "FlashCookies",
    "audit_action",
    "same_origin",
    "secure",
    "resolve",
    "live_or_refuse",
    "station_path",
    "HEADERS",
]

log = logging.getLogger("csms.ui")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _clock(at: datetime | str | None, now: datetime) -> Markup:
    """A <time> in the site's zone, UTC on hover (a stored time, or an ISO string from the signals)."""
    if isinstance(at, str):
        at = parse_iso(at)
    if at is None:
        return Markup("-")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        as_utc(at).isoformat(), exact_time(at), clock_time(at, now)
    )


def site_now(ctx: Context) -> datetime:
    """Now in the site's time zone: every time the console words is shown in it."""
    return ctx.clock.now().astimezone(_zone(ctx.settings.time_zone))


@functools.lru_cache(maxsize=8)
def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


templates.env.filters["clock"] = _clock
templates.env.filters["exact"] = exact_time
templates.env.filters["details"] = details_text
templates.env.filters["action_words"] = action_words
templates.env.globals["may"] = may
templates.env.globals["ROLES"] = ROLES

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form POST's Origin "null"
    "Cache-Control": "no-store",
}


@dataclass
class UiState:
    key: bytes | None = None  # the site's cookie key, read from the database on first use
    key_lock: trio.Lock = field(default_factory=trio.Lock)
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    hashing: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))


class SignInNeeded(Exception):
    def __init__(self, why: str | None = None) -> None:
        super().__init__(why or "sign in")
        self.why = why  # "ended": a session cookie came but no longer holds


class Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def ctx_of(request: Request) -> Context:
    return request.app.state.ctx


def ui_of(request: Request) -> UiState:
    return request.app.state.ui


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def site_key(request: Request) -> bytes:
    ui = ui_of(request)
    if ui.key is None:
        async with ui.key_lock:
            if ui.key is None:
                ctx = ctx_of(request)
                now = ctx.clock.now()
                try:
                    ui.key = await ctx.db.write(lambda s: session_key(s, now))
                except IntegrityError:  # another node made it first: read the winner's
                    ui.key = await ctx.db.read(read_session_key)
                if ui.key is None:
                    raise RuntimeError("the console's cookie key is neither stored nor could be made")
    return ui.key


async def current_session(request: Request) -> auth.UiSession | None:
    """The session this request's cookie proves, or None."""
    cookie = request.cookies.get(auth.COOKIE)
    if not cookie:
        return None
    key = await site_key(request)
    parsed = auth.parse(key, cookie, time.time())
    if parsed is None:
        return None
    session, fingerprint = parsed
    ctx = ctx_of(request)
    want_user = session.kind == "user"
    user, revoked = await ctx.db.read(
        lambda s: (get_user(s, session.name) if want_user else None, session_revoked(s, session.sid))
    )
    if revoked:
        return None
    if session.kind == "token":
        token = next((t for t in ctx.settings.api_tokens if t.name == session.name and t.role == "admin"), None)
        secret = None if token is None or session.role != "admin" else token.token
    else:
        ok = user is not None and not user.disabled and user.role == session.role
        secret = user.password_hash if ok and user is not None else None
    if secret is None or not auth.fingerprint_ok(key, session, fingerprint, secret):
        return None
    return session


async def signed_in(request: Request, need: str = "viewer") -> auth.UiSession:
    """The signed-in session, refused (403) when its role does not include `need`."""
    session = await current_session(request)
    if session is None:
        raise SignInNeeded("ended" if request.cookies.get(auth.COOKIE) else None)
    if not may(session.role, need):
        raise Refused(
            403,
            "Not allowed",
            f"You are signed in as {session.name} ({session.role}); this needs the {need} role. "
            "Ask an admin of this site.",
        )
    return session


def same_origin(request: Request) -> bool:
    """A POST from a page of this server: Origin (or Referer) names this host, when the browser sends one."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str]:
    body = (await request.body())[:65536].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def checked_form(request: Request, session: auth.UiSession) -> dict[str, str]:
    """The POSTed form, refused without this session's CSRF token or from another origin."""
    form = await read_form(request)
    key = await site_key(request)
    if not same_origin(request) or not auth.csrf_ok(key, session, form.get("csrf")):
        log.warning(
            "ui.csrf_refused path=%s actor=%s origin=%s",
            request.url.path,
            session.name,
            (request.headers.get("origin") or "")[:80],
        )
        raise Refused(
            403,
            "Refused",
            "This form is out of date or did not come from this dashboard (no valid CSRF "
            "token). Go back, reload the page and try again.",
        )
    return form


def page(request: Request, name: str, session: auth.UiSession | None, status: int = 200, **context: Any) -> Response:
    ui = ui_of(request)
    shown = None
    if session is not None and ui.key is not None:
        shown = auth.read_flash(ui.key, session, request.cookies.get(auth.FLASH_COOKIE))
    ctx = ctx_of(request)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "who": session,
            "csrf": "" if session is None or ui.key is None else auth.csrf_token(ui.key, session),
            "flash": shown,
            "now": site_now(ctx),
            "site_zone": ctx.settings.time_zone,
            "path": request.url.path,
            **context,
        },
        status_code=status,
    )
    response.headers.update(HEADERS)
    if request.cookies.get(auth.FLASH_COOKIE):
        response.delete_cookie(auth.FLASH_COOKIE, path="/ui")  # shown once
    return response


def fragment(request: Request, name: str, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, {"now": site_now(ctx_of(request)), **context})
    response.headers.update(HEADERS)
    return response


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(HEADERS)
    return response


def flash(request: Request, session: auth.UiSession, kind: str, text: str) -> None:
    """Said on the next page this session sees: a signed cookie set on this answer (by FlashCookies), so a
    redirect that lands on another node or after a restart still shows it."""
    request.state.ui_flash = (session.sid, kind, text)


class FlashCookies:
    """ASGI middleware: an answer to a request that flashed carries the flash as a signed cookie."""

    def __init__(self, app: Any, state: UiState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui/"):
            await self.app(scope, receive, send)
            return

        async def send_with_flash(message: Any) -> None:
            pending = scope.get("state", {}).get("ui_flash")
            if message["type"] == "http.response.start" and pending and self.state.key is not None:
                value = auth.flash_cookie(self.state.key, *pending)
                secure_flag = "; Secure" if scope.get("scheme") == "https" else ""
                cookie = f"{auth.FLASH_COOKIE}={value}; Max-Age=120; Path=/ui; HttpOnly; SameSite=Strict{secure_flag}"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_flash)


def audit_action(ctx: Context, session: auth.UiSession, action: str, **kw: Any) -> None:
    now = ctx.clock.now()
    ctx.db.submit(lambda s: audit(s, actor=session.name, action=action, at=now, **kw))


async def resolve(ctx: Context, station_id: str) -> tuple[str, str]:
    """(station id, charge point id) of a station or charge point id, or a 404 page."""
    found = await ctx.db.read(lambda s: store.station_of(s, station_id))
    if found is None:
        raise Refused(404, "Not found", f"No active station or charge point {station_id!r}.")
    return found


def live_or_refuse(ctx: Context, cp_id: str):
    live = ctx.registry.get(cp_id)
    if live is None:
        raise Refused(409, "Charger offline", f"Charge point {cp_id} is not connected: nothing can be sent to it.")
    return live


def station_path(station_id: str) -> str:
    return quote(station_id, safe="")
