"""plaincsms: its rules without sockets, then the process judged through `PlainCsmsAdapter` as QA would.

The rules are plain functions of time (occupancy, the orphan sweep, supersede,
replays, a late StopTransaction correcting a close of ours), so the 30 s orphan
grace is tested at its boundary without waiting. The end-to-end test starts
`python -m tests.foreign.plaincsms`, points a small fleet at it and drives every
adapter method: a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import trio

from scenarios.adapters.base import BUSY, FREE, OFFLINE, CsmsAdapter, NotSupportedError, Outcome
from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option

from .launch import ForeignCsms, launch
from .plaincsms import OFFLINE_AFTER, ORPHAN_GRACE, Charger, Connector, PlainCsms, occupancy
from .plaincsms_adapter import PlainCsmsAdapter

TOKEN = "plaincsms-test-token"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sample(wh: int, at: datetime) -> list[dict]:
    value = {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return [{"timestamp": at.isoformat(), "sampled_value": [value]}]


# ------------------------------------------------------------------ rules, no sockets
def test_occupancy_rules():
    assert occupancy(False, 0, "Available", None) == ("offline", ["charger:disconnected"])
    assert occupancy(True, OFFLINE_AFTER + 1, "Available", None)[0] == "offline"  # silent: no message, no pong
    assert occupancy(True, OFFLINE_AFTER, "Available", None)[0] == "free"
    assert occupancy(True, 0, "Available", 7) == ("busy", ["transaction:7:open", "status:Available"])
    assert occupancy(True, 0, "Finishing", None) == ("busy", ["status:Finishing"])
    assert occupancy(True, 0, None, None) == ("unknown", ["status:none"])


def test_orphan_sweep_closes_with_the_latest_stamped_sample_after_the_grace():
    csms = PlainCsms()
    tx = csms.begin("CP1", 1, "TAG", 1000, T0.isoformat())
    csms.sample("CP1", 1, tx.id, _sample(1500, T0 + timedelta(seconds=20)))
    csms.sample("CP1", 1, tx.id, _sample(1200, T0 + timedelta(seconds=10)))  # older, arrived late: not the last
    csms.chargers["CP1"] = charger = Charger("CP1")
    charger.connectors[1] = Connector("Available", tx.started_at + 1)
    assert csms.sweep(tx.started_at + 1 + ORPHAN_GRACE - 0.1) == [] and tx.open
    assert csms.sweep(tx.started_at + 1 + ORPHAN_GRACE) == [tx.id]
    assert (tx.meter_stop, tx.stop_reason, tx.closed_by) == (1500, "Orphaned", "csms")
    # The real StopTransaction comes after all (a replay): the charger's numbers win.
    csms.end("CP1", tx.id, 1600, (T0 + timedelta(seconds=30)).isoformat(), "EVDisconnected")
    assert (tx.meter_stop, tx.stop_reason, tx.closed_by) == (1600, "EVDisconnected", "charger")


def test_an_available_from_before_the_transaction_is_no_orphan():
    csms = PlainCsms()
    csms.chargers["CP1"] = charger = Charger("CP1")
    charger.connectors[1] = Connector("Available", 0.0)  # then a remote start on a silent connector
    tx = csms.begin("CP1", 1, "TAG", 0, T0.isoformat())
    assert csms.sweep(tx.started_at + 10 * ORPHAN_GRACE) == [] and tx.open


def test_supersede_and_replay():
    csms = PlainCsms()
    first = csms.begin("CP1", 1, "A", 100, T0.isoformat())
    assert csms.begin("CP1", 1, "A", 100, T0.isoformat()) is first  # the same StartTransaction again
    second = csms.begin("CP1", 1, "B", 140, (T0 + timedelta(seconds=60)).isoformat())
    assert second.id != first.id and csms.open_on("CP1", 1) is second
    assert (first.meter_stop, first.stop_reason) == (100, "Superseded")  # no sample: its meterStart


# ------------------------------------------------------------------ the process
@pytest.fixture
def plaincsms() -> Iterator[ForeignCsms]:
    proc = launch("tests.foreign.plaincsms", TOKEN)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, "plaincsms did not end cleanly on SIGTERM"


async def _fleet(nursery: trio.Nursery, url: str) -> Fleet:
    """CP0001 answers after 2 s and rejects remote starts on connector 2; LOST0001 drops every
    StopTransaction and then says nothing."""
    lost = tuple(parse_fault_option(f) for f in ("drop_stop_transaction=1,available=false",))
    spec = FleetSpec(
        seed=2,
        groups=(
            GroupSpec(
                prefix="CP",
                connectors=2,
                config={"MeterValueSampleInterval": "1"},
                faults=(
                    parse_fault_option("reject_remote_start=1,connectors=2"),
                    parse_fault_option("slow_responses=1,min=2,max=2"),  # starts at once overlap, also under load
                ),
            ),
            GroupSpec(prefix="LOST", connectors=1, config={"MeterValueSampleInterval": "1"}, faults=lost),
        ),
        driver=None,
        ramp=1000.0,
        call_timeout=12.0,
    )
    fleet = Fleet(spec, url, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(5):
        await fleet.wait_online()
        for cp in fleet:
            await cp.flush()
    return fleet


async def _until(predicate, what: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_adapter_end_to_end(nursery, plaincsms):
    fleet = await _fleet(nursery, plaincsms.ocpp_url)
    adapter = PlainCsmsAdapter(plaincsms.ocpp_url, plaincsms.api_url, plaincsms.token)
    assert isinstance(adapter, CsmsAdapter)
    keys = [("CP0001", 1), ("CP0001", 2), ("LOST0001", 1), ("CP9999", 1)]
    assert [v.verdict for v in (await adapter.verdicts(keys)).values()] == [FREE, FREE, FREE, OFFLINE]

    results = []

    async def start(k: int) -> None:
        results.append((f"APP{k}", await adapter.start("CP0001", 1, f"APP{k}", Decimal("0.30"))))

    async with trio.open_nursery() as n:  # three at once on one connector: it lets one through
        for k in range(3):
            n.start_soon(start, k)
    won = [(tag, r) for tag, r in results if r.accepted]
    # The charger takes 2 s to answer: the other two arrive while the first is pending and are refused busy.
    assert len(won) == 1 and all(r.code == Outcome.CONNECTOR_BUSY for _, r in results if not r.accepted), results
    app_tag, app = won[0]
    await _until(lambda: fleet["CP0001"].connector_truth(1).transaction_id is not None, "the app's car")
    rejected = await adapter.start("CP0001", 2, "APP9", Decimal("0.30"))
    assert (rejected.accepted, rejected.code, rejected.status) == (False, Outcome.REMOTE_START_REJECTED, 422)
    gone = await adapter.start("CP9999", 1, "APP9", Decimal("0.30"))
    assert (gone.accepted, gone.code, gone.status) == (False, Outcome.CHARGER_OFFLINE, 503)
    busy = (await adapter.verdicts([("CP0001", 1)]))[("CP0001", 1)]
    assert busy.verdict == BUSY and any(r.startswith("transaction:") for r in busy.reasons), busy
    again = await adapter.start("CP0001", 1, "APP8", Decimal("0.30"))
    assert again.code == Outcome.CONNECTOR_BUSY and again.reasons, again

    await trio.sleep(1.2)
    assert await adapter.stop(app.session_id) and not await adapter.stop("nope") and not await adapter.stop("999")
    await _until(lambda: fleet["CP0001"].connector_truth(1).transaction_id is None, "the remote stop")
    await fleet["CP0001"].unplug(1)

    await fleet["CP0001"].flush()  # its Available has been answered
    # An unlock while a car charges: the charger stops it itself (UnlockCommand), and the unlock reports it.
    second = await adapter.start("CP0001", 1, "APP5", Decimal("0.30"))
    assert second.accepted, second
    await _until(lambda: fleet["CP0001"].connector_truth(1).transaction_id is not None, "the third car")
    charging = await adapter.unlock("CP0001", 1)
    assert charging.unlocked and charging.cleaned_sessions == (second.session_id,), charging
    assert charging.warnings[0].endswith("closed (UnlockCommand)"), charging

    # LOST0001: the car leaves without a StopTransaction and the charger says nothing; the admin unlocks.
    lost = await adapter.start("LOST0001", 1, "APP7", Decimal("0.30"))
    assert lost.accepted, lost
    await _until(lambda: fleet["LOST0001"].connector_truth(1).transaction_id is not None, "the second car")
    await trio.sleep(2.2)  # meter samples
    await fleet["LOST0001"].unplug(1)
    assert (await adapter.verdicts([("LOST0001", 1)]))[("LOST0001", 1)].verdict == BUSY  # it cannot know
    unlocked = await adapter.unlock("LOST0001", 1)
    assert unlocked.unlocked and unlocked.cleaned_sessions == (lost.session_id,), unlocked

    stored = {(t.cp, t.id_tag): t for t in await adapter.transactions("")}
    remote, forced = stored[("CP0001", app_tag)], stored[("LOST0001", "APP7")]
    assert stored[("CP0001", "APP5")].stop_reason == "UnlockCommand"
    assert (remote.connector, remote.id_tag, remote.closed, remote.stop_reason) == (1, app_tag, True, "Remote")
    assert remote.meter_stop is not None and remote.meter_stop > remote.meter_start and remote.session is None
    assert (forced.closed, forced.stop_reason) == (True, "Unlocked")
    assert forced.meter_start < forced.meter_stop <= fleet["LOST0001"].connector_truth(1).register_wh
    assert [t.cp for t in await adapter.transactions("LOST")] == ["LOST0001"]

    for unsupported in (
        adapter.reserve("CP0001", 1, "T", Decimal(1)),
        adapter.create_reservation("CP0001", 1, "T", Decimal(1)),
        adapter.session("1"),
    ):
        with pytest.raises(NotSupportedError):
            await unsupported

    fleet["CP0001"].disconnect(back_after=60)  # a closed socket is offline at once
    with trio.fail_after(3):
        while (await adapter.verdicts([("CP0001", 2)]))[("CP0001", 2)].verdict != OFFLINE:
            await trio.sleep(0.05)
    await adapter.aclose()


async def test_the_api_wants_its_token(plaincsms):
    async with httpx.AsyncClient(base_url=plaincsms.api_url) as http:
        assert (await http.get("/health")).json()["name"] == "plaincsms"
        assert (await http.get("/api/connectors")).status_code == 401
        assert (await http.post("/api/start", json={}, headers={"Authorization": "Bearer no"})).status_code == 401
        bad = await http.post("/api/start", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
