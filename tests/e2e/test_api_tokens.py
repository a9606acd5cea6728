"""Issue 10, item 3 on a real `csms serve`: named tokens, a tokens file, the actor, no token in logs, CORS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent
from tests.support.chargepoint import connect
from tests.support.db import plant_stuck_session, with_db
from tests.support.server import ADMIN_TOKEN, USER_TOKEN

ALICE = "alice-token-from-a-file-01"
BOB = "bob-token-from-a-file-002"


@pytest.fixture
def csms_args(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who may call the API\nadmin:alice:{ALICE}\n\nuser:bob:{BOB}\n")
    tokens.chmod(0o600)
    return ["--allow-unknown-chargers", "--api-tokens-file", str(tokens)]


async def test_the_token_name_is_the_actor_and_no_token_is_logged_or_on_the_command_line(csms):
    async with connect(csms.ocpp, "ACT1") as cp, httpx.AsyncClient(base_url=csms.http) as http:
        await cp.status(1, "Available")
        plant_stuck_session(csms.db_url, "ACT1", 1)
        alice = {"Authorization": f"Bearer {ALICE}"}
        r = await http.post(
            "/api/ChargingSession/unlock-connector", headers=alice, json={"chargingStationId": "ACT1", "connectorId": 1}
        )
        assert r.status_code == 200, r.text
        r = await http.post("/api/id-tags", headers=csms.admin, json={"idTag": "T1"})  # the token named "tests"
        assert r.status_code == 201
        r = await http.post("/api/maintenance/run", headers=alice, json={"dryRun": True})
        assert r.status_code == 200
        bob = {"Authorization": f"Bearer {BOB}"}
        assert (await http.get("/api/ChargingSession/nope", headers=bob)).status_code == 404  # a user token works
        assert (await http.get("/api/stations", headers=bob)).status_code == 403
    actors = with_db(csms.db_url, lambda s: {(a.action, a.actor) for a in s.scalars(select(AuditEvent))})
    assert {
        ("session.force_ended", "alice"),
        ("id_tag.created", "tests"),
        ("maintenance.run_requested", "alice"),
    } <= actors
    log = csms.log()
    for secret in (ALICE, BOB, ADMIN_TOKEN, USER_TOKEN):
        assert secret not in log
    cmdline = (await trio.Path(f"/proc/{csms.proc.pid}/cmdline").read_bytes()).decode()
    assert ALICE not in cmdline and BOB not in cmdline


async def test_cors_is_off_by_default(csms):
    async with httpx.AsyncClient(base_url=csms.http) as http:
        r = await http.get("/health", headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = await http.options(
            "/api/stations", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("csms_args", [["--cors-origin", "https://app.example"]])
async def test_cors_for_a_named_origin_only(csms):
    async with httpx.AsyncClient(base_url=csms.http) as http:
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        r = await http.options("/api/stations", headers={"Origin": "https://app.example", **preflight})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = await http.options("/api/stations", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in r.headers


def test_a_generated_token_goes_to_a_private_file_not_the_log(tmp_path):
    ports, log_path = tmp_path / "ports.json", tmp_path / "csms.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_API_TOKENS")}
    path = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "csms",
                "serve",
                "--db",
                f"sqlite:///{tmp_path / 'db'}",
                "--ocpp-port",
                "0",
                "--http-port",
                "0",
                "--ports-file",
                str(ports),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while not ports.exists() or not ports.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        text = log_path.read_text()
        path = re.search(r"api\.no_tokens_configured .* it is in (\S+) ", text).group(1)
        token = Path(path).read_text().strip()
        assert len(token) >= 20 and token not in text
        assert Path(path).stat().st_mode & 0o077 == 0
        http = json.loads(ports.read_text())["http"]
        r = httpx.get(f"{http}/api/stations", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        if path:
            Path(path).unlink(missing_ok=True)
