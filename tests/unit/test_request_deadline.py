"""A trusted proxy's command that reaches the application past its budget is refused, not run."""

from __future__ import annotations

import json

import pytest
import trio

from csms.api.deadline import PROXIED, RequestDeadline, started_at

NOW = 1_765_000_000.0


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("t=1765000000.25", 1_765_000_000.25),
        ("t=1765000000250", 1_765_000_000.25),  # ms
        ("t=1765000000250000", 1_765_000_000.25),  # µs, as HAProxy's date(0,us) writes it
        (" 1765000000 ", 1_765_000_000.0),
        ("t=", None),
        ("t=soon", None),
        ("t=nan", None),
        ("t=-5", None),
    ],
)
def test_x_request_start_in_any_unit(value, want):
    assert started_at(value) == (pytest.approx(want) if want is not None else None)


async def _call(method: str, *, proxied: bool, start: float | None, budget: float = 5.0) -> tuple[bool, int, dict]:
    ran = []

    async def app(scope, receive, send):
        ran.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    headers = [(b"x-request-start", f"t={int(start * 1e6)}".encode())] if start is not None else []
    path = "/api/ChargingSession/start-charging-session"
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    if proxied:
        scope[PROXIED] = True
    await RequestDeadline(app, budget, clock=lambda: NOW)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return bool(ran), sent[0]["status"], json.loads(body or b"{}")


async def test_a_late_command_from_the_balancer_is_refused_and_not_run():
    ran, status, body = await _call("POST", proxied=True, start=NOW - 19.3)
    assert not ran and status == 503
    assert body["data"] == {"ageSeconds": 19.3, "budgetSeconds": 5.0} and "not executed" in body["message"]


@pytest.mark.parametrize(
    ("method", "proxied", "start", "budget"),
    [
        ("POST", True, NOW - 1.0, 5.0),  # in time
        ("GET", True, NOW - 60.0, 5.0),  # a read runs late harmlessly
        ("POST", False, NOW - 60.0, 5.0),  # not from a trusted proxy: its header is anyone's
        ("POST", True, None, 5.0),  # no stamp
        ("DELETE", True, NOW - 60.0, 0.0),  # budget off
    ],
)
async def test_everything_else_runs(method, proxied, start, budget):
    ran, status, _ = await _call(method, proxied=proxied, start=start, budget=budget)
    assert ran and status == 200


def test_a_trusted_proxys_requests_are_marked_and_others_are_not():
    from csms.api.proxies import SecureTransport, parse_trusted_proxies

    seen = []

    async def app(scope, receive, send):
        seen.append(scope.get(PROXIED, False))

    mw = SecureTransport(app, trusted=parse_trusted_proxies(["127.0.0.1"]))
    for client in (("127.0.0.1", 5000), ("10.1.2.3", 5000)):
        trio.run(mw, {"type": "http", "client": client, "headers": [], "scheme": "http"}, None, None)
    assert seen == [True, False]
