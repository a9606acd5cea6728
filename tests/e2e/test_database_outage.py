"""A PostgreSQL outage under a running `csms serve` (issue 11): nothing acknowledged is lost, REST says 503.

The database is a private PostgreSQL (`initdb` into the test's folder, its own port), stopped and started
again by the test; the machine's shared cluster is never touched.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from csms.db.models import ConnectorStatus, Transaction
from tests.support.chargepoint import connect
from tests.support.db import with_db
from tests.support.pg import private_postgres
from tests.support.server import start_csms


@pytest.fixture
def private_pg():
    yield from private_postgres()


async def test_an_outage_loses_no_acknowledged_status_and_rest_answers_503(private_pg, tmp_path):
    csms = start_csms(private_pg.url, tmp_path, ["--allow-unknown-chargers"])
    try:
        async with connect(csms.ocpp, "OUT1") as cp, csms.client() as http:
            await cp.status(1, "Available")
            assert (await http.get("/health")).json()["database"] == "up"
            private_pg.stop()  # the outage
            await cp.status(1, "Faulted", "GroundFailure")  # acknowledged while the database is down
            assert "currentTime" in await cp.heartbeat()
            health = await http.get("/health")
            assert health.status_code == 503, health.text
            assert health.json()["database"] == "down" and "database unavailable" in health.json()["message"]
            for _ in range(20):  # every request answered 503; the outage logged once, not per request
                r = await http.get("/api/stations")
                assert r.status_code == 503, r.text
                assert r.json()["success"] is False and "database is unavailable" in r.json()["message"]
            live = await http.get("/health/live")  # the balancer's check: this node still serves
            assert live.status_code == 200 and live.json()["database"] == "down", live.text
            await trio.sleep(2)  # a few retries fail meanwhile
            private_pg.start()
            with trio.fail_after(20):
                while (await http.get("/health")).status_code != 200:
                    await trio.sleep(0.2)

            def stored(s):
                row = s.get(ConnectorStatus, ("OUT1", 1))
                return row and (row.status, row.error_code)

            with trio.fail_after(20):
                while with_db(private_pg.url, stored) != ("Faulted", "GroundFailure"):
                    await trio.sleep(0.2)
            with trio.fail_after(20):  # an outage ends at a success 3 s after its last failure
                while "db.outage_ended" not in csms.log():
                    await http.get("/health")
                    await trio.sleep(0.2)
        log = csms.log()
        assert log.count("db.outage_began") == 1 and log.count("db.outage_ended") == 1, log
        assert "Traceback" not in log and "api.crashed" not in log, log
    finally:
        csms.stop()


async def _timed(what: str, request, limit: float):
    """(response, seconds) of a request that must be answered within `limit` s whatever the database does."""
    began = trio.current_time()
    with trio.fail_after(limit):
        try:
            res = await request
        except httpx.TransportError as exc:
            raise AssertionError(f"{what}: no HTTP answer ({exc!r})") from exc
    return res, trio.current_time() - began


async def test_a_hung_database_turns_into_errors_within_a_bounded_wait(private_pg, tmp_path):
    """SIGSTOP of the whole PostgreSQL instance: TCP still accepts, nothing answers. The server must not hang."""
    # Short bounds for a quick test: connect within 2 s (libpq connect_timeout in the URL), a read given up
    # after 3 s (the defaults are 5 and 35).
    csms = start_csms(
        f"{private_pg.url}?connect_timeout=2", tmp_path, ["--allow-unknown-chargers", "--db-read-timeout-seconds", "3"]
    )
    try:
        async with (
            connect(csms.ocpp, "HUNG1") as cp,
            connect(csms.ocpp, "HUNG2") as starter,
            csms.client() as http,
            trio.open_nursery() as nursery,
        ):
            await cp.status(1, "Available")
            async with trio.open_nursery() as warm:  # a busy server: its pool holds open connections
                for _ in range(8):
                    warm.start_soon(http.get, "/api/transactions")
            assert (await http.get("/api/stations")).status_code == 200
            stopped = private_pg.pause()
            started: list[tuple[int, float]] = []

            async def start_during_the_hang() -> None:
                """A StartTransaction is answered only after its commit: it waits for the database, unanswered."""
                began = trio.current_time()
                tx = await starter.start(1, "TAG-HUNG", meter_start=500)
                started.append((tx, trio.current_time() - began))

            nursery.start_soon(start_during_the_hang)
            try:
                # A request that takes a pooled connection: its pre-ping waits on the stopped backend (for ever,
                # without the read bound: statement_timeout is the stopped server's to enforce).
                r, rest_s = await _timed("GET /api/stations", http.get("/api/stations"), 10)
                health, health_s = await _timed("GET /health", http.get("/health"), 10)
                # More requests at once than there are read threads: the hung ones hold theirs, the rest time out
                # waiting for one; all are answered.
                answers: list[tuple[int, float]] = []

                async def one() -> None:
                    res, took = await _timed("GET /api/transactions", http.get("/api/transactions"), 10)
                    answers.append((res.status_code, took))

                async with trio.open_nursery() as requests:
                    for _ in range(12):
                        requests.start_soon(one)
                print(
                    f"hung database ({stopped} processes stopped): REST {r.status_code} after {rest_s:.1f} s, "
                    f"/health {health.status_code} after {health_s:.1f} s, 12 requests at once answered "
                    f"{sorted({c for c, _ in answers})} within {max(t for _, t in answers):.1f} s"
                )
                assert all(code == 503 for code, _ in answers), answers
                began = trio.current_time()
                with trio.fail_after(5):
                    await cp.status(1, "Faulted", "GroundFailure")  # acknowledged while the database hangs
                    assert "currentTime" in await cp.heartbeat()
                print(f"OCPP status and heartbeat answered in {trio.current_time() - began:.2f} s")
                assert r.status_code == 503 and "database is unavailable" in r.json()["message"], r.text
                assert health.status_code == 503 and health.json()["database"] == "down", health.text
                assert started == [], "a StartTransaction was acknowledged while its commit could not happen"
            finally:
                private_pg.resume()
            with trio.fail_after(15):
                while not started:
                    await trio.sleep(0.1)
            print(f"the StartTransaction sent during the hang was answered after SIGCONT ({started[0][1]:.1f} s)")
            with trio.fail_after(30):
                while (await http.get("/health")).status_code != 200:
                    await trio.sleep(0.2)

            def stored(s):
                row = s.get(ConnectorStatus, ("HUNG1", 1))
                return row and (row.status, row.error_code)

            with trio.fail_after(20):
                while with_db(private_pg.url, stored) != ("Faulted", "GroundFailure"):
                    await trio.sleep(0.2)
            assert with_db(private_pg.url, lambda s: s.get(Transaction, started[0][0]).id_tag) == "TAG-HUNG"
            assert (await http.get("/api/stations")).status_code == 200
    finally:
        csms.stop()
