"""The operators' dashboard at /ui/: sign-in and people (signin.py), the connector board and pages
(routes.py), chargers, transactions, id tags; shared plumbing in web.py, wiring in site.py."""

from __future__ import annotations

__all__ = ["mount"]


def mount(app) -> None:
    from csms.ui.site import mount as _mount

    _mount(app)
