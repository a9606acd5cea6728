"""HTTPS as the browser sees it: behind a TLS-terminating proxy, and pinned with HSTS.

A proxy that terminates TLS talks plain HTTP to us; without its `X-Forwarded-Proto: https` the
console's cookies would lose `Secure` and no HSTS would be sent. Those headers are believed only
from the addresses of `--trusted-proxies`: from anyone else they would let a client claim any
scheme and any address (the REST token throttle is per address). Of each header the last value
counts: the one our proxy appended (a client may have sent its own before it). Hypercorn's
ProxyFixMiddleware reads them the same way but for every peer, and deep-copies the whole scope
(inside Starlette that holds the app itself), so the two headers are read here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from csms.api.deadline import PROXIED

__all__ = ["Network", "parse_trusted_proxies", "is_trusted_proxy", "forwarded", "HSTS", "SecureTransport"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A year, renewed by every https answer; no includeSubDomains: other hosts of the domain are not ours.
HSTS = "max-age=31536000"


def parse_trusted_proxies(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks ("127.0.0.1", "10.0.0.0/8", "::1"), also comma-separated; ValueError names a bad one."""
    networks: list[Network] = []
    for raw in items:
        for item in filter(None, (p.strip() for p in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"--trusted-proxies: {item!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
    return tuple(networks)


def is_trusted_proxy(host: str, networks: tuple[Network, ...]) -> bool:
    """Whether `host` (an IP address) is one of `--trusted-proxies`: the one rule, for the HTTP and the OCPP port."""
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a Unix socket or an unknown peer is not a configured proxy
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


def _trusted(client: Any, networks: tuple[Network, ...]) -> bool:
    return bool(client) and is_trusted_proxy(str(client[0]), networks)


def _client_host(value: str) -> str | None:
    """The address in an X-Forwarded-For value: "1.2.3.4", "1.2.3.4:5678", "[2001:db8::1]:5678" or "2001:db8::1"."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has two or more colons)
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class _Hsts:
    """ASGI: every answer over https says to use only https from now on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"strict-transport-security"]
                message = {**message, "headers": [*headers, (b"strict-transport-security", HSTS.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)


def _last(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [v.strip() for k, raw in headers if k.lower() == name for v in raw.decode("latin-1").split(",")]
    return values[-1] if values else None


def forwarded(scope: Any) -> Any:
    """The scope as the proxy's client sent it: its scheme (http/https, ws/wss) and its address, when given."""
    headers = scope.get("headers", [])
    scope = dict(scope)
    proto = (_last(headers, b"x-forwarded-proto") or "").lower()
    if proto in ("http", "https"):
        scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
    client = _last(headers, b"x-forwarded-for")
    host = _client_host(client) if client else None
    if host is not None:  # else not an address (a name, "unknown"): the proxy's own stays
        scope["client"] = (host, 0)
    return scope


class SecureTransport:
    """ASGI, outermost: X-Forwarded-For/-Proto applied for requests from a trusted proxy only, then HSTS on
    https answers (direct TLS or a trusted proxy's https)."""

    def __init__(self, app: Any, trusted: tuple[Network, ...] = ()) -> None:
        self.trusted = trusted
        self.app = _Hsts(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and _trusted(scope.get("client"), self.trusted):
            scope = forwarded(scope)
            scope[PROXIED] = True  # csms.api.deadline believes the proxy's X-Request-Start
        await self.app(scope, receive, send)
