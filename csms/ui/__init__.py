"""The operators' dashboard at /ui/ (see routes.py): sign-in, connector board, connector page, maintenance, audit."""

from __future__ import annotations

__all__ = ["mount"]


def mount(app) -> None:
    from csms.ui.routes import mount as _mount

    _mount(app)
