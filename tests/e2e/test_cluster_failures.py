"""What an operator of two nodes behind HAProxy meets when a node freezes or dies, or the database blips.

Each test starts two `csms serve --node-id` nodes on a database of their own and a generated HAProxy
config (loadtests.balancer: /health/live checks, `on-marked-down shutdown-sessions`, REST stamped with
X-Request-Start). Test chargers connect to one node directly, so which node holds them is the test's
choice. PostgreSQL and haproxy are needed (skipped without); about 15 s each.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from ocpp.routing import on

from scenarios.embedded import Timings
from tests.support.chargepoint import Answers, connect
from tests.support.cluster import fresh_database, start_balancer, start_nodes, stop_all
from tests.support.pg import private_postgres
from tests.support.receiver import receiver
from tests.support.server import CsmsProcess

pytestmark = [pytest.mark.postgres]

CALL_TIMEOUT = 5.0  # --call-timeout-seconds: a forward that waits it out is plain to see


@pytest.fixture
def cluster_db() -> Iterator[str]:
    yield from fresh_database()


def _serve_args() -> list[str]:
    return [*Timings().serve_args(), "--call-timeout-seconds", str(CALL_TIMEOUT)]


async def _held_by(node: CsmsProcess, cp_id: str, holder: str) -> None:
    """Until `node` sees cp_id held by `holder` (its presence read, every 0.5 s)."""
    async with node.client() as http:
        with trio.fail_after(10):
            while True:
                res = await http.get("/api/connectors", params={"detail": "true", "chargePointIdPrefix": cp_id})
                rows = res.json()["data"]
                if any(r["chargePointId"] == cp_id and r["signals"].get("node") == holder for r in rows):
                    return
                await trio.sleep(0.1)


START = {"chargingStationId": "LATE1", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.25"}


async def test_a_command_sent_to_a_frozen_node_is_cut_by_haproxy_and_refused_when_the_node_wakes(cluster_db, tmp_path):
    """Node A freezes (SIGSTOP) for 8 s. A start sent through HAProxy to it: HAProxy marks the node down and
    cuts the session, so the caller hears at once. A start that reaches node A another way while it is frozen
    (as through a balancer that keeps the session: the request waits in node A's socket, stamped with the
    time the balancer received it) is refused when node A wakes, not run: the charger is never asked."""
    # Heartbeats every minute: node A does not judge its charger gone for the seconds it was frozen itself.
    nodes = start_nodes(cluster_db, tmp_path, ("a", "b"), [*_serve_args(), "--heartbeat-interval", "60"])
    balancer = None
    try:
        balancer = await trio.to_thread.run_sync(start_balancer, tmp_path, nodes)
        answers = Answers()
        heard: dict[str, tuple[float, str]] = {}

        async def start(via: str, url: str, headers: dict[str, str]) -> None:
            began = time.monotonic()
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
                try:
                    res = await http.post("/api/ChargingSession/start-charging-session", json=START)
                    said = f"{res.status_code} {res.text[:200]}"
                except httpx.TransportError as exc:
                    said = repr(exc)
            heard[via] = (time.monotonic() - began, said)

        async with connect(nodes["a"].ocpp, "LATE1", answers=answers) as cp:  # held by node A itself
            await cp.status(1, "Available")
            nodes["a"].proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            async with trio.open_nursery() as nursery:
                # Through HAProxy, pinned to node A while HAProxy still has it up.
                nursery.start_soon(start, "haproxy", balancer.http, {**nodes["a"].admin, "X-CSMS-Node": "a"})
                # Straight to node A, stamped as a balancer stamps it (this test's address is a trusted proxy).
                stamp = {"X-Request-Start": f"t={int(time.time() * 1e6)}"}
                nursery.start_soon(start, "kept session", nodes["a"].http, {**nodes["a"].admin, **stamp})
                await trio.sleep(max(0.0, 8.0 - (time.monotonic() - frozen_at)))
                nodes["a"].proc.send_signal(signal.SIGCONT)
            await trio.sleep(CALL_TIMEOUT / 2)  # had it run, the start would have reached the charger by now
        for via, (took, said) in heard.items():
            print(f"{via}: the caller heard after {took:.1f} s: {said}")
        assert heard["haproxy"][0] < 7.0 and heard["haproxy"][1].startswith("502"), heard  # 3 checks of 1 s
        took, said = heard["kept session"]
        assert said.startswith("503") and "not executed" in said, said
        assert [a for a, _ in answers.received if a == "RemoteStartTransaction"] == [], answers.received
        line = next(x for x in nodes["a"].log().splitlines() if "api.request_too_late" in x)
        assert "path=/api/ChargingSession/start-charging-session" in line, line
    finally:
        stop_all(nodes, balancer)


async def test_a_command_for_a_dead_nodes_charger_follows_it_to_the_asking_node(cluster_db, tmp_path):
    """Node A dies (SIGKILL) holding a charger; a command sent to node B meanwhile waits for node A. The charger
    reconnects to node B: the command is answered within a second of that, by the charger, not after the whole
    call timeout with a 504."""
    nodes = start_nodes(cluster_db, tmp_path, ("a", "b"), _serve_args())
    try:
        async with connect(nodes["a"].ocpp, "MOVE1") as cp:
            await cp.status(1, "Available")
            await _held_by(nodes["b"], "MOVE1", "a")
            nodes["a"].proc.kill()  # the socket closes with it; node B still reads node A's lease as valid
            nodes["a"].proc.wait()
        answers = Answers()
        async with trio.open_nursery() as nursery, nodes["b"].client() as http:
            result: dict = {}

            async def ask() -> None:
                began = time.monotonic()
                res = await http.post(
                    "/api/charge-points/MOVE1/call",
                    json={
                        "action": "TriggerMessage",
                        "payload": {"requestedMessage": "StatusNotification", "connectorId": 1},
                    },
                )
                result.update(
                    status=res.status_code, body=res.json(), at=time.monotonic(), took=time.monotonic() - began
                )

            nursery.start_soon(ask)
            await trio.sleep(1.0)  # the call is on its way to node A
            async with connect(nodes["b"].ocpp, "MOVE1", answers=answers) as cp:
                reconnected = time.monotonic()
                with trio.fail_after(CALL_TIMEOUT + 3):
                    while not result:
                        await trio.sleep(0.05)
        after = result["at"] - reconnected
        print(f"answered {result['status']} after {result['took']:.1f} s, {after:.2f} s after the reconnect")
        assert result["status"] == 200 and result["body"]["data"] == {"status": "Accepted"}, result
        assert ("TriggerMessage", {"requested_message": "StatusNotification", "connector_id": 1}) in answers.received
        assert after < 1.0, result
        assert "cluster.rerouted" in nodes["b"].log()
    finally:
        stop_all(nodes, None)


async def test_an_unlock_forwarded_to_a_charger_that_does_not_answer_is_400_as_on_one_node(cluster_db, tmp_path):
    """One documented code: the seed's 400 "did not respond in time", after the call timeout and the trip."""
    nodes = start_nodes(cluster_db, tmp_path, ("a", "b"), _serve_args())
    try:
        answers = Answers()
        answers.unlock = None  # never answers UnlockConnector
        async with connect(nodes["a"].ocpp, "MUTE1", answers=answers) as cp, nodes["b"].client() as http:
            await cp.status(1, "Available")
            await _held_by(nodes["b"], "MUTE1", "a")
            began = time.monotonic()
            res = await http.post(
                "/api/ChargingSession/unlock-connector", json={"chargingStationId": "MUTE1", "connectorId": 1}
            )
            took = time.monotonic() - began
        print(f"forwarded unlock: {res.status_code} after {took:.1f} s: {res.text[:120]}")
        assert res.status_code == 400 and "did not respond in time" in res.json()["message"], res.text
        assert CALL_TIMEOUT <= took < CALL_TIMEOUT + 3, took
    finally:
        stop_all(nodes, None)


class SlowToStart(Answers):
    """A charger that takes a second to answer a RemoteStartTransaction (both nodes' checks pass meanwhile)."""

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag, **kw):
        self.received.append(("RemoteStartTransaction", {"id_tag": id_tag, **kw}))
        await trio.sleep(1.0)
        return {"status": "Accepted"}


async def test_a_start_sent_to_both_nodes_with_one_idempotency_key_runs_once(cluster_db, tmp_path):
    """A client's start and its retry on the other node, at the same moment, with one Idempotency-Key: the
    charger is asked once; one caller gets the answer, the other 409 (in progress), and a later retry the
    same answer again, on either node."""
    nodes = start_nodes(cluster_db, tmp_path, ("a", "b"), _serve_args())
    try:
        answers = SlowToStart()
        async with connect(nodes["a"].ocpp, "ONCE1", answers=answers) as cp:
            await cp.status(1, "Available")
            await _held_by(nodes["b"], "ONCE1", "a")
            body = {"chargingStationId": "ONCE1", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.25"}
            key = {"Idempotency-Key": "retry-me-0001"}
            got: dict[str, httpx.Response] = {}

            async def start(name: str) -> None:
                async with nodes[name].client() as http:
                    got[name] = await http.post("/api/ChargingSession/start-charging-session", json=body, headers=key)

            async with trio.open_nursery() as nursery:
                for name in nodes:
                    nursery.start_soon(start, name)
            codes = sorted(r.status_code for r in got.values())
            print({n: (r.status_code, r.text[:150]) for n, r in got.items()})
            assert codes == [200, 409], got
            winner = next(r for r in got.values() if r.status_code == 200)
            loser = next(r for r in got.values() if r.status_code == 409)
            assert loser.json()["data"]["code"] == "IdempotencyKeyInUse", loser.text
            for name in nodes:  # the retry, after the first finished, on either node: the same answer
                async with nodes[name].client() as http:
                    again = await http.post("/api/ChargingSession/start-charging-session", json=body, headers=key)
                assert again.status_code == 200 and again.json() == winner.json(), again.text
                assert again.headers.get("idempotent-replayed") == "true"
            await trio.sleep(1.0)
            starts = [a for a, _ in answers.received if a == "RemoteStartTransaction"]
            assert starts == ["RemoteStartTransaction"], answers.received
    finally:
        stop_all(nodes, None)


async def test_webhook_events_outlive_the_node_that_saw_them(cluster_db, tmp_path):
    """The receiver is down. A charger connects to the node holding the duties, which queues (and retries)
    its online event; that node is killed. The other node takes the duties and delivers the event when the
    receiver is back, and the charger's offline event too (it never came back): nothing is lost."""
    failing = threading.Event()
    failing.set()
    with receiver(failing=failing) as hook:
        args = [*_serve_args(), "--webhook", hook.url, "--webhook-retry-seconds", "0.5", "--webhook-max-attempts", "50"]
        nodes = start_nodes(cluster_db, tmp_path, ("a", "b"), args)
        try:
            with trio.fail_after(10):
                while not (holder := next((n for n in nodes if "duties_acquired" in nodes[n].log()), None)):
                    await trio.sleep(0.1)
            other = next(n for n in nodes if n != holder)
            async with connect(nodes[holder].ocpp, "HOOK1") as cp:
                await cp.status(1, "Available")
                with trio.fail_after(10):  # queued and being tried: the receiver answers 500
                    while not any(json.loads(r["body"])["type"] == "charge_point.online" for r in hook.requests):
                        await trio.sleep(0.1)
                nodes[holder].proc.kill()
                nodes[holder].proc.wait()
            failing.clear()  # the receiver is back
            with trio.fail_after(30):
                while not {"charge_point.online", "charge_point.offline"} <= hook.types():
                    await trio.sleep(0.2)
            delivered = [b for b in hook.bodies() if b["data"].get("chargePointId") == "HOOK1"]
            print(f"delivered by node {other}: {[(b['type'], b['id'][:8]) for b in delivered]}")
            assert {b["type"] for b in delivered} == {"charge_point.online", "charge_point.offline"}
            assert len({b["id"] for b in delivered}) == 2  # at least once; the same id each time
            assert "webhook.delivered" in nodes[other].log()
        finally:
            stop_all(nodes, None)


@pytest.fixture
def private_pg():
    yield from private_postgres()


async def test_a_database_blip_keeps_both_nodes_in_the_balancer_and_logs_once(private_pg, tmp_path):
    """The database stops for 4 s: both nodes stay in HAProxy (their chargers stay connected), REST answers 503
    meanwhile, and each node logs the outage in one line when it begins and one when it ends."""
    nodes = start_nodes(private_pg.url, tmp_path, ("a", "b"), _serve_args())
    balancer = None
    try:
        balancer = await trio.to_thread.run_sync(start_balancer, tmp_path, nodes)
        async with connect(balancer.ocpp, "BLIP1") as cp, httpx.AsyncClient(base_url=balancer.http, timeout=30) as http:
            await cp.status(1, "Available")
            private_pg.stop()
            stopped_at = time.monotonic()
            codes, down = set(), []
            while time.monotonic() - stopped_at < 4.0:
                for name, row in [*balancer.servers().items(), *balancer.servers("csms_rest").items()]:
                    if not row["status"].startswith("UP"):
                        down.append((round(time.monotonic() - stopped_at, 1), name, row["status"]))
                res = await http.get("/api/stations", headers=nodes["a"].admin)
                codes.add(res.status_code)
                await trio.sleep(0.1)
            assert "currentTime" in await cp.heartbeat()  # the charger's connection held throughout
            private_pg.start()
            for name in nodes:  # each node's readiness check succeeds again, and its outage ends (3 s quiet)
                with trio.fail_after(30):
                    while (await http.get("/health", headers={"X-CSMS-Node": name})).status_code != 200:
                        await trio.sleep(0.2)
                    while "db.outage_ended" not in nodes[name].log():
                        await http.get("/health", headers={"X-CSMS-Node": name})
                        await trio.sleep(0.2)
        assert down == [], down
        assert 503 in codes, codes
        for name, node in nodes.items():
            log = node.log()
            began, ended = log.count("db.outage_began"), log.count("db.outage_ended")
            print(f"node {name}: outage began logged {began}x, ended {ended}x")
            assert began == 1 and ended == 1, log[-3000:]
            assert "Traceback" not in log and "Error in ASGI" not in log, log[-3000:]
    finally:
        stop_all(nodes, balancer)
