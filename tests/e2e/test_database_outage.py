"""A PostgreSQL outage under a running `csms serve` (issue 11): nothing acknowledged is lost, REST says 503.

The database is a private PostgreSQL (`initdb` into the test's folder, its own port), stopped and started
again by the test; the machine's shared cluster is never touched.
"""

from __future__ import annotations

import pytest
import trio

from csms.db.models import ConnectorStatus
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
            r = await http.get("/api/stations")
            assert r.status_code == 503, r.text
            assert r.json()["success"] is False and "database is unavailable" in r.json()["message"]
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
        assert "db.unavailable requeued=" in csms.log()
    finally:
        csms.stop()
