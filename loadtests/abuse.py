"""What one abusive client costs a real `csms serve` (each mode starts its own, on SQLite in /tmp).

    python -m loadtests.abuse webhooks --seconds 30     # a receiver answers every POST with 100 MiB: CSMS RSS
    python -m loadtests.abuse connectors                # one charger names 15,000 connectors (rate limit off, as
                                                        # an attacker with many reconnects had it) while 20 others
                                                        # heartbeat every 0.5 s and the board is read every 2 s
    python -m loadtests.abuse reconnect --seconds 20    # one id floods heartbeats and reconnects when closed: msg/s
    python -m loadtests.abuse pings --seconds 20        # one id floods WebSocket pings, reconnecting: CSMS CPU
    python -m loadtests.abuse pings --churn             # the same reconnects without pings: what churn alone costs

Each prints one or two lines of figures. Run against other code with PYTHONPATH=<its checkout>.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import trio
import wsproto
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request

from scenarios.embedded import launch_csms

TOKEN = "admin:measure:measure-token-123456"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(extra: list[str], work: Path):
    db = f"sqlite:///{work / 'csms.db'}"
    args = [
        "--db",
        db,
        "--ocpp-port",
        "0",
        "--http-port",
        "0",
        "--api-token",
        TOKEN,
        "--allow-unknown-chargers",
        "--accept-unknown-id-tags",
        "--log-level",
        "WARNING",
        *extra,
    ]
    return launch_csms(args, work, log_path=work / "csms.log")


async def boot(ws) -> None:
    await ws.send_message('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
    await ws.get_message()


# ------------------------------------------------------------------ webhooks
async def big_receiver(counter: dict, stream: trio.SocketStream) -> None:
    size = 100 << 20
    chunk = b"x" * (1 << 20)
    try:
        while True:
            got = b""
            while b"\r\n\r\n" not in got:
                data = await stream.receive_some(65536)
                if not data:
                    return
                got += data
            head, _, rest = got.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += await stream.receive_some(65536)
            counter["requests"] += 1
            await stream.send_all(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            for _ in range(100):
                await stream.send_all(chunk)
                counter["bytes"] += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        counter["cut"] += 1


async def webhooks(args) -> None:
    counter = {"requests": 0, "bytes": 0, "cut": 0}
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, partial(big_receiver, counter), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        work = Path(tempfile.mkdtemp(prefix="m28-hook-"))
        csms = start(["--webhook", f"http://127.0.0.1:{port}/hook"], work)
        pid = csms.proc.pid
        samples = [rss_mb(pid)]
        print(f"webhooks: RSS at start {samples[0]:.0f} MB", flush=True)
        deadline = trio.current_time() + args.seconds
        cycles = 0
        next_sample = trio.current_time() + 1
        while trio.current_time() < deadline:  # each connect/close is charge_point.online + offline
            async with open_websocket_url(f"{csms.ocpp}/HOOK{cycles % 50}", subprotocols=["ocpp1.6"]) as ws:
                await boot(ws)
            cycles += 1
            if trio.current_time() >= next_sample:
                samples.append(rss_mb(pid))
                next_sample += 1
        await trio.sleep(2)
        samples.append(rss_mb(pid))
        csms.proc.terminate()
        csms.proc.wait()
        nursery.cancel_scope.cancel()
    print(
        f"webhooks: {cycles} connect cycles in {args.seconds}s; receiver answered {counter['requests']} POSTs with "
        f"100 MiB each, sent {counter['bytes'] / 2**20:.0f} MiB in all, {counter['cut']} cut off by the CSMS"
    )
    print(f"webhooks: RSS MB start {samples[0]:.0f} max {max(samples):.0f} end {samples[-1]:.0f}")


# ------------------------------------------------------------------ connectors
async def connectors(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="m28-conn-"))
    csms = start(["--ocpp-messages-per-second", "0"], work)  # as the attack ran: no rate limit in the way
    pid = csms.proc.pid
    rss0, latencies, stop = rss_mb(pid), [], trio.Event()
    refused = accepted = 0

    async def honest(i: int) -> None:
        async with open_websocket_url(f"{csms.ocpp}/HONEST{i:02d}", subprotocols=["ocpp1.6"]) as ws:
            await boot(ws)
            n = 0
            while not stop.is_set():
                t = time.perf_counter()
                await ws.send_message(f'[2,"h{n}","Heartbeat",{{}}]')
                await ws.get_message()
                latencies.append(time.perf_counter() - t)
                n += 1
                await trio.sleep(0.5)

    async def board() -> None:
        async with httpx.AsyncClient(
            base_url=csms.http, headers={"Authorization": f"Bearer {TOKEN.split(':')[2]}"}
        ) as c:
            while not stop.is_set():
                await c.get("/api/connectors")
                await trio.sleep(2)

    async def attacker() -> None:
        nonlocal refused, accepted
        async with open_websocket_url(f"{csms.ocpp}/ATTACK", subprotocols=["ocpp1.6"]) as ws:
            await boot(ws)
            for c in range(1, args.connectors + 1):
                await ws.send_message(
                    json.dumps(
                        [
                            2,
                            f"s{c}",
                            "StatusNotification",
                            {"connectorId": c, "errorCode": "NoError", "status": "Available"},
                        ]
                    )
                )
                answer = json.loads(await ws.get_message())
                if answer[0] == 4:
                    refused += 1
                else:
                    accepted += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(honest, i)
        nursery.start_soon(board)
        await trio.sleep(2)
        latencies.clear()
        await attacker()
        took = time.perf_counter() - started - 2
        await trio.sleep(10)  # the board keeps refreshing with whatever was stored
        stop.set()
    rss1 = rss_mb(pid)
    csms.proc.terminate()
    csms.proc.wait()
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(
        f"connectors: attacker sent {args.connectors} StatusNotifications in {took:.1f}s: {accepted} accepted, "
        f"{refused} refused; 20 honest chargers' heartbeat p50 {statistics.median(latencies) * 1000:.1f} ms "
        f"p95 {p95:.1f} ms max {latencies[-1] * 1000:.1f} ms (n={len(latencies)}); RSS {rss0:.0f} -> {rss1:.0f} MB"
    )


# ------------------------------------------------------------------ reconnecting flooder
async def reconnect(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="m28-rec-"))
    csms = start([], work)  # defaults: 50 a second, burst 500
    answered = connections = 0
    started = trio.current_time()
    with trio.move_on_after(args.seconds):
        while True:
            connections += 1
            try:
                async with open_websocket_url(f"{csms.ocpp}/FLOOD1", subprotocols=["ocpp1.6"]) as ws:
                    i = 0
                    while True:
                        await ws.send_message(f'[2,"f{i}","Heartbeat",{{}}]')
                        await ws.get_message()
                        answered += 1
                        i += 1
            except (ConnectionClosed, OSError):
                pass
            except Exception as exc:  # the handshake refused, etc.
                if "ConnectionRejected" not in type(exc).__name__:
                    raise
    took = trio.current_time() - started
    csms.proc.terminate()
    csms.proc.wait()
    print(
        f"reconnect: {answered} messages answered over {connections} connections in {took:.1f}s = "
        f"{answered / took:.0f} msg/s (limit 50/s after a burst of 500)"
    )


# ------------------------------------------------------------------ ping flood
async def pings(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="m28-ping-"))
    csms = start([], work)
    pid = csms.proc.pid
    host, port = csms.ocpp.split("//")[1].split("/")[0].split(":")
    pongs = pings_sent = connections = 0
    cpu0, started = cpu_s(pid), time.monotonic()
    with trio.move_on_after(args.seconds):
        while True:
            connections += 1
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                await stream.send_all(
                    ws.send(Request(host=f"{host}:{port}", target="/ocpp/PINGER", subprotocols=["ocpp1.6"]))
                )
                accepted = closed = False
                while not accepted:
                    ws.receive_data(await stream.receive_some(65536))
                    accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
                if args.churn:  # the same reconnects, no pings: what the churn alone costs
                    continue
                batch = b"".join(ws.send(Ping(b"p")) for _ in range(200))
                try:
                    while not closed:
                        await stream.send_all(batch)
                        pings_sent += 200
                        with trio.move_on_after(0.001):
                            data = await stream.receive_some(1 << 20)
                            if not data:
                                break
                            ws.receive_data(data)
                            for e in ws.events():
                                if isinstance(e, Pong):
                                    pongs += 1
                                elif isinstance(e, CloseConnection):
                                    closed = True
                except (trio.BrokenResourceError, trio.ClosedResourceError, wsproto.utilities.LocalProtocolError):
                    pass
    took = time.monotonic() - started
    cpu = cpu_s(pid) - cpu0
    csms.proc.terminate()
    csms.proc.wait()
    print(
        f"pings: {pings_sent} pings sent ({pings_sent / took:.0f}/s) over {connections} connections, {pongs} pongs "
        f"({pongs / took:.0f}/s); CSMS CPU {cpu:.2f} s in {took:.1f} s = {cpu / took:.2f} core"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["webhooks", "connectors", "reconnect", "pings"], help="which abuse to run")
    ap.add_argument("--seconds", type=float, default=30, help="how long the flood runs (default 30)")
    ap.add_argument("--connectors", type=int, default=15000, help="connector ids the attacker tries (default 15000)")
    ap.add_argument("--churn", action="store_true", help="pings: reconnect only, send no pings")
    args = ap.parse_args()
    trio.run({"webhooks": webhooks, "connectors": connectors, "reconnect": reconnect, "pings": pings}[args.what], args)


if __name__ == "__main__":
    main()
