"""The load tests' parts that need no locust run: options, the oracle's inputs, the sync REST seam, gevent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal

import httpx
import pytest

from scenarios.adapters.base import BUSY, FREE
from simulator.errors import ConfigError
from tests.loadtests import needs_locust

pytestmark = needs_locust

from loadtests.judgement import (  # noqa: E402 - after the skip
    SyncRestAdapter,
    judge_load,
    run_sync,
    samples_from_records,
    tariffs_from_records,
)
from loadtests.options import LoadOptions, parse_range  # noqa: E402


def _ns(**kw):
    import argparse

    return argparse.Namespace(**kw)


def test_options_use_the_simulators_fault_syntax_and_say_what_is_wrong():
    opts = LoadOptions.from_parsed(
        _ns(
            fault=["drop_stop_transaction=0.1,available=false", "reboot=@30"],
            session_seconds="3:9",
            unstuck_run="ab12",
            cp_prefix="LT",
        )
    )
    assert [f.name for f in opts.faults] == ["drop_stop_transaction", "reboot"]
    assert opts.faults[0].probability == 0.1 and opts.faults[0].param("available") is False
    assert opts.session == (3.0, 9.0) and opts.run_prefix == "LTab12-"
    with pytest.raises(ConfigError, match="unknown fault"):
        LoadOptions.from_parsed(_ns(fault=["no_such_fault=1"]))
    with pytest.raises(ConfigError, match="--arrival-seconds"):
        parse_range("9:3", "--arrival-seconds")


def _verdict_record(t, asked, cp, connector, verdict):
    return {
        "t": t,
        "cp": cp,
        "kind": "verdict",
        "connector": connector,
        "asked": asked,
        "verdict": verdict,
        "reasons": [],
        "signals": None,
    }


def test_occupancy_answers_during_the_load_are_judged_for_falsely_free():
    """A charging connector the app was told is free is a violation; the same answer before the car came is not."""
    records = [
        {"t": 0.0, "cp": None, "kind": "header", "version": 1},
        {"t": 0.0, "cp": "CP1", "kind": "identity", "connectors": 1},
        {"t": 0.1, "cp": "CP1", "kind": "link", "event": "connected"},
        _verdict_record(0.9, 0.8, "CP1", 1, FREE),
        {
            "t": 1.0,
            "cp": "CP1",
            "kind": "state",
            "connector": 1,
            "event": "plug",
            "before": "unplugged",
            "after": "plugged",
        },
        {
            "t": 1.1,
            "cp": "CP1",
            "kind": "state",
            "connector": 1,
            "event": "start",
            "before": "plugged",
            "after": "charging",
        },
        {
            "t": 1.1,
            "cp": "CP1",
            "kind": "tx",
            "connector": 1,
            "event": "start",
            "local_id": 1,
            "tag": "T",
            "meter": 100,
        },
        # What tells the CSMS (the oracle's grace runs from the telling on a charge point online all along).
        {
            "t": 1.1,
            "cp": "CP1",
            "kind": "out",
            "frame": '[2,"u1","StartTransaction",{"connectorId":1,"idTag":"T",'
            '"meterStart":100,"timestamp":"2026-01-01T00:00:00Z"}]',
        },
        _verdict_record(5.1, 5.0, "CP1", 1, FREE),
        _verdict_record(6.1, 6.0, "CP1", 1, BUSY),
        {"t": 7.0, "cp": "CP1", "kind": "app", "event": "started", "session_id": "s-1", "tariff": "0.4999"},
    ]
    assert [s.t for s in samples_from_records(records)] == [0.8, 5.0, 6.0]
    assert tariffs_from_records(records) == {"s-1": Decimal("0.4999")}
    j = judge_load(records, [], [], recovery_window=5, grace=1.5, recovery_from=8, end=8)
    assert [(v.kind, v.cp, v.connector, v.t) for v in j.violations] == [("falsely_free", "CP1", 1, 5.0)]


def test_the_sync_adapter_asks_exactly_what_the_scenarios_adapter_asks():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params), request.headers["authorization"]))
        if request.url.path == "/api/connectors":
            rows = [
                {
                    "chargePointId": "LTx-L0001",
                    "connectorId": 1,
                    "verdict": "busy",
                    "reasons": ["live_status:Charging"],
                    "signals": {},
                }
            ]
            return httpx.Response(200, json={"success": True, "data": rows})
        if request.url.path == "/api/connectors/LTx-L0001/2/occupancy":
            return httpx.Response(200, json={"success": True, "data": {"verdict": "free", "reasons": []}})
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": [
                    {
                        "transactionId": 7,
                        "chargePointId": "LTx-L0001",
                        "connectorId": 1,
                        "idTag": "T",
                        "meterStart": 5,
                        "meterStop": None,
                        "stopTime": None,
                        "session": None,
                    }
                ],
            },
        )

    adapter = SyncRestAdapter("ws://x/ocpp", "http://csms", "tok", cp_prefix="LTx-")
    adapter.adapter._http.client = httpx.Client(
        base_url="http://csms", transport=httpx.MockTransport(handler), headers={"Authorization": "Bearer tok"}
    )
    verdicts = adapter.verdicts([("LTx-L0001", 1), ("LTx-L0001", 2)])
    assert {k: v.verdict for k, v in verdicts.items()} == {("LTx-L0001", 1): BUSY, ("LTx-L0001", 2): FREE}
    [tx] = adapter.transactions("LTx-")
    assert tx.transaction_id == 7 and not tx.closed
    assert seen[0] == ("GET", "/api/connectors", {"detail": "true", "chargePointIdPrefix": "LTx-"}, "Bearer tok")
    assert seen[-1][1] == "/api/transactions" and seen[-1][2]["chargePointIdPrefix"] == "LTx-"
    adapter.close()


def test_run_sync_refuses_a_coroutine_that_really_waits():
    import asyncio

    async def waits():
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited"):
        run_sync(waits())


GEVENT_PROBE = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import json, sys, time, gevent
    from websockets.sync.client import connect
    url, n = sys.argv[1], int(sys.argv[2])
    def one(i):
        with connect(f"{url}/GEV{i:04d}", subprotocols=["ocpp1.6"], ping_interval=None) as ws:
            ws.send(json.dumps([2, "1", "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"}]))
            answer = json.loads(ws.recv(timeout=20))
            gevent.sleep(1.0)  # every connection holds a second: together, not one after another
            return answer[0]
    t0 = time.monotonic()
    jobs = [gevent.spawn(one, i) for i in range(n)]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    print(json.dumps({"wall": time.monotonic() - t0, "results": [j.value for j in jobs]}))
""")


def test_websockets_sync_client_cooperates_with_gevent_monkey_patching(tmp_path):
    """What locust does to sockets and threads, then 100 connections that each hold a second."""
    from tests.support.server import start_csms

    # The 100 connect at once from one address, as a locust worker does (loadtests.run lifts the share too).
    args = ["--allow-unknown-chargers", "--max-handshakes-per-address", "200"]
    csms = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, args)
    try:
        done = subprocess.run(
            [sys.executable, "-c", GEVENT_PROBE, csms.ocpp, "100"], capture_output=True, text=True, timeout=90
        )
    finally:
        csms.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["results"] == [3] * 100  # every BootNotification got its CallResult
    assert res["wall"] < 10, res  # one after another would take 100 s


def test_loadtests_never_import_the_csms_themselves():
    """Through the front door only: OCPP and REST; `csms serve` is started as a subprocess.

    (The simulator's package, whose pure modules the charge points reuse, brings the shared
    OCPP-J layer `ocppj` along, as it does for the scenarios.) One exception: the memory soak
    (`loadtests/soak.py`) measures this CSMS's own heap with tracemalloc, which only works inside
    its process; it drives it through the front door like the others.
    """
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "loadtests"
    offenders = []
    for path in sorted(p for p in root.glob("*.py") if p.name != "soak.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n == "csms" or n.startswith("csms.")]
    assert offenders == []
