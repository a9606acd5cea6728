"""The REST API's docs pages, /docs (Swagger UI) and /redoc (ReDoc), served whole from this server.

FastAPI's own pages load their JavaScript and CSS from a CDN (and ReDoc its fonts from Google), so on a
site without internet they were blank. Here the same pages (FastAPI's `get_swagger_ui_html` and
`get_redoc_html`) point at copies served from `/docs/static/`.

Why vendored files rather than a Python package: no well-kept PyPI package ships both. The npm
registry's `swagger-ui-dist` and `redoc` are the projects' own builds (the ones FastAPI's CDN links name),
so `docs_assets/` holds exactly the files these pages load, with each project's licence beside them:

- `swagger-ui/`: swagger-ui-dist 5.36.0 (Apache-2.0, LICENSE and NOTICE), swagger-ui-bundle.js,
  swagger-ui.css, favicon-32x32.png;
- `redoc/`: redoc 2.5.4 (MIT, LICENSE), bundles/redoc.standalone.js (the bundle FastAPI's `redoc@2` names).

The files are kept as published. One thing in ReDoc's bundle still reaches out: the Redocly logo beside its
"API docs by Redocly" link comes from cdn.redoc.ly, with no option to turn it off, so the bundle is served
with that one URL swapped for an empty inline image (`_redoc_bundle`).

To update: `npm pack swagger-ui-dist@X redoc@2`, copy the same files over, run tests/e2e/test_console_docs.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["mount", "ASSETS", "STATIC"]

ASSETS = Path(__file__).parent / "docs_assets"
STATIC = "/docs/static"
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def _redoc_bundle() -> bytes:
    """ReDoc's standalone bundle with its one request to another host (the Redocly logo) made inline."""
    bundle = (ASSETS / "redoc" / "redoc.standalone.js").read_bytes()
    if bundle.count(_REDOC_LOGO) != 1:  # a new ReDoc: look again at what it fetches (tests/e2e/test_console_docs.py)
        raise RuntimeError("redoc.standalone.js: the Redocly logo URL to swap was not found exactly once")
    return bundle.replace(_REDOC_LOGO, _EMPTY_IMAGE)


def _openapi_url(app: FastAPI, request: Request) -> str:
    """The schema's URL behind a proxy's root path too, as FastAPI's own pages build it."""
    return request.scope.get("root_path", "").rstrip("/") + (app.openapi_url or "/openapi.json")


def mount(app: FastAPI) -> None:
    """/docs, its OAuth2 redirect, /redoc and their assets; the app is made with docs_url=None, redoc_url=None."""
    redoc_js = _redoc_bundle()

    @app.get(f"{STATIC}/redoc/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:  # before the mount below, which would serve the file as it is
        return Response(redoc_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    app.mount(STATIC, StaticFiles(directory=str(ASSETS)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=_openapi_url(app, request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{STATIC}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=_OAUTH2_REDIRECT,
            # No "valid" badge: Swagger UI would send the schema's URL to validator.swagger.io for it.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=_openapi_url(app, request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,  # the fonts came from Google; ReDoc falls back to the system's
        )
