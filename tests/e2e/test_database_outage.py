"""A PostgreSQL outage under a running `csms serve` (issue 11): nothing acknowledged is lost, REST says 503.

The database is a private PostgreSQL (`initdb` into the test's folder, its own port), stopped and started
again by the test; the machine's shared cluster is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from csms.db.models import ConnectorStatus
from tests.support.chargepoint import connect
from tests.support.db import with_db
from tests.support.server import start_csms


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15", "14"):
        path = f"/usr/lib/postgresql/{version}/bin/{name}"
        if os.path.exists(path):
            return path
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), *args]), check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            os.chmod(self.folder, 0o755)
            for parent in self.folder.parents:  # postgres must reach its folder
                if str(parent).startswith("/tmp/") and parent.stat().st_mode & 0o001 == 0:
                    os.chmod(parent, parent.stat().st_mode | 0o011)
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                     "--no-sync"]), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("start", "-D", str(self.data), "-w", "-l", str(self.folder / "pg.log"),
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._run("stop", "-D", str(self.data), "-m", "fast", "-w")


@pytest.fixture
def private_pg(tmp_path):
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    pg = PrivatePostgres(tmp_path / "pg")
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        try:
            pg.stop()
        except subprocess.CalledProcessError:
            pass


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
