"""What strangers can do to the OCPP handshake, measured against a fresh `csms serve` (SQLite, no lab mode).

    python -m loadtests.handshake_abuse idle                    # 200 idle sockets from one address, 15 reconnects
    python -m loadtests.handshake_abuse idle --addresses 10 --tls
    python -m loadtests.handshake_abuse flood --addresses 30    # 300 wrong passwords in flight, refilled
    python -m loadtests.handshake_abuse log                     # 50 clients, refused requests with 15 KB paths

`idle`: 200 sockets that never send a byte (reopened when closed) from `--addresses` source addresses
(127.0.1.x); the charger (127.0.0.7) reconnects 15 times: how many are accepted, and how long each took.
`flood`: `--in-flight` wrong-password handshakes for the charger's id at all times from `--addresses`
addresses (127.0.2.x); the charger, which authenticated once from 127.0.0.7 before, reconnects 5 times:
each handshake's latency. `log`: `--clients` clients each sending refused upgrades with a 15 KB path
for `--seconds`: the log's growth in bytes a second. All of 127.0.0.0/8 is loopback on Linux.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio
import wsproto
from wsproto.events import AcceptConnection, RejectConnection, Request

from scenarios.embedded import LaunchedCsms, launch_csms

CP_ID, PASSWORD, HONEST = "CP1", "real-charger-key-0001", "127.0.0.7"
TOKEN = "handshake-abuse-admin-token"


def basic_auth(user: str, password: str) -> list[tuple[bytes, bytes]]:
    """The Authorization header of OCPP's Basic auth (security profile 1)."""
    return [(b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


async def upgrade_status(
    addr: tuple[str, int],
    path: str,
    *,
    source: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
) -> int | None:
    """The status of the server's answer to a WebSocket upgrade sent from `source` (101: accepted), or None
    when it closed the socket without one (or could not be reached)."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source, 0))
        await sock.connect(addr)
    except OSError:
        sock.close()
        return None
    stream: trio.abc.Stream = trio.SocketStream(sock)
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname=addr[0])
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = Request(
        host=f"{addr[0]}:{addr[1]}",
        target=path,
        subprotocols=["ocpp1.6"] if subprotocols is None else subprotocols,
        extra_headers=headers or [],
    )
    try:
        async with stream:
            await stream.send_all(conn.send(request))
            while data := await stream.receive_some(65536):
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, AcceptConnection):
                        return 101
                    if isinstance(event, RejectConnection):
                        return event.status_code
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    return None


async def _honest(addr: tuple[str, int], tls: ssl.SSLContext | None) -> int | None:
    """The honest charger's reconnect, from its own address with its password."""
    return await upgrade_status(addr, f"/ocpp/{CP_ID}", source=HONEST, tls=tls, headers=basic_auth(CP_ID, PASSWORD))


async def _idle_attacker(addr: tuple[str, int], source: str) -> None:
    """One socket that never sends a byte, reopened whenever the server closes it."""
    while True:
        sock = trio.socket.socket()
        try:
            await sock.bind((source, 0))
            await sock.connect(addr)
            while await sock.recv(1):
                pass
        except OSError:
            await trio.sleep(0.05)
        finally:
            sock.close()


async def idle(addr: tuple[str, int], tls: ssl.SSLContext | None, args: argparse.Namespace) -> str:
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(_idle_attacker, addr, f"127.0.1.{1 + i % args.addresses}")
        await trio.sleep(1.0)  # let them take the slots
        took, ok = [], 0
        for _ in range(15):
            started = time.monotonic()
            ok += await _honest(addr, tls) == 101
            took.append(time.monotonic() - started)
        nursery.cancel_scope.cancel()
    return (
        f"idle: {ok} of 15 reconnects accepted under 200 idle sockets from {args.addresses} address(es); "
        f"each took median {statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
    )


async def flood(addr: tuple[str, int], tls: ssl.SSLContext | None, args: argparse.Namespace) -> str:
    assert await _honest(addr, tls) == 101
    guesses = 0

    async def guesser(source: str) -> None:
        nonlocal guesses
        while True:
            await upgrade_status(
                addr, f"/ocpp/{CP_ID}", source=source, tls=tls, headers=basic_auth(CP_ID, "wrong-password-00001")
            )
            guesses += 1

    async with trio.open_nursery() as nursery:
        for i in range(args.in_flight):
            nursery.start_soon(guesser, f"127.0.2.{1 + i % args.addresses}")
        await trio.sleep(2.0)
        started_at, before = time.monotonic(), guesses
        took = []
        for _ in range(5):
            started = time.monotonic()
            status = await _honest(addr, tls)
            took.append(time.monotonic() - started)
            assert status == 101, status
            await trio.sleep(0.5)
        rate = (guesses - before) / (time.monotonic() - started_at)
        nursery.cancel_scope.cancel()
    return (
        f"flood: {args.in_flight} wrong passwords in flight from {args.addresses} address(es), {rate:.0f} answered/s; "
        f"the charger's handshake took median {statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
    )


async def log_growth(
    addr: tuple[str, int], tls: ssl.SSLContext | None, args: argparse.Namespace, log_path: Path
) -> str:
    path = "/" + "A" * 15_000
    sent = 0

    async def client(i: int) -> None:
        nonlocal sent
        while True:
            await upgrade_status(addr, path, source=f"127.0.4.{1 + i % args.addresses}", tls=tls, headers=[])
            sent += 1

    size = os.path.getsize(log_path)  # noqa: ASYNC240 - one stat, nothing to wait for
    started = time.monotonic()
    with trio.move_on_after(args.seconds):
        async with trio.open_nursery() as nursery:
            for i in range(args.clients):
                nursery.start_soon(client, i)
    elapsed = time.monotonic() - started
    grown = os.path.getsize(log_path) - size  # noqa: ASYNC240
    return (
        f"log: {args.clients} clients from {args.addresses} address(es), {sent / elapsed:.0f} refused requests/s "
        f"with 15 KB paths; the log grew {grown / elapsed:.0f} bytes/s ({grown} bytes in {elapsed:.1f} s)"
    )


def _tls_files(workdir: Path) -> tuple[list[str], ssl.SSLContext]:
    import trustme  # the dev extra

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = workdir / "chain.pem", workdir / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return ["--tls-cert", str(chain), "--tls-key", str(key)], client


async def _main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="handshake-abuse-"))
    serve_args = ["--db", f"sqlite:///{workdir / 'csms.db'}", "--ocpp-port", "0", "--http-port", "0"]
    serve_args += ["--api-token", f"admin:bench:{TOKEN}", "--max-handshakes", str(args.max_handshakes)]
    tls = None
    if args.tls:
        more, tls = _tls_files(workdir)
        serve_args += more
    csms: LaunchedCsms = launch_csms(serve_args, workdir, log_path=workdir / "csms.log")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=csms.http, headers=headers, verify=tls or True) as admin:
            r = await admin.post("/api/charge-points", json={"id": CP_ID, "password": PASSWORD})
            r.raise_for_status()
        u = urlsplit(csms.ocpp)
        assert u.hostname and u.port
        addr = (u.hostname, u.port)
        if args.what == "idle":
            print(await idle(addr, tls, args))
        elif args.what == "flood":
            print(await flood(addr, tls, args))
        else:
            print(await log_growth(addr, tls, args, csms.log_path))
        print(f"(the CSMS's log: {csms.log_path})")
    finally:
        csms.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.handshake_abuse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=("idle", "flood", "log"), help="which abuse to measure")
    p.add_argument("--addresses", type=int, default=1, help="source addresses the attackers spread over (default 1)")
    p.add_argument("--tls", action="store_true", help="serve wss:// (a trustme certificate; the dev extra)")
    p.add_argument("--in-flight", type=int, default=300, help="flood: wrong-password handshakes at all times")
    p.add_argument("--clients", type=int, default=50, help="log: clients sending refused requests (default 50)")
    p.add_argument("--seconds", type=float, default=10.0, help="log: how long (default 10)")
    p.add_argument(
        "--max-handshakes",
        type=int,
        default=200,
        help="the server's --max-handshakes (default 200, its own default)",
    )
    args = p.parse_args()
    socket.setdefaulttimeout(None)
    trio.run(_main, args)


if __name__ == "__main__":
    main()
