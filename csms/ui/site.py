"""The dashboard wired into the app: every page module's routes, static files, its own error pages."""

from __future__ import annotations

import inspect
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from csms.api.envelope import http_status
from csms.errors import CsmsError
from csms.ui import chargers, id_tags, routes, signin, transactions
from csms.ui.web import HEADERS, HERE, FlashCookies, Refused, SignInNeeded, UiState, current_session, page, redirect

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    """Serve the dashboard from `app`: its routes, its static files, its own error pages."""
    app.state.ui = UiState()
    app.add_middleware(FlashCookies, state=app.state.ui)
    for module in (signin, routes, chargers, transactions, id_tags):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    async def _ui_root():
        return redirect("/ui/")

    @app.get("/ui/ping", include_in_schema=False)
    async def _ping():
        """Is this server answering? (the console asks before it sends a form; no database, no session)"""
        return Response(status_code=204, headers=HEADERS)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded):
        if request.method == "GET" and "x-ui-poll" not in request.headers:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            why = f"&why={exc.why}" if exc.why else ""
            return redirect(f"/ui/login?next={quote(target)}{why}")
        return HTMLResponse("Signed out: sign in again.", status_code=401, headers=HEADERS)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        session = await current_session(request)
        return page(request, "message.html", session, status=exc.status, title=exc.title, message=exc.message)

    rest_handler = app.exception_handlers[CsmsError]

    @app.exception_handler(CsmsError)
    async def _domain(request: Request, exc: CsmsError):
        """Domain errors from the services: a page under /ui/, the REST API's own answer elsewhere."""
        if not request.url.path.startswith("/ui/"):
            answer = rest_handler(request, exc)  # async (csms.api.app); Starlette allows sync handlers too
            return await answer if inspect.isawaitable(answer) else answer
        session = await current_session(request)
        return page(
            request, "message.html", session, status=http_status(exc), title="Could not do that", message=exc.message
        )
